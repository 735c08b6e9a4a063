"""Durability: a write is acknowledged only once it is on disk, so kill -9 at any moment
loses nothing that was acknowledged; TTLs are absolute wall-clock times that survive a
restart; a torn log tail is repaired, a corrupt older record or a lost newest segment
refuses to start; a clean stop logs no error; a snapshot does not stall clients.

The kill -9 / restart tests also run against redis-server (appendfsync always), which
gives the same guarantee; the log-file tests are Distri-only.
"""

import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis

from conftest import wait_until

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


class Writer(threading.Thread):
    """Writes until its connection dies, remembering exactly what was acknowledged.

    expected: key -> value (None = deleted) for every acknowledged operation.
    in_flight: (key, value-if-applied) of the operation whose reply never came;
    after a crash that key may hold either state.
    """

    def __init__(self, server, tid, start_event):
        super().__init__(daemon=True)
        self.server, self.tid, self.start_event = server, tid, start_event
        self.expected = {}
        self.in_flight = None
        self.counter = 0          # last acknowledged INCR result
        self.acked = 0
        self.error = None

    def run(self):
        c = self.server.client(single_connection_client=True)
        rng = random.Random(self.tid)
        self.start_event.wait()
        i = 0
        try:
            while True:
                i += 1
                key = f"w{self.tid}:{i}"
                value = f"{self.tid}:{i}:" + "x" * rng.randrange(0, 200)
                self.in_flight = (key, value)
                assert c.set(key, value) is True
                self.expected[key] = value
                if i % 7 == 0:
                    victim = f"w{self.tid}:{i - 3}"
                    self.in_flight = (victim, None)
                    c.delete(victim)
                    self.expected[victim] = None
                if i % 5 == 0:
                    self.in_flight = (f"ctr{self.tid}", str(self.counter + 1))
                    self.counter = c.incr(f"ctr{self.tid}")
                self.in_flight = None
                self.acked += 1
        except (redis.ConnectionError, redis.TimeoutError, ConnectionError, OSError) as e:
            self.error = e
        except Exception as e:  # an unexpected reply is a real failure
            self.error = e
            self.unexpected = True


def verify_writers(client, writers):
    pipe = client.pipeline(transaction=False)
    order = []
    for w in writers:
        for key, value in w.expected.items():
            pipe.get(key)
            order.append((w, key, value))
        pipe.get(f"ctr{w.tid}")
        order.append((w, f"ctr{w.tid}", str(w.counter) if w.counter else None))
    got = pipe.execute()
    lost = []
    for (w, key, value), actual in zip(order, got):
        allowed = {value}
        if w.in_flight and w.in_flight[0] == key:
            allowed.add(w.in_flight[1])
        if key.startswith("ctr") and w.counter:
            allowed.add(str(w.counter + 1))  # an in-flight INCR may have landed
        if actual not in allowed:
            lost.append((key, (value or '')[:24], (actual or '')[:24]))
    assert not lost, f"{len(lost)} acknowledged writes lost/wrong, e.g. {lost[:5]}"
    return len(order)


def wait_acked(writers, n, timeout=30):
    wait_until(lambda: sum(w.acked for w in writers) >= n, timeout=timeout,
               what=f"{n} acknowledged writes")


def log_files(server):
    """The log's files: segments (distri: *.seg beside log/MANIFEST) or AOF files (redis)."""
    d = Path(server.data_dir) / "log"
    assert d.is_dir(), f"no log directory at {d}: {sorted(os.listdir(server.data_dir))}"
    files = sorted(p for p in d.rglob("*") if p.is_file() and p.name != "MANIFEST")
    assert files, f"no files under {d}"
    return files


def newest_log_file(server):
    return max(log_files(server), key=lambda p: (p.stat().st_mtime_ns, p.name))


def write_keys(client, prefix, n, size=50):
    data = {f"{prefix}:{i}": f"{prefix}-{i}-" + "v" * size for i in range(n)}
    for k, v in data.items():          # one command (one log entry) per key
        assert client.set(k, v) is True
    return data


