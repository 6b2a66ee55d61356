// Vigil operations console: hostage cases.
//
// Owns: the Hostage cases panel — the summary list for everyone allowed to see it
// (GET /api/v1/hostage-cases: {items, position, next}, no names), and, for a crisis manager only,
// the form that opens a case (POST /api/v1/hostage-cases), the case's details
// (GET /api/v1/hostage-cases/{id}) and its actions: proof of life, negotiation contact,
// release, death, close with an account of every person (POST …/{id}/<action>).
//
// Promises:
// - Every read of a case's details is recorded in the audit log by the server, so the page
//   reads them only when the crisis manager opens the case, presses Reload, or after one of
//   their own actions succeeded — never on a timer, never by itself on page load — and says
//   so next to the list and in the case.
// - Duty officers (and anyone but a crisis manager) see the summary list only: no open
//   button, no form, no details.
// - A death and a closure ask for a confirmation that repeats what will be recorded; any
//   change to the form after that asks again.
// - Every action writes "… · log position N" (or the server's message, data-error="true") on
//   `hostage-result`. The list is read every 10 s and after every action.

import { get, getList, act, positionOf, getSession } from "./api.js";
import {
  $, h, fill, plural, words, fmtUtc, toRfc3339, utcHint, setNow, showResult, showError, bindForm, invalid,
  badge, dl, splitList, countryText, isCountry,
} from "./ui.js";

const LIST_EVERY_MS = 10000;
const MAX_PERSONS = 500;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const PERSON_TEXT = { held: "Held", released: "Released", deceased: "Deceased", other: "Other" };
const ACCOUNT_FOR = { held: "other", released: "released", deceased: "deceased", other: "other" };

let ctx = null;
let shown = false;
let list = [];
let listSeq = 0;
let listLoading = false;
let listTriedAt = 0;
let openId = null;
let kase = null; // the open case's details
let readAt = 0;
let readSeq = 0;
let accountingSig = null;

const result = () => $("hostage-result");
const path = (id, action = "") => `/api/v1/hostage-cases/${encodeURIComponent(id)}${action ? `/${action}` : ""}`;
const isManager = () => ctx.role() === "crisis_manager";
const caseId = (c) => c?.case ?? c?.id ?? null;

function nameOf(person) {
  const p = (kase?.persons || []).find((x) => x.person === person);
  return p?.name ? `${p.name} (${person})` : person;
}

// ---------------------------------------------------------------- list

async function refreshList() {
  const seq = ++listSeq;
  listLoading = true;
  listTriedAt = Date.now();
  const status = $("hostage-filter").value;
  try {
    const data = await getList(`/api/v1/hostage-cases${status ? `?status=${encodeURIComponent(status)}` : ""}`);
    if (seq !== listSeq) return;
    list = data.items;
    showError($("hostage-error"), null);
    renderList();
  } catch (e) {
    if (seq !== listSeq || e.status === 401) return;
    showError($("hostage-error"), `Could not read the hostage cases: ${e.message}`);
  } finally {
    if (seq === listSeq) listLoading = false;
  }
}

function listItem(c) {
  const id = caseId(c);
  const held = Number(c.persons_held) || 0;
  return h(
    "li",
    { class: `item case st-${c.status}${held ? " has-held" : ""}`, "data-testid": "hostage-case", "data-id": id, "data-status": c.status ?? "" },
    h(
      "div",
      { class: `item-body${id === openId ? " current" : ""}` },
      h("span", { class: "item-top" }, h("b", { class: "place" }, countryText(c.country)), badge("case", c.status)),
      h(
        "span",
        { class: "item-line" },
        h("b", { class: held ? "held" : "" }, `${held} of ${c.persons_total ?? "?"} held`),
        ` · ${plural(Number(c.days_held) || 0, "day")} · opened ${fmtUtc(c.opened_at)}`,
      ),
      h("span", { class: "item-line muted mono" }, `incident ${c.incident_id ?? "?"}`),
      isManager()
        ? h(
            "button",
            { type: "button", class: "secondary open-case", "data-testid": "hostage-open", onclick: () => openCase(id) },
            id === openId ? "Reload details (recorded in the audit log)" : "Open case (recorded in the audit log)",
          )
        : null,
    ),
  );
}

function renderList() {
  const ul = $("hostage-list");
  const focused = document.activeElement?.closest?.("#hostage-list [data-id]")?.dataset.id;
  fill(ul, ...list.map(listItem));
  $("hostage-empty").hidden = list.length > 0;
  if (focused) ul.querySelector(`[data-id="${CSS.escape(focused)}"] button`)?.focus();
}

