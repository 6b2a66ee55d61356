// Vigil operations console: all-agency broadcasts (the centre's communiqués to the agencies,
// acknowledged by each agency's focal point).
//
// Owns: the Broadcasts section — the list (GET /api/v1/broadcasts[?status=], newest first,
// with each agency's state), the form that issues one (POST /api/v1/broadcasts), the open
// broadcast (GET /api/v1/broadcasts/{id}) with its agencies, and the actions approve {},
// ack {} and cancel {reason} (POST /api/v1/broadcasts/{id}/<action>).
//
// Promises:
// - For duty officers: the form (title, message, severity, audience — every agency, a
//   country's agencies, named agencies, or the duty officers —, acknowledgement and its
//   deadline, EXERCISE), and on each broadcast Approve (while it awaits approval) and
//   Cancel… (with a reason). The form says before sending whether a second duty officer must
//   approve it (high or critical, or every agency); the server is the judge. An exercise is
//   marked EXERCISE everywhere, in the form as soon as the box is ticked.
// - For an agency focal point: the broadcasts sent to their agency (the server chooses them)
//   with Acknowledge, and whether and when their agency acknowledged.
// - Each broadcast shows how many rule triggers were damped into it (`suppressed`).

import { ListDetail, itemPath } from "./controller.js";
import { getSession } from "./api.js";
import {
  html, POLICY, KV, fmtUtc, relative, words, countryText, isCountry, plural, num, may, splitList, toRfc3339,
  localValue, ErrorLine, redraw,
} from "./kit.js";

const BASE = "/api/v1/broadcasts";
const path = (id, action) => itemPath(BASE, id, action);
const SEVERITIES = [["info", "Info"], ["low", "Low"], ["medium", "Medium"], ["high", "High"], ["critical", "Critical"]];
const STATUS_TEXT = { awaiting_approval: "Awaiting approval", live: "Live", cancelled: "Cancelled" };
const CHANNEL_TEXT = { nats: "NATS", webhook: "Webhook", cap: "CAP feed" };
const MAX_AGENCIES = 200;
const FORM = "issue:";

const myAgency = () => getSession()?.agency || null;
const me = () => getSession()?.username || null;
const agenciesOf = (b) => (b?.agencies && typeof b.agencies === "object" ? b.agencies : {});
// A focal point's broadcast lists its own agency only; `totals` counts every recipient.
const totalOf = (b) => b?.totals?.recipients ?? (Array.isArray(b?.recipients) ? b.recipients.length : Object.keys(agenciesOf(b)).length);
const isInternal = (b) => b?.audience === "duty_officers" || b?.audience === "crisis_managers";
const escalatedOf = (b) => (Array.isArray(b?.escalated) ? b.escalated : null);
const myAck = (b) => (myAgency() ? agenciesOf(b)[myAgency()]?.ack ?? null : null);
/** Whether the two-person rule holds a broadcast with these fields. */
const needsSecond = (severity, audience) => severity === "high" || severity === "critical" || audience === "all_agencies";

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

function countsText(b) {
  if (isInternal(b)) return "Inside the centre: shown on the duty officers' board, sent to no agency";
  return `Delivered ${num(b.delivered)} · acknowledged ${num(b.acknowledged)} · failed ${num(b.failed)} — of ${plural(totalOf(b), "agency", "agencies")}`;
}

export const c = new ListDetail({
  name: "broadcasts",
  things: "broadcasts",
  base: BASE,
  sameShape: true,
  filters: { status: "" },
});

const Exercise = () => html`<span class="exercise-tag" data-testid="broadcast-exercise">EXERCISE</span>`;
const Severity = ({ sev }) => html`<span class=${`sev sev-${sev || "none"}`} data-testid="broadcast-severity" data-severity=${sev || ""}>${String(sev || "?").toUpperCase()}</span>`;

