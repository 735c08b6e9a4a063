"""The parts of failover that do no I/O: URLs with several addresses, the node set
(what is learnt from CLUSTER.NODES, the dial order after a failure) and the opening
rounds of a connection (one round on a plain node, the barrier read in a cluster)."""

import time

import pytest

from distri._nodes import BARRIER, NodeSet, Opening, client_addresses
from distri._url import MAX_ADDRESSES, parse_targets, parse_url
from distri.errors import RequestError, TryAgain


def test_urls_with_several_addresses():
    t = parse_targets("distri://:s3cret@h1:7379,h2:7479,[::1]:7579,h4/CODE")
    assert t.addresses == (("h1", 7379), ("h2", 7479), ("::1", 7579), ("h4", 7379))
    assert t.password == "s3cret" and t.room == "CODE"
    assert parse_targets("h1:1,h1:1,h2:2").addresses == (("h1", 1), ("h2", 2))  # no repeats
    # A list: the room and password may come with any element, once.
    t = parse_targets(["h1:1", "distri://:pw@h2:2/ROOM", "h3"])
    assert t.addresses == (("h1", 1), ("h2", 2), ("h3", 7379))
    assert (t.password, t.room) == ("pw", "ROOM")
    assert parse_url("distri://h1:1,h2:2/R") == ("h1", 1, None, "R")   # the first node
    for bad, why in (("distri://h1:x/R", "bad port"), ("distri://h1:99999", "bad port"),
                     ("distri://h1,,h2", "empty host"), ("http://h1", "scheme"),
                     ("distri://h1/a/b", "one path segment")):
        with pytest.raises(ValueError, match=why):
            parse_targets(bad)
    with pytest.raises(ValueError, match="different rooms"):
        parse_targets(["h1/A", "h2/B"])
    with pytest.raises(ValueError, match="different passwords"):
        parse_targets(["distri://:a@h1", "distri://:b@h2"])
    with pytest.raises(ValueError, match="at least one"):
        parse_targets([])
    with pytest.raises(ValueError, match="too many"):
        parse_targets([f"h:{p}" for p in range(1, MAX_ADDRESSES + 2)])


def nodes_reply(*addresses):
    return [{b"id": i + 1, b"address": b"x", b"client_address": a.encode()}
            for i, a in enumerate(addresses)]


def test_node_set_learns_members_and_moves_past_failed_nodes():
    nodes = NodeSet(parse_targets("h1:1"))
    assert nodes.clustered is None and nodes.order() == [("h1", 1)]
    nodes.learn(nodes_reply("h1:1", "h2:2", "", "h3:3"))   # "" : not known yet
    assert nodes.clustered is True
    assert nodes.order() == [("h1", 1), ("h2", 2), ("h3", 3)]
    nodes.failed(("h1", 1))
    assert nodes.order() == [("h2", 2), ("h3", 3), ("h1", 1)]
    nodes.failed(("h3", 3))                 # not the preferred one: nothing moves
    assert nodes.preferred == ("h2", 2)
    nodes.reached(("h3", 3))
    assert nodes.preferred == ("h3", 3)
    # The link asks whether another connection found its node gone since it connected.
    connected = time.monotonic()
    assert not nodes.failed_since(("h3", 3), connected)
    nodes.failed(("h3", 3))
    assert nodes.failed_since(("h3", 3), connected)
    assert not nodes.failed_since(("h3", 3), time.monotonic() + 1)   # connected after it
    # A member that left is forgotten; the seed never is.
    nodes.learn(nodes_reply("h2:2", "h3:3"))
    assert sorted(nodes.addresses) == [("h1", 1), ("h2", 2), ("h3", 3)]
    nodes.learn(nodes_reply("h3:3"))
    assert sorted(nodes.addresses) == [("h1", 1), ("h3", 3)]
    # RESP2 pairs and junk are read without breaking the client.
    assert client_addresses([[b"client_address", b"h9:9"], b"junk", {b"x": 1}]) == [("h9", 9)]
    assert client_addresses(RequestError("x")) == []


def test_a_plain_node_stays_a_plain_node():
    nodes = NodeSet(parse_targets("h1:1"))
    nodes.learn(RequestError("this node is not in a cluster"))
    assert nodes.clustered is False and nodes.order() == [("h1", 1)]
    # Opening a connection to it is one round, as before clusters.
    o = Opening(nodes, "ROOM", [("MIRROR",)], learn=True)
    assert o.next_round() == [("HELLO", "3"), ("ROOM.JOIN", "ROOM"), ("MIRROR",)]
    o.take([{}, b"OK", {b"mode": b"snapshot"}])
    assert o.replies == [b"OK", {b"mode": b"snapshot"}] and o.next_round() is None


def test_opening_rounds_in_a_cluster():
    nodes = NodeSet(parse_targets("distri://:pw@h1:1"))
    # First contact: HELLO and CLUSTER.NODES; learning it is a cluster adds the barrier.
    o = Opening(nodes, None, [], learn=True)
    assert o.next_round() == [("HELLO", "3", "AUTH", "default", "pw"), ("CLUSTER.NODES",)]
    o.take([{}, nodes_reply("h1:1", "h2:2")])
    assert o.next_round() == [BARRIER]
    o.take([0])
    assert o.next_round() == [("ROOM.NEW",)]
    o.take([b"NEWCODE"])
    assert o.replies == [b"NEWCODE"] and o.next_round() is None
    # Later connections know: the barrier goes with HELLO. TRYAGAIN is raised.
    o = Opening(nodes, "R", [("SVC.SERVE", "s")], learn=False)
    assert o.next_round() == [("HELLO", "3", "AUTH", "default", "pw"), BARRIER]
    with pytest.raises(TryAgain):
        o.take([{}, TryAgain("no leader", "TRYAGAIN")])
