// Staff console helpers. Loaded as a file: the console's CSP forbids inline scripts.
"use strict";

function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]').content;
}

// POST JSON with the session's CSRF token; returns the parsed answer.
async function postJSON(url, payload) {
  const resp = await fetch(url, {
    method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrfToken()},
    body: JSON.stringify(payload || {}),
  });
  return {status: resp.status, data: await resp.json()};
}

// Ask before destructive buttons: <button data-confirm="...">.
document.addEventListener("submit", (e) => {
  const button = e.submitter;
  if (button && button.dataset.confirm && !window.confirm(button.dataset.confirm)) e.preventDefault();
});
