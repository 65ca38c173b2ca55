// thrifty dashboard, device pool panel: polls dashboard/api/pool (hidden when the gateway has no pool).
"use strict";

(function () {
  const panel = document.getElementById("pool-panel");
  const INTERVAL_MS = Number(new URLSearchParams(location.search).get("interval") || 2000);

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.append(td);
  }

  function draw(overview) {
    const body = document.getElementById("pool-workers");
    body.replaceChildren();
    for (const w of overview.workers) {
      const row = document.createElement("tr");
      const caps = w.capabilities;
      const models = caps.models.map(m => `${m.name} (${m.n_ctx} ctx, ${m.tokens_per_s.toFixed(0)} tok/s)`).join(", ");
      const power = caps.power === "battery" && caps.battery !== null ? `battery ${caps.battery}%` : caps.power;
      [w.name, w.state, models, `${w.load} / ${caps.concurrency}`, String(w.active), power,
       `${w.silent_s.toFixed(1)} s`].forEach(t => cell(row, t));
      row.dataset.state = w.state;
      body.append(row);
    }
    const s = overview.stats;
    document.getElementById("pool-stats").textContent =
      `tasks sent ${s.dispatched}, migrated ${s.migrated}, lost mid-stream ${s.lost}, parked now ${overview.parked}`;
    const events = document.getElementById("pool-events");
    events.replaceChildren();
    for (const e of overview.events.slice(0, 10)) {
      const li = document.createElement("li");
      const when = new Date(e.at * 1000).toTimeString().slice(0, 8);
      li.textContent = `${when} ${e.kind} ${e.worker || ""}${e.to ? " → " + e.to : ""}${e.task ? " task " + e.task : ""}`;
      events.append(li);
    }
  }

  async function poll() {
    try {
      const res = await fetch("dashboard/api/pool", { cache: "no-store", credentials: "same-origin" });
      if (res.status === 404) { panel.hidden = true; return; }  // no pool on this gateway
      if (res.ok) { panel.hidden = false; draw(await res.json()); }
    } catch (err) { /* the main poll reports an unreachable gateway */ }
    setTimeout(poll, INTERVAL_MS);
  }
  poll();
})();
