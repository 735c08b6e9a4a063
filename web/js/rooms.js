// Rooms: every room (GET /api/rooms), and opening one by code or creating one.

import { api } from "./api.js";
import { el, formatAgo, formatBytes, formatNumber } from "./dom.js";

// The "open a room / new room" form, shared with the overview.
export function roomOpener() {
  const code = el("input", { id: "open-code", placeholder: "room code", autocomplete: "off", spellcheck: "false" });
  const name = el("input", { id: "new-name", placeholder: "name (optional)", autocomplete: "off" });
  const error = el("p", { class: "error", role: "alert" });
  const open = el("form", { class: "inline", onsubmit: (e) => {
    e.preventDefault();
    const c = code.value.trim();
    if (c) location.hash = `#/rooms/${encodeURIComponent(c)}`;
  } }, code, el("button", { type: "submit", id: "open-room" }, "Open"));
  const create = el("form", { class: "inline", onsubmit: async (e) => {
    e.preventDefault();
    error.textContent = "";
    try {
      const body = name.value.trim() ? { name: name.value.trim() } : undefined;
      const room = await api("POST", "/api/rooms", body);
      location.hash = `#/rooms/${encodeURIComponent(room.code)}`;
    } catch (err) {
      error.textContent = `Could not create a room: ${err.message}`;
    }
  } }, name, el("button", { type: "submit", id: "create-room", class: "primary" }, "New room"));
  return el("div", { class: "opener" }, open, create, error);
}

// A room's cell in a listing: a link when the server showed its code (to
// admins), else its id, which cannot open it (docs/architecture.md,
// "Security today").
export function roomCell(r, label) {
  if (r.code === undefined) {
    return el("span", { class: "room-id", title: "room id: only admins see room codes" }, r.id);
  }
  return el("a", { href: `#/rooms/${encodeURIComponent(r.code)}` }, label);
}

export function mountRooms(root) {
  const body = el("tbody");
  const status = el("p", { id: "rooms-status", class: "muted" }, "Loading…");
  root.append(
    el("h1", {}, "Rooms"),
    el("section", { class: "card" }, roomOpener()),
    el("section", { class: "card" },
      el("table", { class: "grid" },
        el("thead", {}, el("tr", {}, ["room", "name", "keys", "memory", "clients", "mirrors", "reads/s", "writes/s", "last write"]
          .map((h) => el("th", {}, h)))),
        body),
      status));
  let stopped = false;
  async function refresh() {
    try {
      const { rooms } = await api("GET", "/api/rooms");
      if (stopped) return;
      body.replaceChildren(...rooms.map((r) => el("tr", {},
        el("td", {}, roomCell(r, r.code)),
        el("td", {}, r.name),
        el("td", { class: "num" }, formatNumber(r.keys)),
        el("td", { class: "num" }, formatBytes(r.memory_bytes)),
        el("td", { class: "num" }, formatNumber(r.clients)),
        el("td", { class: "num" }, formatNumber(r.mirrors)),
        el("td", { class: "num" }, formatNumber(r.reads_per_sec_1s)),
        el("td", { class: "num" }, formatNumber(r.writes_per_sec_1s)),
        el("td", {}, formatAgo(r.last_write_ms)))));
      status.textContent = rooms.length ? `${rooms.length} rooms` : "No rooms hold data yet.";
    } catch (e) {
      status.textContent = `Cannot list rooms: ${e.message}`;
    }
  }
  refresh();
  const timer = setInterval(refresh, 2000);
  return () => { stopped = true; clearInterval(timer); };
}
