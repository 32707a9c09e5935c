// The web view: one page on top of GET /logs, GET /traces/{id}, GET /stats and GET /stats/timeline.
// Filters live in the URL's query string under the same names GET /logs takes, so a view is a link.
// It only ever asks for one page of logs at a time; "Load older" follows the keyset cursor.

const LEVELS = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
const RANGES = { "15m": 15 * 60e3, "1h": 3600e3, "24h": 24 * 3600e3 };
const REFRESH_MS = 3000;
const KEY = "logsave-api-key";

const $ = (selector) => document.querySelector(selector);
const form = $("#filters");
let cursor = null;
let paused = false;

// --- the API, with the read key when the server asks for one -------------------------------------------

async function api(path) {
  const headers = {};
  const key = sessionStorage.getItem(KEY);
  if (key) headers["X-API-Key"] = key;
  const response = await fetch(path, { headers });
  if (response.status === 401 || response.status === 403) {
    await askForKey(response.status === 403 ? "That key may only send logs: give a read key." : "");
    return api(path);
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.message || `${response.status} ${response.statusText}`);
  }
  return response.json();
}

function askForKey(reason) {
  const dialog = $("#key-dialog");
  if (reason) dialog.querySelector("p").textContent = reason;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      sessionStorage.setItem(KEY, dialog.querySelector("input").value);
      resolve();
    }, { once: true });
    if (!dialog.open) dialog.showModal();
  });
}

// --- filters <-> URL ------------------------------------------------------------------------------------

function filtersFromUrl() {
  const params = new URLSearchParams(location.search);
  for (const element of form.elements) {
    if (!element.name) continue;
    if (params.has(element.name)) element.value = params.get(element.name);
  }
  if (params.has("since") && !params.has("range")) form.range.value = "custom";
  showCustom();
}

function showCustom() {
  const custom = form.range.value === "custom";
  form.since.hidden = !custom;
  form.until.hidden = !custom;
}

function uiParams() {
  // What the URL of this view holds: the form's non-empty fields.
  const params = new URLSearchParams();
  for (const element of form.elements) {
    if (!element.name || !element.value) continue;
    if ((element.name === "since" || element.name === "until") && form.range.value !== "custom") continue;
    if (element.name === "range" && element.value === "24h") continue;
    params.set(element.name, element.value);
  }
  return params;
}

function apiParams() {
  // GET /logs's parameters: the URL's, with the range turned into `since`.
  const params = uiParams();
  const range = params.get("range") || "24h";
  params.delete("range");
  if (range !== "custom") params.set("since", new Date(Date.now() - RANGES[range]).toISOString());
  return params;
}

// --- rendering ------------------------------------------------------------------------------------------

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  if (className) td.className = className;
  return td;
}

function row(log, fresh) {
  const tr = document.createElement("tr");
  tr.className = log.level + (fresh ? " fresh" : "");
  tr.dataset.id = log.id;
  tr.append(cell(log.created_at.replace("T", " ").replace("Z", "")), cell(log.level), cell(log.service),
            cell(log.message, "message"));
  tr.addEventListener("click", () => showDetail(log));
  return tr;
}

function showDetail(log) {
  const detail = $("#detail");
  detail.hidden = false;
  detail.replaceChildren();
  const title = document.createElement("h2");
  title.textContent = `${log.level} · ${log.service}`;
  const list = document.createElement("dl");
  for (const [name, value] of Object.entries(log)) {
    if (value === null || name === "metadata" || name === "stack_trace") continue;
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    if (name === "trace_id") {
      const link = document.createElement("a");
      link.href = "#";
      link.className = "trace";
      link.textContent = value;
      link.addEventListener("click", (event) => { event.preventDefault(); showTrace(value); });
      dd.append(link);
    } else {
      dd.textContent = value;
    }
    list.append(dt, dd);
  }
  detail.append(title, list);
  for (const name of ["stack_trace", "metadata"]) {
    if (log[name] === null || log[name] === undefined) continue;
    const heading = document.createElement("h3");
    heading.textContent = name;
    const pre = document.createElement("pre");
    pre.className = name;
    pre.textContent = name === "metadata" ? JSON.stringify(log[name], null, 2) : log[name];
    detail.append(heading, pre);
  }
}

async function showTrace(traceId) {
  const { logs } = await api(`/traces/${encodeURIComponent(traceId)}`);
  const detail = $("#detail");
  detail.hidden = false;
  detail.replaceChildren();
  const title = document.createElement("h2");
  title.textContent = `trace ${traceId} · ${logs.length} log(s)`;
  const table = document.createElement("table");
  table.className = "trace-logs";
  const start = logs.length ? Date.parse(logs[0].created_at) : 0;
  for (const log of logs) {
    const tr = document.createElement("tr");
    tr.className = log.level;
    tr.append(cell(`+${Date.parse(log.created_at) - start} ms`), cell(log.level), cell(log.service),
              cell(log.message, "message"));
    tr.addEventListener("click", () => showDetail(log));
    table.append(tr);
  }
  detail.append(title, table);
}

