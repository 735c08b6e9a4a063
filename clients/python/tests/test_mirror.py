"""room.data, on_change and wait_for: the live mirror against the real server."""

import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import distri
from conftest import python_env, wait_until


def server_state(room):
    """The room's keys and stored bytes, read from the server (not the mirror)."""
    keys = room.keys()
    values = room._link.call(("MGET", *keys)) if keys else []
    return {k: v for k, v in zip(keys, values) if v is not None}


def mirror_state(room):
    with room._lock:
        return {k: v[0] for k, v in room._state.data.items()}


def wait_consistent(room, timeout=15):
    """Waits until the mirror holds exactly what the server holds (the server is quiet)."""
    def same():
        return server_state(room) == mirror_state(room)
    wait_until(same, timeout=timeout, interval=0.05, what="mirror == server")


def test_data_is_a_live_read_only_mapping(room):
    room.update({"a": 1, "b": {"x": [1]}})
    data = room.data                            # first use: loads the room
    assert dict(data) == {"a": 1, "b": {"x": [1]}}
    assert len(data) == 2 and "a" in data and sorted(data) == ["a", "b"]
    assert data.ready and data.revision > 0
    with pytest.raises(TypeError):
        data["a"] = 2                           # read-only
    room["c"] = "new"
    room.incr("a")
    del room["b"]
    room.wait_until(lambda d: d.get("c") == "new" and d.get("a") == 2 and "b" not in d,
                    timeout=5)
    v = data.copy()
    assert v == {"a": 2, "c": "new"}
    v["a"] = 99                                 # a copy: the mirror is unaffected
    assert data["a"] == 2
    assert data.raw("a") == b"2"
    assert data.expire_at("a") is None


def test_mirror_loads_large_room_in_many_frames(room):
    for i in range(0, 5000, 500):
        room.update({f"k{j}": j for j in range(i, i + 500)})
    assert len(room.data) == 5000
    assert all(room.data[f"k{i}"] == i for i in range(0, 5000, 499))


def test_expiry_reaches_the_mirror(room):
    room.set("t", "soon gone", ttl=0.2)
    assert room.wait_for("t", timeout=5) == "soon gone"
    at = room.data.expire_at("t")
    assert at is not None and at - time.time() < 0.3
    room.wait_until(lambda d: "t" not in d, timeout=5)


def test_on_change_kinds_prefix_and_unsubscribe(room):
    room["job:old"] = 0
    changes, jobs = [], []
    stop_all = room.on_change(changes.append)
    stop_jobs = room.on_change(jobs.append, prefix="job:")
    room["job:1"] = {"state": "new"}
    room["other"] = 1
    room.set("job:2", "tmp", ttl=0.1)
    del room["job:1"]
    room.wait_until(lambda d: "job:2" not in d and "other" in d, timeout=5)
    wait_until(lambda: any(c.kind == "expired" for c in changes), timeout=5)
    room.clear()
    wait_until(lambda: any(c.kind == "flush" for c in changes), timeout=5)
    kinds = [(c.key, c.kind) for c in changes]
    assert kinds[:5] == [("job:1", "set"), ("other", "set"), ("job:2", "set"),
                         ("job:1", "del"), ("job:2", "expired")]
    assert sorted(kinds[5:]) == [("job:old", "flush"), ("other", "flush")]
    assert changes[0].value == {"state": "new"} and not changes[0].deleted
    assert changes[3].value is None and changes[3].deleted
    revisions = [c.revision for c in changes]
    assert revisions == sorted(revisions)
    assert [c.key for c in jobs] == ["job:1", "job:2", "job:1", "job:2", "job:old"]
    stop_jobs()
    room["job:3"] = 3
    room.wait_for("job:3", timeout=5)
    wait_until(lambda: changes[-1].key == "job:3", timeout=5)
    assert jobs[-1].key == "job:old"            # unsubscribed
    stop_all()


def test_failing_callback_does_not_stop_the_mirror(room, caplog):
    def bad(change):
        raise RuntimeError("boom")
    room.on_change(bad)
    room["a"] = 1
    room["b"] = 2
    assert room.wait_for("b", timeout=5) == 2
    wait_until(lambda: "boom" in caplog.text, timeout=5)


