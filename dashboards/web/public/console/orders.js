// Vigil operations console: relocation and evacuation orders and their roll calls.
//
// Owns: the Orders panel — the list (GET /api/v1/orders, an array of summaries), the form
// that gives an order (POST /api/v1/orders), the open order (GET /api/v1/orders/{id}) with
// its tally, findings and roll call, and the actions on it: mark one person
// (POST …/mark), bulk mark (POST …/mark-many), complete (POST …/complete) and rescind
// (POST …/rescind).
//
// Promises:
// - Every action writes its outcome on `last-position`: "… · log position N" from the
//   answer's `position`, or the server's message with data-error="true".
// - The open order is read again every 5 s and right after every action; the list every
//   10 s and after every action. A late answer never overwrites a newer one.
// - The search text, the status filter and the selection survive every refresh; rows are
//   updated in place (no re-render of the table), so focus and checkboxes stay put.
// - A bulk mark sends at most 499 people per request (the API's limit), one request after
//   the other; people already known to have that status are left out (the server skips
//   them too). If a request fails, what was marked before it is said, with its position.
// - Complete and rescind show only while the order is active, and ask for a confirmation.
// - A command that failed for a transient reason (no answer, 5xx) is resent with the same
//   client id (see api.js `act`), so it is never stored twice.

import { get, act, positionOf, getSession } from "./api.js";
import {
  $, h, fill, plural, words, fmtUtc, relative, toRfc3339, utcHint, showResult, showError, bindForm,
  invalid, badge, dl, countryText, isCountry,
} from "./ui.js";

const MAX_BATCH = 499;
const MARKS = ["safe", "relocated", "injured", "missing"];
const MARK_LABEL = { safe: "Safe", relocated: "Relocated", injured: "Injured", missing: "Missing" };
const STATUS_TEXT = {
  safe: "Safe", relocated: "Relocated", injured: "Injured", missing: "Missing", unmarked: "Unmarked",
};
const SCOPE_TEXT = { all_personnel: "All personnel", non_essential: "Non-essential staff", dependants: "Dependants" };
const DETAIL_EVERY_MS = 5000;
const LIST_EVERY_MS = 10000;

let ctx = null;
let shown = false;

let list = [];
let listSeq = 0;
let listLoading = false;
let listTriedAt = 0;

let openId = null;
let order = null; // the open order as last read
let orderAt = 0; // when it was read (ms)
let detailSeq = 0;
let detailLoading = false;
let detailTriedAt = 0;

/** person → {tr, cb, cells…, btns, entry, sig, busy} */
const rows = new Map();
const selected = new Set();
let lastClicked = null;
let bulkBusy = false;

const lp = () => $("last-position");
const path = (id, action = "") => `/api/v1/orders/${encodeURIComponent(id)}${action ? `/${action}` : ""}`;

// ---------------------------------------------------------------- formatting

function pctOf(t) {
  if (!t) return null;
  if (Number.isFinite(t.accounted_pct)) return t.accounted_pct;
  return t.total ? (t.accounted / t.total) * 100 : 100;
}
const fmtPct = (t) => {
  const p = pctOf(t);
  return p == null ? "–" : `${p.toFixed(1)} %`;
};
const findingsCount = (o) => (Array.isArray(o.findings) ? o.findings.length : Number(o.findings) || 0);

function placeText(o) {
  return [o.country, o.area, o.duty_station].filter(Boolean).join(" · ");
}

function kindTag(kind) {
  return h("span", { class: `kind kind-${kind}` }, String(kind || "order").toUpperCase());
}

// ---------------------------------------------------------------- list

async function refreshList() {
  const seq = ++listSeq;
  listLoading = true;
  listTriedAt = Date.now();
  const status = $("order-filter").value;
  try {
    const data = await get(`/api/v1/orders${status ? `?status=${encodeURIComponent(status)}` : ""}`);
    if (seq !== listSeq) return;
    list = Array.isArray(data) ? data : Array.isArray(data?.orders) ? data.orders : [];
    showError($("orders-error"), null);
    renderList();
  } catch (e) {
    if (seq !== listSeq || e.status === 401) return;
    showError($("orders-error"), `Could not read the orders: ${e.message}`);
  } finally {
    if (seq === listSeq) listLoading = false;
  }
}