function renderRole() {
  const cm = isManager();
  $("hostage-new").hidden = !cm;
  if (!cm) toggleForm(false);
  $("hostage-audit-note").textContent = cm
    ? "Opening a case is recorded in the audit log (who read it, and when)."
    : "Summaries only, without names: case details are for crisis managers.";
  $("hostage-none").textContent = cm
    ? "Open a case from the list to see its details. Opening a case is recorded in the audit log."
    : "Summaries only: counts and days held, no names.";
}

// ---------------------------------------------------------------- the open case (audited reads)

async function openCase(id) {
  if (!isManager()) return;
  if (id !== openId) {
    openId = id;
    kase = null;
    accountingSig = null;
    $("hostage-detail").hidden = true;
    for (const f of ["pol-form", "negotiation-form", "release-form", "deceased-form", "close-form"]) $(f).reset();
    for (const i of ["pol-at", "neg-at", "rel-at", "dec-at"]) setNow($(i));
    hideConfirms();
    const none = $("hostage-none");
    none.hidden = false;
    none.classList.remove("error");
    none.textContent = "Reading the case (recorded in the audit log)…";
  }
  renderList();
  await readCase();
}

/** One read of the details: recorded in the audit log by the server. */
async function readCase() {
  const id = openId;
  if (!id) return;
  const seq = ++readSeq;
  $("hd-reload").disabled = true;
  try {
    const c = await get(path(id));
    if (seq !== readSeq || id !== openId) return;
    kase = c;
    readAt = Date.now();
    $("hostage-none").hidden = true;
    $("hostage-detail").hidden = false;
    render();
  } catch (e) {
    if (seq !== readSeq || id !== openId || e.status === 401) return;
    if (!kase) {
      const none = $("hostage-none");
      none.hidden = false;
      none.classList.add("error");
      none.textContent = `Could not read the case: ${e.message}`;
    } else {
      showResult(result(), { error: `Could not reload the case: ${e.message}` });
    }
  } finally {
    if (seq === readSeq) $("hd-reload").disabled = false;
  }
}

function closeView() {
  openId = null;
  kase = null;
  readSeq += 1;
  $("hostage-detail").hidden = true;
  const none = $("hostage-none");
  none.hidden = false;
  none.classList.remove("error");
  renderRole();
  renderList();
}

function render() {
  const c = kase;
  const persons = Array.isArray(c.persons) ? c.persons : [];
  const open = c.status === "open" || c.status == null;
  $("hd-title").textContent = `Hostage case · ${countryText(c.country)}`;
  const st = $("hd-status");
  st.className = `badge case-${c.status ?? "none"}`;
  st.textContent = words(c.status ?? "unknown");
  st.dataset.status = c.status ?? "";
  renderRead();

  const held = Number.isFinite(c.persons_held) ? c.persons_held : persons.filter((p) => p.status === "held").length;
  const loc = c.location && Number.isFinite(c.location.lat)
    ? `${c.location.lat.toFixed(4)}, ${c.location.lon.toFixed(4)}${c.location.accuracy_m != null ? ` ± ${Math.round(c.location.accuracy_m)} m` : ""}`
    : null;
  fill($("hd-meta"),
    dl([
      ["Held now", `${held} of ${persons.length}`],
      ["Days held", c.days_held != null ? String(c.days_held) : null],
      ["Captors", c.captors ?? "unknown"],
      ["Believed held at", loc],
      ["Opened", [c.opened_by ? `by ${c.opened_by}` : null, c.opened_at ? fmtUtc(c.opened_at) : null, c.opened_position != null ? `log position ${c.opened_position}` : null].filter(Boolean).join(" · ")],
      ["Closed", c.closed_at ? fmtUtc(c.closed_at) : null],
      ["Outcome", c.outcome],
      ["Incident", c.incident_id],
      ["Case id", caseId(c)],
    ]),
  );

  fill($("hd-persons"),
    ...persons.map((p) =>
      h(
        "tr",
        { "data-testid": "hostage-person", "data-person": p.person, "data-status": p.status ?? "", class: `st-${p.status}` },
        h("td", { class: p.name ? "" : "unknown" }, p.name || "(not in the register)"),
        h("td", { class: "mono" }, p.person),
        h("td", null, badge("person", p.status, PERSON_TEXT[p.status] || words(p.status))),
        h("td", null, p.at ? fmtUtc(p.at) : "—"),
        h("td", null, p.last_proof_of_life ? fmtUtc(p.last_proof_of_life) : "none"),
      ),
    ),
  );

  const acc = Array.isArray(c.accounting) ? c.accounting : [];
  fill($("hd-accounting"),
    acc.length
      ? h("div", null, h("h3", null, "Account at closure"),
          h("ul", { class: "names" }, acc.map((a) => h("li", null, `${nameOf(a.person)}: ${words(a.status)}${a.note ? ` — ${a.note}` : ""}`))))
      : "",
  );

  const log = [
    ...(Array.isArray(c.proofs) ? c.proofs : []).map((p) => ({
      at: p.at, kind: "Proof of life", text: `${nameOf(p.person)}: ${p.note ?? ""}`, by: p.by, cls: "pol",
    })),
    ...(Array.isArray(c.contacts) ? c.contacts : []).map((x) => ({
      at: x.at, kind: "Negotiation contact", text: x.summary ?? "", by: x.by, cls: "neg",
    })),
  ].sort((a, b) => (Date.parse(b.at) || 0) - (Date.parse(a.at) || 0));
  fill($("hd-log"),
    ...(log.length
      ? log.map((l) =>
          h("li", { class: `log-${l.cls}` }, h("b", null, `${fmtUtc(l.at)} · ${l.kind}`), " ", l.text, l.by ? h("small", { class: "by" }, ` (by ${l.by})`) : null))
      : [h("li", { class: "hint" }, "No proof of life or contact logged yet.")]),
  );

  $("hd-actions").hidden = !open;
  if (!open) hideConfirms();
  const stillHeld = persons.filter((p) => p.status === "held" || p.status == null);
  for (const id of ["pol-person", "rel-person", "dec-person"]) fillPersons($(id), stillHeld);
  for (const f of ["pol-form", "release-form", "deceased-form"]) {
    const form = $(f);
    const none = stillHeld.length === 0;
    for (const b of form.querySelectorAll("button[type=submit]")) b.disabled = none;
    form.classList.toggle("off", none);
  }
  renderAccounting(persons);
}

