/* Submits the admin's state-changing action links (data-opsdash-post) as a POST with the CSRF
 * token, so those actions can refuse GET: a plain link can never trigger them. */
(function () {
  "use strict";
  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }
  document.addEventListener("click", function (event) {
    const link = event.target.closest("a[data-opsdash-post]");
    if (!link || !link.href) return;
    event.preventDefault();
    if (link.dataset.submitting) return; // a double click sends one request
    link.dataset.submitting = "1";
    const form = document.createElement("form");
    form.method = "post";
    form.action = link.href;
    form.hidden = true;
    const token = document.createElement("input");
    token.type = "hidden";
    token.name = "csrfmiddlewaretoken";
    token.value = csrfToken();
    form.appendChild(token);
    document.body.appendChild(form);
    form.submit();
  });
})();
