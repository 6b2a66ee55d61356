// Vigil operations console: the one way to the API.
//
// Owns: the session (sessionStorage "vigil.console.session": username, token, role, scope,
// agency, expires_at, skew_ms — this tab only, gone when the tab closes) and every HTTP
// exchange with /api/v1 (JSON in and out, `Authorization: Bearer <token>`, a 15 s limit).
//
// Promises:
// - Every call sends the session's token; none is made without one (except the login).
// - A 401 on any call drops the token and calls the handler given to `onSessionLost` (the
//   page shows the login form); the call fails with status 401.
// - A failed call throws an ApiError whose `message` is the server's `error.message` (it says
//   what to do next), or a sentence saying what went wrong on the way (network, timeout,
//   an answer that is not Vigil's); `transient` tells whether sending again may work.
// - `act` gives each command a fresh client id (crypto.randomUUID), and gives the SAME id
//   again when the same command with the same fields is sent again after a transient
//   failure (no answer, 5xx, 408, 429): the server stores an id once, so a retry after a
//   lost answer never does a thing twice.
//
// - `list` is the ONE reader of list answers: every section reads its list through it, so a
//   lists are read here only (see `list`).
//
// Plain ES module, no build step, no library.

const SESSION_KEY = "vigil.console.session";
const TIMEOUT_MS = 15000;

export class ApiError extends Error {
  constructor(status, code, message, transient = false) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.transient = transient;
  }
}

// ---------------------------------------------------------------- session

function load() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
    return s && typeof s === "object" ? s : null;
  } catch {
    return null;
  }
}

let session = load();
let lostHandler = () => {};

/** {username, token, role, scope, agency, expires_at, skew_ms} or null. */
export const getSession = () => session;

export function setSession(s) {
  session = s;
  try {
    if (s) sessionStorage.setItem(SESSION_KEY, JSON.stringify(s));
    else sessionStorage.removeItem(SESSION_KEY);
  } catch {
    // Storage blocked: the session lasts as long as the page.
  }
}

/** `fn(message)` runs when the server says the token is no longer good (401). */
export function onSessionLost(fn) {
  lostHandler = fn;
}

/** The server's clock now, as well as we know it. */
export const serverNow = () => Date.now() + (session?.skew_ms || 0);

export function tokenValid() {
  if (!session?.token) return false;
  const exp = Date.parse(session.expires_at || "");
  return Number.isNaN(exp) || exp > serverNow() + 5000;
}

/** Drops the token (keeps the username to prefill the login form). */
export function dropToken(why) {
  if (session) setSession({ ...session, token: null });
  lostHandler(why);
}

export const role = () => session?.role || null;

/**
 * The claims a token carries (its middle part, base64url JSON), or null. For showing only
 * (the agency of a focal point): the server checks the token, the page never trusts it.
 */
