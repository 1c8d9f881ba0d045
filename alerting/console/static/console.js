// fraudwatch dispatch console. Plain browser JS, no build step, no external resources.
// Every value from the server is put into the page with textContent (never innerHTML).
"use strict";

const TOKEN_KEY = "fw_console_token";
const OUTCOMES = ["dissuaded", "money_lost", "false_alarm", "unreachable"];
// Forward steps a button offers, per current state (the server checks them again).
const NEXT = { assigned: ["acknowledged"], acknowledged: ["en_route"], en_route: ["on_scene"] };
const STEP_LABEL = { acknowledged: "Acknowledge", en_route: "En route", on_scene: "On scene" };
const ASSIGNABLE = new Set(["created", "assigned", "acknowledged", "en_route"]);
const RESOLVABLE = new Set(["created", "assigned", "acknowledged", "en_route", "on_scene"]);
const SVG_NS = "http://www.w3.org/2000/svg";

const state = { me: null, cases: [], responders: [], clockOffset: 0, source: null, refreshTimer: null, levels: {} };
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) if (c) node.append(c);
  return node;
}

function say(message) {
  const s = $("status");
  s.textContent = message;
  s.classList.add("show");
  clearTimeout(say.timer);
  say.timer = setTimeout(() => s.classList.remove("show"), 3000);
}

// Level names come from the server's level table (core/levels.py); a level it does not know shows its number.
function levelName(n) { return (state.levels[n] && state.levels[n].name) || "level " + n; }

async function loadLevels() {
  try {
    const response = await fetch("/levels.json", { cache: "no-store" });
    if (response.ok) for (const l of (await response.json()).levels) state.levels[l.level] = l;
  } catch (_) { /* names are a nicety: the page works with numbers */ }
}

function token() { return sessionStorage.getItem(TOKEN_KEY); }

async function api(path, options = {}) {
  const headers = { Authorization: "Bearer " + token() };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body !== undefined ? JSON.stringify(options.body) : undefined,
    cache: "no-store",
  });
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (response.status === 401) { logout("Session not valid any more: log in again."); throw new Error("unauthenticated"); }
  if (!response.ok) throw new Error((data && data.error) || "HTTP " + response.status);
  return data;
}

// --- login ----------------------------------------------------------------------------------------------

async function login(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
  try {
    state.me = await api("/api/me");
  } catch (err) {
    sessionStorage.removeItem(TOKEN_KEY);
    $("login-error").textContent = "Login failed: " + err.message;
    return;
  }
  $("login-error").textContent = "";
  $("login").hidden = true;
  $("console").hidden = false;
  $("logout").hidden = false;
  $("who").textContent = state.me.name + " (" + state.me.role + ")";
  await refresh();
  connectEvents();
}

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (state.source) { state.source.close(); state.source = null; }
  state.me = null;
  $("console").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("who").textContent = "";
  setLive(false);
  if (message) $("login-error").textContent = message;
}

// --- data -----------------------------------------------------------------------------------------------

async function refresh() {
  if (!state.me) return;
  try {
    const cases = await api("/api/cases");
    state.clockOffset = cases.now_ms - Date.now();
    state.cases = cases.cases;
    if (state.me.role !== "responder") state.responders = (await api("/api/responders")).responders;
    render();
  } catch (err) {
    if (err.message !== "unauthenticated") say("Refresh failed: " + err.message);
  }
}

function scheduleRefresh() {
  // Bursts of changes (a replay, many heartbeats) become one re-read.
  if (state.refreshTimer) return;
  state.refreshTimer = setTimeout(() => { state.refreshTimer = null; refresh(); }, 250);
}

function setLive(on) {
  const live = $("live");
  live.textContent = on ? "live" : "offline";
  live.className = "live " + (on ? "on" : "off");
}

