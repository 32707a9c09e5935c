// The web view: one page on top of GET /logs, /logs/facets, /logs/stream, /traces/{id}, /stats and
// /stats/timeline. The URL's query string is the view: GET /logs's filters under their own names
// (`service`, `not.level`, `meta.http.status`, …) plus `range`, `since`, `until`, `q` and `columns`, so a
// view is a link. Every value that can be a filter carries data-field (the GET /logs parameter) and
// data-value: a click adds it, Alt- or Shift-click (or the ≠ button) excludes it.
// The page holds at most MAX_ROWS logs; live, it reads GET /logs/stream, or polls where streams are buffered.

import { KEY, askForKey } from "./keys.js";

const LEVELS = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
const RANGES = { "15m": 15 * 60e3, "1h": 3600e3, "24h": 24 * 3600e3 };
const VIEW = ["range", "since", "until", "q", "columns"];
const ONCE = ["trace_id", "user_id", "session_id", "min_level"]; // GET /logs takes these once
const FILTERABLE = ["level", "service", "environment", "trace_id", "user_id", "session_id"];
const DEFAULT_COLUMNS = ["level", "service", "message"];
const COLUMN_CHOICES = ["level", "service", "environment", "trace_id", "user_id", "session_id", "error_type",
                       "path", "method", "duration_ms", "service_version", "log_type", "message"];
const PAGE = 100;
const MAX_ROWS = 2000;
const REFRESH_MS = 3000;
const STREAM_FIRST_BYTE_MS = 5000;
const MAX_BARS = 240;

const $ = (selector) => document.querySelector(selector);
const form = $("#filters");
let cursor = null;
let paused = false;
let selected = -1;
let pending = []; // live logs not shown yet: the reader has scrolled away
let live = null; // { stop() } of the stream or the polling loop
let generation = 0; // bumped by each load(): answers for an older view are dropped

// --- the API, with the read key when the server asks for one -------------------------------------------

function headers() {
  const key = sessionStorage.getItem(KEY);
  return key ? { "X-API-Key": key } : {};
}

