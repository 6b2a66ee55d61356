// Vigil operations console: the shell around the sections.
//
// Owns: the login form and the header (who, role, log out), the tabs (one per section the
// role may read; the open tab and item kept in the URL's #hash, so a reload lands on the same
// place), the clock that drives refreshes, and the keyboard shortcut "/" (the open section's
// first filter).
//
// Promises:
// - Nothing but the login form shows without a valid token; a 401 on any call, or the
//   token's expiry (judged on the server's clock), brings the login form back, with the
//   username kept, and the section comes back as it was after the login.
// - A role sees the tabs it may read (an agency focal point: Broadcasts only); the actions
//   it may never take are not shown; the server judges each call.
// - The open section refreshes itself on the clock's tick as its controller sees fit;
//   nothing refreshes while the page is hidden, and everything visible refreshes as soon as
//   it is shown again.
//
// Every section is a description drawn by controller.js `Section` with its own `ListDetail`.

import { api, getSession, setSession, tokenValid, onSessionLost, role, tokenClaims } from "./api.js";
import { html, mount, redraw, words, loadCountries, may } from "./kit.js";
import { Section } from "./controller.js";
import * as incidents from "./incidents.js";
import * as levels from "./levels.js";
import * as orders from "./orders.js";
import * as surges from "./surges.js";
import * as hostage from "./hostage.js";
import * as clearances from "./clearances.js";
import * as broadcasts from "./broadcasts.js";

const SECTIONS = [incidents, levels, orders, surges, hostage, clearances, broadcasts].map((m) => m.section);
const byName = new Map(SECTIONS.map((s) => [s.name, s]));
const ROLES_FOR_CONSOLE = ["duty_officer", "crisis_manager", "admin", "agency_focal_point"];

const shell = { current: null, loginWhy: "", loginError: null, loggingIn: false };

/** The sections the logged-in role may read, in tab order. */
const visible = () => SECTIONS.filter((s) => may(s.roles));

// ---------------------------------------------------------------- login

async function login(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const username = form.elements.namedItem("username").value.trim();
  const password = form.elements.namedItem("password").value;
  if (!username || !password) {
    shell.loginError = "Type your username and your password, then press Enter.";
    redraw();
    return;
  }
  shell.loggingIn = true;
  shell.loginError = null;
  redraw();
  try {
    const { res, data } = await api("POST", "/api/v1/auth/login", { username, password }, { auth: false, raw: true });
    if (!data?.token) throw new Error("The answer did not come from Vigil: reload the page, then try again.");
    const date = Date.parse(res.headers.get("Date") || "");
    setSession({
      username,
      token: data.token,
      role: data.role ?? null,
      scope: data.scope ?? null,
      // The login answer does not name the agency; the token's claims do.
      agency: data.agency ?? tokenClaims(data.token)?.agency ?? null,
      expires_at: data.expires_at ?? null,
      skew_ms: Number.isNaN(date) ? 0 : date - Date.now(),
    });
    form.elements.namedItem("password").value = "";
    shell.loginWhy = "";
  } catch (e) {
    shell.loginError = e?.status === 401 ? "Wrong username or password. Check both and try again." : e?.message || String(e);
  } finally {
    shell.loggingIn = false;
    redraw();
    if (tokenValid()) open(route().tab, { fromRoute: true });
  }
}

function logout() {
  setSession(null);
  shell.loginWhy = "";
  shell.current = null;
  for (const s of SECTIONS) s.c.reset();
  redraw();
}

/** The server said 401 (or the token ran out): back to the login form. */
function sessionLost(why) {
  shell.loginWhy = why || "Your session has ended: log in again.";
  if (shell.current) byName.get(shell.current).c.hide();
  shell.current = null;
  redraw();
}

// ---------------------------------------------------------------- tabs and the #hash

