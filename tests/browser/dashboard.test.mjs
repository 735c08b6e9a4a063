// Browser tests of the dashboard: Playwright (playwright-core from npm)
// driving Debian's chromium headless against the real binary, with Distri's
// Python client on the other side (pyclient.py).
//
//   cd tests/browser && npm ci && DISTRI_BIN=../../build/test/distri node --test
//
// Environment: DISTRI_BIN (default build/test/distri), CHROMIUM (default
// /usr/bin/chromium), PYTHON (default build/venv/bin/python, else python3),
// DISTRI_ARTIFACTS (screenshots; default build/test-artifacts).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

import { Resp } from "./resp.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const distriBin = path.resolve(process.env.DISTRI_BIN || path.join(repo, "build/test/distri"));
const chromiumBin = process.env.CHROMIUM || "/usr/bin/chromium";
const venvPython = path.join(repo, "build/venv/bin/python");
const python = process.env.PYTHON || (fs.existsSync(venvPython) ? venvPython : "python3");
const artifacts = path.resolve(process.env.DISTRI_ARTIFACTS || path.join(repo, "build/test-artifacts"));
const SANITIZER = /ERROR: (Address|Leak)Sanitizer|runtime error:/;

let workdir, server, serverLog, port, httpPort, base, py, context, page;
const dialogs = [];
const pageErrors = [];

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port: p } = s.address();
      s.close(() => resolve(p));
    });
  });
}

async function waitFor(fn, what, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await fn()) return;
    } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// The Python helper: one JSON request per line, one JSON reply per line.
class PyClient {
  constructor() {
    this.proc = spawn(python, [path.join(here, "pyclient.py")], { stdio: ["pipe", "pipe", "inherit"] });
    this.lines = readline.createInterface({ input: this.proc.stdout });
    this.waiters = [];
    this.lines.on("line", (line) => this.waiters.shift()(JSON.parse(line)));
    this.hello = new Promise((resolve) => this.waiters.push(resolve));
  }
  async call(cmd) {
    const reply = await new Promise((resolve) => {
      this.waiters.push(resolve);
      this.proc.stdin.write(JSON.stringify({ port, ...cmd }) + "\n");
    });
    if (!reply.ok) throw new Error(`python client: ${reply.error}`);
    return reply;
  }
  close() {
    this.proc.stdin.end();
  }
}

before(async () => {
  assert.ok(fs.existsSync(distriBin), `distri binary not found at ${distriBin}`);
  assert.ok(fs.existsSync(chromiumBin), `chromium not found at ${chromiumBin}`);
  fs.mkdirSync(artifacts, { recursive: true });
  workdir = fs.mkdtempSync(path.join(os.tmpdir(), "distri-browser-"));
  port = await freePort();
  httpPort = await freePort();
  base = `http://127.0.0.1:${httpPort}`;
  serverLog = path.join(workdir, "server.log");
  const log = fs.openSync(serverLog, "a");
  server = spawn(distriBin, ["serve", "--port", String(port), "--http-port", String(httpPort),
    "--bind", "127.0.0.1", "--data", path.join(workdir, "data")], { stdio: ["ignore", log, log] });
  await waitFor(async () => (await fetch(`${base}/healthz`)).ok, "the server's /healthz");

  py = new PyClient();
  const hello = await py.hello;
  console.log(`python side: ${hello.client}`);

  context = await chromium.launchPersistentContext(path.join(workdir, "profile"), {
    executablePath: chromiumBin,
    headless: true,
    viewport: { width: 1400, height: 900 },
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--no-first-run"],
  });
  page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(15000);
  page.on("dialog", (d) => { dialogs.push(d.message()); d.dismiss(); });
  page.on("pageerror", (e) => pageErrors.push(String(e)));
});

