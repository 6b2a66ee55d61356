// Vigil operations console: small DOM and formatting helpers shared by the sections.
//
// Owns nothing; promises:
// - Everything shown is built with textContent and DOM nodes, never HTML from data.
// - Times are shown in UTC ("2024-04-20 18:00 UTC"); datetime-local inputs are the desk's
//   local time and are sent as RFC 3339 UTC without fractions (`toRfc3339`).
// - Every action's outcome is written by `showResult` the same way: "… · log position N"
//   on success, the server's message (with data-error="true") on failure.

export const $ = (id) => document.getElementById(id);

/** A DOM element: h("li", {class: "x", "data-id": 1, onclick: f}, "text", child…). */
export function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("data-") || k.startsWith("aria-") || k === "role" || k === "for") el.setAttribute(k, String(v));
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el[k] = v;
  }
  for (const kid of kids.flat()) if (kid != null && kid !== false) el.append(kid);
  return el;
}

/** Replaces `el`'s children with `kids` (null, undefined and false left out). */
export function fill(el, ...kids) {
  el.replaceChildren(...kids.flat().filter((k) => k != null && k !== false));
  return el;
}

export const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** "snake_case" → "Snake case". */
export const words = (s) => {
  const t = String(s ?? "").replace(/_/g, " ");
  return t.charAt(0).toUpperCase() + t.slice(1);
};

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

/** The value a datetime-local input shows for `d` (local time, minutes). */
export function localValue(d = new Date()) {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
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

/** Keeps `hint` showing the UTC time of datetime-local `input`. */
export function utcHint(input, hint) {
  const show = () => {
    const t = toRfc3339(input.value);
    hint.textContent = t ? `= ${fmtUtc(t)}` : "";
  };
  input.addEventListener("input", show);
  show();
  return show;
}

/** Sets a datetime-local input to now (and its hint, if bound). */
export function setNow(input) {
  input.value = localValue(new Date());
  input.dispatchEvent(new Event("input"));
}

// ---------------------------------------------------------------- results and errors

/**
 * Writes an action's outcome on `el`: `ok` text, or the error's message with
 * data-error="true". `position` (a number) goes into data-position.
 */
export function showResult(el, { ok = null, error = null, position = null } = {}) {
  el.hidden = !(ok || error);
  el.textContent = error ? String(error.message || error) : ok || "";
  el.dataset.error = error ? "true" : "false";
  el.classList.toggle("bad", Boolean(error));
  el.classList.toggle("good", Boolean(ok) && !error);
  if (position != null && position !== "?") el.dataset.position = String(position);
  else delete el.dataset.position;
  el.setAttribute("role", error ? "alert" : "status");
}

/** An error paragraph: shown with the message, or hidden. */
export function showError(el, error) {
  el.hidden = !error;
  el.textContent = error ? String(error.message || error) : "";
}

/**
 * Runs `fn` with the form's submit buttons disabled; a second submit meanwhile is ignored
 * (a double click must not send twice).
 */
export function bindForm(form, fn) {
  let busy = false;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (busy) return;
    busy = true;
    const buttons = [...form.querySelectorAll("button")];
    for (const b of buttons) b.disabled = true;
    try {
      await fn(ev);
    } finally {
      busy = false;
      for (const b of buttons) b.disabled = false;
      form.dispatchEvent(new Event("settled"));
    }
  });
}

/** Marks `input` invalid (or not) for the eye and for screen readers. */
export function invalid(input, bad) {
  if (bad) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
}

/** Person ids from text separated by commas, semicolons, spaces or lines; each once. */
export function splitList(text) {
  const seen = new Set();
  for (const part of String(text || "").split(/[\s,;]+/)) if (part) seen.add(part);
  return [...seen];
}

/** Status badge: colour by class, and always the word. */
export function badge(kind, status, text = words(status || "none")) {
  return h("span", { class: `badge ${kind}-${status || "none"}`, "data-status": status || "" }, text);
}

/** A <dl> of label → value pairs (values null/undefined/"" are left out). */
export function dl(pairs, cls = "kv") {
  const el = h("dl", { class: cls });
  for (const [label, value] of pairs) {
    if (value == null || value === "") continue;
    el.append(h("dt", null, label), h("dd", null, value));
  }
  return el;
}

/** Any JSON value as readable text (objects and arrays compactly). */
export function anyText(v) {
  if (v == null) return "—";
  if (typeof v === "string") return /^\d{4}-\d\d-\d\dT/.test(v) ? fmtUtc(v) : v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (Array.isArray(v)) return v.length ? v.map(anyText).join(", ") : "none";
  return Object.entries(v)
    .map(([k, x]) => `${k}: ${anyText(x)}`)
    .join("; ");
}

/** Country names (alpha-2 → English), once /countries.json has loaded. */
let names = null;
export async function loadCountries() {
  try {
    const res = await fetch("../countries.json");
    if (res.ok) names = (await res.json()).names || null;
  } catch {
    names = null;
  }
}
export const countryText = (cc) => (cc ? (names?.[cc] ? `${cc} ${names[cc]}` : String(cc)) : "—");
export const isCountry = (cc) => /^[A-Z]{2}$/.test(cc) && (!names || Boolean(names[cc]));
