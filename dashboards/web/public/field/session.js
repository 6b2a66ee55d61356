// Vigil field page: the session (localStorage "vigil.field.session": username, token, role,
// scope, expires_at, clock skew) and the officer's preferences ("vigil.field.prefs").
//
// Reports are sent with the token of the officer who saved them (or the next one to log in,
// for reports saved before any login): another officer's login never sends them
// (`sendableBy`). Expiry is judged on the server's clock (`serverNow`: phones' clocks drift).

export const SESSION_KEY = "vigil.field.session";
export const PREFS_KEY = "vigil.field.prefs";

export function loadJson(key) {
  try {
    return JSON.parse(localStorage.getItem(key) || "null");
  } catch {
    return null;
  }
}

export function saveJson(key, value) {
  try {
    if (value == null) localStorage.removeItem(key);
    else localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // Storage full or blocked: the session lasts as long as the page.
  }
}

/** {username, token, role, scope, expires_at, skew_ms} or null. */
export let session = loadJson(SESSION_KEY);
/** Why the login form shows: "none" | "expired" | "401". */
export let loginReason = "none";

/** The server's clock now, as well as we know it (phones' clocks drift). */
export const serverNow = () => Date.now() + (session?.skew_ms || 0);

export function tokenValid() {
  if (!session?.token) return false;
  const exp = Date.parse(session.expires_at || "");
  return Number.isNaN(exp) || exp > serverNow() + 5000;
}

/** Whether `rec` may be sent with the current session (see the header). */
export const sendableBy = (rec) => rec.owner == null || rec.owner === session?.username;

export function setSession(s) {
  session = s;
}

export function setLoginReason(reason) {
  loginReason = reason;
}

/** The centre no longer takes this token (401): the session keeps its username only. */
export function dropToken(reason) {
  if (session) {
    session = { ...session, token: null };
    saveJson(SESSION_KEY, session);
  }
  loginReason = reason;
}
