// Vigil operations console: the one list/detail controller, and the section it draws.
//
// Owns: for each section, one `ListDetail` — its list (read through api.js `list`, the one
// reader of list answers), the open item (read again by itself, or taken from the list), the
// values of its forms, the people or rows selected for a bulk action, the action in flight
// and the outcome of the last one — and `Section`, the page of a section: list on the left
// (filters, a form to create, a row per item with its row actions), the open item on the
// right with its actions.
//
// A section is a description (see incidents.js for the smallest): its paths, its row and
// detail, and its actions as data — name, label, the roles that may (kit.js POLICY), when it
// applies, its fields (and `Extra`, inputs drawn by the section and kept in the same form
// values, e.g. one row per person), how the fields become the body, what to say when it is
// done. Every action goes through `ListDetail.run`, so every one behaves alike; a bulk action
// with `batch` (the server's limit) goes through `runBatches` when more people are ticked.
//
// Promises:
// - An action a role may never do is not shown; one shown may still be refused, and the
//   refusal shows the server's message (which says what to do) on the section's result line
//   and, for an item, on its row until an action on it succeeds.
// - A command resent after a transient failure carries the same id (api.js `act`).
// - A bulk action over more people than its `batch` is sent as several commands, each with
//   its own id (the same one again for the same batch after a transient failure); the
//   result line counts them, a failure names the request that failed, and the people sent
//   already leave the selection, so sending again resumes and marks nobody twice.
// - Ticking: a shift-click (`pick`) ticks or unticks the whole range of shown rows from the
//   last one clicked.
// - A late answer never replaces a newer one (a sequence number per read); what is being
//   typed is never cleared by a refresh; a double submit sends once (busy set).
// - A form's fields are checked before sending, naming the field and what to write.

import { list, get, act, positionOf } from "./api.js";
import { html, redraw, may, sentence, splitList, toRfc3339, localValue, dateValue, ErrorLine, ResultLine } from "./kit.js";

// ---------------------------------------------------------------- the controller

/** The path of item `id` of the collection at `base` ("/api/v1/surges"), or of its `action`. */
export const itemPath = (base, id, action = "") => `${base}/${encodeURIComponent(id)}${action ? `/${action}` : ""}`;

export class ListDetail {
  /**
   * `cfg`: {name, things (for messages), base (the collection's path: by default the list
   * is read from it, with `?status=` when that filter is set, an item from `itemPath`, and a
   * creation without a `path` of its own is sent to it), list(filters) → path | null, one(id) → path | null,
   * idOf(item), readDetail() → whether the open item is read by itself (default: when `one`),
   * sameShape (a read item replaces its row), listEveryMs, detailEveryMs (0: never by itself),
   * filters (initial)}.
   */
  constructor(cfg) {
    const base = cfg.base;
    const paths = base
      ? { list: (f) => `${base}${f.status ? `?status=${encodeURIComponent(f.status)}` : ""}`, one: (id) => itemPath(base, id) }
      : {};
    this.cfg = { listEveryMs: 10000, detailEveryMs: 5000, idOf: (x) => x?.id, ...paths, ...cfg };
    this.setRoute = () => {};
    this.listSeq = 0;
    this.detailSeq = 0;
    this.reset();
  }

  reset() {
    this.items = [];
    this.position = null;
    this.next = null;
    this.listed = false;
    this.listError = null;
    this.listSeq += 1;
    this.listLoading = false;
    this.listTriedAt = 0;
    this.openId = null;
    this.detail = null;
    this.detailAt = 0;
    this.detailError = null;
    this.detailSeq += 1;
    this.detailLoading = false;
    this.detailTriedAt = 0;
    this.filters = { ...(this.cfg.filters || {}) };
    this.result = null;
    this.rowErrors = new Map();
    this.busy = new Set();
    this.selection = new Set();
    this.anchor = null;
    this.asking = null;
    this.confirming = null;
    this.formErrors = new Map();
    this.values = new Map();
    this.creating = false;
    this.shown = false;
  }

  // ------------------------------------------------------------ list

  find(id) {
    return this.items.find((x) => this.cfg.idOf(x) === id) ?? null;
  }

