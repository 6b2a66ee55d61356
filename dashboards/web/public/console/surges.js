// Vigil operations console: surge deployments (security officers sent to reinforce a duty
// station).
//
// Owns: the Surges panel — the list (GET /api/v1/surges: {items, position, next}, each
// surge with its away_from), the request form (POST /api/v1/surges), the open surge
// (GET /api/v1/surges/{id}) and its actions: approve, reject {reason}, assign {officer},
// deploy {at}, complete {at} (POST /api/v1/surges/{id}/<action>).
//
// Promises:
// - The answer's shape is read generously: the known fields (status, duty_station, country,
//   officers_needed, officers/assigned, reason, …) are shown by name, every other field as a
//   key/value list, so nothing the server sends is hidden.
// - Actions show for the surge's status (requested: approve/reject; approved: assign/deploy;
//   deployed: assign/complete; an unknown status: all of them) and the user's role (approve
//   and reject are for crisis managers); the server is the judge either way.
// - Every action writes "… · log position N" (or the server's message, data-error="true")
//   on `surge-result`; the open surge is read again every 5 s and after every action, the
//   list every 10 s and after every action; what is being typed is never cleared by it.

import { get, getList, act, positionOf, getSession } from "./api.js";
import {
  $, h, fill, words, fmtUtc, toRfc3339, utcHint, setNow, showResult, showError, bindForm, invalid,
  badge, dl, anyText, countryText, isCountry,
} from "./ui.js";

const DETAIL_EVERY_MS = 5000;
const LIST_EVERY_MS = 10000;
const DECIDERS = ["crisis_manager"];
const RUNNERS = ["duty_officer", "crisis_manager"];
/** Fields shown by name; the rest go to the key/value list. */
const KNOWN = new Set([
  "id", "surge", "duty_station", "country", "reason", "officers_needed", "assets", "status", "requested_by",
  "decided_by", "approved_by", "rejected_by", "rejected_reason", "rejection_reason", "officers", "assigned",
  "assignments", "officers_assigned", "deployed_at", "completed_at", "position", "requested_at", "updated_at",
  "version", "away_from",
]);

let ctx = null;
let shown = false;
let list = [];
let listSeq = 0;
let listLoading = false;
let listTriedAt = 0;
let openId = null;
let surge = null;
let surgeAt = 0;
let detailSeq = 0;
let detailLoading = false;
let detailTriedAt = 0;

const result = () => $("surge-result");
const path = (id, action = "") => `/api/v1/surges/${encodeURIComponent(id)}${action ? `/${action}` : ""}`;
const idOf = (s) => s?.id ?? s?.surge ?? null;

/** The officers of a surge, whatever the field is called: [{officer, from, at}]. */
function officersOf(s) {
  const raw = s.officers ?? s.assigned ?? s.assignments ?? [];
  if (!Array.isArray(raw)) return [];
  return raw.map((o) =>
    typeof o === "string"
      ? { officer: o, from: null, at: null }
      : { officer: o.officer ?? o.person ?? o.id ?? "?", from: o.from_duty_station ?? o.from ?? null, at: o.assigned_at ?? o.at ?? null },
  );
}

const assignedCount = (s) => (Number.isFinite(s.officers_assigned) ? s.officers_assigned : officersOf(s).length);

function awayText(away) {
  const parts = Object.entries(away || {}).filter(([, n]) => n > 0);
  return parts.map(([st, n]) => `${st} −${n}`).join(", ");
}

// ---------------------------------------------------------------- list

async function refreshList() {
  const seq = ++listSeq;
  listLoading = true;
  listTriedAt = Date.now();
  const status = $("surge-filter").value;
  try {
    const data = await getList(`/api/v1/surges${status ? `?status=${encodeURIComponent(status)}` : ""}`);
    if (seq !== listSeq) return;
    list = data.items;
    const away = {};
    for (const s of list) for (const [st, n] of Object.entries(s?.away_from ?? {})) away[st] = (away[st] ?? 0) + n;
    const gaps = awayText(away);
    const g = $("surge-gaps");
    g.hidden = !gaps;
    g.textContent = gaps ? `Officers away from their stations (active surges): ${gaps}` : "";
    showError($("surges-error"), null);
    renderList();
  } catch (e) {
    if (seq !== listSeq || e.status === 401) return;
    showError($("surges-error"), `Could not read the surges: ${e.message}`);
  } finally {
    if (seq === listSeq) listLoading = false;
  }
}

