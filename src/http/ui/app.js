// The ferromq dashboard: one page, three views (overview, queues, one queue),
// talking to /ui/api/ (src/http/dashboard.rs). Written for it; no library.
//
// Safety rules kept throughout:
// - Every value from the server (queue names, message bodies, errors) reaches
//   the document through `textContent` or an attribute set with setAttribute on
//   a known-safe attribute: never through innerHTML or a template string of
//   markup.
// - The token lives in this tab's sessionStorage and goes out only in the
//   Authorization header of requests to this origin.
"use strict";

const TOKEN_KEY = "ferromq.token";
const POLL_MS = 2000;
/// Points of a chart the page builds from its own polls (5 minutes).
const MAX_POINTS = 150;

// ---------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, msg) {
    super(msg);
    this.status = status;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(method, path, params, body) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") query.set(k, String(v));
  }
  const headers = { "X-Ferromq-Dashboard": "1" };
  const t = token();
  if (t) headers.Authorization = "Bearer " + t;
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const qs = query.toString();
  const response = await fetch("/ui/api/" + path + (qs ? "?" + qs : ""), init);
  let value = null;
  try {
    value = await response.json();
  } catch (_) {
    value = null;
  }
  if (!response.ok) {
    const msg = value && typeof value.msg === "string" ? value.msg : response.statusText;
    if (response.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin(t ? "That token was refused." : "");
    }
    throw new ApiError(response.status, msg);
  }
  return value;
}

// ---------------------------------------------------------------- the DOM

/// An element: `h("a", {href: "#/", className: "x", on: {click: f}}, "text", child)`.
/// Strings become text nodes; attributes go through setAttribute.
function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "on") {
      for (const [event, f] of Object.entries(v)) el.addEventListener(event, f);
    } else if (k === "className") {
      el.className = v;
    } else if (k === "text") {
      el.textContent = String(v);
    } else if (k === "value") {
      el.value = String(v);
    } else if (k === "hidden" || k === "disabled") {
      el[k] = Boolean(v);
    } else {
      el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function $(id) {
  return document.getElementById(id);
}

let toastTimer = null;
function toast(text, bad) {
  const el = $("toast");
  el.textContent = text;
  el.className = bad ? "bad" : "";
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.hidden = true), 5000);
}

/// Asks before an action; with `word`, the user must type it. Resolves true/false.
function confirmAction(text, word) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  $("confirm-label").hidden = !word;
  $("confirm-word").textContent = word || "";
  const input = $("confirm-input");
  input.value = "";
  const ok = $("confirm-ok");
  ok.disabled = Boolean(word);
  input.oninput = () => (ok.disabled = input.value !== word);
  return new Promise((resolve) => {
    const done = (answer) => {
      ok.onclick = null;
      $("confirm-cancel").onclick = null;
      dialog.onclose = null;
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    ok.onclick = () => done(true);
    $("confirm-cancel").onclick = () => done(false);
    dialog.onclose = () => done(false);
    dialog.showModal();
    (word ? input : $("confirm-cancel")).focus();
  });
}

// ---------------------------------------------------------------- formatting

const fmtInt = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US"));
const fmtRate = (r) => (r === null || r === undefined ? "—" : r === 0 ? "0" : r < 10 ? r.toFixed(1) : Math.round(r).toLocaleString("en-US"));

function fmtDuration(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return ms + "ms";
  let s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const mm = Math.floor((s % 3600) / 60);
  s = s % 60;
  if (d) return d + "d" + (hh ? hh + "h" : "");
  if (hh) return hh + "h" + (mm ? mm + "m" : "");
  if (mm) return mm + "m" + (s ? s + "s" : "");
  return s + "s";
}

function fmtBytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return (i === 0 ? v : v.toFixed(1)) + " " + units[i];
}

/// UTC, to the second: "2026-12-03 20:33:14Z".
const fmtTime = (ms) => (ms ? new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "—");

function card(label, value, field, small) {
  return h("div", { className: "card" },
    h("div", { className: "label" }, label),
    h("div", { className: small ? "value small" : "value", "data-field": field }, value));
}

// ---------------------------------------------------------------- the chart

