// Vigil field page: one exchange with the centre, and how its answer reads.
//
// `request` gives every exchange a 15 s limit, no cache, no cookies and no redirects (a Wi-Fi
// login page redirects, and must not pass for an answer from Vigil), and records whether the
// centre was reached (`reachable`, shown in the header).

import { serverNow } from "./session.js";

const REQUEST_TIMEOUT_MS = 15000;
/** Did the last exchange reach the centre? (null: no exchange yet) */
export let reachable = null;

export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // Pages not served over HTTPS have no randomUUID; getRandomValues is everywhere.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = [...b].map((v) => v.toString(16).padStart(2, "0")).join("");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/** fetch with a 15 s limit on the whole exchange; resolves to {res, data} (data: parsed JSON or null). */
export async function request(url, init) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), REQUEST_TIMEOUT_MS);
  try {
    const res = await fetch(url, {
      ...init,
      signal: ctl.signal,
      cache: "no-store",
      credentials: "omit",
      // A Wi-Fi login page redirects: that must not pass for an answer from Vigil.
      redirect: "manual",
    });
    let data = null;
    try {
      data = JSON.parse(await res.text());
    } catch {
      data = null;
    }
    reachable = res.status !== 0;
    return { res, data: data && typeof data === "object" ? data : null };
  } catch (e) {
    reachable = false;
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

export const netReason = (e) => (e?.name === "AbortError" ? "no answer within 15 s" : "no network");

/** Seconds from a Retry-After header (seconds or HTTP date), or null. */
export function retryAfter(res) {
  const v = res.headers.get("Retry-After");
  if (!v) return null;
  if (/^\d+$/.test(v.trim())) return Number(v.trim());
  const t = Date.parse(v);
  return Number.isNaN(t) ? null : Math.max(1, Math.ceil((t - serverNow()) / 1000));
}

export const errorOf = (data) => (data?.error && typeof data.error === "object" ? data.error : {});