function Row({ item: b }) {
  const status = b.status ?? "";
  const esc = escalatedOf(b);
  const ack = myAck(b);
  const mine = b.issued_by && b.issued_by === me();
  return html`<span class="item-top">
      ${b.exercise ? html`<${Exercise} />` : null}
      <${Severity} sev=${b.severity} />
      <span data-testid="broadcast-status"><span class=${`badge bc-${status || "none"}`} data-status=${status}>${STATUS_TEXT[status] ?? words(status || "unknown")}</span></span>
      ${esc ? html`<span class="badge bc-escalated" data-testid="broadcast-escalated">ESCALATED</span>` : null}
    </span>
    <b class="bc-title" data-testid="broadcast-title">${String(b.title ?? "")}</b>
    <span class="item-line" data-testid="broadcast-counts" data-delivered=${num(b.delivered)} data-acked=${num(b.acknowledged)}
      data-failed=${num(b.failed)} data-total=${totalOf(b)}>${countsText(b)}</span>
    ${num(b.suppressed) > 0
      ? html`<span class="item-line" data-testid="broadcast-suppressed" data-suppressed=${num(b.suppressed)}>${plural(num(b.suppressed), "more trigger")} damped into this one (no new broadcast)</span>`
      : null}
    ${num(b.failed) ? html`<span class="warn-line">⚠ Not delivered to ${plural(num(b.failed), "agency", "agencies")}: see Details</span>` : null}
    ${esc ? html`<span class="warn-line">⚠ ESCALATED: ${plural(esc.length, "agency", "agencies")} had not acknowledged by the deadline (${esc.join(", ")})</span>` : null}
    <span class="item-line muted">${[
      audienceText(b.audience),
      b.issued_by ? `issued by ${mine ? `you (${b.issued_by})` : b.issued_by}` : null,
      fmtUtc(b.issued_at),
      b.approved_by ? `approved by ${b.approved_by}` : null,
    ].filter(Boolean).join(" · ")}</span>
    ${b.requires_ack && status !== "cancelled"
      ? html`<span class="item-line muted">${b.ack_deadline ? `Acknowledge by ${fmtUtc(b.ack_deadline)} (${relative(b.ack_deadline)})` : "Acknowledgement asked, no deadline"}</span>`
      : null}
    ${b.cancelled ? html`<span class="item-line"><b>Cancelled: </b>${String(b.cancelled)}</span>` : null}
    ${status === "awaiting_approval" && may(POLICY.BROADCAST_APPROVE)
      ? html`<span class="item-line hint">${mine ? "You issued it: another duty officer must approve it before it goes out." : "Nothing is sent until a second duty officer approves it."}</span>`
      : null}
    ${ack ? html`<span class="item-line ack-line" data-testid="broadcast-acked">✓ Your agency acknowledged it (${ack.by}, ${fmtUtc(ack.at)})</span>` : null}
    ${status === "live" && may(POLICY.BROADCAST_ACK) && !ack && b.requires_ack
      ? html`<span class="warn-line">The centre is waiting for your acknowledgement.</span>`
      : null}`;
}

