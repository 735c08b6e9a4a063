"""The HTTP endpoint against the real binary: JSON API, WebSocket mirrors and
writes, /metrics, /healthz, /readyz, origin and host checks, limits, escaping.

Speaks HTTP with the standard library (http.client and raw sockets for the
malformed cases) and WebSocket with the small client below, so the tests need
nothing beyond tests/requirements.txt. See docs/http.md for the API.
"""

import base64
import hashlib
import http.client
import json
import os
import socket
import struct
import time
import urllib.parse

import pytest

from conftest import Raw, encode_command, wait_until

pytestmark = pytest.mark.distri

TIMEOUT = 10


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def request(server, method, path, body=None, headers=None):
    """One request on a fresh connection -> (status, headers dict, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=TIMEOUT)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def get_json(server, path, expect=200):
    status, headers, body = request(server, "GET", path)
    assert status == expect, (status, body)
    assert headers["content-type"].startswith("application/json")
    return json.loads(body)


def key_path(room, key):
    return f"/api/rooms/{urllib.parse.quote(room, safe='')}/keys/{urllib.parse.quote(key, safe='')}"


def raw_http(server, data, timeout=TIMEOUT):
    """Sends raw bytes; returns everything the server sent until it closed."""
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out


class Ws:
    """A minimal RFC 6455 client: masked frames out, JSON text messages in."""

    def __init__(self, server, path, origin=None, host=None, timeout=TIMEOUT, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:  # before connecting, so the kernel holds little the client does not read
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", server.http_port))
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {host or f'127.0.0.1:{server.http_port}'}",
                 "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                 "Sec-WebSocket-Version: 13"]
        if origin:
            lines.append(f"Origin: {origin}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            assert chunk, f"closed during handshake: {self.buf!r}"
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        self.status = int(head.split(b" ")[1])
        self.head = head.decode()
        if self.status == 101:
            accept = base64.b64encode(hashlib.sha1(
                (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
            assert f"Sec-WebSocket-Accept: {accept}" in self.head
        self.data = {}
        self.ready_rev = None
        self.last_rev = None

    def send_frame(self, opcode, payload, fin=True, mask=True):
        b0 = (0x80 if fin else 0) | opcode
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
        elif n < 65536:
            header = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
        else:
            header = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
        if mask:
            m = os.urandom(4)
            payload = bytes(b ^ m[i % 4] for i, b in enumerate(payload))
            header += m
        self.sock.sendall(header + payload)

    def send(self, obj):
        self.send_frame(0x1, json.dumps(obj).encode())

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("WebSocket closed by the server")
            self.buf += chunk

    def recv_frame(self):
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        assert not b1 & 0x80, "server frames must not be masked"
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._need(4)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(off + n)
        payload, self.buf = self.buf[off:off + n], self.buf[off + n:]
        return b0 & 0x0F, payload

    def recv(self):
        """The next JSON message, applied to the local copy like a dashboard would."""
        while True:
            op, payload = self.recv_frame()
            if op == 0x1:
                msg = json.loads(payload)
                self.apply(msg)
                return msg
            if op == 0x8:
                raise EOFError(f"close frame {payload!r}")

    def apply(self, m):
        t = m.get("type")
        if t == "reset":
            self.data.clear()
        elif t == "snapshot":
            for item in m["items"]:
                self.data[item["key"]] = item["value"]
        elif t == "ready":
            self.ready_rev = self.last_rev = m["revision"]
        elif t in ("set", "del", "flush"):
            if self.ready_rev is not None:
                self.last_rev = m["revision"]
            if t == "set":
                self.data[m["key"]] = m["value"]
            elif t == "del":
                self.data.pop(m["key"], None)
            else:
                self.data.clear()

    def until(self, pred, what="message"):
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            m = self.recv()
            if pred(m):
                return m
        raise AssertionError(f"no {what} within {TIMEOUT}s")

    def until_type(self, t):
        return self.until(lambda m: m.get("type") == t, t)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


@pytest.fixture
def c(server):
    cl = server.client(protocol=3, decode=False, single_connection_client=True)
    cl.flushall()
    yield cl
    cl.close()


def new_room(server, name=None):
    status, _, body = request(server, "POST", "/api/rooms", {"name": name} if name else None)
    assert status == 201, body
    return json.loads(body)["code"]


# ---------------------------------------------------------------------------
# JSON API
# ---------------------------------------------------------------------------

def test_stats_health_ready(server, c):
    c.set("a", "1")
    stats = get_json(server, "/api/stats")
    for field in ("version", "node_id", "uptime_s", "rooms", "clients", "keys", "ops_per_sec_1s",
                  "commands_total", "revision", "memory_bytes"):
        assert field in stats, field
    assert stats["keys"] >= 1
    assert get_json(server, "/healthz") == {"status": "ok"}
    assert get_json(server, "/readyz") == {"status": "ready"}
    status, headers, body = request(server, "HEAD", "/api/stats")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


def test_cluster_on_a_node_without_a_cluster(server):
    view = get_json(server, "/api/cluster")
    assert view["cluster"] is False
    assert (view["node_id"], view["cluster_id"], view["leader_id"]) == (0, 0, 0)
    assert view["role"] == "standalone"
    [node] = view["nodes"]
    assert node["self"] is True and node["healthy"] is True and node["role"] == "standalone"
    assert node["client_address"] == f"127.0.0.1:{server.port}"
    assert node["http_address"] == f"127.0.0.1:{server.http_port}"
    assert node["lag"] == 0 and node["match_index"] == view["applied_index"]
    assert request(server, "POST", "/api/cluster")[0] == 405


def resp3_worker(server, name, *services, concurrency=1, room=None):
    w = Raw(server.port)
    assert isinstance(w.cmd("HELLO", "3"), dict)
    if room:
        assert w.cmd("ROOM.JOIN", room) == b"OK"
    assert w.cmd("CLIENT", "SETNAME", name) == b"OK"
    assert w.cmd("SVC.SERVE", *services, "CONCURRENCY", str(concurrency)) == b"OK"
    return w


def test_services_workers_and_outstanding_calls(server):
    room = new_room(server, "svc")
    a = resp3_worker(server, "resizer-a", "resize", "crop", concurrency=2, room=room)
    b = resp3_worker(server, "resizer-b", "resize")
    caller = Raw(server.port)
    try:
        wait_until(lambda: len(get_json(server, "/api/services")["services"]) >= 3,
                   what="three services listed")
        # The caller's CALL is held by worker a, unanswered: in flight at a.
        assert caller.cmd("ROOM.JOIN", room) == b"OK"
        caller.send(encode_command("CALL", "crop", "img", "TIMEOUT", "20000"))
        frame = a.read_reply()
        assert frame[0] == b"svc.request" and frame[2] == b"crop"
        got = get_json(server, "/api/services")
        assert got["truncated"] is False
        by = {(s["room"], s["name"]): s for s in got["services"]}
        assert list(by) == sorted(by)  # sorted by room, then name
        crop, resize = by[(room, "crop")], by[(room, "resize")]
        assert (crop["calls"], crop["in_flight"], crop["waiting"]) == (1, 1, 0)
        assert crop["workers"] == [{"node_id": 0, "worker_id": crop["workers"][0]["worker_id"],
                                    "label": "resizer-a", "concurrency": 2, "in_flight": 1}]
        assert resize["in_flight"] == 0 and resize["workers"][0]["in_flight"] == 0
        assert by[("default", "resize")]["workers"][0]["label"] == "resizer-b"
        # ?room= lists one room's.
        only = get_json(server, "/api/services?room=" + urllib.parse.quote(room, safe=""))
        assert sorted(s["name"] for s in only["services"]) == ["crop", "resize"]
        assert get_json(server, "/api/services?room=no-such-room")["services"] == []
        assert request(server, "GET", "/api/services?room=")[0] == 400
        # Answered: the call is no longer outstanding, and its latency is recorded.
        assert a.cmd("SVC.REPLY", frame[1], "cropped") == 1
        assert caller.read_reply() == b"cropped"
        crop = next(s for s in get_json(server, "/api/services")["services"] if s["name"] == "crop")
        assert crop["in_flight"] == 0 and crop["workers"][0]["in_flight"] == 0
        assert crop["p50_ms"] >= 0 and crop["calls"] == 1
    finally:
        for r in (a, b, caller):
            r.close()
    wait_until(lambda: get_json(server, "/api/services")["services"] == [],
               what="services gone with their workers")


def test_services_show_room_ids_to_non_admins(server_factory):
    s = server_factory(extra_args=["--trust-loopback", "no"])
    room = new_room(s)
    w = resp3_worker(s, "hidden", "svc", room=room)
    try:
        [svc] = get_json(s, "/api/services")["services"]
        assert svc["room"].startswith("r-") and room not in json.dumps(svc)
    finally:
        w.close()


def test_key_crud_and_visibility_over_resp(server, c):
    status, _, body = request(server, "PUT", key_path("default", "greeting"), b"hello world")
    assert status == 200, body
    assert json.loads(body)["revision"] > 0
    assert c.get("greeting") == b"hello world"
    got = get_json(server, key_path("default", "greeting"))
    assert got == {"room": "default", "key": "greeting", "value": "hello world", "expire_at_ms": 0}

    # JSON envelope with a TTL.
    status, _, body = request(server, "PUT", key_path("default", "tmp"), {"value": "v", "ttl_ms": 60000})
    assert status == 200, body
    assert 0 < c.pttl("tmp") <= 60000
    assert json.loads(body)["expire_at_ms"] > time.time() * 1000

    c.set("from-resp", "x")
    assert get_json(server, key_path("default", "from-resp"))["value"] == "x"

    status, _, body = request(server, "DELETE", key_path("default", "greeting"))
    assert status == 200 and json.loads(body)["deleted"] is True
    assert c.get("greeting") is None
    err = get_json(server, key_path("default", "greeting"), expect=404)
    assert err["error"]["code"] == "NOTFOUND"
    status, _, _ = request(server, "DELETE", key_path("default", "greeting"))
    assert status == 404


def test_keys_with_slashes_unicode_and_binary(server, c):
    c.set("a/b c", "é ✓")
    c.set(b"bin\xff", b"\x00\xfe")
    got = get_json(server, key_path("default", "a/b c"))
    assert got["value"] == "é ✓"
    page = get_json(server, "/api/rooms/default/keys?limit=10")
    binary = [k for k in page["keys"] if "key_b64" in k]
    assert len(binary) == 1
    assert base64.b64decode(binary[0]["key_b64"]) == b"bin\xff"
    assert base64.b64decode(binary[0]["value_b64"]) == b"\x00\xfe"
    # Binary values can be written too.
    status, _, body = request(server, "PUT", key_path("default", "b2"),
                              {"value_b64": base64.b64encode(b"\xff\x01").decode()})
    assert status == 200, body
    assert c.get("b2") == b"\xff\x01"


def test_key_listing_pages_and_prefix(server, c):
    n = 2500
    pipe = c.pipeline(transaction=False)
    for i in range(n):
        pipe.set(f"user:{i}", str(i))
    for i in range(100):
        pipe.set(f"job:{i}", "j")
    pipe.execute()
    seen, cursor, pages = set(), "0", 0
    while True:
        page = get_json(server, f"/api/rooms/default/keys?prefix=user:&limit=1000&cursor={cursor}")
        pages += 1
        for item in page["keys"]:
            assert item["key"].startswith("user:")
            assert item["value"] == item["key"][5:]
            seen.add(item["key"])
        cursor = page["cursor"]
        if page["done"]:
            assert cursor == "0"
            break
        assert pages < 100
    assert len(seen) == n
    assert pages >= 3
    page = get_json(server, "/api/rooms/default/keys?prefix=job:&limit=1000&values=0")
    keys = set()
    while True:
        keys |= {item["key"] for item in page["keys"]}
        assert all("value" not in item for item in page["keys"])
        if page["done"]:
            break
        page = get_json(server, f"/api/rooms/default/keys?prefix=job:&limit=1000&values=0&cursor={page['cursor']}")
    assert len(keys) == 100


def test_rooms_create_list_stats_drop(server, c):
    code = new_room(server, "my room")
    assert len(code) == 22
    rooms = {r["code"]: r for r in get_json(server, "/api/rooms")["rooms"]}
    assert rooms[code]["name"] == "my room"
    status, _, _ = request(server, "PUT", key_path(code, "k"), b"v")
    assert status == 200
    c.execute_command("ROOM.JOIN", code)
    assert c.get("k") == b"v"
    stats = get_json(server, f"/api/rooms/{code}")
    assert stats["code"] == code and stats["keys"] == 1 and stats["writes"] >= 1
    for field in ("clients", "mirrors", "memory_bytes", "reads_per_sec_1s", "writes_per_sec_1m",
                  "created_at_ms", "last_write_ms", "revision"):
        assert field in stats
    status, _, body = request(server, "DELETE", f"/api/rooms/{code}")
    assert status == 200, body
    assert get_json(server, f"/api/rooms/{code}/keys", expect=404)["error"]["code"] == "NOTFOUND"
    assert request(server, "PUT", key_path("nosuchroom", "k"), b"v")[0] == 404


def test_errors_are_json(server):
    for method, path, status in [("GET", "/nope", 404), ("GET", "/api/nope", 404),
                                 ("GET", "/api/rooms/default/keys/a/b", 404),
                                 ("POST", "/api/stats", 405), ("PATCH", key_path("default", "k"), 405),
                                 ("GET", "/api/rooms/default/keys?limit=0", 400),
                                 ("GET", "/api/rooms/default/keys/%zz", 400),
                                 ("GET", "/api/rooms/default/ws", 426)]:
        got, headers, body = request(server, method, path)
        assert got == status, (method, path, got, body)
        assert headers["content-type"] == "application/json"
        assert "message" in json.loads(body)["error"]
    got, headers, body = request(server, "PUT", key_path("default", "k"), b"{not json",
                                 {"Content-Type": "application/json"})
    assert got == 400 and json.loads(body)["error"]["code"] == "ERR"
    nested = b"[" * 10000 + b"]" * 10000
    got, _, body = request(server, "PUT", key_path("default", "k"), nested, {"Content-Type": "application/json"})
    assert got == 400


def test_escaping_in_json(server, c):
    evil_key = '<script>alert(1)</script>'
    evil_value = '<img src=x onerror="alert(2)">'
    c.set(evil_key, evil_value)
    _, _, body = request(server, "GET", key_path("default", evil_key))
    assert b"<" not in body and b">" not in body   # escaped as \u003c, inert even inside HTML
    assert json.loads(body)["value"] == evil_value


def test_pipelined_requests_answer_in_order(server, c):
    reqs = b"".join(
        b"PUT /api/rooms/default/keys/p%d HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\n\r\n%d" % (i, i)
        for i in range(5))
    reqs += b"GET /api/rooms/default/keys/p4 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    out = raw_http(server, reqs)
    assert out.count(b"HTTP/1.1 200 OK") == 6
    assert out.rstrip().endswith(b'"value":"4","expire_at_ms":0}')
    revisions = [json.loads(part.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1")[0])["revision"]
                 for part in out.split(b"HTTP/1.1 200 OK")[1:6]]
    assert revisions == sorted(revisions)


def test_half_closed_client_gets_its_answers(server, c):
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=TIMEOUT) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                  b"PUT /api/rooms/default/keys/hc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\n\r\nx")
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    assert out.count(b"HTTP/1.1 200 OK") == 2, out
    assert c.get("hc") == b"x"


def test_embedded_dashboard_assets(server):
    status, headers, body = request(server, "GET", "/")
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert b"<script" in body
    etag = headers["etag"]
    status, _, body = request(server, "GET", "/", headers={"If-None-Match": etag})
    assert status == 304 and body == b""
    status, headers, _ = request(server, "GET", "/app.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript")


# ---------------------------------------------------------------------------
# Security and limits
# ---------------------------------------------------------------------------

def test_origin_checks_on_writes_and_websockets(server, c):
    own = f"http://127.0.0.1:{server.http_port}"
    status, _, body = request(server, "PUT", key_path("default", "o"), b"x", {"Origin": "http://evil.example"})
    assert status == 403 and json.loads(body)["error"]["code"] == "FORBIDDEN"
    assert c.get("o") is None
    for method in ("DELETE", "POST"):
        path = key_path("default", "o") if method == "DELETE" else "/api/rooms"
        assert request(server, method, path, headers={"Origin": "null"})[0] == 403
    assert request(server, "PUT", key_path("default", "o"), b"x", {"Origin": own})[0] == 200
    # Reads need no Origin check (the browser will not let another origin read them).
    assert request(server, "GET", "/api/stats", headers={"Origin": "http://evil.example"})[0] == 200
    ws = Ws(server, "/api/rooms/default/ws", origin="http://evil.example")
    assert ws.status == 403
    ws.close()
    ws = Ws(server, "/api/rooms/default/ws", origin=own)
    assert ws.status == 101
    ws.close()


def test_host_check_against_dns_rebinding(server):
    status, _, body = request(server, "GET", "/api/stats", headers={"Host": f"evil.example:{server.http_port}"})
    assert status == 403, body
    for host in ("localhost", f"localhost:{server.http_port}", "127.0.0.1", "[::1]:80"):
        assert request(server, "GET", "/api/stats", headers={"Host": host})[0] == 200, host


def test_header_and_body_limits(server, c):
    big_header = b"GET /api/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    assert raw_http(server, big_header).startswith(b"HTTP/1.1 431 ")
    many = b"GET /api/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200))
    assert raw_http(server, many + b"\r\n").startswith(b"HTTP/1.1 431 ")
    # Refused from the Content-Length alone, before the body is sent.
    out = raw_http(server, b"PUT /api/rooms/default/keys/big HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"Content-Length: 100000000\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413 ")
    assert b'"code":"TOOLARGE"' in out
    # Chunked, growing past the limit.
    chunk = b"%x\r\n%s\r\n" % (1 << 20, b"z" * (1 << 20))
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=TIMEOUT) as s:
        s.sendall(b"PUT /api/rooms/default/keys/big HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        got = b""
        try:
            for _ in range(12):
                s.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                got += data
        except ConnectionResetError:
            pass
    assert got.startswith(b"HTTP/1.1 413 "), got[:100]
    assert c.get("big") is None
    for garbage in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"GET / HTTP/7.0\r\n\r\n",
                    b"GET nopath HTTP/1.1\r\n\r\n"):
        out = raw_http(server, garbage)
        assert out.startswith(b"HTTP/1.1 4") or out.startswith(b"HTTP/1.1 505"), out
    # Still serving.
    assert get_json(server, "/healthz") == {"status": "ok"}


def test_expect_100_continue(server, c):
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=TIMEOUT) as s:
        s.sendall(b"PUT /api/rooms/default/keys/e HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
                  b"Content-Length: 3\r\nConnection: close\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(b"abc")
        assert b"200 OK" in s.recv(1000)
    assert c.get("e") == b"abc"


def test_metrics(server, c):
    c.set("m", "1")
    request(server, "GET", "/api/stats")
    status, headers, body = request(server, "GET", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    samples = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name, value = line.rsplit(" ", 1)
        samples[name] = float(value)
    for name in ("distri_keys", "distri_rooms", "distri_clients", "distri_memory_used_bytes",
                 "distri_process_resident_memory_bytes", "distri_commands_total",
                 'distri_errors_total{kind="protocol"}', "distri_http_connections"):
        assert name in samples, name
    assert samples["distri_keys"] >= 1
    assert samples["distri_process_resident_memory_bytes"] > 1e6
    assert 'distri_http_requests_total{route="/api/stats",method="GET",code="200"}' in samples
    assert any(k.startswith("distri_http_request_duration_seconds_bucket{") for k in samples)
    assert "# TYPE distri_http_request_duration_seconds histogram" in text
    # Commands by name, write latency and the log's fsync latency.
    assert samples['distri_command_calls_total{command="set"}'] >= 1
    assert samples["distri_write_duration_seconds_count"] >= 1
    assert samples["distri_log_fsync_duration_seconds_count"] >= 1
    assert samples['distri_log_fsync_duration_seconds_bucket{le="+Inf"}'] == \
        samples["distri_log_fsync_duration_seconds_count"]


# ---------------------------------------------------------------------------
# WebSocket
# ---------------------------------------------------------------------------

def test_ws_snapshot_then_live_changes(server, c):
    for i in range(50):
        c.set(f"k{i}", f"v{i}")
    ws = Ws(server, "/api/rooms/default/ws")
    assert ws.status == 101
    hello = ws.recv()
    assert hello["type"] == "mirror" and hello["mode"] == "snapshot" and hello["room"] == "default"
    ws.until_type("ready")
    assert ws.data == {f"k{i}": f"v{i}" for i in range(50)}
    c.set("k1", "changed")
    c.delete("k2")
    m = ws.until(lambda m: m.get("type") == "del")
    assert m["key"] == "k2" and m["reason"] == "del"
    assert ws.data["k1"] == "changed" and "k2" not in ws.data
    c.pexpire("k3", 50)
    m = ws.until(lambda m: m.get("type") == "del" and m["key"] == "k3")
    assert m["reason"] == "expired"
    c.flushdb()
    ws.until_type("flush")
    assert ws.data == {}
    ws.close()


def test_ws_prefix_and_resume(server, c):
    room = new_room(server)
    c.execute_command("ROOM.JOIN", room)
    c.set("a:1", "x")
    c.set("b:1", "y")
    ws = Ws(server, f"/api/rooms/{room}/ws?prefix=a:")
    ws.until_type("ready")
    assert ws.data == {"a:1": "x"}
    c.set("b:2", "no")
    c.set("a:2", "yes")
    ws.until(lambda m: m.get("type") == "set")
    assert ws.data == {"a:1": "x", "a:2": "yes"}
    last = ws.last_rev
    ws.close()
    c.set("a:3", "missed")
    c.set("b:3", "filtered")
    ws2 = Ws(server, f"/api/rooms/{room}/ws?prefix=a:&from={last}")
    hello = ws2.recv()
    assert hello["mode"] == "resume"
    m = ws2.recv()
    assert m["type"] == "set" and m["key"] == "a:3" and m["value"] == "missed"
    assert ws2.recv()["type"] == "ready"
    # Re-mirror on the same socket without a prefix: a fresh snapshot.
    ws2.send({"op": "mirror"})
    ws2.until_type("reset")
    ws2.until_type("ready")
    assert set(ws2.data) == {"a:1", "a:2", "a:3", "b:1", "b:2", "b:3"}
    ws2.close()


def test_ws_writes_get_results_after_their_change(server, c):
    ws = Ws(server, "/api/rooms/default/ws")
    ws.until_type("ready")
    ws.send({"op": "set", "id": 1, "key": "w", "value": "from ws"})
    change = ws.until(lambda m: m.get("type") in ("set", "result"))
    assert change["type"] == "set" and change["key"] == "w"
    result = ws.until_type("result")
    assert result == {"type": "result", "id": 1, "ok": True, "revision": change["revision"]}
    assert c.get("w") == b"from ws"
    ws.send({"op": "set", "id": "t", "key": "ttl", "value": "v", "ttl_ms": 60000})
    assert ws.until_type("result")["ok"]
    assert c.pttl("ttl") > 0
    ws.send({"op": "del", "id": 2, "key": "w"})
    result = ws.until_type("result")
    assert result["id"] == 2 and result["deleted"] is True
    assert c.get("w") is None
    ws.send({"op": "stats", "id": 3})
    result = ws.until_type("result")
    assert result["stats"]["code"] == "default" and result["stats"]["mirrors"] >= 1
    ws.send({"op": "ping", "id": 4})
    assert ws.until_type("result") == {"type": "result", "id": 4, "ok": True}
    # Bad messages get errors, the session stays.
    ws.send_frame(0x1, b"not json")
    assert ws.until_type("error")["error"]["code"] == "ERR"
    ws.send({"op": "set", "id": 5, "key": "k"})
    bad = ws.until_type("result")
    assert bad["id"] == 5 and bad["ok"] is False
    ws.send({"op": "frobnicate", "id": 6})
    assert ws.until_type("result")["ok"] is False
    ws.send({"op": "ping", "id": 7})
    assert ws.until_type("result")["ok"] is True
    ws.close()


def test_ws_control_frames_and_protocol_errors(server):
    ws = Ws(server, "/api/rooms/default/ws?mirror=0")
    ws.send_frame(0x9, b"hi")
    assert ws.recv_frame() == (0xA, b"hi")
    # A fragmented text message with a ping between its fragments.
    ws.send_frame(0x1, b'{"op":"pi', fin=False)
    ws.send_frame(0x9, b"x")
    ws.send_frame(0x0, b'ng","id":9}', fin=True)
    assert ws.recv_frame() == (0xA, b"x")
    assert ws.recv() == {"type": "result", "id": 9, "ok": True}
    ws.send_frame(0x8, struct.pack("!H", 1000))
    op, payload = ws.recv_frame()
    assert op == 0x8 and struct.unpack("!H", payload[:2])[0] == 1000
    ws.close()
    ws = Ws(server, "/api/rooms/default/ws?mirror=0")
    ws.send_frame(0x1, b"{}", mask=False)  # clients must mask
    op, payload = ws.recv_frame()
    assert op == 0x8 and struct.unpack("!H", payload[:2])[0] == 1002
    ws.close()
    ws = Ws(server, "/api/rooms/default/ws?mirror=0")
    ws.send_frame(0x1, b"\xff\xfe")  # not UTF-8
    op, payload = ws.recv_frame()
    assert op == 0x8 and struct.unpack("!H", payload[:2])[0] == 1007
    ws.close()


def test_ws_handshake_errors(server):
    ws = Ws(server, "/api/rooms/nosuchroom/ws")
    assert ws.status == 404
    ws.close()
    out = raw_http(server, b"GET /api/rooms/default/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           b"Sec-WebSocket-Version: 8\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 426 ") and b"Sec-WebSocket-Version: 13" in out
    out = raw_http(server, b"GET /api/rooms/default/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                           b"Connection: Upgrade\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ")


def test_ws_large_room_streams_in_chunks(server, c):
    room = new_room(server)
    c.execute_command("ROOM.JOIN", room)
    n = 20000
    for i in range(0, n, 500):  # (a pipeline would take another connection, in the default room)
        c.mset({f"key:{j}": "x" * 50 for j in range(i, i + 500)})
    ws = Ws(server, f"/api/rooms/{room}/ws")
    chunks = 0
    while True:
        m = ws.recv()
        chunks += m["type"] == "snapshot"
        if m["type"] == "ready":
            break
    assert len(ws.data) == n
    assert chunks >= n // 1000
    ws.close()


def test_http_write_reaches_resp_mirror(server, c):
    mirror = Raw(server.port)
    assert isinstance(mirror.cmd("HELLO", "3"), dict)
    assert isinstance(mirror.cmd("MIRROR"), dict)
    while True:
        frame = mirror.read_reply()
        if frame[2] == b"ready":
            break
    request(server, "PUT", key_path("default", "via-http"), b"1")
    frame = mirror.read_reply()
    assert frame[2] == b"set" and frame[4] == b"via-http" and frame[5] == b"1"
    mirror.close()


def test_shutdown_with_open_websocket_is_clean(server_factory):
    s = server_factory()
    ws = Ws(s, "/api/rooms/default/ws")
    ws.until_type("ready")
    keepalive = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=TIMEOUT)
    keepalive.request("GET", "/healthz")
    keepalive.getresponse().read()
    assert s.stop() == 0  # teardown also fails on any sanitizer report
    ws.close()
    keepalive.close()


def test_too_many_connections_and_idle_peers(server, c):
    # Idle, half-sent requests do not block anyone else.
    socks = []
    for _ in range(20):
        sk = socket.create_connection(("127.0.0.1", server.http_port), timeout=TIMEOUT)
        sk.sendall(b"GET /api/stats HTTP/1.1\r\nHost: 127")
        socks.append(sk)
    assert get_json(server, "/healthz") == {"status": "ok"}
    for sk in socks:
        sk.close()
    wait_until(lambda: get_json(server, "/api/stats") is not None, what="server responsive")


def test_over_max_memory_writes_are_refused_and_deletes_work(server_factory):
    s = server_factory()
    s.client().set("keep", "v")
    status, _, _ = request(s, "PUT", "/api/rooms/default/keys/big",
                           body=json.dumps({"value": "x" * 300_000}).encode(),
                           headers={"Content-Type": "application/json"})
    assert status == 200
    # Restarted with a limit below what it holds: adding data is refused with 507,
    # deleting is allowed.
    s.stop()
    s.opts["max_memory"] = 200_000
    s.start()
    status, _, body = request(s, "PUT", "/api/rooms/default/keys/more",
                              body=json.dumps({"value": "y"}).encode(),
                              headers={"Content-Type": "application/json"})
    assert status == 507, body
    status, _, _ = request(s, "DELETE", "/api/rooms/default/keys/big")
    assert status in (200, 204)
    c = s.client()
    assert c.get("big") is None and c.get("keep") == "v"
    # Below the limit again, but a write that would cross it is still refused.
    status, _, body = request(s, "PUT", "/api/rooms/default/keys/big",
                              body=json.dumps({"value": "x" * 300_000}).encode(),
                              headers={"Content-Type": "application/json"})
    assert status == 507, body


# ---------------------------------------------------------------------------
# Unsent output (issue 9): pipelines, the output limit, WebSockets in the budget
# ---------------------------------------------------------------------------

MB = 1 << 20


def http_stat(server, name):
    return server.client(protocol=3).execute_command("STATS")[name]


def metric(server, name):
    _, _, body = request(server, "GET", "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def small_buffers_socket(server, rcvbuf=4096):
    sk = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sk.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: a small window
    sk.settimeout(TIMEOUT)
    sk.connect(("127.0.0.1", server.http_port))
    return sk


def test_pipeline_written_whole_before_reading_completes(server, c):
    """20,000 pipelined GETs sent before reading a byte: the server used to stop
    reading at 4 MiB of unsent responses while the client was blocked in send()
    (a deadlock until the request timeout). Now it keeps reading and answering,
    and the unsent responses count as used memory."""
    value = "v" * 1000
    c.set("k", value)
    n = 20000
    pad = b"X-Pad: " + b"p" * 1000 + b"\r\n"  # 20 MB of requests: more than kernel buffers hold
    req = b"GET /api/rooms/default/keys/k HTTP/1.1\r\nHost: 127.0.0.1\r\n" + pad + b"\r\n"
    sk = small_buffers_socket(server, rcvbuf=65536)
    try:
        sk.sendall(req * n)  # times out (TIMEOUT) if the server stops reading
        # Everything was read; what the kernel does not hold is unsent output.
        wait_until(lambda: http_stat(server, "output_bytes") > 4 * MB, what="output counted")
        marker = b'"value":"' + value.encode() + b'"'
        got, pos, out = 0, 0, bytearray()
        while got < n:
            chunk = sk.recv(1 << 20)
            assert chunk, f"closed after {got} responses"
            out += chunk
            while (i := out.find(marker, pos)) >= 0:  # a body may span chunks
                got, pos = got + 1, i + len(marker)
        assert out.count(b"HTTP/1.1 200 OK") == n
    finally:
        sk.close()
    wait_until(lambda: http_stat(server, "output_bytes") < MB, what="output released")


def test_http_client_over_the_output_limit_is_cut_off(server_factory):
    """A client that pipelines requests and never reads holds at most the output
    limit (--output-limit's hard limit); past it, it is cut off with a logged
    reason while others are served."""
    s = server_factory(extra_args=["--output-limit", "8m,0,0"])
    c = s.client()
    c.set("big", "b" * 65536)
    req = b"GET /api/rooms/default/keys/big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    slow = small_buffers_socket(s)
    try:
        slow.sendall(req * 600)  # about 40 MB of responses
        wait_until(lambda: metric(s, "distri_http_output_limit_disconnects_total") == 1,
                   what="cut off")
        assert "over the output limit (--output-limit)" in s.log_text()
        # Others are served meanwhile, and the slow client's output is gone.
        assert get_json(s, key_path("default", "big"))["value"] == "b" * 65536
        assert http_stat(s, "output_bytes") < 8 * MB
        with pytest.raises((ConnectionResetError, BrokenPipeError, AssertionError)):
            while True:  # whatever the kernel held, then the reset
                assert slow.recv(1 << 20)
    finally:
        slow.close()


def test_websocket_mirrors_fall_under_the_push_budget(server_factory):
    """WebSocket mirrors that stop reading while a room changes fast: their output
    counts as pushed output, and over --push-output-budget the largest backlogs are
    cut off (each stays under its own 32 MiB limit), while a reader is still served."""
    s = server_factory(extra_args=["--push-output-budget", "16m"])
    slow = [Ws(s, "/api/rooms/default/ws", rcvbuf=4096) for _ in range(6)]
    reader = Ws(s, "/api/rooms/default/ws")
    try:
        for ws in slow + [reader]:
            ws.until_type("ready")
        c = s.client()
        value = "w" * 65536
        for batch in range(12):  # 12 MiB of changes for each of 6 silent mirrors: 72 MiB
            pipe = c.pipeline(transaction=False)
            for i in range(16):
                pipe.set(f"w{batch}:{i}", value)
            pipe.execute()
            reader.until(lambda m: m.get("key") == f"w{batch}:15", "the batch's last change")
        st = s.client(protocol=3).execute_command("STATS")
        assert st["push_budget_disconnects"] >= 2, st
        assert st["slow_consumer_disconnects"] >= st["push_budget_disconnects"]
        assert st["output_bytes"] <= 16 * MB
        assert "over --push-output-budget" in s.log_text()
        c.set("after", "1")
        assert reader.until(lambda m: m.get("key") == "after")["value"] == "1"
    finally:
        for ws in slow + [reader]:
            ws.close()