function listItem(o) {
  const n = findingsCount(o);
  const t = o.tally || {};
  return h(
    "li",
    {
      class: `item st-${o.status}${n ? " has-findings" : ""}`,
      "data-testid": "order",
      "data-id": o.id,
      "data-status": o.status,
      "data-findings": n,
    },
    h(
      "button",
      { type: "button", class: "item-btn", "aria-current": o.id === openId ? "true" : null, onclick: () => openOrder(o.id) },
      h("span", { class: "item-top" }, kindTag(o.kind), h("b", { class: "place" }, placeText(o)), badge("order", o.status)),
      h("span", { class: "item-line" }, `→ ${o.destination || "?"} · deadline ${fmtUtc(o.deadline)}`),
      h(
        "span",
        { class: "item-line" },
        h("b", { class: "pct", "data-testid": "order-accounted" }, fmtPct(t)),
        ` accounted · ${t.missing ?? "?"} missing · ${t.unmarked ?? "?"} unmarked · ${t.total ?? "?"} people`,
        t.late_arrivals ? ` · ${t.late_arrivals} late` : "",
        t.left_area ? ` · ${t.left_area} left the area` : "",
      ),
      n
        ? h("span", { class: "warn-line", "data-testid": "order-findings" },
            `⚠ ${plural(n, "person", "people")} missing or unmarked after the deadline`)
        : null,
    ),
  );
}

function renderList() {
  const ul = $("order-list");
  const focused = document.activeElement?.closest?.("#order-list [data-id]")?.dataset.id;
  fill(ul, ...list.map(listItem));
  $("orders-empty").hidden = list.length > 0;
  if (focused) ul.querySelector(`[data-id="${CSS.escape(focused)}"] button`)?.focus();
}

// ---------------------------------------------------------------- the open order

function clearDetail() {
  order = null;
  orderAt = 0;
  rows.clear();
  selected.clear();
  lastClicked = null;
  $("rc-body").replaceChildren();
  $("rc-search").value = "";
  $("rc-filter").value = "";
  closeConfirms();
  $("order-detail").hidden = true;
  showError($("od-refresh-error"), null);
}

/** Opens order `id` (its answer `preloaded` if already read). */
async function openOrder(id, preloaded = null) {
  if (id !== openId) {
    clearDetail();
    openId = id;
  }
  ctx.setRoute("orders", id);
  for (const b of $("order-list").querySelectorAll(".item-btn")) {
    b.setAttribute("aria-current", String(b.closest("[data-id]").dataset.id === id));
  }
  const none = $("order-none");
  if (preloaded) {
    none.hidden = true;
    apply(preloaded);
    return;
  }
  if (!order) {
    none.hidden = false;
    none.classList.remove("error");
    none.textContent = "Reading the order…";
  }
  await refreshDetail();
}

async function refreshDetail() {
  const id = openId;
  if (!id) return;
  const seq = ++detailSeq;
  detailLoading = true;
  detailTriedAt = Date.now();
  try {
    const o = await get(path(id));
    if (seq !== detailSeq || id !== openId) return;
    apply(o);
  } catch (e) {
    if (seq !== detailSeq || id !== openId || e.status === 401) return;
    if (!order) {
      const none = $("order-none");
      none.hidden = false;
      none.classList.add("error");
      none.textContent = `Could not read order ${id}: ${e.message}`;
    } else {
      showError($("od-refresh-error"), `Could not refresh: ${e.message} Showing what was read ${ago(orderAt)}.`);
    }
  } finally {
    if (seq === detailSeq) detailLoading = false;
  }
}

const ago = (ms) => `${Math.max(0, Math.round((Date.now() - ms) / 1000))} s ago`;

function apply(o) {
  order = o;
  orderAt = Date.now();
  $("order-none").hidden = true;
  $("order-detail").hidden = false;
  showError($("od-refresh-error"), null);
  renderHeader();
  renderRows();
  // The list shows the same order: keep its line in step without waiting for the list.
  const i = list.findIndex((x) => x.id === o.id);
  if (i >= 0) {
    list[i] = { ...list[i], status: o.status, tally: o.tally, findings: findingsCount(o) };
    const li = $("order-list").querySelector(`[data-id="${CSS.escape(o.id)}"]`);
    if (li && document.activeElement?.closest("li") !== li) li.replaceWith(listItem(list[i]));
  }
}

