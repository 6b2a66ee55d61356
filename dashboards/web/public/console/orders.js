// Vigil operations console: relocation and evacuation orders, and their roll calls.
//
// Owns: the Orders section — the list (GET /api/v1/orders?status=), the open order with its
// roll call (GET /api/v1/orders/{id}), giving an order (POST /api/v1/orders {kind, scope,
// country, area?, duty_station?, destination, deadline}), marking people one by one
// (POST …/{id}/mark {person, status}) or the ticked ones at once (POST …/{id}/mark-many
// {persons, status}, all or nothing per request), completing {note?} and rescinding {reason}.
//
// Promises: the roll call shows each person's mark, who marked it, their dependants and the
// accounted %; the findings (missing or unmarked after the deadline) are listed by name.
// Ticking: a shift-click ticks (or unticks) every row shown from the last one clicked;
// "Tick all shown" adds what the search and filter show. The bulk mark leaves out the ticked
// people already so marked and says how many; more than MAX_MARK_MANY people (the server's
// limit, services/relocation `MAX_MARK_MANY`) go in several requests, counted on the result
// line, and a failed one is named and resumed from (controller.js `runBatches`). The outcome
// is written on `last-position` ("Marked 20 safe · log position N").

import { ListDetail, itemPath } from "./controller.js";
import { html, POLICY, COUNTRY_FIELD, Badge, KV, fmtUtc, words, countryText, plural, may, localValue } from "./kit.js";

const BASE = "/api/v1/orders";
const path = (id, action) => itemPath(BASE, id, action);
const MARKS = ["safe", "relocated", "injured", "missing"];
/** The most people one mark-many takes: services/relocation/src/order.rs `MAX_MARK_MANY`. */
export const MAX_MARK_MANY = 499;
const SCOPE_TEXT = { all_personnel: "All personnel", non_essential: "Non-essential staff", dependants: "Dependants" };
const active = (o) => o.status === "active";
const entries = (o) => (Array.isArray(o.roll_call) ? o.roll_call : []);
const findings = (o) => (Array.isArray(o.findings) ? o.findings.length : Number(o.findings) || 0);
const placeText = (o) => [o.country, o.area, o.duty_station].filter(Boolean).join(" · ");

function pct(t) {
  if (!t) return "–";
  const p = Number.isFinite(t.accounted_pct) ? t.accounted_pct : t.total ? (t.accounted / t.total) * 100 : 100;
  return `${p.toFixed(1)} %`;
}

export const c = new ListDetail({
  name: "orders",
  things: "orders",
  base: BASE,
  filters: { status: "" },
});

/** " · N late · M left the area": who came into the area after the order and who left it. */
const presence = (t) => `${t.late_arrivals ? ` · ${t.late_arrivals} late` : ""}${t.left_area ? ` · ${t.left_area} left the area` : ""}`;

function Row({ item: o }) {
  const t = o.tally || {};
  const n = findings(o);
  return html`<span class="item-top"><span class=${`kind kind-${o.kind}`}>${words(o.kind)}</span>
      <b class="place">${placeText(o)}</b><${Badge} kind="order" status=${o.status} /></span>
    <span class="item-line">→ ${o.destination} · deadline ${fmtUtc(o.deadline)}</span>
    <span class="item-line"><b class="pct" data-testid="order-accounted">${pct(t)}</b> accounted · ${t.missing ?? "?"} missing · ${t.unmarked ?? "?"} unmarked · ${t.total ?? "?"} people${presence(t)}</span>
    ${n ? html`<span class="warn-line" data-testid="order-findings">⚠ ${plural(n, "person", "people")} missing or unmarked after the deadline</span>` : null}`;
}

const mark = {
  name: "mark",
  roles: POLICY.ORDER_MARK,
  path: (id) => path(id, "mark"),
  done: (a, f) => `Marked ${f.person} ${f.status}`,
  failed: "Not marked",
};

/** Whether roll-call entry `e` matches the search `q` (name or person id, any case). */
const matches = (e, q) => !q || `${e.name ?? ""} ${e.person}`.toLowerCase().includes(q.toLowerCase());