def test_wait_for_predicate_and_timeout(room):
    def later():
        time.sleep(0.2)
        for i in range(1, 6):
            room["n"] = i
    t = threading.Thread(target=later)
    t.start()
    assert room.wait_for("n", lambda v: v >= 5, timeout=10) == 5
    t.join()
    with pytest.raises(distri.TimeoutError):
        room.wait_for("n", lambda v: v > 100, timeout=0.2)
    with pytest.raises(distri.TimeoutError):
        room.wait_for("never", timeout=0.1)
    assert room.wait_until(lambda d: d.get("n"), timeout=1) == 5


WRITER = textwrap.dedent("""
    import random, sys
    import distri
    url, seed, ops = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rnd = random.Random(seed)
    room = distri.connect(url)
    keys = [f"k{i}" for i in range(40)]
    for i in range(ops):
        k = rnd.choice(keys)
        op = rnd.random()
        if op < 0.35:
            room[k] = {"w": seed, "i": i}
        elif op < 0.55:
            try:
                room.incr("n:" + k)
            except distri.RequestError:
                pass
        elif op < 0.70:
            room.delete(k)
        elif op < 0.85:
            room.update({rnd.choice(keys): i, rnd.choice(keys): [seed, i]})
        elif op < 0.95:
            room.set(k, i, ttl=rnd.choice([0.05, 0.2]))
        else:
            try:
                room.execute("RENAME", k, rnd.choice(keys))
            except distri.RequestError:     # no such key (another writer deleted it)
                pass
    room.close()
""")


def _writers(url, n, ops):
    return [subprocess.Popen([sys.executable, "-c", WRITER, url, str(seed), str(ops)],
                             env=python_env()) for seed in range(n)]


def test_mirror_equals_server_after_concurrent_writers(room):
    room.update({f"k{i}": "seed" for i in range(40)})
    first = room.start_mirror()                          # mirrors from the start
    seen = []
    room.on_change(seen.append)
    procs = _writers(room.url, 3, 400)
    time.sleep(0.3)
    late = distri.connect(room.url)                      # loads while the writers write
    late.start_mirror()
    for p in procs:
        assert p.wait(60) == 0
    wait_consistent(room)
    wait_consistent(late)
    assert first.ready and late.data.ready
    assert mirror_state(room) == mirror_state(late)
    revisions = [c.revision for c in seen]
    assert revisions == sorted(revisions) and len(seen) > 400
    late.close()


def _break_mirror_connection(room, while_down):
    """Closes the mirror's socket and runs while_down() before it can reconnect."""
    with room._cond:                          # the mirror thread waits for this lock
        room._mirror._sock.shutdown(socket.SHUT_RDWR)
        while_down()


def test_resume_after_lost_connection_replays_missed_changes_once(room):
    other = distri.connect(room.url)
    other.update({"a": 1, "b": 2})
    room.start_mirror()
    seen = []
    room.on_change(lambda c: seen.append((c.key, c.kind, c.value)))
    before = room._state.revision

    def write():
        other["a"] = 10
        other.update({"c": 3, "d": 4})
        del other["b"]
    _break_mirror_connection(room, write)
    room.wait_until(lambda d: d.get("a") == 10 and "b" not in d and "d" in d, timeout=10)
    assert room._state.mode == "resume" and room._state.resyncs == 0
    assert room._state.revision > before
    other["e"] = 5
    wait_until(lambda: ("e", "set", 5) in seen, timeout=5)
    assert sorted(seen) == sorted([("a", "set", 10), ("c", "set", 3), ("d", "set", 4),
                                   ("b", "del", None), ("e", "set", 5)])
    wait_consistent(room)
    other.close()


