// Vigil wall screen: the situation board, live over the gateway's WebSocket (/ws).
//
// Protocol (docs/PROTOCOL.md "The WebSocket", dashboards/boards/MODEL.md):
//   → {"type":"subscribe","board":"situation","view":"wall_screen","protocol":2,"since":P?,"token":T?}
//   ← snapshot (replace the board) | delta (apply ops in order, then position/as_of)
// Protocol 2: deltas are per entity (set/remove of a key, item/drop of one element of a list
// by its id, merge of some keys, timeline); an op this page does not know makes it ask for a
// fresh snapshot.
//   ← heartbeat (at least every 5 s) | error
// The page is honest about its freshness: LIVE only while it heard from the centre within the
// last 7 s; STALE when the socket is open but silent; OFFLINE when the socket is closed. It
// reconnects by itself (0.5 s → 5 s backoff) and resumes from its last position — except when
// the centre closes the socket with TOKEN_CLOSE (4001: the token is missing, invalid, expired
// or revoked): reconnecting with the same token cannot work, so the page stops and says that a
// new token is needed, with a field to paste one.
//
// No build step: plain ES module; Leaflet (window.L) and topojson-client (window.topojson) are
// loaded by index.html as deferred classic scripts; Preact + htm come as one vendored module.

import { html, render, Component } from "./vendor/htm/preact-standalone.module.js";

const BOARD = "situation";
const PROTOCOL = 2; // the board protocol this page speaks (hub::PROTOCOL in the gateway)
const VIEW = "wall_screen";
const LIVE_WINDOW_MS = 7000; // a message within this window = live
const SILENT_RECONNECT_MS = 15000; // open but silent this long: assume a dead socket, reconnect
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 5000;
const TIMELINE_SHOWN = 40;
const TOKEN_CLOSE = 4001; // the gateway's close code for a token it no longer accepts

const LEVELS = [
  null,
  "Minimal",
  "Low",
  "Moderate",
  "Substantial",
  "High",
  "Extreme",
];
const LEVEL_COLOURS = [null, "#2e7d32", "#7cb342", "#fdd835", "#fb8c00", "#e53935", "#ab47bc"];
const LAND = "#1f2c3c";
const LAND_EDGE = "#4a6485";
// Natural Earth shapes that ISO 3166-1 gives no code of their own: the boards can only name
// them by the code of the state they are part of in ISO terms.
const UNCODED_SHAPES = { Somaliland: "SO", "N. Cyprus": "CY", Kosovo: "RS" };
const ZONES = [
  ["UTC", "UTC"],
  ["New York", "America/New_York"],
  ["Geneva", "Europe/Zurich"],
  ["Nairobi", "Africa/Nairobi"],
  ["Bangkok", "Asia/Bangkok"],
];

const params = new URLSearchParams(location.search);
const KIOSK = params.has("kiosk");
let token = params.get("token");
if (KIOSK) document.documentElement.classList.add("kiosk");

// ---------------------------------------------------------------- state

/** The board as last received (MODEL.md), or null before the first snapshot. */
let board = null;
/** Timeline items after this position arrived live (they flash once when they appear). */
let freshAfter = Infinity;
/** Country names by alpha-2 code (from countries.json), filled when it loads. */
let names = {};
const conn = {
  ws: null,
  open: false,
  lastMsgAt: 0, // ms, local clock, of the last message of any type
  openedAt: 0,
  attempts: 0, // connection attempts since the last good snapshot
  backoff: BACKOFF_MIN_MS,
  retryAt: 0,
  retryTimer: null,
  error: null, // last {code, message} from the server
  heartbeat: null, // last heartbeat message
  resync: false, // next subscribe asks for a fresh snapshot
  tokenNeeded: null, // {code, message} once the centre refused this token: no reconnecting
};

// ---------------------------------------------------------------- board model

/** The object at `keys` under `root`, making objects on the way (as `boards::apply_ops`). */
function objectAt(root, keys) {
  let obj = root;
  for (const k of keys) {
    if (obj[k] === null || typeof obj[k] !== "object" || Array.isArray(obj[k])) obj[k] = {};
    obj = obj[k];
  }
  return obj;
}

