"""Each connection keeps to its own session, on both faces, against real servers:
a worker's answer goes only on the connection its request came on; a command
interrupted (KeyboardInterrupt, asyncio cancel) between its send and its reply
does not leave that reply for the next command; closing a subscription or
stopping a worker does not count as its node failing; a mirror whose node cuts
it off right after the snapshot backs off; a node that refuses to dial is final
only when no node could be reached otherwise; and which TRYAGAIN moves to another
node. Single-node servers suffice (the rules are the same on a cluster).
"""

import asyncio
import signal
import socket
import threading
import time

import pytest

import distri
import distri.aio
from conftest import Relay, command, free_port, wait_until
from distri import _aio_link, _link
from distri._nodes import NodeSet, tryagain_moves
from distri._resp import pack
from distri._url import parse_targets
from distri.errors import ServerError, TryAgain


def run(coro):
    return asyncio.run(coro)


# -- 1. a worker's reply belongs to its connection -------------------------------------

def test_worker_drops_the_answer_to_a_request_of_an_earlier_connection(server_factory):
    """A request held by a handler while the server restarts: the worker serves again
    on a new connection, where request ids start afresh. The late answer must not go
    there, where its id names the next caller's request."""
    s = server_factory()
    room = distri.connect(s.url, quiet=True)
    wroom = distri.connect(room.url, quiet=True)
    started = {"first": threading.Event(), "second": threading.Event()}
    release = {"first": threading.Event(), "second": threading.Event()}

    @wroom.service("svc")
    def svc(x):
        started[x].set()
        release[x].wait(10)
        return f"answer-to-{x}"
    worker = wroom.serve("svc", concurrency=4, background=True)
    threading.Thread(target=lambda: _quiet(room.call, "svc", "first", timeout=3),
                     daemon=True).start()
    assert started["first"].wait(10)
    s.kill9()
    s.start()
    caller = distri.connect(room.url, quiet=True)
    wait_until(lambda: caller.services().get("svc", {}).get("workers", 0) >= 1, 15,
               what="the worker to serve again")
    got = []
    t = threading.Thread(target=lambda: got.append(_quiet(caller.call, "svc", "second",
                                                          timeout=10)))
    t.start()
    assert started["second"].wait(10)
    release["first"].set()                       # the old request's answer is ready now
    wait_until(lambda: worker.handled >= 1, 5, what="the first handler to return")
    t.join(1.0)
    assert got == [], "the second caller got the first request's answer"
    release["second"].set()
    t.join(10)
    assert got == ["answer-to-second"]
    worker.stop()
    for r in (caller, wroom, room):
        r.close()


def test_worker_drops_the_answer_to_a_request_of_an_earlier_connection_aio(server_factory):
    s = server_factory()

    async def main():
        room = await distri.aio.connect(s.url, quiet=True)
        wroom = await distri.aio.connect(room.url, quiet=True)
        started = {"first": asyncio.Event(), "second": asyncio.Event()}
        release = {"first": asyncio.Event(), "second": asyncio.Event()}

        @wroom.service("svc")
        async def svc(x):
            started[x].set()
            await release[x].wait()
            return f"answer-to-{x}"
        worker = await wroom.serve("svc", concurrency=4, background=True)
        first = asyncio.ensure_future(room.call("svc", "first", timeout=3))
        await asyncio.wait_for(started["first"].wait(), 10)
        s.kill9()
        s.start()
        caller = await distri.aio.connect(room.url, quiet=True)
        for _ in range(300):
            if (await caller.services()).get("svc", {}).get("workers", 0) >= 1:
                break
            await asyncio.sleep(0.05)
        second = asyncio.ensure_future(caller.call("svc", "second", timeout=10))
        await asyncio.wait_for(started["second"].wait(), 10)
        release["first"].set()
        for _ in range(100):
            if worker.handled >= 1:
                break
            await asyncio.sleep(0.01)
        done, _ = await asyncio.wait([second], timeout=1.0)
        assert not done, f"the second caller got {second.result()!r}"
        release["second"].set()
        assert await second == "answer-to-second"
        await asyncio.gather(first, return_exceptions=True)
        await worker.stop()
        for r in (caller, wroom, room):
            await r.close()
    run(main())


