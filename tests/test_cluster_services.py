"""Services across a real 3-node cluster (issue 11): CALL reaches the least-loaded worker of
the whole cluster, honouring each worker's concurrency; CALL.ALL reaches every worker on every
node; a worker's or a caller's node killed mid-call; SVC.LIST / SVC.STATS from any node; the
Python client's @room.service, room.call, call_all and @room.function across nodes.

Workers are RESP3 connections answering from threads; nodes are real processes
(tests/cluster_util.py), killed with SIGKILL. Waiting is on events (a request arriving, a
worker appearing in SVC.LIST) with deadlines, never fixed sleeps."""

import socket
import threading
import time

import pytest

import distri
from cluster_util import make_cluster, HostRaw, as_map, binary_supports_cluster  # noqa: F401
from conftest import RawError, distri_bin, encode_command, wait_until

pytestmark = [
    pytest.mark.distri,
    pytest.mark.skipif(not binary_supports_cluster(distri_bin()),
                       reason="the binary has no --cluster-port"),
]


def resp3(node, room=None, timeout=10.0):
    r = HostRaw(node.host, node.port, timeout)
    assert isinstance(r.cmd("HELLO", "3"), dict)
    if room:
        assert r.cmd("ROOM.JOIN", room) == b"OK"
    return r


def node_ids(cluster):
    """{node: its Raft node id}."""
    return {n: int(info["node_id"]) for n, info in cluster.infos().items()}


class Worker:
    """A RESP3 worker on `node`: answers each request on its own thread (so it can hold
    several at once) with `<name>:<payload>` after `delay` seconds; records the most
    requests it ever held at once."""

    def __init__(self, node, service, name, concurrency=1, delay=0.0, answer=True):
        self.raw = resp3(node)
        assert self.raw.cmd("CLIENT", "SETNAME", name) == b"OK"
        assert self.raw.cmd("SVC.SERVE", service, "CONCURRENCY", str(concurrency)) == b"OK"
        self.name, self.delay, self.answer = name, delay, answer
        self.handled = []
        self.active = self.max_active = 0
        self.lock = threading.Lock()
        self.got_request = threading.Event()
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        try:
            while not self.stop:
                frame = self.raw.read_reply()
                if isinstance(frame, list) and frame and frame[0] == b"svc.request":
                    with self.lock:
                        self.handled.append(frame[3])
                        self.active += 1
                        self.max_active = max(self.max_active, self.active)
                    self.got_request.set()
                    if self.answer:
                        threading.Thread(target=self.reply, args=(frame[1], frame[3]),
                                         daemon=True).start()
        except (AssertionError, OSError):
            pass

    def reply(self, rid, payload):
        if self.delay:
            time.sleep(self.delay)
        out = self.name.encode() + b":" + payload
        with self.lock:
            self.active -= 1
            try:
                self.raw.send(encode_command("SVC.REPLY", str(rid), out))
            except OSError:
                pass

    def close(self):
        """Disconnects now: shutdown() wakes the reader thread's recv (close() alone would
        leave the connection open until that recv times out)."""
        self.stop = True
        try:
            self.raw.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.raw.close()


def call(node, *args, timeout=15.0):
    """One command on a fresh RESP3 connection; (reply or RawError, seconds it took)."""
    with resp3(node, timeout=timeout) as c:
        t = time.monotonic()
        reply = c.cmd(*args)
        return reply, time.monotonic() - t


