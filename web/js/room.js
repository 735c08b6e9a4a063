// Room page: a live, editable view of one room.
//
// The WebSocket mirror (js/api.js RoomSocket) keeps `entries` equal to the
// room (or the keys under the prefix filter, applied by the server); the
// table shows one page of the sorted keys at a time, so a room of 100k keys
// costs a Map and a sorted array, never 100k rows of DOM. Rows changed in
// the last few seconds are highlighted, fading out; the feed on the side
// lists the latest changes. Room statistics come from GET /api/rooms/{code}
// once a second. Values are shown as the Python client reads them: JSON
// pretty-printed, 0x00-tagged bytes and signed pickles labelled, long values
// folded.

import { api, ApiError, keyField, keyId, keyLabel, roomPath, RoomSocket, valueOf } from "./api.js";
import { el, formatBytes, formatNumber } from "./dom.js";

const PAGE_SIZE = 100;
const HIGHLIGHT_MS = 3000;
const FOLD_LINES = 6;
const FOLD_CHARS = 400;
const FEED_SIZE = 40;

const compare = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

function lowerBound(arr, id) {
  let lo = 0, hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (arr[mid] < id) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// The text to show for a stored value (see clients/python: "Values").
function display(value) {
  if (value.binary) return { kind: "binary", text: value.text };
  const t = value.text;
  if (t.startsWith("\u0000")) return { kind: "bytes", text: JSON.stringify(t.slice(1)).slice(1, -1) };
  if (t.startsWith("\u0001")) return { kind: "pickle", text: `${t.length - 1} bytes` };
  const s = t.trim();
  if (s && "{[\"-0123456789tfn".includes(s[0])) {
    try {
      const v = JSON.parse(s);
      return { kind: "json", text: typeof v === "object" && v !== null ? JSON.stringify(v, null, 2) : s };
    } catch { /* plain text */ }
  }
  return { kind: "text", text: t };
}

export function mountRoom(root, code) {
  const entries = new Map();   // id -> {value, exp, changedAt, shown}
  let sorted = [];             // ids in order, valid when !needSort
  let needSort = false;
  let ready = false;
  let page = 0;
  const expanded = new Set();
  const feed = [];
  let renderTimer = null;
  let stopped = false;

  // -- layout ---------------------------------------------------------------
  const title = el("h1", { id: "room-title" }, code);
  const codeChip = el("code", { id: "room-code", class: "chip", title: "room code" }, code);
  const statusDot = el("span", { id: "room-status", class: "status connecting" }, "connecting");
  const statFields = [["keys", "keys", formatNumber], ["clients", "clients", formatNumber],
    ["mirrors", "mirrors", formatNumber], ["memory_bytes", "memory", formatBytes],
    ["reads_per_sec_1s", "reads/s", formatNumber], ["writes_per_sec_1s", "writes/s", formatNumber],
    ["revision", "revision", formatNumber]];
  const statValues = new Map();
  const stats = el("section", { class: "stats small", id: "room-stats" }, statFields.map(([f, label]) => {
    const v = el("div", { class: "stat-value", "data-field": f }, "–");
    statValues.set(f, v);
    return el("div", { class: "card stat" }, v, el("div", { class: "stat-label" }, label));
  }));
  const filter = el("input", { id: "prefix-filter", type: "search", placeholder: "filter by key prefix",
    autocomplete: "off", spellcheck: "false" });
  const pagerText = el("span", { id: "pager-text", class: "muted" });
  const prevBtn = el("button", { id: "page-prev", type: "button", onclick: () => { page--; render(); } }, "‹ prev");
  const nextBtn = el("button", { id: "page-next", type: "button", onclick: () => { page++; render(); } }, "next ›");
  const tbody = el("tbody");
  const feedList = el("ol", { id: "feed", class: "feed" });

  // Editor (add / edit a key).
  const edKey = el("input", { id: "edit-key", placeholder: "key", autocomplete: "off", spellcheck: "false", required: true });
  const edValue = el("textarea", { id: "edit-value", rows: 8, placeholder: "value (text or JSON)", spellcheck: "false" });
  const edB64 = el("input", { id: "edit-b64", type: "checkbox" });
  const edTtl = el("input", { id: "edit-ttl", type: "number", min: "0", step: "1", placeholder: "TTL seconds (optional)" });
  const edError = el("p", { class: "error", role: "alert", id: "edit-error" });
  const edTitle = el("h2", {}, "Add a key");
  let editingId = null;
  const editor = el("form", { id: "editor", class: "card editor", hidden: true, onsubmit: (e) => { e.preventDefault(); save(); } },
    edTitle, edKey, edValue,
    el("label", { class: "check" }, edB64, " value is base64 (binary)"),
    edTtl,
    el("div", { class: "buttons" },
      el("button", { type: "submit", id: "edit-save", class: "primary" }, "Save"),
      el("button", { type: "button", id: "edit-cancel", onclick: () => closeEditor() }, "Cancel")),
    edError);

  root.append(
    el("div", { class: "room-head" }, title, codeChip, statusDot),
    stats,
    el("div", { class: "columns" },
      el("section", { class: "card grow" },
        el("div", { class: "toolbar" }, filter,
          el("button", { type: "button", id: "add-key", class: "primary", onclick: () => openEditor(null) }, "Add key"),
          el("span", { class: "spacer" }), prevBtn, pagerText, nextBtn),
        el("table", { class: "grid keys", id: "keys" },
          el("thead", {}, el("tr", {}, el("th", {}, "key"), el("th", {}, "value"), el("th", {}, "expires"), el("th", {}, ""))),
          tbody)),
      el("aside", { class: "side" }, editor,
        el("section", { class: "card" }, el("h2", {}, "Recent changes"), feedList))));

  // -- the mirror ------------------------------------------------------------
  function applySet(id, value, exp, live) {
    if (!entries.has(id)) {
      if (ready && !needSort) sorted.splice(lowerBound(sorted, id), 0, id); else needSort = true;
    }
    entries.set(id, { value, exp, changedAt: live ? Date.now() : 0, shown: null });
  }
  function applyDel(id) {
    if (!entries.delete(id)) return;
    if (!needSort) {
      const i = lowerBound(sorted, id);
      if (sorted[i] === id) sorted.splice(i, 1);
    }
    expanded.delete(id);
  }
  function clearAll() {
    entries.clear();
    sorted = [];
    needSort = false;
  }
  function pushFeed(op, id, preview) {
    feed.unshift({ t: new Date(), op, id, preview });
    if (feed.length > FEED_SIZE) feed.pop();
  }

  const socket = new RoomSocket(code, {
    onStatus: (s) => { statusDot.textContent = s; statusDot.className = `status ${s}`; },
    onMessage: (m) => {
      switch (m.type) {
        case "mirror":
          ready = false;
          break;
        case "reset":
          clearAll();
          break;
        case "snapshot":
          for (const item of m.items) applySet(keyId(item), valueOf(item), item.expire_at_ms, false);
          break;
        case "ready":
          ready = true;
          break;
        case "set": {
          const id = keyId(m);
          applySet(id, valueOf(m), m.expire_at_ms, ready);
          if (ready) pushFeed("set", id, valueOf(m).text);
          break;
        }
        case "del": {
          const id = keyId(m);
          applyDel(id);
          if (ready) pushFeed(m.reason === "expired" ? "expired" : "del", id, "");
          break;
        }
        case "flush":
          clearAll();
          if (ready) pushFeed("flush", "", "every key removed");
          break;
        case "error":
          edError.textContent = m.error.message;
          break;
      }
      if (ready && (m.type === "set" || m.type === "del" || m.type === "flush")) refreshStatsSoon();
      schedule();
    },
  });

  // -- rendering ---------------------------------------------------------------
  function schedule(delay = 50) {
    if (renderTimer === null && !stopped) renderTimer = setTimeout(() => { renderTimer = null; render(); }, delay);
  }

  function valueCell(id, entry) {
    if (!entry.shown) entry.shown = display(entry.value);
    const { kind, text } = entry.shown;
    const lines = text.split("\n");
    const long = lines.length > FOLD_LINES || text.length > FOLD_CHARS;
    const open = expanded.has(id);
    let shown = text;
    if (long && !open) {
      shown = lines.slice(0, FOLD_LINES).join("\n");
      if (shown.length > FOLD_CHARS) shown = shown.slice(0, FOLD_CHARS);
      shown += " …";
    }
    const cell = el("td", { class: `value ${kind}` });
    if (kind === "binary" || kind === "bytes" || kind === "pickle") cell.append(el("span", { class: "tag" }, kind));
    cell.append(el("pre", {}, shown));
    if (long) {
      cell.append(el("button", { type: "button", class: "link fold", onclick: () => {
        if (open) expanded.delete(id); else expanded.add(id);
        render();
      } }, open ? "fold" : `show all (${formatNumber(lines.length)} lines, ${formatNumber(text.length)} chars)`));
    }
    return cell;
  }

  function expiresText(exp, now) {
    if (!exp) return "";
    const left = exp - now;
    if (left <= 0) return "expired";
    return left < 60000 ? `in ${Math.ceil(left / 1000)}s` : new Date(exp).toLocaleString();
  }

  function row(id, now) {
    const entry = entries.get(id);
    const del = el("button", { type: "button", class: "danger small delete" }, "Delete");
    del.addEventListener("click", () => {
      if (del.dataset.armed) { remove(id); return; }
      del.dataset.armed = "1";
      del.textContent = "Confirm";
      setTimeout(() => { delete del.dataset.armed; del.textContent = "Delete"; }, 3000);
    });
    const tr = el("tr", { "data-key": id },
      el("td", { class: "key" }, el("code", {}, keyLabel(id))),
      valueCell(id, entry),
      el("td", { class: "exp" }, expiresText(entry.exp, now)),
      el("td", { class: "actions" },
        el("button", { type: "button", class: "small edit", onclick: () => openEditor(id) }, "Edit"), del));
    const age = now - entry.changedAt;
    if (entry.changedAt && age < HIGHLIGHT_MS) {
      // One CSS fade per change: the row node lives until the entry changes
      // again, so re-rendering never restarts it.
      tr.classList.add("changed");
      tr.style.animationDelay = `-${age}ms`;
      tr.addEventListener("animationend", () => tr.classList.remove("changed"), { once: true });
    }
    if (entry.exp && entry.exp <= now) tr.classList.add("expired");
    return tr;
  }

  // Rows are cached per key and rebuilt only when their entry (or folding)
  // changes, so buttons and fades survive the frequent re-renders of a busy room.
  let rowCache = new Map();   // id -> {entry, open, tr}
  let feedShown = null;

  function messageRow(text) {
    return el("tr", { class: "message" }, el("td", { colspan: 4, class: "muted" }, text));
  }

  function render() {
    if (stopped) return;
    if (needSort && ready) {
      sorted = [...entries.keys()].sort(compare);
      needSort = false;
    }
    const now = Date.now();
    const total = needSort ? entries.size : sorted.length;
    const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
    page = Math.min(Math.max(0, page), pages - 1);
    const ids = needSort ? [] : sorted.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE);
    const nextCache = new Map();
    let countdown = false;
    const rows = ids.map((id) => {
      const entry = entries.get(id);
      const open = expanded.has(id);
      let c = rowCache.get(id);
      if (!c || c.entry !== entry || c.open !== open) {
        c = { entry, open, tr: row(id, now) };
      } else if (entry.exp) {
        const cell = c.tr.querySelector("td.exp");
        const text = expiresText(entry.exp, now);
        if (cell.textContent !== text) cell.textContent = text;
        c.tr.classList.toggle("expired", entry.exp <= now);
      }
      if (entry.exp) countdown = true;
      nextCache.set(id, c);
      return c.tr;
    });
    rowCache = nextCache;
    if (!ready) {
      rows.push(messageRow(`Loading… ${formatNumber(entries.size)} keys so far`));
    } else if (!total) {
      rows.push(messageRow(filter.value ? "No key has this prefix."
        : "This room is empty. Add a key, or write one from any client."));
    }
    const current = tbody.children;
    const same = current.length === rows.length && rows.every((r, i) => current[i] === r);
    if (!same) tbody.replaceChildren(...rows);
    pagerText.textContent = total
      ? `${formatNumber(page * PAGE_SIZE + 1)}–${formatNumber(Math.min(total, (page + 1) * PAGE_SIZE))} of ${formatNumber(total)}`
      : "0 keys";
    prevBtn.disabled = page === 0;
    nextBtn.disabled = page >= pages - 1;
    if (feedShown !== feed[0]) {
      feedShown = feed[0];
      feedList.replaceChildren(...feed.map((f) => el("li", { class: `feed-${f.op}` },
        el("time", {}, f.t.toLocaleTimeString()), el("span", { class: "op" }, f.op),
        el("code", {}, keyLabel(f.id)), f.preview ? el("span", { class: "muted preview" }, f.preview.slice(0, 80)) : null)));
    }
    if (countdown) schedule(1000);  // keep "expires in" counting down
  }

  // -- editing ---------------------------------------------------------------
  function openEditor(id) {
    editingId = id;
    editor.hidden = false;
    edError.textContent = "";
    edTtl.value = "";
    if (id === null) {
      edTitle.textContent = "Add a key";
      edKey.value = filter.value;
      edKey.disabled = false;
      edValue.value = "";
      edB64.checked = false;
      edKey.focus();
    } else {
      const e = entries.get(id);
      edTitle.textContent = "Edit key";
      edKey.value = keyLabel(id);
      edKey.disabled = true;
      edValue.value = e ? e.value.text : "";
      edB64.checked = e ? e.value.binary : false;
      if (e && e.exp) edTtl.value = String(Math.max(1, Math.ceil((e.exp - Date.now()) / 1000)));
      edValue.focus();
    }
  }
  function closeEditor() {
    editor.hidden = true;
    editingId = null;
  }
  async function save() {
    edError.textContent = "";
    const keyPart = editingId !== null ? keyField(editingId) : { key: edKey.value };
    if (keyPart.key === "") { edError.textContent = "The key must not be empty."; return; }
    const op = { op: "set", ...keyPart };
    if (edB64.checked) op.value_b64 = edValue.value.trim(); else op.value = edValue.value;
    if (edTtl.value !== "") op.ttl_ms = Math.round(Number(edTtl.value) * 1000);
    try {
      await write(op);
      closeEditor();
    } catch (err) {
      edError.textContent = `Not saved: ${err.message}`;
    }
  }
  async function remove(id) {
    try {
      await write({ op: "del", ...keyField(id) });
    } catch (err) {
      pushFeed("error", id, err.message);
      schedule();
    }
  }
  // Over the WebSocket; over REST while it reconnects.
  async function write(op) {
    try {
      return await socket.request(op);
    } catch (err) {
      if (err instanceof ApiError) throw err;
      const path = "key" in op ? `${roomPath(code)}/keys/${encodeURIComponent(op.key)}` : null;
      if (!path) throw err;
      if (op.op === "del") return api("DELETE", path);
      const body = {};
      if ("value" in op) body.value = op.value; else body.value_b64 = op.value_b64;
      if (op.ttl_ms) body.ttl_ms = op.ttl_ms;
      return api("PUT", path, body);
    }
  }

  // -- prefix filter (applied by the server: the mirror restarts) -------------
  let filterTimer = null;
  filter.addEventListener("input", () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => {
      page = 0;
      ready = false;
      socket.setPrefix(filter.value);
      schedule();
    }, 250);
  });

  // -- live room statistics ----------------------------------------------------
  // Polled every second, and soon after a change so the counts follow the table.
  let statsSoon = null;
  function refreshStatsSoon() {
    if (statsSoon === null && !stopped) statsSoon = setTimeout(() => { statsSoon = null; refreshStats(); }, 200);
  }

  async function refreshStats() {
    try {
      const s = await api("GET", roomPath(code));
      if (stopped) return;
      if (s.name && s.name !== code) title.textContent = s.name;
      for (const [f, , format] of statFields) statValues.get(f).textContent = format(s[f] ?? 0);
    } catch (err) {
      if (err.status === 404) {
        statusDot.textContent = "no such room";
        statusDot.className = "status error";
        socket.close();
      }
    }
  }
  refreshStats();
  const statsTimer = setInterval(refreshStats, 1000);
  render();

  return () => {
    stopped = true;
    clearInterval(statsTimer);
    clearTimeout(statsSoon);
    clearTimeout(renderTimer);
    clearTimeout(filterTimer);
    socket.close();
  };
}
