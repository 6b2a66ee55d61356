// Vigil wall screen: the map. Leaflet (window.L) with no tile server; countries from
// world-atlas (window.topojson) in plate carrée, shaded by each country's highest level;
// incident markers coloured by severity.

import { html, Component } from "../vendor/htm/preact-standalone.module.js";
import { countries, setNames, schedule } from "./board.js";
import { LEVEL_COLOURS, num } from "./format.js";

export const KIOSK = new URLSearchParams(location.search).has("kiosk");
const LAND = "#1f2c3c";
const LAND_EDGE = "#4a6485";
// Natural Earth shapes that ISO 3166-1 gives no code of their own: the boards can only name
// them by the code of the state they are part of in ISO terms.
const UNCODED_SHAPES = { Somaliland: "SO", "N. Cyprus": "CY", Kosovo: "RS" };

/** Leaflet owns this DOM; Preact never re-renders it. */
export class MapView extends Component {
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
    setNames(codes.names ?? {});
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

export function updateMap() {
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
