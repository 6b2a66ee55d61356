// Vigil field page: flash reports from phones on weak, intermittent networks.
//
// Owns: the session (localStorage "vigil.field.session": username, token, role, scope,
// expires_at, clock skew), the outbox (IndexedDB "vigil-field", store "outbox", keyPath "id")
// and the queue that empties it into POST /api/v1/incidents. Registers ./sw.js (scope /field/),
// which keeps the page itself available offline.
//
// Promises (a report lost or counted twice misleads the whole centre):
// - Saved before sent: a report is written to IndexedDB, in a committed transaction, before
//   the form clears, before "Saved on this phone" shows and before any network attempt.
// - Same id and same body on every resend: the body, with its client UUID as "id", is built
//   once, stored as is, and every attempt sends JSON.stringify of that stored object; no field
//   is ever regenerated. The server counts a report once per id, so a resend after a lost
//   answer cannot make a second incident.
// - One sender: one flush at a time in this page (and across tabs with the Web Locks API),
//   one request at a time, oldest report first.
// - Nothing dropped behind the officer's back: 401 keeps the queue and asks for a login;
//   429, 408, 5xx, timeouts and network errors keep it and retry with backoff; any other 4xx
//   marks the report refused with the server's reason, never retried by itself: the officer
//   edits it and resends it as a new report (new id), or dismisses it. Acknowledged reports
//   are pruned after 7 days.
// - Reports are sent with the token of the officer who saved them (or the next one to log
//   in, for reports saved before any login): another officer's login never sends them.
//
// Record in the outbox: {id, body, state: saved|sending|acknowledged|refused, owner,
// saved_at, attempts, error, ack: {id, stream, position, stream_version, event_id}, acked_at,
// refusal: {status, code, message}}. A record left "sending" by a closed page is "saved".
//
// Plain ES module, no build step, no library. Everything the officer sees is built with
// textContent (no HTML from data).

const API_LOGIN = "/api/v1/auth/login";
const API_INCIDENTS = "/api/v1/incidents";
const SESSION_KEY = "vigil.field.session";
const PREFS_KEY = "vigil.field.prefs";
const DB_NAME = "vigil-field";
const STORE = "outbox";
const LOCK = "vigil-field-flush";
const REQUEST_TIMEOUT_MS = 15000;
const BACKOFF_MIN_MS = 2000;
const BACKOFF_MAX_MS = 60000;
const JITTER = 0.2;
const RETRY_AFTER_DEFAULT_S = 30;
const KEEP_ACKED_MS = 7 * 24 * 3600 * 1000;
const MAX_TITLE = 200;
const MAX_DESCRIPTION = 10000;
const MAX_ID = 64;
const MAX_ACCURACY_M = 100000;
const MAX_U32 = 4294967295;

// What to do after a refusal, by status (the server's message says what was wrong).
const REFUSAL_ADVICE = {
  400: "Reload the page, then Edit and resend.",
  403: "Your account may not report this: check the country, or call the duty officer.",
  404: "The centre does not take reports here: reload the page; if it stays, call the duty officer.",
  409: "The centre holds a different report with this id: Edit and resend makes a new one.",
  413: "Too long: shorten the description, then Edit and resend.",
  415: "Reload the page, then Edit and resend.",
  422: "Fix what it says, then Edit and resend.",
};

const $ = (id) => document.getElementById(id);

/** A DOM element: h("li", {class: "x", "data-id": 1, onclick: f}, "text", child…). */
function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("data-")) el.setAttribute(k, String(v));
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el[k] = v;
  }
  for (const kid of kids.flat()) if (kid != null && kid !== false) el.append(kid);
  return el;
}

const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

// ---------------------------------------------------------------- outbox (IndexedDB)

/** The open database, or null: then the outbox lives in `mem` (this page only). */
let db = null;
const mem = new Map();
const channel = "BroadcastChannel" in self ? new BroadcastChannel("vigil-field") : null;

function openDb() {
  return new Promise((resolve, reject) => {
    if (!self.indexedDB) {
      reject(new Error("this browser has no IndexedDB"));
      return;
    }
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => {
      if (!req.result.objectStoreNames.contains(STORE)) {
        req.result.createObjectStore(STORE, { keyPath: "id" });
      }
    };
    req.onsuccess = () => {
      req.result.onversionchange = () => req.result.close();
      resolve(req.result);
    };
    req.onerror = () => reject(req.error || new Error("IndexedDB did not open"));
  });
}