function renderRead() {
  if (!kase) return;
  const secs = Math.max(0, Math.round((Date.now() - readAt) / 1000));
  const age = secs < 120 ? `${secs} s` : `${Math.round(secs / 60)} min`;
  const el = $("hd-read");
  el.textContent = `Details read ${age} ago (not refreshed by themselves: press Reload) · version ${kase.version ?? "?"}`;
  el.classList.toggle("stale", secs > 300);
}

function fillPersons(select, persons) {
  const keep = select.value;
  fill(select,
    h("option", { value: "" }, persons.length ? "Choose…" : "Nobody is held"),
    ...persons.map((p) => h("option", { value: p.person }, p.name ? `${p.name} (${p.person})` : p.person)),
  );
  if (persons.some((p) => p.person === keep)) select.value = keep;
  else if (persons.length === 1) select.value = persons[0].person;
}

/** The closing account, one row per person; kept as typed while the persons do not change. */
function renderAccounting(persons) {
  const sig = JSON.stringify(persons.map((p) => [p.person, p.status]));
  if (sig === accountingSig) return;
  accountingSig = sig;
  fill($("close-accounting"),
    ...persons.map((p) => {
      const sel = h(
        "select",
        { "data-testid": "accounting-status", "aria-label": `Outcome for ${p.name || p.person}` },
        h("option", { value: "released" }, "Released"),
        h("option", { value: "deceased" }, "Deceased"),
        h("option", { value: "other" }, "Other (note needed)"),
      );
      sel.value = ACCOUNT_FOR[p.status] || "other";
      const note = h("input", { "data-testid": "accounting-note", maxLength: 2000, "aria-label": `Note for ${p.name || p.person}` });
      return h(
        "tr",
        { "data-testid": "accounting-row", "data-person": p.person },
        h("td", null, p.name ? `${p.name} (${p.person})` : p.person, h("br"), h("small", null, `recorded: ${PERSON_TEXT[p.status] || p.status}`)),
        h("td", null, sel),
        h("td", null, note),
      );
    }),
  );
}

// ---------------------------------------------------------------- actions