/// Draws series [{label, cls, color, points: [[t_seconds, value]]}] on a canvas,
/// the last `span` seconds, with a round y scale.
function drawChart(canvas, series, span) {
  const dpr = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 600;
  const height = canvas.clientHeight || 220;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  const ctx = canvas.getContext("2d");
  ctx.scale(dpr, dpr);
  ctx.clearRect(0, 0, width, height);
  const left = 56, right = 10, top = 10, bottom = 24;
  const w = width - left - right, hgt = height - top - bottom;
  let end = 0;
  let max = 0;
  for (const s of series) {
    for (const [t, v] of s.points) {
      end = Math.max(end, t);
      max = Math.max(max, v);
    }
  }
  const start = end - span;
  // A round top: 1, 2 or 5 times a power of ten.
  let top_ = 1;
  let ticks = 5;
  if (max > 0) {
    const p = Math.pow(10, Math.floor(Math.log10(max)));
    const m = [1, 2, 5, 10].find((k) => k * p >= max);
    top_ = m * p;
    ticks = m === 2 ? 4 : 5; // round steps: 0.2, 0.5, 1, 2 times a power of ten
  }
  const css = getComputedStyle(document.documentElement);
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = css.getPropertyValue("--muted") || "#666";
  ctx.strokeStyle = css.getPropertyValue("--line") || "#ddd";
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let i = 0; i <= ticks; i++) {
    const y = top + hgt - (hgt * i) / ticks;
    ctx.beginPath();
    ctx.moveTo(left, y);
    ctx.lineTo(left + w, y);
    ctx.stroke();
    const v = (top_ * i) / ticks;
    ctx.fillText((v < 10 ? String(Math.round(v * 10) / 10) : fmtRate(v)) + "/s", left - 6, y);
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  const step = span >= 240 ? 60 : span >= 60 ? 30 : 10;
  for (let ago = 0; ago <= span; ago += step) {
    const x = left + w - (w * ago) / span;
    ctx.fillText(ago === 0 ? "now" : "−" + fmtDuration(ago * 1000), x, top + hgt + 6);
  }
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    let first = true;
    for (const [t, v] of s.points) {
      if (t < start) continue;
      const x = left + (w * (t - start)) / span;
      const y = top + hgt - (hgt * Math.min(v, top_)) / top_;
      if (first) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
      first = false;
    }
    ctx.stroke();
  }
}

function chartPanel(id, labels) {
  return h("div", { className: "panel" },
    h("canvas", { className: "chart", id }),
    h("div", { className: "legend" },
      labels.map(([cls, text]) => h("span", {}, h("span", { className: "swatch " + cls }), text))));
}

/// Rates between successive polls of counters: `track(t_s, {pushed, deleted})`.
class RateTracker {
  constructor() {
    this.last = null;
    this.points = { pushed: [], deleted: [] };
  }
  track(t, counts) {
    if (this.last && t > this.last.t) {
      for (const k of Object.keys(this.points)) {
        const rate = Math.max(0, counts[k] - this.last.counts[k]) / (t - this.last.t);
        this.points[k].push([t, rate]);
        if (this.points[k].length > MAX_POINTS) this.points[k].shift();
      }
    }
    this.last = { t, counts };
  }
}

function rateSeries(pushed, deleted) {
  const css = getComputedStyle(document.documentElement);
  return [
    { color: css.getPropertyValue("--push").trim() || "#2271b1", points: pushed },
    { color: css.getPropertyValue("--delete").trim() || "#b5451b", points: deleted },
  ];
}

// ---------------------------------------------------------------- views

let generation = 0; // bumped on every navigation: stale polls stop themselves
let pollTimer = null;

/// Runs `refresh` now and every POLL_MS while this view is shown.
function poll(refresh) {
  const mine = generation;
  const tick = async () => {
    if (mine !== generation) return;
    try {
      await refresh();
    } catch (err) {
      if (mine === generation && err.status !== 401) toast(err.message, true);
      if (err.status === 401) return;
    }
    if (mine === generation) pollTimer = setTimeout(tick, POLL_MS);
  };
  tick();
}

function setView(...children) {
  generation++;
  clearTimeout(pollTimer);
  const main = $("main");
  main.replaceChildren(...children);
  for (const id of ["nav-overview", "nav-queues"]) $(id).classList.remove("active");
}

function showLogin(error) {
  setView(
    h("div", { className: "login panel" },
      h("h1", {}, "Log in"),
      h("p", { className: "muted" },
        "Type a token of this server (--token). It is kept in this tab only, and sent with each request as a header."),
      h("form", { id: "login-form", on: { submit: login } },
        h("input", { id: "token", type: "password", autocomplete: "off", placeholder: "token", required: true }),
        h("button", { id: "login", type: "submit", className: "primary" }, "Log in")),
      h("p", { id: "login-error", className: "error" }, error || "")));
  $("who").textContent = "";
  $("logout").hidden = true;
  $("token").focus();
}