function renderHeader() {
  const o = order;
  const active = o.status === "active";
  fill($("od-title"), kindTag(o.kind), " ", placeText(o) || "?");
  const st = $("od-status");
  st.className = `badge order-${o.status}`;
  st.textContent = words(o.status);
  st.dataset.status = o.status;
  const deadline = o.deadline ? `${fmtUtc(o.deadline)} (${relative(o.deadline)})` : "—";
  fill($("od-meta"),
    dl([
      ["Country", countryText(o.country)],
      ["Area", o.area],
      ["Duty station", o.duty_station],
      ["Who must move", SCOPE_TEXT[o.scope] || words(o.scope)],
      ["Destination", o.destination],
      ["Deadline", deadline],
      ["Order id", o.id],
    ]),
  );
  renderUpdated();

  const t = o.tally || {};
  const p = pctOf(t);
  $("od-accounted").textContent = fmtPct(t);
  $("od-meter").value = p == null ? 0 : Math.max(0, Math.min(100, p));
  $("od-n-accounted").textContent = t.accounted ?? "–";
  $("od-n-missing").textContent = t.missing ?? "–";
  $("od-n-unmarked").textContent = t.unmarked ?? "–";
  $("od-n-total").textContent = t.total ?? "–";
  $("od-n-late").textContent = t.late_arrivals ?? 0;
  $("od-n-left").textContent = t.left_area ?? 0;

  const findings = Array.isArray(o.findings) ? o.findings : [];
  const box = $("od-findings");
  box.hidden = findings.length === 0;
  box.dataset.count = String(findings.length);
  if (findings.length) {
    const byId = new Map((o.roll_call || []).map((e) => [e.person, e]));
    const shownMax = 60;
    const names = findings.slice(0, shownMax).map((p) => {
      const e = byId.get(p);
      const label = e?.name ? `${e.name} (${p})` : p;
      return h("li", { class: `st-${e?.status || "unmarked"}` }, `${label} — ${STATUS_TEXT[e?.status || "unmarked"]}`);
    });
    fill(box,
      h("b", null, `⚠ Deadline passed: ${plural(findings.length, "person", "people")} missing or unmarked`),
      h("ul", { class: "names" }, names),
      findings.length > shownMax
        ? h("p", null, `… and ${findings.length - shownMax} more: show Missing or Unmarked below to see everyone.`)
        : null,
    );
  }

  $("od-actions").hidden = !active;
  if (!active) {
    closeConfirms();
    if (selected.size) selectNone(); // nothing to mark any more
  }
  $("rc-bulk").hidden = !active;
  $("rc-table").classList.toggle("readonly", !active);
  const ro = $("rc-readonly");
  ro.hidden = active;
  ro.textContent = active ? "" : `This order is ${o.status}: the roll call can no longer be marked.`;
  const unaccounted = (t.missing || 0) + (t.unmarked || 0);
  $("od-complete-warning").textContent = unaccounted
    ? `${plural(unaccounted, "person is", "people are")} not accounted for yet (${t.missing || 0} missing, ${t.unmarked || 0} unmarked). Complete the order anyway?`
    : "Everyone is accounted for. Completing closes the order and its roll call.";
}

function renderUpdated() {
  if (!order) return;
  const el = $("od-updated");
  const s = Math.max(0, Math.round((Date.now() - orderAt) / 1000));
  el.textContent = `Read ${s} s ago · order given at log position ${order.position ?? "?"} · version ${order.version ?? "?"}`;
  el.classList.toggle("stale", s > 15);
}

// ---------------------------------------------------------------- roll call rows

const sortKey = (e) => `${(e.name || `~${e.person}`).toLocaleLowerCase()}\u0000${e.person}`;

function renderRows() {
  const entries = Array.isArray(order.roll_call) ? order.roll_call : [];
  const seen = new Set();
  let added = false;
  for (const e of entries) {
    if (!e || typeof e.person !== "string") continue;
    seen.add(e.person);
    let r = rows.get(e.person);
    if (!r) {
      r = makeRow(e);
      rows.set(e.person, r);
      added = true;
    }
    updateRow(r, e);
  }
  for (const [p, r] of rows) {
    if (!seen.has(p)) {
      r.tr.remove();
      rows.delete(p);
      selected.delete(p);
    }
  }
  if (added) {
    const sorted = [...rows.values()].sort((a, b) => (sortKey(a.entry) < sortKey(b.entry) ? -1 : 1));
    $("rc-body").append(...sorted.map((r) => r.tr));
  }
  applyFilter();
}

