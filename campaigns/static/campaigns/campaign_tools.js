/* Campaign form tools: the live preview and the state of a test message.
 *
 * The preview posts the form's current (unsaved) content to a staff-only endpoint, which puts
 * the message together as a send does (layout, inlined CSS, text part) and renders it with the
 * same locked-down engine the delivery uses; the HTML is shown in two sandboxed iframes, at a
 * desktop and a phone width, light or dark.
 * A reader who may not edit (approver, auditor) gets the saved campaign as stored.
 */
(function () {
  "use strict";
  const panel = document.getElementById("campaign-preview");
  if (!panel) return;
  const form = document.getElementById("campaign_form");
  const FIELDS = ["name", "subject", "from_email", "reply_to", "preheader", "body_format",
    "body", "layout", "text_body"];
  const FRAMES = ["preview-frame", "preview-frame-mobile"];
  const TEXTS = ["preview-from", "preview-to", "preview-subject", "preview-preheader",
    "preview-unsubscribe", "preview-text"];
  let last = null; // the latest answer, redrawn when dark mode is switched

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    const match = document.cookie.match(/csrftoken=([^;]+)/);
    return match ? match[1] : "";
  }

  /* The field's value as the form would post it: the body has two editors, one disabled. */
  function fieldValue(name) {
    const fields = form.querySelectorAll(`[name="${name}"]`);
    for (const field of fields) {
      if (!field.disabled && "value" in field) return field.value;
    }
    return null;
  }

  let timer = null;
  let sequence = 0;

  async function refresh() {
    const body = new FormData();
    body.append("campaign_id", panel.dataset.campaignId || "");
    body.append("recipient", document.getElementById("preview-recipient").value);
    if (form) {
      for (const name of FIELDS) {
        const value = fieldValue(name);
        if (value !== null) body.append(name, value);
      }
    }
    const mine = ++sequence;
    let response = null;
    try {
      response = await fetch(panel.dataset.previewUrl, {
        method: "POST",
        body: body,
        headers: { "X-CSRFToken": csrfToken() },
        credentials: "same-origin",
      });
    } catch (problem) {
      response = null; // offline or the server is gone: said in words below
    }
    if (mine !== sequence) return; // a newer refresh is on its way
    // Staff read sentences, never a status code.
    if (!response || !response.ok) {
      const denied = response && response.status === 403;
      showError(denied ? "You cannot preview this campaign." :
        "The preview could not be loaded; try again.");
      return;
    }
    const data = await response.json();
    if (data.error) {
      showError(data.error);
      return;
    }
    last = data;
    document.getElementById("preview-error").hidden = true;
    panel.querySelector(".opsdash-preview-widths").hidden = false;
    document.getElementById("preview-from").textContent = data.from_email;
    document.getElementById("preview-to").textContent = data.recipient;
    document.getElementById("preview-subject").textContent = data.subject;
    document.getElementById("preview-preheader").textContent = data.preheader || "(none)";
    document.getElementById("preview-unsubscribe").textContent = data.list_unsubscribe;
    document.getElementById("preview-text").textContent = data.text;
    showRemoved(data.removed || []);
    draw();
    panel.dataset.rendered = String(mine);
  }

  /* Both widths show the same message, light or dark as the toggle says. */
  function draw() {
    if (!last) return;
    const dark = document.getElementById("preview-dark").checked;
    const html = (dark ? last.html_dark : last.html) ||
      "<pre style='white-space:pre-wrap;font-family:sans-serif'>" +
      last.text.replace(/&/g, "&amp;").replace(/</g, "&lt;") + "</pre>";
    for (const id of FRAMES) {
      const frame = document.getElementById(id);
      // The light preview stays light even where this page is dark.
      frame.style.colorScheme = dark ? "dark" : "light";
      frame.srcdoc = html;
    }
    panel.dataset.dark = dark ? "yes" : "no";
  }

  function showRemoved(removed) {
    const box = document.getElementById("preview-removed");
    const list = box.querySelector("ul");
    list.replaceChildren(...removed.map((sentence) => {
      const item = document.createElement("li");
      item.textContent = sentence;
      return item;
    }));
    box.hidden = !removed.length;
  }

  /* An error replaces the preview: the previous recipient's message must not stay beside it
   * as if it were the answer. */
  function showError(message) {
    const error = document.getElementById("preview-error");
    error.textContent = message;
    error.hidden = false;
    for (const id of TEXTS) {
      document.getElementById(id).textContent = "";
    }
    for (const id of FRAMES) {
      document.getElementById(id).srcdoc = "";
    }
    // Empty frames say nothing: the error stands alone until the message renders again.
    panel.querySelector(".opsdash-preview-widths").hidden = true;
    showRemoved([]);
    last = null;
    delete panel.dataset.rendered;
  }

  function soon() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 400);
  }

  if (form) {
    const watched = (event) => FIELDS.includes(event.target.name);
    form.addEventListener("input", (event) => { if (watched(event)) soon(); });
    form.addEventListener("change", (event) => { if (watched(event)) soon(); });
    form.addEventListener("trix-change", soon); // the rich text editor writes its field itself
  }
  document.getElementById("preview-recipient").addEventListener("change", soon);
  document.getElementById("preview-refresh").addEventListener("click", refresh);
  document.getElementById("preview-dark").addEventListener("change", draw);
  refresh();

  /* Test messages: the form redirects here with ?test_task=<id>[,<id>...]; poll each until
   * it settles, one line per message. */
  const taskIds = (new URLSearchParams(window.location.search).get("test_task") || "")
    .split(",").filter(Boolean);
  const status = document.getElementById("test-send-status");
  if (!taskIds.length || !status) return;
  status.hidden = false;

  function follow(taskId) {
    const line = document.createElement("li");
    line.innerHTML = 'Test <code></code>: <span class="opsdash-state">Waiting for a sending machine</span> <span class="text-subtle"></span>';
    line.querySelector("code").textContent = taskId.slice(0, 8);
    status.appendChild(line);
    const state = line.querySelector(".opsdash-state");
    const detail = line.querySelector(".text-subtle");
    const url = panel.dataset.taskUrlTemplate.replace("TASK_ID", encodeURIComponent(taskId));

    async function poll(attempt) {
      try {
        const response = await fetch(url, { credentials: "same-origin" });
        if (response.ok) {
          const data = await response.json();
          state.textContent = data.label || data.state;
          state.dataset.state = data.state; // the raw state, for styling and checks
          detail.textContent = data.detail || "";
          if (data.done) return;
        }
      } catch (error) {
        detail.textContent = "(lost contact, retrying)";
      }
      if (attempt < 300) setTimeout(() => poll(attempt + 1), 1000);
    }
    poll(0);
    return state;
  }
  const first = follow(taskIds[0]);
  first.id = "test-send-state"; // the first message's state, for the staff guide's checks
  taskIds.slice(1).forEach(follow);
})();