def test_snapshot_when_history_is_gone(server_factory):
    s = server_factory(extra_args=["--mirror-history-entries", "3"])
    room = distri.connect(s.url, quiet=True)
    room.update({"keep": 1, "change": 1, "drop": 1})
    room.start_mirror()
    seen = []
    room.on_change(lambda c: seen.append((c.key, c.kind, c.value)))

    def write():
        other = distri.connect(room.url)
        for i in range(10):
            other[f"new{i}"] = i                 # more than the history holds
        other["change"] = 2
        del other["drop"]
        other.close()
    _break_mirror_connection(room, write)
    room.wait_until(lambda d: "drop" not in d and d.get("change") == 2, timeout=10)
    assert room._state.mode == "snapshot" and room._state.resyncs == 1
    wait_consistent(room)
    # the differences were reported as changes, nothing for the unchanged key
    expected = [(f"new{i}", "set", i) for i in range(10)] + [("change", "set", 2),
                                                             ("drop", "del", None)]
    wait_until(lambda: len(seen) >= len(expected), timeout=5)
    assert sorted(seen) == sorted(expected)
    room.close()


def _confirmed(room):
    """Waits until the mirror knows its newest revision complete (PING echo)."""
    wait_until(lambda: room._state.unconfirmed() is None, timeout=5)


def test_mirror_resumes_after_kill9_and_restart(server_factory):
    s = server_factory()
    room = distri.connect(s.url, quiet=True)
    writer = distri.connect(room.url)
    writer.update({f"k{i}": i for i in range(100)})
    room.start_mirror()
    seen = []
    room.on_change(lambda c: seen.append((c.key, c.kind)))
    writer["last"] = "before"
    room.wait_for("last", timeout=5)
    _confirmed(room)

    s.kill9()
    wait_until(lambda: not room.data.ready, timeout=5)
    time.sleep(0.5)                              # reconnect attempts fail meanwhile
    s.start()                                    # same data dir and port
    wait_until(lambda: room.data.ready, timeout=15)
    assert room._state.mode == "resume"          # MIRROR FROM <last revision>: no reload
    assert room._state.resyncs == 0
    writer["after"] = "restart"                  # the writer reconnects by itself
    del writer["k0"]
    assert room.wait_for("after", timeout=15) == "restart"
    room.wait_until(lambda d: "k0" not in d, timeout=5)
    wait_until(lambda: len(seen) == 3, timeout=5)
    wait_consistent(room)
    assert seen == [("last", "set"), ("after", "set"), ("k0", "del")]
    room.close()
    writer.close()


def test_writes_while_mirror_is_away_arrive_exactly_once(server_factory):
    """kill -9, restart, and writes before the mirror is back: whether the server
    replays them (resume) or sends a snapshot, each shows up once and the copy
    matches the server."""
    s = server_factory()
    room = distri.connect(s.url, quiet=True, retry_timeout=30)
    writer = distri.connect(room.url, retry_timeout=30)
    writer.update({"a": 1, "b": 1, "c": 1})
    data = room.start_mirror()
    seen = []
    room.on_change(lambda c: seen.append((c.key, c.kind, c.value)))
    _confirmed(room)
    s.kill9()
    wait_until(lambda: not data.ready, timeout=5)
    assert data["a"] == 1                        # stale but complete while down
    s.start()
    writer["a"] = 2                              # likely before the mirror is back
    writer.update({"d": 4, "b": 1})              # b unchanged
    del writer["c"]
    room.wait_until(lambda d: d.get("a") == 2 and "d" in d and "c" not in d, timeout=15)
    wait_consistent(room)
    assert data.ready
    wait_until(lambda: len(seen) >= 3, timeout=5)
    time.sleep(0.2)
    got = sorted(x for x in seen if x[0] != "b")  # b: reported only when replayed
    assert got == [("a", "set", 2), ("c", "del", None), ("d", "set", 4)]
    assert len(seen) - len(got) <= 1
    room.close()
    writer.close()


def test_close_stops_the_mirror_thread(server):
    room = distri.connect(server.url, quiet=True)
    room["a"] = 1
    room.start_mirror()
    thread = room._mirror.thread
    room.close()
    thread.join(5)
    assert not thread.is_alive()
    assert room.data["a"] == 1                  # the last state stays readable
