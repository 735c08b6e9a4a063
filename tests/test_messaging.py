"""Pub/sub (Redis semantics, scoped to rooms) and services: CALL to the least
loaded worker, CALL.ALL to every worker, timeouts, worker loss, NOWORKER."""

import os
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from conftest import Raw, RawError, encode_command, wait_until

pytestmark = pytest.mark.distri


def resp3(server, room=None):
    r = Raw(server.port)
    assert isinstance(r.cmd("HELLO", "3"), dict)
    if room:
        assert r.cmd("ROOM.JOIN", room) == b"OK"
    return r


# ---------------------------------------------------------------------------
# Pub/sub


def test_pubsub_resp2_subscribed_mode(server):
    sub = Raw(server.port)
    sub.send(b"SUBSCRIBE news sport\r\n")
    assert sub.read_reply() == [b"subscribe", b"news", 1]
    assert sub.read_reply() == [b"subscribe", b"sport", 2]
    # Only pub/sub commands are allowed now.
    err = sub.cmd("GET", "x")
    assert isinstance(err, RawError) and "only (P)SUBSCRIBE" in err
    assert sub.cmd("PING") == [b"pong", b""]
    with Raw(server.port) as pub:
        assert pub.cmd("PUBLISH", "news", "hello") == 1
        assert pub.cmd("PUBLISH", "nobody", "x") == 0
    assert sub.read_reply() == [b"message", b"news", b"hello"]
    sub.send(b"UNSUBSCRIBE\r\n")
    got = [sub.read_reply(), sub.read_reply()]
    assert sorted(g[1] for g in got) == [b"news", b"sport"] and got[-1][2] == 0
    assert sub.cmd("SET", "x", "1") == b"OK"  # out of subscribed mode
    sub.close()


def test_pubsub_resp3_pushes_and_patterns(server):
    sub = resp3(server)
    sub.send(b"PSUBSCRIBE user.*\r\n")
    assert sub.read_reply() == [b"psubscribe", b"user.*", 1]
    assert sub.cmd("GET", "anything") is None  # RESP3 keeps normal commands
    with Raw(server.port) as pub:
        assert pub.cmd("PUBLISH", "user.42", "joined") == 1
        assert pub.cmd("PUBSUB", "NUMPAT") == 1
    assert sub.read_reply() == [b"pmessage", b"user.*", b"user.42", b"joined"]
    sub.close()


def test_channels_are_scoped_to_rooms(server):
    with Raw(server.port) as admin:
        code = admin.cmd("ROOM.NEW").decode()
    inside = resp3(server, room=code)
    inside.send(b"SUBSCRIBE ch\r\n")
    inside.read_reply()
    outside = resp3(server)
    outside.send(b"SUBSCRIBE ch\r\n")
    outside.read_reply()
    with Raw(server.port) as pub:
        assert pub.cmd("PUBLISH", "ch", "default-room") == 1
        assert pub.cmd("PUBSUB", "CHANNELS") == [b"ch"]
        assert pub.cmd("PUBSUB", "NUMSUB", "ch") == [b"ch", 1]
        assert pub.cmd("ROOM.JOIN", code) == b"OK"
        assert pub.cmd("PUBLISH", "ch", "in-room") == 1
    assert outside.read_reply() == [b"message", b"ch", b"default-room"]
    assert inside.read_reply() == [b"message", b"ch", b"in-room"]
    inside.close()
    outside.close()


def test_fan_out_to_many_subscribers_without_loss(server):
    subs = []
    for _ in range(20):
        s = resp3(server)
        s.send(b"SUBSCRIBE fan\r\n")
        s.read_reply()
        subs.append(s)
    with Raw(server.port) as pub:
        for i in range(500):
            pub.send(b"*3\r\n$7\r\nPUBLISH\r\n$3\r\nfan\r\n" + b"$%d\r\n%d\r\n" % (len(str(i)), i))
        counts = [pub.read_reply() for _ in range(500)]
    assert counts == [20] * 500
    for s in subs:
        got = [s.read_reply()[2] for _ in range(500)]
        assert got == [str(i).encode() for i in range(500)]
        s.close()


def test_slow_subscriber_is_disconnected(server_factory):
    s = server_factory(extra_args=["--push-output-limit", "1mb,512kb,1"])
    slow = Raw(s.port)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.send(b"SUBSCRIBE firehose\r\n")
    c = s.client(protocol=3)
    msg = "m" * 32768
    for _ in range(200):
        c.publish("firehose", msg)
    wait_until(lambda: c.execute_command("STATS")["slow_consumer_disconnects"] >= 1,
               what="slow subscriber disconnect")
    assert slow.closed_by_peer(timeout=10)
    assert c.publish("firehose", "x") == 0
    slow.close()