/** Applies one delta op (MODEL.md) to `root` in place. Returns false for an unknown op. */
export function applyOp(root, op) {
  if (!op || typeof op !== "object") return false;
  if (op.op === "item" || op.op === "drop" || op.op === "merge") {
    const path = op.path;
    if (!Array.isArray(path) || path.length === 0) return false;
    if (op.op === "merge") {
      if (op.value && typeof op.value === "object" && !Array.isArray(op.value)) {
        Object.assign(objectAt(root, path), op.value);
      }
      return true;
    }
    const last = path[path.length - 1];
    if (op.op === "drop") {
      // Like a remove: nothing is made on the way.
      let parent = root;
      for (const k of path.slice(0, -1)) {
        parent = parent?.[k];
        if (parent === null || typeof parent !== "object") return true;
      }
      if (Array.isArray(parent[last])) parent[last] = parent[last].filter((v) => v?.id !== op.id);
      return true;
    }
    const parent = objectAt(root, path.slice(0, -1));
    // item: the element with the value's id leaves, the value goes in at `at`, `limit` kept.
    const id = op.value?.id;
    const list = Array.isArray(parent[last]) ? parent[last].filter((v) => id === undefined || v?.id !== id) : [];
    const at = Number.isInteger(op.at) && op.at >= 0 ? Math.min(op.at, list.length) : list.length;
    list.splice(at, 0, op.value);
    if (Number.isInteger(op.limit) && op.limit >= 0 && list.length > op.limit) list.length = op.limit;
    parent[last] = list;
    return true;
  }
  if (op.op === "timeline") {
    if (!Array.isArray(root.timeline)) root.timeline = [];
    root.timeline.unshift(op.value);
    const limit = Number.isInteger(op.limit) && op.limit > 0 ? op.limit : 200;
    if (root.timeline.length > limit) root.timeline.length = limit;
    return true;
  }
  if (op.op !== "set" && op.op !== "remove") return false;
  const path = op.path;
  if (!Array.isArray(path) || path.length === 0) return false;
  let obj = root;
  for (let i = 0; i < path.length - 1; i++) {
    const k = path[i];
    if (obj[k] === null || typeof obj[k] !== "object") {
      if (op.op === "remove") return true; // nothing there to remove
      obj[k] = {};
    }
    obj = obj[k];
  }
  const last = path[path.length - 1];
  if (op.op === "set") {
    obj[last] = op.value;
  } else if (Array.isArray(obj) && /^\d+$/.test(String(last))) {
    obj.splice(Number(last), 1);
  } else {
    delete obj[last];
  }
  return true;
}

function onMessage(raw) {
  let msg;
  try {
    msg = JSON.parse(raw);
  } catch {
    console.warn("wall screen: a message that is not JSON", raw);
    return;
  }
  if (!msg || typeof msg !== "object") return;
  conn.lastMsgAt = Date.now();
  if (msg.type !== "error") {
    // The centre answers: the next outage starts its backoff from the bottom again.
    conn.attempts = 0;
    conn.backoff = BACKOFF_MIN_MS;
  }
  switch (msg.type) {
    case "snapshot": {
      if (msg.board && msg.board !== BOARD) return;
      const data = msg.data && typeof msg.data === "object" ? msg.data : {};
      data.position = typeof msg.position === "number" ? msg.position : (data.position ?? 0);
      if ("as_of" in msg) data.as_of = msg.as_of;
      board = data;
      freshAfter = data.position;
      conn.error = null;
      conn.resync = false;
      break;
    }
    case "delta": {
      if (msg.board && msg.board !== BOARD) return;
      if (!board) return; // a delta before any snapshot cannot be applied
      if (typeof msg.position === "number" && msg.position <= board.position) return; // seen
      for (const op of Array.isArray(msg.ops) ? msg.ops : []) {
        if (!applyOp(board, op)) {
          // The board can no longer be trusted to equal the server's: start again from a
          // fresh snapshot rather than show a wrong picture.
          console.warn("wall screen: unknown delta op, asking for a fresh snapshot", op);
          conn.resync = true;
          dropSocket();
          schedule();
          return;
        }
      }
      if (typeof msg.position === "number") board.position = msg.position;
      if ("as_of" in msg) board.as_of = msg.as_of;
      break;
    }
    case "heartbeat":
      conn.heartbeat = msg;
      // Every delta up to a heartbeat's position was sent before it: events that changed
      // nothing on this board moved it on, so the board is as of that position.
      if (board && typeof msg.position === "number" && msg.position > board.position) {
        board.position = msg.position;
      }
      break;
    case "error":
      conn.error = { code: String(msg.code ?? "error"), message: String(msg.message ?? "") };
      console.warn("wall screen: server error", msg);
      break;
    default:
      break;
  }
  schedule();
}

