// Vigil field page: the two DOM helpers every part uses. Everything the officer sees is
// built with textContent (no HTML from data).

export const $ = (id) => document.getElementById(id);

/** A DOM element: h("li", {class: "x", "data-id": 1, onclick: f}, "text", child…). */
export function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("data-")) el.setAttribute(k, String(v));
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el[k] = v;
  }
  for (const kid of kids.flat()) if (kid != null && kid !== false) el.append(kid);
  return el;
}

export const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
