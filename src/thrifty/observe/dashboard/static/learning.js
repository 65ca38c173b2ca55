// thrifty dashboard, learning panel: polls dashboard/api/learning (the report of GET /admin/learning,
// behind the dashboard's session cookie: the learning layers' experiments,
// their evidence, promotions and rollbacks, knowledge-base hits) and draws one table per group.
"use strict";

(function () {
  const INTERVAL_MS = Number(new URLSearchParams(location.search).get("interval") || 2000);
  const COUNTS = [
    ["requests", "requests"], ["signals", "ratings"], ["implicit", "implicit signals"],
    ["knowledge_hits", "knowledge hits"], ["promoted", "promoted"], ["rolled_back", "rolled back"],
  ];

  function node(tag, attrs, text) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  }

  function arms(experiment) {
    return Object.entries(experiment.arms).map(([name, a]) => {
      const role = name === experiment.champion ? "champion" : name === experiment.candidate ? "candidate" : "";
      const span = node("span", { class: "arm " + role, "data-variant": name },
        name + " " + a.wins.toFixed(1) + "/" + (a.wins + a.losses).toFixed(1) + " (" + (a.mean * 100).toFixed(0) + "%)");
      return span;
    });
  }

  function lastDecision(experiment) {
    const decided = experiment.history.filter(h => h.event !== "started");
    if (!decided.length) return experiment.candidate ? "testing " + experiment.candidate : "–";
    const h = decided[decided.length - 1];
    return h.event.replace("_", " ") + " " + h.variant + " (p=" + h.p_better.toFixed(2) + ")";
  }

  function drawGroup(report) {
    const box = node("div", { class: "learning-group", "data-group": report.group });
    const counts = report.counts || {};
    const facts = COUNTS.map(([k, label]) => label + " " + (counts[k] || 0));
    facts.push("knowledge entries " + report.knowledge_entries, "state " + report.shared);
    box.append(node("h3", {}, report.group), node("p", { class: "sub learning-counts" }, facts.join(" · ")));
    for (const [k] of COUNTS) box.dataset[k.replace(/_(.)/g, (_, c) => c.toUpperCase())] = String(counts[k] || 0);
    const table = node("table", { class: "small" });
    const head = node("tr");
    for (const h of ["key", "context", "champion", "variants: good/rated (mean)", "last decision"]) head.append(node("th", {}, h));
    const body = node("tbody");
    for (const e of report.experiments) {
      const tr = node("tr", { "data-context": e.context, "data-champion": e.champion, "data-candidate": e.candidate || "" });
      const variants = node("td");
      variants.append(...arms(e));
      tr.append(node("td", {}, e.owner || "open"), node("td", {}, e.context), node("td", {}, e.champion), variants,
        node("td", { class: "decision" }, lastDecision(e)));
      body.append(tr);
    }
    if (!report.experiments.length) {
      const tr = node("tr");
      tr.append(node("td", { colspan: "5", class: "sub" }, "no rated requests yet"));
      body.append(tr);
    }
    const thead = node("thead");
    thead.append(head);
    table.append(thead, body);
    box.append(table);
    if (report.overrides.length) {
      box.append(node("p", { class: "sub learning-overrides" }, report.overrides.length + " users with their own variant"));
    }
    return box;
  }

  async function poll() {
    const panel = document.getElementById("learning-panel");
    try {
      const res = await fetch("dashboard/api/learning", { cache: "no-store", credentials: "same-origin" });
      if (res.ok) {
        const reports = (await res.json()).data;
        const box = document.getElementById("learning");
        box.replaceChildren(...reports.map(drawGroup));
        panel.hidden = !reports.length;
        panel.dataset.rendered = String(Number(panel.dataset.rendered || 0) + 1);
      }
    } catch (err) {
      // the main status line already says when the gateway cannot be reached
    }
    setTimeout(poll, INTERVAL_MS);
  }
  poll();
})();
