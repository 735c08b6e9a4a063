// Services: every service with its workers and outstanding calls
// (GET /api/services once a second; ?room= when a room is given). Each
// service row is followed by one row per worker: its node, concurrency and
// the calls it holds now, with a bar of how full it is. Calls waiting for a
// free worker are counted on the service row.

import { api } from "./api.js";
import { el, formatNumber, setText, syncRows } from "./dom.js";

const REFRESH_MS = 1000;

const nameOf = (s) => (s.name !== undefined ? s.name : `(binary) ${s.name_b64}`);
const ms = (v) => (typeof v === "number" ? `${v < 10 ? v.toFixed(2) : v.toFixed(1)} ms` : "–");
// A room id (what non-admins see) cannot open a room; a code can.
const isRoomId = (room) => /^r-[0-9a-f]{16}$/.test(room);

export function mountServices(root) {
  const summaryFields = [["services", "services"], ["workers", "workers"], ["in_flight", "calls in flight"],
    ["waiting", "calls waiting"], ["calls", "calls made"], ["errors", "errors + timeouts"]];
  const summary = new Map();
  const cards = el("section", { class: "stats small", id: "services-summary" }, summaryFields.map(([f, label]) => {
    const v = el("div", { class: "stat-value", "data-field": f }, "–");
    summary.set(f, v);
    return el("div", { class: "card stat" }, v, el("div", { class: "stat-label" }, label));
  }));
  const roomInput = el("input", { id: "services-room", type: "search", placeholder: "all rooms (or a room code)",
    autocomplete: "off", spellcheck: "false", "aria-label": "room code" });
  let room = "";
  const filter = el("form", { class: "toolbar", role: "search", onsubmit: (e) => {
    e.preventDefault();
    room = roomInput.value.trim();
    refresh();
  } }, el("label", { for: "services-room", class: "muted" }, "Room"), roomInput,
  el("button", { type: "submit", id: "services-filter" }, "Show"));
  const tbody = el("tbody");
  const table = el("table", { class: "grid services", id: "services", "aria-live": "off" },
    el("caption", { class: "visually-hidden" }, "Services and their workers"),
    el("thead", {}, el("tr", {}, ["service / worker", "room", "node", "concurrency", "in flight", "waiting",
      "calls", "errors", "timeouts", "p50", "p99"]
      .map((h, i) => el("th", { scope: "col", class: i >= 3 ? "num" : null }, h)))),
    tbody);
  const status = el("p", { class: "muted", id: "services-status" }, "Loading…");
  root.append(el("h1", {}, "Services"), cards,
    el("section", { class: "card" }, filter, el("div", { class: "scroll-x" }, table), status));

  function makeRow(item) {
    const kind = item.worker ? "worker" : "service";
    const cells = {
      name: el("td", { class: "name" }, el("span", { class: "label" }),
        el("span", { class: "tag warn", hidden: true }, "no worker")),
      room: el("td", {}), node: el("td", { class: "num" }),
      concurrency: el("td", { class: "num" }), in_flight: el("td", { class: "num" }),
      waiting: el("td", { class: "num" }), calls: el("td", { class: "num" }),
      errors: el("td", { class: "num" }), timeouts: el("td", { class: "num" }),
      p50: el("td", { class: "num" }), p99: el("td", { class: "num" }),
    };
    const tr = el("tr", { class: kind }, Object.values(cells));
    tr.parts = cells;
    return tr;
  }

  function updateService(tr, s) {
    const p = tr.parts;
    tr.dataset.service = nameOf(s);
    tr.dataset.room = s.room;
    setText(p.name.firstChild, nameOf(s));
    p.name.lastChild.hidden = s.workers.length > 0;
    const roomKey = `${isRoomId(s.room) ? "id" : "code"}:${s.room}`;
    if (p.room.dataset.key !== roomKey) {
      p.room.dataset.key = roomKey;
      p.room.replaceChildren(isRoomId(s.room)
        ? el("span", { class: "room-id", title: "room id: only admins see room codes" }, s.room)
        : el("a", { href: `#/rooms/${encodeURIComponent(s.room)}` }, s.room));
    }
    setText(p.node, "");
    setText(p.concurrency, formatNumber(s.workers.reduce((n, w) => n + w.concurrency, 0)));
    setText(p.in_flight, formatNumber(s.in_flight));
    setText(p.waiting, formatNumber(s.waiting));
    p.waiting.classList.toggle("warn", s.waiting > 0);
    setText(p.calls, formatNumber(s.calls));
    setText(p.errors, formatNumber(s.errors));
    setText(p.timeouts, formatNumber(s.timeouts));
    // No latency yet (no call answered since the service appeared): a dash, not "0 ms".
    const answered = s.p50_ms > 0 || s.p99_ms > 0 || s.calls > s.in_flight + s.waiting + s.errors + s.timeouts;
    setText(p.p50, answered ? ms(s.p50_ms) : "–");
    setText(p.p99, answered ? ms(s.p99_ms) : "–");
  }

  function updateWorker(tr, { worker: w }) {
    const p = tr.parts;
    tr.dataset.workerId = String(w.worker_id);
    tr.dataset.nodeId = String(w.node_id);
    setText(p.name.firstChild, `↳ ${w.label}`);
    p.name.title = `worker ${w.worker_id}`;
    setText(p.node, w.node_id ? String(w.node_id) : "local");
    p.node.title = w.node_id ? `node ${w.node_id}` : "this server (not in a cluster)";
    setText(p.concurrency, formatNumber(w.concurrency));
    const full = w.concurrency > 0 ? Math.min(1, w.in_flight / w.concurrency) : 0;
    if (!p.in_flight.firstChild || p.in_flight.firstChild.nodeType !== Node.ELEMENT_NODE) {
      p.in_flight.replaceChildren(el("span", { class: "load" },
        el("span", { class: "meter", "aria-hidden": "true" }, el("span", { class: "load-bar" })),
        el("span", { class: "load-text" })));
    }
    p.in_flight.querySelector(".load-bar").style.width = `${Math.round(full * 100)}%`;
    p.in_flight.querySelector(".load").classList.toggle("full", full >= 1);
    setText(p.in_flight.querySelector(".load-text"), `${formatNumber(w.in_flight)} / ${formatNumber(w.concurrency)}`);
  }

  let stopped = false, timer = null, busy = false;
  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const path = room ? `/api/services?room=${encodeURIComponent(room)}` : "/api/services";
      const { services, truncated } = await api("GET", path);
      if (stopped) return;
      const rows = [];
      for (const s of services) {
        const key = `${s.room}\n${nameOf(s)}`;
        rows.push({ key: `s\n${key}`, service: s });
        for (const w of s.workers) rows.push({ key: `w\n${key}\n${w.node_id}:${w.worker_id}`, worker: w });
      }
      syncRows(tbody, rows, (r) => r.key, makeRow, (tr, r) => (r.worker ? updateWorker(tr, r) : updateService(tr, r.service)));
      const sum = (f) => services.reduce((n, s) => n + f(s), 0);
      setText(summary.get("services"), formatNumber(services.length));
      setText(summary.get("workers"), formatNumber(sum((s) => s.workers.length)));
      setText(summary.get("in_flight"), formatNumber(sum((s) => s.in_flight)));
      setText(summary.get("waiting"), formatNumber(sum((s) => s.waiting)));
      setText(summary.get("calls"), formatNumber(sum((s) => s.calls)));
      setText(summary.get("errors"), formatNumber(sum((s) => s.errors + s.timeouts)));
      const where = room ? " in this room" : "";
      setText(status, services.length
        ? `${services.length} services${where}${truncated ? " (the first 1,000)" : ""} · updated ${new Date().toLocaleTimeString()}`
        : `No services${where}: a worker appears here once it runs SVC.SERVE (docs/protocol.md, "Services").`);
    } catch (e) {
      if (!stopped) setText(status, `Cannot list services: ${e.message}`);
    } finally {
      busy = false;
    }
  }
  refresh();
  timer = setInterval(refresh, REFRESH_MS);
  return () => { stopped = true; clearInterval(timer); };
}
