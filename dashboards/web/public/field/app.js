// Vigil field page: flash reports from phones on weak, intermittent networks.
//
// Owns: nothing of its own but the start: the parts are modules named for what they own,
// each with its promises in its header:
// - outbox.js: the outbox (IndexedDB), where reports wait on the phone;
// - session.js: the session and the officer's preferences (localStorage);
// - net.js: one exchange with the centre;
// - queue.js: the queue that empties the outbox into POST /api/v1/incidents;
// - login.js: the login card and log out;
// - form.js: the report form, and Edit and resend / Dismiss of a refused report;
// - render.js: who is logged in, the network line, the list of reports;
// - dom.js: `$` and `h`.
// This file wires the page's events, asks for persistent storage and registers ./sw.js
// (scope /field/), which keeps the page itself available offline (every module above is in
// its SHELL list). The modules call one another's functions (function declarations: none
// runs another's code while the modules load).
//
// Promises of the whole page (a report lost or counted twice misleads the whole centre):
// saved before sent (form.js), same id and same body on every resend (queue.js), one sender,
// nothing dropped behind the officer's back (queue.js), reports sent only with their
// owner's token (session.js).
//
// Plain ES modules, no build step, no library. Everything the officer sees is built with
// textContent (no HTML from data).

import { $ } from "./dom.js";
import { db, channel, openOutbox, recover } from "./outbox.js";
import { SESSION_KEY, session, loadJson, tokenValid, setSession, setLoginReason } from "./session.js";
import { flush, resetBackoff } from "./queue.js";
import { login, logout } from "./login.js";
import { fillForm, loadCountries, wireForm } from "./form.js";
import { renderList, renderWho, showStoreWarning, tick } from "./render.js";

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

function wire() {
  $("login").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  wireForm();
  addEventListener("online", () => {
    resetBackoff();
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
    setSession(loadJson(SESSION_KEY));
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
    await openOutbox();
  } catch (e) {
    showStoreWarning(
      `This browser cannot keep reports on the phone (${e?.message || e}). Reports are kept in this page only: ` +
        "keep it open until each one says Acknowledged, or use another browser.",
    );
  }
  try {
    await recover();
  } catch (e) {
    showStoreWarning(`This phone could not read the saved reports (${e?.message || e}). Reload the page.`);
  }
  fillForm(session?.scope);
  if (session?.token && !tokenValid()) setLoginReason("expired");
  renderWho();
  await renderList();
  flush();
  persistStorage();
  registerWorker();
  loadCountries();
}

start();