async function api(path) {
  const response = await fetch(path, { headers: headers() });
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

// --- the view <-> URL -----------------------------------------------------------------------------------

const view = () => new URLSearchParams(location.search);

function go(params) {
  history.pushState(null, "", params.toString() ? `/ui?${params}` : "/ui");
  load();
}

function filterPairs(params) {
  return [...params].filter(([name]) => !VIEW.includes(name));
}

function columns(params = view()) {
  const listed = (params.get("columns") || "").split(",").map((c) => c.trim()).filter(Boolean);
  return listed.length ? listed : DEFAULT_COLUMNS;
}

function addFilter(field, value, exclude) {
  const params = view();
  const name = exclude ? `not.${field}` : field;
  const opposite = exclude ? field : `not.${field}`;
  const keep = [...params].filter(([n, v]) => !(n === opposite && v === value)
                                        && !(n === name && (ONCE.includes(n) || n.startsWith("meta."))));
  const next = new URLSearchParams(keep);
  if (!keep.some(([n, v]) => n === name && v === value)) next.append(name, value);
  go(next);
}

function removeFilter(name, value) {
  go(new URLSearchParams([...view()].filter(([n, v]) => !(n === name && v === value))));
}

function setRange(since, until) {
  const params = view();
  params.set("range", "custom");
  params.set("since", new Date(since).toISOString());
  params.set("until", new Date(until).toISOString());
  go(params);
}

function formFromUrl() {
  const params = view();
  for (const name of ["since", "until", "q"]) form[name].value = params.get(name) || "";
  for (const name of ["service", "level", "environment", "trace_id"]) form[name].value = "";
  form.range.value = params.get("range") || (params.has("since") ? "custom" : "24h");
  showCustom();
}

function showCustom() {
  const custom = form.range.value === "custom";
  form.since.hidden = !custom;
  form.until.hidden = !custom;
}

function range(params = view()) {
  // [since, until] in ms, and whether the range follows now.
  const name = params.get("range") || (params.has("since") ? "custom" : "24h");
  if (name !== "custom") return { since: Date.now() - RANGES[name], until: Date.now(), relative: true };
  const until = params.get("until") ? Date.parse(params.get("until")) : Date.now();
  const since = params.get("since") ? Date.parse(params.get("since")) : until - RANGES["24h"];
  return { since, until, relative: !params.get("until") };
}

function apiParams({ withRange = true } = {}) {
  // GET /logs's parameters: the filters, the text search and the range as since/until.
  const params = view();
  const result = new URLSearchParams(filterPairs(params));
  if (params.get("q")) result.set("q", params.get("q"));
  if (withRange) {
    const { since, until, relative } = range(params);
    result.set("since", new Date(since).toISOString());
    if (!relative) result.set("until", new Date(until).toISOString());
  }
  return result;
}

// --- values a click filters by --------------------------------------------------------------------------

function escapeKey(key) {
  return key.replaceAll("\\", "\\\\").replaceAll(".", "\\.");
}

function splitPath(path) {
  // `http.status` -> ["http", "status"]; `a\.b` is the one key "a.b" (as GET /logs reads meta. paths).
  const keys = [];
  let key = "";
  for (let i = 0; i < path.length; i++) {
    if (path[i] === "\\" && i + 1 < path.length) key += path[++i];
    else if (path[i] === ".") { keys.push(key); key = ""; } else key += path[i];
  }
  keys.push(key);
  return keys;
}

function filterText(value) {
  // The value as `meta.<path>=` takes it, or null when no filter matches it exactly (objects, lists, null,
  // and strings such as "500" or "true", which the filter reads as a number or a boolean).
  if (typeof value === "number" || typeof value === "boolean") return JSON.stringify(value);
  if (typeof value !== "string") return null;
  try {
    const parsed = JSON.parse(value);
    if (typeof parsed === "number" || typeof parsed === "boolean") return null;
  } catch { /* text */ }
  return value;
}

function valueElement(field, value, text = value) {
  const span = document.createElement("span");
  span.textContent = text;
  if (value === null || value === undefined) return span;
  span.className = "value";
  span.dataset.field = field;
  span.dataset.value = value;
  span.title = `${field}=${value} — click: only these, Alt/Shift-click: exclude`;
  return span;
}

function excludeButton(field, value) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "exclude";
  button.dataset.field = field;
  button.dataset.value = value;
  button.textContent = "≠";
  button.title = `exclude ${field}=${value}`;
  return button;
}

document.addEventListener("click", (event) => {
  const target = event.target.closest("[data-field][data-value]");
  if (!target || !event.target.closest("#rows, #detail, #facets")) return;
  event.preventDefault();
  event.stopPropagation();
  const exclude = target.classList.contains("exclude") || event.altKey || event.shiftKey;
  addFilter(target.dataset.field, target.dataset.value, exclude);
}, true);

// --- rendering ------------------------------------------------------------------------------------------

const pad = (n, width = 2) => String(n).padStart(width, "0");

