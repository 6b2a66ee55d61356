// Vigil operations console: surges (security officers sent to reinforce a duty station).
//
// Owns: the Surges section — the list (GET /api/v1/surges?status=; its `away_from`: officers
// away from their own stations), the open surge (GET /api/v1/surges/{id}), a request (POST
// /api/v1/surges {duty_station, country, reason, officers_needed, assets?}) and the steps:
// approve {}, reject {reason} and cancel {reason} (crisis managers; cancel for a requested or
// approved surge no longer needed, its officers free at once), assign {officer}, deploy {at},
// complete {at} (duty officers and crisis managers).
//
// Promises: nothing the server sends about a surge is hidden — the fields with a place of
// their own are shown by name, every other one under "Other fields".

import { ListDetail, itemPath } from "./controller.js";
import { html, POLICY, COUNTRY_FIELD, Badge, KV, fmtUtc, words, countryText, splitList, anyText } from "./kit.js";

const BASE = "/api/v1/surges";
const path = (id, action) => itemPath(BASE, id, action);
const assigned = (s) => (Number.isFinite(s.officers_assigned) ? s.officers_assigned : (s.officers || []).length);

export const c = new ListDetail({
  name: "surges",
  things: "surges",
  base: BASE,
  sameShape: true,
  filters: { status: "" },
});

function Intro({ c }) {
  // The gap per station, summed over the surges listed (each carries its own `away_from`).
  const total = {};
  for (const s of c.items) for (const [st, n] of Object.entries(s.away_from || {})) total[st] = (total[st] || 0) + n;
  const away = Object.entries(total).filter(([, n]) => n > 0);
  return away.length
    ? html`<p class="gaps" data-testid="surge-gaps">Officers away from their stations (active surges): ${away.map(([st, n]) => `${st} ${n}`).join(", ")}</p>`
    : null;
}

function Row({ item: s }) {
  return html`<span class="item-top"><b class="place">${s.duty_station} · ${s.country}</b><${Badge} kind="surge" status=${s.status} /></span>
    <span class="item-line">${assigned(s)} of ${s.officers_needed} officers · requested ${fmtUtc(s.requested_at)}</span>
    <span class="item-line muted">${s.reason.length > 140 ? `${s.reason.slice(0, 140)}…` : s.reason}</span>`;
}

/** The fields `Detail` shows by name; the rest go under "Other fields". */
const SHOWN = new Set([
  "id", "duty_station", "country", "reason", "officers_needed", "assets", "status", "requested_by", "requested_at",
  "decided_by", "rejected_reason", "cancelled_by", "cancelled_reason", "officers", "officers_assigned",
  "deployed_at", "completed_at",
]);

function Detail({ item: s }) {
  const officers = s.officers || [];
  const rest = Object.entries(s).filter(([k]) => !SHOWN.has(k));
  return html`<h3>Surge to ${s.duty_station} · ${countryText(s.country)}</h3>
    <${KV} pairs=${[
      ["Status", html`<span data-testid="surge-status">${words(s.status)}</span>`],
      ["Officers", `${assigned(s)} assigned of ${s.officers_needed} needed`],
      ["Reason", s.reason],
      ["Assets", s.assets?.length ? s.assets.join(", ") : null],
      ["Requested", `${fmtUtc(s.requested_at)}${s.requested_by ? ` by ${s.requested_by}` : ""}`],
      ["Decided by", s.decided_by],
      ["Rejected because", s.rejected_reason],
      ["Cancelled", s.cancelled_reason ? `by ${s.cancelled_by ?? "?"}: ${s.cancelled_reason}` : null],
      ["Deployed", s.deployed_at ? fmtUtc(s.deployed_at) : null],
      ["Completed", s.completed_at ? fmtUtc(s.completed_at) : null],
      ["Surge id", s.id],
    ]} />
    ${officers.length
      ? html`<table class="officers" data-testid="surge-officers"><thead><tr><th>Officer</th><th>From station</th><th>Assigned at</th></tr></thead>
          <tbody>${officers.map((o) => html`<tr key=${o.officer}><td class="mono">${o.officer}</td><td>${o.from_duty_station}</td><td>${fmtUtc(o.assigned_at)}</td></tr>`)}</tbody></table>`
      : null}
    ${rest.length
      ? html`<details class="more" data-testid="surge-more"><summary>Other fields</summary>
          <div data-testid="surge-fields"><${KV} pairs=${rest.map(([k, v]) => [words(k), anyText(v)])} /></div></details>`
      : null}`;
}