// ---------------------------------------------------------------- connection

function wsUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

function subscribeMessage() {
  const m = { type: "subscribe", board: BOARD, view: VIEW, protocol: PROTOCOL };
  if (board && !conn.resync && typeof board.position === "number") m.since = board.position;
  if (token) m.token = token;
  return m;
}

function connect() {
  conn.retryTimer = null;
  conn.attempts += 1;
  let ws;
  try {
    ws = new WebSocket(wsUrl());
  } catch (e) {
    console.warn("wall screen: cannot open the socket", e);
    scheduleReconnect();
    return;
  }
  conn.ws = ws;
  ws.onopen = () => {
    if (conn.ws !== ws) return;
    conn.open = true;
    conn.openedAt = Date.now();
    ws.send(JSON.stringify(subscribeMessage()));
    schedule();
  };
  ws.onmessage = (ev) => {
    if (conn.ws === ws) onMessage(ev.data);
  };
  ws.onclose = (ev) => {
    if (conn.ws !== ws) return;
    conn.ws = null;
    conn.open = false;
    if (ev.code === TOKEN_CLOSE) {
      // The same token would be refused again: wait for a new one instead of looping.
      conn.tokenNeeded = conn.error ?? { code: "token_revoked", message: "" };
      console.warn("wall screen: the centre refused this screen's token", conn.tokenNeeded);
    } else {
      scheduleReconnect();
    }
    schedule();
  };
  ws.onerror = () => {
    /* a close event follows */
  };
}

/** Forgets the current socket at once (its late events are ignored) and reconnects. */
function dropSocket() {
  const ws = conn.ws;
  conn.ws = null;
  conn.open = false;
  if (ws) {
    try {
      ws.close();
    } catch {
      /* already closing */
    }
  }
  scheduleReconnect();
}

function scheduleReconnect() {
  if (conn.retryTimer !== null || conn.tokenNeeded) return;
  const base = conn.backoff;
  conn.backoff = Math.min(conn.backoff * 2, BACKOFF_MAX_MS);
  const delay = Math.round(base * (0.9 + Math.random() * 0.2));
  conn.retryAt = Date.now() + delay;
  conn.retryTimer = setTimeout(connect, delay);
}

/** live | stale | offline, and the age of the data in whole seconds (null: never heard). */
function freshness(now) {
  const age = conn.lastMsgAt ? Math.max(0, Math.floor((now - conn.lastMsgAt) / 1000)) : null;
  let state;
  if (!conn.open) state = "offline";
  else if (board && conn.lastMsgAt && now - conn.lastMsgAt <= LIVE_WINDOW_MS) state = "live";
  else state = "stale";
  return { state, age };
}

/** Uses a new token (pasted on the page): kept in the address, so a reload keeps it too. */
function useToken(t) {
  token = t.trim();
  if (!token) return;
  const url = new URL(location.href);
  url.searchParams.set("token", token);
  history.replaceState(null, "", url);
  conn.tokenNeeded = null;
  conn.error = null;
  conn.attempts = 0;
  conn.backoff = BACKOFF_MIN_MS;
  connect();
  schedule();
}

function watchdog(now) {
  if (!conn.open) return;
  const heard = Math.max(conn.lastMsgAt, conn.openedAt);
  if (now - heard > SILENT_RECONNECT_MS) {
    console.warn("wall screen: socket silent for 15 s, reconnecting");
    dropSocket();
  }
}

// ---------------------------------------------------------------- formatting