function listItem(s) {
  const id = idOf(s);
  const reason = String(s.reason ?? "");
  return h(
    "li",
    { class: `item st-${s.status}`, "data-testid": "surge", "data-id": id, "data-status": s.status ?? "" },
    h(
      "button",
      { type: "button", class: "item-btn", "aria-current": id === openId ? "true" : null, onclick: () => openSurge(id) },
      h("span", { class: "item-top" }, h("b", { class: "place" }, `${s.duty_station ?? "?"} · ${s.country ?? "?"}`), badge("surge", s.status)),
      h("span", { class: "item-line" }, `${assignedCount(s)} of ${s.officers_needed ?? "?"} officers · requested ${fmtUtc(s.requested_at)}`),
      reason ? h("span", { class: "item-line muted" }, reason.length > 140 ? `${reason.slice(0, 140)}…` : reason) : null,
    ),
  );
}

function renderList() {
  const ul = $("surge-list");
  const focused = document.activeElement?.closest?.("#surge-list [data-id]")?.dataset.id;
  fill(ul, ...list.map(listItem));
  $("surges-empty").hidden = list.length > 0;
  if (focused) ul.querySelector(`[data-id="${CSS.escape(focused)}"] button`)?.focus();
}

// ---------------------------------------------------------------- the open surge

async function openSurge(id, preloaded = null) {
  if (id !== openId) {
    openId = id;
    surge = null;
    $("surge-detail").hidden = true;
    for (const i of ["sd-reject-reason", "sd-officer"]) $(i).value = "";
    setNow($("sd-deploy-at"));
    setNow($("sd-complete-at"));
  }
  ctx.setRoute("surges", id);
  for (const b of $("surge-list").querySelectorAll(".item-btn")) {
    b.setAttribute("aria-current", String(b.closest("[data-id]").dataset.id === id));
  }
  if (preloaded) {
    apply(preloaded);
    return;
  }
  if (!surge) {
    const none = $("surge-none");
    none.hidden = false;
    none.classList.remove("error");
    none.textContent = "Reading the surge…";
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
    const s = await get(path(id));
    if (seq !== detailSeq || id !== openId) return;
    apply(s);
  } catch (e) {
    if (seq !== detailSeq || id !== openId || e.status === 401) return;
    if (!surge) {
      const none = $("surge-none");
      none.hidden = false;
      none.classList.add("error");
      none.textContent = `Could not read surge ${id}: ${e.message}`;
    } else {
      showError($("sd-refresh-error"), `Could not refresh: ${e.message}`);
    }
  } finally {
    if (seq === detailSeq) detailLoading = false;
  }
}

function apply(s) {
  surge = s;
  surgeAt = Date.now();
  $("surge-none").hidden = true;
  $("surge-detail").hidden = false;
  showError($("sd-refresh-error"), null);
  render();
  const i = list.findIndex((x) => idOf(x) === idOf(s));
  if (i >= 0) {
    list[i] = { ...list[i], ...s };
    const li = $("surge-list").querySelector(`[data-id="${CSS.escape(idOf(s))}"]`);
    if (li && document.activeElement?.closest("li") !== li) li.replaceWith(listItem(list[i]));
  }
}