async function run(action, fields, done, form) {
  const id = openId;
  if (!id) return false;
  try {
    const a = await act(path(id, action), fields, `${action}:${id}`);
    const pos = positionOf(a);
    showResult(result(), { ok: `${done} · log position ${pos}`, position: pos });
    if (form) {
      form.reset();
      for (const i of form.querySelectorAll("input[type=datetime-local]")) setNow(i);
    }
    refreshList();
    await readCase(); // audited: only after a change the crisis manager made
    return true;
  } catch (e) {
    if (e.status !== 401) showResult(result(), { error: e.message });
    return false;
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

function atOf(id, what) {
  const at = toRfc3339($(id).value);
  return need($(id), Boolean(at), `${what}: set the date and time.`) ? at : null;
}

function proofOfLife() {
  const person = $("pol-person").value;
  if (!need($("pol-person"), Boolean(person), "Proof of life: choose the person.")) return undefined;
  const at = atOf("pol-at", "Proof of life");
  if (!at) return undefined;
  const note = $("pol-note").value.trim();
  if (!need($("pol-note"), Boolean(note), "Proof of life: say what the proof is (video, call, third party…).")) return undefined;
  return run("proof-of-life", { person, at, note }, `Proof of life recorded for ${nameOf(person)}`, $("pol-form"));
}

function negotiation() {
  const at = atOf("neg-at", "Negotiation contact");
  if (!at) return undefined;
  const summary = $("neg-summary").value.trim();
  if (!need($("neg-summary"), Boolean(summary), "Negotiation contact: write a summary.")) return undefined;
  return run("negotiation", { at, summary }, "Negotiation contact logged", $("negotiation-form"));
}

function release() {
  const person = $("rel-person").value;
  if (!need($("rel-person"), Boolean(person), "Release: choose the person.")) return undefined;
  const at = atOf("rel-at", "Release");
  if (!at) return undefined;
  return run("release", { person, at }, `Release of ${nameOf(person)} recorded`, $("release-form"));
}

function hideConfirms() {
  $("dec-confirm").hidden = true;
  $("close-confirm").hidden = true;
}

/**
 * A form whose submit first shows `box` with what will be recorded; its confirm button
 * sends. `prepare()` returns {text, send} or null (then it has said what is missing).
 */
function twoStep(form, box, textEl, confirmBtn, prepare) {
  let pending = null;
  let busy = false;
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (busy) return;
    pending = prepare();
    box.hidden = !pending;
    if (!pending) return;
    textEl.textContent = pending.text;
    confirmBtn.focus();
  });
  const drop = () => {
    if (busy) return;
    box.hidden = true;
    pending = null;
  };
  form.addEventListener("input", drop);
  form.addEventListener("change", drop);
  box.querySelector("[data-cancel]").addEventListener("click", drop);
  form.addEventListener("keydown", (e) => {
    if (e.key === "Escape") drop();
  });
  confirmBtn.addEventListener("click", async () => {
    if (busy || !pending) return;
    busy = true;
    const buttons = [...form.querySelectorAll("button")];
    for (const b of buttons) b.disabled = true;
    try {
      await pending.send();
    } finally {
      busy = false;
      for (const b of buttons) b.disabled = false;
      box.hidden = true;
      pending = null;
    }
  });
}

function prepareDeath() {
  const person = $("dec-person").value;
  if (!need($("dec-person"), Boolean(person), "Death: choose the person.")) return null;
  const at = atOf("dec-at", "Death");
  if (!at) return null;
  return {
    text: `Record ${nameOf(person)} as deceased at ${fmtUtc(at)}? A death is recorded once and cannot be undone.`,
    send: () => run("deceased", { person, at }, `Death of ${nameOf(person)} recorded`, $("deceased-form")),
  };
}

function prepareClose() {
  const outcome = $("close-outcome").value.trim();
  const accounting = [];
  let missingNote = null;
  for (const tr of $("close-accounting").querySelectorAll("tr[data-person]")) {
    const status = tr.querySelector("select").value;
    const noteInput = tr.querySelector("input");
    const note = noteInput.value.trim();
    invalid(noteInput, false);
    if (status === "other" && !note && !missingNote) missingNote = { input: noteInput, person: tr.dataset.person };
    const entry = { person: tr.dataset.person, status };
    if (note) entry.note = note;
    accounting.push(entry);
  }
  if (!accounting.length) {
    showResult(result(), { error: "Close: the case has no persons to account for; reload the case." });
    return null;
  }
  if (missingNote) {
    need(missingNote.input, false, `Close: ${nameOf(missingNote.person)} is accounted for as other: add a note (escaped, unaccounted for…).`);
    return null;
  }
  if (!need($("close-outcome"), Boolean(outcome), "Close: say how the case ended.")) return null;
  const counts = {};
  for (const a of accounting) counts[a.status] = (counts[a.status] || 0) + 1;
  const summary = Object.entries(counts).map(([s, n]) => `${n} ${s}`).join(", ");
  return {
    text: `Close the case with an account of ${plural(accounting.length, "person", "people")} (${summary})? A closed case takes no more changes.`,
    send: () => run("close", { outcome, accounting }, "Case closed", null).then((ok) => {
      if (ok) $("close-outcome").value = "";
    }),
  };
}

// ---------------------------------------------------------------- opening a case

