// Vigil wall screen at a field site (`vigil site`): the site's link to the centre and its
// outbox, in a panel under the header, big enough to read across a room.
//
// Owns: polling GET /api/v1/site/state every POLL_MS with the screen's token. A 404 means
// this gateway is not at a site: polling stops and nothing is drawn (the centre's screen
// looks as before). Any other failure keeps the last state and says since when it is not
// current. The link's duration counts on from the site's own `for_seconds` (the site's
// clock, not this screen's), so a screen with a wrong clock still shows it right.

import { html } from "../vendor/htm/preact-standalone.module.js";
import { cls, num } from "./format.js";

const POLL_MS = 2000;

let state = null; // the last answer: {site, scope, link: {up, since, for_seconds, last_error?}, pending, …}
let gotAt = 0; // when it came (ms, this screen's clock)
let failing = null; // why the last poll failed, if it did
let atSite = true; // false after a 404: not a site, stop asking

/** "45 s", "12 min", "3 h 05 min", "2 d 4 h". */
export function durationText(s) {
  s = Math.max(0, Math.floor(s));
  if (s < 90) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 90) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${String(m % 60).padStart(2, "0")} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

async function poll() {
  const token = new URLSearchParams(location.search).get("token");
  try {
    const res = await fetch("/api/v1/site/state", {
      headers: token ? { Authorization: `Bearer ${token}` } : {},
      cache: "no-store",
    });
    if (res.status === 404) {
      atSite = false;
      state = null;
      return;
    }
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    state = await res.json();
    gotAt = Date.now();
    failing = null;
  } catch (e) {
    failing = e?.message || String(e);
  } finally {
    if (atSite) setTimeout(poll, POLL_MS);
  }
}

/** Starts polling (once). */
export function watchSite() {
  poll();
}

export function SitePanel({ now }) {
  if (!atSite || !state) return null;
  const link = state.link ?? {};
  const up = link.up === true;
  const forS = num(link.for_seconds) + Math.max(0, (now - gotAt) / 1000);
  const pending = num(state.pending);
  return html`<section
    class=${cls("site-panel", up ? "link-up" : "link-down", pending > 0 && "has-pending")}
    data-testid="site-panel"
    data-site=${state.site ?? ""}
    data-link=${up ? "up" : "down"}
    data-pending=${pending}
    role="status"
  >
    <div class="site-name">SITE <b>${state.site}</b><span class="dim"> · ${state.scope}</span></div>
    <div class="site-link" data-testid="site-link">
      <span class="dot"></span>LINK TO CENTRE ${up ? "UP" : "DOWN"}
      <span class="for">for ${durationText(forS)}</span>
    </div>
    <div class="site-pending" data-testid="site-pending">
      <b>${pending}</b> ${pending === 1 ? "item waits" : "items wait"} to go to the centre
    </div>
    ${!up && link.last_error ? html`<div class="site-why">${link.last_error}</div>` : null}
    ${failing ? html`<div class="site-why">not current: the site did not answer (${failing})</div>` : null}
  </section>`;
}