  async refresh() {
    const path = this.cfg.list?.(this.filters);
    if (!path) return;
    const seq = ++this.listSeq;
    this.listLoading = true;
    this.listTriedAt = Date.now();
    try {
      const l = await list(path);
      if (seq !== this.listSeq) return;
      Object.assign(this, { items: l.items, position: l.position, next: l.next, listed: true, listError: null });
      if (this.openId && !this.readsDetail()) this.detail = this.find(this.openId) ?? this.detail;
    } catch (e) {
      if (seq !== this.listSeq || e.status === 401) return;
      this.listError = `Could not read the ${this.cfg.things}: ${e.message}`;
    } finally {
      if (seq === this.listSeq) this.listLoading = false;
      redraw();
    }
  }

  setFilter(name, value) {
    this.filters = { ...this.filters, [name]: value };
    redraw();
    return this.refresh();
  }

  // ------------------------------------------------------------ the open item

  readsDetail() {
    return Boolean(this.cfg.one) && (this.cfg.readDetail ? this.cfg.readDetail() : true);
  }

  /** Opens item `id`: the list's copy at once, then its own read. */
  open(id) {
    if (id !== this.openId) {
      this.openId = id;
      this.detail = this.find(id);
      this.detailError = null;
      this.asking = null;
      this.confirming = null;
      this.selection.clear();
      this.anchor = null;
    }
    this.setRoute(this.cfg.name, id);
    redraw();
    return this.refreshDetail();
  }

  close() {
    this.openId = null;
    this.detail = null;
    this.asking = null;
    this.detailSeq += 1;
    this.setRoute(this.cfg.name, null);
    redraw();
  }

  async refreshDetail() {
    const id = this.openId;
    if (!id) return;
    if (!this.readsDetail()) {
      this.detail = this.find(id) ?? this.detail;
      if (!this.detail && this.cfg.list) await this.refresh();
      return;
    }
    const seq = ++this.detailSeq;
    this.detailLoading = true;
    this.detailTriedAt = Date.now();
    try {
      const d = await get(this.cfg.one(id));
      if (seq !== this.detailSeq || id !== this.openId) return;
      this.detail = d;
      this.detailAt = Date.now();
      this.detailError = null;
      if (this.cfg.sameShape) {
        const i = this.items.findIndex((x) => this.cfg.idOf(x) === id);
        if (i >= 0) this.items = this.items.map((x, j) => (j === i ? d : x));
      }
    } catch (e) {
      if (seq !== this.detailSeq || id !== this.openId || e.status === 401) return;
      this.detailError = this.detail ? `Could not refresh: ${e.message}` : `Could not read ${id}: ${e.message}`;
    } finally {
      if (seq === this.detailSeq) this.detailLoading = false;
      redraw();
    }
  }

  // ------------------------------------------------------------ forms and selection

  /** The value of field `name` of form `form` (`init` the first time it is read). */
  val(form, name, init = "") {
    let v = this.values.get(form);
    if (!v) this.values.set(form, (v = {}));
    if (!(name in v)) v[name] = typeof init === "function" ? init() : init;
    return v[name];
  }

  set(form, name, value) {
    this.val(form, name);
    this.values.get(form)[name] = value;
    this.formErrors.delete(form);
    if (this.confirming === form) this.confirming = null;
    redraw();
  }

  clearForm(form) {
    this.values.delete(form);
    this.formErrors.delete(form);
    if (this.confirming === form) this.confirming = null;
  }

  /** Opens (or closes) the form of action `name` on the open item, and puts the cursor in it. */
  ask(name) {
    this.asking = this.asking === name ? null : name;
    this.confirming = null;
    redraw();
    if (this.asking) focusForm(`${name}:${this.openId ?? ""}`);
  }

  toggle(key) {
    if (this.selection.has(key)) this.selection.delete(key);
    else this.selection.add(key);
    redraw();
  }

  selectOnly(keys) {
    this.selection = new Set(keys);
    this.anchor = null;
    redraw();
  }

