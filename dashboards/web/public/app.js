// Vigil wall screen: the situation board, live over the gateway's WebSocket (/ws).
//
// The page is split by what each part owns (all plain ES modules under wall/, no build step):
// - wall/connection.js: the WebSocket client: the protocol (documented there), reconnects,
//   freshness (live / stale / offline), the token;
// - wall/board.js: the board as last received, applying delta ops, the one redraw;
// - wall/header.js: banner, header, clocks, counters, legend;
// - wall/panels.js: hostage cases, surges, orders, timeline, broadcasts;
// - wall/map.js: the Leaflet map;
// - wall/site.js: at a field site, its link to the centre and its outbox (a panel);
// - wall/format.js: times, ages, names.
// This file draws the page from them and starts the connection.
//
// No build step: plain ES module; Leaflet (window.L) and topojson-client (window.topojson) are
// loaded by index.html as deferred classic scripts; Preact + htm come as one vendored module.

import { html, render } from "./vendor/htm/preact-standalone.module.js";
import { onDraw, flush } from "./wall/board.js";
import { connect, freshness, watchdog } from "./wall/connection.js";
import { cls } from "./wall/format.js";
import { Banner, Header, Counters, Legend } from "./wall/header.js";
import { HostagePanel, SurgePanel, OrdersPanel, Timeline, BroadcastPanel } from "./wall/panels.js";
import { KIOSK, MapView, updateMap } from "./wall/map.js";
import { SitePanel, watchSite } from "./wall/site.js";

if (KIOSK) document.documentElement.classList.add("kiosk");

function App({ now }) {
  const fr = freshness(now);
  return html`<div class=${cls("wall", `state-${fr.state}`)}>
    <${Banner} fr=${fr} now=${now} />
    <${Header} fr=${fr} now=${now} />
    <${SitePanel} now=${now} />
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

// ---------------------------------------------------------------- render loop

const root = document.getElementById("app");

onDraw(() => {
  const now = Date.now();
  render(html`<${App} now=${now} />`, root);
  updateMap();
  const fr = freshness(now);
  document.title = `${fr.state === "live" ? "" : fr.state.toUpperCase() + " · "}Vigil — situation`;
});

root.textContent = "";
flush();
setInterval(() => {
  watchdog(Date.now());
  flush();
}, 1000);
connect();
watchSite();
