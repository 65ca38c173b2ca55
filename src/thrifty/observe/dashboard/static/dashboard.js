// thrifty dashboard: polls dashboard/api/stats and draws plain SVG charts (no libraries).
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const params = new URLSearchParams(location.search);
const INTERVAL_MS = Number(params.get("interval") || 2000);
// With API keys configured the page asks for an admin key once (the login form);
// the gateway answers with an HttpOnly session cookie that fetch sends by itself.
const LOGIN_ERRORS = { failed: "That key was not accepted.", admin: "The dashboard needs an admin key." };
const COLORS = { cost: "#4fb3ff", nocache: "#ffb347", top: "#ff6b6b", p50: "#4cd38a", p95: "#ffb347", p99: "#ff6b6b", hit: "#4cd38a" };

function $(id) { return document.getElementById(id); }

function money(v) {
  if (v === null || v === undefined) return "–";
  const a = Math.abs(v);
  if (a === 0) return "$0";
  if (a < 0.01) return "$" + v.toFixed(6);
  if (a < 100) return "$" + v.toFixed(4);
  return "$" + v.toFixed(2);
}
function pct(v) { return v === null || v === undefined ? "n/a" : (v * 100).toFixed(1) + "%"; }
function ms(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds >= 1) return seconds.toFixed(2) + " s";
  return (seconds * 1000).toFixed(seconds < 0.01 && seconds > 0 ? 2 : 0) + " ms";
}
function count(v) { return Math.round(v).toLocaleString("en-US"); }
function clock(t) { return new Date(t * 1000).toTimeString().slice(0, 8); }

function setText(id, text, raw) {
  const el = $(id);
  el.textContent = text;
  if (raw !== undefined) el.dataset.value = raw === null ? "" : String(raw);
}

