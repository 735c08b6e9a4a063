// The dashboard's entry point: a hash router over pages.
//
// Each page is a module exporting mount(container, params) -> unmount().
// Sections that later releases fill in (queues, streams)
// are registered as placeholders: adding one is a new module and one line in
// PAGES. Every key and value reaches the DOM through textContent (see
// js/dom.js), never as markup.

import { el } from "./js/dom.js";
import { mountOverview } from "./js/overview.js";
import { mountRooms } from "./js/rooms.js";
import { mountRoom } from "./js/room.js";
import { mountServices } from "./js/services.js";
import { mountCluster } from "./js/cluster.js";

const placeholder = (title, what) => (root) => {
  root.append(el("section", { class: "card" },
    el("h1", {}, title),
    el("p", { class: "muted" }, `${what} will appear here in a later release.`)));
  return () => {};
};

// [hash pattern, nav id, mount]
const PAGES = [
  [/^#?\/?$/, "overview", mountOverview],
  [/^#\/rooms\/?$/, "rooms", mountRooms],
  [/^#\/rooms\/([^/]+)$/, "rooms", (root, [code]) => mountRoom(root, decodeURIComponent(code))],
  [/^#\/queues$/, "queues", placeholder("Queues", "Job queues: depth, leases, retries and dead letters")],
  [/^#\/streams$/, "streams", placeholder("Streams", "Streams: offsets, consumer groups and lag")],
  [/^#\/services$/, "services", mountServices],
  [/^#\/cluster$/, "cluster", mountCluster],
];

let unmount = null;

function route() {
  if (unmount) unmount();
  unmount = null;
  const root = document.getElementById("page");
  root.replaceChildren();
  const hash = location.hash || "#/";
  for (const [pattern, nav, mount] of PAGES) {
    const m = hash.match(pattern);
    if (!m) continue;
    for (const a of document.querySelectorAll("#nav a")) {
      a.classList.toggle("active", a.dataset.page === nav);
    }
    unmount = mount(root, m.slice(1));
    return;
  }
  root.append(el("section", { class: "card" }, el("h1", {}, "Not found"),
    el("p", {}, el("a", { href: "#/" }, "Back to the overview"))));
}

window.addEventListener("hashchange", route);
route();