function Detail({ item: b }) {
  const status = b.status ?? "";
  const agencies = Object.entries(agenciesOf(b));
  const mine = myAgency();
  return html`<div class=${b.exercise ? "is-exercise" : ""}>
    ${b.exercise ? html`<p class="exercise-banner">EXERCISE — this is a drill</p>` : null}
    <h3 data-testid="broadcast-detail-title">${String(b.title ?? "")}</h3>
    <p class="bc-body">${String(b.body ?? "")}</p>
    <${KV} pairs=${[
      ["Status", STATUS_TEXT[status] ?? words(status)],
      ["Severity", words(b.severity ?? "?")],
      ["Audience", audienceText(b.audience)],
      ["Issued", [b.issued_by ? `by ${b.issued_by}` : null, fmtUtc(b.issued_at)].filter(Boolean).join(" · ")],
      ["Approved by", b.approved_by ?? (status === "awaiting_approval" ? "not yet: a second duty officer must approve it" : null)],
      ["Acknowledgement", b.requires_ack ? (b.ack_deadline ? `asked, by ${fmtUtc(b.ack_deadline)} (${relative(b.ack_deadline)})` : "asked, no deadline") : "not asked"],
      ["Counts", `${countsText(b)}`],
      ["Damped triggers", num(b.suppressed) > 0 ? html`<span data-testid="broadcast-detail-suppressed">${num(b.suppressed)}</span>` : null],
      ["Re-sent to", Array.isArray(b.resent_to) && b.resent_to.length ? b.resent_to.join(", ") : null],
      ["Cancelled", b.cancelled ?? null],
      ["Cancels broadcast", b.cancels ?? null],
      ["Updates broadcast", b.updates ?? null],
      ["Superseded by", b.superseded_by ?? null],
      ["Issued by rule", b.rule?.rule ?? (typeof b.rule === "string" ? b.rule : null)],
      ["Broadcast id", b.id],
    ]} />
    ${agencies.length
      ? html`<table class="agencies" data-testid="broadcast-agencies"><thead><tr><th>Agency</th><th>Delivered</th><th>Acknowledged</th><th>Failed</th><th>Attempts</th></tr></thead>
        <tbody>${agencies.map(([agency, s]) => {
          const delivered = Array.isArray(s.delivered) ? s.delivered : [];
          const failed = Object.entries(s.failed && typeof s.failed === "object" ? s.failed : {});
          const state = s.ack ? "acknowledged" : delivered.length ? "delivered" : failed.length ? "failed" : "pending";
          return html`<tr key=${agency} data-testid="broadcast-agency-row" data-agency=${agency} data-state=${state} class=${`ag-${state}${agency === mine ? " mine" : ""}`}>
            <td class="mono">${agency === mine ? `${agency} (you)` : agency}</td>
            <td>${delivered.length ? `✓ ${delivered.map((ch) => CHANNEL_TEXT[ch] ?? words(ch)).join(", ")}` : status === "awaiting_approval" ? "not sent: awaiting approval" : "not yet"}</td>
            <td>${s.ack ? `✓ ${s.ack.by} · ${fmtUtc(s.ack.at)}` : b.requires_ack ? "not yet" : "not asked"}</td>
            <td class=${failed.length ? "bad-text" : ""}>${failed.length ? failed.map(([ch, err]) => `${CHANNEL_TEXT[ch] ?? ch}: ${err || "gave up"}`).join("; ") : "—"}</td>
            <td class="num">${String(num(s.attempts))}</td></tr>`;
        })}</tbody></table>`
      : html`<p class="hint">${isInternal(b) ? "Inside the centre: no agency receives it." : "No agency."}</p>`}
  </div>`;
}

// ---------------------------------------------------------------- issuing one

const v = (name, init) => c.val(FORM, name, init);

/** The form's values, read from the form itself (what is on screen is what is sent). */
function readForm(form) {
  const el = (n) => form.elements.namedItem(n);
  return {
    title: el("title").value.trim(),
    body: el("body").value.trim(),
    severity: el("severity").value,
    audience: form.querySelector('input[name="audience"]:checked')?.value ?? "all_agencies",
    country: el("country").value.trim().toUpperCase(),
    agencies: splitList(el("agencies").value),
    requires_ack: el("requires_ack").checked,
    deadline: el("ack_deadline").value,
    exercise: el("exercise").checked,
  };
}

async function issue(e) {
  e.preventDefault();
  const form = e.currentTarget;
  const f = readForm(form);
  const errors = [];
  if (!f.title) errors.push("Title: one line saying what it is about.");
  if (!f.body) errors.push("Message: write what the agencies must know or do.");
  if (!SEVERITIES.some(([s]) => s === f.severity)) errors.push("Severity: choose one.");
  let audience = f.audience;
  if (f.audience === "country") {
    if (!isCountry(f.country)) errors.push("Country: the 2-letter code, e.g. SO.");
    audience = { country: f.country };
  } else if (f.audience === "agencies") {
    if (!f.agencies.length) errors.push("Agencies: name at least one agency id, e.g. wfp.");
    else if (f.agencies.length > MAX_AGENCIES) errors.push(`Agencies: at most ${MAX_AGENCIES}.`);
    audience = { agencies: f.agencies };
  }
  let deadline = null;
  if (f.requires_ack && f.deadline) {
    deadline = toRfc3339(f.deadline);
    if (!deadline) errors.push("Acknowledge by: a date and time, or leave it empty.");
    else if (Date.parse(deadline) <= Date.now()) errors.push("Acknowledge by: a time in the future, or leave it empty.");
  }
  c.formErrors.set(FORM, errors.join(" ") || null);
  redraw();
  if (errors.length) return;
  const fields = { title: f.title, body: f.body, severity: f.severity, audience, requires_ack: f.requires_ack, exercise: f.exercise };
  if (deadline) fields.ack_deadline = deadline;
  const held = needsSecond(f.severity, f.audience);
  const a = {
    name: "issue",
    done: () => `${f.exercise ? "EXERCISE broadcast" : "Broadcast"} issued${held ? ": it waits for a second duty officer's approval" : " and going out"}`,
    failed: "Not issued",
    after: (answer) => {
      form.reset();
      c.clearForm(FORM);
      if (c.filters.status && c.filters.status !== (held ? "awaiting_approval" : "live")) c.filters = { ...c.filters, status: "" };
      if (answer?.id) c.open(answer.id);
    },
  };
  const ok = await c.run(a, null, fields);
  if (!ok && c.result?.error) {
    c.formErrors.set(FORM, c.result.error);
    redraw();
  }
}

