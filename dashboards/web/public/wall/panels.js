// Vigil wall screen: the panels under the map and at the side: hostage cases, surges,
// evacuations and relocations, the timeline and the broadcasts.

import { html } from "../vendor/htm/preact-standalone.module.js";
import { board, countries, freshAfter } from "./board.js";
import { shortTime, daysSince, num, countryName, cls, slug } from "./format.js";

const TIMELINE_SHOWN = 40;

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

export function HostagePanel({ now }) {
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

export function SurgePanel() {
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

export function OrdersPanel({ now }) {
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

export function BroadcastPanel({ now }) {
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

export function Timeline({ now }) {
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
