"""What a client without the password can do, and who sees room codes.

Covers issue 9, items 7-9: with --requirepass an unauthenticated RESP client
may send only small requests, must authenticate within --auth-timeout, cannot
take the slots kept for authenticated clients, and guesses passwords at a
bounded rate; the HTTP port bounds request bodies in flight, times out idle
connections, keeps room for health checks, and requires the password on every
route but /healthz and the dashboard's files; room codes are shown only to
admins (docs/architecture.md, "Security today").
"""

import base64
import http.client
import json
import os
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import Raw, RawError, free_port, wait_until

pytestmark = pytest.mark.distri

PASSWORD = "pw-1234"
TIMEOUT = 10


def request(server, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def bearer(password=PASSWORD):
    return {"Authorization": f"Bearer {password}"}


def ws_handshake(server, path, extra_headers=()):
    """Sends a WebSocket handshake; returns (status, response head text)."""
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=TIMEOUT)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{server.http_port}",
             "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
             "Sec-WebSocket-Version: 13", *extra_headers]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, f"closed during handshake: {buf!r}"
        buf += chunk
    sock.close()
    head = buf.split(b"\r\n\r\n", 1)[0].decode()
    return int(head.split(" ")[1]), head


def ws_auth_protocol(password):
    token = base64.urlsafe_b64encode(password.encode()).decode().rstrip("=")
    return f"Sec-WebSocket-Protocol: distri, distri.auth.{token}"


# ---------------------------------------------------------------------------
# Item 7: unauthenticated RESP clients
# ---------------------------------------------------------------------------

def test_unauthenticated_client_may_send_only_small_requests(server_factory):
    s = server_factory(requirepass=PASSWORD)
    # A 512 MiB bulk used to be buffered in full before the NOAUTH reply.
    with s.raw() as c:
        c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870912\r\n")
        assert c.read_until_eof() == b"-ERR Protocol error: unauthenticated bulk length\r\n"
    with s.raw() as c:
        c.send(b"*11\r\n")
        assert c.read_until_eof() == b"-ERR Protocol error: unauthenticated multibulk length\r\n"
    # AUTH and HELLO ... AUTH fit; after AUTH the ordinary limits apply.
    with s.raw() as c:
        assert c.cmd("AUTH", PASSWORD) == b"OK"
        big = b"v" * (1 << 20)
        assert c.cmd("SET", "k", big) == b"OK"
        assert c.cmd("STRLEN", "k") == len(big)
    with s.raw() as c:
        reply = c.cmd("HELLO", "3", "AUTH", "default", PASSWORD, "SETNAME", "n")
        assert reply[b"proto"] == 3


def test_unauthenticated_connection_times_out_even_when_trickling(server_factory):
    s = server_factory(requirepass=PASSWORD, extra_args=["--auth-timeout", "1"])
    authed = s.client()
    assert authed.ping()
    with s.raw() as idle, s.raw() as slow:
        started = time.monotonic()
        # One byte of a never-ending inline command every 100 ms (the recv
        # timeout paces it).
        slow.sock.settimeout(0.1)
        got = None
        while got is None and time.monotonic() - started < 8:
            try:
                slow.sock.sendall(b"x")
                got = slow.sock.recv(100)
            except socket.timeout:
                continue
            except (BrokenPipeError, ConnectionResetError):
                got = b""
        assert got is not None, "a trickling unauthenticated client was never cut off"
        assert got in (b"", b"-ERR authentication timeout\r\n"), got
        assert time.monotonic() - started < 5
        assert idle.read_until_eof(timeout=5) == b"-ERR authentication timeout\r\n"
    assert authed.ping()  # authenticated clients have no such deadline


