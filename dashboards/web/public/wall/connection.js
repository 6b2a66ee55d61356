// Vigil wall screen: the connection to the centre, the gateway's WebSocket (/ws).
//
// Owns: the socket and its state (`conn`), the token, and what each message does.
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
// The board itself, and how a delta op changes it, are in board.js.

import { board, replaceBoard, applyOp, schedule } from "./board.js";

const BOARD = "situation";
const PROTOCOL = 2; // the board protocol this page speaks (hub::PROTOCOL in the gateway)
const VIEW = "wall_screen";
const LIVE_WINDOW_MS = 7000; // a message within this window = live
const SILENT_RECONNECT_MS = 15000; // open but silent this long: assume a dead socket, reconnect
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 5000;
const TOKEN_CLOSE = 4001; // the gateway's close code for a token it no longer accepts

let token = new URLSearchParams(location.search).get("token");

export const conn = {
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
      replaceBoard(data);
      conn.error = null;
      conn.resync = false;
      break;
    }
    case "delta": {
      if (msg.board && msg.board !== BOARD) return;
      if (!board) return; // a delta before any snapshot cannot be applied
      // Seen, unless it is a tick's delta (retention on a quiet board): at the position the
      // board is at, sent once, after every delta before it (docs/PROTOCOL.md).
      const tick = msg.tick === true && msg.position === board.position;
      if (typeof msg.position === "number" && msg.position <= board.position && !tick) return;
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

export function connect() {
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
export function freshness(now) {
  const age = conn.lastMsgAt ? Math.max(0, Math.floor((now - conn.lastMsgAt) / 1000)) : null;
  let state;
  if (!conn.open) state = "offline";
  else if (board && conn.lastMsgAt && now - conn.lastMsgAt <= LIVE_WINDOW_MS) state = "live";
  else state = "stale";
  return { state, age };
}

/** Uses a new token (pasted on the page): kept in the address, so a reload keeps it too. */
export function useToken(t) {
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

export function watchdog(now) {
  if (!conn.open) return;
  const heard = Math.max(conn.lastMsgAt, conn.openedAt);
  if (now - heard > SILENT_RECONNECT_MS) {
    console.warn("wall screen: socket silent for 15 s, reconnecting");
    dropSocket();
  }
}
