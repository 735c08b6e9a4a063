"""Statistics from any node (issue 11): STATS, ROOM.STATS, CLUSTER.STATS and /api/stats on a
real 3-node cluster gather every member's own figures over the cluster links, on demand.

Clients are held open on each node; STATS from any node must equal the sum of the nodes' own
figures, count a client connected elsewhere just before it was asked, and still answer within
about a second when a member is stopped (SIGSTOP), listing it as unreachable. The bookkeeping
(ids, timeouts, bounds, hostile frames) is unit-tested in src/server/stats_gather_test.cc.
"""

import http.client
import json
import time

import pytest

from cluster_util import make_cluster, HostRaw, as_map, binary_supports_cluster, decode  # noqa: F401
from conftest import RawError, distri_bin, wait_until

pytestmark = [
    pytest.mark.distri,
    pytest.mark.skipif(not binary_supports_cluster(distri_bin()),
                       reason="the binary has no --cluster-port"),
]

# The fields every node entry starts with, in this order (the dashboard reads them).
NODE_HEAD = ["id", "client_address", "reachable", "role", "term", "commit_index",
             "applied_index", "leader_id", "clients"]
# Summed over the nodes (docs/protocol.md, "STATS").
SUMMED = ["clients", "mirrors", "memory_bytes", "ops_per_sec_1s", "ops_per_sec_1m",
          "commands_total", "reads_total", "writes_total", "connections_total",
          "slow_consumer_disconnects", "service_records", "push_budget_disconnects",
          "output_bytes"]
# Replicated state: this node's value, the same on every node once applied.
REPLICATED = ["rooms", "keys"]


def resp3(node):
    """A held RESP3 connection to `node`, proven registered by a reply."""
    c = HostRaw(node.host, node.port, timeout=10)
    hello = c.cmd("HELLO", "3")
    assert isinstance(hello, dict), hello
    return c


def stats(conn, *args):
    reply = decode(conn.cmd(*args))
    assert not isinstance(reply, RawError), reply
    return reply


def http_get(node, path):
    conn = http.client.HTTPConnection(node.host, node.http_port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read().decode())
    finally:
        conn.close()


def node_ids(c):
    return {n: int(i["node_id"]) for n, i in c.infos().items()}


def check_sums(site):
    """Within one reply: every summed field is the sum of the reachable nodes' own."""
    up = [n for n in site["nodes"] if n["reachable"]]
    for name in SUMMED:
        total = sum(n[name] for n in up)
        assert site[name] == pytest.approx(total), (name, site[name], [n[name] for n in up])


@pytest.fixture
def cluster3(make_cluster):
    c = make_cluster(3)
    c.leader()
    return c


def wait_all_reachable(conn, count=3):
    """CLUSTER.STATS until every member answers with its addresses known (HELLO frames)."""
    def ready():
        nodes = stats(conn, "CLUSTER.STATS")
        return len(nodes) == count and all(n["reachable"] and n["client_address"]
                                           for n in nodes) and nodes
    return wait_until(ready, timeout=15, interval=0.05, what="every member reachable")


