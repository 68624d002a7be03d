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

// Announcement page: poll the job's progress until it settles, then reload the table once.
const FINAL = ["done", "cancelled"];
const STATUS_NAMES = {queued: "排队中", running: "发送中", waiting: "等待重试", done: "已完成", cancelled: "已取消"};

function watchProgress(box) {
  const initial = box.dataset.status;
  const set = (id, value) => { const el = document.getElementById(id); if (el) el.textContent = String(value); };
  async function tick() {
    let p;
    try {
      const resp = await fetch(box.dataset.url, {credentials: "same-origin"});
      if (resp.status === 401) { window.location.reload(); return; }
      p = await resp.json();
    } catch (e) { setTimeout(tick, 2000); return; }
    const bar = document.getElementById("bar");
    bar.max = p.total || 1;
    bar.value = p.delivered + p.failed + p.cancelled + p.unknown;
    set("job-status", STATUS_NAMES[p.status] || p.status);
    set("n-total", p.total); set("n-delivered", p.delivered);
    set("n-failed", p.failed); set("n-pending", p.pending);
    if (FINAL.includes(p.status)) {
      if (!FINAL.includes(initial)) window.location.reload();
      return;
    }
    setTimeout(tick, 1000);
  }
  if (!FINAL.includes(initial)) tick();
}

document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("progress");
  if (box && box.dataset.url) watchProgress(box);
});

// Nav badge: how many users wait for a person ("转人工"), refreshed every 30 seconds.
async function refreshHandoffs(badge) {
  try {
    const resp = await fetch(badge.dataset.url, {credentials: "same-origin"});
    if (resp.ok) {
      const n = (await resp.json()).open;
      badge.textContent = String(n);
      badge.hidden = n === 0;
    }
  } catch (e) { /* offline for a moment: keep the last count */ }
  setTimeout(() => refreshHandoffs(badge), 30000);
}

document.addEventListener("DOMContentLoaded", () => {
  const badge = document.getElementById("handoff-badge");
  if (badge) refreshHandoffs(badge);
});

// Person page: "显示完整号码" fetches that one number and shows it in place; without
// scripts the form posts and the page comes back with the number.
document.addEventListener("submit", async (e) => {
  const form = e.target;
  if (!form.classList || !form.classList.contains("reveal")) return;
  e.preventDefault();
  const resp = await fetch(form.action, {
    method: "POST", credentials: "same-origin", body: new FormData(form),
    headers: {"Accept": "application/json", "X-CSRF-Token": csrfToken()},
  });
  if (resp.status === 401 || resp.redirected) { window.location.reload(); return; }
  const answer = await resp.json().catch(() => ({}));
  const shown = form.previousElementSibling;
  if (!resp.ok || !answer.number) { shown.textContent += "（" + (answer.error || "无法显示") + "）"; return; }
  const full = document.createElement("b");
  full.className = "full";
  full.textContent = answer.number;
  shown.replaceChildren(full);
  form.remove();
});

// Application page: a status that needs a reason (未通过) makes the note required.
document.addEventListener("change", (e) => {
  const select = e.target;
  if (!(select instanceof HTMLSelectElement) || select.form?.id !== "status-form") return;
  const chosen = select.selectedOptions[0];
  const note = select.form.elements.namedItem("note");
  if (note.dataset.example === undefined) note.dataset.example = note.placeholder;
  note.required = Boolean(chosen && "noteRequired" in chosen.dataset);
  note.placeholder = note.required ? "请写明未通过的原因，申请人会收到" : note.dataset.example;
});
