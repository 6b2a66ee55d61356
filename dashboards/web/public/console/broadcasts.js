// Vigil operations console: all-agency broadcasts (the centre's communiqués to the agencies,
// acknowledged by each agency's focal point).
//
// Owns: the Broadcasts panel — the list (GET /api/v1/broadcasts[?status=]: {items, position,
// next}, broadcasts with their per-agency state, newest first), the form that issues one
// (POST /api/v1/broadcasts), the open broadcast (GET /api/v1/broadcasts/{id}) with its
// agencies, and the actions: approve, ack (`{}`) and cancel `{reason}`
// (POST /api/v1/broadcasts/{id}/<action>).
//
// Promises:
// - For duty officers: the form (title, message, severity, audience — every agency, a
//   country's agencies, named agencies, or the duty officers —, acknowledgement and its
//   deadline, EXERCISE), and on each broadcast Approve (while it awaits approval) and
//   Cancel… (a reason, in the open broadcast's confirmation step). The form says before
//   sending whether a second duty officer must approve it (high or critical, or every
//   agency); the server is the judge. An exercise is marked EXERCISE everywhere, in the form
//   as soon as the box is ticked.
// - For an agency focal point: the broadcasts sent to their agency (the server chooses them)
//   with Acknowledge, and whether and when their agency acknowledged.
// - Every action's outcome is written on `broadcast-result` ("… · log position N", or the
//   server's message with data-error="true", which says what to do, e.g. the two-person
//   rule's "another duty officer must approve it"); a refusal is also kept on the broadcast's
//   row until the next action on it succeeds, so it survives the list's refreshes.
// - The list is read every 10 s and after every action, the open broadcast every 5 s and
//   after every action; a late answer never replaces a newer one; what is being typed (the
//   form, the cancellation reason) is never cleared by a refresh.

import { get, getList, act, positionOf, getSession } from "./api.js";
import {
  $, h, fill, plural, words, fmtUtc, relative, toRfc3339, utcHint, showResult, showError, bindForm,
  invalid, badge, dl, splitList, countryText, isCountry,
} from "./ui.js";

const DETAIL_EVERY_MS = 5000;
const LIST_EVERY_MS = 10000;
const ISSUERS = ["duty_officer"];
const ACKERS = ["agency_focal_point"];
const MAX_AGENCIES = 200;
const SEVERITY_TEXT = { info: "Info", low: "Low", medium: "Medium", high: "High", critical: "Critical" };
const STATUS_TEXT = { awaiting_approval: "Awaiting approval", live: "Live", cancelled: "Cancelled" };
const CHANNEL_TEXT = { nats: "NATS", webhook: "Webhook", cap: "CAP feed" };
const channelText = (c) => CHANNEL_TEXT[c] ?? words(c);

let ctx = null;
let shown = false;
let list = [];
let listSeq = 0;
let listLoading = false;
let listTriedAt = 0;
let openId = null;
let bc = null; // the open broadcast as last read
let bcAt = 0;
let detailSeq = 0;
let detailLoading = false;
let detailTriedAt = 0;
/** id → the last refusal of an action on it (shown on its row). */
const rowErrors = new Map();
/** ids with an action in flight (their buttons are disabled). */
const busy = new Set();

const result = () => $("broadcast-result");
const path = (id, action = "") => `/api/v1/broadcasts/${encodeURIComponent(id)}${action ? `/${action}` : ""}`;
const may = (roles) => roles.includes(ctx.role());
const myAgency = () => getSession()?.agency || null;
const me = () => getSession()?.username || null;
const sentence = (s) => {
  const t = String(s || "").trim();
  return t ? t.charAt(0).toUpperCase() + t.slice(1) : t;
};

// ---------------------------------------------------------------- reading a broadcast

const agenciesOf = (b) => (b?.agencies && typeof b.agencies === "object" ? b.agencies : {});
// A focal point's broadcast lists its own agency only; `totals` counts every recipient.
const totalOf = (b) => b?.totals?.recipients ?? (Array.isArray(b?.recipients) ? b.recipients.length : Object.keys(agenciesOf(b)).length);
const num = (v) => (Number.isFinite(v) ? v : 0);
const isInternal = (b) => b?.audience === "duty_officers" || b?.audience === "crisis_managers";
const escalatedOf = (b) => (Array.isArray(b?.escalated) ? b.escalated : null);

