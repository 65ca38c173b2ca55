// thrifty dashboard, upstreams panel: per deployment health, breaker, errors by class,
// fallbacks, retries and hedges, and the latest breaker/health changes.
// Draws on each "thrifty:stats" event that dashboard.js sends after a poll.
"use strict";

(function () {
  const CLASSES = ["4xx", "5xx", "timeout", "connection", "other"];

  function node(tag, attrs, text) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  }
  function share(v) { return v === null || v === undefined ? "–" : (v * 100).toFixed(1) + "%"; }
  function time(t) { return new Date(t * 1000).toTimeString().slice(0, 8); }

  function state(d) {
    if (!d.healthy) return ["down", "unhealthy"];
    if (d.breaker === "open") return ["down", "breaker open"];
    if (d.breaker === "half_open") return ["warn", "half-open"];
    return ["ok", "ok"];
  }

  function drawDeployments(ups) {
    const body = document.getElementById("upstreams");
    body.replaceChildren();
    for (const d of ups.deployments) {
      const [cls, text] = state(d);
      const tr = node("tr", { "data-deployment": d.deployment, "data-state": cls });
      const badge = node("td");
      badge.append(node("span", { class: "tag " + cls }, text));
      tr.append(node("td", {}, d.group), node("td", {}, d.deployment), badge,
        node("td", { class: "num" }, String(d.times_opened)),
        node("td", { class: "num" }, String(d.attempts)));
      for (const c of CLASSES) {
        const n = d.errors[c] || 0;
        tr.append(node("td", { class: "num" + (n ? " err" : ""), "data-class": c }, String(n)));
      }
      tr.append(node("td", { class: "num" + (d.error_rate ? " err" : "") }, share(d.error_rate)));
      body.append(tr);
    }
  }

  function drawGroups(ups) {
    const list = document.getElementById("upstream-groups");
    list.replaceChildren();
    for (const g of ups.groups) {
      list.append(node("li", { "data-group": g.group },
        g.group + ": " + g.retries + " retries · " + g.hedges + " hedges, " + g.hedge_wins + " won"));
    }
    for (const f of ups.fallbacks) {
      const reasons = Object.entries(f.reasons).map(([r, n]) => r + " " + n).join(", ");
      list.append(node("li", { class: "fallback", "data-from": f.from },
        "fallback " + f.from + " → " + f.to + ": " + f.count + " (" + reasons + ")"));
    }
  }

  function drawChanges(ups) {
    const list = document.getElementById("upstream-changes");
    list.replaceChildren();
    for (const c of ups.transitions.slice(0, 12)) {
      list.append(node("li", { class: c.state },
        time(c.at) + "  " + c.deployment + ": " + c.what + " " + c.state.replace("_", "-") + " (" + c.reason + ")"));
    }
    if (!ups.transitions.length) list.append(node("li", { class: "none" }, "no changes since start"));
  }

  document.addEventListener("thrifty:stats", function (event) {
    const ups = event.detail.upstreams;
    const panel = document.getElementById("upstreams-panel");
    if (!ups || !ups.deployments.length) { panel.hidden = true; return; }
    panel.hidden = false;
    drawDeployments(ups);
    drawGroups(ups);
    drawChanges(ups);
  });
})();