def calls_in_threads(node, payloads, service, timeout_ms=10000):
    """Concurrent CALLs from `node`, one connection each; returns the replies in order."""
    out = [None] * len(payloads)

    def run(i, p):
        out[i] = call(node, "CALL", service, p, "TIMEOUT", str(timeout_ms))[0]

    threads = [threading.Thread(target=run, args=(i, p)) for i, p in enumerate(payloads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_ms / 1000 + 10)
    return out


def workers_seen(node, service):
    """How many workers of `service` `node` knows (SVC.LIST)."""
    for entry in as_map_list(node.cmd("SVC.LIST")):
        if entry["name"] == service:
            return entry["workers"]
    return 0


def as_map_list(v):
    return [as_map(x) for x in v]


def wait_seen(nodes, service, n):
    for node in nodes:
        wait_until(lambda: workers_seen(node, service) == n, timeout=10,
                   what=f"{node} to see {n} workers of {service}")


# ---------------------------------------------------------------------------
# CALL: the least-loaded worker of the whole cluster


def test_concurrent_calls_go_to_idle_workers_on_both_other_nodes(make_cluster):
    c = make_cluster(3)
    a, b, cc = c.nodes
    ws = [Worker(b, "slow", f"b{i}", delay=1.0) for i in range(2)] + \
         [Worker(cc, "slow", f"c{i}", delay=1.0) for i in range(2)]
    wait_seen([a], "slow", 4)
    # Four calls at once from node A: each goes to an idle worker, none queues behind a
    # busy one while another is idle, so all four end in about one delay.
    start = time.monotonic()
    replies = calls_in_threads(a, [f"p{i}" for i in range(4)], "slow")
    took = time.monotonic() - start
    assert sorted(r.split(b":")[0] for r in replies) == [b"b0", b"b1", b"c0", b"c1"], replies
    assert [len(w.handled) for w in ws] == [1, 1, 1, 1]
    assert took < 1.9, f"four calls on four idle workers took {took:.2f}s (one queued?)"
    # Eight at once: two rounds, two each, never two at once on one worker.
    replies = calls_in_threads(a, [f"q{i}" for i in range(8)], "slow")
    assert all(not isinstance(r, RawError) for r in replies), replies
    assert [len(w.handled) for w in ws] == [3, 3, 3, 3]
    assert max(w.max_active for w in ws) == 1
    for w in ws:
        w.close()


def test_round_robin_on_ties_over_three_nodes(make_cluster):
    c = make_cluster(3)
    ws = [Worker(n, "echo", f"w{i}") for i, n in enumerate(c.nodes)]
    for caller in c.nodes:
        wait_seen([caller], "echo", 3)
    # Sequential calls: every worker has nothing in flight at each call, a tie broken by
    # round robin, so each gets exactly a third, whichever node the caller is on.
    with resp3(c.nodes[1]) as conn:
        for i in range(30):
            assert conn.cmd("CALL", "echo", f"x{i}", "TIMEOUT", "5000").endswith(b":x%d" % i)
    assert [len(w.handled) for w in ws] == [10, 10, 10]
    for w in ws:
        w.close()


def test_call_waits_for_a_worker_to_appear_on_another_node(make_cluster):
    c = make_cluster(3)
    a, _, cc = c.nodes
    result = {}

    def run():
        result["r"], result["t"] = call(a, "CALL", "late", "hi", "TIMEOUT", "10000")

    t = threading.Thread(target=run)
    t.start()
    wait_until(lambda: as_map(a.cmd("SVC.STATS", "late"))["waiting"] == 1
               if not isinstance(a.cmd("SVC.STATS", "late"), RawError) else False,
               what="the call queued on node A")
    w = Worker(cc, "late", "latecomer")       # a worker appears on node C
    t.join(15)
    assert result["r"] == b"latecomer:hi", result
    assert result["t"] < 5
    # No worker anywhere at the timeout: NOWORKER, as on one node.
    w.close()
    wait_seen([a], "late", 0)
    reply, took = call(a, "CALL", "late", "x", "TIMEOUT", "300")
    assert isinstance(reply, RawError) and reply.startswith("NOWORKER"), reply
    assert 0.25 <= took < 3


def test_concurrency_is_honoured_for_callers_on_two_nodes(make_cluster):
    c = make_cluster(3)
    a, b, cc = c.nodes
    w = Worker(b, "pair", "only", concurrency=2, delay=0.4)
    wait_seen([a, cc], "pair", 1)
    out = {}

    def burst(node, key):
        out[key] = calls_in_threads(node, [f"{key}{i}" for i in range(3)], "pair")

    threads = [threading.Thread(target=burst, args=(n, k)) for n, k in ((a, "a"), (cc, "c"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    replies = out["a"] + out["c"]
    # Both nodes see two free slots and send at once; the worker's node refuses what does
    # not fit (not run) and the callers' nodes queue it until a slot frees.
    assert all(isinstance(r, bytes) and r.startswith(b"only:") for r in replies), replies
    assert len(w.handled) == 6
    assert w.max_active == 2
    stats = as_map(a.cmd("SVC.STATS", "pair"))
    assert stats["errors"] == 0 and stats["timeouts"] == 0
    w.close()


# ---------------------------------------------------------------------------
# CALL.ALL: every worker on every node


def test_call_all_reaches_every_worker_on_three_nodes(make_cluster):
    c = make_cluster(3)
    ids = node_ids(c)
    a, b, cc = c.nodes
    ws = [Worker(a, "reload", "a0"), Worker(b, "reload", "b0"), Worker(b, "reload", "b1"),
          Worker(cc, "reload", "c0")]
    slow = Worker(cc, "reload", "c-slow", delay=3.0)
    for n in c.nodes:
        wait_seen([n], "reload", 5)
    for caller in (a, cc):
        reply, took = call(caller, "CALL.ALL", "reload", "cfg", "TIMEOUT", "1000")
        by_worker = {w.decode(): (s, p) for w, s, p in reply}
        expected = {f"{ids[n]}:{w.name}": (b"ok", w.name.encode() + b":cfg")
                    for n, w in zip((a, b, b, cc), ws)}
        expected[f"{ids[cc]}:c-slow"] = (b"timeout", None)
        assert by_worker == expected
        assert took < 2.5
    for w in ws + [slow]:
        w.close()


def test_call_all_reports_a_node_killed_mid_broadcast_as_error(make_cluster):
    c = make_cluster(3)
    ids = node_ids(c)
    a, b, cc = c.nodes
    silent = Worker(b, "flush", "silent", answer=False)
    fine = Worker(cc, "flush", "fine")
    wait_seen([a], "flush", 2)
    result = {}

    def run():
        result["r"], result["t"] = call(a, "CALL.ALL", "flush", "now", "TIMEOUT", "10000")

    t = threading.Thread(target=run)
    t.start()
    assert silent.got_request.wait(10)
    b.kill9()
    t.join(15)
    # Node B's part ends when its link goes, not at the 10 s deadline.
    by_worker = {w.decode(): (s, p) for w, s, p in result["r"]}
    assert by_worker[f"{ids[cc]}:fine"] == (b"ok", b"fine:now")
    status, message = by_worker[f"{ids[b]}:silent"]
    assert status == b"error" and b"unreachable" in message, by_worker
    assert result["t"] < 5
    silent.close()
    fine.close()


# ---------------------------------------------------------------------------
# Nodes that die mid-call


def test_worker_node_killed_mid_call_retries_on_another_node(make_cluster):
    c = make_cluster(3)
    a, b, cc = c.nodes
    silent = Worker(b, "job", "silent", answer=False)
    wait_seen([a], "job", 1)
    result = {}

    def run():
        result["r"], result["t"] = call(a, "CALL", "job", "payload", "TIMEOUT", "10000")

    t = threading.Thread(target=run)
    t.start()
    assert silent.got_request.wait(10)
    healthy = Worker(cc, "job", "healthy")
    wait_seen([a], "job", 2)
    killed = time.monotonic()
    b.kill9()
    t.join(15)
    # The request may have run on B: one more attempt, on C's worker, well within the timeout.
    assert result["r"] == b"healthy:payload", result
    assert time.monotonic() - killed < 5
    wait_seen([a], "job", 1)
    silent.close()
    healthy.close()


def test_worker_node_killed_with_no_other_worker_is_a_clear_error(make_cluster):
    c = make_cluster(3)
    a, b, _ = c.nodes
    silent = Worker(b, "solo", "silent", answer=False)
    wait_seen([a], "solo", 1)
    result = {}

    def run():
        result["r"], result["t"] = call(a, "CALL", "solo", "x", "TIMEOUT", "20000")

    t = threading.Thread(target=run)
    t.start()
    assert silent.got_request.wait(10)
    b.kill9()
    t.join(25)
    assert isinstance(result["r"], RawError), result
    assert "worker disconnected before replying" in result["r"]
    assert result["t"] < 10, "the error comes when the link goes, not at the timeout"
    silent.close()


def test_link_cut_mid_call_retries_elsewhere_and_heals(make_cluster):
    c = make_cluster(3)
    a, b, cc = c.nodes
    silent = Worker(b, "part", "silent", answer=False)
    wait_seen([a], "part", 1)
    result = {}

    def run():
        result["r"], result["t"] = call(a, "CALL", "part", "x", "TIMEOUT", "10000")

    t = threading.Thread(target=run)
    t.start()
    assert silent.got_request.wait(10)
    healthy = Worker(cc, "part", "healthy")
    wait_seen([a], "part", 2)
    # A partition, not a crash: B keeps running (and its worker keeps the request), but A
    # loses the link to it, so B's workers leave A's table and the call is retried on C.
    c.net.cut(a, b)
    t.join(15)
    assert result["r"] == b"healthy:x", result
    wait_seen([a], "part", 1)
    assert workers_seen(b, "part") == 2       # B still reaches C
    # Healed: the link comes back up and A learns B's workers again (the full table).
    c.net.heal()
    wait_seen([a], "part", 2)
    silent.close()
    healthy.close()


def test_unserve_on_another_node_lets_requests_in_flight_finish(make_cluster):
    c = make_cluster(3)
    a, b, cc = c.nodes
    leaving = Worker(b, "drain", "leaving", delay=1.0)
    wait_seen([a], "drain", 1)
    result = {}

    def run():
        result["r"], result["t"] = call(a, "CALL", "drain", "x", "TIMEOUT", "10000")

    t = threading.Thread(target=run)
    t.start()
    assert leaving.got_request.wait(10)
    with leaving.lock:
        leaving.raw.send(encode_command("SVC.UNSERVE", "drain"))
    wait_seen([a], "drain", 0)
    other = Worker(cc, "drain", "other")
    wait_seen([a], "drain", 1)
    t.join(15)
    # The request in flight ends with the answer of the worker that had it: it is not
    # retried on the other one just because its worker stopped taking new requests.
    assert result["r"] == b"leaving:x", result
    assert other.handled == []
    assert call(a, "CALL", "drain", "y", "TIMEOUT", "5000")[0] == b"other:y"
    leaving.close()
    other.close()


def test_caller_node_killed_mid_call_frees_the_worker(make_cluster):
    c = make_cluster(3)
    a, b, cc = c.nodes
    w = Worker(b, "once", "w", delay=1.0)
    wait_seen([a, cc], "once", 1)
    caller = resp3(a)
    caller.send(encode_command("CALL", "once", "from-a", "TIMEOUT", "10000"))
    assert w.got_request.wait(10)
    a.kill9()
    # The worker's answer to the dead caller's node is dropped quietly; its slot frees and
    # a caller on C gets it (concurrency 1: had the slot leaked, this would time out).
    reply, _ = call(cc, "CALL", "once", "from-c", "TIMEOUT", "8000")
    assert reply == b"w:from-c"
    assert w.handled == [b"from-a", b"from-c"]
    caller.close()
    w.close()


# ---------------------------------------------------------------------------
# SVC.LIST / SVC.STATS


def test_list_and_stats_show_the_whole_cluster_from_any_node(make_cluster):
    c = make_cluster(3)
    ids = node_ids(c)
    ws = [Worker(n, "sum", f"s{i}", concurrency=2) for i, n in enumerate(c.nodes)]
    for n in c.nodes:
        wait_seen([n], "sum", 3)
    for i, n in enumerate(c.nodes):
        with resp3(n) as conn:
            for k in range(i + 1):              # 1 + 2 + 3 calls
                assert conn.cmd("CALL", "sum", str(k)).startswith(b"s")
    labels = sorted(f"{ids[n]}:s{i}" for i, n in enumerate(c.nodes))
    for n in c.nodes:
        listing = as_map_list(n.cmd("SVC.LIST"))
        assert [(e["name"], e["workers"]) for e in listing] == [("sum", 3)]
        # Counters are announced once a second: every node converges on the sum.
        def converged():
            s = as_map(n.cmd("SVC.STATS", "sum"))
            return s if s["calls"] == 6 else None
        stats = wait_until(converged, timeout=10, what=f"{n}'s SVC.STATS to count 6 calls")
        assert sorted(stats["workers"]) == labels
        assert stats["errors"] == 0 and stats["timeouts"] == 0 and float(stats["p99_ms"]) >= 0
        details = sorted((d["node_id"], d["label"], d["concurrency"])
                         for d in as_map_list(stats["worker_details"]))
        assert details == sorted((ids[n2], f"{ids[n2]}:s{i}", 2)
                                 for i, n2 in enumerate(c.nodes))
    # A worker that stops serving, then one that leaves, disappear everywhere.
    ws[1].raw.send(encode_command("SVC.UNSERVE", "sum"))
    for n in c.nodes:
        wait_seen([n], "sum", 2)
    ws[2].close()
    for n in c.nodes:
        wait_seen([n], "sum", 1)
    for w in ws[:2]:
        w.close()


# ---------------------------------------------------------------------------
# The Python client, unchanged


def connect_room(node, code):
    """A client on `node` in room `code` (created on another node: once it is applied here)."""
    url = f"distri://{node.host}:{node.port}/{code}"

    def attempt():
        try:
            return [distri.connect(url, quiet=True)]     # a Room with no keys is falsy
        except distri.NotFound:
            return None
    return wait_until(attempt, timeout=10, interval=0.05, what=f"room {code} on {node}")[0]


def test_python_client_service_on_one_node_called_from_another(make_cluster):
    c = make_cluster(3)
    ids = node_ids(c)
    a, b, cc = c.nodes
    owner = distri.connect(f"distri://{a.host}:{a.port}", quiet=True)   # a new room
    serving = connect_room(b, owner.code)
    calling = connect_room(cc, owner.code)

    @serving.service("add")
    def add(x, y):
        return x + y

    @serving.function(name="math.mul")
    def mul(x, y):
        return x * y

    worker = serving.serve(background=True, name="pyw")
    wait_until(lambda: calling.services().get("add"), timeout=10, what="add seen on node C")
    assert calling.call("add", 2, 3) == 5
    assert calling.call("math.mul", 6, 7) == 42
    assert calling.call_all("add", 1, 1) == {f"{ids[b]}:pyw": 2}
    assert owner.call("add", "a", "b") == "ab"              # from node A too
    stats = calling.service_stats("add")
    assert stats["workers"] == [f"{ids[b]}:pyw"]
    for r in (calling, owner, serving):
        r.close()
    assert not worker.running
