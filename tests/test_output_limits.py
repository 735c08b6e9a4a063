"""Unsent output: pipelines written before any reply is read, output limits, memory.

The server keeps reading and running a client's commands while its replies
are unsent (a client may write a whole pipeline before it reads, as redis-py's
pipeline does), bounded by the output limit of the client's class, checked while
a reply is built, and by --max-memory, which counts unsent output. Large
published messages are stored once and shared by their subscribers' queues, and
pushed output of all clients together has a budget (--push-output-budget).
See src/server/client.h (invariants 5 and 6) and docs/architecture.md.
"""

import os
import socket
import threading
import time

import pytest
import redis

from conftest import Raw, _make_server, encode_command, wait_until

MB = 1 << 20


def status_kb(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field}")


@pytest.fixture
def small_quarantine(monkeypatch):
    """ASan keeps freed memory in a quarantine (256 MB by default) that counts in
    RSS; keep it small so that RSS measures what the server really holds."""
    opts = os.environ.get("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
    monkeypatch.setenv("ASAN_OPTIONS", opts + ":quarantine_size_mb=4")


def not_reading(server):
    """A raw connection that never reads, with a small receive buffer so the
    kernel holds little of what the server sends it."""
    raw = Raw(server.port)
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return raw


class Pinger:
    """Another client pinging in a thread while a scenario runs; `worst_ms` is the
    slowest round trip it saw (a stalled loop shows here)."""

    def __init__(self, server):
        self.raw = server.raw()
        self.worst_ms = 0.0
        self.count = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            t = time.monotonic()
            assert self.raw.cmd("PING") == b"PONG"
            self.worst_ms = max(self.worst_ms, (time.monotonic() - t) * 1000)
            self.count += 1
            time.sleep(0.005)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=30)
        self.raw.close()
        assert self.count > 0


def ping_ms(server):
    with server.raw() as c:
        t = time.monotonic()
        assert c.cmd("PING") == b"PONG"
        return (time.monotonic() - t) * 1000


def stats(server):
    return server.client(protocol=3).execute_command("STATS")


# ---------------------------------------------------------------------------
# A pipeline written whole before reading (issue 9, item 1)
# ---------------------------------------------------------------------------

VALUE = b"v" * 200  # 300,000 GET replies: 62 MB, more than kernel buffers hold


def timed_pipeline(server, kind, n):
    c = server.client(decode=False, socket_timeout=120)
    c.set("k", VALUE)
    p = c.pipeline(transaction=False)
    for i in range(n):
        if kind == "get":
            p.get("k")
        else:
            p.set(b"k%d" % (i % 1000), b"v")
    t = time.monotonic()
    replies = p.execute()
    elapsed = time.monotonic() - t
    assert len(replies) == n
    assert replies[-1] == (VALUE if kind == "get" else True)
    return elapsed


@pytest.fixture(scope="module")
def reference(_base_tmp):
    """A redis-server to compare with, started as test_differential.py does."""
    if not os.path.exists(os.environ.get("REDIS_SERVER", "/usr/bin/redis-server")):
        pytest.skip("redis-server not installed")
    ref = _make_server("redis", _base_tmp, "reference-redis").start()
    yield ref
    ref.teardown_problems()


@pytest.mark.distri
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["get", "set"])
def test_pipeline_sent_whole_before_reading_completes(server_factory, reference, kind):
    """redis-py sends the whole pipeline, then reads. The old server stopped reading
    once 1 MiB of replies was unsent, and both sides waited forever once the kernel's
    socket buffers were full too (300,000 GETs hung). Compared with redis-server in
    the same run; DISTRI_PIPELINE_N sets the count (default 1M, as in the issue)."""
    n = int(os.environ.get("DISTRI_PIPELINE_N", "1000000"))
    s = server_factory()
    d = timed_pipeline(s, kind, n)
    r = timed_pipeline(reference, kind, n)
    print(f"{n} pipelined {kind.upper()}s: distri {d:.2f}s, redis-server {r:.2f}s, "
          f"ratio {d / r:.2f}")
    # Measured: 1M GETs 1.18x and 1M SETs 1.19x in the sanitized (-O1) build,
    # 0.63x and 0.99x in Release.
    assert d < 2 * r, f"distri {d:.2f}s vs redis-server {r:.2f}s"
    assert stats(s)["slow_consumer_disconnects"] == 0


# ---------------------------------------------------------------------------
# The output limit: enforced while a reply is built
# ---------------------------------------------------------------------------

