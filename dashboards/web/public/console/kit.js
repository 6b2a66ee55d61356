// Vigil operations console: what every section is drawn with.
//
// Owns: `html` (htm bound to the vendored Preact: the console's only way to make DOM), the
// redraw of the whole page (`redraw`, synchronous: the page shows a click's effect before the
// click's handler returns), the roles of each action (`POLICY`, the same lists as
// events/src/command.rs `policy`; the server is the judge, the console only hides what a
// role may never do), and the small pieces every section shows: times in UTC, badges,
// label/value lists, the outcome line of the last action.
//
// Promises:
// - Everything shown is text or Preact nodes, never HTML from data.
// - Times are shown in UTC ("2024-04-20 18:00 UTC"); datetime-local inputs are the desk's
//   local time and are sent as RFC 3339 UTC without fractions (`toRfc3339`).

import { html, render } from "../vendor/htm/preact-standalone.module.js";
import { role } from "./api.js";

export { html };

// ---------------------------------------------------------------- the one redraw

let root = null;
let App = null;
let drawing = false;
let again = false;

/** Draws `app` into `el` now and on every `redraw()`. */
export function mount(app, el) {
  App = app;
  root = el;
  redraw();
}

/**
 * Draws the page again from the state, at once. Preact's own setState would draw in a later
 * microtask; one synchronous top-level render keeps a click and what it shows in one step
 * (and every section's state is plain data in its controller, not in hooks).
 */
export function redraw() {
  if (!root) return;
  if (drawing) {
    again = true;
    return;
  }
  drawing = true;
  try {
    do {
      again = false;
      render(html`<${App} />`, root);
    } while (again);
  } finally {
    drawing = false;
  }
}

// ---------------------------------------------------------------- roles

const FIELD = "field_officer";
const DUTY = "duty_officer";
const CRISIS = "crisis_manager";
const ADMIN = "admin";
const FOCAL = "agency_focal_point";

/** Who may do what: events/src/command.rs `policy`, name for name. */
export const POLICY = {
  INCIDENT_REPORT: [FIELD, DUTY, CRISIS],
  INCIDENT_READ: [FIELD, DUTY, CRISIS, ADMIN],
  INCIDENT_UPDATE: [FIELD, DUTY, CRISIS],
  INCIDENT_VERIFY: [DUTY],
  INCIDENT_ESCALATE: [DUTY, CRISIS],
  INCIDENT_CLOSE: [DUTY, CRISIS],
  LEVEL_SET: [DUTY],
  LEVEL_READ: [FIELD, DUTY, CRISIS, ADMIN],
  HOSTAGE_MANAGE: [CRISIS],
  HOSTAGE_DETAILS: [CRISIS],
  HOSTAGE_SUMMARY: [DUTY, CRISIS, ADMIN],
  SURGE_REQUEST: [FIELD, DUTY, CRISIS],
  SURGE_DECIDE: [CRISIS],
  SURGE_RUN: [DUTY, CRISIS],
  SURGE_READ: [FIELD, DUTY, CRISIS, ADMIN],
  ORDER_ISSUE: [DUTY, CRISIS],
  ORDER_MARK: [FIELD, DUTY, CRISIS],
  ORDER_READ: [FIELD, DUTY, CRISIS, ADMIN],
  CLEARANCE_REQUEST: [FIELD, DUTY, FOCAL],
  CLEARANCE_DECIDE: [FIELD, DUTY],
  CLEARANCE_MOVEMENT: [FIELD, DUTY, FOCAL],
  CLEARANCE_READ: [FIELD, DUTY, CRISIS, ADMIN],
  BROADCAST_ISSUE: [DUTY],
  BROADCAST_APPROVE: [DUTY],
  BROADCAST_ACK: [FOCAL],
  BROADCAST_READ: [DUTY, CRISIS, ADMIN, FOCAL],
};

/** Whether the logged-in role is one of `roles` (a POLICY list). */
export const may = (roles) => Boolean(roles) && roles.includes(role());

// ---------------------------------------------------------------- words and numbers

export const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
export const num = (v) => (Number.isFinite(v) ? v : 0);

/** "snake_case" → "Snake case". */
export const words = (s) => {
  const t = String(s ?? "").replace(/_/g, " ");
  return t.charAt(0).toUpperCase() + t.slice(1);
};

/** A server message as the end of a sentence that starts with what failed. */
export const sentence = (s) => {
  const t = String(s || "").trim();
  return t ? t.charAt(0).toUpperCase() + t.slice(1) : t;
};

