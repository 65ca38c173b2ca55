// thrifty dashboard: the elastic replicas panel. Polls dashboard/api/status and lists, per elastic
// group, its replicas (ready, warming, draining), the forecast and the latest scaling
// decisions with their reasons. Hidden when no group scales.
"use strict";

(function () {
  const INTERVAL_MS = Number(new URLSearchParams(location.search).get("interval") || 2000);

  function node(tag, attrs, text) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  }

  function seconds(v) { return v === null || v === undefined ? "–" : Number(v).toFixed(2) + " s"; }
  function when(t) { return t ? new Date(t * 1000).toTimeString().slice(0, 8) : ""; }

  function groups(status) {
    const out = [];
    for (const [source, report] of Object.entries(status || {})) {
      if (report && typeof report === "object" && report.scaling) out.push([source.split(":").pop(), report.scaling]);
    }
    return out;
  }

  function draw(status) {
    const panel = document.getElementById("scaling-panel");
    const body = document.getElementById("scaling");
    if (!panel || !body) return;
    const found = groups(status);
    panel.hidden = !found.length;
    body.replaceChildren();
    for (const [name, s] of found) {
      const head = node("tr", { class: "scaling-group", "data-group": name });
      const counts = `${s.ready} ready · ${s.warming} warming · ${s.draining} draining` +
        ` (min ${s.min_replicas}, max ${s.max_replicas})` + (s.waiting ? ` · ${s.waiting} waiting` : "");
      const extra = `cold start ${seconds(s.cold_start_s)} · start→first request ${seconds(s.start_to_first_served_s)}` +
        (s.predictive ? ` · forecast ${s.forecast_in_flight === null ? "n/a" : s.forecast_in_flight} in flight` : "");
      head.append(node("td", {}, name), node("td", { class: "scaling-counts" }, counts), node("td", {}, extra));
      body.append(head);
      for (const d of (s.decisions || []).slice(0, 8)) {
        const tr = node("tr", { class: "scaling-decision" });
        tr.append(node("td", {}, when(d.time)), node("td", {}, `${d.from} → ${d.to} (${d.rule})`), node("td", {}, d.reason));
        body.append(tr);
      }
    }
  }

  async function poll() {
    try {
      const res = await fetch("dashboard/api/status", { cache: "no-store", credentials: "same-origin" });
      if (res.ok) draw(await res.json());
    } catch (err) {
      // the main panel reports an unreachable gateway
    }
    setTimeout(poll, INTERVAL_MS);
  }
  poll();
})();
