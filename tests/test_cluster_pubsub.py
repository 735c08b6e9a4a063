"""Pub/sub across a 3-node cluster of real processes (issue 11): a message published on any
node reaches every matching subscriber on every node, once, in each publisher's order;
patterns and rooms cross nodes; unsubscribing stops remote delivery; a node killed with
SIGKILL does not disturb the others; PUBLISH and PUBSUB count the whole cluster; the Python
client works unchanged with its publisher and subscriber on different nodes.

Waiting for a subscription to reach another node is awaited on an event, never slept: the
publisher's node answers PUBSUB NUMSUB / NUMPAT from the interest the others reported, so a
test publishes once that count shows the subscriber (docs/messaging.md, "Across the
cluster").
"""

import threading

import pytest

import distri
from cluster_util import make_cluster, binary_supports_cluster  # noqa: F401 (fixture)
from conftest import RawError, distri_bin, wait_until

pytestmark = [
    pytest.mark.distri,
    pytest.mark.skipif(not binary_supports_cluster(distri_bin()),
                       reason="the binary has no --cluster-port"),
]


def resp3(node, room=None):
    r = node.raw(timeout=20)
    assert isinstance(r.cmd("HELLO", "3"), dict)
    if room is not None:
        assert r.cmd("ROOM.JOIN", room) == b"OK"
    return r


def subscribe(conn, *channels, pattern=False):
    kind = "PSUBSCRIBE" if pattern else "SUBSCRIBE"
    conn.send(encode(kind, *channels))
    for ch in channels:
        reply = conn.read_reply()
        assert reply[:2] == [kind.lower().encode(), ch.encode()], reply


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def numsub(node, channel, room=None):
    with node.raw() as c:
        if room is not None:
            assert c.cmd("ROOM.JOIN", room) == b"OK"
        reply = c.cmd("PUBSUB", "NUMSUB", channel)
    return int(reply[1])


def numpat(node, room=None):
    with node.raw() as c:
        if room is not None:
            assert c.cmd("ROOM.JOIN", room) == b"OK"
        return int(c.cmd("PUBSUB", "NUMPAT"))


def wait_numsub(node, channel, n, room=None):
    wait_until(lambda: numsub(node, channel, room) == n, timeout=10, interval=0.02,
               what=f"PUBSUB NUMSUB {channel} == {n} on {node}")


def publish_many(node, channel, payloads, room=None):
    """PUBLISHes pipelined on one connection (one publisher); returns the integer replies."""
    with node.raw(timeout=30) as c:
        if room is not None:
            assert c.cmd("ROOM.JOIN", room) == b"OK"
        c.send(b"".join(encode("PUBLISH", channel, p) for p in payloads))
        return [c.read_reply() for _ in payloads]


def read_messages(conn, until):
    """Message payloads (message and pmessage pushes) up to and including `until`."""
    got = []
    while True:
        m = conn.read_reply()
        assert m[0] in (b"message", b"pmessage"), m
        got.append(m[-1])
        if m[-1] == until:
            return got


def test_every_message_once_and_in_order_on_every_node(make_cluster):
    c = make_cluster(3)
    a, b, c_node = c.nodes
    remote = resp3(c_node)
    subscribe(remote, "ticks")
    local = resp3(a)                 # on the publisher's own node
    subscribe(local, "ticks")
    by_pattern = resp3(b)
    subscribe(by_pattern, "ti*", pattern=True)
    wait_numsub(a, "ticks", 2)
    wait_until(lambda: numpat(a) == 1, timeout=10, interval=0.02, what="NUMPAT 1 on a")
    n = 2000
    payloads = [b"%d" % i for i in range(n)] + [b"end"]
    replies = publish_many(a, "ticks", payloads)
    # Local receiver + the subscriber C reported + the pattern subscriber B reported.
    assert replies == [3] * len(payloads)
    for conn in (remote, local, by_pattern):
        assert read_messages(conn, b"end") == payloads
    # Nothing more: a duplicate would come before this.
    publish_many(a, "ticks", [b"after"])
    for conn in (remote, local, by_pattern):
        assert read_messages(conn, b"after") == [b"after"]
        conn.close()


