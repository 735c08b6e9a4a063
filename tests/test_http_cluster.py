"""GET /api/cluster and GET /api/services on a real three-node cluster (docs/http.md): every
node's view agrees with CLUSTER.NODES, a member whose links are cut or that is killed shows as
unhealthy at once, and a worker is listed with the id of the node it is connected to. The
browser side of the same (the Cluster page) is in tests/browser/dashboard.test.mjs.
"""

import http.client
import json

import pytest

from cluster_util import (make_cluster, as_map,  # noqa: F401 (make_cluster: a fixture)
                          binary_supports_cluster, decode)
from conftest import distri_bin, encode_command, wait_until

pytestmark = [
    pytest.mark.distri,
    pytest.mark.skipif(not binary_supports_cluster(distri_bin()),
                       reason="the binary has no --cluster-port"),
]


def get_json(node, path):
    conn = http.client.HTTPConnection(node.host, node.http_port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, (resp.status, body)
        return json.loads(body)
    finally:
        conn.close()


def health(node, node_id):
    """Whether `node` sees member `node_id` as healthy, by GET /api/cluster."""
    view = get_json(node, "/api/cluster")
    return next(m["healthy"] for m in view["nodes"] if m["id"] == node_id)


def test_cluster_view_agrees_with_cluster_nodes(make_cluster):
    c = make_cluster(3)
    leader = c.leader()
    infos = c.infos()
    ids = sorted(int(i["node_id"]) for i in infos.values())
    leader_id = int(infos[leader]["node_id"])
    for n, info in infos.items():
        view = get_json(n, "/api/cluster")
        assert view["cluster"] is True
        assert view["node_id"] == int(info["node_id"])
        assert view["cluster_id"] == int(info["cluster_id"])
        assert view["leader_id"] == leader_id
        assert view["role"] == info["role"]
        assert view["term"] >= int(info["term"])
        assert sorted(m["id"] for m in view["nodes"]) == ids
        assert [m["id"] for m in view["nodes"] if m["self"]] == [view["node_id"]]
        assert all(m["healthy"] for m in view["nodes"])
        by_id = {int(as_map(m)["id"]): as_map(m) for m in decode(n.cmd("CLUSTER.NODES"))}
        for m in view["nodes"]:
            want = by_id[m["id"]]
            for field in ("address", "client_address", "http_address", "role"):
                assert m[field] == want[field], (n, m, want)
            assert m["role"] == ("leader" if m["id"] == leader_id else "follower")
        me = next(m for m in view["nodes"] if m["self"])
        assert me["client_address"] == f"{n.host}:{n.port}"
        assert me["http_address"] == f"{n.host}:{n.http_port}"
        assert me["last_contact_ms"] == 0
    # The leader knows every member's match index; a follower only its own.
    for m in get_json(leader, "/api/cluster")["nodes"]:
        assert m["match_index"] >= 1 and m["lag"] >= 0


def test_cut_and_killed_members_show_as_unhealthy(make_cluster):
    c = make_cluster(3)
    leader = c.leader()
    a, b = [n for n in c.nodes if n is not leader]
    infos = c.infos()
    a_id = int(infos[a]["node_id"])
    # Every link to a is cut: the others see it unhealthy, and it sees them so.
    c.net.isolate(a)
    c.wait_for(lambda: not health(leader, a_id) and not health(b, a_id), 5, "a seen as down")
    view = get_json(a, "/api/cluster")
    assert [m["healthy"] for m in view["nodes"] if not m["self"]] == [False, False]
    c.net.heal()
    c.wait_for(lambda: health(leader, a_id) and health(b, a_id), 15, "a seen as up again")
    # SIGKILL: the same from the survivors.
    a.kill9()
    c.wait_for(lambda: not health(leader, a_id) and not health(b, a_id), 5,
               "a killed, seen as down")


def test_services_name_the_node_of_each_worker(make_cluster):
    c = make_cluster(3)
    c.leader()
    node = c.nodes[1]
    node_id = int(c.infos()[node]["node_id"])
    worker = node.raw()
    try:
        assert isinstance(worker.cmd("HELLO", "3"), dict)
        assert worker.cmd("CLIENT", "SETNAME", "w-on-2") == b"OK"
        assert worker.cmd("SVC.SERVE", "echo", "CONCURRENCY", "4") == b"OK"
        caller = node.raw()
        caller.send(encode_command("CALL", "echo", "hi", "TIMEOUT", "20000"))
        frame = worker.read_reply()
        assert frame[0] == b"svc.request"
        [svc] = get_json(node, "/api/services")["services"]
        assert (svc["room"], svc["name"], svc["in_flight"]) == ("default", "echo", 1)
        [w] = svc["workers"]
        assert (w["node_id"], w["label"], w["concurrency"], w["in_flight"]) == \
            (node_id, f"{node_id}:w-on-2", 4, 1)      # in a cluster a label names its node
        # Any other node lists it too, with the call it holds (as its node announced).
        def seen_elsewhere():
            svcs = get_json(c.nodes[0], "/api/services")["services"]
            return svcs if svcs and [w["in_flight"] for w in svcs[0]["workers"]] == [1] else None
        [elsewhere] = wait_until(seen_elsewhere, timeout=10, what="the worker seen on node 1")
        assert [(x["node_id"], x["label"]) for x in elsewhere["workers"]] == \
            [(node_id, f"{node_id}:w-on-2")]
        assert worker.cmd("SVC.REPLY", frame[1], "hi back") == 1
        assert caller.read_reply() == b"hi back"
        caller.close()
    finally:
        worker.close()
