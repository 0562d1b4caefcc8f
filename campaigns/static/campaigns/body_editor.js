/* The campaign body's editor follows the "Body format" choice.
 *
 * Rich text is written in Trix, Markdown and HTML in a monospace text area. When the format
 * changes, the current body is posted to a staff-only endpoint that converts it
 * (authoring.body_convert) and the result is put in the other editor, so nothing written is
 * lost; a line under the editor says what happened. Only the active editor is enabled, so the
 * form posts exactly one "body".
 */
function bodyEditorStart() {
  "use strict";
  const root = document.querySelector("[data-body-editor]");
  if (!root) return;
  const form = root.closest("form");
  const select = form && form.querySelector("select[name=body_format]");
  const hidden = root.querySelector("input[data-role=richtext]");
  const trix = root.querySelector("trix-editor");
  const source = root.querySelector("textarea[data-role=source]");
  const note = root.querySelector("[data-body-editor-note]");
  let current = root.dataset.format;

  // An email body carries images by address, never as attachments: Trix takes no files.
  root.addEventListener("trix-file-accept", (event) => event.preventDefault());

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    const match = document.cookie.match(/csrftoken=([^;]+)/);
    return match ? match[1] : "";
  }

  function say(text, problem) {
    note.textContent = text;
    note.hidden = !text;
    note.dataset.problem = problem ? "yes" : "no";
  }

  function label(format) {
    const option = select && select.querySelector(`option[value="${format}"]`);
    return option ? option.textContent.trim() : format;
  }

  function body() {
    return current === "richtext" ? hidden.value : source.value;
  }

  /* Shows the editor of ``format`` holding ``text``, and tells the preview. */
  function show(format, text) {
    const rich = format === "richtext";
    root.querySelector("[data-pane=richtext]").hidden = !rich;
    root.querySelector("[data-pane=source]").hidden = rich;
    hidden.disabled = !rich;
    source.disabled = rich;
    if (rich) {
      trix.editor.loadHTML(text);
      hidden.value = text;
    } else {
      source.value = text;
      source.placeholder = root.dataset[`placeholder${format[0].toUpperCase()}${format.slice(1)}`] || "";
    }
    current = format;
    root.dataset.format = format;
    (rich ? hidden : source).dispatchEvent(new Event("input", { bubbles: true }));
  }

  async function convert(text, from, to) {
    const data = new FormData();
    data.append("body", text);
    data.append("from_format", from);
    data.append("to_format", to);
    let response = null;
    try {
      response = await fetch(root.dataset.convertUrl, {
        method: "POST",
        body: data,
        headers: { "X-CSRFToken": csrfToken() },
        credentials: "same-origin",
      });
    } catch (problem) {
      response = null; // offline or the server is gone: said in words by the caller
    }
    if (response && response.status === 400) return response.json(); // a refusal in words
    if (!response || !response.ok) return { error: "The body could not be converted; the format is unchanged. Try again." };
    return response.json();
  }

  async function switchTo(to) {
    const from = current;
    if (to === from) return;
    const text = body();
    if (!text.trim()) {
      show(to, "");
      say(`The body is now written as ${label(to)}.`, false);
      return;
    }
    root.setAttribute("aria-busy", "true");
    say(`Converting the body from ${label(from)} to ${label(to)}…`, false);
    const answer = await convert(text, from, to);
    root.removeAttribute("aria-busy");
    if (answer.error) {
      select.value = from; // the editor still holds the old format's text
      say(answer.error, true);
      return;
    }
    show(to, answer.body);
    say(answer.message, false);
  }

  if (select) {
    select.addEventListener("change", () => switchTo(select.value));
  }
}

// Form media loads in the page's head, before the editor exists.
if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", bodyEditorStart);
} else {
  bodyEditorStart();
}
