// Building DOM safely: el() sets text with textContent and attributes with
// setAttribute, so data never becomes markup. Nothing in the dashboard uses
// innerHTML.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      node.className = value;
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024, i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export function formatNumber(n) {
  if (typeof n !== "number") return String(n);
  if (!Number.isInteger(n)) return n.toFixed(n < 10 ? 2 : 1);
  return n.toLocaleString("en-US");
}

export function formatDuration(seconds) {
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

export function formatAgo(ms) {
  if (!ms) return "never";
  const d = Date.now() - ms;
  if (d < 1000) return "just now";
  return `${formatDuration(d / 1000)} ago`;
}

// Sets a node's text only when it changed (a refresh that changes nothing
// touches nothing: no relayout, no screen-reader chatter).
export function setText(node, text) {
  const s = String(text);
  if (node.textContent !== s) node.textContent = s;
}

// Keeps tbody's rows equal to `items`, in order, one row per key: existing
// rows are updated in place, so a link with keyboard focus keeps it across
// refreshes; new rows come from make(item), rows of departed keys go.
// update(tr, item) fills a row (new or old).
export function syncRows(tbody, items, keyOf, make, update) {
  const old = new Map();
  for (const tr of [...tbody.children]) {
    if (tr.dataset.rowKey === undefined) tr.remove(); else old.set(tr.dataset.rowKey, tr);
  }
  let prev = null;
  for (const item of items) {
    const key = String(keyOf(item));
    let tr = old.get(key);
    if (tr) {
      old.delete(key);
    } else {
      tr = make(item);
      tr.dataset.rowKey = key;
    }
    update(tr, item);
    const at = prev ? prev.nextSibling : tbody.firstChild;
    if (at !== tr) tbody.insertBefore(tr, at);
    prev = tr;
  }
  for (const tr of old.values()) tr.remove();
}
