// Vigil operations console: the security level of an area.
//
// Owns: the Levels section — an area opened by its code (GET /api/v1/areas/{area}/level: its
// level now and every level set, with who and why), the areas opened in this tab as the list
// (the API has no list of areas), and setting a level with a reason (PUT
// /api/v1/areas/{area}/level {level 1..6, reason}; duty officers). A level of 5 or 6 may send a
// rule broadcast to the agencies: the form says so before sending.

import { ListDetail } from "./controller.js";
import { html, POLICY, KV, fmtUtc, countryText } from "./kit.js";

const path = (area) => `/api/v1/areas/${encodeURIComponent(area)}/level`;
const LEVELS = [
  [1, "1 Minimal"], [2, "2 Low"], [3, "3 Moderate"], [4, "4 Substantial"], [5, "5 High"], [6, "6 Extreme"],
];

export const c = new ListDetail({
  name: "levels",
  things: "areas",
  list: null,
  one: path,
  idOf: (x) => x?.area,
  sameShape: true,
  detailEveryMs: 10000,
});

/** Opens the area typed in the box (kept in the list of this tab). */
function openTyped() {
  const area = String(c.val("find:", "area")).trim().toUpperCase();
  if (!area) return;
  if (!c.find(area)) c.items = [{ area }, ...c.items];
  c.set("find:", "area", "");
  c.open(area);
}

function Head({ c }) {
  return html`<form class="row" data-form="find:" data-testid="level-find" onSubmit=${(e) => { e.preventDefault(); openTyped(); }}>
    <label class="inline">Area code
      <input id="level-area" data-testid="level-area" value=${c.val("find:", "area")} placeholder="e.g. SOM-BAN"
        onInput=${(e) => c.set("find:", "area", e.target.value)} /></label>
    <button type="submit" class="secondary" data-testid="level-open-area">Open</button>
  </form>`;
}

function Row({ item: a }) {
  return html`<span class="item-top"><b class="place">${a.area}${a.name ? ` · ${a.name}` : ""}</b>
      <span class=${`lvl lvl-${a.level ?? "none"}`} data-testid="level-now">${a.level ? `Level ${a.level}` : a.history ? "No level set" : "…"}</span></span>
    ${a.country ? html`<span class="item-line muted">${countryText(a.country)}</span>` : null}`;
}

function Detail({ item: a }) {
  const history = Array.isArray(a.history) ? [...a.history].reverse() : [];
  return html`<h3>${a.area}${a.name ? ` · ${a.name}` : ""}</h3>
    <${KV} pairs=${[
      ["Country", a.country ? countryText(a.country) : null],
      ["Level now", html`<b data-testid="level-detail-now" data-level=${a.level ?? ""}>${a.level ? LEVELS[a.level - 1]?.[1] ?? a.level : "none set"}</b>`],
    ]} />
    <h4>History (newest first)</h4>
    ${history.length
      ? html`<ol class="history" data-testid="level-history">${history.map((e) => html`<li key=${e.position}>
          <b>Level ${e.level}</b>${e.previous_level ? ` (was ${e.previous_level})` : ""} · ${fmtUtc(e.set_at)} · ${e.set_by ?? "?"}
          <span class="item-line">${e.reason}</span></li>`)}</ol>`
      : html`<p class="hint">No level has been set for this area.</p>`}`;
}

export const section = {
  name: "levels",
  prefix: "level",
  tab: "Levels",
  title: "Security levels",
  roles: POLICY.LEVEL_READ,
  c,
  Head,
  Row,
  Detail,
  rowProps: (a) => ({ data: { "data-level": a.level ?? "" } }),
  choose: "Type an area code above to see its level and history.",
  empty: "Open an area by its code.",
  actions: [
    {
      name: "set",
      label: "Set the level…",
      primary: true,
      roles: POLICY.LEVEL_SET,
      explain: "Setting the level it already has confirms it, with your reason. Level 5 or 6 may send a broadcast to the agencies in the country.",
      fields: [
        { name: "level", label: "Level", type: "select", options: [["", "Choose…"], ...LEVELS.map(([v, t]) => [String(v), t])], need: "choose 1 to 6" },
        { name: "reason", label: "Why", type: "textarea" },
      ],
      body: (v) => ({ level: Number(v.level), reason: v.reason }),
      method: "PUT",
      path: (area) => path(area),
      done: (a, f) => `Level ${f.level} set for ${a?.area ?? "the area"}`,
      failed: "Level not set",
    },
  ],
};