function makeRow(e) {
  const person = e.person;
  const cb = h("input", { type: "checkbox", "data-testid": "rollcall-select" });
  cb.addEventListener("click", (ev) => onSelectClick(ev, person));
  const btns = {};
  for (const s of MARKS) {
    btns[s] = h(
      "button",
      { type: "button", class: `mk mk-${s}`, "data-testid": `mark-${s}`, onclick: () => markOne(person, s) },
      MARK_LABEL[s],
    );
  }
  const r = {
    cb,
    name: h("td", { class: "c-name" }),
    person: h("td", { class: "c-person mono" }, person),
    agency: h("td", { class: "c-agency" }),
    station: h("td", { class: "c-station mono" }),
    dependants: h("td", { class: "num" }),
    status: h("td", { class: "c-status" }),
    btns,
    entry: e,
    sig: null,
    busy: false,
  };
  r.tr = h(
    "tr",
    { "data-testid": "rollcall-row", "data-person": person, "data-status": "" },
    h("td", { class: "c-sel" }, cb),
    r.name, r.person, r.agency, r.station, r.dependants, r.status,
    h("td", { class: "c-marks" }, h("div", { class: "mk-grid" }, ...MARKS.map((s) => btns[s]))),
  );
  return r;
}

function updateRow(r, e) {
  r.entry = e;
  r.cb.checked = selected.has(e.person);
  const sig = JSON.stringify([e.name, e.agency, e.duty_station, e.dependants, e.status, e.marked_by, e.marked_at_position, e.late_arrival, e.left_area, r.busy]);
  if (sig === r.sig) return;
  r.sig = sig;
  const st = e.status || "";
  r.tr.dataset.status = st;
  r.tr.className = `st-${st || "unmarked"}${e.left_area ? " left-area" : ""}`;
  r.tr.dataset.late = e.late_arrival ? "true" : "false";
  r.tr.dataset.left = e.left_area ? "true" : "false";
  const label = e.name || e.person;
  r.cb.setAttribute("aria-label", `Select ${label}`);
  r.name.textContent = e.name || "(not in the register)";
  r.name.classList.toggle("unknown", !e.name);
  r.agency.textContent = e.agency || "—";
  r.station.textContent = e.duty_station || "—";
  r.dependants.textContent = e.dependants ? String(e.dependants) : "0";
  fill(r.status,
    badge("mark", st || "unmarked", STATUS_TEXT[st || "unmarked"] || words(st)),
    e.late_arrival ? h("span", { class: "badge tag-late", "data-testid": "late-arrival" }, "late arrival") : null,
    e.left_area ? h("span", { class: "badge tag-left", "data-testid": "left-area" }, "left the area") : null,
    e.marked_by
      ? h("small", { class: "by" }, `by ${e.marked_by}${e.marked_at_position != null ? ` · pos ${e.marked_at_position}` : ""}`)
      : null,
  );
  for (const s of MARKS) {
    const b = r.btns[s];
    const off = r.busy || st === s;
    if (off && document.activeElement === b) r.cb.focus();
    b.disabled = off;
    b.title = st === s ? `Already ${s}` : `Mark ${label} ${s}`;
  }
}

function matches(e, q, f) {
  if (f && (e.status || "unmarked") !== f) return false;
  if (!q) return true;
  return (e.name || "").toLocaleLowerCase().includes(q) || e.person.toLocaleLowerCase().includes(q);
}

function applyFilter() {
  const q = $("rc-search").value.trim().toLocaleLowerCase();
  const f = $("rc-filter").value;
  let n = 0;
  for (const r of rows.values()) {
    const vis = matches(r.entry, q, f);
    if (r.tr.hidden === vis) r.tr.hidden = !vis;
    if (vis) n += 1;
  }
  const el = $("rc-shown");
  el.textContent = q || f ? `${n} of ${rows.size} shown` : `${plural(rows.size, "person", "people")}`;
  el.dataset.shown = String(n);
  $("rc-empty").hidden = n > 0 || rows.size === 0;
  renderSelection();
}

// ---------------------------------------------------------------- selection

function visibleRows() {
  return [...$("rc-body").children].filter((tr) => !tr.hidden);
}