function localTime(iso) {
  const d = new Date(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} `
    + `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function timeElement(iso) {
  const time = document.createElement("time");
  time.dateTime = iso;
  time.textContent = localTime(iso);
  time.title = `${iso.replace("T", " ").replace("Z", "")} UTC`;
  return time;
}

function cell(content, className) {
  const td = document.createElement("td");
  if (content instanceof Node) td.append(content);
  else td.textContent = content ?? "";
  if (className) td.className = className;
  return td;
}

function fieldValue(log, column) {
  if (!column.startsWith("meta.")) return log[column];
  let value = log.metadata;
  for (const key of splitPath(column.slice(5))) value = value && typeof value === "object" ? value[key] : undefined;
  return value;
}

function columnCell(log, column) {
  const value = fieldValue(log, column);
  if (column === "message") return cell(value, "message");
  if (value === null || value === undefined) return cell("");
  if (FILTERABLE.includes(column)) return cell(valueElement(column, value));
  if (column.startsWith("meta.")) {
    const text = typeof value === "object" ? JSON.stringify(value) : String(value);
    return cell(valueElement(column, filterText(value), text));
  }
  return cell(String(value));
}

function header() {
  $("#head").replaceChildren(...["time", ...columns()].map((name) => {
    const th = document.createElement("th");
    th.textContent = name;
    return th;
  }));
}

function row(log, fresh) {
  const tr = document.createElement("tr");
  tr.className = log.level + (fresh ? " fresh" : "");
  tr.dataset.id = log.id;
  tr.log = log;
  tr.append(cell(timeElement(log.created_at), "time"), ...columns().map((c) => columnCell(log, c)));
  tr.addEventListener("click", () => { select([...$("#rows").children].indexOf(tr)); showDetail(log); });
  return tr;
}

function metadataTree(value, path, indent) {
  // Pretty-printed JSON in which every scalar is a filter: {"http": {"status": 500}} -> meta.http.status.
  const pieces = [];
  const inner = " ".repeat(indent + 2);
  if (value && typeof value === "object" && !Array.isArray(value) && Object.keys(value).length) {
    pieces.push("{\n");
    Object.entries(value).forEach(([key, child], i, all) => {
      pieces.push(`${inner}${JSON.stringify(key)}: `, ...metadataTree(child, [...path, key], indent + 2),
                  i < all.length - 1 ? ",\n" : "\n");
    });
    pieces.push(`${" ".repeat(indent)}}`);
    return pieces;
  }
  const text = JSON.stringify(value, null, 2).replaceAll("\n", `\n${" ".repeat(indent)}`);
  if (!path.length || value === null || typeof value === "object") return [text];
  const field = `meta.${path.map(escapeKey).join(".")}`;
  return [valueElement(field, filterText(value), text)];
}

function showDetail(log) {
  const detail = $("#detail");
  detail.hidden = false;
  detail.replaceChildren();
  const title = document.createElement("h2");
  title.textContent = `${log.level} · ${log.service}`;
  const close = document.createElement("button");
  close.type = "button";
  close.className = "close";
  close.textContent = "×";
  close.title = "close (Esc)";
  close.addEventListener("click", closeDetail);
  title.append(close);
  const list = document.createElement("dl");
  for (const [name, value] of Object.entries(log)) {
    if (value === null || name === "metadata" || name === "stack_trace") continue;
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    if (name === "created_at") {
      dd.append(timeElement(value));
    } else if (FILTERABLE.includes(name)) {
      dd.append(valueElement(name, value), " ", excludeButton(name, value));
      if (name === "trace_id") {
        const link = document.createElement("a");
        link.href = "#";
        link.className = "trace";
        link.textContent = "trace";
        link.title = "every log of this trace, in time order";
        link.addEventListener("click", (event) => { event.preventDefault(); showTrace(value); });
        dd.append(" ", link);
      }
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
    if (name === "metadata") pre.append(...metadataTree(log[name], [], 0));
    else pre.textContent = log[name];
    detail.append(heading, pre);
  }
}

function closeDetail() {
  $("#detail").hidden = true;
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
    tr.append(cell(`+${Date.parse(log.created_at) - start} ms`), cell(valueElement("level", log.level)),
              cell(valueElement("service", log.service)), cell(log.message, "message"));
    tr.addEventListener("click", () => showDetail(log));
    table.append(tr);
  }
  detail.append(title, table);
}

function chips() {
  $("#chips").replaceChildren(...filterPairs(view()).map(([name, value]) => {
    const chip = document.createElement("span");
    const negated = name.startsWith("not.");
    chip.className = negated ? "chip not" : "chip";
    chip.dataset.name = name;
    chip.dataset.chipValue = value;
    chip.textContent = `${negated ? name.slice(4) : name} ${negated ? "≠" : "="} ${value}`;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "remove";
    remove.textContent = "×";
    remove.title = "remove this filter";
    remove.addEventListener("click", () => removeFilter(name, value));
    chip.append(remove);
    return chip;
  }));
}

function status(text) {
  $("#status").textContent = text;
}

// --- keyboard -------------------------------------------------------------------------------------------

function select(index) {
  const rows = $("#rows").children;
  if (!rows.length) return;
  rows[selected]?.classList.remove("selected");
  selected = Math.max(0, Math.min(rows.length - 1, index));
  rows[selected].classList.add("selected");
  rows[selected].scrollIntoView({ block: "nearest" });
}

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") {
    closeDetail();
    document.activeElement?.blur();
    return;
  }
  if (event.target.closest("input, select, textarea, dialog") || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === "/") { event.preventDefault(); form.q.focus(); }
  else if (event.key === "j") select(selected + 1);
  else if (event.key === "k") select(selected - 1);
  else if (event.key === "Enter" && selected >= 0) showDetail($("#rows").children[selected].log);
});

