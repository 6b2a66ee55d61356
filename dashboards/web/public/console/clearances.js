// Vigil operations console: travel clearances (who may travel where, and who arrived).
//
// Owns: the Clearances section — the list (GET /api/v1/clearances?status=), the open
// clearance (GET /api/v1/clearances/{id}), a request (POST /api/v1/clearances {traveller,
// itinerary: [{country, area?, from, to}], purpose?}) and the steps approve {} and refuse
// {reason} (duty officers and field officers), arrive and depart {country, at}
// (POST /api/v1/clearances/{id}/<action>). The decider is the login: the body never names one.

import { ListDetail, itemPath } from "./controller.js";
import { html, POLICY, COUNTRY_FIELD, Badge, KV, fmtUtc, words, countryText } from "./kit.js";

const BASE = "/api/v1/clearances";
const path = (id, action) => itemPath(BASE, id, action);
const legText = (l) => `${countryText(l.country)}${l.area ? ` (${l.area})` : ""} ${l.from} → ${l.to}`;
const countriesOf = (c) => [...new Set((c.itinerary || []).map((l) => l.country))];

export const c = new ListDetail({
  name: "clearances",
  things: "clearances",
  base: BASE,
  sameShape: true,
  filters: { status: "" },
});

function Row({ item: x }) {
  return html`<span class="item-top"><b class="place" data-testid="clearance-traveller">${x.traveller}</b>
      <${Badge} kind="clearance" status=${x.status} /></span>
    <span class="item-line">${(x.itinerary || []).map(legText).join("; ")}</span>
    <span class="item-line muted">requested ${fmtUtc(x.requested_at)}${x.requested_by ? ` by ${x.requested_by}` : ""}</span>`;
}

function Detail({ item: x }) {
  return html`<h3>Clearance for ${x.traveller}</h3>
    <${KV} pairs=${[
      ["Status", html`<span data-testid="clearance-status">${words(x.status)}</span>`],
      ["Itinerary", (x.itinerary || []).map(legText).join("; ")],
      ["Purpose", x.purpose],
      ["Requested", `${fmtUtc(x.requested_at)}${x.requested_by ? ` by ${x.requested_by}` : ""} (log position ${x.requested_position})`],
      ["Decided by", x.decided_by],
      ["Refused because", x.refusal_reason],
      ["Movements", x.movements?.length ? x.movements.map((m) => `${words(m.kind)} ${m.country} ${fmtUtc(m.at)}`).join("; ") : "none recorded"],
      ["Clearance id", x.id],
    ]} />`;
}

const movement = (name, label, done) => ({
  name,
  label,
  roles: POLICY.CLEARANCE_MOVEMENT,
  when: (x) => x.status === "approved",
  fields: [
    { name: "country", label: "Country", type: "select", init: (x) => countriesOf(x)[0] ?? "", options: (x) => countriesOf(x).map((cc) => [cc, countryText(cc)]) },
    { name: "at", label: "At", type: "datetime" },
  ],
  path: (id) => path(id, name),
  done,
  failed: `${done.split(" ")[0]} not recorded`,
});

const arrive = movement("arrive", "Record arrival…", "Arrival recorded");
const depart = movement("depart", "Record departure…", "Departure recorded");

export const section = {
  name: "clearances",
  prefix: "clearance",
  tab: "Clearances",
  title: "Travel clearances",
  roles: POLICY.CLEARANCE_READ,
  c,
  Row,
  Detail,
  filters: [{ name: "status", label: "Show", options: [["", "All"], ["requested", "Requested"], ["approved", "Approved"], ["refused", "Refused"]] }],
  empty: "No clearance with this status.",
  create: {
    name: "request",
    label: "Request a clearance…",
    title: "Request a travel clearance",
    roles: POLICY.CLEARANCE_REQUEST,
    fields: [
      { name: "traveller", label: "Traveller (personnel id)", need: "the registered person's id, e.g. P-0001" },
      COUNTRY_FIELD,
      { name: "area", label: "Area", optional: true },
      { name: "from", label: "From", type: "date" },
      { name: "to", label: "To", type: "date" },
      { name: "purpose", label: "Purpose", optional: true },
    ],
    body: (v) => {
      const leg = { country: v.country, from: v.from, to: v.to };
      if (v.area) leg.area = v.area;
      const body = { traveller: v.traveller, itinerary: [leg] };
      if (v.purpose) body.purpose = v.purpose;
      return body;
    },
    done: "Clearance requested",
    failed: "Not requested",
  },
  actions: [
    {
      name: "approve",
      label: "Approve",
      primary: true,
      inRow: true,
      roles: POLICY.CLEARANCE_DECIDE,
      when: (x) => x.status === "requested",
      path: (id) => path(id, "approve"),
      done: "Approved",
      failed: "Not approved",
    },
    {
      name: "refuse",
      label: "Refuse…",
      danger: true,
      roles: POLICY.CLEARANCE_DECIDE,
      when: (x) => x.status === "requested",
      fields: [{ name: "reason", label: "Why it is refused", type: "textarea" }],
      path: (id) => path(id, "refuse"),
      done: "Refused",
      failed: "Not refused",
    },
    arrive,
    depart,
  ],
};