const clockFmt = new Map(
  ZONES.map(([, tz]) => [
    tz,
    new Intl.DateTimeFormat("en-GB", {
      timeZone: tz,
      hour: "2-digit",
      minute: "2-digit",
      second: tz === "UTC" ? "2-digit" : undefined,
      hourCycle: "h23",
    }),
  ]),
);
const dayFmt = new Map(
  ZONES.map(([, tz]) => [
    tz,
    new Intl.DateTimeFormat("en-GB", { timeZone: tz, weekday: "short", day: "numeric" }),
  ]),
);
const utcTime = new Intl.DateTimeFormat("en-GB", {
  timeZone: "UTC",
  hour: "2-digit",
  minute: "2-digit",
  hourCycle: "h23",
});
const utcSeconds = new Intl.DateTimeFormat("en-GB", {
  timeZone: "UTC",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hourCycle: "h23",
});
const utcDate = new Intl.DateTimeFormat("en-GB", { timeZone: "UTC", day: "2-digit", month: "short" });

function parseTime(s) {
  if (typeof s !== "string") return null;
  const t = Date.parse(s);
  return Number.isNaN(t) ? null : t;
}

/** "14:05Z", with the date in front when it is not today (UTC). */
function shortTime(s, now) {
  const t = parseTime(s);
  if (t === null) return "—";
  const d = new Date(t);
  const sameDay = utcDate.format(d) === utcDate.format(new Date(now));
  return `${sameDay ? "" : utcDate.format(d) + " "}${utcTime.format(d)}Z`;
}

function daysSince(s, now) {
  const t = parseTime(s);
  return t === null ? null : Math.max(0, Math.floor((now - t) / 86400000));
}

function ageText(sec) {
  if (sec === null) return "no data";
  if (sec < 120) return `${sec} s`;
  if (sec < 7200) return `${Math.floor(sec / 60)} min`;
  return `${Math.floor(sec / 3600)} h`;
}

const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : 0);
const levelName = (l) => LEVELS[l] ?? "?";
const countryName = (cc) => names[cc] ?? cc;
const cls = (...xs) => xs.filter(Boolean).join(" ");
const slug = (s) => String(s ?? "").toLowerCase().replace(/[^a-z0-9_-]/g, "");

function countries() {
  const cs = board?.countries;
  return cs && typeof cs === "object" ? Object.entries(cs) : [];
}

// ---------------------------------------------------------------- components

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