function status(text) {
  $("#status").textContent = text;
}

// --- loading --------------------------------------------------------------------------------------------

async function load() {
  const params = apiParams();
  params.set("limit", "100");
  try {
    const page = await api(`/logs?${params}`);
    $("#rows").replaceChildren(...page.logs.map((log) => row(log, false)));
    cursor = page.next_cursor;
    $("#older").hidden = !cursor;
    status(page.logs.length ? "" : "No logs match these filters.");
  } catch (error) {
    status(error.message);
  }
  overview();
}

async function older() {
  const params = apiParams();
  params.set("limit", "100");
  params.set("cursor", cursor);
  const page = await api(`/logs?${params}`);
  $("#rows").append(...page.logs.map((log) => row(log, false)));
  cursor = page.next_cursor;
  $("#older").hidden = !cursor;
}

async function tail() {
  // The newest page again; rows newer than the newest shown go on top.
  if (paused || document.hidden) return;
  const params = apiParams();
  params.set("limit", "100");
  try {
    const page = await api(`/logs?${params}`);
    const shown = new Set([...$("#rows").children].map((tr) => tr.dataset.id));
    const fresh = page.logs.filter((log) => !shown.has(String(log.id)));
    if (fresh.length) $("#rows").prepend(...fresh.map((log) => row(log, true)));
  } catch (error) {
    status(error.message);
  }
}

async function overview() {
  try {
    const stats = await api("/stats");
    const numbers = [["total", stats.total_logs], ["last 24 h", stats.recent_24h],
                     ...LEVELS.filter((l) => stats.by_level[l]).map((l) => [l, stats.by_level[l]]),
                     ...stats.services.slice(0, 5).map((s) => [s.service, s.count])];
    $("#numbers").replaceChildren(...numbers.map(([label, value]) => {
      const div = document.createElement("div");
      const b = document.createElement("b");
      b.textContent = Number(value).toLocaleString();
      div.append(b, label);
      return div;
    }));
    const params = apiParams();
    const since = params.get("since") || new Date(Date.now() - RANGES["24h"]).toISOString();
    const until = params.get("until") || new Date().toISOString();
    const timeline = await api(`/stats/timeline?since=${encodeURIComponent(since)}&until=${encodeURIComponent(until)}`);
    chart(timeline, Date.parse(since), Date.parse(until));
  } catch (error) {
    status(error.message);
  }
}

function chart(timeline, since, until) {
  // Stacked bars coloured by level, each at its bucket's place on the range's time axis: plain SVG.
  const svg = $("#chart");
  const width = svg.clientWidth || 600;
  const height = svg.clientHeight || 80;
  const span = Math.max(1, until - since);
  const bucket = timeline.bucket === "minute" ? 60e3 : 3600e3;
  const bar = Math.max(1, (bucket / span) * width - 1);
  const points = timeline.points;
  const peak = Math.max(1, ...points.map((p) => Object.values(p.counts).reduce((a, b) => a + b, 0)));
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  for (const point of points) {
    const x = Math.max(0, ((Date.parse(point.at) - since) / span) * width);
    let y = height;
    for (const level of LEVELS) {
      const count = point.counts[level] || 0;
      if (!count) continue;
      const h = (count / peak) * height;
      y -= h;
      const rect = document.createElementNS(ns, "rect");
      rect.setAttribute("x", x);
      rect.setAttribute("y", y);
      rect.setAttribute("width", bar);
      rect.setAttribute("height", h);
      rect.setAttribute("class", `level-${level}`);
      const title = document.createElementNS(ns, "title");
      title.textContent = `${point.at} ${level}: ${count}`;
      rect.append(title);
      svg.append(rect);
    }
  }
}

// --- wiring ---------------------------------------------------------------------------------------------

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const params = uiParams();
  history.pushState(null, "", params.toString() ? `/ui?${params}` : "/ui");
  load();
});
form.range.addEventListener("change", showCustom);
$("#older").addEventListener("click", older);
$("#pause").addEventListener("click", () => {
  paused = !paused;
  $("#pause").textContent = paused ? "Resume" : "Pause";
});
window.addEventListener("popstate", () => { filtersFromUrl(); load(); });

filtersFromUrl();
load();
setInterval(tail, REFRESH_MS);