/** Runs `fn(objectStore, setResult)` in one transaction; resolves once it has committed. */
function run(mode, fn) {
  return new Promise((resolve, reject) => {
    let t;
    try {
      // "strict": committed means on disk, not just in the browser's memory.
      t = db.transaction(STORE, mode, { durability: "strict" });
    } catch (e) {
      reject(e);
      return;
    }
    let result;
    t.oncomplete = () => resolve(result);
    t.onerror = t.onabort = () => reject(t.error || new Error("the phone did not complete the write"));
    fn(t.objectStore(STORE), (v) => {
      result = v;
    });
  });
}

const store = {
  all() {
    if (!db) return Promise.resolve([...mem.values()].map((r) => structuredClone(r)));
    return run("readonly", (s, out) => {
      const r = s.getAll();
      r.onsuccess = () => out(r.result);
    });
  },
  put(rec) {
    if (!db) {
      mem.set(rec.id, structuredClone(rec));
      return Promise.resolve();
    }
    return run("readwrite", (s) => s.put(rec));
  },
  del(id) {
    if (!db) {
      mem.delete(id);
      return Promise.resolve();
    }
    return run("readwrite", (s) => s.delete(id));
  },
  /** Atomic read-modify-write: `fn(current)` returns the new record, or null to leave it. */
  update(id, fn) {
    if (!db) {
      const cur = mem.get(id);
      const next = cur ? fn(structuredClone(cur)) : null;
      if (next) mem.set(id, structuredClone(next));
      return Promise.resolve(next);
    }
    return run("readwrite", (s, out) => {
      const r = s.get(id);
      r.onsuccess = () => {
        const next = r.result ? fn(r.result) : null;
        if (next) {
          s.put(next);
          out(next);
        }
      };
    });
  },
};

/** After any write: redraw here and in the page's other tabs. */
function changed() {
  channel?.postMessage("changed");
  renderList();
}

// ---------------------------------------------------------------- session

function loadJson(key) {
  try {
    return JSON.parse(localStorage.getItem(key) || "null");
  } catch {
    return null;
  }
}

function saveJson(key, value) {
  try {
    if (value == null) localStorage.removeItem(key);
    else localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // Storage full or blocked: the session lasts as long as the page.
  }
}

/** {username, token, role, scope, expires_at, skew_ms} or null. */
let session = loadJson(SESSION_KEY);
/** Why the login form shows: "none" | "expired" | "401". */
let loginReason = "none";

/** The server's clock now, as well as we know it (phones' clocks drift). */
const serverNow = () => Date.now() + (session?.skew_ms || 0);

function tokenValid() {
  if (!session?.token) return false;
  const exp = Date.parse(session.expires_at || "");
  return Number.isNaN(exp) || exp > serverNow() + 5000;
}

/** Whether `rec` may be sent with the current session (see the header). */
const sendableBy = (rec) => rec.owner == null || rec.owner === session?.username;

function dropToken(reason) {
  if (session) {
    session = { ...session, token: null };
    saveJson(SESSION_KEY, session);
  }
  loginReason = reason;
  renderWho();
}

// ---------------------------------------------------------------- network

function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // Pages not served over HTTPS have no randomUUID; getRandomValues is everywhere.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = [...b].map((v) => v.toString(16).padStart(2, "0")).join("");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/** fetch with a 15 s limit on the whole exchange; resolves to {res, data} (data: parsed JSON or null). */
async function request(url, init) {
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
    return { res, data: data && typeof data === "object" ? data : null };
  } finally {
    clearTimeout(timer);
  }
}

const netReason = (e) => (e?.name === "AbortError" ? "no answer within 15 s" : "no network");

/** Seconds from a Retry-After header (seconds or HTTP date), or null. */
function retryAfter(res) {
  const v = res.headers.get("Retry-After");
  if (!v) return null;
  if (/^\d+$/.test(v.trim())) return Number(v.trim());
  const t = Date.parse(v);
  return Number.isNaN(t) ? null : Math.max(1, Math.ceil((t - serverNow()) / 1000));
}

const errorOf = (data) => (data?.error && typeof data.error === "object" ? data.error : {});

// ---------------------------------------------------------------- queue

let flushing = null; // the running flush, if any
let flushAgain = false;
let failures = 0; // consecutive transient failures (backoff exponent)
let timer = 0;
let nextAt = 0; // when the timer fires (ms), 0 if none
let holdUntil = 0; // 429: no attempt before this (ms)
let inFlight = null; // id of the report on the wire
let reachable = null; // did the last exchange reach the centre? (null: no exchange yet)

