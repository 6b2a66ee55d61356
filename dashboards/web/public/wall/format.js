// Vigil wall screen: how times, ages, numbers and names are written.
//
// Owns: the clocks' zones and formatters (all times in UTC unless a clock says otherwise),
// the level names, and the small helpers every panel uses (`num`, `cls`, `slug`).

import { names } from "./board.js";

export const LEVELS = [
  null,
  "Minimal",
  "Low",
  "Moderate",
  "Substantial",
  "High",
  "Extreme",
];
export const LEVEL_COLOURS = [null, "#2e7d32", "#7cb342", "#fdd835", "#fb8c00", "#e53935", "#ab47bc"];
export const ZONES = [
  ["UTC", "UTC"],
  ["New York", "America/New_York"],
  ["Geneva", "Europe/Zurich"],
  ["Nairobi", "Africa/Nairobi"],
  ["Bangkok", "Asia/Bangkok"],
];

export const clockFmt = new Map(
  ZONES.map(([, tz]) => [
    tz,
    new Intl.DateTimeFormat("en-GB", {
      timeZone: tz,
      hour: "2-digit",
      minute: "2-digit",
      second: tz === "UTC" ? "2-digit" : undefined,
      hourCycle: "h23",
    }),
  ]),
);
export const dayFmt = new Map(
  ZONES.map(([, tz]) => [
    tz,
    new Intl.DateTimeFormat("en-GB", { timeZone: tz, weekday: "short", day: "numeric" }),
  ]),
);
const utcTime = new Intl.DateTimeFormat("en-GB", {
  timeZone: "UTC",
  hour: "2-digit",
  minute: "2-digit",
  hourCycle: "h23",
});
export const utcSeconds = new Intl.DateTimeFormat("en-GB", {
  timeZone: "UTC",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hourCycle: "h23",
});
const utcDate = new Intl.DateTimeFormat("en-GB", { timeZone: "UTC", day: "2-digit", month: "short" });

function parseTime(s) {
  if (typeof s !== "string") return null;
  const t = Date.parse(s);
  return Number.isNaN(t) ? null : t;
}

/** "14:05Z", with the date in front when it is not today (UTC). */
export function shortTime(s, now) {
  const t = parseTime(s);
  if (t === null) return "—";
  const d = new Date(t);
  const sameDay = utcDate.format(d) === utcDate.format(new Date(now));
  return `${sameDay ? "" : utcDate.format(d) + " "}${utcTime.format(d)}Z`;
}

export function daysSince(s, now) {
  const t = parseTime(s);
  return t === null ? null : Math.max(0, Math.floor((now - t) / 86400000));
}

export function ageText(sec) {
  if (sec === null) return "no data";
  if (sec < 120) return `${sec} s`;
  if (sec < 7200) return `${Math.floor(sec / 60)} min`;
  return `${Math.floor(sec / 3600)} h`;
}

export const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : 0);
export const levelName = (l) => LEVELS[l] ?? "?";
export const countryName = (cc) => names[cc] ?? cc;
export const cls = (...xs) => xs.filter(Boolean).join(" ");
export const slug = (s) => String(s ?? "").toLowerCase().replace(/[^a-z0-9_-]/g, "");