async function connectEvents() {
  if (!state.me) return;
  if (state.source) state.source.close();
  let ticket;
  try {
    ticket = await api("/api/events/ticket", { method: "POST", body: {} });
  } catch (err) {
    setLive(false);
    setTimeout(connectEvents, 5000);
    return;
  }
  const source = new EventSource(ticket.url);
  state.source = source;
  source.onopen = () => { setLive(true); scheduleRefresh(); };
  source.onmessage = () => scheduleRefresh();
  source.onerror = () => {
    setLive(false);
    // The browser retries by itself with the same URL; once the ticket has expired that fails for good.
    if (source.readyState === EventSource.CLOSED && state.source === source) setTimeout(connectEvents, 3000);
  };
}

async function act(taskId, path, body, label) {
  try {
    await api("/api/tasks/" + encodeURIComponent(taskId) + path, { method: "POST", body });
    say(label + ": done");
  } catch (err) {
    say(label + " failed: " + err.message);
  }
  await refresh();
}

async function showTimeline(caseKey) {
  let data;
  try {
    data = await api("/api/cases/" + encodeURIComponent(caseKey) + "/timeline");
  } catch (err) {
    say("Timeline failed: " + err.message);
    return;
  }
  const panel = $("timeline-panel");
  $("timeline-title").textContent = "Case " + caseKey + " · level " + data.level + " · " + data.decisions + " scored events";
  const scored = $("timeline-scored");
  scored.replaceChildren(...data.scored.map((e) => el("li", {
    text: new Date(e.ts_ms).toLocaleString() + " · score " + e.score.toFixed(3) + " → L" + e.level +
      (e.in_call ? " · on a call" : "") + (e.hold ? " · hold" : "") + " · " + (e.reasons[0] || ""),
  })));
  const actions = $("timeline-actions");
  actions.replaceChildren(...data.actions.map((a) => el("li", {
    text: new Date(a.at_ms).toLocaleString() + " · " + String(a.state).replace("_", " ") +
      (a.actor ? " · by " + a.actor : "") + (a.responder_id ? " · " + a.responder_id : "") +
      (a.outcome ? " · " + a.outcome : "") + (a.reason ? " (" + a.reason + ")" : "") + (a.note ? " · “" + a.note + "”" : ""),
  })));
  panel.hidden = false;
  panel.scrollIntoView({ block: "nearest" });
}

async function searchClosed() {
  const params = new URLSearchParams();
  for (const [name, id] of [["case", "closed-case"], ["responder", "closed-responder"], ["number", "closed-number"]]) {
    const value = $(id).value.trim();
    if (value) params.set(name, value);
  }
  const from = $("closed-from").value, to = $("closed-to").value;
  if (from) params.set("from_ms", String(Date.parse(from + "T00:00:00")));
  if (to) params.set("to_ms", String(Date.parse(to + "T23:59:59")));
  let data;
  try {
    data = await api("/api/closed?" + params.toString());
  } catch (err) {
    say("Search failed: " + err.message);
    return;
  }
  const list = $("closed-results");
  if (!data.tasks.length) { list.replaceChildren(el("li", { class: "empty", text: "Nothing found." })); return; }
  list.replaceChildren(...data.tasks.map((t) => el("li", { "data-task-id": t.task_id },
    new Date(t.resolved_ms).toLocaleString() + " · L" + t.level + " · " + (t.outcome || "") + " · " +
      (t.subscriber || "") + " · " + (t.responder_id || "nobody") + " · ",
    el("button", { type: "button", class: "timeline-button", text: "Timeline", onclick: () => showTimeline(t.case_key) }))));
}

// --- rendering ------------------------------------------------------------------------------------------