async function login(event) {
  event.preventDefault();
  const value = $("token").value.trim();
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  try {
    whoAmI(await api("GET", "overview"));
  } catch (err) {
    if (err.status !== 401) $("login-error").textContent = err.message;
    return;
  }
  if (location.hash === "" || location.hash === "#/login") location.hash = "#/";
  route();
}

function whoAmI(overview) {
  const scope = overview.scope === "all" ? "every queue" : "projects " + overview.scope.join(", ");
  $("who").textContent = overview.auth ? "token for " + scope : "no authentication";
  $("logout").hidden = !overview.auth;
}

function overviewView() {
  setView(
    h("h1", {}, "Overview"),
    h("div", { className: "cards", id: "ov-cards" }),
    h("h2", {}, "Messages per second"),
    chartPanel("ov-chart", [["push", "pushed (in)"], ["delete", "deleted (out)"]]));
  $("nav-overview").classList.add("active");
  const tracker = new RateTracker();
  let flushesBefore = null;
  poll(async () => {
    const o = await api("GET", "overview");
    whoAmI(o);
    const now = o.uptime_ms / 1000;
    let commitRate = null;
    if (flushesBefore) commitRate = Math.max(0, o.flushes - flushesBefore.n) / Math.max(0.001, now - flushesBefore.t);
    flushesBefore = { n: o.flushes, t: now };
    let pushed, deleted, rates;
    if (o.history) {
      // Every queue: the server's 1 s samples.
      pushed = [];
      deleted = [];
      for (let i = 1; i < o.history.length; i++) {
        const [t0, p0, , d0] = o.history[i - 1];
        const [t1, p1, , d1] = o.history[i];
        const dt = t1 - t0;
        if (dt <= 0) continue;
        pushed.push([t1, Math.max(0, p1 - p0) / dt]);
        deleted.push([t1, Math.max(0, d1 - d0) / dt]);
      }
      rates = o.rates;
    } else {
      tracker.track(now, { pushed: o.totals.pushed, deleted: o.totals.deleted });
      pushed = tracker.points.pushed;
      deleted = tracker.points.deleted;
      const last = (list) => (list.length ? list[list.length - 1][1] : null);
      rates = { pushed: last(pushed), deleted: last(deleted) };
    }
    const t = o.totals;
    $("ov-cards").replaceChildren(
      card("version", o.version, "version"),
      card("uptime", fmtDuration(o.uptime_ms), "uptime"),
      card("fsync", o.fsync, "fsync"),
      card("connections", fmtInt(o.connections), "connections"),
      card("queues", fmtInt(o.queues), "queues"),
      card("messages", fmtInt(t.size), "messages"),
      card("in flight", fmtInt(t.reserved), "reserved"),
      card("in (pushed/s)", fmtRate(rates.pushed), "pushed-rate"),
      card("out (deleted/s)", fmtRate(rates.deleted), "deleted-rate"),
      card("group commits/s", fmtRate(commitRate), "commit-rate"),
      card("flush mean", o.commit ? o.commit.flush_ms.toFixed(2) + " ms" : "—", "flush-mean"),
      card("writes per flush", o.commit ? o.commit.writes_per_flush.toFixed(1) : "—", "writes-per-flush"),
      card("data dir", fmtBytes(o.data_dir_bytes), "data-dir"),
      card("pushed (total)", fmtInt(t.pushed), "pushed"),
      card("deleted (total)", fmtInt(t.deleted), "deleted"),
      card("timed out (total)", fmtInt(t.timed_out), "timed-out"));
    drawChart($("ov-chart"), rateSeries(pushed, deleted), o.history ? 300 : Math.min(300, Math.max(60, pushed.length * 2)));
  });
}

const COLUMNS = [
  ["name", "Queue"],
  ["size", "Size"],
  ["available", "Available"],
  ["reserved", "Reserved"],
  ["delayed", "Delayed"],
  ["oldest", "Oldest"],
  ["push_rate", "Push/s"],
  ["delete_rate", "Delete/s"],
  [null, "Dead letter"],
];