def test_idle_unauthenticated_connections_cannot_lock_out_auth(server_factory):
    s = server_factory(requirepass=PASSWORD, max_clients=20,
                       extra_args=["--auth-reserved-clients", "4"])
    idle = [Raw(s.port) for _ in range(40)]
    try:
        # The 16 newest idle connections hold the unauthenticated share; the
        # 24 before them were closed to make room, oldest first. (The oldest
        # victim may instead be the fixture's start-up probe, if the server
        # has not yet seen it close: hence 20, not 24.)
        for c in idle[:20]:
            assert c.closed_by_peer(timeout=5)
        for c in idle[24:]:
            assert not c.closed_by_peer(timeout=0.05)
        # A client with the password still gets in (it used to get "max
        # number of clients reached"), as do up to 4 more.
        clients = [s.client() for _ in range(4)]
        for c in clients:
            assert c.ping()
        assert s.client().set("k", "v")
    finally:
        for c in idle:
            c.close()


def metric(server, name):
    status, _, body = request(server, "GET", "/metrics", headers=bearer())
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    raise AssertionError(f"no {name} in /metrics")


def unauthenticated_gauge(server):
    return metric(server, "distri_unauthenticated_clients")


def non_reader(server):
    """A connection whose tiny receive window makes the server queue its replies."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", server.port))
    return sock


def pings_refused(observer):
    """PINGs the server has answered with NOAUTH (only the non-reader sends PING)."""
    return observer.info("commandstats").get("cmdstat_ping", {}).get("rejected_calls", 0)


def client_entry(observer, sock):
    """The CLIENT LIST entry of the connection `sock`, or None once it is gone."""
    addr = "%s:%d" % sock.getsockname()
    return next((c for c in observer.client_list() if c["addr"] == addr), None)


def keep_replies_queued(observer, sock, until_stuck):
    """Sends PINGs, never reading, until the kernel's buffers for `sock` are
    full (a few MB on loopback) and the server holds 16-64 KiB of unsent
    NOAUTH replies for it, under the 64 KiB unauthenticated output limit.
    Returns "stuck" once that has lasted 0.2 s (if until_stuck), or "closed"
    when the server closes the connection."""
    batch = b"PING\r\n" * 100  # 3.4 KB of replies
    stuck_since = None
    sent = 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        entry = client_entry(observer, sock)
        if entry is None:
            return "closed"
        if pings_refused(observer) < sent:
            continue  # the last batch is not all answered yet
        if int(entry["omem"]) < 16 * 1024:
            stuck_since = None
            try:
                sock.sendall(batch)
            except (BrokenPipeError, ConnectionResetError):
                return "closed"
            # One batch at a time: the next goes only once the server has
            # answered this one (above), so its unsent output grows by at
            # most 3.4 KB past what was seen, never past 64 KiB at once.
            sent += 100
        elif stuck_since is None:
            stuck_since = time.monotonic()
        elif until_stuck and time.monotonic() - stuck_since > 0.2:
            return "stuck"
    raise AssertionError("the connection neither filled its buffers nor was closed in 10 s")


@pytest.mark.parametrize("how", ["timeout", "protocol_error"])
def test_unauthenticated_client_that_never_reads_is_closed(server_factory, how):
    # Drop (the auth timeout) and a pre-auth framing error used to close only
    # once the peer had read everything: a peer that never reads kept its
    # slot and its queued replies for ever, and no longer counted as waiting.
    timeout = "3" if how == "timeout" else "60"
    s = server_factory(requirepass=PASSWORD, extra_args=["--auth-timeout", timeout])
    observer = s.client()
    sock = non_reader(s)
    try:
        if how == "timeout":
            assert keep_replies_queued(observer, sock, until_stuck=False) == "closed"
        else:
            assert keep_replies_queued(observer, sock, until_stuck=True) == "stuck"
            sock.sendall(b"*11\r\n")
        wait_until(lambda: client_entry(observer, sock) is None, timeout=5,
                   what="the server to close the unauthenticated connection")
        # Closed by the timeout or the framing error, not the output limit.
        assert metric(s, "distri_slow_consumer_disconnects_total") == 0
        if how == "timeout":
            assert metric(s, "distri_auth_timeouts_total") == 1
        assert observer.info("clients")["connected_clients"] == 1
        assert unauthenticated_gauge(s) == 0
    finally:
        sock.close()


def test_unauthenticated_flood_hits_a_small_output_limit(server_factory):
    # Pipelined PINGs that are never read used to queue NOAUTH replies up to
    # the ordinary 256 MiB limit per connection (75 MB each in the review);
    # an unauthenticated client may queue 64 KiB. --auth-timeout is long, so
    # only the output limit can close it here.
    s = server_factory(requirepass=PASSWORD, max_clients=20,
                       extra_args=["--auth-timeout", "60", "--auth-reserved-clients", "4"])
    observer = s.client()
    sock = non_reader(s)
    sock.setblocking(False)
    junk = b"PING\r\n" * 20000  # 120 KB in, 680 KB of replies out
    sent = 0
    started = time.monotonic()
    while sent < 4 * len(junk) and time.monotonic() - started < 5:
        try:
            sent += sock.send(junk[sent % len(junk):])
        except BlockingIOError:
            if client_entry(observer, sock) is None:
                break
        except (ConnectionResetError, BrokenPipeError):
            break
    try:
        wait_until(lambda: client_entry(observer, sock) is None, timeout=5,
                   what="the flooding client to be cut off")
        assert metric(s, "distri_slow_consumer_disconnects_total") == 1
        # Its slot is free again: every authenticated client gets in.
        clients = [s.client() for _ in range(18)]
        for c in clients:
            assert c.ping()
    finally:
        sock.close()


def test_hello_with_a_syntax_error_does_not_authenticate(server_factory):
    s = server_factory(requirepass=PASSWORD)
    with s.raw() as c:
        reply = c.cmd("HELLO", "3", "AUTH", "default", PASSWORD, "BOGUS")
        assert reply == "ERR syntax error", reply
        reply = c.cmd("GET", "k")
        assert isinstance(reply, RawError) and reply.startswith("NOAUTH"), reply
        # ... and the request limits are still the unauthenticated ones.
        c.send(b"*11\r\n")
        assert c.read_until_eof() == b"-ERR Protocol error: unauthenticated multibulk length\r\n"
    with s.raw() as c:  # a HELLO that parses still authenticates
        assert c.cmd("HELLO", "3", "AUTH", "default", PASSWORD)[b"proto"] == 3
        assert c.cmd("GET", "k") is None


def test_reset_deauthenticates(server_factory):
    # RESET returns to the default user, as in Redis: with a password the
    # connection must AUTH again, under the unauthenticated limits.
    s = server_factory(requirepass=PASSWORD, extra_args=["--auth-timeout", "1"])
    with s.raw() as c:
        assert c.cmd("AUTH", PASSWORD) == b"OK"
        assert c.cmd("SET", "k", "v") == b"OK"
        assert c.cmd("RESET") == b"RESET"
        reply = c.cmd("GET", "k")
        assert isinstance(reply, RawError) and reply.startswith("NOAUTH"), reply
        assert unauthenticated_gauge(s) == 1
        assert c.cmd("AUTH", PASSWORD) == b"OK"  # AUTH works again
        assert unauthenticated_gauge(s) == 0
        assert c.cmd("GET", "k") == b"v"
        assert c.cmd("RESET") == b"RESET"
        c.send(b"*11\r\n")
        assert c.read_until_eof() == b"-ERR Protocol error: unauthenticated multibulk length\r\n"
    wait_until(lambda: unauthenticated_gauge(s) == 0, timeout=5, what="the gauge to drop")
    # The auth timeout runs from the RESET, not from the connect: the entry
    # the connection left in the queue when it connected must not close it.
    with s.raw() as c:
        assert c.cmd("AUTH", PASSWORD) == b"OK"
        time.sleep(0.6)  # the connect-time deadline now falls before the RESET's
        assert c.cmd("RESET") == b"RESET"
        reset_at = time.monotonic()
        assert c.read_until_eof(timeout=5) == b"-ERR authentication timeout\r\n"
        assert time.monotonic() - reset_at > 0.9


def test_failed_auth_is_rate_limited_per_address(server_factory):
    s = server_factory(requirepass=PASSWORD, extra_args=["--auth-fail-limit", "5"])
    refused = None
    with s.raw() as c:
        started = time.monotonic()
        for i in range(1000):
            reply = c.cmd("AUTH", f"guess{i}")
            if not reply.startswith("WRONGPASS"):
                refused = (i, reply)
                break
        elapsed = time.monotonic() - started
        assert refused is not None, "1000 wrong passwords in a row were all checked"
        # At most 5 guesses per second get checked; the next is refused and
        # the connection closed.
        assert refused[0] <= 5 * (int(elapsed) + 1), refused
        assert refused[1].startswith("NOAUTH too many failed AUTH attempts"), refused
        assert c.closed_by_peer(timeout=5)
    # While limited, even the right password is not checked (no oracle) ...
    with s.raw() as c:
        reply = c.cmd("AUTH", PASSWORD)
        assert reply.startswith("NOAUTH too many failed") or reply == b"OK"
    # ... and once the second is over it works again.
    def auth_ok():
        with s.raw() as c:
            return c.cmd("AUTH", PASSWORD) == b"OK"
    wait_until(auth_ok, timeout=5, interval=0.2, what="AUTH to work again")
    # HTTP failures count against the same limit.
    statuses = [request(s, "GET", "/api/stats", headers=bearer(f"bad{i}"))[0] for i in range(7)]
    assert 429 in statuses, statuses
    with s.raw() as c:
        assert c.cmd("AUTH", "bad").startswith("NOAUTH too many failed")


def test_open_files_limit_caps_max_clients(distri_path, tmp_path):
    """A soft and hard RLIMIT_NOFILE of 256 cannot hold 10,000 clients: say so, cap them."""
    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    log = tmp_path / "log"
    port, http_port = free_port(), free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(distri_path), "serve", "--port", str(port), "--http-port",
                                 str(http_port), "--data", str(tmp_path / "data")],
                                stdout=out, stderr=subprocess.STDOUT, preexec_fn=low_limit)
    try:
        wait_until(lambda: b"listening on" in log.read_bytes(), timeout=20, what="start")
        text = log.read_text()
        assert "--max-clients lowered from 10000 to" in text, text
        capped = int(text.split("--max-clients lowered from 10000 to ")[1].split(",")[0])
        assert 0 < capped <= 256 - 32
        # The cap is enforced: connections beyond it are refused, not failed accepts.
        conns = [Raw(port) for _ in range(capped)]
        extra = Raw(port)
        assert extra.read_until_eof() == b"-ERR max number of clients reached\r\n"
        for c in conns + [extra]:
            c.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()[-3000:]


# ---------------------------------------------------------------------------
# Item 7: the HTTP port
# ---------------------------------------------------------------------------

def test_http_request_bodies_in_flight_are_bounded(server_factory):
    s = server_factory(extra_args=["--http-body-memory", "1m"])
    socks = []
    try:
        answers = []
        for _ in range(4):
            sock = socket.create_connection(("127.0.0.1", s.http_port), timeout=TIMEOUT)
            socks.append(sock)
            sock.sendall(b"PUT /api/rooms/default/keys/k HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Length: 4000000\r\n\r\n" + b"x" * 400_000)
        # 4 x 400 KB (more in capacity) is over 1 MiB: some upload is refused.
        for sock in socks:
            sock.settimeout(2)
            try:
                answers.append(sock.recv(65536))
            except socket.timeout:
                answers.append(b"")
        refused = [a for a in answers if a.startswith(b"HTTP/1.1 503")]
        assert refused and b"too many request bodies in flight" in refused[0], answers
    finally:
        for sock in socks:
            sock.close()
    # Once they are gone, an upload of the same size goes through.
    status, _, body = request(s, "PUT", "/api/rooms/default/keys/k", body=b"y" * 400_000)
    assert status == 200, body


def test_idle_http_connections_time_out(server_factory):
    s = server_factory(extra_args=["--http-idle-timeout", "1"])
    with socket.create_connection(("127.0.0.1", s.http_port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        sock.settimeout(5)
        assert sock.recv(65536) == b""  # the server closed the idle keep-alive connection
        assert time.monotonic() - started < 4


def test_idle_http_sockets_leave_room_for_health_checks(server_factory):
    s = server_factory(extra_args=["--http-max-connections", "20"])
    idle = [socket.create_connection(("127.0.0.1", s.http_port), timeout=TIMEOUT)
            for _ in range(60)]
    try:
        # Idle sockets filled the table (1,030 of them used to make /healthz
        # answer 503); each newcomer closes the connection idle the longest.
        assert request(s, "GET", "/healthz")[0] == 200
        assert request(s, "GET", "/api/stats")[0] == 200
        assert idle[0].recv(100) == b""
    finally:
        for sock in idle:
            sock.close()


def test_busy_http_connections_leave_room_for_health_checks(server_factory):
    s = server_factory(extra_args=["--http-max-connections", "20"])
    # Unfinished requests (not idle, so not closed to make room).
    busy = []
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", s.http_port), timeout=TIMEOUT)
        sock.sendall(b"GET /api/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        busy.append(sock)
    # The HTTP and RESP ports share one loop: a few PING round trips after the
    # sends mean the loop has accepted those sockets (one iteration) and read
    # what they sent (the next), so none of them counts as idle any more.
    r = s.client()
    for _ in range(3):
        assert r.ping()
    try:
        assert request(s, "GET", "/healthz")[0] == 200
        assert request(s, "GET", "/readyz")[0] == 200
        status, _, body = request(s, "GET", "/api/stats")
        assert status == 503 and b"too many HTTP connections" in body, (status, body)
    finally:
        for sock in busy:
            sock.close()


# ---------------------------------------------------------------------------
# Item 8: the HTTP API with --requirepass
# ---------------------------------------------------------------------------

PROTECTED = ["/api/stats", "/api/rooms", "/api/rooms/default", "/api/rooms/default/keys",
             "/api/rooms/default/keys/k", "/api/cluster", "/api/services", "/metrics", "/readyz"]


def test_http_routes_require_the_password(server_factory):
    s = server_factory(requirepass=PASSWORD, extra_args=["--auth-fail-limit", "0"])
    assert s.client().set("k", "v")
    for path in PROTECTED:
        status, headers, body = request(s, "GET", path)
        assert status == 401, (path, status, body)
        assert json.loads(body)["error"]["code"] == "NOAUTH"
        assert headers["www-authenticate"].startswith("Bearer")
        status, _, body = request(s, "GET", path, headers=bearer("wrong"))
        assert status == 401 and json.loads(body)["error"]["code"] == "WRONGPASS", (path, body)
        status, _, body = request(s, "GET", path, headers=bearer())
        assert status == 200, (path, status, body)
    # Writes too.
    for method, path, body in [("PUT", "/api/rooms/default/keys/k2", b"v"),
                               ("DELETE", "/api/rooms/default/keys/k", None),
                               ("POST", "/api/rooms", b"")]:
        assert request(s, method, path, body=body)[0] == 401
    assert request(s, "PUT", "/api/rooms/default/keys/k2", body=b"v", headers=bearer())[0] == 200
    # Open: liveness and the dashboard's static files (no data in them).
    assert request(s, "GET", "/healthz")[0] == 200
    assert request(s, "GET", "/")[0] == 200
    assert request(s, "GET", "/app.js")[0] == 200


def test_http_auth_errors_are_in_the_error_table(server_factory):
    # docs/http.md's table of error statuses must list what the auth check
    # answers (it used to lack 401 and 429).
    s = server_factory(requirepass=PASSWORD, extra_args=["--auth-fail-limit", "2"])
    seen = set()
    for headers in [{}] + [bearer(f"bad{i}") for i in range(4)]:
        status, _, body = request(s, "GET", "/api/stats", headers=headers)
        seen.add((status, json.loads(body)["error"]["code"]))
    assert seen == {(401, "NOAUTH"), (401, "WRONGPASS"), (429, "TOOMANY")}, seen
    docs = (Path(__file__).resolve().parent.parent / "docs" / "http.md").read_text()
    for status, code in seen:
        assert f"| {status} | `{code}` |" in docs, (status, code)


def test_websocket_requires_the_password(server_factory):
    s = server_factory(requirepass=PASSWORD, extra_args=["--auth-fail-limit", "0"])
    status, head = ws_handshake(s, "/api/rooms/default/ws")
    assert status == 401, head
    status, head = ws_handshake(s, "/api/rooms/default/ws", [ws_auth_protocol("wrong")])
    assert status == 401, head
    # Browsers cannot set Authorization on a WebSocket: the password travels
    # as a subprotocol value, and only "distri" is echoed back.
    status, head = ws_handshake(s, "/api/rooms/default/ws", [ws_auth_protocol(PASSWORD)])
    assert status == 101, head
    assert "Sec-WebSocket-Protocol: distri\r\n" in head + "\r\n"
    assert PASSWORD not in head
    status, head = ws_handshake(s, "/api/rooms/default/ws",
                                [f"Authorization: Bearer {PASSWORD}"])
    assert status == 101, head
    server_lines = [l for l in s.log_text().splitlines() if not l.startswith("===== start")]
    assert not [l for l in server_lines if PASSWORD in l]


# ---------------------------------------------------------------------------
# Item 9: room codes
# ---------------------------------------------------------------------------

def room_list(client):
    return client.execute_command("ROOM.LIST")


def as_dict(entry):
    if isinstance(entry, dict):
        return entry
    return dict(zip(entry[::2], entry[1::2]))


def test_room_codes_hidden_from_non_admins(server_factory):
    # Loopback, no password, but told not to trust loopback: nobody is an admin.
    s = server_factory(extra_args=["--trust-loopback", "no"])
    owner = s.client()
    code = owner.execute_command("ROOM.NEW")
    named = owner.execute_command("ROOM.NEW", "team")
    owner.execute_command("ROOM.JOIN", code)
    owner.set("k", "v")
    other = s.client()
    rooms = [as_dict(r) for r in room_list(other)]
    text = json.dumps(rooms)
    assert code not in text and named not in text, text
    ids = {r["id"] for r in rooms}
    assert all("code" not in r for r in rooms)
    assert len([i for i in ids if i.startswith("r-")]) == 2
    assert "team" in {r["name"] for r in rooms}
    other.client_setname("watcher")
    clients = other.execute_command("CLIENT", "LIST")
    clients = clients if isinstance(clients, str) else clients.decode()
    assert code not in clients, clients
    room_ids = {f.split("=", 1)[1] for line in clients.splitlines() for f in line.split()
                if f.startswith("room=")}
    assert room_ids & ids, (room_ids, ids)
    # The same ids over HTTP, and still no codes.
    status, _, body = request(s, "GET", "/api/rooms")
    assert status == 200
    assert code.encode() not in body and named.encode() not in body
    assert {r["id"] for r in json.loads(body)["rooms"]} == ids
    # Whoever has the code can still use it.
    assert request(s, "GET", f"/api/rooms/{code}/keys/k")[0] == 200
    assert other.execute_command("ROOM.INFO", code)
    # A client's own CLIENT INFO names its own room.
    info = owner.execute_command("CLIENT", "INFO")
    assert f"room={code}" in (info if isinstance(info, str) else info.decode())


def test_room_codes_shown_to_admins(server_factory):
    # Loopback without a password: everyone is an admin (the default).
    s = server_factory()
    c = s.client()
    code = c.execute_command("ROOM.NEW")
    assert code in [as_dict(r)["code"] for r in room_list(c)]
    rooms = json.loads(request(s, "GET", "/api/rooms")[2])["rooms"]
    mine = [r for r in rooms if r["code"] == code]
    assert mine and mine[0]["id"].startswith("r-")
    # With a password, an authenticated client is an admin.
    p = server_factory(requirepass=PASSWORD)
    c = p.client()
    code = c.execute_command("ROOM.NEW")
    assert code in [as_dict(r)["code"] for r in room_list(c)]
    assert code in c.execute_command("CLIENT", "LIST")
    rooms = json.loads(request(p, "GET", "/api/rooms", headers=bearer())[2])["rooms"]
    assert code in [r["code"] for r in rooms]