# ---------------------------------------------------------------------------
# Services


class Worker:
    """A RESP3 worker answering requests in a thread with a fixed reply."""

    def __init__(self, server, service, name, reply=None, concurrency=1, delay=0.0, room=None):
        self.raw = resp3(server, room)
        assert self.raw.cmd("CLIENT", "SETNAME", name) == b"OK"
        args = ["SVC.SERVE", service] + (["CONCURRENCY", str(concurrency)] if concurrency != 1 else [])
        assert self.raw.cmd(*args) == b"OK"
        self.name = name
        self.reply = reply
        self.delay = delay
        self.handled = []
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        try:
            while not self.stop:
                frame = self.raw.read_reply()
                if isinstance(frame, list) and frame and frame[0] == b"svc.request":
                    rid, payload = frame[1], frame[3]
                    self.handled.append(payload)
                    if self.delay:
                        time.sleep(self.delay)
                    out = self.reply(payload) if self.reply else self.name.encode() + b":" + payload
                    self.raw.send(b"*3\r\n$9\r\nSVC.REPLY\r\n" + b"$%d\r\n%d\r\n" % (len(str(rid)), rid)
                                  + b"$%d\r\n" % len(out) + out + b"\r\n")
        except (AssertionError, OSError):
            pass

    def close(self):
        self.stop = True
        self.raw.close()


def test_call_reaches_one_worker_and_balances(server):
    ws = [Worker(server, "echo", f"w{i}") for i in range(2)]
    c = server.client(protocol=3, decode=False)
    replies = [c.execute_command("CALL", "echo", f"p{i}", "TIMEOUT", "5000") for i in range(40)]
    assert all(r.endswith(b":p%d" % i) for i, r in enumerate(replies))
    counts = [len(w.handled) for w in ws]
    assert counts == [20, 20], "sequential calls tie at zero in flight: strict round robin"
    stats = c.execute_command("SVC.STATS", "echo")
    assert stats[b"calls"] == 40 and stats[b"errors"] == 0 and len(stats[b"workers"]) == 2
    assert stats[b"p99_ms"] >= stats[b"p50_ms"] >= 0
    assert c.execute_command("SVC.LIST")[0][b"workers"] == 2
    for w in ws:
        w.close()


def test_least_outstanding_worker_gets_the_call(server):
    slow = Worker(server, "work", "slow", delay=1.0, concurrency=4)
    fast = Worker(server, "work", "fast", concurrency=4)
    c1 = server.client(protocol=3, decode=False)
    t = threading.Thread(target=lambda: c1.execute_command("CALL", "work", "long"))
    t.start()
    wait_until(lambda: len(slow.handled) + len(fast.handled) == 1, what="first call")
    first_to_slow = len(slow.handled) == 1
    c2 = server.client(protocol=3, decode=False)
    # While one worker has a request in flight, the other (zero in flight) gets the next ones.
    for i in range(3):
        r = c2.execute_command("CALL", "work", f"q{i}", "TIMEOUT", "5000")
        if first_to_slow:
            assert r.startswith(b"fast:")
    t.join(10)
    slow.close()
    fast.close()


def test_no_worker_waits_then_fails(server):
    c = server.client(protocol=3)
    start = time.monotonic()
    with pytest.raises(Exception) as e:
        c.execute_command("CALL", "nobody", "x", "TIMEOUT", "300")
    assert "NOWORKER" in str(e.value)
    assert time.monotonic() - start >= 0.25


def test_call_waits_for_a_worker_to_appear(server):
    c = server.client(protocol=3, decode=False)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", c.execute_command(
        "CALL", "late", "hi", "TIMEOUT", "5000")))
    t.start()
    time.sleep(0.2)
    w = Worker(server, "late", "latecomer")
    t.join(10)
    assert result["r"] == b"latecomer:hi"
    w.close()


def test_worker_timeout_and_late_reply_dropped(server):
    w = Worker(server, "sleepy", "sleepy", delay=0.6)
    c = server.client(protocol=3, decode=False)
    with pytest.raises(Exception) as e:
        c.execute_command("CALL", "sleepy", "x", "TIMEOUT", "200")
    assert "TIMEOUT" in str(e.value)
    wait_until(lambda: c.execute_command("SVC.STATS", "sleepy")[b"dropped_replies"] >= 1,
               what="late reply counted")
    assert c.execute_command("SVC.STATS", "sleepy")[b"timeouts"] == 1
    w.close()


