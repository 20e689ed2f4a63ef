// The citybrain operator dashboard. Every string that comes from an event or an operator
// is put on the page with textContent, never as HTML.
"use strict";

const TOKEN_KEY = "citybrain.token";
const PAGE = 50;
const MAX_ROWS = 1000;            // rows kept on screen; older ones are dropped
const STATUSES = ["new", "acknowledged", "resolved", "false_positive"];
const LABELS = { new: "new", acknowledged: "acknowledged", resolved: "resolved",
                 false_positive: "false positive", red_light: "red light",
                 illegal_parking: "illegal parking" };
const TYPE_COLOURS = { red_light: "#e5484d", illegal_parking: "#f5a524" };

const $ = (id) => document.getElementById(id);
const state = {
  token: null, me: null, entries: new Map(), order: [], cursor: null, selected: null,
  lastEventId: null, stream: null, filters: {}, series: null,
};

// ---- small helpers -------------------------------------------------------------------
function text(value) { return value === null || value === undefined ? "" : String(value); }
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "text") node.textContent = text(v); else if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.appendChild(c instanceof Node ? c : document.createTextNode(text(c)));
  return node;
}
function score(entryId) { const [ms, n] = entryId.split("-").map(Number); return ms * 1000 + n; }
function when(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  const today = d.toDateString() === new Date().toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}
function label(v) { return LABELS[v] || text(v); }
function pill(kind, value) { return el("span", { class: `pill ${kind}-${value}`, text: label(value) }); }

