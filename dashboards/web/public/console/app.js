// Vigil operations console: the shell around the three sections.
//
// Owns: the login form and the header (who, role, log out), the tabs (Orders, Surges,
// Hostage cases, Broadcasts; the open tab and order kept in the URL's #hash, so a reload
// lands on the same place), the clock that drives refreshes, and the keyboard shortcut "/"
// (focus the open section's search).
//
// Promises:
// - Nothing but the login form shows without a valid token; a 401 on any call, or the
//   token's expiry (judged on the server's clock), brings the login form back, with the
//   username kept, and the section comes back as it was after the login.
// - An agency focal point sees the Broadcasts tab only (the broadcasts sent to their agency,
//   to acknowledge); everyone else sees every tab, and the server judges each call.
// - The open section refreshes itself every second's tick as it sees fit (orders and surges:
//   the open item every 5 s, lists every 10 s; hostage-case details never by themselves,
//   since each read is audited); nothing refreshes while the page is hidden, and everything
//   visible refreshes as soon as it is shown again.
//
// Sections are modules with the same face: init(), show(), hide(), tick(now), focusSearch(),
// reset() (on log out). Plain ES modules, no build step, no library.

import { api, getSession, setSession, tokenValid, onSessionLost, role, tokenClaims } from "./api.js";
import { $, loadCountries, words } from "./ui.js";
import * as orders from "./orders.js";
import * as surges from "./surges.js";
import * as hostage from "./hostage.js";
import * as broadcasts from "./broadcasts.js";

const SECTIONS = { orders, surges, hostage, broadcasts };
const ROLES_FOR_CONSOLE = ["duty_officer", "crisis_manager", "admin"];
/** The tabs a role sees, where it is not every tab. */
const TABS_FOR_ROLE = { agency_focal_point: ["broadcasts"] };

/** The sections the logged-in role sees, in tab order. */
const visibleSections = () => TABS_FOR_ROLE[role()] ?? Object.keys(SECTIONS);

let current = null; // name of the open section
let loginWhy = "";

// ---------------------------------------------------------------- login