  /** Ticks every one of `keys` too (what a search shows), keeping the ones ticked already. */
  selectMore(keys) {
    for (const k of keys) this.selection.add(k);
    redraw();
  }

  /**
   * Ticks or unticks `key` as a checkbox click does; with `shift`, every key of `order` (the
   * rows shown, in their order) from the last one clicked to this one takes the same state.
   */
  pick(key, on, shift = false, order = []) {
    const a = shift && this.anchor != null ? order.indexOf(this.anchor) : -1;
    const b = order.indexOf(key);
    const range = a >= 0 && b >= 0 ? order.slice(Math.min(a, b), Math.max(a, b) + 1) : [key];
    for (const k of range) {
      if (on) this.selection.add(k);
      else this.selection.delete(k);
    }
    this.anchor = key;
    redraw();
  }

  // ------------------------------------------------------------ actions

  /**
   * Sends action `a` on item `id` (null for a creation) with body `fields`. The outcome goes
   * on the result line (and on the item's row); the list and the open item are read again.
   */
  async run(a, id, fields) {
    const key = `${a.name}:${id ?? ""}`;
    if (this.busy.has(key)) return false;
    if (a.batch && Array.isArray(fields.persons) && fields.persons.length > a.batch) return this.runBatches(a, id, fields);
    this.busy.add(key);
    redraw();
    let ok = false;
    try {
      const answer = await act(a.path ? a.path(id, fields) : this.cfg.base, fields, key, a.method);
      if (id) this.rowErrors.delete(id);
      const text = typeof a.done === "function" ? a.done(answer, fields, this) : a.done;
      if (answer?.pending_at_site) {
        // At a field site (202): in the site's outbox, not yet in the centre's log.
        this.result = { ok: `${text} · pending at site ${answer.site} (goes to the centre when its link is up)`, position: null };
      } else {
        const pos = positionOf(answer);
        this.result = { ok: `${text} · log position ${pos}`, position: pos };
      }
      ok = true;
      this.clearForm(key);
      if (this.asking === a.name) this.asking = null;
      if (a.bulk) this.selection.clear();
      if (!id) this.creating = false;
      a.after?.(answer, fields, this);
    } catch (e) {
      if (e.status !== 401) {
        const text = `${a.failed}: ${sentence(e.message)}`;
        if (id) this.rowErrors.set(id, text);
        this.result = { error: text };
      }
    } finally {
      this.busy.delete(key);
      redraw();
      if (this.openId) this.refreshDetail();
      this.refresh();
    }
    return ok;
  }

  /**
   * Sends bulk action `a` (its `batch`: the most people the server takes at once) on item
   * `id` as several requests of at most `batch` people, one after the other. Each request is
   * a command of its own (`act`, keyed by its first person: resent after a transient failure,
   * the same batch carries the same id, so it is never stored twice). The result line counts
   * ("Marked 499 of 1,200…"); the people of every request that went through leave the
   * selection at once, so after a failure the selection is exactly what is left, and sending
   * again resumes with the batch that failed.
   */
  async runBatches(a, id, fields) {
    const key = `${a.name}:${id ?? ""}`;
    this.busy.add(key);
    const all = fields.persons;
    const chunks = [];
    for (let i = 0; i < all.length; i += a.batch) chunks.push(all.slice(i, i + a.batch));
    const counted = (done) => a.counted(fields, done.toLocaleString("en-US"), all.length.toLocaleString("en-US"));
    const positions = [];
    let done = 0;
    let ok = false;
    this.result = { ok: `${counted(0)}… (request 1 of ${chunks.length})` };
    redraw();
    let b = 0;
    try {
      for (; b < chunks.length; b += 1) {
        const chunk = chunks[b];
        const answer = await act(a.path(id, fields), { ...fields, persons: chunk }, `${key}:${chunk[0]}`, a.method);
        positions.push(positionOf(answer));
        done += chunk.length;
        for (const p of chunk) this.selection.delete(p);
        const more = b + 1 < chunks.length ? `… (request ${b + 2} of ${chunks.length})` : "";
        this.result = { ok: `${counted(done)}${more}`, position: positions.at(-1) };
        redraw();
      }
      if (id) this.rowErrors.delete(id);
      this.result = { ok: `${counted(done)} in ${chunks.length} requests · log positions ${positions.join(", ")}`, position: positions.at(-1) };
      ok = true;
      this.clearForm(key);
      this.selection.clear();
    } catch (e) {
      if (e.status !== 401) {
        const from = (b * a.batch + 1).toLocaleString("en-US");
        const to = Math.min(all.length, (b + 1) * a.batch).toLocaleString("en-US");
        const before = done ? `${counted(done)} (log positions ${positions.join(", ")}); then ` : `${a.failed}: `;
        const text = `${before}request ${b + 1} of ${chunks.length} (people ${from} to ${to}) failed: ${sentence(e.message)} The ${(all.length - done).toLocaleString("en-US")} not confirmed are still ticked: send again to go on from request ${b + 1} (a request the centre took already is not stored twice).`;
        if (id) this.rowErrors.set(id, text);
        this.result = { error: text, position: positions.at(-1) };
      }
    } finally {
      this.busy.delete(key);
      redraw();
      if (this.openId) this.refreshDetail();
      this.refresh();
    }
    return ok;
  }

