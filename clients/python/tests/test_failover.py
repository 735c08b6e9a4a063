"""The client across a real 3-node cluster (kill -9, SIGSTOP): it learns the nodes
from one address, takes several, moves to another node when its node dies, never
resends a write whose outcome is unknown, and its mirror, on_change callbacks,
subscriptions and workers carry on on the new node. The asyncio face's versions
are in test_failover_aio.py. The cluster tests skip with a single-node binary; the
last one (reconnecting backs off) runs on any.
"""

import itertools
import socket
import threading
import time

import pytest

import distri
from conftest import command, wait_until

FAILOVER_BUDGET = 8.0        # seconds from a kill to the client working on another node


def follower_and_leader(cluster):
    leader = cluster.leader()
    follower = next(n for n in cluster.nodes if n is not leader)
    return follower, leader


def inbound_queued(node):
    """Bytes that arrived at the node's client port and that it has not read (the
    Recv-Q of its accepted sockets, from /proc/net/tcp)."""
    local_hex = f"{socket.inet_aton(node.host)[::-1].hex().upper()}:{node.port:04X}"
    total = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, state, queues = fields[1], fields[3], fields[4]
            if state == "01" and local == local_hex:        # established, to the node
                total += int(queues.split(":")[1], 16)
    return total


def exists_calls(node):
    """How many EXISTS the node ran (INFO commandstats)."""
    info = command(node.port, "INFO", "commandstats", host=node.host)
    text = info.decode() if isinstance(info, bytes) else str(info)
    for line in text.splitlines():
        if line.startswith("cmdstat_exists:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def test_one_address_is_enough_the_others_are_learnt(cluster_factory):
    c = cluster_factory(3)
    room = distri.connect(f"distri://{c.nodes[2].address}", quiet=True)
    try:
        assert sorted(room.nodes) == sorted(n.address for n in c.nodes)
        assert room.nodes[0] == c.nodes[2].address       # the one it is on comes first
        assert room.address == c.nodes[2].address
        room["k"] = "v"
        assert room["k"] == "v"
        # room.url names every node: another process can start from any of them.
        assert all(n.address in room.url for n in c.nodes) and room.url.endswith(room.code)
    finally:
        room.close()


def test_several_addresses_in_a_url_or_a_list(cluster_factory):
    c = cluster_factory(3)
    first = distri.connect(f"distri://{c.nodes[0].address}", quiet=True)
    first["shared"] = 1
    code = first.code
    first.close()
    c.nodes[0].kill9()           # the first address given is dead: the next one is used
    urls = ",".join(n.address for n in c.nodes)
    t = time.monotonic()
    by_url = distri.connect(f"distri://{urls}/{code}", quiet=True)
    by_list = distri.connect([n.address for n in c.nodes[:2]] + [f"{c.nodes[2].address}/{code}"],
                             quiet=True)
    try:
        assert time.monotonic() - t < FAILOVER_BUDGET
        assert by_url.address != c.nodes[0].address
        assert by_list.address != c.nodes[0].address
        assert by_url["shared"] == 1 and by_list["shared"] == 1
        assert by_list.code == code
    finally:
        by_url.close()
        by_list.close()
    with pytest.raises(ValueError, match="different rooms"):
        distri.connect(["127.0.0.1:1/ROOMA", "127.0.0.1:2/ROOMB"])


def write_until_known(room, prefix):
    """Writes prefix:0, prefix:1, ... (each key once, with its number) until a write
    is acknowledged; returns the keys whose outcome was unknown (a write in flight
    when the leader died may get UNKNOWN: that is the client's answer, not an error).
    Each of those is then either absent or holds its number, never resent."""
    unknown = []
    deadline = time.monotonic() + FAILOVER_BUDGET
    for i in itertools.count():
        try:
            room[f"{prefix}:{i}"] = i
            return unknown
        except distri.UnknownOutcome:
            unknown.append(i)
            assert time.monotonic() < deadline, f"{len(unknown)} unknown outcomes"


def check_unknown(room, prefix, unknown):
    for i in unknown:
        assert room.get(f"{prefix}:{i}") in (None, i)


def test_keeps_working_through_a_leader_kill_and_its_own_node_kill(cluster_factory):
    c = cluster_factory(3)
    follower, leader = follower_and_leader(c)
    room = distri.connect(f"distri://{follower.address}", quiet=True)
    try:
        room["before"] = 0
        # 1. The leader dies: the client's node stays, an election follows.
        leader.kill9()
        t = time.monotonic()
        unknown = write_until_known(room, "after-leader")
        assert room.incr("n") == 1
        elapsed = time.monotonic() - t
        assert elapsed < FAILOVER_BUDGET, elapsed
        check_unknown(room, "after-leader", unknown)
        leader.start()                         # back, so that a majority survives step 2
        wait_until(c._all_voters, 20, what="the old leader to rejoin")
        # 2. The client's own node dies (during the election it may have moved on
        # TRYAGAIN): the client moves to another node.
        own = c.node_at(room.address)
        own.kill9()
        t = time.monotonic()
        assert room["before"] == 0             # a read, sent to the next node
        assert room.address not in (None, own.address)
        unknown = write_until_known(room, "after-own")
        assert room.incr("n") == 2
        elapsed = time.monotonic() - t
        assert elapsed < FAILOVER_BUDGET, elapsed
        check_unknown(room, "after-own", unknown)
    finally:
        room.close()


def test_mirror_and_on_change_see_every_change_once_across_a_failover(cluster_factory):
    c = cluster_factory(3)
    follower, leader = follower_and_leader(c)
    room = distri.connect(f"distri://{follower.address}", quiet=True)
    writer = distri.connect(f"distri://{leader.address}/{room.code}", quiet=True)
    seen = []
    room.on_change(lambda ch: seen.append((ch.key, ch.value, ch.revision)), prefix="seq:")
    room.start_mirror()
    assert room._mirror.address == follower.at
    total, kill_at = 400, 150
    wrote, killed_ev = threading.Event(), threading.Event()

    def write():
        for i in range(total):
            writer[f"seq:{i:04d}"] = i
            if i == kill_at:                   # the rest is written after the kill
                wrote.set()
                killed_ev.wait(30)
    t = threading.Thread(target=write)
    t.start()
    try:
        assert wrote.wait(30)
        follower.kill9()                       # the mirror's node, mid-sequence
        killed = time.monotonic()
        killed_ev.set()
        t.join(60)
        assert not t.is_alive()
        room.wait_for(f"seq:{total - 1:04d}", timeout=FAILOVER_BUDGET + 10)
        assert time.monotonic() - killed < FAILOVER_BUDGET + 5
        # (callbacks run on the mirror's thread just after room.data changed)
        wait_until(lambda: len(seen) >= total, 5, what="the last callbacks")
        # Every change once, in order, none missing.
        assert [k for k, _, _ in seen] == [f"seq:{i:04d}" for i in range(total)]
        assert [v for _, v, _ in seen] == list(range(total))
        revisions = [r for _, _, r in seen]
        assert revisions == sorted(revisions) and len(set(revisions)) == total
        assert dict(room.data) == {f"seq:{i:04d}": i for i in range(total)}
        assert room._mirror.address not in (None, follower.address)
        assert room._state.resyncs == 0        # resumed FROM its revision, no snapshot
    finally:
        writer.close()
        room.close()


def test_incr_whose_connection_dies_in_flight_raises_and_is_not_resent(cluster_factory):
    c = cluster_factory(3)
    follower, leader = follower_and_leader(c)
    room = distri.connect(f"distri://{follower.address}", quiet=True)
    try:
        assert room.incr("n") == 1
        follower.proc.send_signal(19)          # SIGSTOP: the INCR reaches it, unread
        result = []

        def incr():
            try:
                result.append(room.incr("n"))
            except BaseException as e:         # noqa: B902 - the test inspects it
                result.append(e)
        t = threading.Thread(target=incr)
        t.start()
        wait_until(lambda: inbound_queued(follower) > 0, 10,
                   what="the INCR to reach the stopped node")
        follower.kill9()                       # the connection dies before any reply
        t.join(20)
        err = result[0]
        assert isinstance(err, distri.UnknownOutcome), err
        assert isinstance(err, distri.ConnectionError) and err.maybe_applied
        assert err.code == "UNKNOWN"
        # Never resent: the stopped node never ran it, and nobody sent it again.
        assert room.get("n") == 1
        assert room.incr("n") == 2             # the room works on another node
    finally:
        room.close()


def test_silent_node_is_left_after_node_timeout(cluster_factory):
    c = cluster_factory(3)
    follower, leader = follower_and_leader(c)
    room = distri.connect(f"distri://{follower.address}", quiet=True, node_timeout=1.0)
    try:
        room["k"] = 1
        room.start_mirror()
        assert room._mirror.address == follower.at
        # An idle mirror probes its node every node_timeout / 2 with a linearizable
        # read (a node cut off from the quorum could not answer it); a healthy node
        # answers, and the mirror stays.
        wait_until(lambda: exists_calls(follower) >= 3, 10, what="idle probes")
        assert room._mirror.error is None and room._mirror.address == follower.at
        follower.proc.send_signal(19)          # SIGSTOP: connected, silent (a partition)
        t = time.monotonic()
        assert room["k"] == 1                  # a read: sent again to another node
        assert 0.9 < time.monotonic() - t < 1.0 + FAILOVER_BUDGET
        assert room.address != follower.address
        room["k"] = 2                          # writes go on on the new node
        assert room.wait_for("k", lambda v: v == 2, timeout=FAILOVER_BUDGET) == 2
        assert room._mirror.address != follower.at
    finally:
        follower.proc.send_signal(18)
        room.close()


def test_node_partitioned_away_is_left_and_the_mirror_misses_nothing(cluster_factory):
    """The client's node is cut off from the other two (its process runs and
    answers PING, but it has no quorum and gets no changes): reads, writes and the
    mirror move to a node of the majority; the mirror sees every change once."""
    c = cluster_factory(3)
    follower, leader = follower_and_leader(c)
    room = distri.connect(f"distri://{follower.address}", quiet=True, node_timeout=1.5)
    writer = distri.connect(f"distri://{leader.address}/{room.code}", quiet=True)
    seen = []
    try:
        room.on_change(lambda ch: seen.append((ch.key, ch.value)), prefix="seq:")
        room["k"] = 1
        room.start_mirror()
        for i in range(50):
            writer[f"seq:{i:03d}"] = i
        room.wait_for("seq:049", timeout=10)
        c.isolate(follower)
        t = time.monotonic()
        for i in range(50, 100):               # written by the majority only
            writer[f"seq:{i:03d}"] = i
        room.wait_for("seq:050", timeout=FAILOVER_BUDGET)    # the mirror moved first,
        t_read = time.monotonic()
        assert room["k"] == 1                  # so the link moves before sending the read
        assert time.monotonic() - t_read < 1.0
        assert room.address != follower.address
        room["k"] = 2
        room.wait_for("seq:099", timeout=FAILOVER_BUDGET + 5)
        assert time.monotonic() - t < FAILOVER_BUDGET + 2
        wait_until(lambda: len(seen) >= 100, 5, what="the last callbacks")
        assert room._mirror.address != follower.at
        assert seen == [(f"seq:{i:03d}", i) for i in range(100)]
        assert room.wait_for("k", lambda v: v == 2, timeout=5) == 2
        # The cut was real: the node lost its leader, and still answers clients.
        wait_until(lambda: (follower.info() or {}).get("leader_id") == 0, 10,
                   what="the isolated node to lose its leader")
    finally:
        c.heal()
        writer.close()
        room.close()


def test_subscriber_and_worker_move_to_another_node(cluster_factory):
    c = cluster_factory(3)
    follower, leader = follower_and_leader(c)
    room = distri.connect(f"distri://{follower.address}", quiet=True)

    @room.service
    def double(x):
        return 2 * x

    sub = room.subscribe("news")
    worker = room.serve(background=True)
    try:
        assert sub.address == follower.at and worker.address == follower.at
        follower.kill9()
        t = time.monotonic()
        # The subscription reconnects when read; the worker by itself.
        wait_until(lambda: sub.get(timeout=0.05) is None and sub.address is not None, 15,
                   what="the subscription to reconnect")
        wait_until(lambda: worker.address is not None, 15, what="the worker to reconnect")
        assert time.monotonic() - t < FAILOVER_BUDGET
        for thing in (sub, worker):
            assert thing.address != follower.at
        # A client on the node each one moved to reaches it.
        sub_node = f"{sub.address[0]}:{sub.address[1]}"
        pub = distri.connect(f"distri://{sub_node}/{room.code}", quiet=True)
        wait_until(lambda: pub.subscribers("news") >= 1, 10, what="the resubscription")
        assert pub.publish("news", {"n": 1}) >= 1
        msg = sub.get(timeout=5)
        assert msg is not None and msg.value == {"n": 1}
        pub.close()
        worker_node = f"{worker.address[0]}:{worker.address[1]}"
        caller = distri.connect(f"distri://{worker_node}/{room.code}", quiet=True)
        assert caller.call("double", 21, timeout=10) == 42
        caller.close()
    finally:
        sub.close()
        worker.stop()
        room.close()


def test_reconnecting_backs_off_and_does_not_spin(server_factory):
    """A node that accepts and hangs up at once (the worst case: every attempt fails
    fast) sees a few attempts per second from a room's mirror and worker, not a storm."""
    s = server_factory()
    room = distri.connect(s.url, quiet=True)

    @room.service
    def echo(x):
        return x
    room.start_mirror()
    worker = room.serve(background=True)
    s.kill9()
    accepted = []
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", s.port))
        listener.listen(64)
        listener.settimeout(0.1)
        start = time.monotonic()
        while time.monotonic() - start < 3.0:
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            accepted.append(time.monotonic() - start)
            conn.close()
    worker.stop(timeout=0.1)
    room.close()
    # Two connections, each backing off 50 ms doubling to 1 s (jittered): about six
    # attempts each in 3 s. Without backoff it would be thousands.
    assert 2 <= len(accepted) <= 24, accepted


def test_set_whose_connection_dies_in_flight_raises_and_is_not_resent(server_factory):
    """On one server too: a SET whose reply was lost is not sent again (it could undo
    a later write of another client); a GET is."""
    s = server_factory()
    room = distri.connect(s.url, quiet=True, retry_timeout=20)
    room["k"] = "first"
    s.proc.send_signal(19)                     # SIGSTOP: the SET reaches it, unread
    result = []

    def write():
        try:
            room["k"] = "second"
            result.append(None)
        except BaseException as e:             # noqa: B902 - the test inspects it
            result.append(e)
    t = threading.Thread(target=write)
    t.start()
    wait_until(lambda: inbound_queued(s) > 0, 10, what="the SET to reach the stopped server")
    s.kill9()
    t.join(20)
    assert isinstance(result[0], distri.UnknownOutcome), result
    s.start()                                  # same data: the stopped server never ran it
    assert room["k"] == "first"                # a read: reconnects and is answered
    room.close()
