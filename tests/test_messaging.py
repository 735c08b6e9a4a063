"""Pub/sub (Redis semantics, scoped to rooms) and services: CALL to the least
loaded worker, CALL.ALL to every worker, timeouts, worker loss, NOWORKER."""

import socket
import threading
import time

import pytest

from conftest import Raw, RawError, wait_until

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