def assert_keys(client, data):
    keys = list(data)
    got = client.mget(keys) if keys else []
    missing = [(k, data[k][:24], (g or '')[:24]) for k, g in zip(keys, got) if g != data[k]]
    assert not missing, f"{len(missing)} of {len(keys)} keys lost/wrong, e.g. {missing[:3]}"


# ---------------------------------------------------------------------------
# kill -9 with concurrent writers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("round_", range(2))
def test_kill9_during_concurrent_writes_loses_nothing_acknowledged(server_factory, round_):
    s = server_factory()
    _kill9_during_writes(s, round_)


@pytest.mark.distri
def test_kill9_during_writes_with_frequent_snapshots(server_factory):
    """Snapshots every few KB: the kill lands during snapshot writes and compaction too."""
    s = server_factory(extra_args=["--snapshot-bytes", "8192"])
    _kill9_during_writes(s, 2)


def _kill9_during_writes(s, round_):
    go = threading.Event()
    writers = [Writer(s, t, go) for t in range(4)]
    for w in writers:
        w.start()
    go.set()
    wait_acked(writers, 300 + 200 * round_)
    s.kill9()
    for w in writers:
        w.join(20)
        assert not w.is_alive(), "writer did not notice the server died"
        assert not getattr(w, "unexpected", False), f"writer {w.tid} failed: {w.error!r}"
    s.start()
    checked = verify_writers(s.client(), writers)
    assert checked > 300
    # And once more: the recovered state itself is durable.
    s.restart(kill=True)
    verify_writers(s.client(), writers)


def test_acknowledged_write_survives_immediate_kill9(server_factory):
    s = server_factory()
    c = s.client()
    for i in range(20):
        assert c.set(f"k{i}", f"v{i}") is True
        assert c.incr("n") == i + 1
        if i % 4 == 3:
            s.kill9()
            s.start()
            c = s.client()
            assert c.get(f"k{i}") == f"v{i}"
            assert c.get("n") == str(i + 1)
    assert_keys(c, {f"k{i}": f"v{i}" for i in range(20)})


def test_flushall_and_deletes_are_durable(server_factory):
    s = server_factory()
    c = s.client()
    c.mset({"a": "1", "b": "2", "c": "3"})
    c.delete("a")
    s.kill9()
    s.start()
    c = s.client()
    assert c.mget("a", "b", "c") == [None, "2", "3"]
    assert c.flushall() is True
    c.set("after", "flush")
    s.kill9()
    s.start()
    c = s.client()
    assert c.dbsize() == 1
    assert c.get("after") == "flush"


# ---------------------------------------------------------------------------
# TTLs across restarts
# ---------------------------------------------------------------------------


def test_ttl_survives_kill9_at_same_wall_time(server_factory):
    s = server_factory()
    c = s.client()
    t0 = time.time()
    c.set("short", "v", px=4000)
    t1 = time.time()
    c.set("long", "v", ex=1000)
    c.set("gone", "v", px=200)
    c.set("persisted", "v", ex=50)
    c.persist("persisted")
    c.set("expired_later", "v")
    c.pexpire("expired_later", 300_000)
    s.kill9()
    wait_until(lambda: time.time() > t1 + 0.3, what="'gone' to pass its expiry while down")
    s.start()
    c = s.client()
    assert c.get("gone") is None, "a key whose TTL passed while the server was down is gone"
    assert c.exists("gone") == 0
    assert 990 <= c.ttl("long") <= 1000
    assert c.ttl("persisted") == -1, "PERSIST is durable"
    assert 295_000 <= c.pttl("expired_later") <= 300_000
    pttl = c.pttl("short")
    now = time.time()
    assert pttl > 0, "the 4 s key should still be alive right after restart"
    predicted_expiry = now + pttl / 1000
    assert t0 + 4 - 0.25 <= predicted_expiry <= t1 + 4 + 0.25, (
        f"TTL was re-based on restart: expiry moved by {predicted_expiry - (t0 + 4):+.3f}s")
    wait_until(lambda: c.get("short") is None, timeout=10, interval=0.02,
               what="'short' to expire")
    gone_at = time.time()
    assert gone_at >= t0 + 4 - 0.05, "expired early"
    assert gone_at <= t1 + 4 + 1.0, "expired late"
    # The expiry itself is durable.
    s.kill9()
    s.start()
    assert s.client().exists("short") == 0