function queuesView(params) {
  const state = {
    prefix: params.get("prefix") || "",
    sort: params.get("sort") || "name",
    order: params.get("order") || "asc",
    offset: Math.max(0, parseInt(params.get("offset") || "0", 10) || 0),
    limit: 50,
  };
  const go = (changes) => {
    const next = new URLSearchParams({ ...state, ...changes });
    next.delete("limit");
    location.hash = "#/queues?" + next.toString();
  };
  const prefix = h("input", { id: "q-prefix", type: "search", placeholder: "name prefix", value: state.prefix, spellcheck: "false" });
  let typing = null;
  prefix.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => go({ prefix: prefix.value, offset: 0 }), 400);
  });
  const head = h("tr", {}, COLUMNS.map(([key, label]) => {
    const th = h("th", { className: key ? "sortable" : "", "data-sort": key }, label);
    if (key === state.sort) th.classList.add(state.order === "desc" ? "sorted-desc" : "sorted-asc");
    if (key) {
      th.addEventListener("click", () => {
        const order = key === state.sort ? (state.order === "asc" ? "desc" : "asc") : key === "name" ? "asc" : "desc";
        go({ sort: key, order, offset: 0 });
      });
    }
    return th;
  }));
  const body = h("tbody", { id: "q-rows" });
  const info = h("span", { id: "q-page", className: "muted" });
  const prev = h("button", { id: "q-prev", type: "button", on: { click: () => go({ offset: Math.max(0, state.offset - state.limit) }) } }, "← Previous");
  const next = h("button", { id: "q-next", type: "button", on: { click: () => go({ offset: state.offset + state.limit }) } }, "Next →");
  setView(
    h("h1", {}, "Queues"),
    h("div", { className: "toolbar" }, h("label", {}, "Filter ", prefix), h("span", { className: "muted" }, "click a column to sort")),
    h("table", { id: "q-table" }, h("thead", {}, head), body),
    h("div", { className: "pager" }, prev, next, info));
  $("nav-queues").classList.add("active");
  poll(async () => {
    const page = await api("GET", "queues", state);
    body.replaceChildren(...page.queues.map((q) => h("tr", { "data-queue": q.name },
      h("td", {}, h("a", { href: "#/queue/" + encodeURIComponent(q.name) }, q.name)),
      h("td", { "data-field": "size" }, fmtInt(q.size)),
      h("td", { "data-field": "available" }, fmtInt(q.available)),
      h("td", { "data-field": "reserved" }, fmtInt(q.reserved)),
      h("td", { "data-field": "delayed" }, fmtInt(q.delayed)),
      h("td", { "data-field": "oldest" }, q.oldest_age_ms ? fmtDuration(q.oldest_age_ms) : "—"),
      h("td", { "data-field": "push-rate" }, fmtRate(q.rates.pushed)),
      h("td", { "data-field": "delete-rate" }, fmtRate(q.rates.deleted)),
      h("td", { className: "text", "data-field": "dead-letter" },
        q.dead_letter ? h("a", { href: "#/queue/" + encodeURIComponent(q.dead_letter) }, q.dead_letter) : "—"))));
    if (!page.queues.length) {
      body.replaceChildren(h("tr", {}, h("td", { colspan: COLUMNS.length, className: "muted" },
        state.prefix ? "No queue starts with " + JSON.stringify(state.prefix) + "." : "No queues yet: push a message to create one.")));
    }
    const last = state.offset + page.queues.length;
    info.textContent = page.total
      ? fmtInt(state.offset + (page.queues.length ? 1 : 0)) + "–" + fmtInt(last) + " of " + fmtInt(page.total)
      : "";
    prev.disabled = state.offset === 0;
    next.disabled = last >= page.total;
  });
}