export function tokenClaims(token) {
  try {
    const part = String(token || "").split(".")[1];
    if (!part) return null;
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------- ids

export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // Plain-HTTP pages (not localhost) have no randomUUID; getRandomValues is everywhere.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = [...b].map((v) => v.toString(16).padStart(2, "0")).join("");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

// ---------------------------------------------------------------- HTTP

function retryAfterText(res) {
  const v = res.headers.get("Retry-After");
  if (!v) return "";
  if (/^\d+$/.test(v.trim())) return ` Wait ${v.trim()} s, then try again.`;
  const t = Date.parse(v);
  return Number.isNaN(t) ? "" : ` Wait ${Math.max(1, Math.ceil((t - serverNow()) / 1000))} s, then try again.`;
}

/**
 * One exchange. Resolves to the parsed JSON answer of a 2xx; throws ApiError otherwise.
 * `opts.auth === false`: no token (the login); a 401 then does not end the session.
 * `opts.raw`: resolve to {res, data} instead (the login reads the Date header).
 */
export async function api(method, path, body, opts = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const auth = opts.auth !== false;
  const token = session?.token;
  if (auth) {
    if (!token) {
      lostHandler("Log in to go on.");
      throw new ApiError(401, "unauthorized", "Log in to go on.");
    }
    headers.Authorization = `Bearer ${token}`;
  }
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
  let res;
  let text;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: ctl.signal,
      cache: "no-store",
      credentials: "omit",
      redirect: "manual",
    });
    text = await res.text();
  } catch (e) {
    throw new ApiError(
      0,
      "network",
      e?.name === "AbortError"
        ? "No answer from the centre within 15 s: try again (a retry is never stored twice)."
        : "Could not reach the centre: check the network, then try again.",
      true,
    );
  } finally {
    clearTimeout(timer);
  }
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  const s = res.status;
  if (s >= 200 && s < 300) {
    if (data === null || typeof data !== "object") {
      throw new ApiError(s, "not_vigil", "The answer did not come from Vigil: reload the page, then try again.", true);
    }
    return opts.raw ? { res, data } : data;
  }
  const err = data?.error && typeof data.error === "object" ? data.error : {};
  const message = typeof err.message === "string" && err.message ? err.message : null;
  const code = typeof err.code === "string" ? err.code : `http_${s}`;
  if (s === 401 && auth) {
    // Only if this token is still the current one (not a newer login meanwhile).
    if (session?.token === token) dropToken(message || "Your session has ended: log in again.");
    throw new ApiError(401, code, message || "Your session has ended: log in again.");
  }
  if (s === 0 || (s >= 300 && s < 400)) {
    throw new ApiError(s, "not_vigil", "The answer did not come from Vigil: reload the page, then try again.", true);
  }
  const transient = s === 408 || s === 429 || s >= 500;
  let text2 = message || `The centre answered HTTP ${s}${transient ? ": try again in a moment" : ""}.`;
  if (s === 429) text2 += retryAfterText(res);
  throw new ApiError(s, code, text2, transient);
}

export const get = (path) => api("GET", path);

// ---------------------------------------------------------------- lists

/** Pages read for one list: 4 × 500 items; past that the section asks for a narrower filter. */
const LIST_PAGES = 4;
const PAGE_LIMIT = 500;

/**
 * One page of a list: every list of the API answers `{items, position, next}` (`position` the
 * log position it reflects, `next` the cursor of the following page or null). Any other shape
 * is not Vigil's answer (a proxy's page, an old server): refused rather than guessed at.
 */
export function listOf(answer) {
  if (!answer || !Array.isArray(answer.items) || !Number.isFinite(answer.position) || !("next" in answer)) {
    throw new ApiError(200, "not_vigil", "The list did not come in Vigil's shape: reload the page, then try again.", true);
  }
  return { items: answer.items, position: answer.position, next: answer.next ?? null };
}

/**
 * GET a whole list, following `next` for up to LIST_PAGES pages: `{items, position, next}`,
 * `next` non-null when more remain than were read.
 */
export async function list(path) {
  const sep = path.includes("?") ? "&" : "?";
  let page = listOf(await get(`${path}${sep}limit=${PAGE_LIMIT}`));
  const items = [...page.items];
  let position = page.position;
  for (let n = 1; n < LIST_PAGES && page.next; n += 1) {
    page = listOf(await get(`${path}${sep}limit=${PAGE_LIMIT}&cursor=${encodeURIComponent(page.next)}`));
    items.push(...page.items);
    position = Math.max(position, page.position);
  }
  return { items, position, next: page.next };
}

// ---------------------------------------------------------------- commands

/** key → {json, id}: the id of a command whose last send failed transiently. */
const pending = new Map();

/**
 * Sends command `fields` (without id) to `method` (POST, or PUT for a level) `path` with a client id: fresh, or the one of
 * the same command (same `key`, same fields) whose last send failed transiently.
 * Resolves to the answer ({id, stream, event_id, position, stream_version}).
 */
export async function act(path, fields, key = path, method = "POST") {
  const json = JSON.stringify(fields);
  const prev = pending.get(key);
  const id = prev && prev.json === json ? prev.id : uuid();
  pending.set(key, { json, id });
  try {
    const answer = await api(method, path, { id, ...fields });
    pending.delete(key);
    return answer;
  } catch (e) {
    if (!(e instanceof ApiError && e.transient)) pending.delete(key);
    throw e;
  }
}

/** The log position of a command's answer, or "?" if it has none. */
export const positionOf = (answer) =>
  answer && Number.isFinite(answer.position) ? answer.position : "?";
