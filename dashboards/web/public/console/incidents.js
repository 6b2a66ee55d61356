// Vigil operations console: incidents (flash reports from the field, and the duty officers'
// steps on them).
//
// Owns: the Incidents section — the list (GET /api/v1/incidents?status=), the open incident
// (GET /api/v1/incidents/{id}), a flash report (POST /api/v1/incidents) and the transitions
// verify {note?} (duty officers), escalate {to: {kind, id}, reason} and close {reason} (duty
// officers and crisis managers), update {note} (POST /api/v1/incidents/{id}/<action>).

import { ListDetail, itemPath } from "./controller.js";
import { html, POLICY, COUNTRY_FIELD, Badge, KV, fmtUtc, words, countryText } from "./kit.js";

const BASE = "/api/v1/incidents";
const path = (id, action) => itemPath(BASE, id, action);
const CATEGORIES = ["armed_conflict", "terrorism", "crime", "civil_unrest", "hazard", "road_traffic", "other"];
const ESCALATE_TO = [["hostage_case", "Hostage case"], ["surge", "Surge"], ["relocation_order", "Relocation order"]];
const open = (i) => i.status !== "closed";

export const c = new ListDetail({
  name: "incidents",
  things: "incidents",
  base: BASE,
  sameShape: true,
  filters: { status: "open" },
});

function Row({ item: i }) {
  return html`
    <span class="item-top">
      <b class="place" data-testid="incident-title">${i.title}</b>
      <${Badge} kind="incident" status=${i.status} />
    </span>
    <span class="item-line">Severity ${i.severity} · ${words(i.category)} · ${countryText(i.country)}</span>
    <span class="item-line muted">${fmtUtc(i.occurred_at)} · reported by ${i.reporter}</span>`;
}

function Detail({ item: i }) {
  return html`<h3 data-testid="incident-detail-title">${i.title}</h3>
    <${KV} pairs=${[
      ["Status", html`<span data-testid="incident-status">${words(i.status)}</span>`],
      ["Severity", `${i.severity} of 5`],
      ["Category", words(i.category)],
      ["Country", countryText(i.country)],
      ["Duty station", i.duty_station],
      ["Occurred", fmtUtc(i.occurred_at)],
      ["Reported", `${fmtUtc(i.reported_at)} by ${i.reporter} (log position ${i.reported_position})`],
      ["Casualties", i.casualties ? `${i.casualties.killed} killed, ${i.casualties.injured} injured` : null],
      ["Verified by", i.verified_by],
      ["Escalated to", i.escalations?.length ? html`<span data-testid="incident-escalations">${i.escalations.map((e) => `${words(e.kind)} ${e.id}`).join("; ")}</span>` : null],
      ["Closed because", i.closed_reason],
      ["What happened", i.description],
      ["Incident id", i.id],
    ]} />`;
}

export const section = {
  name: "incidents",
  prefix: "incident",
  tab: "Incidents",
  title: "Incidents",
  roles: POLICY.INCIDENT_READ,
  c,
  Row,
  Detail,
  rowProps: (i) => ({ class: `st-${i.status}`, data: { "data-status": i.status, "data-severity": i.severity } }),
  filters: [{ name: "status", label: "Show", options: [["open", "Open"], ["reported", "Not verified"], ["verified", "Verified"], ["closed", "Closed"], ["", "All"]] }],
  empty: "No incident with this status.",
  create: {
    name: "report",
    label: "Report an incident…",
    title: "Flash report",
    roles: POLICY.INCIDENT_REPORT,
    fields: [
      { name: "title", label: "Title", need: "one line saying what happened" },
      COUNTRY_FIELD,
      { name: "category", label: "Category", type: "select", options: [["", "Choose…"], ...CATEGORIES.map((k) => [k, words(k)])], need: "choose one" },
      { name: "severity", label: "Severity (1 to 5)", type: "number", min: 1, max: 5 },
      { name: "occurred_at", label: "Occurred at", type: "datetime" },
      { name: "duty_station", label: "Duty station", optional: true },
      { name: "description", label: "What happened", type: "textarea", optional: true },
    ],
    // The body is the fields; api.js `act` gives it its id: the incident's id, and the key of
    // a safe resend.
    done: "Incident reported",
    failed: "Not reported",
  },
  actions: [
    {
      name: "verify",
      label: "Verify…",
      primary: true,
      roles: POLICY.INCIDENT_VERIFY,
      when: (i) => i.status === "reported",
      fields: [{ name: "note", label: "How it was verified", optional: true }],
      path: (id) => path(id, "verify"),
      done: "Verified",
      failed: "Not verified",
    },
    {
      name: "update",
      label: "Add a note…",
      roles: POLICY.INCIDENT_UPDATE,
      when: open,
      fields: [{ name: "note", label: "Note", type: "textarea" }],
      path: (id) => path(id, "updates"),
      done: "Note added",
      failed: "Note not added",
    },
    {
      name: "escalate",
      label: "Escalate…",
      roles: POLICY.INCIDENT_ESCALATE,
      when: open,
      explain: "Link the incident to the hostage case, surge or relocation order it led to (its id).",
      fields: [
        { name: "kind", label: "Into", type: "select", options: [["", "Choose…"], ...ESCALATE_TO], need: "choose what it became" },
        { name: "target", label: "Its id", need: "the id of the case, surge or order" },
        { name: "reason", label: "Why", type: "textarea" },
      ],
      body: (v) => ({ to: { kind: v.kind, id: v.target }, reason: v.reason }),
      path: (id) => path(id, "escalate"),
      done: "Escalated",
      failed: "Not escalated",
    },
    {
      name: "close",
      label: "Close…",
      danger: true,
      roles: POLICY.INCIDENT_CLOSE,
      when: open,
      fields: [{ name: "reason", label: "Why it is closed", type: "textarea" }],
      confirm: (i) => `Close “${i.title}”? A closed incident takes no more changes.`,
      path: (id) => path(id, "close"),
      done: "Closed",
      failed: "Not closed",
    },
  ],
};