/// The settings form of a queue (pull or push); `shown(q)` shows the queue as
/// the server has it after a save.
function settingsForm(name, q, shown) {
  const s = q.settings;
  const dl = s.dead_letter || {};
  const timeout = h("input", { id: "s-timeout", type: "number", min: 1, max: 86400, value: s.message_timeout });
  const expiration = h("input", { id: "s-expiration", type: "number", min: 1, value: s.message_expiration });
  const dlName = h("input", { id: "s-dead-letter", value: dl.queue_name || "", placeholder: "none", spellcheck: "false" });
  const dlMax = h("input", { id: "s-max-reservations", type: "number", min: 1, value: dl.max_reservations || 10 });
  const rows = [
    h("label", { for: "s-timeout" }, "Lease timeout (s)"), timeout,
    h("label", { for: "s-expiration" }, "Expiration (s)"), expiration,
  ];
  let push = null;
  if (s.push) {
    push = {
      retries: h("input", { id: "s-retries", type: "number", min: 0, value: s.push.retries }),
      delay: h("input", { id: "s-retries-delay", type: "number", min: 0, value: s.push.retries_delay }),
      errorQueue: h("input", { id: "s-error-queue", value: s.push.error_queue || "", placeholder: "none", spellcheck: "false" }),
      subscribers: h("textarea", { id: "s-subscribers", spellcheck: "false" }),
    };
    push.subscribers.value = s.push.subscribers.map((x) => x.name + " " + x.url).join("\n");
    rows.push(
      h("label", { for: "s-retries" }, "Push retries"), push.retries,
      h("label", { for: "s-retries-delay" }, "Retry delay (s)"), push.delay,
      h("label", { for: "s-error-queue" }, "Error queue"), push.errorQueue,
      h("label", { className: "full", for: "s-subscribers" }, "Subscribers, one per line: NAME URL"), h("div", { className: "full" }, push.subscribers));
  } else {
    rows.push(
      h("label", { for: "s-dead-letter" }, "Dead-letter queue"), dlName,
      h("label", { for: "s-max-reservations" }, "Dead-letter after reservations"), dlMax);
  }
  const save = async (event) => {
    event.preventDefault();
    const queue = {
      message_timeout: Number(timeout.value),
      message_expiration: Number(expiration.value),
    };
    if (push) {
      const before = new Map(s.push.subscribers.map((x) => [x.name, x.headers]));
      const subscribers = push.subscribers.value.split("\n").map((l) => l.trim()).filter(Boolean).map((line) => {
        const [sname, url] = line.includes(" ") ? line.split(/\s+/, 2) : [line, line];
        return { name: sname, url, headers: before.get(sname) || {} };
      });
      queue.push = {
        retries: Number(push.retries.value),
        retries_delay: Number(push.delay.value),
        error_queue: push.errorQueue.value.trim(),
        subscribers,
      };
    } else {
      queue.dead_letter = dlName.value.trim()
        ? { queue_name: dlName.value.trim(), max_reservations: Number(dlMax.value) }
        : { queue_name: "" };
    }
    if (!(await confirmAction("Save these settings of " + name + "?"))) return;
    try {
      shown(await api("PATCH", "queue", { name }, { queue }));
      toast("Settings saved.");
    } catch (err) {
      toast(err.message, true);
    }
  };
  return h("form", { className: "grid", id: "settings", on: { submit: save } },
    rows,
    h("div", { className: "full" }, h("button", { id: "s-save", type: "submit", className: "primary" }, "Save settings")));
}

function messageBox(name, m, onDeleted) {
  const pre = h("pre", { "data-field": "body" });
  if (m.body.text !== undefined) {
    pre.textContent = m.body.text; // text, never markup
  } else {
    pre.textContent = (m.body.hex.match(/.{1,2}/g) || []).join(" ");
    pre.classList.add("hex");
  }
  const del = h("button", {
    type: "button", className: "danger", "data-action": "delete-message",
    disabled: m.state === "reserved",
    title: m.state === "reserved" ? "Reserved: only its consumer can delete it (or clear the queue)" : "",
    on: {
      click: async () => {
        if (!(await confirmAction("Delete message " + m.id + " of " + name + "?"))) return;
        try {
          await api("DELETE", "message", { name, id: m.id });
          toast("Message " + m.id + " deleted.");
          onDeleted();
        } catch (err) {
          toast(err.message, true);
        }
      },
    },
  }, "Delete");
  return h("div", { className: "message", "data-message": m.id },
    h("div", { className: "meta" },
      h("span", {}, "id ", h("b", {}, m.id)),
      h("span", { className: "badge " + m.state, "data-field": "state" }, m.state),
      h("span", { "data-field": "reserved-count" }, "reserved " + m.reserved_count + "×"),
      m.priority !== 8 ? h("span", { "data-field": "priority" }, "priority " + m.priority) : null,
      m.key ? h("span", { "data-field": "key" }, "key " + m.key) : null,
      h("span", {}, "pushed " + fmtTime(m.pushed_at_ms)),
      m.state === "reserved" ? h("span", {}, "lease until " + fmtTime(m.reserved_until_ms)) : null,
      m.state === "delayed" ? h("span", {}, "available at " + fmtTime(m.available_at_ms)) : null,
      h("span", {}, fmtBytes(m.size) + (m.truncated ? " (shown in part)" : "") + (m.body.hex !== undefined ? ", binary (hex)" : "")),
      h("span", { className: "spacer" }),
      del),
    pre,
    history(m.history || []));
}

