// Vigil field page service worker (scope /field/): the page opens without a network.
//
// Owns: the cache "vigil-field-<version>" holding the app shell (SHELL below), filled on
// install; older "vigil-field-*" caches are deleted on activate. It takes over at once
// (skipWaiting + clients.claim).
//
// Promises:
// - The API is never cached and never answered from a cache: /api/… (and anything that is not
//   a GET of the shell, e.g. POST /api/v1/incidents) is left alone and goes to the network as
//   if there were no worker. Reports live in the page's IndexedDB outbox, not here.
// - Shell files are network-first: a fresh copy when the centre answers within 2.5 s (and the
//   cache is updated with it), the cached copy otherwise, so updates arrive and the page opens
//   offline. After one such fallback, the next 10 s of shell requests go to the cache first
//   (still refreshing it in the background), so a dead network costs one wait, not one per file.
// - Bump VERSION when SHELL changes (every module app.js imports is in it: a missing one
//   breaks the page offline); the files themselves refresh without it.

const VERSION = "vigil-field-v2";
const SHELL = [
  "./",
  "./index.html",
  "./app.js",
  "./dom.js",
  "./outbox.js",
  "./session.js",
  "./net.js",
  "./queue.js",
  "./login.js",
  "./form.js",
  "./render.js",
  "./style.css",
  "./manifest.webmanifest",
  "./icon.svg",
  "../countries.json",
];
const NETWORK_WAIT_MS = 2500;
const DEGRADED_MS = 10000;

const scope = new URL(self.registration.scope);
const shellPaths = new Set(SHELL.map((u) => new URL(u, scope).pathname));
let fellBackAt = 0;

self.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(VERSION);
      await cache.addAll(SHELL.map((u) => new Request(new URL(u, scope), { cache: "reload" })));
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const key of await caches.keys()) {
        if (key.startsWith("vigil-field-") && key !== VERSION) await caches.delete(key);
      }
      await self.clients.claim();
    })(),
  );
});

self.addEventListener("fetch", (event) => {
  const req = event.request;
  if (req.method !== "GET") return;
  const url = new URL(req.url);
  if (url.origin !== scope.origin || url.pathname.startsWith("/api/")) return;
  const navigation = req.mode === "navigate" && url.pathname.startsWith(scope.pathname);
  if (!navigation && !shellPaths.has(url.pathname)) return;
  // One cache entry per file: the page at /field/?anything is the page at /field/.
  const key = navigation && !shellPaths.has(url.pathname) ? scope.href : url.origin + url.pathname;
  event.respondWith(shell(event, req, key));
});

async function shell(event, req, key) {
  const cache = await caches.open(VERSION);
  const network = fetch(req).then(async (res) => {
    if (res.ok && res.type === "basic" && !res.redirected) {
      await cache.put(key, res.clone()).catch(() => {}); // a full cache must not fail the page
    }
    return res;
  });
  event.waitUntil(network.catch(() => {}));
  const cached = () => cache.match(key, { ignoreSearch: true });
  if (Date.now() - fellBackAt < DEGRADED_MS) {
    const hit = await cached();
    if (hit) return hit;
  }
  const wait = new Promise((resolve) => setTimeout(resolve, NETWORK_WAIT_MS, null));
  const first = await Promise.race([network.catch(() => null), wait]);
  if (first?.ok) return first;
  const hit = await cached();
  if (hit) {
    fellBackAt = Date.now();
    return hit;
  }
  if (first) return first; // an error page from the server beats nothing
  try {
    return await network;
  } catch {
    return new Response(
      "Vigil field page: no network, and this phone has no copy of the page yet. Open it once with a network.",
      { status: 503, headers: { "Content-Type": "text/plain; charset=utf-8" } },
    );
  }
}