function ageText(openedMs) {
  const s = Math.max(0, Math.round((Date.now() + state.clockOffset - openedMs) / 1000));
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

function taskActions(task) {
  const box = el("div", { class: "actions" });
  const role = state.me.role;
  const own = role !== "responder" || task.responder_id === state.me.responder_id;
  if (!own) return box;
  for (const next of NEXT[task.state] || []) {
    box.append(el("button", {
      type: "button", class: "primary", text: STEP_LABEL[next],
      "data-action": next, "data-task": task.task_id,
      onclick: () => act(task.task_id, "/transition", { state: next }, STEP_LABEL[next]),
    }));
  }
  if (role !== "responder" && ASSIGNABLE.has(task.state)) {
    const pick = el("select", { "data-role": "assign-select", "data-task": task.task_id });
    pick.append(el("option", { value: "", text: "assign to…" }));
    for (const r of state.responders) {
      if (r.status !== "available" || r.responder_id === task.responder_id) continue;
      pick.append(el("option", { value: r.responder_id, text: r.responder_id + " · " + r.unit + (r.stale ? " (stale)" : "") }));
    }
    const go = el("button", { type: "button", text: "Assign", "data-action": "assign", "data-task": task.task_id });
    go.onclick = () => { if (pick.value) act(task.task_id, "/assign", { responder_id: pick.value }, "Assign"); };
    box.append(el("div", { class: "group" }, pick, go));
  }
  if (RESOLVABLE.has(task.state) && (role !== "responder" || task.state !== "assigned")) {
    const outcome = el("select", { "data-role": "outcome-select", "data-task": task.task_id });
    for (const o of OUTCOMES) outcome.append(el("option", { value: o, text: o.replace("_", " ") }));
    const done = el("button", { type: "button", text: "Record outcome", "data-action": "resolve", "data-task": task.task_id });
    done.onclick = () => act(task.task_id, "/transition", { state: "resolved", outcome: outcome.value }, "Outcome");
    box.append(el("div", { class: "group" }, outcome, done));
  }
  return box;
}

// A case's payment holds: state per transfer, and a Release button while the bank still holds it.
function holdsCell(c) {
  const cell = el("td", { class: "holds", "data-label": "Holds" });
  for (const h of c.holds || []) {
    const line = el("div", { class: "hold", "data-hold-id": h.hold_id },
      el("span", { class: "hold-state state-" + h.state, text: h.state }),
      el("div", { class: "muted", text: h.amount + " " + h.currency + " → " + h.payee_account }));
    if (h.state === "held" && state.me.role !== "responder") {
      line.append(el("button", {
        type: "button", text: "Release", "data-action": "release-hold", "data-hold": h.hold_id,
        onclick: () => releaseHold(h.hold_id),
      }));
    }
    cell.append(line);
  }
  return cell;
}

async function releaseHold(holdId) {
  try {
    await api("/api/holds/" + encodeURIComponent(holdId) + "/release", { method: "POST", body: {} });
    say("Release hold: done");
  } catch (err) {
    say("Release hold failed: " + err.message);
  }
  await refresh();
}

function renderQueue() {
  const body = $("queue-body");
  body.replaceChildren();
  const wantLevel = $("filter-level").value, wantState = $("filter-state").value;
  const wantText = $("filter-text").value.trim().toLowerCase();
  const wantUnit = $("filter-unit").value;
  const units = unitAreas();
  syncUnitOptions(units);
  const unitOfResponder = new Map(state.responders.map((r) => [r.responder_id, r.unit]));
  const inUnit = (c) => c.tasks.some((t) => t.responder_id && unitOfResponder.get(t.responder_id) === wantUnit) ||
    (c.lat != null && c.lon != null && unitOf(units, c.lat, c.lon) === wantUnit);
  const shown = state.cases.filter((c) =>
    (!wantLevel || String(c.level) === wantLevel) &&
    (!wantUnit || inUnit(c)) &&
    (!wantState || c.tasks.some((t) => t.state === wantState)) &&
    (!wantText || [c.case_key, c.subscriber, ...c.tasks.map((t) => t.responder_id || "")].some((v) => String(v).toLowerCase().includes(wantText))));
  $("case-count").textContent = shown.length === state.cases.length ? "(" + shown.length + ")" : "(" + shown.length + " of " + state.cases.length + ")";
  $("empty").hidden = shown.length > 0;
  for (const c of shown) {
    const reasons = el("ul", { class: "reasons" });
    for (const r of c.reasons) reasons.append(el("li", { text: r }));
    const taskCell = el("td", { "data-label": "Task" });
    const actionCell = el("td", { "data-label": "Actions" });
    for (const t of c.tasks) {
      taskCell.append(el("div", { class: "task", "data-task-id": t.task_id },
        el("span", { class: "task-state state-" + t.state, text: t.state.replace("_", " ") }),
        el("div", { class: "muted", text: "L" + t.level + " " + levelName(t.level) + " · " + (t.responder_id || "nobody assigned") })));
      actionCell.append(taskActions(t));
    }
    const row = el("tr", { "data-case-key": c.case_key },
      el("td", { "data-label": "Level" }, el("span", { class: "level level-" + c.level, text: String(c.level), title: levelName(c.level) })),
      el("td", { class: "age", "data-label": "Age", "data-opened": String(c.opened_ms), text: ageText(c.opened_ms) }),
      el("td", { class: "subscriber", "data-label": "Subscriber" }, el("span", { class: "number", text: c.subscriber }),
        el("div", {}, el("button", { type: "button", class: "timeline-button", "data-case": c.case_key, text: "Timeline",
          onclick: () => showTimeline(c.case_key) }))),
      el("td", { "data-label": "Why" }, reasons),
      taskCell,
      actionCell,
      holdsCell(c));
    body.append(row);
  }
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function renderMap() {
  const map = $("map");
  map.replaceChildren();
  const pts = [];
  for (const c of state.cases) if (c.lat != null && c.lon != null) pts.push([c.lat, c.lon]);
  for (const r of state.responders) if (Number.isFinite(r.lat) && Number.isFinite(r.lon)) pts.push([r.lat, r.lon]);
  const W = 600, H = 600, PAD = 24;
  map.append(svg("rect", { x: 1, y: 1, width: W - 2, height: H - 2, class: "frame" }));
  if (!pts.length) return;
  let [minLat, maxLat, minLon, maxLon] = [Infinity, -Infinity, Infinity, -Infinity];
  for (const [la, lo] of pts) { minLat = Math.min(minLat, la); maxLat = Math.max(maxLat, la); minLon = Math.min(minLon, lo); maxLon = Math.max(maxLon, lo); }
  // Equirectangular with the longitude shrunk by cos(latitude), one scale for both axes: a city keeps its shape.
  const kx = Math.cos(((minLat + maxLat) / 2) * Math.PI / 180);
  const spanX = Math.max((maxLon - minLon) * kx, 1e-4), spanY = Math.max(maxLat - minLat, 1e-4);
  const scale = Math.min((W - 2 * PAD) / spanX, (H - 2 * PAD) / spanY);
  const ox = (W - spanX * scale) / 2, oy = (H - spanY * scale) / 2;
  const xy = (la, lo) => [ox + (lo - minLon) * kx * scale, H - (oy + (la - minLat) * scale)];
  const where = new Map(state.responders.map((r) => [r.responder_id, r]));
  // The grid units, drawn as the area their responders cover (padded bounding box): where a case falls.
  const units = unitAreas();
  for (const u of units) {
    const [x1, y1] = xy(u.maxLat, u.minLon), [x2, y2] = xy(u.minLat, u.maxLon);
    const box = svg("rect", { x: x1, y: y1, width: Math.max(x2 - x1, 1), height: Math.max(y2 - y1, 1), class: "unit", "data-unit": u.unit });
    const title = svg("title", {});
    title.textContent = "unit " + u.unit + " · " + u.count + " responders";
    box.append(title);
    map.append(box);
    const label = svg("text", { x: Math.max(x1, 2) + 4, y: Math.max(y1, 2) + 14, class: "unit-label" });
    label.textContent = u.unit;
    map.append(label);
  }
  for (const c of state.cases) {
    if (c.lat == null || c.lon == null) continue;
    const [x, y] = xy(c.lat, c.lon);
    for (const t of c.tasks) {
      const r = t.responder_id && where.get(t.responder_id);
      if (r) { const [rx, ry] = xy(r.lat, r.lon); map.append(svg("line", { x1: x, y1: y, x2: rx, y2: ry, class: "link" })); }
    }
  }
  for (const r of state.responders) {
    if (!Number.isFinite(r.lat)) continue;
    const [x, y] = xy(r.lat, r.lon);
    const dot = svg("circle", { cx: x, cy: y, r: 4, class: "responder " + r.status + (r.stale ? " stale" : ""), "data-responder": r.responder_id });
    const title = svg("title", {});
    title.textContent = r.responder_id + " · " + r.kind + " · " + r.unit + " · " + r.status + (r.stale ? " (no heartbeat)" : "");
    dot.append(title);
    map.append(dot);
  }
  for (const c of state.cases) {
    if (c.lat == null || c.lon == null) continue;
    const [x, y] = xy(c.lat, c.lon);
    const dot = svg("circle", { cx: x, cy: y, r: 4 + 2 * c.level, class: "case level-" + c.level, "data-case": c.case_key });
    const title = svg("title", {});
    const unit = unitOf(units, c.lat, c.lon);
    title.textContent = "L" + c.level + " " + levelName(c.level) + " · " + c.subscriber + (unit ? " · unit " + unit : "") + " · " + (c.reasons[0] || "");
    dot.append(title);
    map.append(dot);
  }
}

function syncUnitOptions(units) {
  const select = $("filter-unit");
  const have = new Set([...select.options].map((o) => o.value));
  for (const u of [...units].sort((a, b) => a.unit.localeCompare(b.unit))) {
    if (!have.has(u.unit)) select.append(el("option", { value: u.unit, text: u.unit }));
  }
}

function unitAreas() {
  const byUnit = new Map();
  for (const r of state.responders) {
    if (!Number.isFinite(r.lat) || !Number.isFinite(r.lon) || !r.unit) continue;
    const u = byUnit.get(r.unit) || { unit: r.unit, minLat: Infinity, maxLat: -Infinity, minLon: Infinity, maxLon: -Infinity, count: 0 };
    u.minLat = Math.min(u.minLat, r.lat); u.maxLat = Math.max(u.maxLat, r.lat);
    u.minLon = Math.min(u.minLon, r.lon); u.maxLon = Math.max(u.maxLon, r.lon);
    u.count += 1;
    byUnit.set(r.unit, u);
  }
  const out = [...byUnit.values()];
  for (const u of out) {
    const padLat = Math.max((u.maxLat - u.minLat) * 0.1, 0.002), padLon = Math.max((u.maxLon - u.minLon) * 0.1, 0.002);
    u.minLat -= padLat; u.maxLat += padLat; u.minLon -= padLon; u.maxLon += padLon;
  }
  return out;
}

function unitOf(units, lat, lon) {
  // The smallest unit area holding the point; else the unit whose area's centre is nearest.
  const holding = units.filter((u) => lat >= u.minLat && lat <= u.maxLat && lon >= u.minLon && lon <= u.maxLon);
  const area = (u) => (u.maxLat - u.minLat) * (u.maxLon - u.minLon);
  if (holding.length) return holding.sort((a, b) => area(a) - area(b))[0].unit;
  let best = null, bestD = Infinity;
  for (const u of units) {
    const d = Math.hypot((u.minLat + u.maxLat) / 2 - lat, (u.minLon + u.maxLon) / 2 - lon);
    if (d < bestD) { best = u.unit; bestD = d; }
  }
  return best;
}

function render() {
  renderQueue();
  renderMap();
}

// --- start ----------------------------------------------------------------------------------------------

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("token").value.trim();
  $("token").value = "";
  if (value) login(value);
});
$("logout").addEventListener("click", () => logout(""));
$("timeline-close").addEventListener("click", () => { $("timeline-panel").hidden = true; });
$("closed-form").addEventListener("submit", (event) => { event.preventDefault(); searchClosed(); });
for (const id of ["filter-level", "filter-state", "filter-unit"]) $(id).addEventListener("change", renderQueue);
$("filter-text").addEventListener("input", renderQueue);
setInterval(() => {
  for (const cell of document.querySelectorAll("td.age")) cell.textContent = ageText(Number(cell.dataset.opened));
}, 1000);
setInterval(scheduleRefresh, 30000); // a safety net should a notice be lost
loadLevels().then(() => { if (token()) login(token()); });
