/* Campaign form tools: the live preview and the state of a test message.
 *
 * The preview posts the form's current (unsaved) content to a staff-only endpoint, which renders
 * it with the same locked-down engine the delivery uses, and shows the HTML in a sandboxed iframe.
 * A reader who may not edit (approver, auditor) gets the saved campaign as stored.
 */
(function () {
  "use strict";
  const panel = document.getElementById("campaign-preview");
  if (!panel) return;
  const form = document.getElementById("campaign_form");
  const FIELDS = ["name", "subject", "from_email", "reply_to", "text_body", "body"];

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    const match = document.cookie.match(/csrftoken=([^;]+)/);
    return match ? match[1] : "";
  }

  let timer = null;
  let sequence = 0;

  async function refresh() {
    const body = new FormData();
    body.append("campaign_id", panel.dataset.campaignId || "");
    body.append("recipient", document.getElementById("preview-recipient").value);
    if (form) {
      for (const name of FIELDS) {
        const field = form.elements.namedItem(name);
        if (field && "value" in field) body.append(name, field.value);
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
    document.getElementById("preview-error").hidden = true;
    document.getElementById("preview-to").textContent = data.recipient;
    document.getElementById("preview-subject").textContent = data.subject;
    document.getElementById("preview-text").textContent = data.text;
    document.getElementById("preview-frame").srcdoc =
      data.html || "<pre style='white-space:pre-wrap;font-family:sans-serif'>" +
      data.text.replace(/&/g, "&amp;").replace(/</g, "&lt;") + "</pre>";
    panel.dataset.rendered = String(mine);
  }

  /* An error replaces the preview: the previous recipient's message must not stay beside it
   * as if it were the answer. */
  function showError(message) {
    const error = document.getElementById("preview-error");
    error.textContent = message;
    error.hidden = false;
    for (const id of ["preview-to", "preview-subject", "preview-text"]) {
      document.getElementById(id).textContent = "";
    }
    document.getElementById("preview-frame").srcdoc = "";
    delete panel.dataset.rendered;
  }

  function soon() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 400);
  }

  if (form) {
    for (const name of FIELDS) {
      const field = form.elements.namedItem(name);
      if (field) field.addEventListener("input", soon);
    }
  }
  document.getElementById("preview-recipient").addEventListener("change", soon);
  document.getElementById("preview-refresh").addEventListener("click", refresh);
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
