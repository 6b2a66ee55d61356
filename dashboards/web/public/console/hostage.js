// Vigil operations console: hostage cases.
//
// Owns: the Hostage cases section — the summary list for everyone allowed to see it
// (GET /api/v1/hostage-cases: no names; held · released · deceased per case), and, for a
// crisis manager only, the form that opens a case (POST /api/v1/hostage-cases), the case's
// details (GET /api/v1/hostage-cases/{id}) and its actions (POST …/{id}/<action>): proof of
// life, negotiation contact, release, death, close with an account of every person (one row,
// outcome and note per person still held: escaped, unaccounted for…), and in
// bulk, all or nothing, release-many {persons, at} and proof-of-life-many {persons, at, note}
// of the persons ticked in the case.
//
// Promises:
// - Every read of a case's details is recorded in the audit log by the server, so the page
//   reads them only when a crisis manager opens the case, presses Reload, or after one of
//   their own actions — never on a timer, never by itself when the page loads — and says so.
// - Anyone but a crisis manager sees the counts only: the open case shows the summary.
// - A death and a closure ask for a confirmation that repeats what will be recorded.

import { ListDetail, itemPath } from "./controller.js";
import { html, POLICY, COUNTRY_FIELD, Badge, KV, fmtUtc, words, countryText, may, plural, num } from "./kit.js";

const BASE = "/api/v1/hostage-cases";
const path = (id, action) => itemPath(BASE, id, action);
const PERSON_TEXT = { held: "Held", released: "Released", deceased: "Deceased", other: "Other" };
const isOpen = (k) => k.status === "open";
const persons = (k) => (Array.isArray(k.persons) ? k.persons : []);
const held = (k) => persons(k).filter((p) => p.status === "held");
const nameOf = (p) => (p.name ? `${p.name} (${p.person})` : p.person);
const heldOptions = (k) => [["", "Choose…"], ...held(k).map((p) => [p.person, nameOf(p)])];
const count = (k, status) => persons(k).filter((p) => p.status === status).length;

export const c = new ListDetail({
  name: "hostage",
  things: "hostage cases",
  base: BASE,
  idOf: (x) => x?.case ?? x?.id,
  readDetail: () => may(POLICY.HOSTAGE_DETAILS),
  // Each read is audited: only when asked.
  detailEveryMs: 0,
  readOnShow: false,
});

/** "N held · M released · K deceased", large enough to read from across a room. */
export function Counts({ held: h, released: r, deceased: d }) {
  return html`<span class="hostage-counts" data-testid="hostage-counts" data-held=${h} data-released=${r} data-deceased=${d}>
    <span class="held"><b>${h}</b> held</span> · <span class="released"><b>${r}</b> released</span> · <span class="deceased"><b>${d}</b> deceased</span></span>`;
}

/** The counts of a summary (the list) or of the details (a crisis manager's read). */
const countsOf = (k) =>
  Array.isArray(k.persons)
    ? { held: count(k, "held"), released: count(k, "released"), deceased: count(k, "deceased") }
    : { held: num(k.persons_held), released: num(k.persons_released), deceased: num(k.persons_deceased) };

function Row({ item: k }) {
  return html`<span class="item-top"><b class="place">${countryText(k.country)}</b><${Badge} kind="case" status=${k.status} /></span>
    <span class="item-line"><${Counts} ...${countsOf(k)} /> of ${k.persons_total ?? persons(k).length}</span>
    <span class="item-line muted">opened ${fmtUtc(k.opened_at)} · ${plural(num(k.days_held), "day")} held</span>`;
}

function Persons({ c, k }) {
  const manage = may(POLICY.HOSTAGE_MANAGE) && isOpen(k);
  const heldNow = held(k).map((p) => p.person);
  return html`<table class="persons" data-testid="hostage-persons">
    <thead><tr>
      <th>${manage
        ? html`<input type="checkbox" aria-label="Tick everyone still held" data-testid="hostage-select-all"
            checked=${heldNow.length > 0 && heldNow.every((p) => c.selection.has(p))}
            onChange=${(e) => c.selectOnly(e.target.checked ? heldNow : [])} />`
        : null}</th>
      <th>Person</th><th>Status</th><th>Last proof of life</th></tr></thead>
    <tbody>${persons(k).map((p) => html`<tr key=${p.person} data-testid="hostage-person" data-person=${p.person} data-status=${p.status}>
      <td>${manage && p.status === "held"
        ? html`<input type="checkbox" data-testid="hostage-person-select" aria-label=${`Tick ${nameOf(p)}`}
            checked=${c.selection.has(p.person)} onChange=${() => c.toggle(p.person)} />`
        : null}</td>
      <td>${nameOf(p)}</td>
      <td><${Badge} kind="person" status=${p.status} text=${`${PERSON_TEXT[p.status] ?? words(p.status)}${p.at ? ` ${fmtUtc(p.at)}` : ""}`} /></td>
      <td>${p.last_proof_of_life ? fmtUtc(p.last_proof_of_life) : "—"}</td></tr>`)}</tbody></table>`;
}