const live = (s) => s.status === "requested" || s.status === "approved";

/** A step of a running surge, recorded with when it happened: "Deployed…", "Completed…". */
const step = (name, what, from, done, failed) => ({
  name,
  label: `${what}…`,
  roles: POLICY.SURGE_RUN,
  when: (s) => s.status === from,
  fields: [{ name: "at", label: `${what} at`, type: "datetime" }],
  path: (id) => path(id, name),
  done,
  failed,
});

export const section = {
  name: "surges",
  prefix: "surge",
  tab: "Surges",
  title: "Surge deployments",
  roles: POLICY.SURGE_READ,
  c,
  Intro,
  Row,
  Detail,
  filters: [{ name: "status", label: "Show", options: [["", "All"], ["requested", "Requested"], ["approved", "Approved"], ["deployed", "Deployed"], ["completed", "Completed"], ["rejected", "Rejected"], ["cancelled", "Cancelled"]] }],
  empty: "No surge with this status.",
  create: {
    name: "request",
    label: "Request a surge…",
    title: "Request a surge",
    roles: POLICY.SURGE_REQUEST,
    fields: [
      { name: "duty_station", label: "Duty station", need: "its code, e.g. SOM-MGQ" },
      COUNTRY_FIELD,
      { name: "officers_needed", label: "Officers needed", type: "number", min: 1, max: 200 },
      { name: "reason", label: "Why the station needs help", type: "textarea" },
      { name: "assets", label: "Assets (comma separated)", optional: true },
    ],
    body: (v) => ({ ...v, assets: splitList(v.assets) }),
    done: "Surge requested",
    failed: "Not requested",
  },
  actions: [
    {
      name: "approve",
      label: "Approve",
      primary: true,
      roles: POLICY.SURGE_DECIDE,
      when: (s) => s.status === "requested",
      path: (id) => path(id, "approve"),
      done: "Approved",
      failed: "Not approved",
    },
    {
      name: "reject",
      label: "Reject…",
      roles: POLICY.SURGE_DECIDE,
      when: (s) => s.status === "requested",
      fields: [{ name: "reason", label: "Why it is rejected", type: "textarea" }],
      path: (id) => path(id, "reject"),
      done: "Rejected",
      failed: "Not rejected",
    },
    {
      name: "assign",
      label: "Assign an officer…",
      roles: POLICY.SURGE_RUN,
      when: (s) => s.status === "approved" || s.status === "deployed",
      fields: [{ name: "officer", label: "Officer (personnel id)", need: "a registered security officer's id" }],
      path: (id) => path(id, "assign"),
      done: (a, f) => `Assigned ${f.officer}`,
      failed: "Not assigned",
    },
    step("deploy", "Deployed", "approved", "Deployed", "Not deployed"),
    step("complete", "Completed", "deployed", "Completed: its officers are free again", "Not completed"),
    {
      name: "cancel",
      label: "Cancel…",
      danger: true,
      roles: POLICY.SURGE_DECIDE,
      when: live,
      explain: "For a surge no longer needed: its officers are free at once.",
      fields: [{ name: "reason", label: "Why it is cancelled", type: "textarea" }],
      confirm: (s) => `Cancel the surge to ${s.duty_station}? ${assigned(s) ? `Its ${assigned(s)} assigned officers are freed.` : "Nobody is assigned yet."}`,
      path: (id) => path(id, "cancel"),
      done: "Cancelled: its officers are free",
      failed: "Not cancelled",
    },
  ],
};