def test_ttl_survives_graceful_restart(server_factory):
    s = server_factory()
    c = s.client()
    c.set("k", "v", ex=500)
    c.set("p", "v", px=600_000)
    s.restart()
    c = s.client()
    assert 490 <= c.ttl("k") <= 500
    assert 590_000 <= c.pttl("p") <= 600_000


# ---------------------------------------------------------------------------
# Many restarts
# ---------------------------------------------------------------------------


def test_restart_many_times(server_factory):
    s = server_factory()
    expected = {}
    for cycle in range(12):
        c = s.client()
        assert_keys(c, expected)
        assert c.get("cycles") == (str(cycle) if cycle else None)
        assert c.get("journal") == ("x" * cycle if cycle else None)
        batch = {f"c{cycle}:{i}": f"value-{cycle}-{i}" for i in range(25)}
        pipe = c.pipeline(transaction=False)
        for k, v in batch.items():
            pipe.set(k, v)
        pipe.incr("cycles")
        pipe.append("journal", "x")
        results = pipe.execute()
        assert results[-2] == cycle + 1
        expected.update(batch)
        if cycle % 3 == 2:
            # Overwrite and delete some older keys too.
            c.set("c0:0", f"rewritten-{cycle}")
            expected["c0:0"] = f"rewritten-{cycle}"
            c.delete(f"c{cycle - 1}:1")
            expected.pop(f"c{cycle - 1}:1")
            assert c.get(f"c{cycle - 1}:1") is None
        s.restart(kill=(cycle % 2 == 0))
    c = s.client()
    assert_keys(c, expected)
    assert c.dbsize() == len(expected) + 2


@pytest.mark.distri
def test_restart_from_snapshot_plus_log_tail(server_factory):
    """Small --snapshot-bytes makes the server snapshot and compact often, so restarts go
    through load-snapshot + replay-tail (not in the SPEC's flag list, but in --help)."""
    s = server_factory(extra_args=["--snapshot-bytes", "16384"])
    expected = {}
    for cycle in range(6):
        c = s.client(single_connection_client=True)
        assert_keys(c, expected)
        batch = {f"s{cycle}:{i}": f"{cycle}-{i}-" + "p" * 120 for i in range(150)}
        for k, v in batch.items():
            assert c.set(k, v) is True
        expected.update(batch)
        c.delete(f"s{cycle}:0")
        expected.pop(f"s{cycle}:0")
        c.set(f"ttl{cycle}", "t", ex=1000)
        expected[f"ttl{cycle}"] = "t"
        assert c.incr("snapcycles") == cycle + 1
        s.restart(kill=(cycle % 2 == 0))
    c = s.client()
    assert_keys(c, expected)
    assert c.get("snapcycles") == "6"
    assert all(990 <= c.ttl(f"ttl{i}") <= 1000 for i in range(6))
    snaps = [p for p in Path(s.data_dir).rglob("*") if p.is_file() and "snap" in str(p)]
    assert snaps, f"expected snapshot files with --snapshot-bytes 16384 under {s.data_dir}"


# ---------------------------------------------------------------------------
# Rooms across restarts (Distri-only)
# ---------------------------------------------------------------------------