function CreateForm({ c }) {
  const aud = v("audience", "all_agencies");
  const sev = v("severity", "");
  const requires = v("requires_ack", true);
  const exercise = v("exercise", false);
  const cc = String(v("country", "")).toUpperCase();
  const set = (name) => (e) => c.set(FORM, name, e.target.type === "checkbox" ? e.target.checked : e.target.value);
  const second = needsSecond(sev, aud);
  return html`<form id="broadcast-form" data-form=${FORM} data-testid="broadcast-form" class=${`card form${exercise ? " is-exercise" : ""}`} novalidate onSubmit=${issue}>
    <h3>Issue a broadcast</h3>
    <p class="exercise-banner" data-testid="broadcast-form-exercise" hidden=${!exercise}>EXERCISE — agencies will see it marked as a drill</p>
    <label class="field"><span>Title</span><input id="b-title" name="title" maxlength="200" onInput=${set("title")} /></label>
    <label class="field"><span>Message</span><textarea id="b-body" name="body" rows="4" onInput=${set("body")}></textarea></label>
    <label class="field"><span>Severity</span>
      <select id="b-severity" name="severity" onChange=${set("severity")}>
        <option value="">Choose…</option>${SEVERITIES.map(([s, t]) => html`<option key=${s} value=${s}>${t}</option>`)}
      </select></label>
    <fieldset class="field"><legend>Audience</legend>
      ${[["all_agencies", "b-aud-all", "Every agency"], ["country", "b-aud-country", "A country's agencies"], ["agencies", "b-aud-agencies", "Named agencies"], ["duty_officers", "b-aud-duty", "Duty officers only (inside the centre)"]]
        .map(([value, id, text]) => html`<label class="inline" key=${value}><input type="radio" id=${id} name="audience" value=${value}
          defaultChecked=${value === "all_agencies"} onChange=${set("audience")} /> ${text}</label>`)}
    </fieldset>
    <label class="field" hidden=${aud !== "country"}><span>Country (2 letters)</span>
      <input id="b-country" name="country" maxlength="2" onInput=${set("country")} />
      <small class="hint">${cc.length < 2 ? "2 letters, e.g. SO" : isCountry(cc) ? countryText(cc) : "not a country code"}</small></label>
    <label class="field" hidden=${aud !== "agencies"}><span>Agencies (ids)</span><input id="b-agencies" name="agencies" onInput=${set("agencies")} /></label>
    <label class="inline field"><input type="checkbox" id="b-requires-ack" name="requires_ack" defaultChecked=${true} onChange=${set("requires_ack")} /> Ask each agency to acknowledge</label>
    <label class=${`field${requires ? "" : " off"}`}><span>Acknowledge by (your local time; optional)</span>
      <input type="datetime-local" id="b-deadline" name="ack_deadline" defaultValue=${localValue(60)} disabled=${!requires} /></label>
    <label class="inline field"><input type="checkbox" id="b-exercise" name="exercise" onChange=${set("exercise")} /> EXERCISE (a drill)</label>
    <p class="note" data-testid="broadcast-approval-note" data-needs-second=${String(second)}>${second
      ? "Two-person rule: a broadcast of high or critical severity, or to every agency, goes out only after a second duty officer approves it. Ask a colleague to approve it in this console."
      : sev
        ? "It goes out as soon as you issue it (no second approval for this severity and audience)."
        : "Choose a severity. High or critical, or every agency, goes out only after a second duty officer approves it."}</p>
    <${ErrorLine} testid="broadcast-form-error" text=${c.formErrors.get(FORM)} />
    <div class="row">
      <button type="submit" class="primary" data-testid="broadcast-issue" disabled=${c.busy.has("issue:")}>Issue</button>
      <button type="button" class="secondary" id="broadcast-form-close" onClick=${() => { c.creating = false; redraw(); }}>Close</button>
    </div>
  </form>`;
}

