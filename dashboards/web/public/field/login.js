// Vigil field page: the login card and log out.
//
// Login: POST /api/v1/auth/login; the answer's token, role, scope and expiry are kept with
// the username and the clock skew read from the answer's Date header. The queue is flushed
// right after a login. Log out asks first when the officer still has unsent reports: they
// stay on the phone and wait for that officer.

import { $, plural } from "./dom.js";
import { store, waiting } from "./outbox.js";
import { SESSION_KEY, session, saveJson, setSession, setLoginReason } from "./session.js";
import { request, netReason, retryAfter, errorOf } from "./net.js";
import { flush, resetBackoff } from "./queue.js";
import { setCountry } from "./form.js";
import { renderList, renderWho } from "./render.js";

const API_LOGIN = "/api/v1/auth/login";

export async function login(ev) {
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
      renderList();
      loginError(
        `Could not reach the centre (${netReason(e)}). Your saved reports stay on this phone: ` +
          "try again when you have a network.",
      );
      return;
    }
    if (res.ok && data?.token) {
      const date = Date.parse(res.headers.get("Date") || "");
      setSession({
        username,
        token: data.token,
        role: data.role ?? null,
        scope: data.scope ?? null,
        expires_at: data.expires_at ?? null,
        skew_ms: Number.isNaN(date) ? 0 : date - Date.now(),
      });
      saveJson(SESSION_KEY, session);
      $("password").value = "";
      setLoginReason("none");
      if (session.scope && !$("country").value) setCountry(session.scope);
      renderWho();
      resetBackoff();
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

export async function logout() {
  const mine = waiting(await store.all()).filter((r) => r.owner === session?.username).length;
  if (
    mine &&
    !confirm(
      `${plural(mine, "report")} not sent yet. They stay on this phone and are sent when ${session.username} logs in again. Log out?`,
    )
  ) {
    return;
  }
  setSession(null);
  saveJson(SESSION_KEY, null);
  setLoginReason("none");
  renderWho();
  renderList();
}