// --- loading --------------------------------------------------------------------------------------------

async function load() {
  const mine = ++generation;
  formFromUrl();
  header();
  chips();
  columnPicker();
  stopLive();
  pending = [];
  freshButton();
  selected = -1;
  const params = apiParams();
  params.set("limit", String(PAGE));
  try {
    const page = await api(`/logs?${params}`);
    if (mine !== generation) return;
    $("#rows").replaceChildren(...page.logs.map((log) => row(log, false)));
    cursor = page.next_cursor;
    $("#older").hidden = !cursor;
    status(page.logs.length ? "" : "No logs match these filters.");
  } catch (error) {
    status(error.message);
  }
  if (mine !== generation) return;
  startLive();
  overview(mine);
  facets(mine);
}

async function older() {
  if ($("#rows").children.length + PAGE > MAX_ROWS) {
    status(`This page holds at most ${MAX_ROWS.toLocaleString()} logs: narrow the time range or the filters.`);
    return;
  }
  const params = apiParams();
  params.set("limit", String(PAGE));
  params.set("cursor", cursor);
  const mine = generation;
  const page = await api(`/logs?${params}`);
  if (mine !== generation) return;
  $("#rows").append(...page.logs.map((log) => row(log, false)));
  cursor = page.next_cursor;
  $("#older").hidden = !cursor;
}

async function catchUp() {
  const mine = generation;
  const params = apiParams();
  params.set("limit", String(PAGE));
  try {
    arrive((await api(`/logs?${params}`)).logs, mine);
    $("#live").dataset.ready = "true"; // from here on, only the stream brings logs
  } catch (error) {
    status(error.message);
  }
}

function arrive(logs, mine) {
  // Live logs: on top when the reader is at the top, else counted on the "N new" button. Logs asked for
  // under an earlier view (an answer still on its way when the filters changed) are dropped.
  if (mine !== generation) return;
  const shown = new Set([...$("#rows").children].map((tr) => tr.dataset.id));
  const fresh = logs.filter((log) => !shown.has(String(log.id)) && !pending.some((p) => p.id === log.id));
  if (!fresh.length) return;
  if (window.scrollY > 40 || selected > 0) {
    pending = [...fresh, ...pending].slice(0, MAX_ROWS);
  } else {
    show(fresh);
  }
  freshButton();
}

function show(logs) {
  const rows = $("#rows");
  const newest = [...logs].sort((a, b) => (b.created_at > a.created_at ? 1 : b.created_at < a.created_at ? -1 : b.id - a.id));
  rows.prepend(...newest.map((log) => row(log, true)));
  if (selected >= 0) selected += newest.length;
  if (rows.children.length > MAX_ROWS) {
    // The page keeps the newest MAX_ROWS: older ones leave, and "Load older" could not continue from them.
    while (rows.children.length > MAX_ROWS) rows.lastElementChild.remove();
    cursor = null;
    $("#older").hidden = true;
  }
  status("");
}

function freshButton() {
  const button = $("#fresh");
  button.hidden = !pending.length;
  button.textContent = `${pending.length} new`;
}

function stopLive() {
  live?.stop();
  live = null;
  $("#live").textContent = "";
  delete $("#live").dataset.ready;
}

function startLive() {
  stopLive();
  if (paused || !range().relative) return;
  live = stream();
}