function audienceText(a) {
  if (a === "all_agencies") return "Every agency";
  if (a === "duty_officers") return "Duty officers (inside the centre)";
  if (a === "crisis_managers") return "Crisis managers (inside the centre)";
  if (a && typeof a === "object") {
    if (a.country) return `Agencies in ${countryText(a.country)}`;
    if (Array.isArray(a.agencies)) return `Agencies: ${a.agencies.join(", ")}`;
  }
  return String(a ?? "?");
}

/** Whether the two-person rule holds a broadcast with these fields. */
const needsSecond = (severity, audience) => severity === "high" || severity === "critical" || audience === "all_agencies";

/** My agency's acknowledgement of `b`, or null. */
function myAck(b) {
  const a = myAgency();
  return a ? agenciesOf(b)[a]?.ack ?? null : null;
}

function countsText(b) {
  if (isInternal(b)) return "Inside the centre: shown on the duty officers' board, sent to no agency";
  const total = totalOf(b);
  return `Delivered ${num(b.delivered)} · acknowledged ${num(b.acknowledged)} · failed ${num(b.failed)} — of ${plural(total, "agency", "agencies")}`;
}

function exerciseTag(testid) {
  return h("span", { class: "exercise-tag", "data-testid": testid }, "EXERCISE");
}

function sevTag(sev) {
  return h("span", { class: `sev sev-${sev || "none"}`, "data-testid": "broadcast-severity", "data-severity": sev || "" },
    (SEVERITY_TEXT[sev] || words(sev || "?")).toUpperCase());
}

// ---------------------------------------------------------------- list

async function refreshList() {
  const seq = ++listSeq;
  listLoading = true;
  listTriedAt = Date.now();
  const status = $("bc-filter").value;
  try {
    const data = await getList(`/api/v1/broadcasts${status ? `?status=${encodeURIComponent(status)}` : ""}`);
    if (seq !== listSeq) return;
    list = data.items;
    showError($("broadcasts-error"), null);
    renderList();
  } catch (e) {
    if (seq !== listSeq || e.status === 401) return;
    showError($("broadcasts-error"), `Could not read the broadcasts: ${e.message}`);
  } finally {
    if (seq === listSeq) listLoading = false;
  }
}