function RollCall({ c, o }) {
  const q = String(c.val("rollcall:", "q")).trim();
  const status = c.val("rollcall:", "status");
  const rows = entries(o).filter((e) => matches(e, q) && (!status || (e.status || "unmarked") === status));
  const marking = may(POLICY.ORDER_MARK) && active(o);
  const all = rows.map((e) => e.person);
  const shown = new Set(all);
  const hidden = [...c.selection].filter((p) => !shown.has(p)).length;
  return html`<div class="row rc-tools">
      <label class="search">Find <input type="search" data-testid="rollcall-search" placeholder="name or person id"
        value=${c.val("rollcall:", "q")} onInput=${(e) => c.set("rollcall:", "q", e.target.value)} /></label>
      <label class="inline">Show <select data-testid="rollcall-filter" value=${status} onChange=${(e) => c.set("rollcall:", "status", e.target.value)}>
        <option value="">Everyone</option>${["unmarked", ...MARKS].map((m) => html`<option key=${m} value=${m}>${words(m)}</option>`)}
      </select></label>
      <span class="hint" data-testid="rollcall-shown" data-shown=${rows.length} data-ticked=${c.selection.size}>${rows.length} of ${entries(o).length} shown${c.selection.size ? ` · ${c.selection.size} ticked${hidden ? ` (${hidden} not shown)` : ""}` : ""}</span>
      ${marking
        ? html`<button type="button" class="secondary small" data-testid="rollcall-select-visible" disabled=${!rows.length}
              onClick=${() => c.selectMore(all)}>Tick all ${rows.length} shown</button>
            <button type="button" class="secondary small" data-testid="rollcall-select-none" disabled=${!c.selection.size}
              onClick=${() => c.selectOnly([])}>Untick all</button>`
        : null}
    </div>
    <table class="rollcall" data-testid="rollcall">
    <thead><tr>
      <th>${marking
        ? html`<input type="checkbox" aria-label="Tick everyone shown" data-testid="rollcall-select-all"
            checked=${all.length > 0 && all.every((p) => c.selection.has(p))} onChange=${(e) => c.selectOnly(e.target.checked ? all : [])} />`
        : null}</th>
      <th>Name</th><th>Person</th><th>Agency</th><th>Station</th><th>Dependants</th><th>Status</th>${marking ? html`<th>Mark</th>` : null}</tr></thead>
    <tbody>${rows.map((e) => html`<tr key=${e.person} data-testid="rollcall-row" data-person=${e.person} data-status=${e.status}
      data-late=${e.late_arrival ? "true" : "false"} data-left=${e.left_area ? "true" : "false"} class=${e.left_area ? "left-area" : ""}>
      <td>${marking
        ? html`<input type="checkbox" data-testid="rollcall-select" aria-label=${`Tick ${e.name || e.person}`}
            checked=${c.selection.has(e.person)} onClick=${(ev) => c.pick(e.person, ev.currentTarget.checked, ev.shiftKey, all)} />`
        : null}</td>
      <td class="c-name">${e.name || "—"}${e.late_arrival ? html`<span class="badge tag-late" data-testid="late-arrival">late arrival</span>` : null}${e.left_area ? html`<span class="badge tag-left" data-testid="left-area">left the area</span>` : null}</td><td class="mono">${e.person}</td><td>${e.agency || "—"}</td><td class="mono">${e.duty_station || "—"}</td>
      <td class="num" data-testid="rollcall-dependants">${Number(e.dependants) || 0}</td>
      <td><${Badge} kind="mark" status=${e.status || "unmarked"} />${e.marked_by ? html`<small class="hint">by ${e.marked_by}</small>` : null}</td>
      ${marking
        ? html`<td class="row">${MARKS.filter((m) => m !== e.status).map((m) => html`<button key=${m} type="button" class="secondary small"
            data-testid=${`rollcall-mark-${m}`} onClick=${() => c.run(mark, o.id, { person: e.person, status: m })}>${words(m)}</button>`)}</td>`
        : null}</tr>`)}</tbody></table>`;
}

/** The people missing or unmarked after the deadline, by name (the first 60; the filter shows all). */
function Findings({ o }) {
  const ids = Array.isArray(o.findings) ? o.findings : [];
  if (!ids.length) return null;
  const byId = new Map(entries(o).map((e) => [e.person, e]));
  const most = 60;
  return html`<div class="findings" data-testid="order-findings-list" data-count=${ids.length}>
    <b>⚠ Deadline passed: ${plural(ids.length, "person", "people")} missing or unmarked</b>
    <ul class="names">${ids.slice(0, most).map((p) => {
      const e = byId.get(p);
      return html`<li key=${p} data-testid="order-finding" data-person=${p} class=${`st-${e?.status || "unmarked"}`}>
        ${e?.name ? `${e.name} (${p})` : p} — ${words(e?.status || "unmarked")}</li>`;
    })}</ul>
    ${ids.length > most ? html`<p class="hint">… and ${ids.length - most} more: show Missing or Unmarked below to see everyone.</p>` : null}
  </div>`;
}