// Extra servers with their own flags (a password, --trust-loopback no);
// stopped and checked in after() like the main one.
const extraServers = [];
async function startServer(args) {
  const p = await freePort();
  const hp = await freePort();
  const dir = fs.mkdtempSync(path.join(workdir, "extra-"));
  const logPath = path.join(dir, "server.log");
  const log = fs.openSync(logPath, "a");
  const proc = spawn(distriBin, ["serve", "--port", String(p), "--http-port", String(hp),
    "--bind", "127.0.0.1", "--data", path.join(dir, "data"), ...args], { stdio: ["ignore", log, log] });
  const srv = { proc, port: p, base: `http://127.0.0.1:${hp}`, logPath };
  extraServers.push(srv);
  await waitFor(async () => (await fetch(`${srv.base}/healthz`)).ok, "an extra server's /healthz");
  return srv;
}

async function stopServer(proc, logPath) {
  const code = proc.exitCode !== null ? proc.exitCode : await new Promise((resolve) => {
    proc.on("exit", (c) => resolve(c));
    proc.kill("SIGTERM");
  });
  const text = fs.readFileSync(logPath, "utf8");
  assert.equal(code, 0, `distri exited with ${code} on SIGTERM:\n${text.slice(-3000)}`);
  assert.ok(!SANITIZER.test(text), `sanitizer report in the server log:\n${text.slice(-5000)}`);
}

after(async () => {
  if (context) await context.close();
  for (const srv of extraServers) await stopServer(srv.proc, srv.logPath);
  if (py) py.close();
  if (server) {
    const code = await new Promise((resolve) => {
      server.on("exit", (c) => resolve(c));
      server.kill("SIGTERM");
    });
    const text = fs.readFileSync(serverLog, "utf8");
    assert.equal(code, 0, `distri exited with ${code} on SIGTERM:\n${text.slice(-3000)}`);
    assert.ok(!SANITIZER.test(text), `sanitizer report in the server log:\n${text.slice(-5000)}`);
  }
  if (workdir) fs.rmSync(workdir, { recursive: true, force: true });
});

const keyRow = (key) => page.locator(`#keys tr[data-key="${key.replace(/["\\]/g, "\\$&")}"]`);

test("overview shows live statistics and charts", async () => {
  await py.call({ op: "set", room: "default", key: "warmup", value: 1 });
  await page.goto(`${base}/`);
  await page.locator('#site-stats [data-field="keys"]').filter({ hasNotText: "–" }).waitFor();
  const keys = Number((await page.locator('#site-stats [data-field="keys"]').textContent()).replace(/,/g, ""));
  assert.ok(keys >= 1);
  assert.equal(await page.locator("canvas.spark").count(), 2);
  // Navigation is ready for the pages later releases add.
  for (const section of ["Queues", "Streams", "Services", "Cluster"]) {
    assert.equal(await page.locator("#nav a", { hasText: section }).count(), 1);
  }
  for (let i = 0; i < 6; i++) {  // some activity for the charts
    await py.call({ op: "fill", room: "default", n: 200 * (i + 1) });
    await page.waitForTimeout(500);
  }
  await page.locator('#site-stats [data-field="keys"]', { hasText: "1,201" }).waitFor();
  await page.screenshot({ path: path.join(artifacts, "dashboard-overview.png"), fullPage: true });
});

let room;

