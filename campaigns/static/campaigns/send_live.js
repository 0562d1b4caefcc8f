// The send's page, kept current while the send is active: every two seconds (or as often as the
// server says, slower for very large sends) it asks the page's live URL (JSON) and redraws the
// status badge, the progress box and the newest deliveries, with the page's own filters. It stops once the send has ended and its last outcomes landed;
// when the status changes it reloads the page once, so the toolbar offers the right controls.
(function () {
  "use strict";
  const EVERY_MS = 2000;

  const root = document.getElementById("send-live");
  if (!root || root.dataset.poll !== "true") return;
  const url = root.dataset.url + window.location.search;
  const initialStatus = root.dataset.status;

  const swap = (name, html) => {
    const old = document.querySelector(`[data-send-live="${name}"]`);
    if (!old || html === undefined) return;
    if (name === "deliveries") { old.innerHTML = html; return; }
    const holder = document.createElement("template");
    holder.innerHTML = html.trim();
    const fresh = holder.content.querySelector(`[data-send-live="${name}"]`);
    if (fresh) old.replaceWith(fresh);
  };

  let every = EVERY_MS;
  const tick = async () => {
    if (document.hidden) { window.setTimeout(tick, every); return; }
    try {
      const response = await fetch(url, {
        credentials: "same-origin",
        headers: {"Accept": "application/json"},
      });
      if (response.ok) {
        const data = await response.json();
        if (data.status !== initialStatus) { window.location.reload(); return; }
        swap("status", data.status_html);
        swap("progress", data.progress_html);
        swap("feedback", data.feedback_html);
        swap("deliveries", data.deliveries_html);
        root.dataset.updated = new Date().toISOString();
        if (!data.poll) return;  // ended, and the last outcomes are in
        every = data.next_ms || EVERY_MS;
      }
    } catch (e) { /* a missed tick is tried again */ }
    window.setTimeout(tick, every);
  };
  window.setTimeout(tick, EVERY_MS);
})();