function render() {
  const s = surge;
  $("sd-title").textContent = `Surge to ${s.duty_station ?? "?"}${s.country ? ` · ${s.country}` : ""}`;
  const st = $("sd-status");
  st.className = `badge surge-${s.status ?? "none"}`;
  st.textContent = words(s.status ?? "unknown");
  st.dataset.status = s.status ?? "";
  renderUpdated();

  const assets = Array.isArray(s.assets) ? s.assets : [];
  const decided = s.decided_by ?? s.approved_by ?? s.rejected_by;
  fill($("sd-known"),
    dl([
      ["Country", countryText(s.country)],
      ["Duty station", s.duty_station],
      ["Officers", `${assignedCount(s)} assigned of ${s.officers_needed ?? "?"} needed`],
      ["Reason", s.reason],
      ["Assets", assets.length ? assets.join(", ") : "none"],
      ["Requested", [s.requested_by ? `by ${s.requested_by}` : null, s.requested_at ? fmtUtc(s.requested_at) : null].filter(Boolean).join(" · ")],
      ["Decided by", decided],
      ["Reason for rejecting", s.rejected_reason ?? s.rejection_reason],
      ["Deployed", s.deployed_at ? fmtUtc(s.deployed_at) : null],
      ["Completed", s.completed_at ? fmtUtc(s.completed_at) : null],
      ["Gap it leaves", awayText(s.away_from) || null],
      ["Surge id", idOf(s)],
    ]),
  );

  const officers = officersOf(s);
  fill($("sd-officers"),
    officers.length
      ? h(
          "table",
          { class: "officers", "data-testid": "surge-officers" },
          h("thead", null, h("tr", null, h("th", null, "Officer"), h("th", null, "From station"), h("th", null, "Assigned at"))),
          h(
            "tbody",
            null,
            officers.map((o) =>
              h("tr", { "data-testid": "surge-officer-row", "data-officer": o.officer },
                h("td", { class: "mono" }, o.officer), h("td", { class: "mono" }, o.from ?? "—"), h("td", null, o.at ? fmtUtc(o.at) : "—")),
            ),
          ),
        )
      : h("p", { class: "hint" }, "No officer assigned yet."),
  );

  const rest = Object.entries(s).filter(([k]) => !KNOWN.has(k));
  $("sd-more-wrap").hidden = rest.length === 0;
  fill($("sd-more"), dl(rest.map(([k, v]) => [words(k), anyText(v)])));

  // Which actions, for this status and this role.
  const r = ctx.role();
  const known = ["requested", "approved", "rejected", "deployed", "completed"].includes(s.status);
  const may = (roles) => roles.includes(r);
  const when = (...sts) => !known || sts.includes(s.status);
  const decide = when("requested");
  $("sd-decide").hidden = !(decide && may(DECIDERS));
  $("sd-decide-note").hidden = !(decide && !may(DECIDERS));
  $("sd-assign").hidden = !(when("approved", "deployed") && may(RUNNERS));
  $("sd-deploy").hidden = !(when("approved") && may(RUNNERS));
  $("sd-complete").hidden = !(when("deployed") && may(RUNNERS));
}

function renderUpdated() {
  if (!surge) return;
  const el = $("sd-updated");
  const secs = Math.max(0, Math.round((Date.now() - surgeAt) / 1000));
  el.textContent = `Read ${secs} s ago · requested at log position ${surge.position ?? "?"} · version ${surge.version ?? "?"}`;
  el.classList.toggle("stale", secs > 15);
}

// ---------------------------------------------------------------- actions

async function run(action, fields, done, form) {
  const id = openId;
  if (!id) return;
  try {
    const a = await act(path(id, action), fields, `${action}:${id}`);
    const pos = positionOf(a);
    showResult(result(), { ok: `${done} · log position ${pos}`, position: pos });
    form?.reset();
    if (form) for (const i of form.querySelectorAll("input[type=datetime-local]")) setNow(i);
  } catch (e) {
    if (e.status !== 401) showResult(result(), { error: e.message });
  } finally {
    refreshDetail();
    refreshList();
  }
}

function need(input, ok, message) {
  invalid(input, !ok);
  if (!ok) {
    showResult(result(), { error: message });
    input.focus();
  }
  return ok;
}

function atOf(input, what) {
  const at = toRfc3339(input.value);
  return need(input, Boolean(at), `${what}: set the date and time.`) ? at : null;
}

// ---------------------------------------------------------------- requesting a surge

function showCountryName() {
  const input = $("s-country");
  const v = input.value.toUpperCase().replace(/[^A-Z]/g, "").slice(0, 2);
  if (v !== input.value) input.value = v;
  $("s-country-name").textContent = v.length < 2 ? "2 letters, e.g. SO" : isCountry(v) ? countryText(v) : "not a country code";
}

function toggleForm(open = $("surge-form").hidden) {
  $("surge-form").hidden = !open;
  $("surge-new").setAttribute("aria-expanded", String(open));
  if (open) {
    const scope = getSession()?.scope;
    if (scope && !$("s-country").value) $("s-country").value = scope;
    showCountryName();
    $("s-station").focus();
  }
}

