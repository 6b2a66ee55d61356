// Vigil field page: the outbox, where reports wait on the phone (IndexedDB "vigil-field",
// store "outbox", keyPath "id").
//
// Record in the outbox: {id, body, state: saved|sending|acknowledged|refused, owner,
// saved_at, attempts, error, ack: {id, stream, position, stream_version, event_id}, acked_at,
// refusal: {status, code, message}}. A record left "sending" by a closed page is "saved"
// (`recover`). Acknowledged reports are pruned after 7 days.
//
// Promises: a write resolves only once its transaction has committed with "strict"
// durability (on disk, not just in the browser's memory). Without IndexedDB the outbox lives
// in this page's memory only, and `db` is null (the page says so).

const DB_NAME = "vigil-field";
const STORE = "outbox";
const KEEP_ACKED_MS = 7 * 24 * 3600 * 1000;

/** The open database, or null: then the outbox lives in `mem` (this page only). */
export let db = null;
const mem = new Map();
export const channel = "BroadcastChannel" in self ? new BroadcastChannel("vigil-field") : null;

function openDb() {
  return new Promise((resolve, reject) => {
    if (!self.indexedDB) {
      reject(new Error("this browser has no IndexedDB"));
      return;
    }
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => {
      if (!req.result.objectStoreNames.contains(STORE)) {
        req.result.createObjectStore(STORE, { keyPath: "id" });
      }
    };
    req.onsuccess = () => {
      req.result.onversionchange = () => req.result.close();
      resolve(req.result);
    };
    req.onerror = () => reject(req.error || new Error("IndexedDB did not open"));
  });
}

/** Runs `fn(objectStore, setResult)` in one transaction; resolves once it has committed. */
function run(mode, fn) {
  return new Promise((resolve, reject) => {
    let t;
    try {
      // "strict": committed means on disk, not just in the browser's memory.
      t = db.transaction(STORE, mode, { durability: "strict" });
    } catch (e) {
      reject(e);
      return;
    }
    let result;
    t.oncomplete = () => resolve(result);
    t.onerror = t.onabort = () => reject(t.error || new Error("the phone did not complete the write"));
    fn(t.objectStore(STORE), (v) => {
      result = v;
    });
  });
}

export const store = {
  all() {
    if (!db) return Promise.resolve([...mem.values()].map((r) => structuredClone(r)));
    return run("readonly", (s, out) => {
      const r = s.getAll();
      r.onsuccess = () => out(r.result);
    });
  },
  put(rec) {
    if (!db) {
      mem.set(rec.id, structuredClone(rec));
      return Promise.resolve();
    }
    return run("readwrite", (s) => s.put(rec));
  },
  del(id) {
    if (!db) {
      mem.delete(id);
      return Promise.resolve();
    }
    return run("readwrite", (s) => s.delete(id));
  },
  /** Atomic read-modify-write: `fn(current)` returns the new record, or null to leave it. */
  update(id, fn) {
    if (!db) {
      const cur = mem.get(id);
      const next = cur ? fn(structuredClone(cur)) : null;
      if (next) mem.set(id, structuredClone(next));
      return Promise.resolve(next);
    }
    return run("readwrite", (s, out) => {
      const r = s.get(id);
      r.onsuccess = () => {
        const next = r.result ? fn(r.result) : null;
        if (next) {
          s.put(next);
          out(next);
        }
      };
    });
  },
};

export const waiting = (recs) => recs.filter((r) => r.state === "saved" || r.state === "sending");

/** Opens the database; throws when this browser cannot (the outbox then stays in memory). */
export async function openOutbox() {
  db = await openDb();
}

/** A page closed mid-send left "sending": it is "saved" again. Old acknowledgements go. */
export async function recover() {
  const now = Date.now();
  for (const r of await store.all()) {
    if (r.state === "acknowledged" && (r.acked_at || r.saved_at) < now - KEEP_ACKED_MS) {
      await store.del(r.id);
    } else if (r.state === "sending") {
      await store.update(r.id, (c) => (c.state === "sending" ? { ...c, state: "saved" } : null));
    }
  }
}
