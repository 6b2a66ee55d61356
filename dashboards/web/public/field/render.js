// Vigil field page: what the officer sees besides the form: who is logged in and the login
// card's reason, the network line, and the list of reports with their states.
//
// States, in words and colour (`data-state` on each item): saved (Saved on phone, and why it
// waits), sending, acknowledged (with the log position; at a field site "Pending at site",
// `data-at-site`, when the site took it into its outbox), refused (with the server's reason,
// advice, and the buttons Edit and resend / Dismiss).

import { $, h, plural } from "./dom.js";
import { channel, store, waiting } from "./outbox.js";
import { session, loginReason, tokenValid, sendableBy, setLoginReason } from "./session.js";
import { reachable } from "./net.js";
import { retryText } from "./queue.js";
import { occurredTouched, localValue, setNow, editRefused, dismiss } from "./form.js";

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

/** After any write: redraw here and in the page's other tabs. */
export function changed() {
  channel?.postMessage("changed");
  renderList();
}

export function renderWho() {
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

export function renderNet(recs) {
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
  if (r.state === "acknowledged" && r.ack?.site) {
    state = `Pending at site ${r.ack.site} · kept there, it goes to the centre when the site's link is up`;
  } else if (r.state === "acknowledged") {
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
      "data-at-site": r.ack?.site || null,
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
export async function renderList() {
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

export function showStoreWarning(text) {
  const el = $("store-warning");
  el.hidden = !text;
  el.textContent = text || "";
}

/** Every second: the retry countdowns; "when" follows the clock until edited; the login
 *  form comes back once the session has run out. */
export function tick() {
  for (const el of document.querySelectorAll("[data-retry]")) {
    el.textContent = el.textContent.replace(/(retrying (in \d+ s|now|soon))$/, retryText());
  }
  const now = localValue(new Date());
  if (!occurredTouched && $("occurred_at").value !== now && document.activeElement !== $("occurred_at")) setNow();
  if ($("login-section").hidden && !tokenValid()) {
    if (session?.token) setLoginReason("expired");
    renderWho();
    renderList();
  }
}