function stream() {
  // GET /logs/stream, read with fetch (EventSource cannot send the API key header). If nothing arrives
  // within STREAM_FIRST_BYTE_MS (a proxy or API Gateway buffering the answer) or the route is missing, the
  // page polls instead.
  const mine = generation;
  const controller = new AbortController();
  let lastId = 0; // the newest id the stream sent: where a reconnect resumes
  let stopped = false;
  let fallback = null;
  const indicator = $("#live");
  const run = async () => {
    for (let attempt = 0; !stopped && attempt < 1000; attempt++) {
      const params = apiParams({ withRange: false });
      if (lastId) params.set("after", String(lastId));
      let firstByte = false;
      const timer = setTimeout(() => { if (!firstByte) controller.abort(); }, STREAM_FIRST_BYTE_MS);
      try {
        const response = await fetch(`/logs/stream?${params}`, { headers: headers(), signal: controller.signal });
        if (response.status === 401 || response.status === 403) {
          await askForKey("");
          continue;
        }
        if (!response.ok || !response.body) throw new Error(`stream: ${response.status}`);
        indicator.textContent = "● live";
        indicator.title = "new logs arrive over GET /logs/stream";
        // A new stream starts from now: the newest page once more catches what committed since the list
        // was read (ids do not follow created_at, so the list's ids cannot say where to resume).
        if (!lastId) catchUp();
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          firstByte = true;
          buffer += value;
          const blocks = buffer.split("\n\n");
          buffer = blocks.pop();
          const logs = [];
          for (const block of blocks) {
            const event = { event: "message", data: "" };
            for (const line of block.split("\n")) {
              const at = line.indexOf(":");
              if (at <= 0) continue;
              event[line.slice(0, at)] = line.slice(at + 1).replace(/^ /, "");
            }
            if (event.event === "log") {
              const log = JSON.parse(event.data);
              logs.push(log);
              lastId = Math.max(lastId, log.id);
            } else if (event.event === "lagging") {
              // More logs match than a stream sends (500 a second): it skipped ahead; say so.
              indicator.textContent = "● live (some skipped)";
              indicator.title = "more logs match than the stream sends: narrow the filters to see them all";
            }
          }
          if (logs.length) arrive(logs, mine);
        }
        clearTimeout(timer);
        // The stream ended (STREAM_MAX_SECONDS): carry on from the newest log received.
      } catch (error) {
        clearTimeout(timer);
        if (stopped) return;
        if (!firstByte) {
          fallback = poll();
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 2000));
      }
    }
  };
  run();
  return {
    stop() {
      stopped = true;
      controller.abort();
      fallback?.stop();
    },
  };
}

function poll() {
  // The newest page again every REFRESH_MS; rows newer than the newest shown go on top.
  $("#live").textContent = "↻ polling";
  $("#live").title = `GET /logs every ${REFRESH_MS / 1000} s`;
  const mine = generation;
  const timer = setInterval(async () => {
    if (document.hidden) return;
    const params = apiParams();
    params.set("limit", String(PAGE));
    try {
      const page = await api(`/logs?${params}`);
      arrive(page.logs, mine);
    } catch (error) {
      status(error.message);
    }
  }, REFRESH_MS);
  return { stop: () => clearInterval(timer) };
}

async function overview(mine) {
  try {
    const stats = await api("/stats");
    const numbers = [["total", stats.total_logs], ["last 24 h", stats.recent_24h],
                     ...LEVELS.filter((l) => stats.by_level[l]).map((l) => [l, stats.by_level[l]])];
    $("#numbers").replaceChildren(...numbers.map(([label, value]) => {
      const div = document.createElement("div");
      const b = document.createElement("b");
      b.textContent = Number(value).toLocaleString();
      div.append(b, label);
      return div;
    }));
    const { since, until } = range();
    const query = `since=${encodeURIComponent(new Date(since).toISOString())}&until=${encodeURIComponent(new Date(until).toISOString())}`;
    const timeline = await api(`/stats/timeline?${query}`);
    if (mine === generation) chart(timeline, since, until);
  } catch (error) {
    status(error.message);
  }
}

