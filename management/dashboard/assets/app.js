// Verge management dashboard: reads the operator API of the management
// server that served this page, redraws every two seconds, and drives purges.
"use strict";

const API = "/api/v1";
const REFRESH_MS = 2000;
const TOKEN_KEY = "verge-operator-token";

let token = "";
let refreshing = false;
let timer = null;

// ---- small DOM helpers (text only: nothing from the API becomes markup) ----

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svgEl(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

// ---- formatting (the browser test parses these back) ----

function fmtRate(x) { return (x || 0).toFixed(1); }

function fmtRatio(r) { return r === null || r === undefined ? "–" : (100 * r).toFixed(1) + "%"; }

const UNITS = ["B", "kB", "MB", "GB", "TB"];

function fmtBytes(b, suffix) {
  let v = b || 0, i = 0;
  while (v >= 1000 && i < UNITS.length - 1) { v /= 1000; i++; }
  return v.toFixed(1) + " " + UNITS[i] + (suffix || "");
}

function fmtAge(s) {
  if (s === null || s === undefined) return "never";
  if (s < 60) return Math.round(s) + "s ago";
  if (s < 3600) return Math.round(s / 60) + "m ago";
  return Math.round(s / 3600) + "h ago";
}

function fmtTime(iso) {
  const d = new Date(iso);
  return isNaN(d) ? "" : d.toLocaleTimeString([], { hour12: false });
}

// ---- API ----

class AuthError extends Error {}

async function api(path, opts) {
  const res = await fetch(API + path, Object.assign({}, opts, {
    headers: Object.assign({ "Authorization": "Bearer " + token }, (opts || {}).headers || {}),
    cache: "no-store",
  }));
  if (res.status === 401) throw new AuthError("the operator token was refused");
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || res.status + " " + res.statusText);
  return body;
}

// ---- login ----

function showLogin(msg) {
  $("main").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = msg || "";
  $("conn").textContent = "signed out";
  $("conn").className = "conn bad";
  if (timer) { clearTimeout(timer); timer = null; }
}

function start() {
  $("login").hidden = true;
  $("main").hidden = false;
  $("logout").hidden = false;
  refresh();
}

// ---- rendering ----

function renderTotals(nodes, alerts) {
  const t = nodes.totals || {};
  const edge = t.edge || {}, hub = t.hub || {};
  $("total-edge-rps").textContent = fmtRate(edge.rps);
  $("total-edge-hit").textContent = fmtRatio(edge.hit_ratio);
  $("total-edge-bw").textContent = fmtBytes(edge.bytes_per_second, "/s");
  $("total-hub-rps").textContent = fmtRate(hub.rps);
  let up = 0, all = 0;
  for (const n of nodes.nodes) { all++; if (n.health === "up") up++; }
  $("total-up").textContent = up + " / " + all;
  $("total-up").className = "value" + (up < all ? " warn" : "");
  $("total-alerts").textContent = String(alerts.active.length);
  $("total-alerts").className = "value" + (alerts.active.length ? " bad" : "");
  $("generation").textContent = String(nodes.generation);
  $("main").dataset.generation = String(nodes.generation);
}

function cacheFill(tiers) {
  if (!tiers || !tiers.length) return "–";
  return tiers.map(t => t.name + " " + fmtBytes(t.bytes)).join(", ");
}

function renderNodes(nodes) {
  const byRegion = new Map();
  for (const n of nodes.nodes) {
    if (!byRegion.has(n.region)) byRegion.set(n.region, []);
    byRegion.get(n.region).push(n);
  }
  const out = [];
  for (const [region, list] of byRegion) {
    const up = list.filter(n => n.health === "up").length;
    const rows = list.map(n => el("tr", { "data-node": n.name, "data-health": n.health },
      el("td", { class: "name", title: n.instance ? "instance " + n.instance : "" }, n.name),
      el("td", { "data-field": "role" }, n.role),
      el("td", { "data-field": "health" }, el("span", { class: "badge " + n.health }, n.health.replace("_", " ")),
        n.attack && n.attack.under_attack ? el("span", { class: "badge attack" }, "attack") : null),
      el("td", { class: "num", "data-field": "rps" }, fmtRate(n.rps)),
      el("td", { class: "num", "data-field": "hit_ratio" }, fmtRatio(n.hit_ratio)),
      el("td", { class: "num", "data-field": "bandwidth" }, fmtBytes(n.bytes_per_second, "/s")),
      el("td", { class: "num", "data-field": "error_rate" }, fmtRatio(n.error_rate)),
      el("td", { "data-field": "cache" }, cacheFill(n.tiers)),
      el("td", { "data-field": "version" }, n.version || "–"),
      el("td", { "data-field": "age" }, fmtAge(n.last_report_age_seconds))));
    out.push(el("div", { class: "region", "data-region": region },
      el("h3", {}, region, el("span", { class: "muted" }, " · " + list.length + (list.length === 1 ? " node, " : " nodes, ") + up + " up")),
      el("table", { class: "grid" },
        el("thead", {}, el("tr", {}, ...["node", "role", "health", "req/s", "hit ratio", "bandwidth", "5xx", "cache fill", "version", "last report"]
          .map((h, i) => el("th", { class: i >= 3 && i <= 6 ? "num" : "" }, h)))),
        el("tbody", {}, ...rows))));
  }
  if (!out.length) out.push(el("p", { class: "muted" }, "No node has reported yet."));
  $("regions").replaceChildren(...out);
}

