"""Messaging through the blocking face, against the real server: pub/sub,
services (call, call_all, workers), room.function, payload formats, pickle."""

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import distri
from conftest import python_env, wait_until


class Point:
    """A non-JSON type for the pickle tests (module level, so it pickles)."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


@pytest.fixture
def other(room):
    """A second connection to the same room (another 'process')."""
    r = distri.connect(room.url, quiet=True)
    yield r
    r.close()


# ---------------------------------------------------------------------------
# Pub/sub
# ---------------------------------------------------------------------------

def test_publish_subscribe_fan_out_no_loss(room, other, redis_client):
    subs = [other.subscribe("news") for _ in range(3)]
    assert room.subscribers("news") == 3
    values = [{"n": 1}, "text", 42, None, [1.5, True], b"\x00\xffraw", {"blob": b"\x01\x02"}]
    for v in values:
        assert room.publish("news", v) == 3
    assert room.publish("elsewhere", 1) == 0
    for sub in subs:
        got = [sub.get(timeout=5) for _ in values]
        assert [m.value for m in got] == values
        assert {m.topic for m in got} == {"news"} and {m.pattern for m in got} == {None}
        assert sub.get(timeout=0.05) is None
    # Many messages, fan-out to every subscriber, in order, none lost.
    n = 2000
    for i in range(n):
        room.publish("news", i)
    for sub in subs:
        assert [sub.get(timeout=5).value for _ in range(n)] == list(range(n))
    # Other tools publish plain text: it reads by the value rules.
    redis_client.execute_command("ROOM.JOIN", room.code)
    assert redis_client.publish("news", "hello") == 3
    msg = subs[0].get(timeout=5)
    assert msg.value == "hello" and msg.raw == b"hello"
    assert "hello" in repr(msg)
    for sub in subs:
        sub.close()


def test_topics_are_scoped_to_the_room(server, room):
    elsewhere = distri.connect(server.url, quiet=True)      # a new room
    with elsewhere.subscribe("news") as sub:
        assert room.publish("news", 1) == 0
        assert elsewhere.publish("news", 2) == 1
        assert sub.get(timeout=5).value == 2
    elsewhere.close()


def test_patterns(room, other):
    sub = other.subscribe("jobs.done", patterns=["jobs.*", "log.[ab]"])
    assert sub.topics == {"jobs.done"} and sub.patterns == {"jobs.*", "log.[ab]"}
    assert room.publish("jobs.new", "n") == 1
    assert room.publish("jobs.done", "d") == 2      # by name and by pattern: twice
    assert room.publish("log.a", "la") == 1
    assert room.publish("log.c", "lc") == 0
    got = [sub.get(timeout=5) for _ in range(4)]
    assert [(m.topic, m.pattern, m.value) for m in got[:1]] == [("jobs.new", "jobs.*", "n")]
    assert sorted((m.topic, m.pattern or "") for m in got[1:3]) == [
        ("jobs.done", ""), ("jobs.done", "jobs.*")]
    assert (got[3].topic, got[3].pattern, got[3].value) == ("log.a", "log.[ab]", "la")
    assert sub.get(timeout=0.05) is None
    sub.close()


def test_subscribe_more_unsubscribe_and_close(room, other):
    sub = other.subscribe("a")
    sub.subscribe("b", patterns=["c.*"])             # confirmed when it returns
    assert room.publish("b", 1) == 1 and room.publish("c.x", 2) == 1
    assert [sub.get(timeout=5).value for _ in range(2)] == [1, 2]
    room.publish("a", "in flight")
    sub.unsubscribe("a")                             # also drops what is on the way
    room.publish("a", "after")
    room.publish("b", "still")
    assert sub.get(timeout=5).value == "still"
    assert sub.topics == {"b"}
    wait_until(lambda: room.subscribers("a") == 0, what="unsubscribed on the server")
    sub.unsubscribe()                                # everything
    assert not sub.topics and not sub.patterns
    room.publish("b", "gone")
    assert sub.get(timeout=0.1) is None
    sub.subscribe("d")
    room.publish("d", "back")
    assert sub.get(timeout=5).value == "back"

    # close() from another thread ends an iteration in progress.
    seen = []

    def consume():
        for msg in sub:
            seen.append(msg.value)
    t = threading.Thread(target=consume)
    t.start()
    room.publish("d", "x")
    wait_until(lambda: seen == ["x"], what="the message")
    sub.close()
    t.join(5)
    assert not t.is_alive()
    wait_until(lambda: room.subscribers("d") == 0, what="connection closed")
    with pytest.raises(distri.ClosedError):
        sub.subscribe("e")
    assert sub.get(timeout=0.01) is None

    # Leaving a for loop with break: the abandoned subscription closes itself.
    threading.Timer(0.1, room.publish, ("f", 1)).start()
    for msg in other.subscribe("f"):
        break
    assert msg.value == 1
    wait_until(lambda: room.subscribers("f") == 0, what="garbage collected")

    def first(topic):
        for msg in other.subscribe(topic):
            return msg.value
    t = threading.Thread(target=lambda: seen.append(first("g")))
    t.start()
    wait_until(lambda: room.subscribers("g") == 1, what="subscribed")
    room.publish("g", "one")
    t.join(5)
    assert seen[-1] == "one"
    wait_until(lambda: room.subscribers("g") == 0, what="closed after return")

    # room.close() closes the room's subscriptions.
    s2 = other.subscribe("h")
    other.close()
    assert s2.closed


def test_subscription_reconnects_after_server_restart(server_factory):
    s = server_factory()
    room = distri.connect(s.url, quiet=True)
    sub = room.subscribe("t", patterns=["p.*"])
    room.publish("t", 0)
    assert sub.get(timeout=5).value == 0
    s.restart(kill=True)
    deadline = time.monotonic() + 20
    got = None
    while got is None and time.monotonic() < deadline:
        room.publish("t", 1)                         # lost until it has re-subscribed
        got = sub.get(timeout=0.1)
    assert got is not None and got.value == 1
    assert room.publish("p.1", 2) == 1
    m = sub.get(timeout=5)
    while m.value == 1:                              # duplicates of the probing publishes
        m = sub.get(timeout=5)
    assert (m.topic, m.pattern, m.value) == ("p.1", "p.*", 2)
    room.close()


# ---------------------------------------------------------------------------
# Services
# ---------------------------------------------------------------------------

def test_call_round_trip(room, other, redis_client):
    @other.service("echo")
    def echo(*args, **kwargs):
        return {"args": list(args), "kwargs": kwargs}

    @other.service
    def concat(a, b):
        return a + b

    @other.service("nothing")
    def nothing():
        return None

    worker = other.serve(background=True, name="w-echo")
    assert worker.running and set(worker.services) == {"echo", "concat", "nothing"}
    assert room.call("echo", 1, "two", [3], x={"y": None}) == {
        "args": [1, "two", [3]], "kwargs": {"x": {"y": None}}}
    assert room.call("concat", b"\x00ab", b"\xffcd") == b"\x00ab\xffcd"   # bytes both ways
    assert room.call("echo", {"k": b"\x01"}) == {"args": [{"k": b"\x01"}], "kwargs": {}}
    assert room.call("concat", "a", b="b") == "ab"
    assert room.call("nothing", timeout=None) is None            # no time limit
    # Other tools: a payload that is not the {"args": ...} object is the one argument;
    # an empty payload means no arguments. The result is the encoded value.
    redis_client.execute_command("ROOM.JOIN", room.code)
    assert redis_client.execute_command("CALL", "echo", "hello") == \
        b'{"args":["hello"],"kwargs":{}}'
    assert redis_client.execute_command("CALL", "nothing", "") == b"null"
    assert room.services()["echo"]["workers"] == 1
    stats = room.service_stats("echo")
    assert stats["workers"] == ["w-echo"] and stats["calls"] >= 3
    with pytest.raises(distri.EncodeError):
        room.call("echo", {1, 2})                    # not JSON, no pickle: refused here
    assert worker.handled == 7
    other.close()
    assert not worker.running


def test_calls_spread_over_two_workers(room, other):
    seen = []

    @other.service("who")
    def who(i):
        seen.append(i)
        return i * 2

    w1 = other.serve(background=True, name="w1")
    w2 = other.serve(background=True, name="w2", concurrency=3)
    assert [room.call("who", i) for i in range(20)] == [i * 2 for i in range(20)]
    # Idle workers: ties, so round robin.
    assert (w1.handled, w2.handled) == (10, 10)
    # Calls from several threads at once: each has its own connection.
    results = []
    threads = [threading.Thread(target=lambda k=k: results.extend(
        room.call("who", k * 100 + j) for j in range(10))) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sorted((k * 100 + j) * 2 for k in range(6) for j in range(10))
    assert w1.handled + w2.handled == 80 and min(w1.handled, w2.handled) >= 15


def test_worker_exception_becomes_service_error(room, other):
    @other.service("check")
    def check(n):
        if n < 0:
            raise ValueError(f"negative: {n}")
        return n

    @other.service("bad_result")
    def bad_result():
        return {1, 2}

    worker = other.serve(background=True)
    with pytest.raises(distri.ServiceError) as info:
        room.call("check", -5)
    e = info.value
    assert e.code == "SVCERR" and e.message == "ValueError: negative: -5"
    assert e.remote_type == "ValueError" and isinstance(e, distri.ServerError)
    assert room.call("check", 5) == 5                # the worker keeps serving
    with pytest.raises(distri.ServiceError, match="TypeError"):
        room.call("check", 1, 2)                     # wrong arguments: raised remotely
    with pytest.raises(distri.ServiceError, match="EncodeError"):
        room.call("bad_result")
    assert (worker.handled, worker.failed) == (1, 3)


def test_call_timeout_and_late_reply(room, other):
    release = threading.Event()

    @other.service("slow")
    def slow():
        release.wait(5)
        return "late"

    other.serve(background=True)
    dropped = room.service_stats("slow")["dropped_replies"]     # counted server-wide
    t = time.monotonic()
    with pytest.raises(distri.CallTimeout) as info:
        room.call("slow", timeout=0.2)
    assert 0.15 < time.monotonic() - t < 2
    assert isinstance(info.value, distri.TimeoutError) and info.value.code == "TIMEOUT"
    release.set()
    wait_until(lambda: room.service_stats("slow")["dropped_replies"] == dropped + 1,
               what="the late reply dropped")
    assert room.service_stats("slow")["timeouts"] == 1
    assert room.call("slow", timeout=5) == "late"    # the slot was freed


def test_no_worker_then_a_worker_appears(room, other):
    t = time.monotonic()
    with pytest.raises(distri.NoWorker) as info:
        room.call("nobody", timeout=0.2)
    assert info.value.code == "NOWORKER" and time.monotonic() - t < 2
    assert room.call_all("nobody", timeout=0.2) == {}

    @other.service("late")
    def late():
        return "here"
    result = []
    caller = threading.Thread(target=lambda: result.append(room.call("late", timeout=10)))
    caller.start()                                   # waits for a worker to appear
    time.sleep(0.2)
    other.serve(background=True)
    caller.join(10)
    assert result == ["here"]


def test_call_all_reports_every_worker(room):
    rooms = [distri.connect(room.url, quiet=True) for _ in range(3)]
    release = threading.Event()

    @rooms[0].service("reload")
    def ok(version):
        return {"version": version}

    @rooms[1].service("reload")
    def fails(version):
        raise RuntimeError("config file missing")

    @rooms[2].service("reload")
    def hangs(version):
        release.wait(5)

    for r, name in zip(rooms, ("good", "broken", "stuck")):
        r.serve(background=True, name=name)
    t = time.monotonic()
    replies = room.call_all("reload", 7, timeout=0.5)
    assert time.monotonic() - t < 3
    assert set(replies) == {"good", "broken", "stuck"}
    assert replies["good"] == {"version": 7}
    assert isinstance(replies["broken"], distri.ServiceError)
    assert replies["broken"].message == "RuntimeError: config file missing"
    assert isinstance(replies["stuck"], distri.CallTimeout)
    release.set()
    for r in rooms:
        r.close()


def test_worker_stop_is_graceful_and_serve_blocks_until_stopped(room, other):
    entered, release = threading.Event(), threading.Event()

    @other.service("job")
    def job():
        entered.set()
        release.wait(5)
        return "finished"

    @other.service("quit")
    def quit_():
        other._workers[-1].stop()                    # from a handler: returns at once
        return "bye"

    done = []
    worker = None

    def serve():
        nonlocal worker
        done.append(other.serve(name="blocking"))    # blocks until stopped
    t = threading.Thread(target=serve)
    t.start()
    wait_until(lambda: other._workers, what="worker made")
    worker = other._workers[0]
    wait_until(lambda: room.services().get("job"), what="worker registered")
    result = []
    caller = threading.Thread(target=lambda: result.append(room.call("job")))
    caller.start()
    assert entered.wait(5)
    stopper = threading.Thread(target=worker.stop)
    stopper.start()                                  # waits for the job in progress
    wait_until(lambda: "job" not in room.services(), what="unserved")
    release.set()
    stopper.join(5)
    caller.join(5)
    t.join(5)
    assert result == ["finished"] and done == [worker] and not worker.running

    w2 = other.serve(name="again", background=True)
    assert room.call("quit") == "bye"
    wait_until(lambda: not w2.running, what="stopped from its handler")
    with pytest.raises(distri.NoWorker):
        room.call("job", timeout=0.1)


def test_worker_killed_mid_request_another_answers(room):
    script = textwrap.dedent(f"""
        import sys, time, distri
        room = distri.connect({room.url!r}, quiet=True)
        @room.service("work")
        def work(x):
            print("started", flush=True)
            time.sleep(60)
        room.serve(name="doomed")
    """)
    doomed = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              text=True, env=python_env())
    try:
        wait_until(lambda: room.services().get("work"), what="the doomed worker", timeout=20)
        result = []
        caller = threading.Thread(target=lambda: result.append(room.call("work", 21)))
        caller.start()
        assert doomed.stdout.readline().strip() == "started"
        helper = distri.connect(room.url, quiet=True)

        @helper.service("work")
        def work(x):
            return x * 2
        helper.serve(background=True, name="survivor")
        doomed.kill()                                # dies holding the request
        caller.join(10)
        assert result == [42]                        # the server gave it to the survivor
        helper.close()
    finally:
        doomed.kill()
        doomed.wait()


def test_worker_and_calls_survive_server_restart(server_factory):
    s = server_factory()
    room = distri.connect(s.url, quiet=True)
    room["keep"] = 1
    worker_room = distri.connect(room.url, quiet=True)

    @worker_room.service("double")
    def double(x):
        return 2 * x
    worker = worker_room.serve(background=True, name="phoenix")
    assert room.call("double", 2) == 4
    s.restart(kill=True)
    assert room.call("double", 3, timeout=20) == 6   # waits for the worker to come back
    assert worker.running and room.service_stats("double")["workers"] == ["phoenix"]
    worker_room.close()
    room.close()


def test_function_decorator(room, other):
    @other.function
    def add(a, b=1):
        return a + b

    @other.function(name="math.mul")
    def mul(a, b):
        return a * b

    assert add.name == "test_messaging.test_function_decorator.<locals>.add"
    assert add.__name__ == "add" and add(2) == 3     # a plain local call
    assert mul.name == "math.mul"
    other.serve(background=True, name="fw")
    assert add.call(2, b=5) == 7                     # on a worker (this process here)
    assert add.call_all(1) == {"fw": 2}
    assert room.call("math.mul", 6, 7) == 42         # by name from another process


def test_function_named_by_script_file(room, tmp_path, monkeypatch):
    """`python tasks.py` (module __main__) serves what `import tasks` calls."""
    (tmp_path / "tasks.py").write_text(textwrap.dedent("""
        import distri
        room = distri.connect(quiet=True)            # $DISTRI_URL

        @room.function
        def square(x):
            return x * x

        if __name__ == "__main__":
            room.serve()
    """))
    worker = subprocess.Popen([sys.executable, str(tmp_path / "tasks.py")],
                              env=python_env(DISTRI_URL=room.url))
    try:
        wait_until(lambda: room.services().get("tasks.square"), what="served", timeout=20)
        monkeypatch.setenv("DISTRI_URL", room.url)
        monkeypatch.syspath_prepend(str(tmp_path))
        import tasks
        try:
            assert tasks.square.name == "tasks.square"
            assert tasks.square.call(9) == 81
        finally:
            tasks.room.close()
            sys.modules.pop("tasks", None)
    finally:
        worker.terminate()
        worker.wait()


def test_pickle_opt_in_signed(room):
    key = os.urandom(16)
    caller = distri.connect(room.url, room_key=key, pickle=True, quiet=True)
    worker_room = distri.connect(room.url, room_key=key, pickle=True, quiet=True)
    wrong_key = distri.connect(room.url, room_key=b"another key", pickle=True, quiet=True)
    no_pickle = distri.connect(room.url, quiet=True)

    @worker_room.service("move")
    def move(p, dx=0):
        return Point(p.x + dx, p.y)

    @wrong_key.service("wrong")
    def wrong(p):
        return p

    @no_pickle.service("plain")
    def plain(p):
        return p

    for r in (worker_room, wrong_key, no_pickle):
        r.serve(background=True)
    assert caller.call("move", Point(1, 2), dx=3) == Point(4, 2)
    assert caller.call("plain", [1, {"j": b"son"}]) == [1, {"j": b"son"}]  # JSON stays JSON
    with pytest.raises(distri.ServiceError, match="SignatureError"):
        caller.call("wrong", Point(0, 0))            # signed with another key: not unpickled
    with pytest.raises(distri.ServiceError, match="DecodeError"):
        caller.call("plain", Point(0, 0))            # worker without pickle: never unpickles
    with pytest.raises(distri.EncodeError):
        no_pickle.call("move", Point(0, 0))          # refused before sending
    with pytest.raises(ValueError):
        distri.connect(room.url, pickle=True, quiet=True)   # pickle needs a key

    # Messages: the same rules.
    subs = [r.subscribe("objs") for r in (worker_room, wrong_key, no_pickle)]
    assert caller.publish("objs", {1, 2, 3}) == 3
    assert caller.publish("objs", "plain text") == 3
    msgs = [s.get(timeout=5) for s in subs]
    assert msgs[0].value == {1, 2, 3}
    with pytest.raises(distri.SignatureError):
        msgs[1].value
    with pytest.raises(distri.DecodeError):
        msgs[2].value
    assert msgs[2].raw.startswith(b"\x01")
    assert [s.get(timeout=5).value for s in subs] == ["plain text"] * 3   # iteration goes on
    for r in (caller, worker_room, wrong_key, no_pickle):
        r.close()


def test_pickled_payloads_are_bound_to_topic_and_service(room):
    key = os.urandom(16)
    a = distri.connect(room.url, room_key=key, pickle=True, quiet=True)
    b = distri.connect(room.url, room_key=key, pickle=True, quiet=True)
    with b.subscribe("orders", "audit") as sub:
        a.publish("orders", Point(1, 2))
        msg = sub.get(timeout=5)
        assert msg.value == Point(1, 2)
        # The same signed bytes published on another topic are refused there.
        a.execute("PUBLISH", "audit", msg.raw)
        replayed = sub.get(timeout=5)
        assert replayed.topic == "audit"
        with pytest.raises(distri.SignatureError):
            replayed.value
    # Call arguments signed for one service are refused by another.
    @b.service("echo")
    def echo(*args):
        return args[0] if args else None

    b.serve(background=True)
    assert a.call("echo", Point(5, 5)) == Point(5, 5)
    args = distri.Codec(key, True, room=a.code).encode_payload({"args": [Point(0, 0)]},
                                                              ("call", "other"))
    with pytest.raises(distri.ServiceError, match="SignatureError"):
        a.execute("CALL", "echo", args, "TIMEOUT", 5000)
    a.close()
    b.close()


def test_nothing_to_serve_and_closed_room(server):
    r = distri.connect(server.url, quiet=True)
    with pytest.raises(ValueError):
        r.serve(background=True)
    r.service("x")(lambda: 1)
    with pytest.raises(ValueError):
        r.serve("y", background=True)
    r.close()
    with pytest.raises(distri.ClosedError):
        r.subscribe("t")
    with pytest.raises(distri.ClosedError):
        r.call("x")
