// Vigil field page: the report form, and what the officer does with a refused report.
//
// Promises:
// - Saved before sent: a report is written to the outbox, in a committed transaction, before
//   the form clears, before "Saved on this phone" shows and before any network attempt.
// - The body is built once (`readForm`), with a new client UUID as "id", and stored as is:
//   the queue sends exactly that on every attempt.
// - The page checks what the server checks, with a message per field that says what to do;
//   the server is the judge.
// - A refused report is never retried by itself: Edit and resend puts its fields back in the
//   form, and saving makes a new report (new id) and removes the refused one; Dismiss deletes
//   it from the phone.

import { $, h } from "./dom.js";
import { db, store } from "./outbox.js";
import { PREFS_KEY, session, loadJson, saveJson } from "./session.js";
import { uuid } from "./net.js";
import { flush } from "./queue.js";
import { changed } from "./render.js";

const MAX_TITLE = 200;
const MAX_DESCRIPTION = 10000;
const MAX_ID = 64;
const MAX_ACCURACY_M = 100000;
const MAX_U32 = 4294967295;

let saving = false;
let replacing = null; // id of the refused report being edited
let loc = null; // {lat, lon, accuracy_m?} for the next report
export let occurredTouched = false;
let countryNames = null; // alpha-2 → English name, once ../countries.json has loaded