async function requestSurge() {
  const errors = [];
  const bad = (id, text) => {
    errors.push(text);
    invalid($(id), true);
  };
  for (const id of ["s-station", "s-country", "s-officers", "s-reason", "s-assets"]) invalid($(id), false);
  const station = $("s-station").value.trim();
  if (!station || /\s/.test(station)) bad("s-station", "Duty station: its code, without spaces (e.g. SOM-MGQ).");
  const country = $("s-country").value.trim().toUpperCase();
  if (!isCountry(country)) bad("s-country", "Country: the 2-letter code, e.g. SO.");
  const n = Number($("s-officers").value);
  if (!(Number.isInteger(n) && n >= 1 && n <= 200)) bad("s-officers", "Officers needed: a whole number from 1 to 200.");
  const reason = $("s-reason").value.trim();
  if (!reason) bad("s-reason", "Reason: say why the station needs help.");
  const assets = $("s-assets").value.split(/[\n,;]+/).map((x) => x.trim()).filter(Boolean);
  if (assets.length > 100) bad("s-assets", "Assets: at most 100.");
  showError($("surge-form-error"), errors.length ? errors.join(" ") : null);
  if (errors.length) {
    $("surge-form").querySelector("[aria-invalid]")?.focus();
    return;
  }
  const fields = { duty_station: station, country, reason, officers_needed: n, assets };
  let a;
  try {
    a = await act("/api/v1/surges", fields, "request-surge");
  } catch (e) {
    if (e.status !== 401) showError($("surge-form-error"), `Not requested: ${e.message}`);
    return;
  }
  const pos = positionOf(a);
  showResult(result(), { ok: `Surge requested · log position ${pos}`, position: pos });
  $("surge-form").reset();
  toggleForm(false);
  refreshList();
  if (a?.id) openSurge(a.id);
}

// ---------------------------------------------------------------- section face

export function init(c) {
  ctx = c;
  $("surge-filter").addEventListener("change", refreshList);
  $("surge-new").addEventListener("click", () => toggleForm());
  $("surge-cancel").addEventListener("click", () => toggleForm(false));
  $("s-country").addEventListener("input", showCountryName);
  bindForm($("surge-form"), requestSurge);
  $("surge-form").addEventListener("input", (e) => invalid(e.target, false));
  utcHint($("sd-deploy-at"), $("sd-deploy-utc"));
  utcHint($("sd-complete-at"), $("sd-complete-utc"));

  bindForm($("sd-approve-form"), () => run("approve", {}, "Approved"));
  bindForm($("sd-reject-form"), () => {
    const input = $("sd-reject-reason");
    const reason = input.value.trim();
    if (!need(input, Boolean(reason), "Reason: say why the surge is rejected.")) return undefined;
    return run("reject", { reason }, "Rejected", $("sd-reject-form"));
  });
  bindForm($("sd-assign-form"), () => {
    const input = $("sd-officer");
    const officer = input.value.trim();
    if (!need(input, Boolean(officer) && !/\s/.test(officer), "Officer: the security officer's person id, e.g. P-000123.")) return undefined;
    return run("assign", { officer }, `Assigned ${officer}`, $("sd-assign-form"));
  });
  bindForm($("sd-deploy-form"), () => {
    const at = atOf($("sd-deploy-at"), "Deployed at");
    return at ? run("deploy", { at }, "Deployed", $("sd-deploy-form")) : undefined;
  });
  bindForm($("sd-complete-form"), () => {
    const at = atOf($("sd-complete-at"), "Completed at");
    return at ? run("complete", { at }, "Completed", $("sd-complete-form")) : undefined;
  });
  for (const id of ["sd-reject-reason", "sd-officer", "sd-deploy-at", "sd-complete-at"]) {
    $(id).addEventListener("input", () => invalid($(id), false));
  }
}

export function show(id) {
  shown = true;
  if (id && id !== openId) openSurge(id);
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
  return false;
}

export function reset() {
  shown = false;
  list = [];
  listSeq += 1;
  detailSeq += 1;
  listLoading = false;
  detailLoading = false;
  openId = null;
  surge = null;
  $("surge-list").replaceChildren();
  $("surge-detail").hidden = true;
  $("surge-none").hidden = false;
  $("surge-none").classList.remove("error");
  $("surge-none").textContent = "Choose a surge on the left.";
  showResult(result(), {});
  $("surge-form").reset();
  toggleForm(false);
}

