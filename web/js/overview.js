// Overview: live site-wide statistics (GET /api/stats once a second) with
// small charts of operations per second and clients, and the busiest rooms.

import { api } from "./api.js";
import { Sparkline } from "./chart.js";
import { el, formatBytes, formatDuration, formatNumber } from "./dom.js";
import { roomCell, roomOpener } from "./rooms.js";

const CARDS = [
  ["ops_per_sec_1s", "ops/s", formatNumber],
  ["clients", "clients", formatNumber],
  ["rooms", "rooms", formatNumber],
  ["keys", "keys", formatNumber],
  ["mirrors", "live mirrors", formatNumber],
  ["memory_bytes", "data memory", formatBytes],
  ["commands_total", "commands", formatNumber],
  ["uptime_s", "uptime", formatDuration],
];

export function mountOverview(root) {
  const values = new Map();
  const cards = el("section", { class: "stats", id: "site-stats" },
    CARDS.map(([field, label]) => {
      const v = el("div", { class: "stat-value", "data-field": field }, "–");
      values.set(field, v);
      return el("div", { class: "card stat" }, v, el("div", { class: "stat-label" }, label));
    }));
  const ops = new Sparkline("operations / second", { color: "#4f7cff", points: 60 });
  const clients = new Sparkline("connected clients", { color: "#19a974", points: 60 });
  const status = el("p", { class: "muted", id: "overview-status" }, "Loading…");
  const roomsBody = el("tbody");
  root.append(
    el("h1", {}, "Overview"),
    cards,
    el("section", { class: "charts" }, ops.root, clients.root),
    el("div", { class: "columns" },
      el("section", { class: "card grow" },
        el("h2", {}, "Busiest rooms"),
        el("table", { class: "grid" },
          el("thead", {}, el("tr", {}, el("th", {}, "room"), el("th", {}, "keys"), el("th", {}, "ops/s"),
            el("th", {}, "clients"))),
          roomsBody)),
      el("section", { class: "card" }, el("h2", {}, "Open a room"), roomOpener())),
    status);

  let timer = null, tick = 0, stopped = false;
  async function refresh() {
    try {
      const s = await api("GET", "/api/stats");
      if (stopped) return;
      for (const [field, , format] of CARDS) values.get(field).textContent = format(s[field] ?? 0);
      ops.push(s.ops_per_sec_1s ?? 0);
      clients.push(s.clients ?? 0);
      document.getElementById("server-info").textContent = `v${s.version} · node ${s.node_id}`;
      status.textContent = `Revision ${formatNumber(s.revision)} · updated ${new Date().toLocaleTimeString()}`;
      if (tick++ % 3 === 0) await refreshRooms();
    } catch (e) {
      status.textContent = `Cannot reach the server: ${e.message}`;
    }
  }
  async function refreshRooms() {
    const { rooms } = await api("GET", "/api/rooms");
    if (stopped) return;
    rooms.sort((a, b) => (b.reads_per_sec_1s + b.writes_per_sec_1s) - (a.reads_per_sec_1s + a.writes_per_sec_1s)
      || b.keys - a.keys);
    roomsBody.replaceChildren(...rooms.slice(0, 10).map((r) => el("tr", {},
      el("td", {}, r.code === undefined
        ? [roomCell(r), r.name === r.id ? null : ` ${r.name}`]
        : roomCell(r, r.name === r.code ? r.code : `${r.name} (${r.code})`)),
      el("td", { class: "num" }, formatNumber(r.keys)),
      el("td", { class: "num" }, formatNumber(r.reads_per_sec_1s + r.writes_per_sec_1s)),
      el("td", { class: "num" }, formatNumber(r.clients)))));
    if (!rooms.length) roomsBody.append(el("tr", {}, el("td", { colspan: 4, class: "muted" }, "No rooms hold data yet.")));
  }
  refresh();
  timer = setInterval(refresh, 1000);
  return () => { stopped = true; clearInterval(timer); };
}
