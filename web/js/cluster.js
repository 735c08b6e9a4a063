// Cluster: the members as this node sees them (GET /api/cluster, every
// 500 ms: it is answered from memory, so a leader change, a member joining
// or leaving, or a link going down shows within a second), merged by node id
// with the per-node figures of GET /api/stats's "nodes" (term, commit and
// applied index, clients) when the server gives them; without them the page
// shows what /api/cluster knows. A node is down when this node has no link
// to it or the statistics call could not reach it; down is said in words and
// a symbol, not only by colour. A feed lists the changes seen.

import { api } from "./api.js";
import { el, formatNumber, setText, syncRows } from "./dom.js";

const CLUSTER_EVERY_MS = 500;
const STATS_EVERY_MS = 1000;
const STATS_STALE_MS = 3000;  // older per-node figures are not shown (nor trusted for "down")
const FEED_SIZE = 30;

const num = (v) => (typeof v === "number" && v >= 0 ? formatNumber(v) : "–");

function contact(ms, self) {
  if (self) return "this node";
  if (typeof ms !== "number" || ms < 0) return "never";
  if (ms < 1000) return `${ms} ms ago`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s ago`;
  return `${Math.floor(ms / 60000)} min ago`;
}

// A host:port a peer announced, as a link to its dashboard (nothing else
// becomes a URL).
function dashboardLink(address) {
  if (!address || !/^[A-Za-z0-9.\-:[\]]+$/.test(address)) return null;
  return `http://${address}/#/cluster`;
}