function renderAlerts(alerts) {
  const items = alerts.active.map(a => el("li", { "data-alert": a.id, class: "alert " + a.severity },
    el("span", { class: "badge " + a.severity }, a.severity),
    el("span", { class: "rule" }, a.rule),
    el("div", { class: "summary" }, a.summary),
    el("div", { class: "muted" }, "since " + fmtTime(a.starts_at))));
  if (!items.length) items.push(el("li", { class: "muted" }, "none"));
  $("alerts").replaceChildren(...items);
}

function renderProperties(props) {
  const rows = props.properties.map(p => el("tr", { "data-property": p.property },
    el("td", {}, p.property),
    el("td", { class: "num" }, fmtRate(p.rps)),
    el("td", { class: "num" }, fmtRatio(p.hit_ratio)),
    el("td", { class: "num" }, fmtBytes(p.bytes_per_second, "/s")),
    el("td", { class: "num" }, fmtRatio(p.error_rate)),
    el("td", { class: "num" }, String(p.requests))));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "6", class: "muted" }, "no traffic yet")));
  $("properties").replaceChildren(...rows);
}

// niceMax rounds a chart's top up to 1, 2 or 5 times a power of ten.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function drawChart(svg, points, value, fmt, fixedMax) {
  const W = 420, H = 160, L = 52, R = 8, T = 10, B = 24;
  const vals = points.map(value);
  const max = fixedMax || niceMax(Math.max(0, ...vals.filter(v => v !== null)));
  const x = i => L + (W - L - R) * (points.length > 1 ? i / (points.length - 1) : 0);
  const y = v => T + (H - T - B) * (1 - v / max);
  const kids = [];
  for (const f of [0, 0.5, 1]) {
    kids.push(svgEl("line", { x1: L, x2: W - R, y1: y(f * max), y2: y(f * max), class: "gridline" }));
    const t = svgEl("text", { x: L - 6, y: y(f * max) + 4, class: "axis", "text-anchor": "end" });
    t.textContent = fmt(f * max);
    kids.push(t);
  }
  for (const [i, label] of [[0, "-60m"], [Math.floor((points.length - 1) / 2), "-30m"], [points.length - 1, "now"]]) {
    const t = svgEl("text", { x: x(i), y: H - 6, class: "axis", "text-anchor": i === 0 ? "start" : i === points.length - 1 ? "end" : "middle" });
    t.textContent = label;
    kids.push(t);
  }
  let d = "", pen = false, area = "";
  vals.forEach((v, i) => {
    if (v === null) { pen = false; return; }
    d += (pen ? "L" : "M") + x(i).toFixed(1) + " " + y(v).toFixed(1);
    pen = true;
    // A value with no neighbour draws no line: mark it with a dot.
    const alone = (i === 0 || vals[i - 1] === null) && (i === vals.length - 1 || vals[i + 1] === null);
    if (alone) kids.push(svgEl("circle", { cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2.5, class: "dot" }));
  });
  if (d) {
    area = d + "L" + x(vals.length - 1).toFixed(1) + " " + y(0) + "L" + L + " " + y(0) + "Z";
    if (!vals.some(v => v === null)) kids.push(svgEl("path", { d: area, class: "area" }));
    kids.push(svgEl("path", { d, class: "line" }));
  }
  const last = [...vals].reverse().find(v => v !== null);
  const title = svgEl("title", {});
  title.textContent = last === undefined ? "no data" : "latest: " + fmt(last);
  kids.push(title);
  svg.replaceChildren(...kids);
}