def _quiet(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except distri.Error as e:
        return e


# -- 2. an interrupted command takes its reply with it ----------------------------------

class _Interrupt(BaseException):
    """Stands for KeyboardInterrupt (which pytest would take for the user's)."""


def test_interrupted_command_does_not_leave_its_reply_for_the_next(server_factory):
    s = server_factory()
    room = distri.connect(s.url, quiet=True)
    room["k1"], room["k2"] = "v1", "v2"

    def interrupt(*_):
        raise _Interrupt()
    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        s.proc.send_signal(signal.SIGSTOP)         # the GET is sent, its reply not yet
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(_Interrupt):
            room["k1"]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    # The server wakes while the next GET waits: both replies would come in order.
    threading.Timer(0.3, s.proc.send_signal, (signal.SIGCONT,)).start()
    assert room["k2"] == "v2"
    assert room.incr("n") == 1
    room.close()


def test_cancelled_command_does_not_leave_its_reply_for_the_next(server_factory):
    s = server_factory()

    async def main():
        room = await distri.aio.connect(s.url, quiet=True)
        await room.set("k1", "v1")
        await room.set("k2", "v2")
        s.proc.send_signal(signal.SIGSTOP)
        task = asyncio.ensure_future(room.get("k1"))
        await asyncio.sleep(0.3)                   # sent, waiting for the reply
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        asyncio.get_running_loop().call_later(0.3, s.proc.send_signal, signal.SIGCONT)
        assert await room.get("k2") == "v2"
        assert await room.incr("n") == 1
        await room.close()
    run(main())


# -- 3. closing is not a failure ----------------------------------------------------------

def test_closing_a_subscription_or_stopping_a_worker_is_not_a_node_failure(server_factory):
    s = server_factory()
    room = distri.connect(s.url, quiet=True)
    room["a"] = 1
    nodes, address = room._link.nodes, room._link.address
    since = time.monotonic()
    sub = room.subscribe("x")
    reader = threading.Thread(target=sub.get)
    reader.start()
    wait_until(lambda: sub._read_lock.locked(), 5, what="the reader to wait")
    sub.close()
    reader.join(5)

    @room.service
    def echo(x):
        return x
    room.serve(background=True).stop()
    assert not nodes.failed_since(address, since)
    room.close()


def test_closing_a_subscription_or_stopping_a_worker_is_not_a_node_failure_aio(
        server_factory):
    s = server_factory()

    async def main():
        room = await distri.aio.connect(s.url, quiet=True)
        await room.set("a", 1)
        nodes, address = room._link.nodes, room._link.address
        since = time.monotonic()
        sub = await room.subscribe("x")
        reader = asyncio.ensure_future(sub.get())
        await asyncio.sleep(0.1)                   # the reader waits in read()
        await sub.close()
        await asyncio.wait_for(reader, 5)

        @room.service
        async def echo(x):
            return x
        worker = await room.serve(background=True)
        await worker.stop()
        assert not nodes.failed_since(address, since)
        await room.close()
    run(main())


# -- 4. a mirror cut off right after its snapshot backs off ------------------------------

class _CuttingRelay:
    """A relay to the server that cuts every connection every `period` seconds and
    counts the connections made (a node in a crash loop, or one that cuts slow
    consumers, seen from the client)."""

    def __init__(self, port, period=0.15):
        self.accepted = []
        self.relay = Relay("127.0.0.1", self._count)
        self.relay.target = ("127.0.0.1", port)
        self.url = f"distri://127.0.0.1:{self.relay.port}"
        self._stop = threading.Event()
        self._period = period
        threading.Thread(target=self._cut, daemon=True).start()

    def _count(self, ip):
        self.accepted.append(time.monotonic())
        return False

    def _cut(self):
        relay = self.relay
        while not self._stop.wait(self._period):
            with relay.lock:
                conns, relay.conns = relay.conns, []
            for _, down, up in conns:
                for sock in (down, up):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)    # (wakes the relay's pumps)
                    except OSError:
                        pass
                    sock.close()

    def close(self):
        self._stop.set()
        self.relay.close()


WINDOW = 3.0


def _mirror_dials(accepted, started):
    return [t for t in accepted if t >= started]


def test_mirror_cut_after_each_snapshot_backs_off(server_factory):
    s = server_factory()
    owner = distri.connect(s.url, quiet=True)
    relay = _CuttingRelay(s.port)
    room = distri.connect(f"{relay.url}/{owner.code}", quiet=True)
    room.start_mirror(timeout=10)
    started = time.monotonic()
    time.sleep(WINDOW)                             # the span measured
    dials = _mirror_dials(relay.accepted, started)
    room.close()
    relay.close()
    owner.close()
    # Backing off 50 ms doubling to 1 s: about 6 in 3 s; starting afresh after each
    # snapshot: one per cut, about 20.
    assert 2 <= len(dials) <= 9, [round(t - started, 2) for t in dials]