def test_worker_death_mid_request_retries_on_another(server):
    dying = resp3(server)
    assert dying.cmd("SVC.SERVE", "job") == b"OK"
    c = server.client(protocol=3, decode=False)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", c.execute_command(
        "CALL", "job", "payload", "TIMEOUT", "5000")))
    t.start()
    frame = dying.read_reply()
    assert frame[0] == b"svc.request"
    healthy = Worker(server, "job", "healthy")
    dying.close()  # dies without answering
    t.join(10)
    assert result["r"] == b"healthy:payload"
    healthy.close()


def test_worker_death_with_no_other_worker_is_an_error(server):
    dying = resp3(server)
    assert dying.cmd("SVC.SERVE", "solo") == b"OK"
    c = server.client(protocol=3, decode=False)
    err = {}

    def call():
        try:
            c.execute_command("CALL", "solo", "x", "TIMEOUT", "3000")
        except Exception as e:  # noqa: BLE001
            err["e"] = str(e)

    t = threading.Thread(target=call)
    t.start()
    assert dying.read_reply()[0] == b"svc.request"
    dying.close()
    t.join(10)
    assert "e" in err and ("disconnected" in err["e"] or "NOWORKER" in err["e"])


def test_call_all_reports_every_worker(server):
    ok = Worker(server, "reload", "ok-worker")
    slow = Worker(server, "reload", "slow-worker", delay=2.0)
    dead = resp3(server)
    assert dead.cmd("CLIENT", "SETNAME", "dead-worker") == b"OK"
    assert dead.cmd("SVC.SERVE", "reload") == b"OK"
    c = server.client(protocol=3, decode=False)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", c.execute_command(
        "CALL.ALL", "reload", "cfg", "TIMEOUT", "700")))
    t.start()
    assert dead.read_reply()[0] == b"svc.request"
    dead.close()
    t.join(10)
    by_worker = {w: (status, payload) for w, status, payload in result["r"]}
    assert by_worker[b"ok-worker"] == (b"ok", b"ok-worker:cfg")
    assert by_worker[b"slow-worker"] == (b"timeout", None)
    assert by_worker[b"dead-worker"][0] == b"error"
    ok.close()
    slow.close()


def test_error_reply_reaches_the_caller(server):
    w = resp3(server)
    assert w.cmd("SVC.SERVE", "fails") == b"OK"
    c = server.client(protocol=3)
    err = {}

    def call():
        try:
            c.execute_command("CALL", "fails", "x")
        except Exception as e:  # noqa: BLE001
            err["e"] = str(e)

    t = threading.Thread(target=call)
    t.start()
    rid = w.read_reply()[1]
    assert w.cmd("SVC.ERROR", str(rid), "division by zero") == 1
    assert w.cmd("SVC.REPLY", str(rid), "again") == 0  # duplicate: dropped
    t.join(10)
    assert "division by zero" in err["e"]
    w.close()


def test_serve_needs_resp3(server):
    with Raw(server.port) as r:
        err = r.cmd("SVC.SERVE", "x")
        assert isinstance(err, RawError) and "HELLO 3" in err


def test_a_connection_serves_at_most_1024_services(server):
    # A worker's record goes to every other node of a cluster in one announcement: the
    # bound keeps it within what a peer accepts, on a single node too.
    with resp3(server) as w:
        assert w.cmd("ROOM.NEW")  # a room of its own: the server is shared by other tests
        names = [f"s{i}" for i in range(1000)]
        assert w.cmd("SVC.SERVE", *names) == b"OK"
        assert w.cmd("SVC.SERVE", *names[:10]) == b"OK"  # already served: not counted twice
        err = w.cmd("SVC.SERVE", *[f"t{i}" for i in range(25)])
        assert isinstance(err, RawError) and "at most 1024 services" in err
        assert w.cmd("SVC.SERVE", *[f"t{i}" for i in range(24)]) == b"OK"  # exactly 1024
        assert len(w.cmd("SVC.LIST")) == 1024


# ---------------------------------------------------------------------------
# Call deadlines, worker loss, service records (issue 9, items 2, 4 and 11)