function onSelectClick(ev, person) {
  const on = ev.currentTarget.checked;
  if (ev.shiftKey && lastClicked && lastClicked !== person) {
    const vis = visibleRows().map((tr) => tr.dataset.person);
    const a = vis.indexOf(lastClicked);
    const b = vis.indexOf(person);
    if (a >= 0 && b >= 0) {
      for (const p of vis.slice(Math.min(a, b), Math.max(a, b) + 1)) {
        if (on) selected.add(p);
        else selected.delete(p);
        rows.get(p).cb.checked = on;
      }
    }
  }
  if (on) selected.add(person);
  else selected.delete(person);
  lastClicked = person;
  renderSelection();
}

function selectVisible() {
  for (const tr of visibleRows()) {
    const p = tr.dataset.person;
    selected.add(p);
    rows.get(p).cb.checked = true;
  }
  renderSelection();
}

function selectNone() {
  selected.clear();
  for (const r of rows.values()) r.cb.checked = false;
  renderSelection();
}

function renderSelection() {
  for (const p of [...selected]) if (!rows.has(p)) selected.delete(p);
  const n = selected.size;
  let hidden = 0;
  for (const p of selected) if (rows.get(p).tr.hidden) hidden += 1;
  const el = $("rc-selected");
  el.textContent = `${n} selected${hidden ? ` (${hidden} not shown by the search)` : ""}`;
  el.dataset.count = String(n);
  const b = $("bulk-mark");
  b.disabled = bulkBusy || n === 0;
  b.textContent = bulkBusy ? "Marking…" : n ? `Mark ${n} selected` : "Mark selected";
}

// ---------------------------------------------------------------- actions

async function markOne(person, status) {
  const id = openId;
  const r = rows.get(person);
  if (!id || !r || r.busy) return;
  const label = r.entry.name || person;
  r.busy = true;
  updateRow(r, r.entry);
  try {
    const a = await act(path(id, "mark"), { person, status }, `mark:${id}:${person}`);
    const pos = positionOf(a);
    showResult(lp(), { ok: `Marked ${label} ${status} · log position ${pos}`, position: pos });
    if (id === openId) {
      // Shown at once; the refresh below confirms it.
      r.entry = { ...r.entry, status, marked_by: getSession()?.username ?? r.entry.marked_by, marked_at_position: a?.position ?? null };
    }
  } catch (e) {
    if (e.status !== 401) showResult(lp(), { error: `${label} not marked ${status}: ${e.message}` });
  } finally {
    r.busy = false;
    if (id === openId && rows.get(person) === r) {
      updateRow(r, r.entry);
      applyFilter();
    }
    refreshDetail();
  }
}

async function bulkMark() {
  const id = openId;
  if (!id || bulkBusy) return;
  const status = $("bulk-status").value;
  const chosen = [...selected].filter((p) => rows.has(p));
  if (!chosen.length) {
    showResult(lp(), { error: "Nobody is selected: tick people in the roll call, or use Select visible." });
    return;
  }
  const todo = chosen.filter((p) => rows.get(p).entry.status !== status);
  const already = chosen.length - todo.length;
  if (!todo.length) {
    showResult(lp(), { ok: `Everyone selected is already ${status}: nothing to mark.` });
    return;
  }
  bulkBusy = true;
  renderSelection();
  const batches = Math.ceil(todo.length / MAX_BATCH);
  const positions = [];
  let done = 0;
  try {
    for (let i = 0; i < todo.length; i += MAX_BATCH) {
      const chunk = todo.slice(i, i + MAX_BATCH);
      if (batches > 1) showResult(lp(), { ok: `Marking ${todo.length} ${status}… (request ${positions.length + 1} of ${batches})` });
      const a = await act(path(id, "mark-many"), { persons: chunk, status }, `mark-many:${id}:${status}:${i}`);
      positions.push(positionOf(a));
      done += chunk.length;
      for (const p of chunk) selected.delete(p);
    }
    for (const p of chosen) selected.delete(p); // done, or already so
    const extra = already ? ` (${already} already ${status})` : "";
    const where = positions.length > 1 ? `log positions ${positions.join(", ")}` : `log position ${positions[0]}`;
    showResult(lp(), { ok: `Marked ${done} ${status}${extra} · ${where}`, position: positions[positions.length - 1] });
  } catch (e) {
    if (e.status !== 401) {
      const before = done
        ? `Marked ${done} of ${todo.length} ${status} · log position${positions.length > 1 ? "s" : ""} ${positions.join(", ")}. The other ${todo.length - done} were not marked (still selected): `
        : `Not marked: `;
      showResult(lp(), { error: `${before}${e.message}`, position: positions.length ? positions[positions.length - 1] : null });
    }
  } finally {
    bulkBusy = false;
    if (id === openId) {
      for (const r of rows.values()) r.cb.checked = selected.has(r.entry.person);
      renderSelection();
    }
    refreshDetail();
  }
}

