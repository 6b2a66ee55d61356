// Vigil wall screen: the top of the screen: the freshness banner (or the new-token form),
// the header (status pill, log position, clocks), the counters and the map's legend.

import { html } from "../vendor/htm/preact-standalone.module.js";
import { board, countries } from "./board.js";
import { conn, useToken } from "./connection.js";
import { LEVELS, ZONES, clockFmt, dayFmt, utcSeconds, shortTime, ageText, num, cls } from "./format.js";

function Clocks({ now }) {
  const d = new Date(now);
  return html`<div class="clocks">
    ${ZONES.map(
      ([name, tz]) => html`<div class=${cls("clock", tz === "UTC" && "utc")} key=${tz}>
        <div class="t">${clockFmt.get(tz).format(d)}</div>
        <div class="z">${name} · ${dayFmt.get(tz).format(d)}</div>
      </div>`,
    )}
  </div>`;
}

function TokenNeeded() {
  const need = conn.tokenNeeded;
  const why =
    need.code === "token_expired"
      ? "this screen's token has expired"
      : need.code === "token_revoked"
        ? "this screen's token was revoked"
        : "the centre does not accept this screen's token";
  const submit = (e) => {
    e.preventDefault();
    useToken(new FormData(e.target).get("token") ?? "");
  };
  return html`<div class="banner offline token" data-testid="token-needed" data-code=${need.code} role="alert">
    <span class="big">NEW TOKEN NEEDED</span>
    <span class="why"
      >${why}; the board is not updated. Make one with
      <code>vigil token create --role wall_screen</code> and paste it here, or open this page
      with <code>?token=…</code>.</span
    >
    <form class="token-form" onSubmit=${submit}>
      <input name="token" type="password" autocomplete="off" placeholder="new token" aria-label="new token" />
      <button type="submit">Use</button>
    </form>
  </div>`;
}

export function Banner({ fr, now }) {
  if (conn.tokenNeeded) return html`<${TokenNeeded} />`;
  if (fr.state === "live") return null;
  const big =
    fr.age === null ? "STALE — no data received yet" : `STALE — data is ${fr.age} s old`;
  let why;
  if (fr.state === "offline") {
    const wait = conn.retryTimer !== null ? Math.max(0, Math.ceil((conn.retryAt - now) / 1000)) : 0;
    const attempt = conn.attempts + (conn.retryTimer !== null ? 1 : 0);
    why = `OFFLINE: no connection to the centre · reconnecting${wait ? ` in ${wait} s` : "…"} (attempt ${attempt})`;
  } else if (!board) {
    why = "connected, waiting for the board";
  } else {
    why = `connected, but no heartbeat from the centre since ${utcSeconds.format(new Date(conn.lastMsgAt))}Z`;
  }
  if (conn.error) why += ` · server says ${conn.error.code}: ${conn.error.message}`;
  return html`<div class=${cls("banner", fr.state)} data-testid="stale-banner" role="alert">
    <span class="big">${big}</span>
    <span class="why">${why}</span>
  </div>`;
}

export function Header({ fr, now }) {
  const label = { live: "LIVE", stale: "STALE", offline: "OFFLINE" }[fr.state];
  const pos = board ? board.position : null;
  return html`<header class="head">
    <div class="brand">VIGIL</div>
    <div
      class=${cls("status", fr.state)}
      data-testid="status"
      data-state=${fr.state}
      data-age=${fr.age ?? ""}
      title=${conn.heartbeat ? `last heartbeat: position ${conn.heartbeat.position} at ${conn.heartbeat.at}` : ""}
    >
      <span class="dot"></span><span>${label}</span><span class="age">${ageText(fr.age)}</span>
    </div>
    <div class="pos" data-testid="position" data-position=${pos ?? ""}>
      <div>log position <b>${pos ?? "—"}</b></div>
      <div>last event <b>${board?.as_of ? shortTime(board.as_of, now) : "—"}</b></div>
    </div>
    ${conn.error && fr.state === "live"
      ? html`<div class="err">server: ${conn.error.code}</div>`
      : null}
    <div class="spacer"></div>
    <${Clocks} now=${now} />
  </header>`;
}

const COUNTERS = [
  ["open_incidents", "Open incidents"],
  ["unverified_incidents", "Unverified incidents", (v) => v > 0 && "warn"],
  ["countries_level_5_plus", "Countries at L5+", (v) => v > 0 && "alarm"],
  ["hostage_cases", "Hostage cases", (v) => v > 0 && "alarm"],
  ["persons_held", "Persons held", (v) => v > 0 && "alarm"],
  ["active_surges", "Surges active"],
  ["active_orders", "Relocation / evac orders"],
  [
    "broadcasts_awaiting_ack",
    "Broadcasts awaiting ack",
    (v, c) =>
      num(c.broadcast_deliveries_failed) > 0
        ? "alarm"
        : (v > 0 || num(c.broadcasts_awaiting_approval) > 0) && "warn",
  ],
];

/** The line under a counter: casualties under incidents; approvals and failed deliveries
 * under broadcasts (each with its own counter-<key> test hook). */
function CounterSub({ name }) {
  if (!board) return null;
  const c = board.counters ?? {};
  if (name === "open_incidents") {
    return html`<div class="sub">${num(c.casualties_killed)} killed · ${num(c.casualties_injured)} injured</div>`;
  }
  if (name === "broadcasts_awaiting_ack") {
    const approval = num(c.broadcasts_awaiting_approval);
    const failed = num(c.broadcast_deliveries_failed);
    return html`<div class="sub">
      <span
        class=${cls(approval > 0 && "sub-warn")}
        data-testid="counter-broadcasts_awaiting_approval"
        data-value=${approval}
        >${approval} to approve</span
      >${" · "}<span
        class=${cls(failed > 0 && "sub-alarm")}
        data-testid="counter-broadcast_deliveries_failed"
        data-value=${failed}
        >${failed} failed</span
      >
    </div>`;
  }
  return null;
}

export function Counters() {
  const c = board?.counters ?? {};
  return html`<section class="counters">
    ${COUNTERS.map(([key, label, tone]) => {
      const v = board ? num(c[key]) : null;
      return html`<div
        class=${cls("counter", v !== null && tone && tone(v, c))}
        key=${key}
        data-testid=${`counter-${key}`}
        data-value=${v ?? ""}
      >
        <div class="value">${v ?? "—"}</div>
        <div class="label">${label}</div>
        <${CounterSub} name=${key} />
      </div>`;
    })}
  </section>`;
}

export function Legend() {
  const count = [0, 0, 0, 0, 0, 0, 0];
  for (const [, c] of countries()) {
    if (Number.isInteger(c?.level) && c.level >= 1 && c.level <= 6) count[c.level] += 1;
  }
  return html`<div class="legend" data-testid="legend">
    <span class="lh">Level</span>
    ${[6, 5, 4, 3, 2, 1].map(
      (l) => html`<span class="item" key=${l}>
        <span class=${`sw l${l}`}></span><b>L${l}</b>${` ${LEVELS[l]}`}<span class="dim">${` (${count[l]})`}</span>
      </span>`,
    )}
    <span class="item"><span class="sw l0"></span>none</span>
    <span class="lh">Incidents</span>
    ${[1, 2, 3, 4, 5].map((s) => html`<span class=${`tag s${s}`} key=${s}>SEV ${s}</span>`)}
    <span class="dim">dashed = unverified</span>
    <nav class="links chrome">
      <a href="/api/v1/boards/situation?view=wall_screen">board JSON</a>
      <a href="/docs">API</a>
      <a href="?kiosk">kiosk mode</a>
    </nav>
  </div>`;
}