@pytest.mark.distri
def test_rooms_survive_kill9(server_factory):
    s = server_factory()
    c = s.client(single_connection_client=True)
    code = c.execute_command("ROOM.NEW", "persistent")
    c.mset({"a": "1", "b": "2"})
    doomed = c.execute_command("ROOM.NEW", "doomed")
    c.set("x", "y")
    c.execute_command("SELECT", 4)
    c.set("four", "4")
    c.execute_command("ROOM.DROP", doomed)
    s.kill9()
    s.start()
    c = s.client(single_connection_client=True)
    assert c.execute_command("ROOM.JOIN", code) in (True, "OK")
    assert c.mget("a", "b") == ["1", "2"]
    with pytest.raises(redis.ResponseError):
        c.execute_command("ROOM.JOIN", doomed)
    c.execute_command("SELECT", 4)
    assert c.get("four") == "4"


# ---------------------------------------------------------------------------
# Damaged logs (Distri-only)
# ---------------------------------------------------------------------------


@pytest.mark.distri
@pytest.mark.parametrize("garbage", ["random", "zeros", "ones"])
def test_torn_tail_is_repaired(server_factory, garbage):
    s = server_factory()
    c = s.client()
    data = write_keys(c, "before", 150)
    s.kill9()
    victim = newest_log_file(s)
    size = victim.stat().st_size
    junk = {"random": random.Random(7).randbytes(37),
            "zeros": b"\x00" * 4096,
            "ones": b"\xff" * 13}[garbage]
    with open(victim, "ab") as f:
        f.write(junk)
    s.start()
    c = s.client()
    assert_keys(c, data)
    assert c.dbsize() == len(data)
    # Writes after the repair are durable too (the tail was really cut, not appended to).
    more = write_keys(c, "after", 50)
    s.kill9()
    s.start()
    c = s.client()
    assert_keys(c, {**data, **more})
    assert c.dbsize() == len(data) + len(more)
    assert size > 0


@pytest.mark.distri
def test_corrupt_older_record_refuses_to_start(server_factory):
    s = server_factory()
    c = s.client()
    write_keys(c, "k", 300, size=100)
    s.kill9()
    files = [p for p in log_files(s) if p.stat().st_size >= 4096]
    assert files, "expected a log file holding the 300 records"
    victim = files[0]                       # the oldest one that holds records
    raw = bytearray(victim.read_bytes())
    pos = len(raw) // 2                     # middle of the file: many records follow it
    raw[pos] ^= 0x5A
    victim.write_bytes(bytes(raw))
    code, log = s.start_expect_exit()
    assert code != 0, "a corrupt record in the middle of the log must stop the server"
    assert victim.name in log, f"the error should name {victim.name}; log was:\n{log[-2000:]}"


@pytest.mark.distri
@pytest.mark.parametrize("damage", ["deleted", "zeroed", "emptied"])
def test_lost_newest_segment_refuses_to_start(server_factory, damage):
    """Losing the newest segment is not a torn tail: it held acknowledged writes.

    The log's MANIFEST names the newest segment once its header is durable, so
    a missing or headerless one means damage; the server must refuse, name the
    file and say what to do, and leave the directory as it was."""
    s = server_factory()
    c = s.client()
    data = write_keys(c, "k", 400, size=100)
    s.kill9()
    segments = [p for p in log_files(s) if p.suffix == ".seg"]
    assert segments, log_files(s)
    victim = segments[-1]                      # with 64 MiB segments, the only one
    saved = victim.read_bytes()
    assert len(saved) > 8, "the newest segment should hold acknowledged records"
    if damage == "deleted":
        victim.unlink()
    elif damage == "zeroed":
        victim.write_bytes(b"\0" * len(saved))
    else:
        victim.write_bytes(b"")
    code, log = s.start_expect_exit()
    assert code != 0, "a lost newest segment must stop the server"
    assert victim.name in log, f"the error should name {victim.name}; log was:\n{log[-2000:]}"
    assert "MANIFEST" in log and "backup" in log, f"the error should say what to do:\n{log[-2000:]}"
    # Nothing was changed by the refusal: with the segment back, every write is there.
    victim.write_bytes(saved)
    s.start()
    assert_keys(s.client(), data)