  /**
   * Reads action `a`'s form for `item`, checks it, and sends it (or asks to confirm first).
   * `el` is the form on screen: what it shows is what is sent, even a value put there
   * without an input event (autofill).
   */
  submit(a, item, el) {
    const id = item ? this.cfg.idOf(item) : null;
    const form = `${a.name}:${id ?? ""}`;
    for (const f of a.fields || []) {
      const input = el?.elements.namedItem(f.name);
      if (!input) continue;
      this.val(form, f.name);
      const now = f.type === "checkbox" ? input.checked : input.value;
      if (this.values.get(form)[f.name] !== now) {
        this.values.get(form)[f.name] = now;
        if (this.confirming === form) this.confirming = null;
      }
    }
    let fields;
    try {
      fields = collect(this, a, form, item);
    } catch (e) {
      this.formErrors.set(form, e.message);
      redraw();
      focusForm(form, "[aria-invalid=true]");
      return;
    }
    if (a.confirm && this.confirming !== form) {
      this.confirming = form;
      redraw();
      return;
    }
    this.confirming = null;
    this.run(a, id, fields);
  }

  // ------------------------------------------------------------ the clock

  /** The section is shown; `id` from the page's #hash (not followed when `readOnShow` is false). */
  show(id) {
    this.shown = true;
    if (id && id !== this.openId && this.cfg.readOnShow !== false) this.open(id);
    else if (this.openId) this.refreshDetail();
    this.refresh();
  }

  hide() {
    this.shown = false;
  }

  tick(now, force = false) {
    if (!this.shown) return;
    if (force || (!this.listLoading && now - this.listTriedAt >= this.cfg.listEveryMs)) this.refresh();
    const every = this.cfg.detailEveryMs;
    // An item never read by itself (detailEveryMs 0: a hostage case, each read audited) is
    // not read when the tab comes back either: only on opening, Reload or an action.
    if (this.openId && this.readsDetail() && every && (force || (!this.detailLoading && now - this.detailTriedAt >= every))) {
      this.refreshDetail();
    }
  }
}

/** Puts the cursor in form `form`'s first field (or the one matching `which`). */
export function focusForm(form, which = "input:not([type=hidden]):not([type=radio]), textarea, select") {
  document.querySelector(`[data-form="${CSS.escape(form)}"]`)?.querySelector(which)?.focus();
}

// ---------------------------------------------------------------- fields