export function mountCluster(root) {
  const summaryFields = [["up", "nodes up"], ["leader", "leader's id"], ["term", "term"], ["role", "this node's role"],
    ["commit", "commit index"], ["self", "this node's id"], ["cluster", "cluster id"]];
  const summary = new Map();
  const cards = el("section", { class: "stats small", id: "cluster-summary" }, summaryFields.map(([f, label]) => {
    const v = el("div", { class: `stat-value${["leader", "self", "cluster"].includes(f) ? " id" : ""}`, "data-field": f }, "–");
    summary.set(f, v);
    return el("div", { class: "card stat" }, v, el("div", { class: "stat-label" }, label));
  }));
  const note = el("p", { id: "cluster-note", class: "muted", hidden: true });
  const tbody = el("tbody");
  // Not read out on every refresh (main is a live region): the feed announces the changes.
  const table = el("table", { class: "grid nodes", id: "cluster-nodes", "aria-live": "off" },
    el("caption", { class: "visually-hidden" }, "Cluster members"),
    el("thead", {}, el("tr", {}, ["node", "role", "status", "term", "commit", "applied", "match", "lag",
      "last contact", "clients", "client address", "dashboard"]
      .map((h, i) => el("th", { scope: "col", class: i >= 3 && i <= 9 ? "num" : null }, h)))),
    tbody);
  const status = el("p", { class: "muted", id: "cluster-status" }, "Loading…");
  const feedList = el("ol", { id: "cluster-feed", class: "feed", role: "log", "aria-label": "Cluster changes" });
  root.append(
    el("h1", {}, "Cluster"),
    cards,
    el("section", { class: "card" }, el("h2", {}, "Nodes"), note, el("div", { class: "scroll-x" }, table), status),
    el("section", { class: "card cluster-changes" }, el("h2", {}, "Changes seen on this page"), feedList));

  let stopped = false;
  let timers = [];
  let stats = null;      // the last /api/stats answer
  let statsAt = 0;       // when it came
  let previous = null;   // the last /api/cluster answer, for the feed

  function addFeed(text, kind) {
    const t = new Date().toLocaleTimeString();
    feedList.prepend(el("li", { class: `feed-${kind}` }, el("time", {}, t), el("span", {}, text)));
    while (feedList.children.length > FEED_SIZE) feedList.lastChild.remove();
  }

  function statsNode(id) {
    const fresh = stats && Date.now() - statsAt < STATS_STALE_MS;
    const nodes = fresh && Array.isArray(stats.nodes) ? stats.nodes : [];
    return nodes.find((n) => String(n.id) === String(id)) || null;
  }

  // One row's figures: /api/cluster's, with /api/stats's per-node ones where given.
  function view(c, m) {
    const s = statsNode(m.id);
    const self = m.self === true;
    const down = !m.healthy || (s !== null && s.reachable === false);
    return {
      id: m.id, self, down, role: m.role,
      term: s && typeof s.term === "number" ? s.term : (self && c.cluster ? c.term : null),
      commit: s && typeof s.commit_index === "number" ? s.commit_index : (self ? c.commit_index : null),
      applied: s && typeof s.applied_index === "number" ? s.applied_index : (self ? c.applied_index : null),
      clients: s && typeof s.clients === "number" ? s.clients : (self && stats ? stats.clients : null),
      match: m.match_index, lag: m.lag, contact: m.last_contact_ms,
      client: m.client_address || (s && s.client_address) || "", http: m.http_address || "",
    };
  }

  function makeRow() {
    const cells = {
      node: el("td", { class: "node" }),
      role: el("td", {}),
      health: el("td", { class: "health" }),
      term: el("td", { class: "num" }), commit: el("td", { class: "num" }),
      applied: el("td", { class: "num" }), match: el("td", { class: "num" }),
      lag: el("td", { class: "num" }), contact: el("td", { class: "num" }),
      clients: el("td", { class: "num" }),
      client: el("td", {}, el("code")), http: el("td", {}),
    };
    const tr = el("tr", {}, Object.values(cells));
    tr.parts = cells;
    return tr;
  }

  function updateRow(tr, v) {
    const p = tr.parts;
    tr.dataset.nodeId = String(v.id);
    tr.dataset.role = v.role;
    tr.dataset.health = v.down ? "down" : "up";
    tr.classList.toggle("down", v.down);
    tr.classList.toggle("self", v.self);
    setText(p.node, v.self ? `${v.id} (this node)` : String(v.id));
    if (p.role.dataset.role !== v.role) {
      p.role.dataset.role = v.role;
      p.role.replaceChildren(el("span", { class: `role role-${v.role}` }, v.role === "leader" ? "★ leader" : v.role));
    }
    const health = v.down ? "down" : "up";
    if (p.health.dataset.health !== health) {
      p.health.dataset.health = health;
      p.health.replaceChildren(el("span", { class: `health-badge ${health}` }, v.down ? "✕ down" : "● up"));
    }
    setText(p.term, num(v.term));
    setText(p.commit, num(v.commit));
    setText(p.applied, num(v.applied));
    setText(p.match, num(v.match));
    setText(p.lag, num(v.lag));
    setText(p.contact, contact(v.contact, v.self));
    setText(p.clients, num(v.clients));
    setText(p.client.firstChild, v.client || "–");
    const href = dashboardLink(v.http);
    if (p.http.dataset.href !== (href || "")) {
      p.http.dataset.href = href || "";
      p.http.replaceChildren(href ? el("a", { href, title: `open node ${v.id}'s dashboard` }, v.http) : "–");
    }
  }

  function noteChanges(c) {
    const prev = previous;
    previous = c;
    if (!prev || !c.cluster) return;
    if (c.leader_id !== prev.leader_id) {
      addFeed(c.leader_id ? `node ${c.leader_id} is the leader (term ${c.term})` : "no leader known", "leader");
    }
    const before = new Map(prev.nodes.map((m) => [m.id, m]));
    for (const m of c.nodes) {
      const old = before.get(m.id);
      before.delete(m.id);
      if (!old) addFeed(`node ${m.id} joined (${m.role})`, "set");
      else if (old.healthy && !m.healthy) addFeed(`node ${m.id} is down`, "del");
      else if (!old.healthy && m.healthy) addFeed(`node ${m.id} is up`, "set");
      else if (old.role !== m.role && m.role !== "leader" && old.role !== "leader") {
        addFeed(`node ${m.id} is now a ${m.role}`, "set");
      }
    }
    for (const id of before.keys()) addFeed(`node ${id} left the cluster`, "del");
  }

  function render(c) {
    const rows = c.nodes.map((m) => view(c, m)).sort((a, b) => a.id - b.id);
    syncRows(tbody, rows, (v) => v.id, makeRow, updateRow);
    const up = rows.filter((v) => !v.down).length;
    setText(summary.get("leader"), c.cluster ? (c.leader_id ? String(c.leader_id) : "none known") : "this node");
    setText(summary.get("term"), c.cluster ? formatNumber(c.term) : "–");
    setText(summary.get("up"), `${up} / ${rows.length}`);
    summary.get("up").classList.toggle("warn", up < rows.length);
    setText(summary.get("role"), c.role);
    setText(summary.get("self"), c.cluster ? String(c.node_id) : "–");
    setText(summary.get("commit"), formatNumber(c.commit_index));
    setText(summary.get("cluster"), c.cluster ? String(c.cluster_id) : "–");
    note.hidden = c.cluster && c.leader_id !== 0;
    setText(note, !c.cluster
      ? "This server runs alone, not in a cluster: start it with --cluster-secret-file to found one "
        + "(docs/replication.md)."
      : "No leader is known: writes wait until one is elected.");
    table.classList.remove("stale");
    setText(status, `Seen from ${c.cluster ? `node ${c.node_id}` : "this server"} · updated ${new Date().toLocaleTimeString()}`);
  }

  function schedule(fn, ms) {
    if (stopped) return;
    const t = setTimeout(() => { timers = timers.filter((x) => x !== t); fn(); }, ms);
    timers.push(t);
  }

  async function refreshCluster() {
    const started = Date.now();
    try {
      const c = await api("GET", "/api/cluster");
      if (stopped) return;
      noteChanges(c);
      render(c);
    } catch (e) {
      if (stopped) return;
      table.classList.add("stale");
      setText(status, `Cannot reach this node: ${e.message} (the table shows the last known state)`);
    }
    schedule(refreshCluster, Math.max(0, CLUSTER_EVERY_MS - (Date.now() - started)));
  }

  async function refreshStats() {
    const started = Date.now();
    try {
      const s = await api("GET", "/api/stats");
      if (stopped) return;
      stats = s;
      statsAt = Date.now();
      if (previous) render(previous);
    } catch { /* refreshCluster reports an unreachable node */ }
    schedule(refreshStats, Math.max(0, STATS_EVERY_MS - (Date.now() - started)));
  }

  refreshCluster();
  refreshStats();
  return () => {
    stopped = true;
    for (const t of timers) clearTimeout(t);
  };
}