function Detail({ c, item: o }) {
  const t = o.tally || {};
  return html`<h3><span class=${`kind kind-${o.kind}`}>${words(o.kind)}</span> ${placeText(o)}</h3>
    <${KV} pairs=${[
      ["Status", html`<span data-testid="order-status">${words(o.status)}</span>`],
      ["Country", countryText(o.country)],
      ["Who must move", SCOPE_TEXT[o.scope] || words(o.scope)],
      ["Destination", o.destination],
      ["Deadline", fmtUtc(o.deadline)],
      ["Accounted", html`<b data-testid="order-detail-accounted">${pct(t)}</b>`],
      ["Counts", html`<span data-testid="order-counts" data-late=${t.late_arrivals ?? 0} data-left=${t.left_area ?? 0}>${t.accounted ?? "–"} accounted · ${t.missing ?? "–"} missing · ${t.unmarked ?? "–"} unmarked · ${t.total ?? "–"} people${presence(t)}</span>`],
      ["Order id", o.id],
    ]} />
    <${Findings} o=${o} />
    ${Array.isArray(o.roll_call) ? html`<${RollCall} c=${c} o=${o} />` : html`<p class="hint">Reading the roll call…</p>`}`;
}

export const section = {
  name: "orders",
  prefix: "order",
  tab: "Orders",
  title: "Relocation & evacuation orders",
  roles: POLICY.ORDER_READ,
  resultTestid: "last-position",
  c,
  Row,
  Detail,
  rowProps: (o) => ({ class: `st-${o.status}${findings(o) ? " has-findings" : ""}`, data: { "data-status": o.status, "data-findings": findings(o) } }),
  filters: [{ name: "status", label: "Show", options: [["", "All"], ["active", "Active"], ["completed", "Completed"], ["rescinded", "Rescinded"]] }],
  empty: "No order with this status.",
  create: {
    name: "give",
    label: "Give an order…",
    title: "Give a relocation or evacuation order",
    roles: POLICY.ORDER_ISSUE,
    fields: [
      { name: "kind", label: "Kind", type: "select", options: [["", "Choose…"], ["relocation", "Relocation (within the country)"], ["evacuation", "Evacuation (out of the country)"]], need: "choose one" },
      { name: "scope", label: "Who must move", type: "select", options: [["", "Choose…"], ...Object.entries(SCOPE_TEXT)], need: "choose one" },
      COUNTRY_FIELD,
      { name: "area", label: "Area", optional: true },
      { name: "duty_station", label: "Duty station", optional: true },
      { name: "destination", label: "Destination" },
      { name: "deadline", label: "Deadline", type: "datetime", init: () => localValue(12 * 60) },
    ],
    done: "Order given: its roll call is computed now",
    failed: "Not given",
  },
  actions: [
    {
      name: "mark-many",
      label: "Mark the ticked people…",
      bulk: true,
      batch: MAX_MARK_MANY,
      counted: (f, done, total) => `Marked ${done} of ${total} ${f.status}`,
      roles: POLICY.ORDER_MARK,
      when: active,
      noneSelected: "Nobody is ticked: tick people in the roll call first.",
      submitTestid: "bulk-mark",
      fields: [{ name: "status", label: "As", type: "select", testid: "bulk-status", init: "safe", options: MARKS.map((m) => [m, words(m)]) }],
      body: (v, o) => {
        const now = new Map(entries(o).map((e) => [e.person, e.status]));
        const todo = v.persons.filter((p) => now.get(p) !== v.status);
        if (!todo.length) throw new Error(`Everyone ticked is already ${v.status}: nothing to mark.`);
        return { persons: todo, status: v.status };
      },
      path: (id) => path(id, "mark-many"),
      done: (a, f, c) => {
        const already = c.selection.size - f.persons.length;
        return `Marked ${f.persons.length} ${f.status}${already > 0 ? ` (${already} already ${f.status})` : ""}`;
      },
      failed: "Not marked",
    },
    {
      name: "complete",
      label: "Complete…",
      roles: POLICY.ORDER_ISSUE,
      when: active,
      fields: [{ name: "note", label: "Note", optional: true }],
      path: (id) => path(id, "complete"),
      done: "Order completed",
      failed: "Not completed",
    },
    {
      name: "rescind",
      label: "Rescind…",
      danger: true,
      roles: POLICY.ORDER_ISSUE,
      when: active,
      fields: [{ name: "reason", label: "Why it is rescinded", type: "textarea" }],
      confirm: (o) => `Rescind the ${o.kind} order for ${placeText(o)}? Nobody has to move any more.`,
      path: (id) => path(id, "rescind"),
      done: "Order rescinded",
      failed: "Not rescinded",
    },
  ],
};