test("create a room; a key set from Python appears within one second", async () => {
  await page.goto(`${base}/#/rooms`);
  await page.locator("#new-name").fill("browser test");
  await page.locator("#create-room").click();
  await page.waitForURL(/#\/rooms\/[A-Za-z0-9_-]{22}$/);
  room = (await page.locator("#room-code").textContent()).trim();
  assert.match(room, /^[A-Za-z0-9_-]{22}$/);
  await page.locator("#room-status", { hasText: "live" }).waitFor();
  await page.locator("#room-title", { hasText: "browser test" }).waitFor();

  await py.call({ op: "set", room, key: "greeting", value: "hello from python" });
  const t0 = Date.now();
  await keyRow("greeting").waitFor({ timeout: 1000 });
  const elapsed = Date.now() - t0;
  assert.ok(elapsed < 1000, `appeared after ${elapsed} ms`);
  assert.match(await keyRow("greeting").locator("td.value").textContent(), /hello from python/);
  // Live room statistics follow.
  await page.locator('#room-stats [data-field="keys"]', { hasText: "1" }).waitFor();
});

test("edit, add and delete keys in the browser; Python reads the results", async () => {
  await keyRow("greeting").locator("button.edit").click();
  await page.locator("#edit-value").fill('{"edited": true, "n": 2}');
  await page.locator("#edit-save").click();
  await page.locator("#editor").waitFor({ state: "hidden" });
  assert.deepEqual((await py.call({ op: "get", room, key: "greeting" })).value, { edited: true, n: 2 });
  // Pretty-printed in the table.
  await keyRow("greeting").locator("td.value pre", { hasText: '"edited": true' }).waitFor();

  await page.locator("#add-key").click();
  await page.locator("#edit-key").fill("from-browser");
  await page.locator("#edit-value").fill("[1, 2, 3]");
  await page.locator("#edit-save").click();
  await keyRow("from-browser").waitFor();
  assert.deepEqual((await py.call({ op: "get", room, key: "from-browser" })).value, [1, 2, 3]);

  // A change from Python is highlighted, and listed among the recent changes.
  await py.call({ op: "set", room, key: "counter", value: 41 });
  await keyRow("counter").and(page.locator("tr.changed")).waitFor();
  await page.locator("#feed li", { hasText: "counter" }).first().waitFor();
  await page.screenshot({ path: path.join(artifacts, "dashboard-room.png"), fullPage: true });

  const del = keyRow("from-browser").locator("button.delete");
  await del.click();
  await del.click();  // confirm
  await keyRow("from-browser").waitFor({ state: "detached" });
  assert.equal((await py.call({ op: "get", room, key: "from-browser" })).value, null);
});

test("keys and values with markup are shown as text and never run", async () => {
  const evilKey = "<script>window.__xss = 1</script>";
  const evilValue = '<img src=x onerror="window.__xss = 2; alert(2)">';
  await py.call({ op: "set", room, key: evilKey, value: evilValue });
  await keyRow(evilKey).waitFor();
  await page.locator("#add-key").click();
  await page.locator("#edit-key").fill('<img src=y onerror="window.__xss = 3; alert(3)">');
  await page.locator("#edit-value").fill('<svg onload="window.__xss = 4"></svg><script>window.__xss = 5</script>');
  await page.locator("#edit-save").click();
  await keyRow('<img src=y onerror="window.__xss = 3; alert(3)">').waitFor();
  await page.waitForTimeout(500);  // give any injected handler time to fire
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  assert.equal(await page.locator("#keys img, #keys script, #keys svg, #feed img, #feed svg").count(), 0);
  assert.equal(await keyRow(evilKey).locator("td.key").textContent(), evilKey);
  assert.match(await keyRow(evilKey).locator("td.value").textContent(), /<img src=x onerror=/);
  assert.deepEqual(dialogs, []);
  // The edited value is stored as typed.
  const got = await py.call({ op: "get", room, key: '<img src=y onerror="window.__xss = 3; alert(3)">' });
  assert.equal(got.value, '<svg onload="window.__xss = 4"></svg><script>window.__xss = 5</script>');
});

test("a room of 100k keys stays usable: paged table, prefix filter", async () => {
  const big = (await (await fetch(`${base}/api/rooms`, { method: "POST" })).json()).code;
  await py.call({ op: "fill", room: big, n: 100000 });
  const t0 = Date.now();
  await page.goto(`${base}/#/rooms/${big}`);
  await page.locator("#pager-text", { hasText: "of 100,000" }).waitFor({ timeout: 30000 });
  console.log(`100k keys mirrored and shown in ${Date.now() - t0} ms`);
  assert.ok(await page.locator("#keys tbody tr").count() <= 100);
  assert.equal(await page.locator("#keys tbody tr").first().getAttribute("data-key"), "k:00000");
  await page.locator("#page-next").click();
  assert.equal(await page.locator("#keys tbody tr").first().getAttribute("data-key"), "k:00100");

  // A change on the far side of the room still shows up live.
  await py.call({ op: "set", room: big, key: "k:00150", value: "live" });
  await keyRow("k:00150").locator("td.value", { hasText: "live" }).waitFor({ timeout: 1000 });

  await page.locator("#prefix-filter").fill("k:0999");
  await page.locator("#pager-text", { hasText: "1–10 of 10" }).waitFor();
  const keys = await page.locator("#keys tbody tr").evaluateAll((rows) => rows.map((r) => r.dataset.key));
  assert.deepEqual(keys, Array.from({ length: 10 }, (_, i) => `k:0999${i}`));
  await page.locator("#prefix-filter").fill("");
  await page.locator("#pager-text", { hasText: "of 100,000" }).waitFor({ timeout: 30000 });
});

test("a password-protected server: the page asks once, then works", async () => {
  const password = "pässword with spaces";
  const srv = await startServer(["--requirepass", password, "--auth-fail-limit", "0"]);
  const auth = { Authorization: `Bearer ${Buffer.from(password, "utf8").toString("latin1")}` };
  assert.equal((await fetch(`${srv.base}/api/rooms`)).status, 401);
  const p2 = await context.newPage();
  p2.on("pageerror", (e) => pageErrors.push(String(e)));
  try {
    await p2.goto(`${srv.base}/#/rooms`);
    await p2.locator("#auth-dialog").waitFor();
    await p2.locator("#auth-password").fill("wrong");
    await p2.locator("#auth-submit").click();
    await p2.locator("#auth-dialog", { hasText: "refused" }).waitFor();
    await p2.locator("#auth-password").fill(password);
    await p2.locator("#auth-submit").click();
    await p2.locator("#auth-dialog").waitFor({ state: "detached" });
    // The API works: rooms list (codes shown: an authenticated client is an admin),
    // a new room, its live WebSocket mirror, and a write from the browser.
    await p2.locator("#new-name").fill("locked");
    await p2.locator("#create-room").click();
    await p2.waitForURL(/#\/rooms\/[A-Za-z0-9_-]{22}$/);
    const code = (await p2.locator("#room-code").textContent()).trim();
    await p2.locator("#room-status", { hasText: "live" }).waitFor();
    await p2.locator("#add-key").click();
    await p2.locator("#edit-key").fill("secret-key");
    await p2.locator("#edit-value").fill('"typed"');
    await p2.locator("#edit-save").click();
    await p2.locator('#keys tr[data-key="secret-key"]').waitFor();
    const got = await (await fetch(`${srv.base}/api/rooms/${code}/keys/secret-key`, { headers: auth })).json();
    assert.equal(got.value, '"typed"');
    // A key written elsewhere arrives over the (authenticated) WebSocket.
    const put = await fetch(`${srv.base}/api/rooms/${code}/keys/from-api`,
      { method: "PUT", body: "v1", headers: auth });
    assert.equal(put.status, 200);
    await p2.locator('#keys tr[data-key="from-api"]').waitFor({ timeout: 2000 });
    // Asked once: a reload (same tab session) does not ask again.
    await p2.goto(`${srv.base}/#/rooms`);
    await p2.locator(`a[href="#/rooms/${code}"]`).waitFor();
    assert.equal(await p2.locator("#auth-dialog").count(), 0);
  } finally {
    await p2.close();
  }
});

test("without admin rights the rooms page lists ids, and a code still opens its room", async () => {
  const srv = await startServer(["--trust-loopback", "no"]);
  const created = await (await fetch(`${srv.base}/api/rooms`, { method: "POST" })).json();
  const p2 = await context.newPage();
  p2.on("pageerror", (e) => pageErrors.push(String(e)));
  try {
    await p2.goto(`${srv.base}/#/rooms`);
    await p2.locator("#rooms-status", { hasText: "rooms" }).waitFor();
    const ids = await p2.locator("span.room-id").allTextContents();
    assert.ok(ids.some((id) => /^r-[0-9a-f]{16}$/.test(id)), JSON.stringify(ids));
    assert.ok(!(await p2.content()).includes(created.code), "the room code leaked into the page");
    await p2.goto(`${srv.base}/`);
    await p2.locator("span.room-id").first().waitFor();
    await p2.locator("#open-code").fill(created.code);
    await p2.locator("#open-room").click();
    await p2.locator("#room-status", { hasText: "live" }).waitFor();
  } finally {
    await p2.close();
  }
});

// Console errors on the main page while `fn` runs (a failed request, a CSP refusal).
async function withoutConsoleErrors(fn) {
  const errors = [];
  const onConsole = (m) => { if (m.type() === "error") errors.push(m.text()); };
  page.on("console", onConsole);
  try {
    await fn();
  } finally {
    page.off("console", onConsole);
  }
  assert.deepEqual(errors, []);
}

test("services page: a worker with its concurrency, and an outstanding call", () => withoutConsoleErrors(async () => {
  const worker = await Resp.connect(port);
  const caller = await Resp.connect(port);
  try {
    await worker.command("HELLO", "3");
    assert.equal(await worker.command("CLIENT", "SETNAME", "browser-worker"), "OK");
    assert.equal(await worker.command("SVC.SERVE", "thumbnails", "CONCURRENCY", "3"), "OK");
    await page.goto(`${base}/#/services`);
    const service = page.locator('#services tr.service[data-service="thumbnails"]');
    const row = page.locator("#services tr.worker", { hasText: "browser-worker" });
    await row.locator(".load-text", { hasText: "0 / 3" }).waitFor();
    assert.equal(await service.locator("td").nth(1).textContent(), "default");

    // A call the worker holds unanswered shows as in flight, on the worker and the service.
    const reply = caller.command("CALL", "thumbnails", "cat.png", "TIMEOUT", "20000");
    const [kind, id, name, payload] = await worker.nextPush();
    assert.deepEqual([kind, name, payload], ["svc.request", "thumbnails", "cat.png"]);
    await row.locator(".load-text", { hasText: "1 / 3" }).waitFor({ timeout: 2000 });
    assert.equal(await service.locator("td").nth(4).textContent(), "1");
    await page.locator('#services-summary [data-field="in_flight"]', { hasText: "1" }).waitFor();
    await page.screenshot({ path: path.join(artifacts, "dashboard-services.png"), fullPage: true });

    assert.equal(await worker.command("SVC.REPLY", String(id), "done"), 1);
    assert.equal(await reply, "done");
    await row.locator(".load-text", { hasText: "0 / 3" }).waitFor({ timeout: 2000 });
    assert.equal(await service.locator("td").nth(6).textContent(), "1");  // calls made
    assert.match(await service.locator("td").nth(9).textContent(), /ms$/);  // p50 of the answered call

    // The worker leaves: so does the service.
    worker.close();
    await service.waitFor({ state: "detached", timeout: 3000 });
    await page.locator("#services-status", { hasText: "No services" }).waitFor();
  } finally {
    worker.close();
    caller.close();
  }
}));

test("cluster page on a server without a cluster: itself, standalone", async () => {
  await page.goto(`${base}/#/cluster`);
  await page.locator("#cluster-nodes tbody tr").first().waitFor();
  assert.equal(await page.locator("#cluster-nodes tbody tr").count(), 1);
  const row = page.locator("#cluster-nodes tbody tr");
  assert.equal(await row.getAttribute("data-role"), "standalone");
  assert.equal(await row.getAttribute("data-health"), "up");
  await page.locator("#cluster-note", { hasText: "not in a cluster" }).waitFor();
  assert.match(await row.textContent(), new RegExp(`127\\.0\\.0\\.1:${port}`));

  // Keyboard: the node's dashboard link takes focus by Tab and keeps it across refreshes (rows
  // are updated in place, not rebuilt).
  const link = row.locator("a");
  await link.focus();
  await page.keyboard.press("Shift+Tab");
  await page.keyboard.press("Tab");
  assert.equal(await link.evaluate((a) => a === document.activeElement), true);
  for (let i = 0; i < 2; i++) {  // two refreshes of the table
    const before = await page.locator("#cluster-status").textContent();
    await page.locator("#cluster-status").filter({ hasNotText: before }).waitFor();
  }
  assert.equal(await link.evaluate((a) => a === document.activeElement), true);

  // Per-node figures come from /api/stats's "nodes" when the server gives them (a cluster-wide
  // /api/stats): here injected into the real answer, to pin down how the page merges them.
  await page.route("**/api/stats", async (route) => {
    const real = await (await route.fetch()).json();
    real.nodes = [{ id: 0, client_address: `127.0.0.1:${port}`, reachable: true, role: "standalone", term: 7,
      commit_index: 1234, applied_index: 1233, leader_id: 0, clients: 42 }];
    await route.fulfill({ json: real });
  });
  try {
    await page.goto(`${base}/#/`);
    await page.goto(`${base}/#/cluster`);
    const cells = row.locator("td");
    await cells.nth(9).filter({ hasText: "42" }).waitFor();  // clients
    assert.deepEqual(await Promise.all([3, 4, 5].map((i) => cells.nth(i).textContent())), ["7", "1,234", "1,233"]);
  } finally {
    await page.unroute("**/api/stats");
  }
});

// ---------------------------------------------------------------------------
// A real three-node cluster: every node a distri process with its own data
// directory, on 127.0.0.1 with ports picked here. Killed with SIGKILL.

class ClusterProc {
  constructor(dir, secretFile) {
    this.dir = dir;
    this.secretFile = secretFile;
    this.logPath = path.join(dir, "server.log");
    this.proc = null;
  }
  async start(join) {
    if (this.port === undefined) {
      [this.port, this.httpPort, this.clusterPort] = [await freePort(), await freePort(), await freePort()];
      this.base = `http://127.0.0.1:${this.httpPort}`;
      this.clusterAddress = `127.0.0.1:${this.clusterPort}`;
    }
    const args = ["serve", "--port", String(this.port), "--http-port", String(this.httpPort), "--bind", "127.0.0.1",
      "--data", path.join(this.dir, "data"), "--cluster-port", String(this.clusterPort),
      "--cluster-secret-file", this.secretFile];
    if (join) args.push("--join", join.clusterAddress);
    const log = fs.openSync(this.logPath, "a");
    this.proc = spawn(distriBin, args, { stdio: ["ignore", log, log] });
    await waitFor(async () => (await fetch(`${this.base}/healthz`)).ok, `node ${this.dir}'s /healthz`);
    this.id = (await this.cluster()).node_id;
    return this;
  }
  async cluster() {
    return (await fetch(`${this.base}/api/cluster`)).json();
  }
  kill() {
    this.proc.kill("SIGKILL");
    return new Promise((resolve) => (this.proc.exitCode !== null ? resolve() : this.proc.once("exit", resolve)));
  }
}

// Every node of `nodes` sees them all as healthy voters, with one leader.
async function formed(nodes) {
  const ids = nodes.map((n) => n.id).sort();
  for (const n of nodes) {
    const c = await n.cluster();
    const seen = c.nodes.map((m) => m.id).sort();
    if (JSON.stringify(seen) !== JSON.stringify(ids) || !c.leader_id) return false;
    if (c.nodes.some((m) => !m.healthy || m.role === "learner")) return false;
  }
  return true;
}

test("cluster page: three nodes and one leader, live; a killed node shows as down; a new leader", () => withoutConsoleErrors(async () => {
  const dir = fs.mkdtempSync(path.join(workdir, "cluster-"));
  const secretFile = path.join(dir, "cluster.secret");
  fs.writeFileSync(secretFile, crypto.randomBytes(32).toString("hex") + "\n", { mode: 0o600 });
  const nodes = [1, 2, 3].map((i) => {
    fs.mkdirSync(path.join(dir, `node${i}`));
    return new ClusterProc(path.join(dir, `node${i}`), secretFile);
  });
  const [n1, n2, n3] = nodes;
  const rows = page.locator("#cluster-nodes tbody tr");
  const rowOf = (n) => page.locator(`#cluster-nodes tbody tr[data-node-id="${n.id}"]`);
  try {
    await n1.start();
    await n2.start(n1);
    await waitFor(() => formed([n1, n2]), "a cluster of two");
    await page.goto(`${n1.base}/#/cluster`);
    await rows.nth(1).waitFor();
    assert.equal(await rows.count(), 2);

    // A member joining shows within a second of the node knowing it.
    await n3.start(n1);
    await waitFor(async () => (await n1.cluster()).nodes.length === 3, "node 3 in node 1's membership", 20000);
    await rows.nth(2).waitFor({ timeout: 1000 });
    await waitFor(() => formed(nodes), "a cluster of three");

    // Seen from a follower: three nodes up, one leader (the one the nodes agree on).
    const leaderId = (await n1.cluster()).leader_id;
    const leader = nodes.find((n) => n.id === leaderId);
    const [viewer, follower] = nodes.filter((n) => n !== leader);
    await page.goto(`${viewer.base}/#/cluster`);
    await page.locator('#cluster-nodes tbody tr[data-health="up"]').nth(2).waitFor();
    assert.equal(await rows.count(), 3);
    assert.equal(await page.locator('#cluster-nodes tbody tr[data-role="leader"]').count(), 1);
    assert.equal(await rowOf(leader).getAttribute("data-role"), "leader");
    await page.locator('#cluster-summary [data-field="up"]', { hasText: "3 / 3" }).waitFor();
    await page.locator('#cluster-summary [data-field="leader"]', { hasText: String(leaderId) }).waitFor();
    assert.match(await rowOf(viewer).textContent(), /this node/);
    assert.match(await rowOf(follower).locator("td").nth(10).textContent(), new RegExp(`:${follower.port}$`));
    await page.screenshot({ path: path.join(artifacts, "dashboard-cluster.png"), fullPage: true });

    // SIGKILL a follower: down, in words, within a few seconds; back up when it restarts.
    // Timed in the page (every animation frame), not by the locator's own backing-off polls.
    const shown = (fn, arg, timeout) => page.waitForFunction(fn, arg, { polling: "raf", timeout });
    await follower.kill();
    let t0 = Date.now();
    await shown((id) => document.querySelector(`#cluster-nodes tr[data-node-id="${id}"]`)?.dataset.health === "down",
      follower.id, 5000);
    console.log(`a killed follower showed as down after ${Date.now() - t0} ms`);
    assert.match(await rowOf(follower).locator("td.health").textContent(), /down/);
    await page.locator('#cluster-summary [data-field="up"]', { hasText: "2 / 3" }).waitFor();
    await page.locator("#cluster-feed li", { hasText: `node ${follower.id} is down` }).waitFor();
    await page.screenshot({ path: path.join(artifacts, "dashboard-cluster-down.png"), fullPage: true });
    await follower.start();
    await rowOf(follower).and(page.locator('[data-health="up"]')).waitFor({ timeout: 10000 });

    // SIGKILL the leader: a new one is elected and shown; the old one is down.
    await leader.kill();
    t0 = Date.now();
    await shown((id) => document.querySelector(`#cluster-nodes tr[data-role="leader"]:not([data-node-id="${id}"])`),
      leader.id, 15000);
    console.log(`a new leader showed ${Date.now() - t0} ms after the leader was killed`);
    assert.equal(await rowOf(leader).getAttribute("data-health"), "down");
    await page.locator("#cluster-feed li", { hasText: "is the leader" }).first().waitFor();
  } finally {
    const survivors = nodes.filter((n) => n.proc && n.proc.exitCode === null && n.proc.signalCode === null);
    for (const n of survivors) await stopServer(n.proc, n.logPath);
  }
}));

test("no page errors", () => {
  assert.deepEqual(pageErrors, []);
});
