// Vigil field page: the queue that empties the outbox into POST /api/v1/incidents.
//
// Promises (a report lost or counted twice misleads the whole centre):
// - Same id and same body on every resend: every attempt sends JSON.stringify of the stored
//   body, with its client UUID as "id"; no field is ever regenerated. The server counts a
//   report once per id, so a resend after a lost answer cannot make a second incident.
// - One sender: one flush at a time in this page (and across tabs with the Web Locks API),
//   one request at a time, oldest report first.
// - 201/200 (the centre has it) and 202 (a field site took it into its outbox: it is on the
//   site's disk and goes to the centre, with the same id, when the site's link is up) both
//   end the phone's part; the 202 is shown "pending at site".
// - Nothing dropped behind the officer's back: 401 keeps the queue and asks for a login;
//   429, 408, 5xx, timeouts and network errors keep it and retry with backoff (2 s doubling
//   to 60 s, ±20 % jitter; nothing before a 429's Retry-After); any other 4xx marks the report
//   refused with the server's reason, never retried by itself.
// - Reports are sent only with their owner's token (session.js `sendableBy`).

import { store, waiting } from "./outbox.js";
import { session, loginReason, tokenValid, sendableBy, setLoginReason, dropToken } from "./session.js";
import { request, netReason, retryAfter, errorOf } from "./net.js";
import { changed, renderList, renderNet, renderWho, showStoreWarning, tick } from "./render.js";

const API_INCIDENTS = "/api/v1/incidents";
const LOCK = "vigil-field-flush";
const BACKOFF_MIN_MS = 2000;
const BACKOFF_MAX_MS = 60000;
const JITTER = 0.2;
const RETRY_AFTER_DEFAULT_S = 30;

export let flushing = null; // the running flush, if any
let flushAgain = false;
let failures = 0; // consecutive transient failures (backoff exponent)
let timer = 0;
export let nextAt = 0; // when the timer fires (ms), 0 if none
let holdUntil = 0; // 429: no attempt before this (ms)
let inFlight = null; // id of the report on the wire

/** Sends what waits. Safe to call any time, from anything: one flush runs at a time. */
export function flush() {
  if (flushing) {
    flushAgain = true;
    return flushing;
  }
  flushing = (async () => {
    try {
      do {
        flushAgain = false;
        await withLock(drain);
      } while (flushAgain);
    } catch (e) {
      // A failed write to the outbox: try again later rather than lose track.
      showStoreWarning(`This phone could not update the saved reports (${e?.message || e}).`);
      backoff();
    } finally {
      inFlight = null;
      flushing = null;
    }
  })();
  return flushing;
}

function withLock(fn) {
  if (!navigator.locks?.request) return fn();
  return navigator.locks.request(LOCK, { ifAvailable: true }, (lock) => {
    if (lock) return fn();
    schedule(5000); // another tab is sending; look again later in case it closes
    return undefined;
  });
}

function schedule(ms) {
  clearTimeout(timer);
  nextAt = Date.now() + ms;
  timer = setTimeout(() => {
    timer = 0;
    nextAt = 0;
    flush();
  }, ms);
  tick();
}

function clearSchedule() {
  clearTimeout(timer);
  timer = 0;
  nextAt = 0;
}

/** 2 s, doubling, at most 60 s, ±20 % jitter. */
function backoff() {
  failures += 1;
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (failures - 1));
  schedule(Math.min(BACKOFF_MAX_MS, base * (1 - JITTER + Math.random() * 2 * JITTER)));
}


async function drain() {
  const wait = holdUntil - Date.now();
  if (wait > 0) {
    schedule(wait);
    return;
  }
  clearSchedule();
  const tried = new Set();
  for (;;) {
    const all = await store.all();
    const queue = waiting(all)
      .filter(sendableBy)
      .sort((a, b) => a.saved_at - b.saved_at || (a.id < b.id ? -1 : 1));
    if (!queue.length) {
      failures = 0;
      renderNet(all);
      return;
    }
    if (!tokenValid()) {
      if (loginReason === "none" && session?.token) setLoginReason("expired");
      renderWho();
      renderList();
      return; // login() flushes again
    }
    const rec = queue[0];
    if (tried.has(rec.id)) {
      backoff(); // it did not leave the queue: do not spin on it
      return;
    }
    tried.add(rec.id);
    if (!(await sendOne(rec, session.token))) return;
  }
}