class HttpError extends Error {
  constructor(status, body) { super(body && body.error ? body.error : `HTTP ${status}`);
                              this.status = status; this.body = body; }
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${state.token}`, ...(options.headers || {}) };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { ...options, headers });
  const body = resp.headers.get("content-type")?.includes("json") ? await resp.json() : null;
  if (resp.status === 401) { signOut("Your token is no longer accepted; sign in again."); }
  if (!resp.ok) throw new HttpError(resp.status, body);
  return body;
}

// ---- sign in ------------------------------------------------------------------------
async function signIn(token) {
  state.token = token;
  try {
    state.me = await api("/api/me");
  } catch (err) {
    state.token = null;
    throw err;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("signin").hidden = true; $("app").hidden = false;
  $("who").textContent = state.me.name ? `${state.me.name} (${state.me.role})` : "anonymous (read only)";
  await reload();
  refreshTiles(); refreshChart();
  connect();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  if (state.stream) state.stream.abort();
  $("app").hidden = true; $("signin").hidden = false;
  $("signin-error").textContent = message || "";
}

// ---- the feed -----------------------------------------------------------------------
function filterQuery() {
  const params = new URLSearchParams();
  const form = new FormData($("filters"));
  for (const name of ["status", "city", "district", "type", "priority", "camera_id"]) {
    const v = text(form.get(name)).trim();
    if (v) params.set(name, v);
  }
  for (const [name, param] of [["since", "since_ms"], ["until", "until_ms"]]) {
    const v = form.get(name);
    if (v) params.set(param, String(new Date(v).getTime()));
  }
  return params;
}

function matches(e) {
  const f = filterQuery();
  for (const [k, v] of f) {
    if (k === "since_ms") { if (Number(e.entry_id.split("-")[0]) < Number(v)) return false; }
    else if (k === "until_ms") { if (Number(e.entry_id.split("-")[0]) > Number(v)) return false; }
    else if (text(e[k]) !== v) return false;
  }
  return true;
}

async function reload() {
  state.entries.clear(); state.order = []; state.cursor = null;
  $("rows").replaceChildren();
  await loadPage();
}

async function loadPage() {
  const params = filterQuery();
  params.set("limit", String(PAGE));
  if (state.cursor !== null) params.set("cursor", String(state.cursor));
  const page = await api(`/api/entries?${params}`);
  if (state.lastEventId === null) state.lastEventId = page.last_change_id;
  for (const e of page.entries) addRow(e, { top: false });
  state.cursor = page.next_cursor;
  $("older").hidden = page.next_cursor === null;
  render();
}

function addRow(e, { top }) {
  if (state.entries.has(e.violation_id)) { updateRow(e); return; }
  state.entries.set(e.violation_id, e);
  const row = buildRow(e);
  if (top) {
    state.order.unshift(e.violation_id);
    $("rows").prepend(row);
    row.classList.add("fresh");
  } else {
    state.order.push(e.violation_id);
    $("rows").appendChild(row);
  }
  while (state.order.length > MAX_ROWS) {
    const gone = state.order.pop();
    state.entries.delete(gone);
    rowOf(gone)?.remove();
    // "Load older" now continues below the oldest row kept.
    state.cursor = score(state.entries.get(state.order[state.order.length - 1]).entry_id);
    $("older").hidden = false;
  }
}

function rowOf(vid) {
  for (const row of $("rows").children) if (row.dataset.violationId === vid) return row;
  return null;
}

function buildRow(e) {
  const row = el("tr");
  row.dataset.violationId = e.violation_id;
  const cells = [
    when(e.ts_ms), pill("type", e.type), el("span", { class: `prio-${e.priority}`, text: e.priority }),
    `${text(e.city)} / ${text(e.district)}`, e.location || "", e.camera_id,
    e.repeat_count ? `+${e.repeat_count}` : "", pill("st", e.status),
  ];
  for (const c of cells) row.appendChild(el("td", {}, c));
  row.addEventListener("click", () => select(e.violation_id));
  if (state.selected === e.violation_id) row.classList.add("selected");
  return row;
}

function updateRow(e) {
  const old = state.entries.get(e.violation_id);
  if (old && old.version > e.version) return;   // an older view arriving late
  state.entries.set(e.violation_id, e);
  const row = rowOf(e.violation_id);
  if (row) row.replaceWith(buildRow(e));
  if (state.selected === e.violation_id) showDetail(e);
}

function render() { $("empty").hidden = state.order.length > 0; }

// ---- detail panel -------------------------------------------------------------------
async function select(vid) {
  state.selected = vid;
  for (const row of $("rows").children) row.classList.toggle("selected", row.dataset.violationId === vid);
  rowOf(vid)?.scrollIntoView({ block: "nearest" });
  $("d-message").textContent = "";
  showDetail(state.entries.get(vid));
  await loadHistory(vid);
}

function evidenceUrl(path) {
  // Evidence is stored as <evidence dir>/<camera>/<file>; the server serves that dir.
  const parts = text(path).split("/").filter(Boolean).slice(-2);
  return "/evidence/" + parts.map(encodeURIComponent).join("/");
}

async function evidenceImage(path, caption) {
  const figure = el("figure", {}, el("figcaption", { text: caption }));
  try {
    // Fetched with the token (an <img src> cannot send it), shown from a blob: URL.
    const resp = await fetch(evidenceUrl(path), { headers: { Authorization: `Bearer ${state.token}` } });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    const img = el("img", { alt: caption });
    img.src = URL.createObjectURL(await resp.blob());
    figure.prepend(img);
  } catch (err) {
    figure.appendChild(el("span", { class: "muted", text: ` (not available: ${err.message})` }));
  }
  return figure;
}

function evidencePaths(e) {
  // The crop, the full frame beside it, and any further evidence fields an event carries
  // (e.g. a three-panel red-light image or a clip).
  const found = [];
  if (e.snapshot) {
    found.push([e.snapshot, "crop"]);
    found.push([text(e.snapshot).replace(/\.jpg$/, "-scene.jpg"), "full frame"]);
  }
  for (const [k, v] of Object.entries(e)) {
    if (k !== "snapshot" && typeof v === "string" && /(evidence|snapshot|panel|clip|frame_image)/.test(k)
        && /\.(jpe?g|png|mp4|webm|avi)$/i.test(v)) found.push([v, k]);
  }
  return found;
}

async function showDetail(e) {
  if (!e) { $("detail").hidden = true; return; }
  $("detail").hidden = false;
  $("d-title").textContent = `${label(e.type)} at ${e.location || e.camera_id}`;
  $("d-status").replaceChildren(pill("st", e.status), ` version ${e.version}`,
    e.status_by ? ` · by ${e.status_by} at ${when(e.status_ts_ms)}` : "");
  const may = (state.me && state.me.may_set && state.me.may_set[e.status]) || [];
  for (const b of document.querySelectorAll("#detail [data-status]")) b.disabled = !may.includes(b.dataset.status);
  const fields = $("d-fields");
  fields.replaceChildren(...Object.entries(e).map(([k, v]) =>
    el("tr", {}, el("td", { text: k }), el("td", { text: typeof v === "object" && v !== null ? JSON.stringify(v) : v }))));
  const box = $("d-evidence");
  const vid = e.violation_id;
  if (box.dataset.violationId !== vid) {
    box.dataset.violationId = vid;
    box.replaceChildren();
    for (const [path, caption] of evidencePaths(e)) {
      if (/\.(mp4|webm|avi)$/i.test(path)) {
        box.appendChild(el("a", { href: evidenceUrl(path), text: `${caption} (video)` }));
      } else {
        const figure = await evidenceImage(path, caption);
        if (box.dataset.violationId === vid) box.appendChild(figure);
      }
    }
  }
}

async function loadHistory(vid) {
  try {
    const history = await api(`/api/entries/${encodeURIComponent(vid)}/history`);
    if (state.selected !== vid) return;
    $("d-history").replaceChildren(...history.map((h) => el("li", {},
      `${when(h.ts_ms)}: ${h.operator} `, pill("st", h.from_status), " → ", pill("st", h.status),
      h.note ? ` “${h.note}”` : "")));
    if (!history.length) $("d-history").replaceChildren(el("li", { class: "muted", text: "no changes yet" }));
  } catch (err) {
    $("d-history").replaceChildren(el("li", { class: "error", text: err.message }));
  }
}

async function act(status) {
  const e = state.entries.get(state.selected);
  if (!e) return;
  const may = (state.me && state.me.may_set && state.me.may_set[e.status]) || [];
  if (!may.includes(status)) { $("d-message").textContent = `cannot set ${label(status)} from ${label(e.status)}`; return; }
  try {
    const body = JSON.stringify({ status, note: $("d-note").value, version: e.version });
    const updated = await api(`/api/entries/${encodeURIComponent(e.violation_id)}/status`, { method: "POST", body });
    $("d-note").value = ""; $("d-message").textContent = "";
    updateRow(updated);
    await loadHistory(updated.violation_id);
  } catch (err) {
    $("d-message").textContent = err.message;
    if (err.status === 409 && err.body && err.body.current) updateRow(err.body.current);
  }
}

function move(step) {
  if (!state.order.length) return;
  const at = state.order.indexOf(state.selected);
  const next = Math.max(0, Math.min(state.order.length - 1, at < 0 ? 0 : at + step));
  select(state.order[next]);
}

// ---- tiles and chart ----------------------------------------------------------------
let tilesTimer = null;
function refreshTilesSoon() { if (!tilesTimer) tilesTimer = setTimeout(() => { tilesTimer = null; refreshTiles(); }, 500); }

async function refreshTiles() {
  try {
    const c = await api("/api/counts");
    const tiles = STATUSES.map((s) => el("span", { class: "tile" }, pill("st", s), el("b", { text: c.by_status[s] || 0 })));
    for (const [t, n] of Object.entries(c.by_type)) tiles.push(el("span", { class: "tile" }, label(t), el("b", { text: n })));
    $("tiles").replaceChildren(...tiles);
    const city = document.querySelector("#filters [name=city]");
    for (const name of Object.keys(c.by_city)) {
      if (![...city.options].some((o) => o.value === name)) city.appendChild(el("option", { value: name, text: name }));
    }
  } catch (err) { /* the connection indicator says enough */ }
}

async function refreshChart() {
  try { state.series = await api("/api/series?minutes=60"); drawChart(); } catch (err) { /* retried */ }
}

function drawChart() {
  const canvas = $("chart"), ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!state.series) return;
  const types = Object.keys(state.series.series);
  const minutes = types.length ? state.series.series[types[0]].length : 0;
  if (!minutes) return;
  const totals = Array.from({ length: minutes }, (_, i) => types.reduce((s, t) => s + state.series.series[t][i], 0));
  const top = Math.max(1, ...totals), w = canvas.width / minutes, h = canvas.height - 12;
  for (let i = 0; i < minutes; i++) {
    let y = canvas.height;
    for (const t of types) {
      const bar = (state.series.series[t][i] / top) * h;
      ctx.fillStyle = TYPE_COLOURS[t] || "#3e8ef7";
      ctx.fillRect(i * w, y - bar, Math.max(1, w - 1), bar);
      y -= bar;
    }
  }
  ctx.fillStyle = "#8a97a6"; ctx.font = "10px system-ui";
  ctx.fillText(`violations / min, last hour (max ${top})`, 2, 10);
}

function countInChart(e) {
  if (!state.series) return;
  const i = Math.floor((Number(e.entry_id.split("-")[0]) - state.series.since_ms) / state.series.minute_ms);
  const row = state.series.series[e.type] || (state.series.series[e.type] = Array(60).fill(0));
  if (i >= 0 && i < row.length) { row[i] += 1; drawChart(); }
}

// ---- the live stream (SSE over fetch, so the token goes in a header) ------------------
function setConn(live) {
  $("conn").textContent = live ? "live" : "reconnecting…";
  $("conn").classList.toggle("down", !live);
}

async function connect() {
  let delay = 500;
  while (state.token) {
    const controller = new AbortController();
    state.stream = controller;
    try {
      const headers = { Authorization: `Bearer ${state.token}` };
      if (state.lastEventId) headers["Last-Event-ID"] = state.lastEventId;
      const resp = await fetch("/api/stream", { headers, signal: controller.signal, cache: "no-store" });
      if (resp.status === 401) { signOut("Your token is no longer accepted; sign in again."); return; }
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      setConn(true); delay = 500;
      await readEvents(resp.body);
    } catch (err) {
      if (!state.token) return;
    }
    setConn(false);
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 5000);
  }
}

async function readEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end); buffer = buffer.slice(end + 2);
      const ev = { id: null, event: "message", data: [] };
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const i = line.indexOf(":");
        const field = i < 0 ? line : line.slice(0, i);
        const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
        if (field === "id") ev.id = val; else if (field === "event") ev.event = val;
        else if (field === "data") ev.data.push(val);
      }
      if (ev.data.length) handleEvent(ev.event, ev.data.join("\n"));
      if (ev.id) state.lastEventId = ev.id;
    }
  }
}

function handleEvent(kind, data) {
  if (kind === "reset") { state.lastEventId = null; reload(); refreshTiles(); return; }
  const e = JSON.parse(data);
  if (kind === "entry") {
    countInChart(e);
    if (matches(e)) { addRow(e, { top: true }); render(); }
  } else if (kind === "status") {
    if (state.entries.has(e.violation_id)) {
      if (matches(e)) updateRow(e);
      else { state.entries.delete(e.violation_id); state.order = state.order.filter((v) => v !== e.violation_id);
             rowOf(e.violation_id)?.remove(); render(); }
    } else if (matches(e) && filterQuery().has("status")) { addRow(e, { top: true }); render(); }
    if (state.selected === e.violation_id) loadHistory(e.violation_id);
  }
  refreshTilesSoon();
}

// ---- wiring -------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  $("signin").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("signin-error").textContent = "";
    try { await signIn($("token").value.trim()); $("token").value = ""; }
    catch (err) { $("signin-error").textContent = err.message; }
  });
  $("signout").addEventListener("click", () => signOut(""));
  $("filters").addEventListener("change", () => reload().catch((err) => { $("d-message").textContent = err.message; }));
  $("filters").addEventListener("submit", (ev) => ev.preventDefault());
  $("older").addEventListener("click", () => loadPage());
  for (const b of document.querySelectorAll("#detail [data-status]")) b.addEventListener("click", () => act(b.dataset.status));
  document.addEventListener("keydown", (ev) => {
    if (ev.target.closest("input, select, textarea") || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const keys = { j: () => move(1), k: () => move(-1), a: () => act("acknowledged"),
                   r: () => act("resolved"), f: () => act("false_positive") };
    if (keys[ev.key] && !$("app").hidden) { ev.preventDefault(); keys[ev.key](); }
  });
  setInterval(refreshChart, 60_000);
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved).catch(() => signOut("")); else signOut("");
});