async function facets(mine) {
  try {
    const body = await api(`/logs/facets?${apiParams()}`);
    if (mine !== generation) return;
    $("#facets").replaceChildren(...body.facets.filter((f) => f.values.length).map((facet) => {
      const section = document.createElement("section");
      section.className = "facet";
      section.dataset.facet = facet.field;
      const heading = document.createElement("h3");
      heading.textContent = facet.field;
      if (!facet.exact) {
        heading.textContent += " ≈";
        heading.title = `counted over the newest ${body.sampled.toLocaleString()} matching logs`;
      }
      const list = document.createElement("ul");
      for (const { value, count } of facet.values) {
        const li = document.createElement("li");
        const counted = document.createElement("span");
        counted.className = "count";
        counted.textContent = count.toLocaleString();
        li.append(valueElement(facet.field, value), counted, excludeButton(facet.field, value));
        list.append(li);
      }
      section.append(heading, list);
      return section;
    }));
    knownPaths = body.facets.map((f) => f.field).filter((f) => f.startsWith("meta."));
    columnPicker();
  } catch (error) {
    status(error.message);
  }
}

// --- the timeline: the whole range, bucket by bucket, empty ones included --------------------------------

function chart(timeline, since, until) {
  const svg = $("#chart");
  const width = svg.clientWidth || 600;
  const height = svg.clientHeight || 80;
  const plot = height - 16; // room for the time labels under the bars
  const step = timeline.bucket === "minute" ? 60e3 : 3600e3;
  const first = Math.floor(since / step) * step;
  const count = Math.max(1, Math.ceil((until - first) / step));
  const size = step * Math.ceil(count / MAX_BARS); // several buckets per bar over a long range
  const bars = Math.max(1, Math.ceil((until - first) / size));
  const counts = Array.from({ length: bars }, () => ({}));
  for (const point of timeline.points) {
    const index = Math.floor((Date.parse(point.at) - first) / size);
    if (index < 0 || index >= bars) continue;
    for (const [level, n] of Object.entries(point.counts)) counts[index][level] = (counts[index][level] || 0) + n;
  }
  const totals = counts.map((c) => Object.values(c).reduce((a, b) => a + b, 0));
  const peak = Math.max(1, ...totals);
  const span = Math.max(1, until - since);
  const x = (t) => ((Math.max(since, Math.min(until, t)) - since) / span) * width;
  const ns = "http://www.w3.org/2000/svg";
  const make = (name, attributes) => {
    const element = document.createElementNS(ns, name);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
    return element;
  };
  svg.replaceChildren();
  svg.dataset.since = new Date(since).toISOString();
  svg.dataset.until = new Date(until).toISOString();
  counts.forEach((levels, index) => {
    const start = first + index * size;
    const end = Math.min(start + size, until);
    const left = x(start);
    const w = Math.max(1, x(end) - left - 1);
    const group = make("g", { class: totals[index] ? "bucket" : "bucket empty" });
    group.dataset.start = new Date(Math.max(start, since)).toISOString();
    group.dataset.end = new Date(end).toISOString();
    group.dataset.count = totals[index];
    const title = make("title", {});
    title.textContent = `${localTime(group.dataset.start)} – ${localTime(group.dataset.end)}: `
      + `${totals[index]} log(s)${LEVELS.filter((l) => levels[l]).map((l) => `, ${l} ${levels[l]}`).join("")}\n`
      + `UTC ${group.dataset.start} – ${group.dataset.end}`;
    group.append(title, make("rect", { class: "slot", x: left, y: 0, width: w, height: plot }));
    let y = plot;
    for (const level of LEVELS) {
      if (!levels[level]) continue;
      const h = Math.max(1, (levels[level] / peak) * plot);
      y -= h;
      group.append(make("rect", { class: `level-${level}`, x: left, y, width: w, height: h }));
    }
    svg.append(group);
  });
  for (const [t, anchor] of [[since, "start"], [since + span / 2, "middle"], [until, "end"]]) {
    const label = make("text", { x: x(t), y: height - 3, "text-anchor": anchor, class: "axis" });
    label.textContent = localTime(new Date(t).toISOString()).slice(0, 16);
    const title = make("title", {});
    title.textContent = `${new Date(t).toISOString()} UTC`;
    label.append(title);
    svg.append(label);
  }
}