@pytest.mark.distri
def test_client_over_output_limit_is_cut_off_others_unaffected(server_factory):
    s = server_factory(extra_args=["--output-limit", "8m,0,0"])
    c = s.client()
    c.set("blob", "b" * MB)
    slow = not_reading(s)
    try:
        slow.send(encode_command("GET", "blob") * 64)  # 64 MiB of replies it never reads
        wait_until(lambda: stats(s)["slow_consumer_disconnects"] >= 1, what="disconnect")
        assert slow.closed_by_peer(timeout=10)
        assert "a reply would pass the output limit" in s.log_text()
        # A client whose replies stay under the limit is served, unread replies and all.
        with s.raw() as other:
            other.send(encode_command("GET", "blob") * 6)
            for _ in range(6):
                assert len(other.read_reply()) == MB
            assert other.cmd("PING") == b"PONG"
        assert c.strlen("blob") == MB
        assert stats(s)["slow_consumer_disconnects"] == 1
    finally:
        slow.close()


@pytest.mark.distri
def test_large_reply_stops_at_the_limit_while_it_is_built(server_factory, small_quarantine):
    """MGET of many large values for a client that does not read: the reply used to be
    built whole (3.4 GB for 200 keys of 8 MiB) before the limit was checked."""
    s = server_factory(extra_args=["--output-limit", "32m,0,0"])
    c = s.client()
    c.set("big", "x" * (4 * MB))
    ping_ms(s)
    before = status_kb(s.pid, "VmHWM")
    slow = not_reading(s)
    try:
        with Pinger(s) as pinger:
            slow.send(encode_command("MGET", *(["big"] * 100)))  # a 400 MiB reply
            wait_until(lambda: stats(s)["slow_consumer_disconnects"] >= 1, what="disconnect")
        print(f"slowest PING meanwhile: {pinger.worst_ms:.0f} ms")
        assert pinger.worst_ms < 1000
        grown_mb = (status_kb(s.pid, "VmHWM") - before) // 1024
        print(f"peak RSS grew by {grown_mb} MB")
        assert grown_mb < 150, f"peak RSS grew by {grown_mb} MB building a 400 MB reply"
        assert slow.closed_by_peer(timeout=10)
    finally:
        slow.close()
    assert c.strlen("big") == 4 * MB


@pytest.mark.distri
def test_replies_parked_behind_a_pending_write_count_against_the_limit(server_factory):
    """While a write waits for the log, a write that fails at once (wrong arity) has its
    reply parked behind it. Parked replies were counted nowhere: a client could grow them
    without bound while reading everything it was sent. Now they are unsent output: this
    client passes --output-limit with them alone and is cut off."""
    s = server_factory(extra_args=["--output-limit", "16k,0,0"])
    raw = s.raw()
    group = encode_command("SET", "k", "v") + encode_command("SET") * 1000  # ~50 KB of errors
    groups = 20
    pipeline = group * groups + encode_command("QUIT")  # the old server sent it all, then closed
    sender = threading.Thread(target=lambda: _send_ignoring_reset(raw, pipeline), daemon=True)
    sender.start()
    replies = raw.read_until_eof(timeout=30).count(b"\r\n")  # one line per reply
    sender.join(timeout=30)
    # The socket output never held much (this client reads it all): only the parked
    # replies could pass the limit.
    assert replies < groups * 1001, "every reply was sent: the parked ones were not limited"
    wait_until(lambda: stats(s)["slow_consumer_disconnects"] == 1, what="disconnect")
    assert "a reply would pass the output limit" in s.log_text()
    assert s.client().get("k") == "v"
    raw.close()


def _send_ignoring_reset(raw, data):
    try:
        raw.sock.sendall(data)
    except OSError:  # cut off before it sent everything
        pass


@pytest.mark.distri
def test_unsent_output_counts_against_max_memory(server_factory):
    """As in Redis, client output buffers are used memory: over --max-memory, writes
    are refused until the backlog is gone."""
    s = server_factory(max_memory="8m")
    c = s.client()
    c.set("blob", "b" * MB)
    slow = not_reading(s)
    try:
        slow.send(encode_command("GET", "blob") * 40)  # 40 MiB unsent, under the output limit
        wait_until(lambda: c.info("memory")["used_memory"] > 8 * MB, what="output counted")
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            c.set("more", "x")
        assert c.get("blob") is not None  # reads still work
    finally:
        slow.close()
    wait_until(lambda: c.info("memory")["used_memory"] < 8 * MB, what="output released")
    assert c.set("more", "x")
    assert stats(s)["slow_consumer_disconnects"] == 0


# ---------------------------------------------------------------------------
# Pushed output: shared payloads and a budget across clients (issue 9, item 10)
# ---------------------------------------------------------------------------

def subscribe_raw(server, channel, reading=False):
    raw = Raw(server.port) if reading else not_reading(server)
    raw.send(encode_command("SUBSCRIBE", channel))
    assert raw.read_reply() == [b"subscribe", channel.encode(), 1]
    return raw