def call_in_thread(client, *args):
    """Runs one CALL on its own thread; returns (thread, result dict with "r" or "e", "t")."""
    out = {}

    def run():
        try:
            out["r"] = client.execute_command(*args)
        except Exception as e:  # noqa: BLE001
            out["e"] = str(e)
        out["t"] = time.monotonic()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_absurd_call_timeout_is_refused_and_never_hides_other_deadlines(server):
    # Issue 9 item 2: TIMEOUT 9223372036854775807 overflowed the deadline, which
    # sorted first and armed the one timer for ever: later calls never timed out.
    c = server.client(protocol=3)
    for bad in ("9223372036854775807", "31536000001"):
        with pytest.raises(Exception) as e:
            c.execute_command("CALL", "nobody", "x", "TIMEOUT", bad)
        assert "timeout is out of range" in str(e.value)
    with pytest.raises(Exception) as e:
        c.execute_command("CALL.ALL", "nobody", "x", "TIMEOUT", "9223372036854775807")
    assert "timeout is out of range" in str(e.value)
    # The longest accepted timeout waits; a short one issued after it still ends on time.
    far = Raw(server.port)
    far.send(encode_command("CALL", "nobody", "x", "TIMEOUT", "31536000000"))
    near = server.client(protocol=3)
    start = time.monotonic()
    with pytest.raises(Exception) as e:
        near.execute_command("CALL", "nobody", "y", "TIMEOUT", "500")
    assert "NOWORKER" in str(e.value)
    assert 0.45 <= time.monotonic() - start < 3
    # A caller that drops its connection (reset) takes its queued call with it,
    # and the service record goes too. (A FIN is a half-close: the server still
    # owes that caller its reply, as docs/protocol.md says.)
    far.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    far.close()
    wait_until(lambda: c.execute_command("STATS")["service_records"] == 0, what="record freed")