/** The body of action `a` from its form's values, or throws an Error naming the field. */
function collect(c, a, form, item) {
  const out = {};
  const bad = [];
  for (const f of a.fields || []) {
    const raw = c.val(form, f.name, initOf(f, item));
    const label = f.label.replace(/ \(.*\)$/, "");
    const empty = raw === "" || raw == null || (f.type === "list" && !splitList(raw).length);
    if (empty) {
      if (!f.optional) bad.push(`${label}: ${f.need || "fill it in"}.`);
      continue;
    }
    if (f.type === "number") {
      const n = Number(raw);
      if (!Number.isInteger(n) || (f.min != null && n < f.min) || (f.max != null && n > f.max)) {
        bad.push(`${label}: a whole number${f.min != null ? ` from ${f.min}` : ""}${f.max != null ? ` to ${f.max}` : ""}.`);
      } else out[f.name] = n;
    } else if (f.type === "datetime") {
      const t = toRfc3339(raw);
      if (!t) bad.push(`${label}: a date and time.`);
      else out[f.name] = t;
    } else if (f.type === "list") out[f.name] = splitList(raw);
    else if (f.type === "checkbox") out[f.name] = Boolean(raw);
    else if (typeof raw !== "string") out[f.name] = raw;
    else out[f.name] = f.upper ? raw.trim().toUpperCase() : raw.trim();
  }
  if (a.bulk) {
    if (!c.selection.size) bad.push(a.noneSelected || "Nobody is selected: tick people in the list first.");
    else out.persons = [...c.selection];
  }
  if (bad.length) throw new Error(bad.join(" "));
  return a.body ? a.body(out, item, c) : out;
}

const initOf = (f, item) =>
  f.init !== undefined ? () => (typeof f.init === "function" ? f.init(item) : f.init)
    : f.type === "datetime" ? () => localValue(0)
      : f.type === "date" ? () => dateValue(0)
        : f.type === "checkbox" ? false : "";

/** One field of a form, bound to the controller's values. */
export function Field({ c, form, f, item, prefix }) {
  const id = f.testid || `${prefix}-${form.split(":")[0]}-${f.name}`;
  const value = c.val(form, f.name, initOf(f, item));
  const on = (e) => c.set(form, f.name, f.type === "checkbox" ? e.target.checked : e.target.value);
  const common = { id, "data-testid": id, name: f.name, onInput: on, onChange: on };
  let input;
  if (f.type === "textarea") input = html`<textarea ...${common} rows="3" value=${value}></textarea>`;
  else if (f.type === "select") {
    input = html`<select ...${common} value=${value}>
      ${(typeof f.options === "function" ? f.options(item) : f.options || []).map(([v, t]) => html`<option key=${v} value=${v}>${t}</option>`)}
    </select>`;
  } else if (f.type === "checkbox") {
    return html`<label class="inline field"><input type="checkbox" ...${common} checked=${Boolean(value)} /> ${f.label}</label>`;
  } else {
    const type = { number: "number", datetime: "datetime-local", date: "date" }[f.type] || "text";
    input = html`<input type=${type} ...${common} value=${value} min=${f.min} max=${f.max} />`;
  }
  const hint = f.type === "datetime" && toRfc3339(value) ? `= ${new Date(toRfc3339(value)).toISOString().slice(0, 16).replace("T", " ")} UTC` : f.hint;
  return html`<label class="field" for=${id}><span>${f.label}${f.optional ? " (optional)" : ""}</span>${input}${hint ? html`<small class="hint">${hint}</small>` : null}</label>`;
}

/** The form of action `a` on `item` (or a creation when `item` is null). */
export function ActionForm({ c, a, item, prefix, title, onCancel }) {
  const id = item ? c.cfg.idOf(item) : null;
  const form = `${a.name}:${id ?? ""}`;
  const error = c.formErrors.get(form);
  const confirming = c.confirming === form;
  const busy = c.busy.has(form);
  const submit = (e) => {
    e.preventDefault();
    c.submit(a, item, e.currentTarget);
  };
  return html`<form class=${`card form${a.danger ? " danger-form" : ""}`} data-form=${form} data-testid=${`${prefix}-${a.name}-form`} novalidate onSubmit=${submit}>
    ${title ? html`<h3>${title}</h3>` : null}
    ${a.explain ? html`<p class="hint">${typeof a.explain === "function" ? a.explain(item, c) : a.explain}</p>` : null}
    ${(a.fields || []).map((f) => html`<${Field} key=${f.name} c=${c} form=${form} f=${f} item=${item} prefix=${prefix} />`)}
    ${a.Extra ? html`<${a.Extra} c=${c} form=${form} item=${item} />` : null}
    ${a.bulk ? html`<p class="hint" data-testid=${`${prefix}-${a.name}-selected`}>${c.selection.size ? `${c.selection.size} selected` : "Nobody selected yet"}</p>` : null}
    <${ErrorLine} testid=${`${prefix}-${a.name}-error`} text=${error} />
    ${confirming ? html`<p class="note" data-testid=${`${prefix}-${a.name}-confirm-text`}>${a.confirm(item, c)}</p>` : null}
    <div class="row">
      <button type="submit" class=${a.danger ? "danger-fill" : "primary"} data-testid=${a.submitTestid || `${prefix}-${a.name}-submit`} disabled=${busy}>
        ${busy ? "Sending…" : confirming ? `Yes, ${a.label.replace(/…$/, "").toLowerCase()}` : a.label.replace(/…$/, "")}
      </button>
      ${onCancel ? html`<button type="button" class="secondary" onClick=${onCancel}>Back</button>` : null}
    </div>
  </form>`;
}