// A message's delivery attempts (get by id only), oldest first.
function history(attempts) {
  if (attempts.length === 0) return null;
  return h("ol", { className: "history", "data-field": "history" },
    ...attempts.map((a) => h("li", {},
      a.outcome.replace("_", " ") + " · " + (a.consumer || "unnamed consumer") +
      (a.reserved_at_ms ? " · reserved " + fmtTime(a.reserved_at_ms) + " · " + a.duration_ms + " ms" : "") +
      (a.touches ? " · " + a.touches + " touch" + (a.touches === 1 ? "" : "es") : ""))));
}

function queueView(name) {
  const cards = h("div", { className: "cards", id: "qv-cards" });
  const title = h("h1", { id: "qv-name" }, name);
  const kind = h("span", { className: "badge", id: "qv-kind" });
  const settingsBox = h("div", { className: "panel", id: "qv-settings" }, h("p", { className: "muted" }, "Loading…"));
  const peekN = h("input", { id: "peek-n", type: "number", min: 1, max: 100, value: 10 });
  const peekList = h("div", { id: "peek-list" });
  const lookupId = h("input", { id: "lookup-id", placeholder: "message id", spellcheck: "false" });
  const lookupOut = h("div", { id: "lookup-result" });
  const redriveTo = h("input", { id: "redrive-to", placeholder: "target queue (full name)", spellcheck: "false" });
  const redriveN = h("input", { id: "redrive-n", type: "number", min: 1, max: 100, value: 100 });
  const peek = async () => {
    try {
      const r = await api("GET", "messages", { name, n: peekN.value });
      peekList.replaceChildren(...(r.messages.length
        ? r.messages.map((m) => messageBox(name, m, peek))
        : [h("p", { className: "muted" }, "No message to peek (reserved and delayed ones are not shown first).")]));
    } catch (err) {
      toast(err.message, true);
    }
  };
  const lookup = async (event) => {
    event.preventDefault();
    const id = lookupId.value.trim();
    if (!/^[0-9]+$/.test(id)) {
      lookupOut.replaceChildren(h("p", { className: "error" }, "A message id is a number."));
      return;
    }
    try {
      const r = await api("GET", "message", { name, id });
      lookupOut.replaceChildren(messageBox(name, r.message, () => lookupOut.replaceChildren()));
    } catch (err) {
      lookupOut.replaceChildren(h("p", { className: "error" }, err.message));
    }
  };
  const clear = async () => {
    if (!(await confirmAction("Remove every message of " + name + "? This cannot be undone."))) return;
    try {
      const r = await api("DELETE", "messages", { name });
      toast("Cleared " + fmtInt(r.cleared) + " message(s).");
      peekList.replaceChildren();
    } catch (err) {
      toast(err.message, true);
    }
  };
  const remove = async () => {
    if (!(await confirmAction("Delete queue " + name + " and all its messages?", name))) return;
    try {
      await api("DELETE", "queue", { name });
      toast("Queue " + name + " deleted.");
      location.hash = "#/queues";
    } catch (err) {
      toast(err.message, true);
    }
  };
  const redrive = async (event) => {
    event.preventDefault();
    const to = redriveTo.value.trim();
    if (!to) return toast("Name the queue to move the messages to.", true);
    if (!(await confirmAction("Move up to " + redriveN.value + " available message(s) from " + name + " to " + to + "?"))) return;
    try {
      const r = await api("POST", "redrive", { name, to, n: redriveN.value });
      toast("Moved " + fmtInt(r.moved) + " message(s) to " + to + ".");
    } catch (err) {
      toast(err.message, true);
    }
  };
  setView(
    h("p", {}, h("a", { href: "#/queues" }, "← Queues")),
    h("div", { className: "actions-row" }, title, kind),
    cards,
    h("h2", {}, "Messages per second (since this page opened)"),
    chartPanel("qv-chart", [["push", "pushed"], ["delete", "deleted"]]),
    h("h2", {}, "Peek"),
    h("div", { className: "toolbar" },
      h("label", {}, "First ", peekN, " messages "),
      h("button", { id: "peek", type: "button", className: "primary", on: { click: peek } }, "Peek")),
    peekList,
    h("h2", {}, "Look up a message"),
    h("form", { className: "toolbar", id: "lookup-form", on: { submit: lookup } },
      lookupId, h("button", { id: "lookup", type: "submit" }, "Look up")),
    lookupOut,
    h("h2", {}, "Settings"),
    settingsBox,
    h("h2", {}, "Actions"),
    h("div", { className: "panel" },
      h("form", { className: "toolbar", id: "redrive-form", on: { submit: redrive } },
        h("span", {}, "Redrive"), redriveN, h("span", {}, "available messages to"), redriveTo,
        h("button", { id: "redrive", type: "submit" }, "Redrive")),
      h("div", { className: "actions-row" },
        h("button", { id: "clear", type: "button", className: "danger", on: { click: clear } }, "Clear all messages"),
        h("button", { id: "delete-queue", type: "button", className: "danger", on: { click: remove } }, "Delete queue"))));
  $("nav-queues").classList.add("active");
  const tracker = new RateTracker();
  let settingsShown = false;
  const showSettings = (q) => {
    settingsBox.replaceChildren(settingsForm(name, q, showSettings));
    settingsShown = true;
  };
  poll(async () => {
    let q;
    try {
      q = await api("GET", "queue", { name });
    } catch (err) {
      if (err.status === 404) {
        cards.replaceChildren(h("p", { className: "error" }, "Queue " + name + " does not exist (any more)."));
        return;
      }
      throw err;
    }
    const f = q.figures;
    kind.textContent = q.settings.type;
    if (!settingsShown) showSettings(q);
    const dl = q.settings.dead_letter;
    cards.replaceChildren(
      card("size", fmtInt(f.size), "size"),
      card("available", fmtInt(f.available), "available"),
      card("reserved", fmtInt(f.reserved), "reserved"),
      card("delayed", fmtInt(f.delayed), "delayed"),
      card("oldest", f.oldest_age_ms ? fmtDuration(f.oldest_age_ms) : "—", "oldest"),
      card("bytes", fmtBytes(f.bytes), "bytes"),
      card("pushed/s", fmtRate(q.rates.pushed), "push-rate"),
      card("deleted/s", fmtRate(q.rates.deleted), "delete-rate"),
      card("pushed", fmtInt(f.pushed), "pushed"),
      card("reservations", fmtInt(f.reservations), "reservations"),
      card("deleted", fmtInt(f.deleted), "deleted"),
      card("released", fmtInt(f.released), "released"),
      card("timed out", fmtInt(f.timed_out), "timed-out"),
      card("dead-lettered", fmtInt(f.dead_lettered), "dead-lettered"),
      card("expired", fmtInt(f.expired), "expired"),
      card("long polls waiting", fmtInt(q.waiting), "waiting"),
      card("processing p50 / p99", q.settings.processing_time
        ? fmtDuration(q.settings.processing_time.p50_ms) + " / " + fmtDuration(q.settings.processing_time.p99_ms)
        : "—", "processing", true),
      card("dead letter", dl ? dl.queue + " after " + dl.max_reservations : "—", "dead-letter", true),
      card("created", fmtTime(q.created_at_ms), "created", true));
    tracker.track(performance.now() / 1000, { pushed: f.pushed, deleted: f.deleted });
    drawChart($("qv-chart"), rateSeries(tracker.points.pushed, tracker.points.deleted),
      Math.min(300, Math.max(60, tracker.points.pushed.length * 2)));
  });
}

// ---------------------------------------------------------------- routing

function route() {
  if (!$("main")) return;
  const hash = location.hash || "#/";
  const [path, query] = hash.slice(1).split("?");
  const params = new URLSearchParams(query || "");
  if (path.startsWith("/queue/")) {
    let name;
    try {
      name = decodeURIComponent(path.slice("/queue/".length));
    } catch (_) {
      name = "";
    }
    if (name) return queueView(name);
  }
  if (path === "/queues") return queuesView(params);
  return overviewView();
}

async function start() {
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin("");
  });
  window.addEventListener("hashchange", route);
  try {
    // Without a token this tells whether the server has authentication at all.
    whoAmI(await api("GET", "overview"));
  } catch (err) {
    if (err.status !== 401) toast(err.message, true);
    return; // showLogin has run (401)
  }
  route();
}

document.addEventListener("DOMContentLoaded", start);
