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
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

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

test("no page errors", () => {
  assert.deepEqual(pageErrors, []);
});
