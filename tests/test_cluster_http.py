"""A cluster node's observability with real processes on loopback (issue 10): /readyz needs a
known leader, /metrics has the raft and transport series and they move with the cluster, and
INFO cluster agrees with CLUSTER.INFO. The cluster itself is tested in test_cluster.py.
"""

import http.client
import json
import re

import pytest

from cluster_util import make_cluster, Cluster, as_map, binary_supports_cluster  # noqa: F401 (fixture)
from conftest import RawError, distri_bin, wait_until

pytestmark = [
    pytest.mark.distri,
    pytest.mark.skipif(not binary_supports_cluster(distri_bin()),
                       reason="the binary has no --cluster-port"),
]


def get(node, path):
    conn = http.client.HTTPConnection(node.host, node.http_port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def readyz(node):
    status, body = get(node, "/readyz")
    return status, json.loads(body)


_SAMPLE = re.compile(r'^([a-z_]+)(\{[^}]*\})? (\S+)$')


def metrics(node):
    """/metrics as {name or name{labels}: value}."""
    status, body = get(node, "/metrics")
    assert status == 200, body
    out = {}
    for line in body.splitlines():
        if line.startswith("#") or not line:
            continue
        m = _SAMPLE.match(line)
        assert m, line
        out[m[1] + (m[2] or "")] = float(m[3])
    return out


def info_cluster(node):
    text = node.cmd("INFO", "cluster")
    assert not isinstance(text, RawError), text
    lines = text.decode().split("\r\n")
    assert lines[0] == "# Cluster", lines
    return dict(line.split(":", 1) for line in lines[1:] if line)


def write(node, key, value):
    """A write that must succeed at once (a leader is known and every node is up)."""
    reply = node.cmd("SET", key, value, timeout=10)
    assert reply == b"OK", reply


def test_metrics_info_and_readyz_follow_the_cluster(make_cluster):
    c = make_cluster(3)
    leader = c.leader()
    infos = c.infos()
    leader_id = int(infos[leader]["node_id"])
    follower = next(n for n in c.nodes if n is not leader)
    # Every member is up and knows the leader: ready everywhere.
    for n in c.nodes:
        assert readyz(n) == (200, {"status": "ready"}), n
    before = {n: metrics(n) for n in c.nodes}
    for n, m in before.items():
        assert m["distri_raft_node_id"] == int(infos[n]["node_id"])
        assert m["distri_raft_leader_id"] == leader_id, n
        assert m["distri_raft_is_leader"] == (1 if n is leader else 0), n
        role = "leader" if n is leader else "follower"
        assert m[f'distri_raft_role{{role="{role}"}}'] == 1, n
        assert sum(v for k, v in m.items() if k.startswith("distri_raft_role{")) == 1, n
        assert m["distri_raft_voters"] == 3 and m["distri_raft_learners"] == 0, n
        assert m["distri_raft_term"] >= 1, n
        assert m["distri_cluster_peers_connected"] == 2, n
        assert m["distri_cluster_links_up"] >= 2, n   # a connection each way is allowed
        assert m["distri_cluster_handshake_failures_total"] == 0, n
    assert before[leader]["distri_raft_leader_elections_total"] >= 1
    for n in c.nodes:
        # INFO cluster says what CLUSTER.INFO says.
        text, info = info_cluster(n), infos[n]
        assert text["distri_cluster_enabled"] == "1"
        for field in ("cluster_id", "node_id", "role", "leader_id"):
            assert text[field] == str(info[field]), (n, field)
        assert text["voters"] == "3" and text["learners"] == "0"
        assert sorted(int(v) for v in text["voter_ids"].split(",")) == \
            sorted(int(v) for v in info["voters"])
        assert "cluster_enabled" not in text   # Redis's field would mean "Redis Cluster"

    writes = 25
    for i in range(writes):
        write(follower, f"obs:{i}", "v")   # forwarded to the leader
    # Every node applies the writes; its commit and applied indexes move by at least as much.
    for n in c.nodes:
        def caught_up(n=n):
            m = metrics(n)
            return m if m["distri_raft_applied_index"] >= \
                before[n]["distri_raft_commit_index"] + writes else None
        m = wait_until(caught_up, timeout=10, what=f"{n} to apply the writes")
        assert m["distri_raft_commit_index"] >= m["distri_raft_applied_index"]
        assert m["distri_cluster_frames_received_total"] > \
            before[n]["distri_cluster_frames_received_total"]
        assert m["distri_cluster_received_bytes_total"] > \
            before[n]["distri_cluster_received_bytes_total"]
        assert m["distri_cluster_frames_sent_total"] > before[n]["distri_cluster_frames_sent_total"]
        # Every node fsyncs its WAL before it acknowledges an append.
        assert m["distri_log_fsync_duration_seconds_count"] > \
            before[n]["distri_log_fsync_duration_seconds_count"], n
        text = info_cluster(n)
        assert int(text["applied_index"]) >= m["distri_raft_applied_index"]
        assert int(text["commit_index"]) >= int(text["applied_index"])
    after = metrics(leader)
    assert after["distri_raft_proposals_total"] >= \
        before[leader]["distri_raft_proposals_total"] + writes
    assert metrics(follower)["distri_raft_proposals_total"] == \
        before[follower]["distri_raft_proposals_total"]   # a follower proposes nothing


def test_readyz_needs_a_known_leader(make_cluster):
    c = make_cluster(3)
    leader = c.leader()
    survivor = next(n for n in c.nodes if n is not leader)
    others = [n for n in c.nodes if n is not survivor]
    assert readyz(survivor)[0] == 200
    for n in others:
        n.kill9()
    # The survivor's election timeout (1-2 s) passes; it pre-votes, finds no majority and
    # forgets the old leader: not ready, and says why.
    status, body = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(readyz(survivor)),
                              timeout=15, what="/readyz 503 on the survivor")
    assert body["status"] == "not ready"
    assert "no leader known" in body["reason"], body
    # Still alive (/healthz), still answering local reads; INFO and /metrics say the same.
    assert get(survivor, "/healthz")[0] == 200
    assert metrics(survivor)["distri_raft_leader_id"] == 0
    assert metrics(survivor)["distri_raft_is_leader"] == 0
    assert info_cluster(survivor)["leader_id"] == "0"
    # A write gets TRYAGAIN (not applied) or UNKNOWN, never OK.
    reply = survivor.cmd("SET", "obs:lost", "v", timeout=15)
    assert isinstance(reply, RawError) and reply.startswith(("TRYAGAIN", "UNKNOWN")), reply
    # One peer back: a majority again, a leader is elected, ready again.
    others[0].start()
    wait_until(lambda: readyz(survivor)[0] == 200, timeout=30, what="/readyz 200 again")
    assert metrics(survivor)["distri_raft_leader_id"] != 0


def test_single_node_has_no_cluster_series(make_cluster):
    c = make_cluster(1, clustered=False)
    node = c.nodes[0]
    assert readyz(node) == (200, {"status": "ready"})
    m = metrics(node)
    assert not [k for k in m if k.startswith(("distri_raft_", "distri_cluster_"))]
    assert info_cluster(node) == {"distri_cluster_enabled": "0"}
    # A bare INFO has the section too (as in Redis, it is a default section).
    assert "# Cluster\r\n" in node.cmd("INFO").decode()
    assert as_map(node.cmd("STATS"))   # STATS is unchanged by the cluster