/** The actions of `item` the role may take now, `where` "row" or "detail". */
export function Actions({ c, s, item, where }) {
  const id = c.cfg.idOf(item);
  const shown = (s.actions || []).filter((a) => may(a.roles) && (!a.when || a.when(item, c)) && (where === "row" ? a.inRow : !a.bulk));
  if (!shown.length) return null;
  const press = (a) => {
    if (!a.fields?.length && !a.confirm) {
      c.run(a, id, a.body ? a.body({}, item, c) : {});
      return;
    }
    if (where === "row") {
      c.open(id);
      c.asking = null;
    }
    c.ask(a.name);
  };
  const asked = where === "detail" && c.openId === id ? shown.find((a) => a.name === c.asking) : null;
  return html`<div class=${`actions actions-${where}`}>
    <div class="row">
      ${shown.map((a) => html`<button
        key=${a.name}
        type="button"
        class=${a.danger ? "secondary danger" : a.primary ? "primary" : "secondary"}
        data-testid=${`${s.prefix}-${a.name}`}
        aria-expanded=${a.fields?.length || a.confirm ? String(c.asking === a.name && c.openId === id) : undefined}
        disabled=${c.busy.has(`${a.name}:${id}`)}
        onClick=${() => press(a)}
      >${a.label}</button>`)}
    </div>
    ${asked ? html`<${ActionForm} c=${c} a=${asked} item=${item} prefix=${s.prefix} onCancel=${() => c.ask(asked.name)} />` : null}
  </div>`;
}

/** The bulk actions of the open item (on the rows selected in its detail). */
export function BulkActions({ c, s, item }) {
  const shown = (s.actions || []).filter((a) => a.bulk && may(a.roles) && (!a.when || a.when(item, c)));
  if (!shown.length) return null;
  return html`<div class="bulk">
    <p class="hint">Tick people in the list, then: ${shown.map((a) => a.label.replace(/…$/, "")).join(" or ")}.</p>
    ${shown.map((a) => html`<${ActionForm} key=${a.name} c=${c} a=${a} item=${item} prefix=${s.prefix} title=${a.label.replace(/…$/, "")} />`)}
  </div>`;
}

// ---------------------------------------------------------------- the section's page