def test_only_worker_process_killed_mid_request_fails_the_call_at_once(server):
    # Issue 9 item 4: the caller waited its whole timeout (30 s by default) and
    # then got NOWORKER; docs/python.md promises "worker disconnected" at once.
    script = (
        "import socket, sys, time\n"
        "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
        "s.sendall(b'*2\\r\\n$5\\r\\nHELLO\\r\\n$1\\r\\n3\\r\\n"
        "*2\\r\\n$9\\r\\nSVC.SERVE\\r\\n$4\\r\\nsolo\\r\\n')\n"
        "buf = b''\n"
        "while b'svc.request' not in buf:\n"
        "    chunk = s.recv(65536)\n"
        "    if not chunk: sys.exit(1)\n"
        "    buf += chunk\n"
        "    if b'+OK' in buf and b'ready' not in buf:\n"
        "        print('ready', flush=True); buf += b'ready'\n"
        "print('busy', flush=True)\n"
        "time.sleep(600)\n")
    worker = subprocess.Popen([sys.executable, "-c", script, str(server.port)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout.readline().strip() == "ready"
        caller = server.client(protocol=3)
        t, out = call_in_thread(caller, "CALL", "solo", "x")  # the default 30 s timeout
        assert worker.stdout.readline().strip() == "busy"
        killed = time.monotonic()
        worker.kill()
        worker.wait(10)
        t.join(10)
        assert "worker disconnected before replying" in out.get("e", ""), out
        assert out["t"] - killed < 1.0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)


def next_request(raw):
    """The next svc.request push on a worker connection, skipping replies to SVC.REPLY."""
    while True:
        frame = raw.read_reply()
        if isinstance(frame, list) and frame and frame[0] == b"svc.request":
            return frame


def test_retry_waits_first_in_line_for_a_busy_other_worker(server):
    # Another worker exists but is busy: the lost request is retried on it as
    # soon as it frees a slot, ahead of calls that came later.
    obs = server.client(protocol=3, decode=False)
    waiting = lambda: obs.execute_command("SVC.STATS", "busy")[b"waiting"]  # noqa: E731
    dying = resp3(server)
    assert dying.cmd("SVC.SERVE", "busy") == b"OK"
    t1, out1 = call_in_thread(server.client(protocol=3, decode=False), "CALL", "busy", "first",
                              "TIMEOUT", "5000")
    assert dying.read_reply()[0] == b"svc.request"
    other = resp3(server)
    assert other.cmd("SVC.SERVE", "busy") == b"OK"
    t2, out2 = call_in_thread(server.client(protocol=3, decode=False), "CALL", "busy", "second",
                              "TIMEOUT", "5000")
    req = next_request(other)
    assert req[3] == b"second"
    t3, out3 = call_in_thread(server.client(protocol=3, decode=False), "CALL", "busy", "third",
                              "TIMEOUT", "5000")
    wait_until(lambda: waiting() == 1, what="third call queued")
    dying.close()
    wait_until(lambda: waiting() == 2, what="retry queued")
    order = []
    for _ in range(3):
        other.send(encode_command("SVC.REPLY", str(req[1]), b"done-" + req[3]))
        order.append(req[3])
        if len(order) < 3:
            req = next_request(other)
    for t in (t1, t2, t3):
        t.join(10)
    assert order == [b"second", b"first", b"third"], "the retry goes ahead of later calls"
    assert (out1.get("r"), out2.get("r"), out3.get("r")) == (b"done-first", b"done-second",
                                                             b"done-third")
    other.close()


def test_service_records_are_freed_when_unused(server):
    # Issue 9 item 11: CALL.ALL on 300,000 distinct names kept 241 MB for ever.
    c = server.client(protocol=3)
    assert c.execute_command("STATS")["service_records"] == 0
    pipe = c.pipeline(transaction=False)
    for i in range(20000):
        pipe.execute_command("CALL.ALL", f"svc-{i}", "x")
    assert all(r == [] for r in pipe.execute())
    assert c.execute_command("STATS")["service_records"] == 0
    # CALL (short timeouts, no worker), SVC.STATS of unknown names: nothing kept either.
    for i in range(20):
        with pytest.raises(Exception):
            c.execute_command("CALL", f"gone-{i}", "x", "TIMEOUT", "1")
        with pytest.raises(Exception):
            c.execute_command("SVC.STATS", f"never-{i}")
    assert c.execute_command("STATS")["service_records"] == 0
    # A worker keeps its record; the record goes with the last worker and call.
    w = resp3(server)
    assert w.cmd("SVC.SERVE", "kept", "other") == b"OK"
    assert c.execute_command("STATS")["service_records"] == 2
    assert w.cmd("SVC.UNSERVE", "other") == 1
    assert c.execute_command("STATS")["service_records"] == 1
    t, out = call_in_thread(server.client(protocol=3), "CALL", "kept", "x", "TIMEOUT", "5000")
    rid = w.read_reply()[1]
    assert w.cmd("SVC.UNSERVE") == 1
    assert c.execute_command("STATS")["service_records"] == 1, "the call in flight holds it"
    assert w.cmd("SVC.REPLY", str(rid), "answer") == 1
    t.join(10)
    assert out.get("r") == "answer"
    assert c.execute_command("STATS")["service_records"] == 0
    w.close()


def test_queued_retry_fails_at_once_when_the_last_worker_dies_too(server):
    a, b = resp3(server), resp3(server)
    assert a.cmd("SVC.SERVE", "pair") == b"OK"
    t1, out1 = call_in_thread(server.client(protocol=3), "CALL", "pair", "one")  # default 30 s
    assert next_request(a)[3] == b"one"
    assert b.cmd("SVC.SERVE", "pair") == b"OK"
    t2, out2 = call_in_thread(server.client(protocol=3), "CALL", "pair", "two")
    assert next_request(b)[3] == b"two"
    obs = server.client(protocol=3)
    a.close()  # "one" is retried: b is busy, so it waits first in line
    wait_until(lambda: obs.execute_command("SVC.STATS", "pair")["waiting"] == 1, what="retry queued")
    killed = time.monotonic()
    b.close()  # no worker left: both calls fail now, not at their timeout
    t1.join(10)
    t2.join(10)
    for out in (out1, out2):
        assert "worker disconnected before replying" in out.get("e", ""), out
        assert out["t"] - killed < 1.0
    assert obs.execute_command("STATS")["service_records"] == 0


def test_call_all_stores_its_payload_once(server_factory, monkeypatch):
    """CALL.ALL to many workers kept one copy of the payload per worker for as
    long as the calls were open; the workers here read their requests at once
    (so nothing waits in their output) but do not answer."""
    from test_output_limits import status_kb
    # ASan's quarantine of freed memory would count in RSS: keep it small.
    monkeypatch.setenv("ASAN_OPTIONS", (os.environ.get("ASAN_OPTIONS") or "detect_leaks=1")
                       + ":quarantine_size_mb=4")
    s = server_factory()
    workers = [resp3(s) for _ in range(24)]
    for w in workers:
        assert w.cmd("SVC.SERVE", "big") == b"OK"
    payload = os.urandom(4 << 20)
    before = status_kb(s.pid, "VmRSS")
    caller = Raw(s.port)
    try:
        caller.send(encode_command("CALL.ALL", "big", payload, "TIMEOUT", "60000"))
        for w in workers:  # every worker gets the request and reads it whole
            frame = w.read_reply()
            assert frame[0] == b"svc.request" and frame[3] == payload
        # Once the requests are out, what stays is what the open calls hold:
        # 24 stored copies were 96 MB.
        assert s.client().ping()
        grown_mb = (status_kb(s.pid, "VmRSS") - before) // 1024
        print(f"RSS grew by {grown_mb} MB")
        assert grown_mb < 40, f"RSS grew by {grown_mb} MB for a 4 MB CALL.ALL to 24 open calls"
    finally:
        caller.close()
        for w in workers:
            w.close()
