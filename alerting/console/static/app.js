// The responder app: the current task, its steps and outcome, and the phone's position.
// Steps are queued in localStorage with an idempotency key and sent in order, retried until the service
// answers, so a step taken in a dead spot is not lost and a retried one is not taken twice.
"use strict";

const TOKEN_KEY = "fw-app-token";
const QUEUE_KEY = "fw-app-queue";
const POLL_MS = 5000;
const RETRY_MS = 3000;
const HEARTBEAT_MS = 30000;
const STATE_NAMES = { assigned: "assigned", acknowledged: "acknowledged", en_route: "en route", on_scene: "on scene", resolved: "resolved" };

let token = localStorage.getItem(TOKEN_KEY) || "";
let me = null;
let current = null;
let levels = {};
let lastPosition = null;
let flushing = false;

const $ = (id) => document.getElementById(id);

function newKey() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return Date.now().toString(36) + Math.random().toString(36).slice(2);
}

function queue() {
  try { return JSON.parse(localStorage.getItem(QUEUE_KEY) || "[]"); } catch { return []; }
}

function saveQueue(items) {
  localStorage.setItem(QUEUE_KEY, JSON.stringify(items));
  const n = items.length;
  $("queue").textContent = n ? `${n} step${n > 1 ? "s" : ""} waiting to be sent…` : "";
}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: `Bearer ${token}` }, options.headers || {});
  if (options.body) headers["Content-Type"] = "application/json";
  return fetch(path, Object.assign({}, options, { headers, cache: "no-store" }));
}

function setOnline(ok) {
  const net = $("net");
  net.textContent = ok ? "online" : "offline: steps are kept";
  net.classList.toggle("offline", !ok);
}

async function login() {
  $("login-error").textContent = "";
  token = $("app-token").value.trim() || token;
  try {
    const answer = await api("/api/me");
    if (answer.status === 401) throw new Error("unknown token");
    const who = await answer.json();
    if (who.role !== "responder") throw new Error("this page is for responders; dispatchers use the console");
    me = who;
    localStorage.setItem(TOKEN_KEY, token);
    $("who").textContent = `${who.name} · ${who.responder_id}`;
    $("login").hidden = true;
    $("main").hidden = false;
    setOnline(true);
    saveQueue(queue());
    startPosition();
    await refresh();
    flush();
  } catch (err) {
    $("login-error").textContent = err instanceof TypeError ? "no connection; try again" : String(err.message || err);
  }
}

function logout() {
  localStorage.removeItem(TOKEN_KEY);
  token = "";
  me = null;
  $("main").hidden = true;
  $("login").hidden = false;
}

async function refresh() {
  if (!me) return;
  try {
    const answer = await api("/api/my/task");
    if (answer.status === 401) { logout(); return; }
    if (!answer.ok) throw new Error(`status ${answer.status}`);
    const body = await answer.json();
    setOnline(true);
    render(body.task, body.me);
  } catch {
    setOnline(false);
  }
}

function render(task, here) {
  current = task;
  $("duty-available").classList.toggle("active", here && here.status === "available");
  $("duty-off").classList.toggle("active", here && here.status === "off_duty");
  $("empty").hidden = !!task;
  $("task").hidden = !task;
  if (!task) return;
  const lv = levels[task.level] || { name: `level ${task.level}`, css_class: "" };
  const badge = $("level");
  badge.textContent = lv.name;
  badge.className = `level ${lv.css_class}`;
  const pending = queue().filter((a) => a.task === task.task_id);
  const shownState = pending.length ? pending[pending.length - 1].body.state : task.state;
  $("state").textContent = STATE_NAMES[shownState] || shownState;
  const phone = $("phone");
  phone.textContent = task.subscriber || "(no number)";
  phone.href = task.subscriber ? `tel:${task.subscriber}` : "#";
  const reasons = $("reasons");
  reasons.replaceChildren(...(task.reasons || []).map((r) => { const li = document.createElement("li"); li.textContent = r; return li; }));
  const link = $("map-link");
  if (task.lat != null && task.lon != null) {
    // geo: opens the phone's own map app (Android and most others); nothing is loaded from a map site here.
    link.href = `geo:${task.lat},${task.lon}?q=${task.lat},${task.lon}`;
    link.textContent = `Open in maps (${task.lat.toFixed(5)}, ${task.lon.toFixed(5)})`;
    link.hidden = false;
  } else {
    link.hidden = true;
  }
  $("distance").textContent = task.distance_km != null ? `${task.distance_km.toFixed(1)} km from your last position` : "";
  const order = ["assigned", "acknowledged", "en_route", "on_scene"];
  const at = order.indexOf(shownState);
  for (const state of ["acknowledged", "en_route", "on_scene"]) {
    $(`step-${state}`).disabled = order.indexOf(state) !== at + 1; // the lifecycle goes one step at a time
  }
  for (const button of document.querySelectorAll("[data-outcome]")) button.disabled = at < 1;
}