def test_stats_from_any_node_is_the_sum_of_the_nodes(cluster3):
    c = cluster3
    ids = node_ids(c)
    # 1, 2 and 3 held clients on nodes 1, 2 and 3 (the first one on each also asks).
    held = {n: [resp3(n) for _ in range(i + 1)] for i, n in enumerate(c.nodes)}
    want = {ids[n]: len(conns) for n, conns in held.items()}
    askers = [held[n][0] for n in c.nodes]
    wait_all_reachable(askers[0])
    # Connections of the harness (CLUSTER.INFO probes) close on their own: wait for the
    # servers to have reaped them, so that only the held ones remain.
    wait_until(lambda: {n["id"]: n["clients"] for n in stats(askers[0], "STATS")["nodes"]} ==
               want, timeout=10, interval=0.05, what=f"clients per node {want}")

    for conn in askers:  # any node answers for the whole cluster
        site = stats(conn, "STATS")
        assert site["clients"] == 6
        assert [n["id"] for n in site["nodes"]] == sorted(ids.values())
        assert {n["id"]: n["clients"] for n in site["nodes"]} == want
        for n in site["nodes"]:
            assert list(n)[:len(NODE_HEAD)] == NODE_HEAD, list(n)
            assert n["reachable"] is True
        check_sums(site)

    # On demand, not cached: a client that connects on node 3 just before STATS is sent to
    # node 1 is counted.
    late = resp3(c.nodes[2])
    site = stats(askers[0], "STATS")
    assert site["clients"] == 7
    assert {n["id"]: n["clients"] for n in site["nodes"]}[ids[c.nodes[2]]] == 4
    late.close()

    # Replicated state is one node's value, not a sum.
    for i in range(5):
        assert askers[i % 3].cmd("SET", f"k{i}", "v") == b"OK"
    wait_until(lambda: len({n["applied_index"] for n in
                            stats(askers[0], "CLUSTER.STATS")}) == 1,
               timeout=10, interval=0.05, what="equal applied indexes")
    site = stats(askers[1], "STATS")
    for name in REPLICATED:
        assert all(n[name] == site[name] for n in site["nodes"]), name
    assert site["keys"] >= 5
    check_sums(site)
    for conns in held.values():
        for conn in conns:
            conn.close()


def test_cluster_stats_lists_every_member(cluster3):
    c = cluster3
    infos = c.infos()
    leader = c.leader()
    leader_id = int(infos[leader]["node_id"])
    by_id = {int(i["node_id"]): n for n, i in infos.items()}
    for n in c.nodes:
        with resp3(n) as conn:
            nodes = wait_all_reachable(conn)
            assert sorted(e["id"] for e in nodes) == sorted(by_id)
            for e in nodes:
                node = by_id[e["id"]]
                assert list(e)[:len(NODE_HEAD)] == NODE_HEAD
                assert e["client_address"] == f"{node.host}:{node.port}"
                assert e["role"] == ("leader" if e["id"] == leader_id else "follower")
                assert e["leader_id"] == leader_id
                assert e["term"] >= 1 and e["commit_index"] >= 1
                assert e["clients"] >= (1 if node is n else 0)
                assert isinstance(e["node_id"], str) and isinstance(e["uptime_s"], int)
    # RESP2: the same, as flat arrays.
    with HostRaw(c.nodes[1].host, c.nodes[1].port, timeout=10) as conn:
        nodes = decode(conn.cmd("CLUSTER.STATS"))
        assert len(nodes) == 3
        assert {int(as_map(e)["id"]) for e in nodes} == set(by_id)
        assert isinstance(conn.cmd("CLUSTER.STATS", "extra"), RawError)


def test_room_stats_counts_the_rooms_clients_on_every_node(cluster3):
    c = cluster3
    ids = node_ids(c)
    maker = resp3(c.nodes[0])
    code = maker.cmd("ROOM.NEW", "stats-room")
    assert isinstance(code, bytes), code
    code = code.decode()
    members = []
    for n, count in zip(c.nodes, (1, 2, 3)):  # node 1 has the maker already
        for _ in range(count - (1 if n is c.nodes[0] else 0)):
            conn = resp3(n)
            wait_until(lambda: conn.cmd("ROOM.JOIN", code) == b"OK", timeout=10,
                       interval=0.05, what="the room applied on the joining node")
            members.append(conn)
        if n is not c.nodes[0]:
            members[-1].cmd("SUBSCRIBE", "news")  # a per-node figure other than clients
    wait_all_reachable(maker)
    for asker in (maker, members[0], members[-1]):
        room = stats(asker, "ROOM.STATS", code)
        assert room["code"] == code and room["name"] == "stats-room"
        assert room["clients"] == 6
        assert room["subscriptions"] == 2
        per_node = {n["id"]: n for n in room["nodes"]}
        assert {i: per_node[i]["clients"] for i in per_node} == {
            ids[c.nodes[0]]: 1, ids[c.nodes[1]]: 2, ids[c.nodes[2]]: 3}
        for n in room["nodes"]:
            assert list(n)[:3] == ["id", "client_address", "reachable"]
            assert n["reachable"] is True
    # A room nobody is in: zeros, every node listed.
    other = stats(maker, "ROOM.STATS", "default")
    assert len(other["nodes"]) == 3
    for conn in members + [maker]:
        conn.close()