export function localValue(d) {
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** A datetime-local value (phone time) as RFC 3339 UTC without fractions, or null. */
function toRfc3339(value) {
  const d = new Date(value);
  if (!value || Number.isNaN(d.getTime())) return null;
  const y = d.getUTCFullYear();
  if (y < 1900 || y > 9999) return null;
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

export function setNow() {
  $("occurred_at").value = localValue(new Date());
  occurredTouched = false;
  showUtc();
}

function showUtc() {
  const t = toRfc3339($("occurred_at").value);
  $("occurred-utc").textContent = t ? `= ${t.slice(0, 10)} ${t.slice(11, 16)} UTC` : "";
}

export function setCountry(code) {
  $("country").value = code || "";
  showCountry();
}

function showCountry() {
  const el = $("country");
  const v = el.value.toUpperCase().replace(/[^A-Z]/g, "").slice(0, 2);
  if (v !== el.value) el.value = v;
  const name = countryNames?.[v];
  $("country-name").textContent =
    v.length < 2 ? "2 letters, e.g. SO" : name ? name : countryNames ? "not a country code" : "";
}

const chars = (s) => [...s].length;

/** The form as {body, errors}; body is built (with a new id) only when there is no error. */
function readForm() {
  const errors = [];
  const bad = (id, text) => errors.push({ id, text });
  const country = $("country").value.trim().toUpperCase();
  if (!/^[A-Z]{2}$/.test(country)) bad("country", "Country: type the 2-letter code, e.g. SO for Somalia.");
  else if (countryNames && !countryNames[country]) bad("country", `Country: ${country} is not a country code; check it (e.g. SO for Somalia).`);
  const category = $("category").value;
  if (!category) bad("category", "Category: choose one (Other if none fits).");
  const severity = Number($("severity").value);
  if (!(Number.isInteger(severity) && severity >= 1 && severity <= 5)) bad("severity", "Severity: choose 1 (low) to 5 (critical).");
  const title = $("title").value.trim();
  if (!title) bad("title", "What happened: write one line.");
  else if (chars(title) > MAX_TITLE) bad("title", `What happened: at most ${MAX_TITLE} characters (now ${chars(title)}); put the rest in the description.`);
  const occurred = toRfc3339($("occurred_at").value);
  if (!occurred) bad("occurred_at", "When: set the date and time it happened.");
  const description = $("description").value.trim();
  if (chars(description) > MAX_DESCRIPTION) bad("description", `Description: at most ${MAX_DESCRIPTION} characters (now ${chars(description)}).`);
  const count = (id, label) => {
    const v = $(id).value.trim();
    if ($(id).validity?.badInput) bad(id, `${label}: a whole number, 0 or more; leave it empty if unknown.`);
    if (!v) return null;
    if (!/^\d+$/.test(v) || Number(v) > MAX_U32) {
      bad(id, `${label}: a whole number, 0 or more; leave it empty if unknown.`);
      return null;
    }
    return Number(v);
  };
  const killed = count("killed", "Killed");
  const injured = count("injured", "Injured");
  const station = $("duty_station").value.trim();
  if (station && (chars(station) > MAX_ID || /\s/.test(station))) bad("duty_station", `Duty station: a short code without spaces, at most ${MAX_ID} characters (e.g. SOM-MGQ).`);
  if (errors.length) return { errors };
  // Built once, here, in this order; stored and resent exactly as it is.
  const body = { id: uuid(), country, category, severity, title, occurred_at: occurred };
  if (loc) body.location = { ...loc };
  if (station) body.duty_station = station;
  if (description) body.description = description;
  if (killed != null || injured != null) body.casualties = { killed: killed ?? 0, injured: injured ?? 0 };
  return { body, errors };
}

function showFormErrors(errors) {
  const box = $("form-error");
  for (const el of document.querySelectorAll("#report-form [aria-invalid]")) el.removeAttribute("aria-invalid");
  box.replaceChildren();
  box.hidden = !errors.length;
  if (!errors.length) return;
  box.append(h("p", { class: "lead" }, "Not saved yet:"), h("ul", null, errors.map((e) => h("li", null, e.text))));
  for (const e of errors) if (e.id) $(e.id)?.setAttribute("aria-invalid", "true");
  const first = errors.find((e) => e.id && $(e.id));
  if (first) {
    if (["description", "killed", "injured", "duty_station"].includes(first.id)) $("more").open = true;
    $(first.id).focus();
  }
}

let okTimer = 0;
export function showOk(text) {
  const el = $("form-ok");
  el.textContent = text;
  el.hidden = !text;
  clearTimeout(okTimer);
  if (text) okTimer = setTimeout(() => (el.hidden = true), 8000);
}

async function submitReport(ev) {
  ev.preventDefault();
  if (saving) return; // a double tap must not make two reports
  showOk("");
  const { body, errors } = readForm();
  showFormErrors(errors);
  if (!body) return;
  const rec = {
    id: body.id,
    body,
    state: "saved",
    owner: session?.username ?? null,
    saved_at: Date.now(),
    attempts: 0,
    error: null,
    ack: null,
    acked_at: null,
    refusal: null,
  };
  saving = true;
  $("submit").disabled = true;
  try {
    await store.put(rec); // committed before anything else happens
  } catch (e) {
    showFormErrors([
      {
        id: null,
        text:
          `This phone could not save the report (${e?.message || e}). It is still in the form: ` +
          "tap Save again; if it keeps failing, free some space on the phone, or report by radio or phone.",
      },
    ]);
    return;
  } finally {
    saving = false;
    $("submit").disabled = false;
  }
  if (replacing) {
    const old = replacing;
    replacing = null;
    await store.del(old).catch(() => {});
  }
  const prefs = loadJson(PREFS_KEY) || {};
  saveJson(PREFS_KEY, { ...prefs, duty_station: body.duty_station ?? prefs.duty_station ?? null });
  clearForm();
  showOk(
    db
      ? "Saved on this phone. It is sent as soon as the centre can be reached; see My reports."
      : "Saved in this page only (this browser cannot store it): keep the page open until it says Acknowledged.",
  );
  changed();
  flush();
}

function clearForm() {
  // The country stays: the next report is most likely from the same place.
  for (const id of ["category", "severity", "title", "description", "killed", "injured"]) $(id).value = "";
  $("duty_station").value = loadJson(PREFS_KEY)?.duty_station || "";
  setLocation(null);
  setNow();
  $("more").open = false;
  $("edit-note").hidden = true;
  $("title-count").textContent = `0 / ${MAX_TITLE}`;
  $("severity").className = "";
}

export function editRefused(rec) {
  const b = rec.body;
  setCountry(b.country);
  $("category").value = b.category || "";
  $("severity").value = String(b.severity || "");
  $("severity").className = b.severity ? `sev-${b.severity}` : "";
  $("title").value = b.title || "";
  $("title-count").textContent = `${chars($("title").value)} / ${MAX_TITLE}`;
  const t = new Date(b.occurred_at);
  if (!Number.isNaN(t.getTime())) {
    $("occurred_at").value = localValue(t);
    occurredTouched = true;
    showUtc();
  }
  $("description").value = b.description || "";
  $("killed").value = b.casualties ? String(b.casualties.killed) : "";
  $("injured").value = b.casualties ? String(b.casualties.injured) : "";
  $("duty_station").value = b.duty_station || "";
  setLocation(b.location || null);
  $("more").open = Boolean(b.description || b.casualties || b.duty_station);
  replacing = rec.id;
  const note = $("edit-note");
  note.hidden = false;
  note.textContent =
    `Editing the refused report “${b.title}”. Refused: ${rec.refusal?.message || "?"}. ` +
    "Saving sends it as a new report and removes the refused one.";
  showFormErrors([]);
  note.scrollIntoView({ block: "start" });
  // The server names the field first ("title: must not be blank"): put the cursor there.
  const field = (rec.refusal?.message || "").split(/[:.[ ]/)[0];
  const target = $(field) && $(field).closest("#report-form") ? $(field) : $("title");
  if (["description", "killed", "injured", "duty_station"].includes(target.id)) $("more").open = true;
  target.focus({ preventScroll: true });
}

export async function dismiss(r) {
  if (!confirm(`Dismiss “${r.body.title}”? The centre did not accept it; it is deleted from this phone.`)) return;
  await store.del(r.id);
  if (replacing === r.id) {
    replacing = null;
    $("edit-note").hidden = true;
  }
  changed();
}

// ---------------------------------------------------------------- location

function setLocation(l) {
  loc = l;
  $("loc-clear").hidden = !l;
  $("loc-text").textContent = l
    ? `${l.lat.toFixed(5)}, ${l.lon.toFixed(5)}${l.accuracy_m != null ? ` ± ${Math.round(l.accuracy_m)} m` : ""}`
    : "";
  $("locate").textContent = l ? "Update my location" : "Add my location";
}

function locate() {
  const text = $("loc-text");
  if (!navigator.geolocation) {
    text.textContent = "This browser gives no location: leave it out, or write the place in the description.";
    return;
  }
  const button = $("locate");
  button.disabled = true;
  text.textContent = "Finding your location… (you can save the report meanwhile, without it)";
  navigator.geolocation.getCurrentPosition(
    (pos) => {
      button.disabled = false;
      const c = pos.coords;
      const acc = Number.isFinite(c.accuracy) ? Math.round(c.accuracy) : null;
      if (acc != null && acc > MAX_ACCURACY_M) {
        setLocation(null);
        text.textContent = `Location too vague (± ${Math.round(acc / 1000)} km): try again outside, or leave it out.`;
        return;
      }
      const round = (v) => Math.round(v * 1e6) / 1e6;
      const l = { lat: round(c.latitude), lon: round(c.longitude) };
      if (acc != null) l.accuracy_m = acc;
      setLocation(l);
    },
    (err) => {
      button.disabled = false;
      text.textContent =
        err.code === 1
          ? window.isSecureContext
            ? "Location not allowed: allow it for this site in the browser's settings, or leave it out."
            : "Location needs the page over HTTPS: leave it out, or write the place in the description."
          : err.code === 3
            ? "No location fix within 20 s: try again in the open, or leave it out."
            : "The phone could not find its location: try again, or leave it out.";
    },
    { enableHighAccuracy: true, timeout: 20000, maximumAge: 30000 },
  );
}

// ---------------------------------------------------------------- country names

export async function loadCountries() {
  try {
    const res = await fetch("../countries.json");
    if (!res.ok) return;
    countryNames = (await res.json()).names || null;
    showCountry();
  } catch {
    // Without the names the form checks the shape of the code only; the server checks the rest.
  }
}

/** The form as the page opens: the officer's country, the last duty station, now. */
export function fillForm(scope) {
  setCountry(scope || "");
  $("duty_station").value = loadJson(PREFS_KEY)?.duty_station || "";
  setNow();
}

export function wireForm() {
  $("report-form").addEventListener("submit", submitReport);
  $("country").addEventListener("input", showCountry);
  $("title").addEventListener("input", () => {
    $("title-count").textContent = `${chars($("title").value)} / ${MAX_TITLE}`;
  });
  $("severity").addEventListener("change", () => {
    $("severity").className = $("severity").value ? `sev-${$("severity").value}` : "";
  });
  $("occurred_at").addEventListener("input", () => {
    occurredTouched = true;
    showUtc();
  });
  $("locate").addEventListener("click", locate);
  $("loc-clear").addEventListener("click", () => setLocation(null));
  $("report-form").addEventListener("input", (e) => {
    e.target.removeAttribute?.("aria-invalid");
    showOk("");
  });
}