function enqueue(taskId, body) {
  const items = queue();
  items.push({ task: taskId, key: newKey(), body });
  saveQueue(items);
  if (current) render(current, null);
  flush();
}

async function flush() {
  if (flushing || !me) return;
  flushing = true;
  try {
    let items = queue();
    while (items.length) {
      const action = items[0];
      let answer;
      try {
        answer = await api(`/api/tasks/${encodeURIComponent(action.task)}/transition`, {
          method: "POST",
          headers: { "Idempotency-Key": action.key },
          body: JSON.stringify(action.body),
        });
      } catch {
        setOnline(false);
        break; // no connection: keep the step, try again later
      }
      setOnline(true);
      if (answer.status === 401) { logout(); break; }
      if (answer.status >= 500 || answer.status === 429) break; // the service will take it later
      items = queue().slice(1); // done, or refused for good (the task moved on): either way not sent again
      saveQueue(items);
      if (!answer.ok) {
        const why = await answer.json().catch(() => ({}));
        $("message").textContent = `Step not taken: ${why.error || answer.status}`;
      } else if (action.body.state === "resolved") {
        $("message").textContent = "Outcome recorded. Thank you.";
        $("note").value = "";
      }
    }
  } finally {
    flushing = false;
  }
  if (queue().length) setTimeout(flush, RETRY_MS);
  refresh();
}

function startPosition() {
  if (!navigator.geolocation) return;
  navigator.geolocation.watchPosition(
    (pos) => {
      const first = lastPosition === null;
      lastPosition = { lat: pos.coords.latitude, lon: pos.coords.longitude };
      $("position").textContent = `position ±${Math.round(pos.coords.accuracy)} m`;
      if (first) heartbeat();
    },
    () => { $("position").textContent = "position unavailable"; },
    { enableHighAccuracy: true, maximumAge: 15000, timeout: 20000 },
  );
}

async function heartbeat(status) {
  if (!me || (!lastPosition && !status)) return;
  const body = Object.assign({}, lastPosition || {}, status ? { status } : {});
  if (body.lat == null) return;
  try {
    await api(`/api/responders/${encodeURIComponent(me.responder_id)}/heartbeat`, { method: "POST", body: JSON.stringify(body) });
    setOnline(true);
  } catch {
    setOnline(false);
  }
  refresh();
}

async function loadLevels() {
  try {
    const body = await (await fetch("/levels.json")).json();
    for (const lv of body.levels) levels[lv.level] = lv;
  } catch { /* styles only */ }
}

document.addEventListener("DOMContentLoaded", async () => {
  await loadLevels();
  $("app-login").addEventListener("click", login);
  $("app-token").addEventListener("keydown", (e) => { if (e.key === "Enter") login(); });
  $("logout").addEventListener("click", logout);
  for (const state of ["acknowledged", "en_route", "on_scene"]) {
    $(`step-${state}`).addEventListener("click", () => { if (current) enqueue(current.task_id, { state }); });
  }
  for (const button of document.querySelectorAll("[data-outcome]")) {
    button.addEventListener("click", () => {
      if (!current) return;
      const note = $("note").value.trim();
      enqueue(current.task_id, Object.assign({ state: "resolved", outcome: button.dataset.outcome }, note ? { note } : {}));
    });
  }
  for (const button of document.querySelectorAll("[data-status]")) {
    button.addEventListener("click", () => heartbeat(button.dataset.status));
  }
  window.addEventListener("online", flush);
  setInterval(refresh, POLL_MS);
  setInterval(() => heartbeat(), HEARTBEAT_MS);
  if ("serviceWorker" in navigator) navigator.serviceWorker.register("/app/sw.js").catch(() => {});
  if (token) login();
});