function chartDrag() {
  // Drag across the timeline: since/until of the dragged span. A click on a bucket: that bucket.
  const svg = $("#chart");
  let start = null;
  let band = null;
  const at = (event) => {
    const box = svg.getBoundingClientRect();
    return Math.max(0, Math.min(box.width, event.clientX - box.left));
  };
  const time = (px) => {
    const since = Date.parse(svg.dataset.since);
    const until = Date.parse(svg.dataset.until);
    return since + (px / (svg.getBoundingClientRect().width || 1)) * (until - since);
  };
  svg.addEventListener("pointerdown", (event) => {
    if (!svg.dataset.since) return;
    start = at(event);
    svg.setPointerCapture(event.pointerId);
    band = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    band.setAttribute("class", "band");
    band.setAttribute("y", 0);
    band.setAttribute("height", svg.clientHeight);
    svg.append(band);
  });
  svg.addEventListener("pointermove", (event) => {
    if (start === null) return;
    const now = at(event);
    band.setAttribute("x", Math.min(start, now));
    band.setAttribute("width", Math.abs(now - start));
  });
  svg.addEventListener("pointerup", (event) => {
    if (start === null) return;
    const end = at(event);
    const from = start;
    start = null;
    band?.remove();
    if (Math.abs(end - from) > 4) {
      setRange(time(Math.min(from, end)), time(Math.max(from, end)));
      return;
    }
    const bucket = document.elementsFromPoint(event.clientX, event.clientY)
      .map((element) => element.closest?.("g.bucket")).find(Boolean);
    if (bucket) setRange(Date.parse(bucket.dataset.start), Date.parse(bucket.dataset.end));
  });
}

// --- columns --------------------------------------------------------------------------------------------

let knownPaths = [];

function columnPicker() {
  const current = columns();
  const choices = [...new Set([...COLUMN_CHOICES, ...current, ...knownPaths])];
  $("#column-choices").replaceChildren(...choices.map((name) => {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = name;
    box.checked = current.includes(name);
    box.addEventListener("change", () => setColumns(box.checked ? [...current, name] : current.filter((c) => c !== name)));
    label.append(box, ` ${name}`);
    return label;
  }));
}

function setColumns(list) {
  const params = view();
  if (!list.length || list.join(",") === DEFAULT_COLUMNS.join(",")) params.delete("columns");
  else params.set("columns", list.join(","));
  go(params);
}

// --- wiring ---------------------------------------------------------------------------------------------

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const params = view();
  for (const name of ["range", "since", "until", "q"]) params.delete(name);
  if (form.range.value !== "24h") params.set("range", form.range.value);
  if (form.range.value === "custom") {
    for (const name of ["since", "until"]) if (form[name].value) params.set(name, form[name].value);
  }
  if (form.q.value) params.set("q", form.q.value);
  for (const name of ["service", "level", "environment", "trace_id"]) {
    const value = form[name].value.trim();
    if (!value) continue;
    const duplicate = [...params].some(([n, v]) => n === name && v === value);
    if (ONCE.includes(name)) params.set(name, value);
    else if (!duplicate) params.append(name, value);
  }
  go(params);
});
form.range.addEventListener("change", showCustom);
$("#older").addEventListener("click", older);
$("#pause").addEventListener("click", () => {
  paused = !paused;
  $("#pause").textContent = paused ? "Resume" : "Pause";
  if (paused) stopLive();
  else startLive();
});
$("#fresh").addEventListener("click", () => {
  show(pending);
  pending = [];
  freshButton();
  window.scrollTo(0, 0);
});
window.addEventListener("scroll", () => {
  if (window.scrollY <= 40 && pending.length && selected <= 0) {
    show(pending);
    pending = [];
    freshButton();
  }
});
$("#column-add").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = event.target.column.value.trim();
  if (name && !columns().includes(name)) setColumns([...columns(), name]);
});
window.addEventListener("popstate", load);
chartDrag();
load();