function listItem(b) {
  const id = b.id;
  const status = b.status ?? "";
  const esc = escalatedOf(b);
  const total = totalOf(b);
  const failed = num(b.failed);
  const ack = myAck(b);
  const error = rowErrors.get(id);
  const mine = b.issued_by && b.issued_by === me();
  const inFlight = busy.has(id);
  const buttons = [];
  if (status === "awaiting_approval" && may(ISSUERS)) {
    buttons.push(h("button", { type: "button", class: "primary", "data-testid": "broadcast-approve", disabled: inFlight, onclick: () => approve(id) }, "Approve"));
  }
  if (status !== "cancelled" && !b.cancels && may(ISSUERS)) {
    buttons.push(h("button", { type: "button", class: "secondary danger", "data-testid": "broadcast-cancel", disabled: inFlight, onclick: () => openBroadcast(id, { cancel: true }) }, "Cancel…"));
  }
  if (status === "live" && may(ACKERS) && !ack) {
    buttons.push(h("button", { type: "button", class: "primary", "data-testid": "broadcast-ack", disabled: inFlight, onclick: () => acknowledge(id) }, "Acknowledge"));
  }
  buttons.push(h("button", { type: "button", class: "secondary", "data-testid": "broadcast-open", onclick: () => openBroadcast(id) }, id === openId ? "Details (open)" : "Details"));

  return h(
    "li",
    {
      class: `item bc st-${status}${b.exercise ? " is-exercise" : ""}${esc ? " is-escalated" : ""}${failed ? " has-failed" : ""}`,
      "data-testid": "broadcast",
      "data-id": id,
      "data-status": status,
      "data-exercise": b.exercise ? "true" : "false",
      "data-escalated": esc ? "true" : "false",
      "data-acked-by-me": ack ? "true" : "false",
    },
    h(
      "div",
      { class: `item-body${id === openId ? " current" : ""}` },
      h(
        "span",
        { class: "item-top" },
        b.exercise ? exerciseTag("broadcast-exercise") : null,
        sevTag(b.severity),
        h("span", { "data-testid": "broadcast-status" }, badge("bc", status, STATUS_TEXT[status] ?? words(status || "unknown"))),
        esc ? h("span", { class: "badge bc-escalated", "data-testid": "broadcast-escalated" }, "ESCALATED") : null,
      ),
      h("b", { class: "bc-title", "data-testid": "broadcast-title" }, String(b.title ?? "")),
      h(
        "span",
        {
          class: "item-line",
          "data-testid": "broadcast-counts",
          "data-delivered": num(b.delivered),
          "data-acked": num(b.acknowledged),
          "data-failed": failed,
          "data-total": total,
        },
        countsText(b),
      ),
      failed ? h("span", { class: "warn-line" }, `⚠ Not delivered to ${plural(failed, "agency", "agencies")}: see Details`) : null,
      esc ? h("span", { class: "warn-line" }, `⚠ ESCALATED: ${plural(esc.length, "agency", "agencies")} had not acknowledged by the deadline (${esc.join(", ")})`) : null,
      h(
        "span",
        { class: "item-line muted" },
        [
          audienceText(b.audience),
          b.issued_by ? `issued by ${mine ? `you (${b.issued_by})` : b.issued_by}` : null,
          fmtUtc(b.issued_at),
          b.approved_by ? `approved by ${b.approved_by}` : null,
        ].filter(Boolean).join(" · "),
      ),
      b.requires_ack && status !== "cancelled"
        ? h("span", { class: "item-line muted" }, b.ack_deadline ? `Acknowledge by ${fmtUtc(b.ack_deadline)} (${relative(b.ack_deadline)})` : "Acknowledgement asked, no deadline")
        : null,
      b.cancels ? h("span", { class: "item-line muted" }, `Cancellation notice for ${refText(b.cancels)}`) : null,
      b.updates ? h("span", { class: "item-line muted" }, `Update of ${refText(b.updates)}`) : null,
      b.cancelled ? h("span", { class: "item-line" }, h("b", null, "Cancelled: "), String(b.cancelled)) : null,
      status === "awaiting_approval" && may(ISSUERS)
        ? h("span", { class: "item-line hint" }, mine
          ? "You issued it: another duty officer must approve it before it goes out."
          : "Nothing is sent until a second duty officer approves it.")
        : null,
      ack ? h("span", { class: "item-line ack-line", "data-testid": "broadcast-acked" }, `✓ Your agency acknowledged it (${ack.by}, ${fmtUtc(ack.at)})`) : null,
      status === "live" && may(ACKERS) && !ack && b.requires_ack
        ? h("span", { class: "warn-line" }, "The centre is waiting for your acknowledgement.")
        : null,
      error ? h("span", { class: "error small row-error", "data-testid": "broadcast-row-error", role: "alert" }, error) : null,
      h("span", { class: "row bc-buttons" }, buttons),
    ),
  );
}

/** "“title”" of a listed broadcast, else "broadcast <id>". */
function refText(id) {
  const o = list.find((x) => x.id === id);
  return o ? `“${o.title}”` : `broadcast ${id}`;
}

function renderList() {
  const ul = $("broadcast-list");
  const active = document.activeElement;
  const focused = active?.closest?.("#broadcast-list [data-id]");
  const focusId = focused?.dataset.id;
  const focusTestid = active?.dataset?.testid;
  fill(ul, ...list.map(listItem));
  $("broadcasts-empty").hidden = list.length > 0;
  if (focusId) {
    const li = ul.querySelector(`[data-id="${CSS.escape(focusId)}"]`);
    (li?.querySelector(`[data-testid="${focusTestid}"]`) ?? li?.querySelector("button"))?.focus();
  }
}

function replaceInList(b) {
  const i = list.findIndex((x) => x.id === b.id);
  if (i < 0) return;
  list[i] = b;
  renderList();
}

// ---------------------------------------------------------------- the open broadcast