function Intro() {
  return may(POLICY.BROADCAST_ACK)
    ? html`<p class="note" data-testid="broadcast-agency-note">These are the centre's broadcasts sent to your agency. Acknowledge each one as soon as your agency has it in hand: the centre is told at once, and an agency still silent at the deadline is reported to the duty officers.</p>`
    : null;
}

export const section = {
  name: "broadcasts",
  prefix: "broadcast",
  tab: "Broadcasts",
  title: () => (may(POLICY.BROADCAST_ACK) ? `Broadcasts to ${myAgency() ?? "your agency"}` : "All-agency broadcasts"),
  roles: POLICY.BROADCAST_READ,
  c,
  Row,
  Detail,
  Intro,
  CreateForm,
  rowProps: (b) => ({
    class: `bc st-${b.status}${b.exercise ? " is-exercise" : ""}${escalatedOf(b) ? " is-escalated" : ""}${num(b.failed) ? " has-failed" : ""}`,
    data: {
      "data-status": b.status ?? "",
      "data-exercise": b.exercise ? "true" : "false",
      "data-escalated": escalatedOf(b) ? "true" : "false",
      "data-acked-by-me": myAck(b) ? "true" : "false",
    },
  }),
  filters: [{ name: "status", label: "Show", options: [["", "All"], ["awaiting_approval", "Awaiting approval"], ["live", "Live"], ["cancelled", "Cancelled"]] }],
  empty: "No broadcast.",
  choose: "Choose a broadcast on the left to see each agency's delivery and acknowledgement.",
  create: { name: "issue", label: "New broadcast…", roles: POLICY.BROADCAST_ISSUE },
  actions: [
    {
      name: "approve",
      label: "Approve",
      primary: true,
      inRow: true,
      roles: POLICY.BROADCAST_APPROVE,
      when: (b) => b.status === "awaiting_approval",
      path: (id) => path(id, "approve"),
      done: (a, f, c) => {
        const b = c.find(a?.id) ?? c.detail;
        return isInternal(b) ? "Approved: it is on the duty officers' board" : `Approved: it is going out to ${plural(totalOf(b), "agency", "agencies")}`;
      },
      failed: "Not approved",
    },
    {
      name: "ack",
      label: "Acknowledge",
      primary: true,
      inRow: true,
      roles: POLICY.BROADCAST_ACK,
      when: (b) => b.status === "live" && !myAck(b),
      path: (id) => path(id, "ack"),
      done: () => `Acknowledged for ${myAgency() ?? "your agency"}`,
      failed: "Not acknowledged",
    },
    {
      name: "cancel",
      label: "Cancel…",
      danger: true,
      inRow: true,
      roles: POLICY.BROADCAST_ISSUE,
      when: (b) => b.status !== "cancelled" && !b.cancels,
      explain: (b) => (isInternal(b)
        ? "Cancelling withdraws it from the duty officers' board, with your reason."
        : `Cancelling stops all further sending and reminders, and sends a cancellation notice (your reason as its message) to the same ${plural(totalOf(b), "agency", "agencies")} at once, without a second approval.`),
      fields: [{ name: "reason", label: "Why it is cancelled (the agencies will read it)", type: "textarea" }],
      path: (id) => path(id, "cancel"),
      done: (a) => `Cancelled: the cancellation notice is going out as broadcast ${a?.event_id ?? "?"}`,
      failed: "Not cancelled",
    },
  ],
};