/** Sends what waits. Safe to call any time, from anything: one flush runs at a time. */
function flush() {
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

const waiting = (recs) => recs.filter((r) => r.state === "saved" || r.state === "sending");

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
      if (loginReason === "none" && session?.token) loginReason = "expired";
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
    reachable = false;
    return transient(rec.id, netReason(e));
  } finally {
    inFlight = null;
  }
  const s = res.status;
  reachable = s !== 0;
  if (s >= 200 && s < 300) {
    if (!data) return transient(rec.id, "the answer did not come from Vigil (a Wi-Fi login page?)");
    const ack = {
      id: data.id ?? null,
      stream: data.stream ?? null,
      position: data.position ?? null,
      stream_version: data.stream_version ?? null,
      event_id: data.event_id ?? null,
    };
    await settle(rec.id, (r) => ({ ...r, state: "acknowledged", ack, acked_at: Date.now(), error: null }));
    failures = 0;
    return true;
  }
  if (s === 401) {
    await settle(rec.id, (r) => ({ ...r, state: "saved", error: "the centre asks you to log in again" }));
    if (session?.token === token) dropToken("401"); // not a newer login meanwhile
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

// ---------------------------------------------------------------- login

async function login(ev) {
  ev.preventDefault();
  const username = $("username").value.trim();
  const password = $("password").value;
  if (!username || !password) {
    loginError("Type your username and your password, then tap Log in.");
    return;
  }
  const button = $("login-submit");
  button.disabled = true;
  button.textContent = "Logging in…";
  loginError(null);
  try {
    let res;
    let data;
    try {
      ({ res, data } = await request(API_LOGIN, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ username, password }),
      }));
    } catch (e) {
      reachable = false;
      renderList();
      loginError(
        `Could not reach the centre (${netReason(e)}). Your saved reports stay on this phone: ` +
          "try again when you have a network.",
      );
      return;
    }
    reachable = res.status !== 0;
    if (res.ok && data?.token) {
      const date = Date.parse(res.headers.get("Date") || "");
      session = {
        username,
        token: data.token,
        role: data.role ?? null,
        scope: data.scope ?? null,
        expires_at: data.expires_at ?? null,
        skew_ms: Number.isNaN(date) ? 0 : date - Date.now(),
      };
      saveJson(SESSION_KEY, session);
      $("password").value = "";
      loginReason = "none";
      if (session.scope && !$("country").value) setCountry(session.scope);
      renderWho();
      failures = 0;
      flush();
      return;
    }
    const err = errorOf(data);
    if (res.status === 401) {
      loginError("Wrong username or password. Check both and try again; if you are locked out, call the duty officer.");
    } else if (res.status === 429) {
      loginError(`Too many attempts: wait ${retryAfter(res) ?? 60} s, then try again.`);
    } else if (res.ok || res.status === 0 || (res.status >= 300 && res.status < 400)) {
      loginError("The answer did not come from Vigil. If the Wi-Fi wants you to log in, open any web page first, then try again.");
    } else {
      loginError(`${err.message || `The centre answered HTTP ${res.status}`}. Try again in a minute; if it keeps failing, call the duty officer.`);
    }
  } finally {
    button.disabled = false;
    button.textContent = "Log in";
  }
}

function loginError(text) {
  const el = $("login-error");
  el.hidden = !text;
  el.textContent = text || "";
}

async function logout() {
  const mine = waiting(await store.all()).filter((r) => r.owner === session?.username).length;
  if (
    mine &&
    !confirm(
      `${plural(mine, "report")} not sent yet. They stay on this phone and are sent when ${session.username} logs in again. Log out?`,
    )
  ) {
    return;
  }
  session = null;
  saveJson(SESSION_KEY, null);
  loginReason = "none";
  renderWho();
  renderList();
}

// ---------------------------------------------------------------- the report form

let saving = false;
let replacing = null; // id of the refused report being edited
let loc = null; // {lat, lon, accuracy_m?} for the next report
let occurredTouched = false;
let countryNames = null; // alpha-2 → English name, once ../countries.json has loaded