async function openBroadcast(id, { cancel = false } = {}) {
  if (id !== openId) {
    openId = id;
    bc = null;
    $("broadcast-detail").hidden = true;
    $("bd-cancel-reason").value = "";
    toggleCancel(false);
  }
  ctx.setRoute("broadcasts", id);
  renderList();
  if (!bc) {
    const none = $("broadcast-none");
    none.hidden = false;
    none.classList.remove("error");
    none.textContent = "Reading the broadcast…";
  }
  if (cancel) {
    const cached = list.find((x) => x.id === id);
    if (cached && !bc) apply(cached);
    toggleCancel(true);
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
    const b = await get(path(id));
    if (seq !== detailSeq || id !== openId) return;
    apply(b);
    replaceInList(b);
  } catch (e) {
    if (seq !== detailSeq || id !== openId || e.status === 401) return;
    if (!bc) {
      const none = $("broadcast-none");
      none.hidden = false;
      none.classList.add("error");
      none.textContent = `Could not read broadcast ${id}: ${e.message}`;
    } else {
      showError($("bd-refresh-error"), `Could not refresh: ${e.message}`);
    }
  } finally {
    if (seq === detailSeq) detailLoading = false;
  }
}

function apply(b) {
  bc = b;
  bcAt = Date.now();
  $("broadcast-none").hidden = true;
  $("broadcast-detail").hidden = false;
  showError($("bd-refresh-error"), null);
  render();
}

function render() {
  const b = bc;
  const status = b.status ?? "";
  const esc = escalatedOf(b);
  $("bd-title").textContent = String(b.title ?? "");
  $("bd-exercise").hidden = !b.exercise;
  $("bd-exercise-note").hidden = !b.exercise;
  $("broadcast-detail").classList.toggle("is-exercise", Boolean(b.exercise));
  const st = $("bd-status");
  st.className = `badge bc-${status || "none"}`;
  st.textContent = STATUS_TEXT[status] ?? words(status || "unknown");
  st.dataset.status = status;
  $("bd-escalated").hidden = !esc;
  const escNote = $("bd-escalated-note");
  escNote.hidden = !esc;
  escNote.textContent = esc
    ? `ESCALATED: at the deadline ${plural(esc.length, "agency", "agencies")} had not acknowledged: ${esc.join(", ")}. Reach them by other means.`
    : "";
  renderUpdated();
  $("bd-body").textContent = String(b.body ?? "");

  fill($("bd-meta"),
    dl([
      ["Severity", SEVERITY_TEXT[b.severity] ?? words(b.severity ?? "?")],
      ["Audience", audienceText(b.audience)],
      ["Issued", [b.issued_by ? `by ${b.issued_by}` : null, fmtUtc(b.issued_at)].filter(Boolean).join(" · ")],
      ["Approved by", b.approved_by ?? (status === "awaiting_approval" ? "not yet: a second duty officer must approve it" : null)],
      ["Acknowledgement", b.requires_ack ? (b.ack_deadline ? `asked, by ${fmtUtc(b.ack_deadline)} (${relative(b.ack_deadline)})` : "asked, no deadline") : "not asked"],
      ["Re-sent to", Array.isArray(b.resent_to) && b.resent_to.length ? b.resent_to.join(", ") : null],
      ["Cancelled", b.cancelled ?? null],
      ["Cancels broadcast", b.cancels ?? null],
      ["Updates broadcast", b.updates ?? null],
      ["Superseded by", b.superseded_by ?? null],
      ["Issued by rule", b.rule?.rule ?? null],
      ["Broadcast id", b.id],
    ]),
  );

  $("bd-n-delivered").textContent = String(num(b.delivered));
  $("bd-n-acked").textContent = String(num(b.acknowledged));
  $("bd-n-failed").textContent = String(num(b.failed));
  $("bd-failed-box").classList.toggle("t-missing", num(b.failed) > 0);
  $("bd-n-total").textContent = String(totalOf(b));

  // Actions for this status and role.
  const inFlight = busy.has(b.id);
  const ack = myAck(b);
  $("bd-approve").hidden = !(status === "awaiting_approval" && may(ISSUERS));
  $("bd-ack").hidden = !(status === "live" && may(ACKERS) && !ack);
  const canCancel = status !== "cancelled" && !b.cancels && may(ISSUERS);
  $("bd-cancel").hidden = !canCancel;
  if (!canCancel) toggleCancel(false);
  for (const id of ["bd-approve", "bd-ack"]) $(id).disabled = inFlight;
  const total = totalOf(b);
  $("bd-cancel-warning").textContent = isInternal(b)
    ? "Cancelling withdraws it from the duty officers' board, with your reason."
    : `Cancelling stops all further sending and reminders, and sends a cancellation notice ("CANCELLED: …", your reason as its message) to the same ${plural(total, "agency", "agencies")} at once, without a second approval${status === "awaiting_approval" ? " — even though this broadcast itself has not gone out yet" : ""}.`;

  // Agencies.
  const agencies = Object.entries(agenciesOf(b));
  const mineA = myAgency();
  $("bd-agencies-none").hidden = agencies.length > 0;
  $("bd-agencies-none").textContent = isInternal(b) ? "Inside the centre: no agency receives it." : "No agency.";
  $("bd-agencies-table").hidden = agencies.length === 0;
  fill($("bd-agencies"),
    agencies.map(([agency, s]) => {
      const delivered = Array.isArray(s.delivered) ? s.delivered : [];
      const failed = Object.entries(s.failed && typeof s.failed === "object" ? s.failed : {});
      const state = s.ack ? "acknowledged" : delivered.length ? "delivered" : failed.length ? "failed" : "pending";
      return h(
        "tr",
        { "data-testid": "broadcast-agency-row", "data-agency": agency, "data-state": state, class: `ag-${state}${agency === mineA ? " mine" : ""}` },
        h("td", { class: "mono" }, agency === mineA ? `${agency} (you)` : agency),
        h("td", null, delivered.length ? `✓ ${delivered.map(channelText).join(", ")}` : status === "awaiting_approval" ? "not sent: awaiting approval" : "not yet"),
        h("td", null, s.ack
          ? `✓ ${s.ack.by} · ${fmtUtc(s.ack.at)}${Number.isFinite(s.ack.seconds) ? ` · after ${durationText(s.ack.seconds)}` : ""}`
          : b.requires_ack ? "not yet" : "not asked"),
        h("td", { class: failed.length ? "bad-text" : "" }, failed.length ? failed.map(([ch, err]) => `${channelText(ch)}: ${err || "gave up"}`).join("; ") : "—"),
        h("td", { class: "num" }, String(num(s.attempts))),
      );
    }),
  );
}