/** One attempt. True: go on with the next report; false: stop (what follows is scheduled). */
async function sendOne(rec, token) {
  const live = await store.update(rec.id, (r) =>
    r.state === "saved" || r.state === "sending"
      ? { ...r, state: "sending", attempts: (r.attempts || 0) + 1 }
      : null,
  );
  if (!live) return true; // another tab settled it meanwhile
  inFlight = rec.id;
  changed();
  let res;
  let data;
  try {
    // The stored body, as stored: same id, same bytes on every attempt.
    ({ res, data } = await request(API_INCIDENTS, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
      body: JSON.stringify(live.body),
    }));
  } catch (e) {
    return transient(rec.id, netReason(e));
  } finally {
    inFlight = null;
  }
  const s = res.status;
  if (s >= 200 && s < 300) {
    if (!data) return transient(rec.id, "the answer did not come from Vigil (a Wi-Fi login page?)");
    const ack = {
      id: data.id ?? null,
      stream: data.stream ?? null,
      position: data.position ?? null,
      stream_version: data.stream_version ?? null,
      event_id: data.event_id ?? null,
      // 202 at a field site: on the site's disk, forwarded to the centre when its link is up.
      site: s === 202 && data.pending_at_site ? String(data.site ?? "") : null,
    };
    await settle(rec.id, (r) => ({ ...r, state: "acknowledged", ack, acked_at: Date.now(), error: null }));
    failures = 0;
    return true;
  }
  if (s === 401) {
    await settle(rec.id, (r) => ({ ...r, state: "saved", error: "the centre asks you to log in again" }));
    if (session?.token === token) {
      dropToken("401"); // not a newer login meanwhile
      renderWho();
    }
    return false;
  }
  if (s === 429) {
    const secs = retryAfter(res) ?? RETRY_AFTER_DEFAULT_S;
    holdUntil = Date.now() + secs * 1000;
    await settle(rec.id, (r) => ({ ...r, state: "saved", error: "the centre is busy (too many requests)" }));
    schedule(secs * 1000);
    return false;
  }
  if (s === 0 || s === 408 || s >= 500 || s < 400) {
    const why =
      s === 0 || (s >= 300 && s < 400)
        ? "the answer did not come from Vigil (a Wi-Fi login page?)"
        : s === 408
          ? "the centre timed out (HTTP 408)"
          : `the centre could not take it now (HTTP ${s})`;
    return transient(rec.id, why);
  }
  const err = errorOf(data);
  const refusal = {
    status: s,
    code: typeof err.code === "string" ? err.code : null,
    message: typeof err.message === "string" && err.message ? err.message : `HTTP ${s}`,
  };
  await settle(rec.id, (r) => ({ ...r, state: "refused", refusal, error: null }));
  return true;
}

/** Records the outcome of the attempt on `id`, unless another tab already settled it. */
function settle(id, fn) {
  return store
    .update(id, (r) => (r.state === "sending" || r.state === "saved" ? fn(r) : null))
    .then(changed);
}

async function transient(id, reason) {
  await settle(id, (r) => ({ ...r, state: "saved", error: reason }));
  backoff();
  return false;
}

/** Back to the shortest wait: after a login, or when the phone comes back online. */
export function resetBackoff() {
  failures = 0;
}

/** "retrying in N s" for a report that waits after a failure. */
export function retryText() {
  if (!nextAt) return flushing ? "retrying now" : "retrying soon";
  return `retrying in ${Math.max(0, Math.ceil((nextAt - Date.now()) / 1000))} s`;
}
