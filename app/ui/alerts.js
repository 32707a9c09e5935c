// The Alerts page: the rules of GET /alerts with their state and last count, a form for POST /alerts, a
// delete button per rule (DELETE /alerts/{id}); a click on a rule opens its logs in the Logs page (the
// rule's `logs_url`: its filters over its window, up to now). Refreshed every few seconds.

import { KEY, askForKey } from "./keys.js";

const REFRESH_MS = 5000;

const $ = (selector) => document.querySelector(selector);
const form = $("#new-rule");

// --- the API, with the key when the server asks for one -------------------------------------------------

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  const key = sessionStorage.getItem(KEY);
  if (key) headers["X-API-Key"] = key;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401 || response.status === 403) {
    await askForKey(response.status === 403 ? "That key may not manage alerts: give an API_KEYS key." : "");
    return api(path, options);
  }
  if (response.status === 204) return null;
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.message || `${response.status} ${response.statusText}`);
    error.fields = body.errors || [];
    throw error;
  }
  return body;
}

// --- the rules ------------------------------------------------------------------------------------------

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  if (className) td.className = className;
  return td;
}

function when(moment) {
  return moment ? moment.replace("T", " ").replace(/\.\d+/, "").replace("Z", "").replace("+00:00", "") : "never";
}

function describe(query) {
  const parts = Object.entries(query).map(([name, value]) => `${name}=${[].concat(value).join("|")}`);
  return parts.join(" ") || "every log";
}

function row(rule) {
  const tr = document.createElement("tr");
  tr.className = rule.state;
  tr.dataset.id = rule.id;
  tr.title = "open the matching logs";
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "delete";
  remove.textContent = "Delete";
  remove.addEventListener("click", async (event) => {
    event.stopPropagation();
    if (!confirm(`Delete the rule "${rule.name}"?`)) return;
    await api(`/alerts/${rule.id}`, { method: "DELETE" });
    load();
  });
  const actions = document.createElement("td");
  actions.append(remove);
  tr.append(cell(rule.state, "state"), cell(rule.name, "name"), cell(describe(rule.query)),
            cell(`≥ ${rule.threshold} in ${rule.window_seconds} s`), cell(rule.last_count ?? "–", "count"),
            cell(when(rule.last_evaluated_at)), cell(when(rule.last_notified_at)), actions);
  tr.addEventListener("click", () => { location.href = rule.logs_url; });
  return tr;
}

async function load() {
  try {
    const { alerts } = await api("/alerts");
    $("#rules").replaceChildren(...alerts.map(row));
    const firing = alerts.filter((rule) => rule.state === "firing").length;
    $("#status").textContent = `${alerts.length} rule(s), ${firing} firing`;
  } catch (error) {
    $("#status").textContent = error.message;
  }
}

// --- a new rule -----------------------------------------------------------------------------------------

function ruleFromForm() {
  const query = {};
  for (const name of ["service", "min_level", "environment", "q"]) {
    const value = form.elements[name].value.trim();
    if (value) query[name] = value;
  }
  // "more filters" in the Logs page's URL form: name=value&name=value (a repeated name: any of them).
  for (const [name, value] of new URLSearchParams(form.elements.more.value.trim())) {
    query[name] = name in query ? [].concat(query[name], value) : value;
  }
  return {
    name: form.elements.name.value,
    query,
    threshold: Number(form.elements.threshold.value),
    window_seconds: Number(form.elements.window_seconds.value),
    notify: form.elements.notify.value.split(/\s+/).filter(Boolean),
    renotify_seconds: Number(form.elements.renotify_seconds.value || 0),
  };
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  $("#errors").replaceChildren();
  try {
    await api("/alerts", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(ruleFromForm()),
    });
    form.reset();
    load();
  } catch (error) {
    const items = (error.fields.length ? error.fields : [{ field: "", message: error.message }]).map((e) => {
      const li = document.createElement("li");
      li.textContent = e.field ? `${e.field}: ${e.message}` : e.message;
      return li;
    });
    $("#errors").replaceChildren(...items);
  }
});

load();
setInterval(load, REFRESH_MS);