@pytest.mark.distri
def test_clean_stop_after_read_only_restart_logs_no_error(server_factory):
    """A restart whose replayed tail is over --snapshot-bytes, then only reads, then
    SIGTERM: the shutdown once tried to snapshot into the closed log (ERROR)."""
    s = server_factory()
    c = s.client()
    data = write_keys(c, "k", 200, size=100)   # ~25 KB of log, no snapshot at 64 MiB
    s.stop()
    s.opts["extra_args"] = ["--snapshot-bytes", "4096"]
    s.start()
    c = s.client()
    assert_keys(c, data)
    assert s.stop() == 0
    run = s.log_path.read_bytes().decode("utf-8", "replace").rsplit("===== start", 1)[-1]
    errors = [line for line in run.splitlines() if " ERROR " in line or " FATAL " in line]
    assert not errors, f"a clean stop logged errors: {errors}"
    assert "shutting down" in run


# ---------------------------------------------------------------------------
# Snapshots do not stall clients (Distri-only)
# ---------------------------------------------------------------------------


def _snapshot_files(server):
    return sorted((Path(server.data_dir) / "snap").glob("*.snap"))


@pytest.mark.distri
def test_snapshot_does_not_stall_clients(server_factory):
    """A PING loop's worst reply gap while a big snapshot is taken stays far below the
    time the snapshot takes. The state is large enough that serialising it on the loop
    thread (the old way) stalls every client for about as long as the snapshot takes."""
    s = server_factory(fsync="off", extra_args=["--snapshot-bytes", "48m"])
    c = s.client()
    value = "v" * 100
    keys_per_cmd, cmds = 2000, 150                    # 300,000 keys, ~40 MB of state
    t0 = time.monotonic()
    pipe = c.pipeline(transaction=False)
    for i in range(cmds):
        pipe.mset({f"key:{i}:{j}": value for j in range(keys_per_cmd)})
        if i % 10 == 9:
            pipe.execute()
    pipe.execute()
    load_s = time.monotonic() - t0
    assert c.dbsize() == keys_per_cmd * cmds
    assert not _snapshot_files(s)

    gaps = []
    stop = threading.Event()

    def pinger():
        p = s.client(single_connection_client=True)
        last = time.monotonic()
        while not stop.is_set():
            assert p.ping() is True
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    t = threading.Thread(target=pinger, daemon=True)
    t.start()
    wait_until(lambda: len(gaps) >= 50, what="the PING loop to run")
    # One write that takes the log past --snapshot-bytes starts the snapshot.
    info = c.info("persistence") or c.info()
    written = int(info["log_bytes_since_snapshot"])
    started = time.monotonic()
    assert 0 < written < 48 * 2**20
    assert c.set("big", "b" * (48 * 2**20 - written + 4096)) is True
    wait_until(lambda: _snapshot_files(s), timeout=120, interval=0.005,
               what="the snapshot file")
    snapshot_s = time.monotonic() - started
    stop.set()
    t.join(10)
    worst = max(gaps)
    print(f"load {load_s:.2f}s, snapshot {snapshot_s * 1000:.0f} ms, "
          f"worst PING gap {worst * 1000:.1f} ms over {len(gaps)} pings")
    if snapshot_s < 0.15:
        # A build this fast would not stall visibly even the old way (a release build).
        pytest.skip(f"snapshot took only {snapshot_s * 1000:.0f} ms: too fast to tell")
    assert worst < snapshot_s / 4, (
        f"a PING waited {worst * 1000:.0f} ms while the snapshot took {snapshot_s * 1000:.0f} ms")


# ---------------------------------------------------------------------------
# "Acknowledged only after fsync", observed with strace (Distri-only)
# ---------------------------------------------------------------------------

_WRITE_CALLS = ("write", "writev", "pwrite64", "pwritev", "pwritev2", "sendto", "sendmsg")
_SYNC_CALLS = ("fdatasync", "fsync")
_LINE = re.compile(r"^(\d+)\s+(\w+)\((\d+)?(.*)$")
_RESUMED = re.compile(r"^(\d+)\s+<\.\.\. (\w+) resumed>(.*)$")
O_DSYNC = 0o10000