function Detail({ c, item: k }) {
  const details = Array.isArray(k.persons);
  return html`<h3>Hostage case · ${countryText(k.country)}</h3>
    <p class="big-counts"><${Counts} ...${countsOf(k)} /></p>
    ${details
      ? html`<p class="audit">Your read of this case is recorded in the audit log; it is read again only when you open it, press Reload or act on it.
          <button type="button" class="secondary small" data-testid="hostage-reload" disabled=${c.detailLoading}
            onClick=${() => c.refreshDetail()}>${c.detailLoading ? "Reading…" : "Reload (recorded)"}</button></p>`
      : html`<p class="hint">Counts only: the details of a case are for crisis managers.</p>`}
    <${KV} pairs=${[
      ["Status", html`<span data-testid="hostage-status">${words(k.status)}</span>`],
      ["Opened", `${fmtUtc(k.opened_at)}${k.opened_by ? ` by ${k.opened_by}` : ""}`],
      ["Days held", String(num(k.days_held))],
      ["Captors", k.captors],
      ["Outcome", k.outcome],
      ["Account at closure", Array.isArray(k.accounting) && k.accounting.length
        ? html`<ul class="names" data-testid="hostage-accounting">${k.accounting.map((a) => html`<li key=${a.person} data-person=${a.person} data-status=${a.status}>
            ${nameOf(persons(k).find((p) => p.person === a.person) ?? { person: a.person })}: ${words(a.status)}${a.note ? ` — ${a.note}` : ""}</li>`)}</ul>`
        : null],
      ["Incident", k.incident_id],
      ["Case id", k.case ?? k.id],
    ]} />
    ${details ? html`<${Persons} c=${c} k=${k} />` : null}
    ${details && k.contacts?.length
      ? html`<h4>Negotiation contacts</h4><ul>${k.contacts.map((x, i) => html`<li key=${i}>${fmtUtc(x.at)}: ${x.summary}</li>`)}</ul>`
      : null}`;
}

/** What may have become of a person still held when the case closes (all recorded as "other"). */
const FATES = [["", "Choose…"], ["Escaped", "Escaped"], ["Unaccounted for", "Unaccounted for"], ["Other", "Other (say what)"]];
const fateId = (p) => `hostage-close-fate-${p}`;
const noteId = (p) => `hostage-close-note-${p}`;

/** The closing account's rows: one per person still held, with its outcome and note. */
function Accounting({ c, form, item: k }) {
  const still = held(k);
  if (!still.length) return html`<p class="hint">Nobody is held any more: everyone is accounted for as recorded.</p>`;
  const on = (name) => (e) => c.set(form, name, e.target.value);
  return html`<table class="accounting" data-testid="hostage-accounting-rows">
    <thead><tr><th>Still held</th><th>What became of them</th><th>Note</th></tr></thead>
    <tbody>${still.map((p) => html`<tr key=${p.person} data-testid="hostage-account-row" data-person=${p.person}>
      <td>${nameOf(p)}</td>
      <td><select id=${fateId(p.person)} data-testid="hostage-account-fate" aria-label=${`What became of ${nameOf(p)}`}
        value=${c.val(form, `fate:${p.person}`)} onChange=${on(`fate:${p.person}`)} onInput=${on(`fate:${p.person}`)}>
        ${FATES.map(([v, t]) => html`<option key=${v} value=${v}>${t}</option>`)}</select></td>
      <td><input id=${noteId(p.person)} data-testid="hostage-account-note" maxlength="2000" aria-label=${`Note for ${nameOf(p)}`}
        value=${c.val(form, `note:${p.person}`)} onInput=${on(`note:${p.person}`)} onChange=${on(`note:${p.person}`)} /></td>
    </tr>`)}</tbody></table>`;
}

/** The closing account: as recorded for the released and the dead, as written for the rest. */
function accounting(c, k) {
  const form = `close:${k.case ?? k.id}`;
  const bad = [];
  const out = persons(k).map((p) => {
    if (p.status !== "held") return { person: p.person, status: p.status };
    const fate = String(c.val(form, `fate:${p.person}`)).trim();
    const note = String(c.val(form, `note:${p.person}`)).trim();
    if (!fate) bad.push(`${nameOf(p)}: choose what became of them.`);
    else if (fate === "Other" && !note) bad.push(`${nameOf(p)}: say what became of them in the note.`);
    return { person: p.person, status: "other", note: fate === "Other" ? note : note ? `${fate}: ${note}` : fate };
  });
  if (bad.length) throw new Error(bad.join(" "));
  return out;
}