def test_two_publishers_on_two_nodes_keep_their_order(make_cluster):
    c = make_cluster(3)
    a, b, c_node = c.nodes
    subs = [resp3(c_node), resp3(a)]
    for s in subs:
        subscribe(s, "mix")
    wait_numsub(a, "mix", 2)
    wait_numsub(b, "mix", 2)
    n = 1000
    errors = []

    def publisher(node, tag):
        try:
            replies = publish_many(node, "mix", [b"%s:%d" % (tag, i) for i in range(n)])
            assert replies == [2] * n
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=publisher, args=(node, tag))
               for node, tag in ((a, b"A"), (b, b"B"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    for s in subs:
        got = [s.read_reply()[-1] for _ in range(2 * n)]
        for tag in (b"A", b"B"):
            mine = [m for m in got if m.startswith(tag + b":")]
            assert mine == [b"%s:%d" % (tag, i) for i in range(n)], tag
        s.close()


def test_patterns_rooms_and_pubsub_counts_across_nodes(make_cluster):
    c = make_cluster(3)
    a, b, c_node = c.nodes
    room = a.cmd("ROOM.NEW").decode()
    # The room is a replicated write: wait until C has applied it.
    wait_until(lambda: c_node.cmd("ROOM.JOIN", room) == b"OK", timeout=10, interval=0.05,
               what="room on node c")
    sub = resp3(c_node, room)
    subscribe(sub, "user.*", "order.?", pattern=True)
    subscribe(sub, "news")
    outside = resp3(b)                # same names, default room: must not get the room's
    subscribe(outside, "news")
    wait_until(lambda: numpat(a, room) == 2, timeout=10, interval=0.02, what="NUMPAT")
    wait_numsub(a, "news", 1, room)
    wait_numsub(a, "news", 1)
    with a.raw() as p:
        assert p.cmd("ROOM.JOIN", room) == b"OK"
        assert sorted(p.cmd("PUBSUB", "CHANNELS")) == [b"news"]
        assert p.cmd("PUBLISH", "user.42", "joined") == 1
        assert p.cmd("PUBLISH", "order.7", "placed") == 1
        assert p.cmd("PUBLISH", "order.77", "no match") == 0
        assert p.cmd("PUBLISH", "news", "room news") == 1
    assert sub.read_reply() == [b"pmessage", b"user.*", b"user.42", b"joined"]
    assert sub.read_reply() == [b"pmessage", b"order.?", b"order.7", b"placed"]
    assert sub.read_reply() == [b"message", b"news", b"room news"]
    assert publish_many(a, "news", [b"lobby"]) == [1]
    assert outside.read_reply() == [b"message", b"news", b"lobby"]
    # A local pattern subscriber too: NUMPAT counts unique patterns over the cluster.
    mine = resp3(a, room)
    subscribe(mine, "user.*", "x*", pattern=True)
    assert numpat(a, room) == 3
    wait_until(lambda: numpat(b, room) == 3, timeout=10, interval=0.02, what="NUMPAT on b")
    for s in (sub, outside, mine):
        s.close()


def test_unsubscribe_stops_remote_delivery(make_cluster):
    c = make_cluster(3)
    a, _, c_node = c.nodes
    sub = resp3(c_node)
    subscribe(sub, "data", "ctl")
    wait_numsub(a, "data", 1)
    assert publish_many(a, "data", [b"one"]) == [1]
    assert sub.read_reply() == [b"message", b"data", b"one"]
    sub.send(encode("UNSUBSCRIBE", "data"))
    assert sub.read_reply() == [b"unsubscribe", b"data", 1]
    wait_numsub(a, "data", 0)
    assert publish_many(a, "data", [b"two"]) == [0]
    assert publish_many(a, "ctl", [b"end"]) == [1]
    # The next message is the control one: "two" never came.
    assert sub.read_reply() == [b"message", b"ctl", b"end"]
    # A client that disconnects takes its subscriptions with it, on every node.
    sub.close()
    wait_numsub(a, "ctl", 0)
    assert publish_many(a, "ctl", [b"nobody"]) == [0]


def test_sigkill_of_a_node_does_not_break_delivery_between_the_others(make_cluster):
    c = make_cluster(3)
    a, b, c_node = c.nodes
    on_b, on_c = resp3(b), resp3(c_node)
    for s in (on_b, on_c):
        subscribe(s, "live")
    wait_numsub(a, "live", 2)
    assert publish_many(a, "live", [b"before"]) == [2]
    for s in (on_b, on_c):
        assert s.read_reply() == [b"message", b"live", b"before"]
    c_node.kill9()
    on_c.close()
    # Its link goes down and its interest with it.
    wait_numsub(a, "live", 1)
    payloads = [b"%d" % i for i in range(500)] + [b"end"]
    assert publish_many(a, "live", payloads) == [1] * len(payloads)
    assert read_messages(on_b, b"end") == payloads
    # Back with the same data directory (a new epoch): its new subscriber is reached again.
    c_node.start()
    again = resp3(c_node)
    subscribe(again, "live")
    wait_numsub(a, "live", 2)
    assert publish_many(a, "live", [b"back"]) == [2]
    for s in (on_b, again):
        assert s.read_reply() == [b"message", b"live", b"back"]
        s.close()


def test_python_client_subscribes_on_one_node_and_publishes_on_another(make_cluster):
    c = make_cluster(3)
    a, _, c_node = c.nodes
    room = a.cmd("ROOM.NEW").decode()
    wait_until(lambda: c_node.cmd("ROOM.JOIN", room) == b"OK", timeout=10, interval=0.05,
               what="room on node c")
    publisher = distri.connect(f"distri://{a.host}:{a.port}/{room}", quiet=True)
    listener = distri.connect(f"distri://{c_node.host}:{c_node.port}/{room}", quiet=True)
    try:
        sub = listener.subscribe("news")
        psub = listener.subscribe(patterns=["jobs.*"])
        wait_until(lambda: publisher.subscribers("news") == 1, timeout=10, interval=0.02,
                   what="the subscriber on c seen from a")
        values = [{"n": 1}, "text", 42, None, [1.5, True], b"\x00\xffraw"]
        for v in values:
            assert publisher.publish("news", v) == 1
        assert [sub.get(timeout=10).value for _ in values] == values
        wait_until(lambda: publisher.publish("jobs.1", "ping") == 1, timeout=10,
                   interval=0.05, what="the pattern subscriber on c seen from a")
        # The pings published while its interest was still on the way were not delivered
        # (PUBLISH said 0); from the first counted one on, each arrives once.
        m = psub.get(timeout=10)
        assert (m.topic, m.pattern, m.value) == ("jobs.1", "jobs.*", "ping")
        n = 300
        for i in range(n):
            publisher.publish("news", i)
        assert [sub.get(timeout=10).value for _ in range(n)] == list(range(n))
        assert sub.get(timeout=0.2) is None
        assert psub.get(timeout=0.05) is None
    finally:
        publisher.close()
        listener.close()


def test_a_paused_node_does_not_hold_up_the_others(make_cluster):
    """SIGSTOP keeps the node's links open but reads nothing: messages for it wait in the
    publisher's link queue (bounded, see PubsubRoutes::kMaxPeerBacklog) while the other
    subscribers get theirs at once; after SIGCONT it gets what was queued, in order."""
    c = make_cluster(3)
    a, b, c_node = c.nodes
    on_b, on_c = resp3(b), resp3(c_node)
    for s in (on_b, on_c):
        subscribe(s, "p")
    wait_numsub(a, "p", 2)
    c_node.pause()
    payloads = [b"%d" % i for i in range(1000)] + [b"end"]
    assert publish_many(a, "p", payloads) == [2] * len(payloads)
    assert read_messages(on_b, b"end") == payloads
    c_node.resume()
    assert read_messages(on_c, b"end") == payloads
    for s in (on_b, on_c):
        s.close()


def test_a_removed_member_loses_its_interest(make_cluster):
    c = make_cluster(3)
    leader = c.leader()
    victim = next(n for n in c.nodes if n is not leader)
    other = next(n for n in c.nodes if n is not leader and n is not victim)
    sub = resp3(victim)
    subscribe(sub, "gone")
    wait_numsub(leader, "gone", 1)
    victim_id = int(victim.cluster_info()["node_id"])
    def remove():
        reply = other.cmd("CLUSTER.REMOVE", str(victim_id))
        if isinstance(reply, RawError) and reply.startswith("TRYAGAIN"):
            return None   # an earlier membership change is not applied yet
        assert reply == b"OK", reply
        return reply
    wait_until(remove, timeout=15, interval=0.1, what="CLUSTER.REMOVE accepted")
    # Out of the membership: its subscriptions no longer count, nothing is sent to it.
    wait_numsub(leader, "gone", 0)
    wait_numsub(other, "gone", 0)
    assert publish_many(leader, "gone", [b"x"]) == [0]
    sub.close()


def test_a_write_after_subscribe_reaches_the_leader_behind_the_interest(make_cluster):
    """No waiting on NUMSUB here: the subscriber on a follower writes a key once SUBSCRIBE is
    confirmed, and the publisher on the leader publishes as soon as it reads that key. The
    follower queued its interest before the confirmation, on the link its forwarded write
    then took, so the leader knows the subscriber before the write commits."""
    c = make_cluster(3)
    leader = c.leader()
    follower = next(n for n in c.nodes if n is not leader)
    sub = resp3(follower)
    with leader.raw(timeout=10) as pub:
        for i in range(20):
            subscribe(sub, f"go{i}")
            reply = sub.cmd("SET", f"ready{i}", "1")
            assert reply == b"OK", reply
            assert pub.cmd("GET", f"ready{i}") == b"1"
            assert pub.cmd("PUBLISH", f"go{i}", f"m{i}") == 1
            assert sub.read_reply() == [b"message", f"go{i}".encode(), f"m{i}".encode()]
    sub.close()