def test_a_stopped_node_is_reported_unreachable_within_the_timeout(cluster3):
    c = cluster3
    ids = node_ids(c)
    leader = c.leader()
    asker_node = next(n for n in c.nodes if n is not leader)
    victim = next(n for n in c.nodes if n is not leader and n is not asker_node)
    asker = resp3(asker_node)
    held = resp3(victim)
    wait_all_reachable(asker)
    victim.pause()
    try:
        for command in ("STATS", "CLUSTER.STATS"):
            started = time.monotonic()
            reply = stats(asker, command)
            elapsed = time.monotonic() - started
            assert 0.8 <= elapsed <= 2.5, (command, elapsed)
            nodes = reply["nodes"] if command == "STATS" else reply
            assert len(nodes) == 3
            entry = next(n for n in nodes if n["id"] == ids[victim])
            assert entry["reachable"] is False
            assert entry["client_address"] == f"{victim.host}:{victim.port}"
            assert entry["role"] == "follower"
            assert entry["clients"] is None and entry["term"] is None
            assert all(n["reachable"] for n in nodes if n["id"] != ids[victim])
            if command == "STATS":
                check_sums(reply)  # the stopped node's clients are not counted
        started = time.monotonic()
        room = stats(asker, "ROOM.STATS")
        assert time.monotonic() - started <= 2.5
        entry = next(n for n in room["nodes"] if n["id"] == ids[victim])
        assert entry["reachable"] is False and entry["clients"] is None
        assert room["clients"] == sum(n["clients"] for n in room["nodes"] if n["reachable"])
        assert room["clients"] >= 1  # the asker itself, in the default room
        # Other clients of the asking node are served while a STATS waits.
        other = resp3(asker_node)
        asker.send(b"*1\r\n$5\r\nSTATS\r\n")
        started = time.monotonic()
        assert other.cmd("PING") == b"PONG"
        assert time.monotonic() - started < 0.5
        assert isinstance(asker.read_reply(), dict)
        other.close()
    finally:
        victim.resume()
    wait_all_reachable(asker)
    held.close()
    asker.close()


def test_a_killed_node_is_reported_at_once(cluster3):
    c = cluster3
    leader = c.leader()
    victim = next(n for n in c.nodes if n is not leader)
    asker = resp3(leader)
    wait_all_reachable(asker)
    victim.kill9()
    # Its links go down: the gather stops waiting for it (no need for the timeout).
    wait_until(lambda: sum(not n["reachable"] for n in stats(asker, "CLUSTER.STATS")) == 1,
               timeout=10, interval=0.05, what="the killed node unreachable")
    started = time.monotonic()
    site = stats(asker, "STATS")
    assert time.monotonic() - started < 0.8
    assert sum(n["reachable"] for n in site["nodes"]) == 2
    asker.close()
    victim.start()
    wait_until(c.all_voters, timeout=30, interval=0.1, what="three voters again")