function renderCharts(series) {
  // The newest step is still filling: leave it out rather than draw a dip.
  const pts = series.points.filter(p => !p.partial);
  drawChart($("chart-rps"), pts, p => p.rps, v => v.toFixed(v < 10 ? 1 : 0));
  drawChart($("chart-hit"), pts, p => p.hit_ratio, v => Math.round(100 * v) + "%", 1);
  drawChart($("chart-bw"), pts, p => p.bytes_per_second, v => fmtBytes(v, "/s"));
}

async function refresh() {
  if (refreshing) return;
  refreshing = true;
  try {
    const [nodes, alerts, series, props] = await Promise.all([
      api("/nodes"), api("/alerts"), api("/series?window=1h&step=1m&role=edge"), api("/properties"),
    ]);
    renderTotals(nodes, alerts);
    renderNodes(nodes);
    renderAlerts(alerts);
    renderCharts(series);
    renderProperties(props);
    $("conn").textContent = "live";
    $("conn").className = "conn ok";
    $("updated").textContent = "updated " + fmtTime(nodes.at);
  } catch (e) {
    if (e instanceof AuthError) {
      sessionStorage.removeItem(TOKEN_KEY);
      refreshing = false;
      showLogin(e.message);
      return;
    }
    $("conn").textContent = "unreachable: " + e.message;
    $("conn").className = "conn bad";
  }
  refreshing = false;
  timer = setTimeout(refresh, REFRESH_MS);
}

// ---- purge ----

function renderPurge(st) {
  $("purge-status").hidden = false;
  const p = st.progress;
  const what = st.kind + (st.value ? " " + st.value : "") + (st.soft ? " (soft)" : "");
  $("purge-summary").replaceChildren(
    el("span", { class: "badge " + st.state, id: "purge-state" }, st.state),
    " purge #" + st.id + " · " + what + " · ",
    el("span", { id: "purge-progress" }, p.ok + "/" + p.nodes + " acknowledged" + (p.failed ? ", " + p.failed + " failed" : "")));
  $("purge-status").dataset.purgeId = String(st.id);
  $("purge-status").dataset.state = st.state;
  $("purge-acks").replaceChildren(...st.nodes.map(n => el("tr", { "data-ack-node": n.node, "data-state": n.state },
    el("td", {}, n.node),
    el("td", {}, n.region),
    el("td", {}, el("span", { class: "badge " + (n.state === "ok" ? "up" : n.state === "failed" ? "down" : "pending"), title: n.error || "" }, n.state)),
    el("td", { class: "num" }, n.matched === undefined ? "–" : String(n.matched)),
    el("td", { class: "num" }, n.state === "pending" ? "…" : (n.took_ns / 1e6).toFixed(1) + " ms"))));
}

async function purge(ev) {
  ev.preventDefault();
  const kind = $("purge-kind").value;
  const body = { kind, soft: $("purge-soft").checked };
  if (kind !== "all") body.value = $("purge-value").value.trim();
  $("purge-error").textContent = "";
  $("purge-submit").disabled = true;
  try {
    let st = await api("/purge", { method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" } });
    renderPurge(st);
    while (st.state === "running") {
      await new Promise(r => setTimeout(r, 250));
      st = await api("/purge/" + st.id);
      renderPurge(st);
    }
  } catch (e) {
    if (e instanceof AuthError) { showLogin(e.message); return; }
    $("purge-error").textContent = e.message;
  } finally {
    $("purge-submit").disabled = false;
  }
}

function kindChanged() {
  const k = $("purge-kind").value;
  const ph = { url: "https://www.example.test/path", prefix: "https://www.example.test/images/", tag: "product-42", host: "www.example.test", all: "" };
  $("purge-value").placeholder = ph[k];
  $("purge-value").disabled = k === "all";
}

// ---- start ----

document.addEventListener("DOMContentLoaded", () => {
  const m = location.hash.match(/^#token=(.+)$/);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  token = sessionStorage.getItem(TOKEN_KEY) || "";
  $("login-form").addEventListener("submit", ev => {
    ev.preventDefault();
    token = $("token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    start();
  });
  $("logout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); token = ""; showLogin(""); });
  $("purge-form").addEventListener("submit", purge);
  $("purge-kind").addEventListener("change", kindChanged);
  kindChanged();
  if (token) start(); else showLogin("");
});