function closeConfirms() {
  for (const [btn, form] of [["od-complete", "od-complete-form"], ["od-rescind", "od-rescind-form"]]) {
    $(form).hidden = true;
    $(btn).setAttribute("aria-expanded", "false");
  }
}

function toggleConfirm(btnId, formId, focusId) {
  const opening = $(formId).hidden;
  closeConfirms();
  if (!opening) return;
  $(formId).hidden = false;
  $(btnId).setAttribute("aria-expanded", "true");
  $(focusId).focus();
}

async function complete() {
  const id = openId;
  if (!id) return;
  const note = $("od-complete-note").value.trim();
  try {
    const a = await act(path(id, "complete"), note ? { note } : {}, `complete:${id}`);
    const pos = positionOf(a);
    showResult(lp(), { ok: `Order completed · log position ${pos}`, position: pos });
    $("od-complete-note").value = "";
    closeConfirms();
  } catch (e) {
    if (e.status !== 401) showResult(lp(), { error: `Not completed: ${e.message}` });
  } finally {
    refreshDetail();
    refreshList();
  }
}

async function rescind() {
  const id = openId;
  if (!id) return;
  const input = $("od-rescind-reason");
  const reason = input.value.trim();
  invalid(input, !reason);
  if (!reason) {
    showResult(lp(), { error: "Reason: say why the order is withdrawn, then confirm." });
    input.focus();
    return;
  }
  try {
    const a = await act(path(id, "rescind"), { reason }, `rescind:${id}`);
    const pos = positionOf(a);
    showResult(lp(), { ok: `Order rescinded · log position ${pos}`, position: pos });
    input.value = "";
    closeConfirms();
  } catch (e) {
    if (e.status !== 401) showResult(lp(), { error: `Not rescinded: ${e.message}` });
  } finally {
    refreshDetail();
    refreshList();
  }
}

// ---------------------------------------------------------------- giving an order

function showCountryName(input, hint) {
  const v = input.value.toUpperCase().replace(/[^A-Z]/g, "").slice(0, 2);
  if (v !== input.value) input.value = v;
  hint.textContent = v.length < 2 ? "2 letters, e.g. SO" : isCountry(v) ? countryText(v) : "not a country code";
}

function toggleOrderForm(open = $("order-form").hidden) {
  const form = $("order-form");
  form.hidden = !open;
  $("order-new").setAttribute("aria-expanded", String(open));
  if (open) {
    const scope = getSession()?.scope;
    if (scope && !$("o-country").value) $("o-country").value = scope;
    showCountryName($("o-country"), $("o-country-name"));
    $("o-kind").focus();
  }
}

function readOrderForm() {
  const errors = [];
  const bad = (id, text) => {
    errors.push(text);
    invalid($(id), true);
  };
  for (const id of ["o-kind", "o-scope", "o-country", "o-deadline", "o-area", "o-station", "o-destination"]) invalid($(id), false);
  const kind = $("o-kind").value;
  if (!kind) bad("o-kind", "Kind: choose relocation or evacuation.");
  const scope = $("o-scope").value;
  if (!scope) bad("o-scope", "Who must move: choose one.");
  const country = $("o-country").value.trim().toUpperCase();
  if (!isCountry(country)) bad("o-country", "Country: the 2-letter code, e.g. SO for Somalia.");
  const deadline = toRfc3339($("o-deadline").value);
  if (!deadline) bad("o-deadline", "Deadline: set the date and time.");
  const area = $("o-area").value.trim();
  if (/\s/.test(area)) bad("o-area", "Area: a code without spaces, e.g. SOM-BAN.");
  const station = $("o-station").value.trim();
  if (/\s/.test(station)) bad("o-station", "Duty station: a code without spaces, e.g. SOM-MGQ.");
  const destination = $("o-destination").value.trim();
  if (!destination) bad("o-destination", "Destination: say where people go.");
  if (errors.length) return { errors };
  const fields = { kind, country };
  if (area) fields.area = area;
  if (station) fields.duty_station = station;
  Object.assign(fields, { scope, destination, deadline });
  return { fields, errors };
}