/** "#orders/<id>" → {tab: "orders", id}; a tab the role does not see → its first tab. */
function route() {
  const [tab, id] = location.hash.replace(/^#/, "").split("/");
  const seen = visible().map((s) => s.name);
  return seen.includes(tab) ? { tab, id: id ? decodeURIComponent(id) : null } : { tab: seen[0], id: null };
}

function open(name, { fromRoute = false } = {}) {
  if (!tokenValid()) return;
  const seen = visible().map((s) => s.name);
  if (!seen.includes(name)) name = seen[0];
  if (!name) return;
  const s = byName.get(name);
  if (shell.current !== name) {
    if (shell.current) byName.get(shell.current).c.hide();
    shell.current = name;
    redraw();
    s.c.show(fromRoute ? route().id : null);
  } else if (fromRoute) {
    s.c.show(route().id);
  }
  const hashTab = location.hash.replace(/^#/, "").split("/")[0];
  if (hashTab !== name) history.replaceState(null, "", `#${name}${s.c.openId ? `/${encodeURIComponent(s.c.openId)}` : ""}`);
  redraw();
}

/** Sections call this when they open or close an item, to keep the #hash in step. */
function setRoute(tab, id) {
  const want = id ? `#${tab}/${encodeURIComponent(id)}` : `#${tab}`;
  if (location.hash !== want) history.replaceState(null, "", want);
}

function onTabKey(ev) {
  const names = visible().map((s) => s.name);
  const i = names.indexOf(shell.current);
  const next = { ArrowRight: names[(i + 1) % names.length], ArrowLeft: names[(i + names.length - 1) % names.length], Home: names[0], End: names[names.length - 1] }[ev.key];
  if (!next) return;
  ev.preventDefault();
  open(next);
  document.getElementById(`tab-${next}`)?.focus();
}

// ---------------------------------------------------------------- drawing

function Header() {
  const ok = tokenValid();
  const s = getSession();
  const bits = ok ? [s.role ? words(s.role) : null, s.scope ? `country ${s.scope}` : null, s.agency ? `agency ${s.agency}` : null].filter(Boolean) : [];
  const who = ok ? `${s.username}${bits.length ? ` · ${bits.join(" · ")}` : ""}` : s?.username ? `${s.username} · not logged in` : "Not logged in";
  const seen = new Set(visible().map((x) => x.name));
  return html`<header class="top">
    <span class="brand">VIGIL <small>operations console</small></span>
    <nav id="tabs" class="tabs" role="tablist" aria-label="Sections" hidden=${!ok} onKeyDown=${onTabKey}>
      ${SECTIONS.map((x) => html`<button key=${x.name} type="button" role="tab" id=${`tab-${x.name}`} data-testid=${`tab-${x.name}`}
        data-tab=${x.name} aria-controls=${x.name} aria-selected=${String(shell.current === x.name)} tabIndex=${shell.current === x.name ? 0 : -1}
        hidden=${!seen.has(x.name)} onClick=${() => open(x.name)}>${x.tab}</button>`)}
    </nav>
    <span id="who" class="who" data-testid="who" data-role=${ok ? s.role || "" : ""}>${who}</span>
    <button type="button" id="logout" data-testid="logout" class="light" hidden=${!s?.username} onClick=${logout}>Log out</button>
  </header>`;
}

/** The login form; kept in the page (hidden) while logged in, so its hooks always answer. */
function Login({ hidden }) {
  const s = getSession();
  return html`<section id="login-section" class="card login-card" hidden=${hidden}>
    <h1 id="login-title">${s?.username ? "Log in again" : "Log in"}</h1>
    <p id="login-why" class="why" hidden=${!shell.loginWhy}>${shell.loginWhy}</p>
    <form id="login" data-testid="login" novalidate onSubmit=${login}>
      <label class="field"><span>Username</span>
        <input id="username" data-testid="username" name="username" autocomplete="username" autocapitalize="none"
          spellcheck="false" maxlength="128" required defaultValue=${s?.username ?? ""} /></label>
      <label class="field"><span>Password</span>
        <input id="password" data-testid="password" name="password" type="password" autocomplete="current-password" maxlength="1024" required /></label>
      <p id="login-error" class="error" data-testid="login-error" role="alert" hidden=${!shell.loginError}>${shell.loginError || ""}</p>
      <button type="submit" id="login-submit" data-testid="login-submit" class="primary" disabled=${shell.loggingIn}>${shell.loggingIn ? "Logging in…" : "Log in"}</button>
    </form>
  </section>`;
}

function App() {
  const ok = tokenValid();
  const s = ok ? byName.get(shell.current) : null;
  const note = ok && !ROLES_FOR_CONSOLE.includes(role())
    ? `This console is for duty officers and crisis managers; as ${words(role() || "unknown role")} some lists and actions will be refused.`
    : null;
  return html`<${Header} />
    <main>
      <p id="role-note" class="note" hidden=${!note}>${note || ""}</p>
      <${Login} hidden=${ok} />
      ${ok && s ? html`<${Section} key=${s.name} s=${s} />` : null}
    </main>`;
}

// ---------------------------------------------------------------- clock and start

function isTyping(el) {
  const tag = el?.tagName;
  return Boolean(el) && (el.isContentEditable || tag === "TEXTAREA" || tag === "SELECT" ||
    (tag === "INPUT" && !["checkbox", "radio", "button", "submit"].includes(el.type)));
}

function tick() {
  if (!tokenValid()) {
    if (shell.current) sessionLost(getSession()?.token ? "Your session has expired: log in again." : shell.loginWhy);
    return;
  }
  if (document.visibilityState !== "visible" || !shell.current) return;
  byName.get(shell.current).c.tick(Date.now());
}

function start() {
  onSessionLost(sessionLost);
  for (const s of SECTIONS) s.c.setRoute = setRoute;
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "/" && !ev.ctrlKey && !ev.metaKey && !ev.altKey && !isTyping(document.activeElement) && shell.current) {
      const first = document.querySelector(`#${shell.current} .list-head select, #${shell.current} .list-head input`);
      if (first) {
        ev.preventDefault();
        first.focus();
      }
    }
  });
  addEventListener("hashchange", () => open(route().tab, { fromRoute: true }));
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && shell.current && tokenValid()) byName.get(shell.current).c.tick(Date.now(), true);
  });
  setInterval(tick, 1000);
  const s = getSession();
  if (s?.token && !tokenValid()) shell.loginWhy = "Your session has expired: log in again.";
  mount(App, document.getElementById("app"));
  if (tokenValid()) open(route().tab, { fromRoute: true });
  else document.getElementById(s?.username ? "password" : "username")?.focus();
  loadCountries();
}

start();