function Banner({ fr, now }) {
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

function Header({ fr, now }) {
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

function Counters() {
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

function Legend() {
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

/** Leaflet owns this DOM; Preact never re-renders it. */
class MapView extends Component {
  shouldComponentUpdate() {
    return false;
  }
  componentDidMount() {
    initMap(this.base.querySelector(".map"));
  }
  render() {
    return html`<div class="mapbox">
      <div class="map" data-testid="map"></div>
    </div>`;
  }
}

function List({ items, max, render: one, empty }) {
  if (!items.length) return html`<div class="none">${empty}</div>`;
  const shown = items.slice(0, max);
  return html`<ul>
      ${shown.map(one)}
    </ul>
    ${items.length > shown.length
      ? html`<div class="more">+ ${items.length - shown.length} more</div>`
      : null}`;
}

function HostagePanel({ now }) {
  const items = [];
  for (const [cc, c] of countries()) {
    const h = c?.hostage;
    if (h && (num(h.cases) > 0 || num(h.persons_held) > 0)) {
      const days = (Array.isArray(h.held_since) ? h.held_since : [])
        .map((s) => daysSince(s, now))
        .filter((d) => d !== null)
        .sort((a, b) => b - a);
      items.push({
        cc,
        cases: num(h.cases),
        held: num(h.persons_held),
        released: num(h.persons_released),
        deceased: num(h.persons_deceased),
        days,
      });
    }
  }
  items.sort((a, b) => (b.days[0] ?? 0) - (a.days[0] ?? 0));
  return html`<section class="panel" data-testid="panel-hostage">
    <h2><span>Hostage cases</span></h2>
    <${List}
      items=${items}
      max=${4}
      empty="No active hostage case"
      render=${(i) => html`<li key=${i.cc}>
        <span class="cc">${i.cc}</span>${countryName(i.cc)}
        <div>
          <span class="num">${i.cases}</span> ${i.cases === 1 ? "case" : "cases"}
        </div>
        <div class="hostage-counts" data-testid="hostage-counts">
          <span class="held"><span class="num">${i.held}</span> held</span>${" · "}<span class="released"
            ><span class="num">${i.released}</span> released</span
          >${" · "}<span class="deceased"><span class="num">${i.deceased}</span> deceased</span>
        </div>
        ${i.days.length
          ? html`<div class="dim">held ${i.days.map((d) => `${d} d`).join(", ")}</div>`
          : null}
      </li>`}
    />
  </section>`;
}

function SurgePanel() {
  const items = [];
  for (const [cc, c] of countries()) {
    for (const s of Array.isArray(c?.surges) ? c.surges : []) items.push({ cc, ...s });
  }
  return html`<section class="panel" data-testid="panel-surges">
    <h2><span>Surge missions</span><span>${items.length || ""}</span></h2>
    <${List}
      items=${items}
      max=${4}
      empty="No active surge"
      render=${(s) => html`<li key=${s.id ?? s.cc + s.duty_station}>
        <span class="cc">${s.cc}</span>${s.duty_station ?? ""}${" "}
        <span class=${cls("tag st", `st-${slug(s.status)}`)}>${String(s.status ?? "").toUpperCase()}</span>
        <div class="dim">
          ${"officers "}<span class="num">${num(s.officers_assigned)}</span> / ${num(s.officers_needed)}
          ${Object.entries(s.away_from ?? {}).map(([st, n]) => html` <span class="gap" data-testid="surge-gap">${st} −${n}</span>`)}
        </div>
      </li>`}
    />
  </section>`;
}

function OrdersPanel({ now }) {
  const items = [];
  for (const [cc, c] of countries()) {
    for (const o of Array.isArray(c?.orders) ? c.orders : []) items.push({ cc, ...o });
  }
  items.sort((a, b) => num(a.accounted_pct) - num(b.accounted_pct));
  return html`<section class="panel" data-testid="panel-orders">
    <h2><span>Evacuations · relocations</span></h2>
    <${List}
      items=${items}
      max=${3}
      empty="No active order"
      render=${(o) => {
        const pct =
          typeof o.accounted_pct === "number"
            ? o.accounted_pct
            : num(o.total) > 0
              ? (100 * num(o.accounted)) / num(o.total)
              : 0;
        return html`<li key=${o.id ?? o.cc + o.scope}>
          <span class="cc">${o.cc}</span>
          <span class="tag st st-active">${String(o.kind ?? "order").toUpperCase()}</span>
          ${" "}${o.scope ?? ""}
          <div>
            <span class="num">${pct.toFixed(pct % 1 ? 1 : 0)} %</span>${" accounted "}
            <span class="dim">
              (${num(o.accounted)}/${num(o.total)})${num(o.missing) ? ` · ${num(o.missing)} missing` : ""}${num(o.late_arrivals)
                ? ` · ${num(o.late_arrivals)} late`
                : ""}${num(o.left_area) ? ` · ${num(o.left_area)} left the area` : ""}${o.deadline
                ? ` · by ${shortTime(o.deadline, now)}`
                : ""}</span
            >
          </div>
          <div class=${cls("bar", pct < 50 ? "low" : pct < 90 && "mid")}>
            <i style=${{ width: `${Math.min(100, Math.max(0, pct))}%` }}></i>
          </div>
        </li>`;
      }}
    />
  </section>`;
}

const BROADCAST_STATUS = {
  awaiting_approval: "AWAITING APPROVAL",
  live: "LIVE",
  cancelled: "CANCELLED",
};

/** One broadcast: exercise badge, severity, status, escalation, time; title; the agencies'
 * sent / delivered (an agency system received it) / acknowledged (a person) / total, and
 * failed in red. A cancelled one is one title line. */
function BroadcastItem({ b, now }) {
  const total = num(b.total);
  const acked = num(b.acked);
  const sent = num(b.sent);
  const delivered = num(b.delivered);
  const failed = num(b.failed);
  const status = String(b.status ?? "");
  const open = status !== "cancelled";
  const pct = total > 0 ? (100 * acked) / total : 100;
  const facts = [];
  if (b.ack_deadline) facts.push(`ack by ${shortTime(b.ack_deadline, now)}`);
  if (num(b.resent) > 0) facts.push(`re-sent to ${num(b.resent)}`);
  if (b.rule) facts.push(`rule ${b.rule}`);
  if (!b.requires_ack && !b.internal) facts.push("no ack required");
  return html`<li
    class=${cls("bc", slug(status), b.exercise && "is-exercise", open && failed > 0 && "has-failed")}
    data-testid="broadcast"
    data-id=${b.id ?? ""}
    data-status=${status}
    data-exercise=${b.exercise ? "true" : "false"}
    data-escalated=${b.escalated ? "true" : "false"}
  >
    <div class="bc-tags">
      ${b.exercise
        ? html`<span class="exercise-badge" data-testid="broadcast-exercise">EXERCISE</span>`
        : null}
      <span class=${cls("tag", slug(b.severity))}>${String(b.severity ?? "").toUpperCase()}</span>
      <span class=${cls("tag bst", `bst-${slug(status)}`)} data-testid="broadcast-status"
        >${BROADCAST_STATUS[status] ?? status.toUpperCase()}</span
      >
      ${b.escalated
        ? html`<span class="tag bst bst-escalated" data-testid="broadcast-escalated">ESCALATED</span>`
        : null}
      ${b.internal ? html`<span class="tag bst bst-internal">INTERNAL</span>` : null}
      <span class="bc-time dim">${shortTime(b.issued_at, now)}</span>
    </div>
    <div class="title">${b.title ?? ""}</div>
    ${!open
      ? null
      : b.internal
        ? html`<div class="bc-counts dim">duty officers only · no agency</div>`
        : html`<div
            class="bc-counts"
            data-testid="broadcast-counts"
            data-sent=${sent}
            data-delivered=${delivered}
            data-acked=${acked}
            data-total=${total}
            data-failed=${failed}
          >
            ${"sent "}<span class="num">${sent}</span>${" / delivered "}<span class="num"
              >${delivered}</span
            >${" / acknowledged "}<span
              class="num"
              >${acked}</span
            >${" / of "}<span class="num">${total}</span>
            ${failed > 0
              ? html`${" "}<span class="bc-failed" data-testid="broadcast-failed">failed ${failed}</span>`
              : null}
          </div>`}
    ${open && facts.length ? html`<div class="dim bc-facts">${facts.join(" · ")}</div>` : null}
    ${num(b.suppressed) > 0
      ? html`<div class="bc-suppressed" data-testid="broadcast-suppressed" data-suppressed=${num(b.suppressed)}>
          +<span class="num">${num(b.suppressed)}</span> ${num(b.suppressed) === 1 ? "trigger" : "triggers"} damped
        </div>`
      : null}
    ${open && b.requires_ack && !b.internal && status === "live"
      ? html`<div class=${cls("bar", pct < 50 ? "low" : pct < 100 && "mid")}>
          <i style=${{ width: `${Math.min(100, pct)}%` }}></i>
        </div>`
      : null}
  </li>`;
}

function BroadcastPanel({ now }) {
  const all = Array.isArray(board?.broadcasts) ? board.broadcasts : [];
  // What needs someone first: awaiting approval, then failed or escalated, then the other
  // live ones, cancelled last (a withdrawn alert must not push a live one off the wall);
  // newest first within each, as the board lists them (Array.sort is stable).
  const rank = (b) =>
    b?.status === "awaiting_approval"
      ? 0
      : b?.status === "cancelled"
        ? 3
        : num(b?.failed) > 0 || b?.escalated
          ? 1
          : 2;
  const items = [...all].sort((a, b) => rank(a) - rank(b));
  return html`<section class="panel broadcasts" data-testid="panel-broadcasts">
    <h2><span>Broadcasts</span><span>agencies</span></h2>
    <${List}
      items=${items}
      max=${3}
      empty="No broadcast"
      render=${(b) => html`<${BroadcastItem} key=${b.id} b=${b} now=${now} />`}
    />
  </section>`;
}

function Timeline({ now }) {
  const items = Array.isArray(board?.timeline) ? board.timeline.slice(0, TIMELINE_SHOWN) : [];
  return html`<section class="panel timeline">
    <h2><span>Timeline</span><span>newest first</span></h2>
    <ol data-testid="timeline" data-count=${items.length}>
      ${items.map(
        (t, i) => html`<li key=${t?.position ?? `i${i}`} class=${cls("tl-item", slug(t?.severity), t?.position > freshAfter && "fresh")}>
          <div class="meta">
            <span>${shortTime(t?.at, now)}</span>
            ${t?.country ? html`<span class="cc">${t.country}</span>` : null}
            <span class=${cls("tag", slug(t?.severity))}>${String(t?.severity ?? "").toUpperCase()}</span>
            <span>${t?.kind ?? ""}</span>
          </div>
          <div class="text">${t?.text ?? ""}</div>
        </li>`,
      )}
      ${items.length ? null : html`<li class="none">Nothing yet</li>`}
    </ol>
  </section>`;
}

function App({ now }) {
  const fr = freshness(now);
  return html`<div class=${cls("wall", `state-${fr.state}`)}>
    <${Banner} fr=${fr} now=${now} />
    <${Header} fr=${fr} now=${now} />
    <${Counters} />
    <div class="body">
      <div class="main">
        <div class="mapbox-wrap">
          <${MapView} />
        </div>
        <${Legend} />
        <div class="row3">
          <${HostagePanel} now=${now} />
          <${SurgePanel} />
          <${OrdersPanel} now=${now} />
        </div>
      </div>
      <div class="side">
        <${Timeline} now=${now} />
        <${BroadcastPanel} now=${now} />
      </div>
    </div>
  </div>`;
}

// ---------------------------------------------------------------- map

const map = {
  leaflet: null,
  byCode: new Map(), // alpha-2 → [{layer, main}]
  levels: new Map(), // alpha-2 → level shown
  markers: new Map(), // incident id → {marker, sig}
  markerLayer: null,
};

async function initMap(el) {
  const L = window.L;
  const topojson = window.topojson;
  if (!L || !topojson) {
    el.insertAdjacentHTML("afterend", '<div class="map-missing">map library missing</div>');
    return;
  }
  const m = L.map(el, {
    // Plate carrée: the whole inhabited world fits a wide wall-screen box without the
    // Mercator blow-up of the high latitudes.
    crs: L.CRS.EPSG4326,
    zoomSnap: 0.05,
    zoomControl: !KIOSK,
    attributionControl: false,
    worldCopyJump: false,
    minZoom: 0,
    maxBounds: [
      [-90, -240],
      [90, 240],
    ],
    dragging: !KIOSK,
    scrollWheelZoom: !KIOSK,
    doubleClickZoom: !KIOSK,
    boxZoom: false,
    keyboard: !KIOSK,
    touchZoom: !KIOSK,
  });
  const fit = () => {
    m.fitBounds(
      [
        [-50, -170],
        [78, 190],
      ],
      { animate: false },
    );
    el.dataset.view = `${m.getZoom()} ${m.getBounds().toBBoxString()} ${m.getSize()}`;
  };
  fit();
  new ResizeObserver(() => {
    m.invalidateSize({ animate: false });
    fit();
  }).observe(el);
  map.leaflet = m;
  // Country labels sit under the incident markers (markers matter more).
  m.createPane("labels");
  m.getPane("labels").style.zIndex = "590";
  m.getPane("labels").style.pointerEvents = "none";
  map.markerLayer = L.layerGroup().addTo(m);

  try {
    const [atlas, codes] = await Promise.all([
      fetch("vendor/world-atlas/countries-110m.json").then((r) => r.json()),
      fetch("countries.json").then((r) => r.json()),
    ]);
    names = codes.names ?? {};
    const geo = topojson.feature(atlas, atlas.objects.countries);
    geo.features = geo.features.filter((f) => f.id !== "010"); // Antarctica: no duty stations
    for (const f of geo.features) unwrapAntimeridian(f.geometry);
    L.geoJSON(geo, {
      interactive: false,
      style: (f) => ({
        color: LAND_EDGE,
        weight: 0.8,
        fillColor: LAND,
        fillOpacity: 1,
        // Lets tests and people's devtools find a country's shape: class "cc-SO".
        className: `country cc-${codes.numeric?.[f.id] ?? UNCODED_SHAPES[f.properties?.name] ?? "none"}`,
      }),
      onEachFeature: (f, layer) => {
        const cc = codes.numeric?.[f.id] ?? UNCODED_SHAPES[f.properties?.name];
        if (!cc) return;
        if (!map.byCode.has(cc)) map.byCode.set(cc, []);
        map.byCode.get(cc).push({ layer, main: codes.numeric?.[f.id] === cc });
      },
    }).addTo(m);
    map.markerLayer.bringToFront?.();
  } catch (e) {
    console.error("wall screen: map data did not load", e);
  }
  updateMap();
  schedule();
}

/** Rings that straddle ±180° (Russia's far east, Fiji) would be drawn across the whole map:
 * move their western points east of 180° so each ring stays in one piece. */
function unwrapAntimeridian(g) {
  if (!g) return;
  const polys = g.type === "Polygon" ? [g.coordinates] : g.type === "MultiPolygon" ? g.coordinates : [];
  for (const poly of polys) {
    for (const ring of poly) {
      let min = Infinity;
      let max = -Infinity;
      for (const [lon] of ring) {
        if (lon < min) min = lon;
        if (lon > max) max = lon;
      }
      if (max - min > 180) for (const p of ring) if (p[0] < 0) p[0] += 360;
    }
  }
}

function updateMap() {
  const L = window.L;
  if (!map.leaflet || !L) return;
  // Country shading by the highest level set in the country.
  const want = new Map();
  for (const [cc, c] of countries()) {
    if (Number.isInteger(c?.level) && c.level >= 1 && c.level <= 6) want.set(cc, c.level);
  }
  for (const cc of new Set([...want.keys(), ...map.levels.keys()])) {
    const level = want.get(cc) ?? null;
    if ((map.levels.get(cc) ?? null) === level) continue;
    for (const { layer, main } of map.byCode.get(cc) ?? []) {
      layer.setStyle({
        fillColor: level ? LEVEL_COLOURS[level] : LAND,
        fillOpacity: level ? 0.85 : 1,
        color: level ? "#000" : LAND_EDGE,
        weight: level ? 1.2 : 0.8,
      });
      layer.unbindTooltip();
      if (level && level >= 4 && main) {
        layer.bindTooltip(`${cc} L${level}`, {
          permanent: true,
          direction: "left",
          offset: [-14, 0],
          pane: "labels",
          className: "country-label",
          interactive: false,
        });
      }
    }
    if (level) map.levels.set(cc, level);
    else map.levels.delete(cc);
  }
  // Incident markers, coloured by severity with the number on them.
  const seen = new Set();
  for (const [cc, c] of countries()) {
    for (const mk of Array.isArray(c?.markers) ? c.markers : []) {
      if (!mk || typeof mk.lat !== "number" || typeof mk.lon !== "number") continue;
      const id = mk.id ?? `${cc}:${mk.lat}:${mk.lon}`;
      seen.add(id);
      const sev = Math.min(5, Math.max(1, Math.round(num(mk.severity)) || 1));
      const sig = `${mk.lat},${mk.lon},${sev},${mk.verified}`;
      const old = map.markers.get(id);
      if (old && old.sig === sig) continue;
      if (old) map.markerLayer.removeLayer(old.marker);
      const size = 20 + sev * 4;
      const marker = L.marker([mk.lat, mk.lon], {
        interactive: false,
        keyboard: false,
        zIndexOffset: sev * 100,
        icon: L.divIcon({
          className: "mk-wrap",
          iconSize: [size, size],
          html: `<div class="mk s${sev}${mk.verified ? "" : " unverified"}" data-testid="marker" data-severity="${sev}">${sev}</div>`,
        }),
      });
      marker.addTo(map.markerLayer);
      map.markers.set(id, { marker, sig });
    }
  }
  for (const [id, { marker }] of map.markers) {
    if (!seen.has(id)) {
      map.markerLayer.removeLayer(marker);
      map.markers.delete(id);
    }
  }
}

// ---------------------------------------------------------------- render loop

const root = document.getElementById("app");
let pending = null;

function flush() {
  pending = null;
  const now = Date.now();
  render(html`<${App} now=${now} />`, root);
  updateMap();
  const fr = freshness(now);
  document.title = `${fr.state === "live" ? "" : fr.state.toUpperCase() + " · "}Vigil — situation`;
}

/** Coalesces bursts of messages into one render. */
function schedule() {
  if (pending === null) pending = setTimeout(flush, 40);
}

root.textContent = "";
flush();
setInterval(() => {
  watchdog(Date.now());
  flush();
}, 1000);
connect();