/** Ids from text separated by commas, semicolons, spaces or lines; each once. */
export function splitList(text) {
  const seen = new Set();
  for (const part of String(text || "").split(/[\s,;]+/)) if (part) seen.add(part);
  return [...seen];
}

// ---------------------------------------------------------------- time

const pad = (n) => String(n).padStart(2, "0");

/** "2024-04-20 18:00 UTC", or the input as given if it is not a time. */
export function fmtUtc(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())} UTC`;
}

/** "in 3 h 20 min" / "2 h 5 min ago" relative to `now` (ms). */
export function relative(iso, now = Date.now()) {
  const t = Date.parse(iso || "");
  if (Number.isNaN(t)) return "";
  const diff = t - now;
  let m = Math.round(Math.abs(diff) / 60000);
  let text;
  if (m < 1) text = "less than a minute";
  else if (m < 60) text = `${m} min`;
  else if (m < 48 * 60) {
    const hrs = Math.floor(m / 60);
    m %= 60;
    text = m ? `${hrs} h ${m} min` : `${hrs} h`;
  } else text = `${Math.round(m / 1440)} days`;
  return diff >= 0 ? `in ${text}` : `${text} ago`;
}

/** The value a datetime-local input shows for `minutes` from now (local time). */
export function localValue(minutes = 0) {
  const d = new Date(Date.now() + minutes * 60000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** Today (local) as YYYY-MM-DD, `days` on. */
export function dateValue(days = 0) {
  const d = new Date(Date.now() + days * 86400000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** A datetime-local value as RFC 3339 UTC without fractions, or null. */
export function toRfc3339(value) {
  if (!value) return null;
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return null;
  const y = d.getUTCFullYear();
  if (y < 1900 || y > 9999) return null;
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** Any JSON value as one line of text (times in UTC), for fields shown without a place of their own. */
export function anyText(v) {
  if (v == null) return "—";
  if (typeof v === "string") return /^\d{4}-\d\d-\d\dT/.test(v) ? fmtUtc(v) : v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (Array.isArray(v)) return v.length ? v.map(anyText).join(", ") : "none";
  const e = Object.entries(v);
  return e.length ? e.map(([k, x]) => `${k}: ${anyText(x)}`).join("; ") : "none";
}

// ---------------------------------------------------------------- countries

let names = null;

/** The 2-letter country field of a creation form: sent in capitals (controller.js `collect`). */
export const COUNTRY_FIELD = { name: "country", label: "Country (2 letters)", need: "the 2-letter code, e.g. SO", upper: true };

/** Loads English country names (alpha-2 → name) once; the page works without them. */
export async function loadCountries() {
  try {
    const res = await fetch("../countries.json");
    if (res.ok) names = (await res.json()).names || null;
  } catch {
    names = null;
  }
  redraw();
}
export const countryText = (cc) => (cc ? (names?.[cc] ? `${cc} ${names[cc]}` : String(cc)) : "—");
export const isCountry = (cc) => /^[A-Z]{2}$/.test(cc) && (!names || Boolean(names[cc]));

// ---------------------------------------------------------------- pieces

/** Status badge: colour by class, and always the word. */
export const Badge = ({ kind, status, text }) =>
  html`<span class=${`badge ${kind}-${status || "none"}`} data-status=${status || ""}>${text ?? words(status || "none")}</span>`;

/** A <dl> of label → value pairs (values null/undefined/"" are left out). */
export function KV({ pairs, cls = "kv" }) {
  const shown = pairs.filter(([, v]) => v != null && v !== "");
  return html`<dl class=${cls}>${shown.map(([k, v]) => html`<dt key=${`t${k}`}>${k}</dt><dd key=${`d${k}`}>${v}</dd>`)}</dl>`;
}

/** A paragraph with an error, or nothing shown (kept in the page, hidden, for the tests). */
export const ErrorLine = ({ testid, text, cls = "error" }) =>
  html`<p class=${cls} data-testid=${testid} role="alert" hidden=${!text}>${text || ""}</p>`;

/**
 * The outcome of the last action: `ok` text ("… · log position N"), or the server's message
 * with data-error="true".
 */
export function ResultLine({ testid, result }) {
  const r = result || {};
  const text = r.error || r.ok || "";
  return html`<p
    class=${`result${r.error ? " bad" : r.ok ? " good" : ""}`}
    data-testid=${testid}
    data-error=${r.error ? "true" : "false"}
    data-position=${r.position ?? undefined}
    role=${r.error ? "alert" : "status"}
    hidden=${!text}
  >${text}</p>`;
}
