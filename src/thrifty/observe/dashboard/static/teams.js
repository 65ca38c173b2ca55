// thrifty dashboard, team view: polls dashboard/api/teams (tenancy) and shows every team with its
// keys: spend this budget period, the budget and what is left, the rate limits. The panel stays
// hidden when the gateway has no tenancy (404) or the page is not signed in yet (401/403).
"use strict";

(function () {
  const params = new URLSearchParams(location.search);
  const INTERVAL_MS = Math.max(Number(params.get("interval") || 2000), 1000);

  function money(v) {
    if (v === null || v === undefined) return "–";
    if (v === 0) return "$0";
    return "$" + (Math.abs(v) < 0.01 ? v.toFixed(6) : v.toFixed(4));
  }
  function limit(v) { return v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US"); }

  function cell(text, cls, value) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    if (value !== undefined) td.dataset.value = value === null ? "" : String(value);
    return td;
  }

  function state(key, now) {
    if (key.revoked_at !== null) return "revoked";
    if (key.expires_at !== null && key.expires_at <= now) return "expired";
    return "active";
  }

  // One row: a team (scope "team:<name>") or a key (scope "key:<id>").
  function row(scope, label, item, kind) {
    const spend = item.spend || {};
    const used = spend.period_usd !== undefined ? spend.period_usd : spend.total_usd;
    const budgetUsd = spend.period_usd !== undefined ? spend.period_usd + spend.left_usd : null;
    const share = budgetUsd ? Math.min(used / budgetUsd, 1) : null;
    const tr = document.createElement("tr");
    tr.dataset.scope = scope;
    tr.className = kind;
    if (kind === "team") tr.style.fontWeight = "600";
    tr.append(
      cell(label, "name"),
      cell(kind === "team" ? "" : item.state),
      cell(money(used), "num spend", used),
      cell(item.budget || "none", "budget"),
      cell(spend.left_usd !== undefined ? money(spend.left_usd) : "–", "num left",
        spend.left_usd !== undefined ? spend.left_usd : null),
    );
    const bar = cell("", "use bars");
    if (share !== null) {
      const track = document.createElement("div");
      track.className = "track";
      const fill = document.createElement("div");
      fill.className = "fill";
      if (share >= 0.8) fill.style.background = "var(--warn)";
      fill.style.width = (share * 100).toFixed(1) + "%";
      track.append(fill);
      bar.append(track);
      bar.dataset.value = String(share);
    }
    if (kind === "key") tr.firstChild.style.paddingLeft = "18px";
    tr.append(bar, cell(limit(item.rpm), "num rpm", item.rpm), cell(limit(item.tpm), "num tpm", item.tpm),
      cell(limit(item.parallel), "num parallel", item.parallel), cell(money(spend.total_usd), "num total", spend.total_usd));
    return tr;
  }

  function render(data) {
    const now = Date.now() / 1000;
    const body = document.getElementById("teams");
    const byTeam = new Map();
    for (const key of data.keys) {
      key.state = state(key, now);
      const team = key.team || "";
      if (!byTeam.has(team)) byTeam.set(team, []);
      byTeam.get(team).push(key);
    }
    const rows = [];
    for (const team of data.teams) {
      rows.push(row("team:" + team.name, team.name, team, "team"));
      for (const key of byTeam.get(team.name) || []) rows.push(row("key:" + key.id, key.name, key, "key"));
    }
    const loose = byTeam.get("") || [];
    if (loose.length) {
      const tr = document.createElement("tr");
      tr.className = "team";
      tr.append(cell("keys without a team", "name"));
      tr.style.color = "var(--muted)";
      tr.lastChild.colSpan = 10;
      rows.push(tr);
      for (const key of loose) rows.push(row("key:" + key.id, key.name, key, "key"));
    }
    body.replaceChildren(...rows);
    const panel = document.getElementById("teams-panel");
    panel.hidden = false;
    panel.dataset.rendered = String(Date.now());
  }

  async function poll() {
    try {
      const res = await fetch("dashboard/api/teams", { cache: "no-store", credentials: "same-origin" });
      if (res.ok) render(await res.json());
      else if (res.status === 404) return; // no tenancy on this gateway: nothing to show, stop asking
    } catch (err) {
      // the main poller shows the connection state; try again next time
    }
    setTimeout(poll, INTERVAL_MS);
  }
  poll();
})();