function localValue(d) {
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

function setNow() {
  $("occurred_at").value = localValue(new Date());
  occurredTouched = false;
  showUtc();
}

function showUtc() {
  const t = toRfc3339($("occurred_at").value);
  $("occurred-utc").textContent = t ? `= ${t.slice(0, 10)} ${t.slice(11, 16)} UTC` : "";
}

function setCountry(code) {
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
function showOk(text) {
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

function editRefused(rec) {
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

// ---------------------------------------------------------------- rendering

function renderWho() {
  const ok = tokenValid();
  const who = $("who");
  if (ok) {
    const bits = [session.role ? session.role.replace(/_/g, " ") : null, session.scope].filter(Boolean);
    who.textContent = `${session.username}${bits.length ? ` · ${bits.join(" · ")}` : ""}`;
  } else {
    who.textContent = session?.username ? `${session.username} · not logged in` : "Not logged in";
  }
  $("logout").hidden = !session?.username;
  $("login-section").hidden = ok;
  if (!ok && session?.username && !$("username").value) $("username").value = session.username;
  renderLoginWhy();
}

async function renderLoginWhy() {
  if ($("login-section").hidden) return;
  let n = 0;
  try {
    n = waiting(await store.all()).filter(sendableBy).length;
  } catch {
    n = 0;
  }
  const ended = loginReason === "401" || loginReason === "expired" || (session?.username && !tokenValid());
  $("login-title").textContent = ended ? "Log in again" : "Log in";
  $("login-why").textContent = n
    ? `Log in ${ended ? "again " : ""}to send ${plural(n, "saved report")}. ${n === 1 ? "It stays" : "They stay"} on this phone until then.`
    : ended
      ? "Your session has ended: log in again to send reports."
      : "Log in to send reports to the centre.";
}

function renderNet(recs) {
  const n = waiting(recs).length;
  const el = $("net");
  const online = navigator.onLine;
  const centre = online && reachable === false ? " · centre not reachable" : "";
  el.textContent = `${online ? "Online" : "Offline"}${centre} · ${n} waiting to send`;
  el.dataset.online = String(online);
  el.dataset.waiting = String(n);
  el.className = `net ${online ? "online" : "offline"}${n ? " pending" : ""}`;
}

const fmtTime = (iso) => {
  const d = new Date(iso);
  return Number.isNaN(d.getTime())
    ? iso
    : d.toLocaleString([], { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
};

const optionLabel = (selectId, value) =>
  [...$(selectId).options].find((o) => o.value === String(value))?.textContent || String(value);

function retryText() {
  if (!nextAt) return flushing ? "retrying now" : "retrying soon";
  return `retrying in ${Math.max(0, Math.ceil((nextAt - Date.now()) / 1000))} s`;
}

function savedText(r) {
  if (!sendableBy(r)) return `Saved on phone · waiting for ${r.owner} to log in`;
  if (!tokenValid()) return "Saved on phone · log in to send";
  if (r.error) return `Saved on phone · not sent yet: ${r.error}, ${retryText()}`;
  return "Saved on phone · waiting to send";
}

function reportItem(r) {
  const b = r.body;
  let state;
  let actions = null;
  if (r.state === "acknowledged") {
    state = `Acknowledged · log position ${r.ack?.position ?? "?"}`;
  } else if (r.state === "refused") {
    const f = r.refusal || {};
    state = `Refused: ${f.message || "no reason given"}${f.code ? ` (${f.code})` : ""}`;
    actions = h(
      "div",
      { class: "actions" },
      h("p", { class: "advice" }, REFUSAL_ADVICE[f.status] || "Edit and resend it, or dismiss it."),
      h("button", { type: "button", class: "secondary", onclick: () => editRefused(r) }, "Edit and resend"),
      h("button", { type: "button", class: "secondary danger", onclick: () => dismiss(r) }, "Dismiss"),
    );
  } else if (r.state === "sending") {
    state = "Sending…";
  } else {
    state = savedText(r);
  }
  return h(
    "li",
    {
      class: `report st-${r.state}`,
      "data-testid": "report",
      "data-id": r.id,
      "data-state": r.state,
      "data-position": r.ack?.position ?? null,
    },
    h(
      "div",
      { class: "r-head" },
      h("span", { class: `tag s${b.severity}` }, `SEV ${b.severity}`),
      h("b", { class: "cc" }, b.country),
      h("span", { class: "r-title" }, b.title),
    ),
    h("div", { class: "r-meta" }, `${optionLabel("category", b.category)} · ${fmtTime(b.occurred_at)}`),
    h("div", { class: "r-state", "data-retry": r.state === "saved" && r.error ? "1" : null }, state),
    actions,
  );
}

let renderGen = 0;
async function renderList() {
  const gen = ++renderGen;
  let recs;
  try {
    recs = await store.all();
  } catch (e) {
    showStoreWarning(`This phone could not read the saved reports (${e?.message || e}). Reload the page.`);
    return;
  }
  if (gen !== renderGen) return; // a newer render is on its way
  recs.sort((a, b) => b.saved_at - a.saved_at);
  $("reports").replaceChildren(...recs.map(reportItem));
  $("no-reports").hidden = recs.length > 0;
  renderNet(recs);
  renderLoginWhy();
}

async function dismiss(r) {
  if (!confirm(`Dismiss “${r.body.title}”? The centre did not accept it; it is deleted from this phone.`)) return;
  await store.del(r.id);
  if (replacing === r.id) {
    replacing = null;
    $("edit-note").hidden = true;
  }
  changed();
}

function showStoreWarning(text) {
  const el = $("store-warning");
  el.hidden = !text;
  el.textContent = text || "";
}

/** Every second: the retry countdowns; "when" follows the clock until edited; the login
 *  form comes back once the session has run out. */
function tick() {
  for (const el of document.querySelectorAll("[data-retry]")) {
    el.textContent = el.textContent.replace(/(retrying (in \d+ s|now|soon))$/, retryText());
  }
  const now = localValue(new Date());
  if (!occurredTouched && $("occurred_at").value !== now && document.activeElement !== $("occurred_at")) setNow();
  if ($("login-section").hidden && !tokenValid()) {
    if (session?.token) loginReason = "expired";
    renderWho();
    renderList();
  }
}

// ---------------------------------------------------------------- start

async function persistStorage() {
  const el = $("persist");
  if (!db) {
    el.textContent = "Reports kept on this phone: no — this browser cannot store them; keep the page open until they are acknowledged.";
    return;
  }
  let kept = null;
  try {
    if (navigator.storage?.persisted) kept = await navigator.storage.persisted();
    if (!kept && navigator.storage?.persist) kept = await navigator.storage.persist();
  } catch {
    kept = null;
  }
  el.textContent =
    kept === true
      ? "Reports kept on this phone: yes."
      : kept === false
        ? "Reports kept on this phone: no — if the phone runs short of space the browser may delete unsent reports; send them soon, or add this page to the home screen."
        : "Reports kept on this phone: unknown (this browser does not say).";
  el.dataset.persistent = String(kept);
}

async function registerWorker() {
  const el = $("offline");
  if (!("serviceWorker" in navigator)) {
    el.textContent = window.isSecureContext
      ? "Opens without network: no (this browser cannot)."
      : "Opens without network: no (the page must be served over HTTPS).";
    return;
  }
  try {
    await navigator.serviceWorker.register("./sw.js");
    await navigator.serviceWorker.ready;
    el.textContent = "Opens without network: yes.";
  } catch (e) {
    el.textContent = `Opens without network: no (${e?.message || e}).`;
  }
}

async function loadCountries() {
  try {
    const res = await fetch("../countries.json");
    if (!res.ok) return;
    countryNames = (await res.json()).names || null;
    showCountry();
  } catch {
    // Without the names the form checks the shape of the code only; the server checks the rest.
  }
}

function wire() {
  $("login").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
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
  addEventListener("online", () => {
    failures = 0;
    renderList();
    flush();
  });
  addEventListener("offline", () => renderList());
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible") return;
    renderWho();
    renderList();
    flush();
  });
  addEventListener("storage", (e) => {
    if (e.key !== SESSION_KEY) return;
    session = loadJson(SESSION_KEY);
    renderWho();
    renderList();
    flush();
  });
  if (channel) channel.onmessage = () => renderList();
  setInterval(tick, 1000);
}

async function start() {
  wire();
  try {
    db = await openDb();
  } catch (e) {
    db = null;
    showStoreWarning(
      `This browser cannot keep reports on the phone (${e?.message || e}). Reports are kept in this page only: ` +
        "keep it open until each one says Acknowledged, or use another browser.",
    );
  }
  // A page closed mid-send left "sending": it is "saved" again. Old acknowledgements go.
  try {
    const now = Date.now();
    for (const r of await store.all()) {
      if (r.state === "acknowledged" && (r.acked_at || r.saved_at) < now - KEEP_ACKED_MS) {
        await store.del(r.id);
      } else if (r.state === "sending") {
        await store.update(r.id, (c) => (c.state === "sending" ? { ...c, state: "saved" } : null));
      }
    }
  } catch (e) {
    showStoreWarning(`This phone could not read the saved reports (${e?.message || e}). Reload the page.`);
  }
  setCountry(session?.scope || "");
  $("duty_station").value = loadJson(PREFS_KEY)?.duty_station || "";
  setNow();
  if (session?.token && !tokenValid()) loginReason = "expired";
  renderWho();
  await renderList();
  flush();
  persistStorage();
  registerWorker();
  loadCountries();
}

start();