def test_mirror_cut_after_each_snapshot_backs_off_aio(server_factory):
    s = server_factory()
    owner = distri.connect(s.url, quiet=True)
    relay = _CuttingRelay(s.port)

    async def main():
        room = await distri.aio.connect(f"{relay.url}/{owner.code}", quiet=True)
        await room.start_mirror(timeout=10)
        started = time.monotonic()
        await asyncio.sleep(WINDOW)
        await room.close()
        return _mirror_dials(relay.accepted, started), started
    dials, started = run(main())
    relay.close()
    owner.close()
    assert 2 <= len(dials) <= 9, [round(t - started, 2) for t in dials]


# -- 5. one node's refusal is final only when no other node could be asked ----------------

def test_dial_refused_by_one_node_while_the_other_is_unreachable_is_retried(server):
    dead = free_port()
    both = NodeSet(parse_targets(f"distri://127.0.0.1:{dead},127.0.0.1:{server.port}"))
    alone = NodeSet(parse_targets(server.url))
    kw = dict(connect_timeout=2.0, idle_timeout=None)
    with pytest.raises(OSError) as e:              # the caller's retry loop takes it
        _link._dial(both, "no-such-room", [], **kw)
    assert not isinstance(e.value, ServerError) and "refused" in str(e.value)
    with pytest.raises(distri.NotFound):           # every node said so: final
        _link._dial(alone, "no-such-room", [], **kw)

    async def main():
        with pytest.raises(OSError):
            await _aio_link._dial(both, "no-such-room", [], connect_timeout=2.0)
        with pytest.raises(distri.NotFound):
            await _aio_link._dial(alone, "no-such-room", [], connect_timeout=2.0)
    run(main())


# -- 6. which TRYAGAIN moves to another node ----------------------------------------------

@pytest.mark.parametrize("text,moves", [
    # The server's own texts (src/server/cluster.cc, server_cluster.cc, stats.cc,
    # raft_log.cc).
    ("no leader is known; retry", True),
    ("the leader is not reachable from this node", True),
    ("no leader is known (an election is under way); the write was not applied", True),
    ("the leader is not reachable from this node; the write was not applied", True),
    ("no linearizable read point within 2000 ms", True),
    ("no linearizable read point (no leader is known; retry)", True),
    ("too many statistics requests in flight on this node; retry", False),
    ("another membership change is still being applied; retry", False),
    ("the leader refused the forwarded write (busy)", False),
    ("the leader dropped the proposal (leadership is moving); the write was not applied",
     False),
])
def test_which_tryagain_moves_to_another_node(text, moves):
    assert tryagain_moves(TryAgain(text)) is moves
    assert not tryagain_moves(ServerError(text))


def test_stats_busy_tryagain_retries_the_same_node(cluster_factory):
    """A node whose statistics requests are all in flight (a stopped member makes
    each wait its 1 s) answers TRYAGAIN: the node is healthy, so the room waits and
    asks it again rather than move every connection to another node."""
    cluster = cluster_factory(3)
    leader = cluster.leader()
    node, stopped = [n for n in cluster.nodes if n is not leader]
    room = distri.connect(f"distri://{node.address}", quiet=True)
    assert room.address == node.address
    since = time.monotonic()
    stopped.proc.send_signal(signal.SIGSTOP)
    fillers = []
    try:
        for _ in range(256):                   # the node's limit (cluster_stats.h)
            sock = socket.create_connection(node.at, timeout=5)
            sock.sendall(pack(("STATS",)))
            fillers.append(sock)
        if not isinstance(command(node.port, "STATS", host=node.host), TryAgain):
            pytest.skip("this server does not gather statistics across its cluster")
        assert isinstance(room.stats(), dict)  # answered once the node has room again
        assert room.address == node.address
        assert not room._link.nodes.failed_since(node.at, since)
    finally:
        for sock in fillers:
            sock.close()
        stopped.proc.send_signal(signal.SIGCONT)
        room.close()


def test_stats_busy_tryagain_retries_the_same_node_aio(cluster_factory):
    cluster = cluster_factory(3)
    leader = cluster.leader()
    node, stopped = [n for n in cluster.nodes if n is not leader]

    async def main():
        room = await distri.aio.connect(f"distri://{node.address}", quiet=True)
        assert room.address == node.address
        since = time.monotonic()
        stopped.proc.send_signal(signal.SIGSTOP)
        fillers = []
        try:
            for _ in range(256):
                sock = socket.create_connection(node.at, timeout=5)
                sock.sendall(pack(("STATS",)))
                fillers.append(sock)
            if not isinstance(command(node.port, "STATS", host=node.host), TryAgain):
                pytest.skip("this server does not gather statistics across its cluster")
            assert isinstance(await room.stats(), dict)
            assert room.address == node.address
            assert not room._link.nodes.failed_since(node.at, since)
        finally:
            for sock in fillers:
                sock.close()
            stopped.proc.send_signal(signal.SIGCONT)
            await room.close()
    run(main())