function durationText(secs) {
  const s = Math.max(0, Math.round(secs));
  if (s < 120) return `${s} s`;
  const m = Math.round(s / 60);
  return m < 120 ? `${m} min` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

function renderUpdated() {
  if (!bc) return;
  const el = $("bd-updated");
  const secs = Math.max(0, Math.round((Date.now() - bcAt) / 1000));
  el.textContent = `Read ${secs} s ago · issued at log position ${bc.position ?? "?"}`;
  el.classList.toggle("stale", secs > 15);
}

function toggleCancel(open) {
  const form = $("bd-cancel-form");
  form.hidden = !open;
  $("bd-cancel").setAttribute("aria-expanded", String(open));
  if (open) {
    invalid($("bd-cancel-reason"), false);
    $("bd-cancel-reason").focus();
  }
}

// ---------------------------------------------------------------- actions

/** Sends `action` on broadcast `id`; the outcome goes on the result line (and the row). */
async function run(id, action, fields, done, failed) {
  if (busy.has(id)) return false;
  busy.add(id);
  renderList();
  if (bc?.id === id) render();
  let ok = false;
  try {
    const a = await act(path(id, action), fields, `${action}:${id}`);
    const pos = positionOf(a);
    rowErrors.delete(id);
    showResult(result(), { ok: `${done(a)} · log position ${pos}`, position: pos });
    ok = true;
  } catch (e) {
    if (e.status !== 401) {
      const text = `${failed}: ${sentence(e.message)}`;
      rowErrors.set(id, text);
      showResult(result(), { error: text });
    }
  } finally {
    busy.delete(id);
    renderList();
    if (id === openId) refreshDetail();
    refreshList();
  }
  return ok;
}

function approve(id) {
  const b = list.find((x) => x.id === id) ?? (bc?.id === id ? bc : null);
  const n = totalOf(b);
  return run(id, "approve", {}, () =>
    isInternal(b) ? "Approved: it is on the duty officers' board" : `Approved: it is going out to ${plural(n, "agency", "agencies")}`,
  "Not approved");
}

function acknowledge(id) {
  return run(id, "ack", {}, () => `Acknowledged for ${myAgency() ?? "your agency"}`, "Not acknowledged");
}

async function cancelOpen() {
  const id = openId;
  if (!id) return;
  const input = $("bd-cancel-reason");
  const reason = input.value.trim();
  invalid(input, !reason);
  if (!reason) {
    showResult(result(), { error: "Reason: say why the broadcast is cancelled; the agencies will read it." });
    input.focus();
    return;
  }
  const ok = await run(id, "cancel", { reason }, (a) =>
    `Cancelled: the cancellation notice is going out as broadcast ${a?.event_id ?? "?"}`, "Not cancelled");
  if (ok) {
    input.value = "";
    toggleCancel(false);
  }
}

// ---------------------------------------------------------------- issuing a broadcast

const audienceChoice = () => document.querySelector('#broadcast-form input[name="audience"]:checked')?.value ?? "all_agencies";

function syncForm() {
  const aud = audienceChoice();
  $("b-country-field").hidden = aud !== "country";
  $("b-agencies-field").hidden = aud !== "agencies";
  const requires = $("b-requires-ack").checked;
  $("b-deadline").disabled = !requires;
  $("b-deadline-field").classList.toggle("off", !requires);
  const ex = $("b-exercise").checked;
  $("b-exercise-banner").hidden = !ex;
  $("broadcast-form").classList.toggle("is-exercise", ex);
  const country = $("b-country");
  const v = country.value.toUpperCase().replace(/[^A-Z]/g, "").slice(0, 2);
  if (v !== country.value) country.value = v;
  $("b-country-name").textContent = v.length < 2 ? "2 letters, e.g. SO" : isCountry(v) ? countryText(v) : "not a country code";
  const ids = splitList($("b-agencies").value);
  $("b-agencies-count").textContent = ids.length ? plural(ids.length, "agency", "agencies") : "";
  const sev = $("b-severity").value;
  $("b-approval-note").textContent = needsSecond(sev, aud)
    ? "Two-person rule: a broadcast of high or critical severity, or to every agency, goes out only after a second duty officer approves it. Ask a colleague to approve it in this console."
    : sev
      ? "It goes out as soon as you issue it (no second approval for this severity and audience)."
      : "Choose a severity. High or critical, or every agency, needs a second duty officer's approval.";
  $("b-approval-note").dataset.needsSecond = String(needsSecond(sev, aud));
}

function toggleForm(open = $("broadcast-form").hidden) {
  if (open && !may(ISSUERS)) open = false;
  $("broadcast-form").hidden = !open;
  $("bc-new").setAttribute("aria-expanded", String(open));
  if (open) {
    if (!$("b-deadline").value) {
      $("b-deadline").value = localIn(60);
      $("b-deadline").dispatchEvent(new Event("input"));
    }
    syncForm();
    $("b-title").focus();
  }
}

/** The datetime-local value `minutes` from now. */
function localIn(minutes) {
  const d = new Date(Date.now() + minutes * 60000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

async function issue() {
  const errors = [];
  const bad = (id, text) => {
    errors.push(text);
    invalid($(id), true);
  };
  for (const id of ["b-title", "b-body", "b-severity", "b-country", "b-agencies", "b-deadline"]) invalid($(id), false);
  const title = $("b-title").value.trim();
  if (!title) bad("b-title", "Title: one line saying what it is about.");
  else if (/[\r\n]/.test(title)) bad("b-title", "Title: one line only.");
  const body = $("b-body").value.trim();
  if (!body) bad("b-body", "Message: write what the agencies must know or do.");
  const severity = $("b-severity").value;
  if (!SEVERITY_TEXT[severity]) bad("b-severity", "Severity: choose one.");
  const choice = audienceChoice();
  let audience = choice;
  if (choice === "country") {
    const cc = $("b-country").value.trim().toUpperCase();
    if (!isCountry(cc)) bad("b-country", "Country: the 2-letter code, e.g. SO.");
    audience = { country: cc };
  } else if (choice === "agencies") {
    const ids = splitList($("b-agencies").value);
    if (ids.length === 0) bad("b-agencies", "Agencies: name at least one agency id, e.g. wfp.");
    else if (ids.length > MAX_AGENCIES) bad("b-agencies", `Agencies: at most ${MAX_AGENCIES}.`);
    audience = { agencies: ids };
  }
  const requiresAck = $("b-requires-ack").checked;
  let deadline = null;
  if (requiresAck && $("b-deadline").value) {
    deadline = toRfc3339($("b-deadline").value);
    if (!deadline) bad("b-deadline", "Acknowledge by: a date and time, or leave it empty.");
    else if (Date.parse(deadline) <= Date.now()) bad("b-deadline", "Acknowledge by: a time in the future, or leave it empty.");
  }
  const exercise = $("b-exercise").checked;
  showError($("broadcast-form-error"), errors.length ? errors.join(" ") : null);
  if (errors.length) {
    $("broadcast-form").querySelector("[aria-invalid]")?.focus();
    return;
  }
  const fields = { title, body, severity, audience, requires_ack: requiresAck, exercise };
  if (deadline) fields.ack_deadline = deadline;
  let a;
  try {
    a = await act("/api/v1/broadcasts", fields, "issue-broadcast");
  } catch (e) {
    if (e.status !== 401) showError($("broadcast-form-error"), `Not issued: ${sentence(e.message)}`);
    return;
  }
  const pos = positionOf(a);
  const held = needsSecond(severity, choice);
  showResult(result(), {
    ok: `${exercise ? "EXERCISE broadcast" : "Broadcast"} issued${held ? ": it waits for a second duty officer's approval" : " and going out"} · log position ${pos}`,
    position: pos,
  });
  $("broadcast-form").reset();
  $("b-deadline").value = "";
  $("b-deadline").dispatchEvent(new Event("input"));
  toggleForm(false);
  if ($("bc-filter").value && $("bc-filter").value !== (held ? "awaiting_approval" : "live")) $("bc-filter").value = "";
  await refreshList();
  if (a?.id) openBroadcast(a.id);
}

// ---------------------------------------------------------------- section face

function renderRole() {
  const issuer = may(ISSUERS);
  $("bc-new").hidden = !issuer;
  if (!issuer) toggleForm(false);
  const note = $("bc-agency-note");
  // A focal point is never shown a broadcast that awaits approval.
  $("bc-filter").querySelector('option[value="awaiting_approval"]').hidden = may(ACKERS);
  if (may(ACKERS)) {
    const agency = myAgency();
    $("bc-heading").textContent = agency ? `Broadcasts to ${agency}` : "Broadcasts to your agency";
    note.hidden = false;
    note.textContent = "These are the centre's broadcasts sent to your agency. Acknowledge each one as soon as your agency has it in hand: the centre is told at once, and an agency still silent at the deadline is reported to the duty officers.";
  } else {
    $("bc-heading").textContent = "All-agency broadcasts";
    note.hidden = true;
    note.textContent = "";
  }
}

export function init(c) {
  ctx = c;
  $("bc-filter").addEventListener("change", refreshList);
  $("bc-new").addEventListener("click", () => toggleForm());
  $("broadcast-form-close").addEventListener("click", () => toggleForm(false));
  bindForm($("broadcast-form"), issue);
  $("broadcast-form").addEventListener("input", (e) => {
    invalid(e.target, false);
    syncForm();
  });
  $("broadcast-form").addEventListener("change", syncForm);
  utcHint($("b-deadline"), $("b-deadline-utc"));
  $("bd-approve").addEventListener("click", () => openId && approve(openId));
  $("bd-ack").addEventListener("click", () => openId && acknowledge(openId));
  $("bd-cancel").addEventListener("click", () => toggleCancel($("bd-cancel-form").hidden));
  bindForm($("bd-cancel-form"), cancelOpen);
  $("bd-cancel-form").querySelector("[data-cancel]").addEventListener("click", () => toggleCancel(false));
  $("bd-cancel-reason").addEventListener("input", () => invalid($("bd-cancel-reason"), false));
  syncForm();
}

export function show(id) {
  shown = true;
  renderRole();
  if (id && id !== openId) openBroadcast(id);
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
  bc = null;
  rowErrors.clear();
  busy.clear();
  $("broadcast-list").replaceChildren();
  $("broadcast-detail").hidden = true;
  $("broadcast-none").hidden = false;
  $("broadcast-none").classList.remove("error");
  $("broadcast-none").textContent = "Choose a broadcast on the left to see each agency's delivery and acknowledgement.";
  showResult(result(), {});
  $("broadcast-form").reset();
  $("b-deadline").value = "";
  toggleForm(false);
  toggleCancel(false);
  $("bd-cancel-reason").value = "";
  syncForm();
}