/** A section: list with filters and a creation form on the left, the open item on the right. */
export function Section({ s }) {
  const c = s.c;
  const create = s.create && may(s.create.roles) ? s.create : null;
  const openItem = c.openId ? c.detail : null;
  return html`<section id=${s.name} class="panel" role="tabpanel" aria-labelledby=${`tab-${s.name}`}>
    <${ResultLine} testid=${s.resultTestid || `${s.prefix}-result`} result=${c.result} />
    <div class="cols">
      <div class="col-list">
        <div class="list-head">
          <h2>${typeof s.title === "function" ? s.title() : s.title}</h2>
          ${(s.filters || []).map((f) => html`<label class="inline" key=${f.name}>${f.label}
            <select data-testid=${`${s.prefix}-filter-${f.name}`} value=${c.filters[f.name] ?? ""} onChange=${(e) => c.setFilter(f.name, e.target.value)}>
              ${f.options.map(([v, t]) => html`<option key=${v} value=${v}>${t}</option>`)}
            </select></label>`)}
          ${s.Head ? html`<${s.Head} c=${c} />` : null}
          ${create
            ? html`<button type="button" class="secondary" data-testid=${s.newTestid || `${s.prefix}-new`} aria-expanded=${String(c.creating)}
                onClick=${() => { c.creating = !c.creating; redraw(); if (c.creating) focusForm(`${create.name}:`); }}>${create.label}</button>`
            : null}
        </div>
        ${create && c.creating
          ? s.CreateForm
            ? html`<${s.CreateForm} c=${c} />`
            : html`<${ActionForm} c=${c} a=${create} item=${null} prefix=${s.prefix} title=${create.title}
                onCancel=${() => { c.creating = false; redraw(); }} />`
          : null}
        ${s.Intro ? html`<${s.Intro} c=${c} />` : null}
        <${ErrorLine} testid=${s.listErrorTestid || `${s.prefix}s-error`} text=${c.listError} />
        <ul class="list" id=${`${s.prefix}-list`} data-testid=${`${s.prefix}-list`}>
          ${c.items.map((item) => html`<${Row} key=${c.cfg.idOf(item)} s=${s} c=${c} item=${item} />`)}
        </ul>
        ${c.listed && !c.items.length ? html`<p class="placeholder" data-testid=${`${s.prefix}s-empty`}>${s.empty || "Nothing here."}</p>` : null}
        ${c.next ? html`<p class="placeholder" data-testid=${`${s.prefix}s-more`}>The first ${c.items.length} are shown: narrow the filter to see the others.</p>` : null}
        ${c.position != null ? html`<p class="updated">As of log position ${c.position}</p>` : null}
      </div>
      <div class="col-detail" data-testid=${`${s.prefix}-detail`}>
        ${openItem
          ? html`<article class="card detail">
              <div class="row detail-head">
                <button type="button" class="secondary" data-testid=${`${s.prefix}-close-detail`} onClick=${() => c.close()}>Close</button>
                ${c.readsDetail() && c.detailAt
                  ? html`<span class="updated">Read at ${new Date(c.detailAt).toISOString().slice(11, 19)} UTC</span>`
                  : null}
              </div>
              <${ErrorLine} testid=${`${s.prefix}-detail-error`} text=${c.detailError} />
              <${s.Detail} c=${c} item=${openItem} />
              <${Actions} c=${c} s=${s} item=${openItem} where="detail" />
              <${BulkActions} c=${c} s=${s} item=${openItem} />
            </article>`
          : html`<p class=${`placeholder${c.detailError ? " error" : ""}`} data-testid=${`${s.prefix}-none`}>
              ${c.detailError || (c.openId ? "Reading…" : s.choose || "Choose an item on the left to see it and act on it.")}</p>`}
      </div>
    </div>
  </section>`;
}

/** A row's class and data by its item's status: what most sections show. */
const byStatus = (x) => ({ class: `st-${x.status}`, data: { "data-status": x.status } });

/** One row of a section's list: its summary, row actions, and the refusal of its last action. */
function Row({ s, c, item }) {
  const id = c.cfg.idOf(item);
  const error = c.rowErrors.get(id);
  const props = (s.rowProps || byStatus)(item, c);
  return html`<li class=${`item${props.class ? ` ${props.class}` : ""}${id === c.openId ? " is-open" : ""}`} data-testid=${s.prefix} data-id=${id} ...${props.data || {}}>
    <div class=${`item-body${id === c.openId ? " current" : ""}`}>
      <${s.Row} c=${c} item=${item} />
      ${error ? html`<span class="error small row-error" data-testid=${`${s.prefix}-row-error`} role="alert">${error}</span>` : null}
      <div class="row">
        <button type="button" class="secondary" data-testid=${`${s.prefix}-open`} onClick=${() => c.open(id)}>${id === c.openId ? "Details (open)" : "Details"}</button>
        <${Actions} c=${c} s=${s} item=${item} where="row" />
      </div>
    </div>
  </li>`;
}