def test_api_stats_from_a_follower_shows_the_cluster(cluster3):
    c = cluster3
    ids = node_ids(c)
    leader = c.leader()
    follower = next(n for n in c.nodes if n is not leader)
    held = [resp3(n) for n in c.nodes]
    wait_all_reachable(held[0])
    status, site = http_get(follower, "/api/stats")
    assert status == 200, site
    assert sorted(n["id"] for n in site["nodes"]) == sorted(ids.values())
    for n in site["nodes"]:
        assert list(n)[:len(NODE_HEAD)] == NODE_HEAD
        assert n["reachable"] is True
    assert [n["role"] for n in site["nodes"]].count("leader") == 1
    assert site["clients"] >= 3
    check_sums(site)

    code = held[0].cmd("ROOM.NEW").decode()
    wait_until(lambda: held[2].cmd("ROOM.JOIN", code) == b"OK", timeout=10, interval=0.05,
               what="the room on node 3")
    wait_until(lambda: http_get(follower, f"/api/rooms/{code}")[0] == 200, timeout=10,
               interval=0.05, what="the room on the follower")
    status, room = http_get(follower, f"/api/rooms/{code}")
    assert room["clients"] == 2
    assert {n["id"]: n["clients"] for n in room["nodes"]} == {
        ids[c.nodes[0]]: 1, ids[c.nodes[1]]: 0, ids[c.nodes[2]]: 1}
    for conn in held:
        conn.close()


def test_single_node_stats_has_one_node_entry(make_cluster):
    c = make_cluster(1, clustered=False)
    node = c.nodes[0]
    with resp3(node) as conn:
        site = stats(conn, "STATS")
        assert len(site["nodes"]) == 1
        entry = site["nodes"][0]
        assert list(entry)[:len(NODE_HEAD)] == NODE_HEAD
        assert entry["role"] == "standalone" and entry["reachable"] is True
        assert entry["clients"] == site["clients"] >= 1
        assert entry["client_address"] == f"{node.host}:{node.port}"
        room = stats(conn, "ROOM.STATS")
        assert room["clients"] >= 1 and len(room["nodes"]) == 1
        err = conn.cmd("CLUSTER.STATS")
        assert isinstance(err, RawError) and "not in a cluster" in err
    status, body = http_get(node, "/api/stats")
    assert status == 200 and len(body["nodes"]) == 1


def info_cluster(conn):
    text = conn.cmd("INFO", "cluster").decode()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def test_requests_in_flight_are_bounded(cluster3):
    """256 gathers at once per node; more get TRYAGAIN (503 over HTTP), never a queue."""
    bound, extra = 256, 4
    c = cluster3
    leader = c.leader()
    asker_node = next(n for n in c.nodes if n is not leader)
    victim = next(n for n in c.nodes if n is not leader and n is not asker_node)
    conns = [resp3(asker_node) for _ in range(bound + extra)]
    probe = resp3(asker_node)
    wait_all_reachable(probe)
    victim.pause()  # every gather now waits for its 1 s timeout
    try:
        for conn in conns:
            conn.send(b"*1\r\n$5\r\nSTATS\r\n")
        wait_until(lambda: info_cluster(probe)["stats_gathers_in_flight"] == str(bound),
                   timeout=0.8, interval=0.01, what=f"{bound} gathers in flight")
        status, body = http_get(asker_node, "/api/stats")
        assert status == 503 and body["error"]["code"] == "TRYAGAIN", body
        replies = [decode(conn.read_reply()) for conn in conns]
    finally:
        victim.resume()
    refused = [r for r in replies if isinstance(r, RawError)]
    assert len(refused) == extra, refused
    assert all(r.startswith("TRYAGAIN") for r in refused)
    answered = [r for r in replies if isinstance(r, dict)]
    assert len(answered) == bound
    assert all(sum(not n["reachable"] for n in r["nodes"]) == 1 for r in answered)
    info = info_cluster(probe)
    assert info["stats_gathers_in_flight"] == "0"
    assert int(info["stats_gathers_refused"]) == extra + 1
    # The stopped member answers the stale requests once resumed: they are dropped.
    wait_until(lambda: int(info_cluster(probe)["stats_replies_dropped"]) >= bound,
               timeout=10, interval=0.05, what="late replies dropped")
    wait_all_reachable(probe)
    for conn in conns + [probe]:
        conn.close()