async function giveOrder() {
  const errBox = $("order-form-error");
  const { fields, errors } = readOrderForm();
  showError(errBox, errors.length ? errors.join(" ") : null);
  if (!fields) {
    $("order-form").querySelector("[aria-invalid]")?.focus();
    return;
  }
  let a;
  try {
    a = await act("/api/v1/orders", fields, "give-order");
  } catch (e) {
    if (e.status !== 401) showError(errBox, `Not given: ${e.message}`);
    return;
  }
  const pos = positionOf(a);
  const id = a?.id;
  let o = null;
  let count = "?";
  if (id) {
    try {
      o = await get(path(id));
      count = Array.isArray(o.roll_call) ? o.roll_call.length : o.tally?.total ?? "?";
    } catch {
      o = null;
    }
  }
  const people = count === "?" ? "? people (the order could not be read back: it opens below when it can)" : plural(count, "person", "people");
  showResult(lp(), { ok: `Order given · position ${pos} · roll call of ${people}`, position: pos });
  $("order-form").reset();
  utcHintOrder();
  toggleOrderForm(false);
  refreshList();
  if (id) openOrder(id, o);
}

let utcHintOrder = () => {};

// ---------------------------------------------------------------- section face

export function init(c) {
  ctx = c;
  $("order-filter").addEventListener("change", refreshList);
  $("order-new").addEventListener("click", () => toggleOrderForm());
  $("order-cancel").addEventListener("click", () => toggleOrderForm(false));
  $("o-country").addEventListener("input", () => showCountryName($("o-country"), $("o-country-name")));
  utcHintOrder = utcHint($("o-deadline"), $("o-deadline-utc"));
  bindForm($("order-form"), giveOrder);
  $("order-form").addEventListener("input", (e) => invalid(e.target, false));

  $("rc-search").addEventListener("input", applyFilter);
  $("rc-search").addEventListener("keydown", (e) => {
    if (e.key === "Escape" && $("rc-search").value) {
      $("rc-search").value = "";
      applyFilter();
      e.preventDefault();
    }
  });
  $("rc-filter").addEventListener("change", applyFilter);
  $("rc-select-visible").addEventListener("click", selectVisible);
  $("rc-select-none").addEventListener("click", selectNone);
  $("bulk-mark").addEventListener("click", bulkMark);

  $("od-complete").addEventListener("click", () => toggleConfirm("od-complete", "od-complete-form", "od-complete-note"));
  $("od-rescind").addEventListener("click", () => toggleConfirm("od-rescind", "od-rescind-form", "od-rescind-reason"));
  bindForm($("od-complete-form"), complete);
  bindForm($("od-rescind-form"), rescind);
  for (const f of [$("od-complete-form"), $("od-rescind-form")]) {
    f.querySelector("[data-cancel]").addEventListener("click", closeConfirms);
    f.addEventListener("keydown", (e) => {
      if (e.key === "Escape") closeConfirms();
    });
  }
}

export function show(id) {
  shown = true;
  if (id && id !== openId) openOrder(id);
  else if (openId) refreshDetail();
  refreshList();
}

export function hide() {
  shown = false;
}

export function tick(now, force = false) {
  if (!shown) return;
  if (force || (!listLoading && now - listTriedAt >= LIST_EVERY_MS)) refreshList();
  if (openId && (force || (!detailLoading && now - detailTriedAt >= DETAIL_EVERY_MS))) refreshDetail();
  renderUpdated();
}

export function focusSearch() {
  if ($("order-detail").hidden) return false;
  const s = $("rc-search");
  s.focus();
  s.select();
  return true;
}

export function reset() {
  shown = false;
  list = [];
  listSeq += 1;
  detailSeq += 1;
  listLoading = false;
  detailLoading = false;
  $("order-list").replaceChildren();
  clearDetail();
  openId = null;
  $("order-none").hidden = false;
  $("order-none").textContent = "Choose an order on the left to see its roll call.";
  showResult(lp(), {});
  $("order-form").reset();
  toggleOrderForm(false);
}