def _attach_strace(pid, trace_path):
    tids = sorted(os.listdir(f"/proc/{pid}/task"))
    argv = ["strace", "-f", "-qq", "-s", "256", "-o", str(trace_path),
            "-e", "trace=read,recvfrom," + ",".join(_WRITE_CALLS + _SYNC_CALLS)]
    for tid in tids:
        argv += ["-p", tid]
    tracer = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def attached():
        if tracer.poll() is not None:
            pytest.skip(f"strace cannot attach here: {tracer.stderr.read().decode()[:300]}")
        for tid in tids:
            try:
                status = open(f"/proc/{pid}/task/{tid}/status").read()
            except FileNotFoundError:
                continue
            if re.search(r"^TracerPid:\s+0$", status, re.M):
                return False
        return True

    wait_until(attached, timeout=10, what="strace to attach to every thread")
    return tracer


def _parse_trace(text):
    """Yields (position, tid, call, fd, rest, complete) with unfinished/resumed calls joined."""
    pending = {}
    events = []
    for pos, line in enumerate(text.splitlines()):
        m = _RESUMED.match(line)
        if m:
            tid, call, rest = m.groups()
            fd, head = pending.pop((tid, call), (None, ""))
            events.append((pos, tid, call, fd, head + rest, True))
            continue
        m = _LINE.match(line)
        if not m:
            continue
        tid, call, fd, rest = m.groups()
        fd = int(fd) if fd is not None else None
        if rest.endswith("<unfinished ...>"):
            pending[(tid, call)] = (fd, rest)
            events.append((pos, tid, call, fd, rest, False))
        else:
            events.append((pos, tid, call, fd, rest, True))
    return events


@pytest.mark.distri
@pytest.mark.skipif(not shutil.which("strace"), reason="strace not installed")
@pytest.mark.parametrize("fsync", ["always", "off"])
def test_reply_is_sent_only_after_the_log_write_is_synced(server_factory, tmp_path, fsync):
    s = server_factory(fsync=fsync)
    conn = s.raw()
    assert conn.cmd("PING") == b"PONG"
    trace_path = tmp_path / "strace.txt"
    tracer = _attach_strace(s.pid, trace_path)
    keys = [f"synccheck{i}x{random.randrange(10**9)}" for i in range(5)]
    try:
        for k in keys:
            assert conn.cmd("SET", k, "v") == b"OK"
    finally:
        conn.close()
        tracer.send_signal(signal.SIGTERM)  # detaches; the server keeps running
        tracer.wait(15)
    events = _parse_trace(trace_path.read_text(errors="replace"))
    for k in keys:
        reads = [e for e in events if e[2] in ("read", "recvfrom") and k in e[4]]
        assert reads, f"the trace has no read of the SET for {k}: strace saw nothing?"
        sock = reads[0][3]
        start = reads[0][0]
        log_writes = [e for e in events if e[2] in _WRITE_CALLS and e[3] != sock
                      and k in e[4] and e[0] > start]
        if not log_writes:
            pytest.skip(f"no write of {k} to a file was visible to strace")
        log_fd, written_at = log_writes[0][3], log_writes[0][0]
        replies = [e for e in events if e[2] in _WRITE_CALLS and e[3] == sock
                   and "+OK" in e[4] and e[0] > start]
        assert replies, f"no reply to SET {k} in the trace"
        reply_at = replies[0][0]
        assert written_at < reply_at, f"SET {k} was acknowledged before its log write"
        if fsync == "always":
            synced = [e for e in events if e[2] in _SYNC_CALLS and e[3] == log_fd and e[5]
                      and written_at < e[0] < reply_at]
            if not synced:
                flags = open(f"/proc/{s.pid}/fdinfo/{log_fd}").read()
                m = re.search(r"^flags:\s+(\d+)", flags, re.M)
                assert m and int(m.group(1), 8) & O_DSYNC, (
                    f"SET {k} was acknowledged with no fsync/fdatasync of fd {log_fd} between "
                    f"its log write and the reply, and the log is not opened O_DSYNC")