function showCountryName() {
  const input = $("h-country");
  const v = input.value.toUpperCase().replace(/[^A-Z]/g, "").slice(0, 2);
  if (v !== input.value) input.value = v;
  $("h-country-name").textContent = v.length < 2 ? "2 letters, e.g. SO" : isCountry(v) ? countryText(v) : "not a country code";
}

function toggleForm(open = $("hostage-form").hidden) {
  $("hostage-form").hidden = !open;
  $("hostage-new").setAttribute("aria-expanded", String(open));
  if (open) {
    const scope = getSession()?.scope;
    if (scope && !$("h-country").value) $("h-country").value = scope;
    showCountryName();
    $("h-incident").focus();
  }
}

async function openNewCase() {
  const errors = [];
  const bad = (id, text) => {
    errors.push(text);
    invalid($(id), true);
  };
  for (const id of ["h-incident", "h-country", "h-persons", "h-captors"]) invalid($(id), false);
  const incident = $("h-incident").value.trim();
  if (!UUID_RE.test(incident)) bad("h-incident", "Incident id: the incident's UUID (from the incident's page or the log).");
  const country = $("h-country").value.trim().toUpperCase();
  if (!isCountry(country)) bad("h-country", "Country: the 2-letter code, e.g. SO.");
  const persons = splitList($("h-persons").value);
  if (!persons.length || persons.length > MAX_PERSONS) bad("h-persons", `Persons held: 1 to ${MAX_PERSONS} person ids, separated by commas or lines.`);
  const captors = $("h-captors").value.trim();
  showError($("hostage-form-error"), errors.length ? errors.join(" ") : null);
  if (errors.length) {
    $("hostage-form").querySelector("[aria-invalid]")?.focus();
    return;
  }
  const fields = { incident_id: incident, country, persons };
  if (captors) fields.captors = captors;
  let a;
  try {
    a = await act("/api/v1/hostage-cases", fields, "open-case");
  } catch (e) {
    if (e.status !== 401) showError($("hostage-form-error"), `Not opened: ${e.message}`);
    return;
  }
  const pos = positionOf(a);
  showResult(result(), {
    ok: `Case opened · log position ${pos} · ${plural(persons.length, "person")} held. Open it from the list to act on it.`,
    position: pos,
  });
  $("hostage-form").reset();
  $("h-persons-count").textContent = "";
  toggleForm(false);
  refreshList();
}

// ---------------------------------------------------------------- section face

export function init(c) {
  ctx = c;
  $("hostage-filter").addEventListener("change", refreshList);
  $("hostage-new").addEventListener("click", () => toggleForm());
  $("hostage-cancel").addEventListener("click", () => toggleForm(false));
  $("h-country").addEventListener("input", showCountryName);
  $("h-persons").addEventListener("input", () => {
    const n = splitList($("h-persons").value).length;
    $("h-persons-count").textContent = n ? plural(n, "person") : "";
  });
  bindForm($("hostage-form"), openNewCase);
  $("hostage-form").addEventListener("input", (e) => invalid(e.target, false));

  $("hd-reload").addEventListener("click", readCase);
  $("hd-close-view").addEventListener("click", closeView);
  for (const [i, hint] of [["pol-at", "pol-at-utc"], ["neg-at", "neg-at-utc"], ["rel-at", "rel-at-utc"], ["dec-at", "dec-at-utc"]]) {
    utcHint($(i), $(hint));
  }
  bindForm($("pol-form"), proofOfLife);
  bindForm($("negotiation-form"), negotiation);
  bindForm($("release-form"), release);
  twoStep($("deceased-form"), $("dec-confirm"), $("dec-confirm-text"), $("deceased-form").querySelector("[data-testid=confirm-deceased]"), prepareDeath);
  twoStep($("close-form"), $("close-confirm"), $("close-confirm-text"), $("close-form").querySelector("[data-testid=confirm-close]"), prepareClose);
  for (const f of ["pol-form", "negotiation-form", "release-form", "deceased-form", "close-form"]) {
    $(f).addEventListener("input", (e) => invalid(e.target, false));
  }
}

export function show() {
  shown = true;
  renderRole();
  refreshList();
}

export function hide() {
  shown = false;
}

export function tick(now, force = false) {
  if (!shown) return;
  if (force || (!listLoading && now - listTriedAt >= LIST_EVERY_MS)) refreshList();
  renderRead();
}

export function focusSearch() {
  return false;
}

export function reset() {
  shown = false;
  list = [];
  listSeq += 1;
  listLoading = false;
  $("hostage-list").replaceChildren();
  closeView();
  showResult(result(), {});
  $("hostage-form").reset();
  $("hostage-form").hidden = true;
}