const manage = { roles: POLICY.HOSTAGE_MANAGE, when: (k) => Array.isArray(k.persons) && isOpen(k) };

export const section = {
  name: "hostage",
  prefix: "hostage",
  tab: "Hostage cases",
  title: "Hostage cases",
  roles: POLICY.HOSTAGE_SUMMARY,
  c,
  Row,
  Detail,
  rowProps: (k) => ({ class: `case st-${k.status}`, data: { "data-status": k.status } }),
  empty: "No hostage case.",
  choose: "Choose a case on the left. Crisis managers see its details (each read is audited); everyone else sees the counts.",
  create: {
    name: "open",
    label: "Open a case…",
    title: "Open a hostage case",
    roles: POLICY.HOSTAGE_MANAGE,
    fields: [
      { name: "incident_id", label: "Incident id", need: "the id of the incident it arose from" },
      COUNTRY_FIELD,
      { name: "persons", label: "Persons held (personnel ids)", type: "list", need: "at least one personnel id" },
      { name: "captors", label: "Captors", optional: true },
    ],
    done: "Case opened",
    failed: "Not opened",
  },
  actions: [
    {
      ...manage,
      name: "release-many",
      label: "Release the ticked persons…",
      bulk: true,
      noneSelected: "Nobody is ticked: tick the persons released in the case's list.",
      fields: [{ name: "at", label: "Released at", type: "datetime" }],
      path: (id) => path(id, "release-many"),
      done: (a, f) => `Release of ${plural(f.persons.length, "person")} recorded`,
      failed: "Nobody released",
    },
    {
      ...manage,
      name: "proof-of-life-many",
      label: "Proof of life of the ticked persons…",
      bulk: true,
      noneSelected: "Nobody is ticked: tick the persons the proof shows alive.",
      fields: [
        { name: "at", label: "The proof shows them alive at", type: "datetime" },
        { name: "note", label: "What the proof is", need: "say what it is, e.g. a video" },
      ],
      path: (id) => path(id, "proof-of-life-many"),
      done: (a, f) => `Proof of life recorded for ${plural(f.persons.length, "person")}`,
      failed: "No proof of life recorded",
    },
    {
      ...manage,
      name: "proof-of-life",
      label: "Proof of life…",
      fields: [
        { name: "person", label: "Person", type: "select", options: heldOptions, need: "choose who" },
        { name: "at", label: "Alive at", type: "datetime" },
        { name: "note", label: "What the proof is" },
      ],
      path: (id) => path(id, "proof-of-life"),
      done: "Proof of life recorded",
      failed: "No proof of life recorded",
    },
    {
      ...manage,
      name: "negotiation",
      label: "Negotiation contact…",
      fields: [
        { name: "at", label: "At", type: "datetime" },
        { name: "summary", label: "Summary", type: "textarea" },
      ],
      path: (id) => path(id, "negotiation"),
      done: "Negotiation contact logged",
      failed: "Not logged",
    },
    {
      ...manage,
      name: "release",
      label: "Release…",
      fields: [
        { name: "person", label: "Person", type: "select", options: heldOptions, need: "choose who" },
        { name: "at", label: "Released at", type: "datetime" },
      ],
      path: (id) => path(id, "release"),
      done: "Release recorded",
      failed: "Release not recorded",
    },
    {
      ...manage,
      name: "deceased",
      label: "Death…",
      danger: true,
      fields: [
        { name: "person", label: "Person", type: "select", options: heldOptions, need: "choose who" },
        { name: "at", label: "Died at", type: "datetime" },
      ],
      confirm: (k) => `Record the death of ${c.val(`deceased:${k.id}`, "person")}? A death is recorded once and cannot be undone.`,
      path: (id) => path(id, "deceased"),
      done: "Death recorded",
      failed: "Death not recorded",
    },
    {
      ...manage,
      name: "close",
      label: "Close the case…",
      danger: true,
      explain: (k) => `The released and the dead are accounted for as recorded; say for each of the ${plural(held(k).length, "person")} still held what became of them.`,
      fields: [{ name: "outcome", label: "How the case ended", type: "textarea" }],
      Extra: Accounting,
      body: (v, k, c) => ({ outcome: v.outcome, accounting: accounting(c, k) }),
      confirm: (k) => {
        const fates = held(k).map((p) => `${nameOf(p)}: ${c.val(`close:${k.case ?? k.id}`, `fate:${p.person}`) || "?"}`);
        return `Close the case: ${count(k, "released")} released, ${count(k, "deceased")} deceased${fates.length ? `, ${fates.join("; ")}` : ""}? A closed case takes no more changes.`;
      },
      path: (id) => path(id, "close"),
      done: "Case closed",
      failed: "Not closed",
    },
  ],
};