async function login(ev) {
  ev.preventDefault();
  const username = $("username").value.trim();
  const password = $("password").value;
  if (!username || !password) {
    loginError("Type your username and your password, then press Enter.");
    return;
  }
  const button = $("login-submit");
  button.disabled = true;
  button.textContent = "Logging in…";
  loginError(null);
  try {
    const { res, data } = await api("POST", "/api/v1/auth/login", { username, password }, { auth: false, raw: true });
    if (!data?.token) throw new Error("The answer did not come from Vigil: reload the page, then try again.");
    const date = Date.parse(res.headers.get("Date") || "");
    setSession({
      username,
      token: data.token,
      role: data.role ?? null,
      scope: data.scope ?? null,
      // The login answer does not name the agency (yet); the token's claims do.
      agency: data.agency ?? tokenClaims(data.token)?.agency ?? null,
      expires_at: data.expires_at ?? null,
      skew_ms: Number.isNaN(date) ? 0 : date - Date.now(),
    });
    $("password").value = "";
    loginWhy = "";
    render();
  } catch (e) {
    if (e?.status === 401) loginError("Wrong username or password. Check both and try again.");
    else loginError(e?.message || String(e));
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

function logout() {
  setSession(null);
  loginWhy = "";
  for (const s of Object.values(SECTIONS)) s.reset();
  render();
}

/** The server said 401 (or the token ran out): back to the login form. */
function sessionLost(why) {
  loginWhy = why || "Your session has ended: log in again.";
  render();
}

// ---------------------------------------------------------------- rendering

function render() {
  const ok = tokenValid();
  const s = getSession();
  $("login-section").hidden = ok;
  $("tabs").hidden = !ok;
  $("logout").hidden = !s?.username;
  if (ok) {
    const bits = [
      s.role ? words(s.role) : null,
      s.scope ? `country ${s.scope}` : null,
      s.agency ? `agency ${s.agency}` : null,
    ].filter(Boolean);
    $("who").textContent = `${s.username}${bits.length ? ` · ${bits.join(" · ")}` : ""}`;
    $("who").dataset.role = s.role || "";
    const note = $("role-note");
    note.hidden = ROLES_FOR_CONSOLE.includes(s.role) || Boolean(TABS_FOR_ROLE[s.role]);
    note.textContent = note.hidden
      ? ""
      : `This console is for duty officers and crisis managers; as ${words(s.role || "unknown role")} some lists and actions will be refused.`;
    open(routeTab(), { fromRoute: true });
  } else {
    $("who").textContent = s?.username ? `${s.username} · not logged in` : "Not logged in";
    $("role-note").hidden = true;
    if (current) SECTIONS[current].hide();
    for (const name of Object.keys(SECTIONS)) $(`tab-${name}`).hidden = false;
    for (const name of Object.keys(SECTIONS)) $(name).hidden = true;
    current = null;
    $("login-title").textContent = s?.username ? "Log in again" : "Log in";
    $("login-why").textContent = loginWhy;
    $("login-why").hidden = !loginWhy;
    if (s?.username && !$("username").value) $("username").value = s.username;
    const focus = $("username").value ? $("password") : $("username");
    if (document.activeElement !== $("username") && document.activeElement !== $("password")) focus.focus();
  }
}

// ---------------------------------------------------------------- tabs and the #hash

/** "#orders/<id>" → {tab: "orders", id}; a tab the role does not see → its first tab. */
function route() {
  const [tab, id] = location.hash.replace(/^#/, "").split("/");
  const seen = visibleSections();
  return seen.includes(tab) ? { tab, id: id || null } : { tab: seen[0], id: null };
}
const routeTab = () => route().tab;

function open(name, { fromRoute = false } = {}) {
  if (!tokenValid()) return;
  const seen = visibleSections();
  if (!seen.includes(name)) name = seen[0];
  for (const n of Object.keys(SECTIONS)) $(`tab-${n}`).hidden = !seen.includes(n);
  if (current !== name) {
    if (current) SECTIONS[current].hide();
    for (const n of Object.keys(SECTIONS)) {
      $(n).hidden = n !== name;
      const tab = $(`tab-${n}`);
      tab.setAttribute("aria-selected", String(n === name));
      tab.tabIndex = n === name ? 0 : -1;
    }
    current = name;
    SECTIONS[name].show(fromRoute ? route().id : null);
  } else if (fromRoute) {
    SECTIONS[name].show(route().id);
  }
  const hashTab = location.hash.replace(/^#/, "").split("/")[0];
  if ((!fromRoute && route().tab !== name) || (hashTab && hashTab !== name)) history.replaceState(null, "", `#${name}`);
}

/** Sections call this when they open or close an item, to keep the #hash in step. */
function setRoute(tab, id) {
  const want = id ? `#${tab}/${id}` : `#${tab}`;
  if (location.hash !== want) history.replaceState(null, "", want);
}

function onTabKey(ev) {
  const names = visibleSections();
  const i = names.indexOf(current);
  let next = null;
  if (ev.key === "ArrowRight") next = names[(i + 1) % names.length];
  else if (ev.key === "ArrowLeft") next = names[(i + names.length - 1) % names.length];
  else if (ev.key === "Home") next = names[0];
  else if (ev.key === "End") next = names[names.length - 1];
  if (!next) return;
  ev.preventDefault();
  open(next);
  $(`tab-${next}`).focus();
}

// ---------------------------------------------------------------- keyboard, clock

function isTyping(el) {
  if (!el) return false;
  const tag = el.tagName;
  return el.isContentEditable || tag === "TEXTAREA" || tag === "SELECT" ||
    (tag === "INPUT" && !["checkbox", "radio", "button", "submit"].includes(el.type));
}

function onKey(ev) {
  if (ev.key === "/" && !ev.ctrlKey && !ev.metaKey && !ev.altKey && !isTyping(document.activeElement)) {
    if (current && SECTIONS[current].focusSearch()) ev.preventDefault();
  }
}

function tick() {
  if (!tokenValid()) {
    if (current) {
      const s = getSession();
      sessionLost(s?.token ? "Your session has expired: log in again." : loginWhy);
    }
    return;
  }
  if (document.visibilityState !== "visible" || !current) return;
  SECTIONS[current].tick(Date.now());
}

function start() {
  onSessionLost(sessionLost);
  for (const s of Object.values(SECTIONS)) s.init({ setRoute, role });
  $("login").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  for (const n of Object.keys(SECTIONS)) $(`tab-${n}`).addEventListener("click", () => open(n));
  $("tabs").addEventListener("keydown", onTabKey);
  document.addEventListener("keydown", onKey);
  addEventListener("hashchange", () => open(routeTab(), { fromRoute: true }));
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && current && tokenValid()) SECTIONS[current].tick(Date.now(), true);
  });
  setInterval(tick, 1000);
  const s = getSession();
  if (s?.token && !tokenValid()) loginWhy = "Your session has expired: log in again.";
  render();
  loadCountries();
}

start();
