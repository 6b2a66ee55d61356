// Vigil wall screen: the board as last received, and how a delta changes it.
//
// Owns: `board` (the `situation` board, dashboards/boards/MODEL.md, or null before the first
// snapshot), which timeline items arrived live (`freshAfter`), the country names, and the
// one redraw of the page (`schedule` coalesces bursts of messages into one render; `flush`
// draws now). `applyOp` applies one delta op in place, as `boards::apply_ops` does on the
// server; an op it does not know returns false, and the caller asks for a fresh snapshot.

/** The board as last received (MODEL.md), or null before the first snapshot. */
export let board = null;
/** Timeline items after this position arrived live (they flash once when they appear). */
export let freshAfter = Infinity;
/** Country names by alpha-2 code (from countries.json), filled when it loads. */
export let names = {};

/** Takes a snapshot's board as the whole board; timeline items after it arrived live. */
export function replaceBoard(data) {
  board = data;
  freshAfter = data.position;
}

/** Keeps the country names once countries.json has loaded. */
export function setNames(n) {
  names = n;
}

export function countries() {
  const cs = board?.countries;
  return cs && typeof cs === "object" ? Object.entries(cs) : [];
}

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

// ---------------------------------------------------------------- redraw

let draw = () => {};
let pending = null;

/** The page's one render (app.js): what `flush` and `schedule` run. */
export function onDraw(fn) {
  draw = fn;
}

/** Draws now. */
export function flush() {
  pending = null;
  draw();
}

/** Coalesces bursts of messages into one render. */
export function schedule() {
  if (pending === null) pending = setTimeout(flush, 40);
}