@pytest.mark.distri
def test_published_message_is_stored_once_for_all_subscribers(server_factory, small_quarantine):
    """40 subscribers that do not read a 8 MiB message used to hold 40 copies."""
    s = server_factory()
    subs = [subscribe_raw(s, "news") for _ in range(39)]
    reader = subscribe_raw(s, "news", reading=True)
    try:
        message = os.urandom(4 * MB) + b"\r\n" + os.urandom(4 * MB)
        ping_ms(s)
        before = status_kb(s.pid, "VmHWM")
        c = s.client(decode=False)
        with Pinger(s) as pinger:
            assert c.publish("news", message) == 40
        print(f"slowest PING meanwhile: {pinger.worst_ms:.0f} ms")
        assert pinger.worst_ms < 1000
        grown_mb = (status_kb(s.pid, "VmHWM") - before) // 1024
        print(f"peak RSS grew by {grown_mb} MB")
        assert grown_mb < 120, f"peak RSS grew by {grown_mb} MB for one 8 MB message"
        # Shared bytes arrive intact and in order, around smaller replies.
        assert c.publish("news", b"after") == 40
        assert reader.read_reply() == [b"message", b"news", message]
        assert reader.read_reply() == [b"message", b"news", b"after"]
        assert stats(s)["slow_consumer_disconnects"] == 0
    finally:
        for raw in subs + [reader]:
            raw.close()


@pytest.mark.distri
def test_push_output_budget_cuts_off_the_largest_backlogs(server_factory, small_quarantine):
    """Each subscriber below its own limit, together far above the budget: the
    largest backlogs are cut off, the rest keep being served."""
    s = server_factory(extra_args=["--push-output-budget", "16m",
                                   "--push-output-limit", "64m,0,0"])
    slow = [subscribe_raw(s, f"ch{i}") for i in range(20)]
    reader = subscribe_raw(s, "calm", reading=True)
    try:
        ping_ms(s)
        before = status_kb(s.pid, "VmHWM")
        c = s.client(decode=False)
        chunk = b"m" * MB
        with Pinger(s) as pinger:
            for _ in range(8):  # 8 MiB for each of 20 subscribers: 160 MiB, budget 16 MiB
                for i in range(20):
                    c.publish(f"ch{i}", chunk)
        print(f"slowest PING meanwhile: {pinger.worst_ms:.0f} ms")
        assert pinger.worst_ms < 1000
        assert c.publish("calm", b"still here") == 1
        assert reader.read_reply() == [b"message", b"calm", b"still here"]
        st = stats(s)
        assert st["push_budget_disconnects"] >= 10
        assert st["output_bytes"] <= 16 * MB
        assert "over --push-output-budget" in s.log_text()
        assert ping_ms(s) < 1000
        grown_mb = (status_kb(s.pid, "VmHWM") - before) // 1024
        print(f"peak RSS grew by {grown_mb} MB")
        assert grown_mb < 100, f"peak RSS grew by {grown_mb} MB with a 16 MB budget"
    finally:
        for raw in slow + [reader]:
            raw.close()


@pytest.mark.distri
def test_push_budget_spares_a_subscriber_that_reads_a_shared_message(server_factory,
                                                                      small_quarantine):
    """Budget 16 MiB, three subscribers, two published messages of 10 MiB; one
    subscriber reads, two do not. A shared payload is freed only when its last holder
    lets go: the server used to cut off backlogs until the gauge fell, in the middle of
    PUBLISH, and cut off all three in the same millisecond. Only the two slow ones hold
    the first message, so cutting them is enough."""
    s = server_factory(extra_args=["--push-output-budget", "16m",
                                   "--push-output-limit", "64m,0,0"])
    slow = [subscribe_raw(s, "big") for _ in range(2)]
    fast = subscribe_raw(s, "big", reading=True)
    fast.sock.settimeout(60)
    try:
        c = s.client(decode=False, socket_timeout=60)
        first, second = b"1" * (10 * MB), b"2" * (10 * MB)
        assert c.publish("big", first) == 3  # 10 MiB: under the budget
        assert fast.read_reply() == [b"message", b"big", first]
        assert c.publish("big", second) == 3  # 20 MiB: the slow ones hold 10 MiB more
        assert fast.read_reply() == [b"message", b"big", second]
        for raw in slow:
            assert raw.closed_by_peer(timeout=10)
        st = stats(s)
        assert st["push_budget_disconnects"] == 2
        assert st["slow_consumer_disconnects"] == 2
        assert st["output_bytes"] <= 16 * MB
        assert c.publish("big", b"after") == 1
        assert fast.read_reply() == [b"message", b"big", b"after"]
    finally:
        for raw in slow + [fast]:
            raw.close()


@pytest.mark.distri
def test_soft_limit_applies_without_further_output(server_factory):
    """A subscriber left above the soft limit is cut off when the soft time ends,
    even when nothing more is published to it."""
    s = server_factory(extra_args=["--push-output-limit", "64m,1m,1"])
    slow = subscribe_raw(s, "once")
    try:
        c = s.client(decode=False)
        assert c.publish("once", b"m" * (8 * MB)) == 1
        wait_until(lambda: stats(s)["slow_consumer_disconnects"] == 1, timeout=10,
                   what="soft-limit disconnect")
        assert "over the soft output limit for too long" in s.log_text()
        assert slow.closed_by_peer(timeout=10)
    finally:
        slow.close()
