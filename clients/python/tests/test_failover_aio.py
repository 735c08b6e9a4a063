"""The asyncio face (distri.aio) across a real 3-node cluster: the same failover as
test_failover.py (learning the nodes, several addresses, a leader kill and the kill
of its own node, the mirror exactly once, an in-flight INCR never resent, a
subscriber and a worker moving, a node partitioned away). Skipped with a
single-node binary."""

import asyncio
import time

import distri
import distri.aio
from test_failover import FAILOVER_BUDGET, follower_and_leader, inbound_queued


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 90))


async def until(predicate, timeout, what):
    """Awaits until predicate() (a coroutine function or plain one) is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def test_aio_learns_the_nodes_and_survives_leader_and_own_node_kills(cluster_factory):
    c = cluster_factory(3)
    leader = c.leader()

    async def write_until_known(room, prefix):
        """As test_failover.write_until_known; checks the unknown keys too."""
        unknown = []
        for i in range(1000):
            try:
                await room.set(f"{prefix}:{i}", i)
                break
            except distri.UnknownOutcome:
                unknown.append(i)
        for i in unknown:
            assert await room.get(f"{prefix}:{i}") in (None, i)

    async def main():
        # The client starts on the leader: the first kill takes its node and the
        # leader at once.
        room = await distri.aio.connect(f"distri://{leader.address}", quiet=True)
        assert sorted(room.nodes) == sorted(n.address for n in c.nodes)
        both = await distri.aio.connect(
            [n.address for n in c.nodes[:2]] + [f"{c.nodes[2].address}/{room.code}"],
            quiet=True)
        assert both.code == room.code
        await room.set("before", 0)
        leader.kill9()
        t = time.monotonic()
        await write_until_known(room, "after-leader")
        assert room.address not in (None, leader.address)
        assert await room.incr("n") == 1
        assert time.monotonic() - t < FAILOVER_BUDGET
        leader.start()
        await until(c._all_voters, 20, "the old leader to rejoin")
        own = c.node_at(room.address)
        own.kill9()
        t = time.monotonic()
        assert await room.get("before") == 0
        assert room.address not in (None, own.address)
        assert await room.incr("n") == 2
        assert time.monotonic() - t < FAILOVER_BUDGET
        assert await both.get("n") == 2
        await both.close()
        await room.close()
    run(main())


def test_aio_mirror_exactly_once_and_incr_never_resent(cluster_factory):
    c = cluster_factory(3)
    follower, leader = follower_and_leader(c)

    async def main():
        room = await distri.aio.connect(f"distri://{follower.address}", quiet=True)
        writer = await distri.aio.connect(f"distri://{leader.address}/{room.code}", quiet=True)
        seen = []
        room.on_change(lambda ch: seen.append((ch.key, ch.value, ch.revision)), prefix="seq:")
        await room.start_mirror()
        assert room.mirror_address == follower.at
        total, kill_at = 300, 100
        for i in range(kill_at):
            await writer.set(f"seq:{i:04d}", i)
        # An INCR in flight on the mirror's node when it dies.
        assert await room.incr("n") == 1
        follower.proc.send_signal(19)             # SIGSTOP: the INCR reaches it, unread
        incr = asyncio.ensure_future(room.incr("n"))
        await until(lambda: inbound_queued(follower) > 0, 10, "the INCR to arrive")
        follower.kill9()
        killed = time.monotonic()
        for i in range(kill_at, total):
            await writer.set(f"seq:{i:04d}", i)
        try:
            await incr
            raise AssertionError("the INCR whose connection died returned")
        except distri.UnknownOutcome as e:
            assert e.maybe_applied and e.code == "UNKNOWN"
        assert await room.get("n") == 1           # never resent
        await room.wait_for(f"seq:{total - 1:04d}", timeout=FAILOVER_BUDGET + 10)
        assert time.monotonic() - killed < FAILOVER_BUDGET + 5
        assert [k for k, _, _ in seen] == [f"seq:{i:04d}" for i in range(total)]
        assert [v for _, v, _ in seen] == list(range(total))
        revisions = [r for _, _, r in seen]
        assert revisions == sorted(revisions) and len(set(revisions)) == total
        assert room.mirror_address is not None and room.mirror_address != follower.at
        assert room._state.resyncs == 0
        await writer.close()
        await room.close()
    run(main())


def test_aio_subscriber_and_worker_move_to_another_node(cluster_factory):
    c = cluster_factory(3)
    follower, leader = follower_and_leader(c)

    async def main():
        room = await distri.aio.connect(f"distri://{follower.address}", quiet=True)

        @room.service("double")
        async def double(x):
            return 2 * x
        worker = await room.serve(background=True, name="mover")
        sub = await room.subscribe("news")
        assert sub.address == follower.at and worker.address == follower.at
        follower.kill9()
        t = time.monotonic()

        async def sub_moved():
            return await sub.get(0.05) is None and sub.address is not None
        await until(sub_moved, 15, "the subscription to reconnect")
        await until(lambda: worker.address is not None, 15, "the worker to reconnect")
        assert time.monotonic() - t < FAILOVER_BUDGET
        assert sub.address != follower.at and worker.address != follower.at
        sub_node = f"{sub.address[0]}:{sub.address[1]}"
        pub = await distri.aio.connect(f"distri://{sub_node}/{room.code}", quiet=True)

        async def resubscribed():
            return await pub.subscribers("news") >= 1
        await until(resubscribed, 10, "the resubscription")
        assert await pub.publish("news", {"n": 1}) >= 1
        msg = await sub.get(5)
        assert msg is not None and msg.value == {"n": 1}
        caller = await distri.aio.connect(
            f"distri://{worker.address[0]}:{worker.address[1]}/{room.code}", quiet=True)
        assert await caller.call("double", 21, timeout=10) == 42
        await caller.close()
        await pub.close()
        await sub.close()
        await room.close()
    run(main())


def test_aio_node_partitioned_away_is_left(cluster_factory):
    c = cluster_factory(3)
    follower, leader = follower_and_leader(c)

    async def main():
        room = await distri.aio.connect(f"distri://{follower.address}", quiet=True,
                                        node_timeout=1.5)
        writer = await distri.aio.connect(f"distri://{leader.address}/{room.code}", quiet=True)
        seen = []
        room.on_change(lambda ch: seen.append((ch.key, ch.value)), prefix="seq:")
        await room.set("k", 1)
        await room.start_mirror()
        for i in range(30):
            await writer.set(f"seq:{i:03d}", i)
        await room.wait_for("seq:029", timeout=10)
        c.isolate(follower)
        t = time.monotonic()
        for i in range(30, 60):
            await writer.set(f"seq:{i:03d}", i)
        assert await room.get("k") == 1
        assert room.address != follower.address
        await room.wait_for("seq:059", timeout=FAILOVER_BUDGET + 5)
        assert time.monotonic() - t < FAILOVER_BUDGET + 2
        assert room.mirror_address != follower.at
        assert seen == [(f"seq:{i:03d}", i) for i in range(60)]
        await writer.close()
        await room.close()
    try:
        run(main())
    finally:
        c.heal()