function el(tag, attrs, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// A line chart: series = [{name, color, points: [[x, y], ...]}].
function lineChart(svg, series, format) {
  svg.replaceChildren();
  const box = svg.viewBox.baseVal, W = box.width, H = box.height;
  const L = 62, R = 10, T = 22, B = 22;
  const pts = series.flatMap(s => s.points);
  if (!pts.length) {
    svg.append(el("svg:text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, "no traffic yet"));
    return;
  }
  let x0 = Math.min(...pts.map(p => p[0])), x1 = Math.max(...pts.map(p => p[0]));
  if (x1 === x0) { x0 -= 10; x1 += 10; }
  const y1 = Math.max(...pts.map(p => p[1])) * 1.1 || 1;
  const sx = x => L + (x - x0) / (x1 - x0) * (W - L - R);
  const sy = y => H - B - y / y1 * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const v = y1 * i / 4, y = sy(v);
    svg.append(el("svg:line", { x1: L, x2: W - R, y1: y, y2: y, class: "grid-line" }));
    svg.append(el("svg:text", { x: L - 6, y: y + 3, "text-anchor": "end" }, format(v)));
  }
  [["start", x0], ["middle", (x0 + x1) / 2], ["end", x1]].forEach(([anchor, t]) => {
    svg.append(el("svg:text", { x: sx(t), y: H - 6, "text-anchor": anchor }, clock(t)));
  });
  let lx = L;
  for (const s of series) {
    if (s.points.length) {
      const d = s.points.map((p, i) => (i ? "L" : "M") + sx(p[0]).toFixed(1) + "," + sy(p[1]).toFixed(1)).join(" ");
      const line = { d, fill: "none", stroke: s.color, "stroke-width": 2, "data-series": s.name };
      if (s.dash) line["stroke-dasharray"] = s.dash;
      svg.append(el("svg:path", line));
      if (s.points.length === 1) {
        const [px, py] = s.points[0];
        svg.append(el("svg:circle", { cx: sx(px), cy: sy(py), r: 3, fill: s.color }));
      }
    }
    svg.append(el("svg:rect", { x: lx, y: 6, width: 10, height: 10, fill: s.color, rx: 2 }));
    svg.append(el("svg:text", { x: lx + 14, y: 15 }, s.name));
    lx += 24 + s.name.length * 6;
  }
}

function drawCost(stats) {
  let c = 0, top = 0, nc = 0;
  const cost = [], base = [], nocache = [];
  for (const b of stats.series) {
    c += b.cost; top += b.cost_top; nc += b.cost_nocache;
    const t = b.t + stats.bucket_s;
    cost.push([t, c]); base.push([t, top]); nocache.push([t, nc]);
  }
  lineChart($("chart-cost"), [
    { name: "thrifty", color: COLORS.cost, points: cost },
    { name: "without cache", color: COLORS.nocache, points: nocache },
    { name: "all on top model", color: COLORS.top, points: base },
  ], money);
}

function drawLatency(stats) {
  const mk = q => stats.series.filter(b => b[q] !== null).map(b => [b.t + stats.bucket_s, b[q]]);
  lineChart($("chart-latency"), [
    { name: "p50", color: COLORS.p50, points: mk("p50") },
    { name: "p95", color: COLORS.p95, points: mk("p95") },
    { name: "p99", color: COLORS.p99, points: mk("p99"), dash: "5 4" },
  ], ms);
}

function drawCache(stats) {
  const pts = stats.series.filter(b => b.lookups > 0).map(b => [b.t + stats.bucket_s, b.hits / b.lookups]);
  lineChart($("chart-cache"), [{ name: "hit rate", color: COLORS.hit, points: pts }], v => (v * 100).toFixed(0) + "%");
}

function drawRoutes(stats) {
  const box = $("routes");
  box.replaceChildren();
  const entries = Object.entries(stats.routes).sort((a, b) => b[1] - a[1]);
  const total = entries.reduce((s, e) => s + e[1], 0);
  if (!total) { box.append(el("p", { class: "sub" }, "no routed requests yet")); return; }
  for (const [tier, n] of entries) {
    const row = el("div", { class: "bar", id: "route-" + tier, "data-count": String(n) });
    const label = el("div", { class: "label" });
    label.append(el("span", {}, tier), el("span", {}, count(n) + " · " + pct(n / total)));
    const track = el("div", { class: "track" });
    track.append(el("div", { class: "fill", style: "width:" + (100 * n / total).toFixed(1) + "%" }));
    row.append(label, track);
    box.append(row);
  }
  if (stats.fast_tier_share !== null) box.append(el("p", { class: "sub" }, "fast-tier share (window): " + pct(stats.fast_tier_share)));
}

function drawKpis(stats) {
  const t = stats.totals;
  setText("kpi-requests", count(t.requests), t.requests);
  setText("kpi-errors", count(t.errors) + " errors · " + count(t.upstream_errors || 0) + " upstream failures · " +
    count(t.fallbacks || 0) + " fallbacks", t.errors);
  setText("kpi-cost", money(t.cost_usd), t.cost_usd);
  setText("kpi-tokens", count(t.prompt_tokens) + " in · " + count(t.completion_tokens) + " out · " + count(t.cached_tokens) + " cached" +
    (t.saved_tokens ? " · " + count(t.saved_tokens) + " compressed out" : ""));
  setText("kpi-tokens-saved", count(t.saved_tokens), t.saved_tokens);
  const sent = t.prompt_tokens + t.saved_tokens;
  setText("kpi-tokens-saved-pct", t.saved_tokens && sent ? pct(t.saved_tokens / sent) + " of prompt tokens" : "");
  setText("kpi-saved-top", money(t.saved_vs_top_usd), t.saved_vs_top_usd);
  setText("kpi-saved-top-pct", t.cost_top_usd ? pct(t.saved_vs_top_usd / t.cost_top_usd) + " of " + money(t.cost_top_usd) : "");
  setText("kpi-saved-nocache", money(t.saved_vs_nocache_usd), t.saved_vs_nocache_usd);
  setText("kpi-saved-nocache-pct", t.cost_nocache_usd ? pct(t.saved_vs_nocache_usd / t.cost_nocache_usd) + " of " + money(t.cost_nocache_usd) : "");
  setText("kpi-hit-rate", pct(stats.cache.hit_rate), stats.cache.hit_rate);
  setText("kpi-hits", count(stats.cache.hits) + " of " + count(stats.cache.lookups) + " lookups");
  const sp = stats.parallel.speedup;
  setText("kpi-speedup", sp === null ? "n/a" : sp.toFixed(2) + "×", sp);
  setText("kpi-parallel-share", stats.parallel.share === null ? "" : pct(stats.parallel.share) + " of tool calls in parallel");
  setText("kpi-startup", stats.startup_ms === null ? "–" : stats.startup_ms.toFixed(0) + " ms", stats.startup_ms);
  setText("kpi-memory", stats.memory_mb.toFixed(0) + " MB resident");
}

function drawLatencyTable(stats) {
  const body = $("latency-table");
  body.replaceChildren();
  $("window-label").textContent = "last " + Math.round(stats.window_s / 60) + " min";
  for (const [model, f] of Object.entries(stats.latency)) {
    const tr = el("tr");
    tr.append(el("td", {}, model), el("td", { class: "num" }, count(f.requests)),
      el("td", { class: "num" }, ms(f.p50)), el("td", { class: "num" }, ms(f.p95)), el("td", { class: "num" }, ms(f.p99)));
    body.append(tr);
  }
}

function drawAlerts(stats) {
  const list = $("alerts");
  list.replaceChildren();
  if (!stats.alerts.length) { list.append(el("li", { class: "none" }, "all clear")); return; }
  for (const a of stats.alerts) list.append(el("li", { "data-rule": a.rule }, a.message));
}

function drawRecent(stats) {
  const body = $("recent");
  body.replaceChildren();
  for (const r of stats.recent) {
    const tr = el("tr", { "data-id": r.request_id });
    const cache = el("td");
    if (r.cache) cache.append(el("span", { class: r.cache.startsWith("hit") ? "tag hit" : "tag" }, r.cache));
    tr.append(el("td", {}, clock(r.ts)), el("td", {}, r.request_id.slice(-12)), el("td", {}, r.model),
      el("td", { class: "route" }, r.tier || "–"), el("td", {}, r.deployment || "–"), cache,
      el("td", { class: r.status >= 400 ? "err" : "" }, String(r.status)),
      el("td", { class: "num" }, ms(r.latency_ms / 1000)), el("td", { class: "num" }, count(r.tokens)),
      el("td", { class: "num" }, money(r.cost_usd)));
    body.append(tr);
  }
}

function drawComponents(stats) {
  const body = $("components");
  body.replaceChildren();
  for (const [source, values] of Object.entries(stats.gauges)) {
    const text = Object.entries(values).map(([k, v]) => k + "=" + (Number.isInteger(v) ? v : v.toFixed(3))).join("  ");
    const tr = el("tr");
    tr.append(el("td", {}, source), el("td", {}, text));
    body.append(tr);
  }
  $("components-panel").hidden = !Object.keys(stats.gauges).length;
}

function render(stats) {
  drawKpis(stats); drawCost(stats); drawRoutes(stats); drawLatency(stats);
  drawLatencyTable(stats); drawCache(stats); drawAlerts(stats); drawRecent(stats); drawComponents(stats);
}

function askForKey(res) {
  const form = $("login");
  form.hidden = false;
  const reason = LOGIN_ERRORS[params.get("login")] || (res.status === 403 ? LOGIN_ERRORS.admin : "");
  const error = $("login-error");
  error.textContent = reason;
  error.hidden = !reason;
  $("status").className = "status down";
  $("status").textContent = "sign in to see the gateway";
  $("login-key").focus();
}

let rendered = 0;
async function poll() {
  const status = $("status");
  try {
    const res = await fetch("dashboard/api/stats", { cache: "no-store", credentials: "same-origin" });
    if (res.status === 401 || res.status === 403) { askForKey(res); return; }
    $("login").hidden = true;
    if (!res.ok) throw new Error("HTTP " + res.status);
    const stats = await res.json();
    render(stats);
    document.dispatchEvent(new CustomEvent("thrifty:stats", { detail: stats }));  // panels in their own files
    rendered += 1;
    document.body.dataset.rendered = String(rendered);
    status.className = "status live";
    status.textContent = "live · updated " + clock(stats.now);
  } catch (err) {
    status.className = "status down";
    status.textContent = "cannot reach the gateway: " + err.message;
  }
  setTimeout(poll, INTERVAL_MS);
}
poll();
