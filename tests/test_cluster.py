"""The Raft cluster with real processes on loopback (issue 10): joining through any member,
writes and reads from every node, leader kill -9 and re-election, restart and catch-up by
snapshot, removing and replacing nodes, MIRROR resumed on another node, and the cluster port
refusing nodes without the secret. The fault suite with Porcupine is test_cluster_faults.py.
"""

import os
import socket
import time

import pytest

from cluster_util import make_cluster, Cluster, HostRaw, as_map, binary_supports_cluster, decode  # noqa: F401 (fixture)
from conftest import RawError, distri_bin, wait_until

pytestmark = [
    pytest.mark.distri,
    pytest.mark.skipif(not binary_supports_cluster(distri_bin()),
                       reason="the binary has no --cluster-port"),
]


def ok(reply):
    assert reply == b"OK", reply
    return reply


def write_until_ok(node, *args, timeout=20):
    """Sends a write until it succeeds; TRYAGAIN (not applied) and UNKNOWN are retried (the
    keys used with this are written with one value, so a repeat changes nothing)."""
    def attempt():
        try:
            reply = node.cmd(*args, timeout=5)
        except OSError:
            return None
        if isinstance(reply, RawError):
            assert reply.startswith(("TRYAGAIN", "UNKNOWN")), reply
            return None
        return reply
    return wait_until(attempt, timeout=timeout, interval=0.05, what=f"{args} on {node}")


def test_nodes_join_through_any_member_and_all_answer(make_cluster):
    c = make_cluster(3)   # node 3 joins through node 2, which is not the leader
    infos = c.infos()
    assert len(infos) == 3
    ids = {int(i["node_id"]) for i in infos.values()}
    assert len({i["cluster_id"] for i in infos.values()}) == 1
    leader = c.leader()
    for n, info in infos.items():
        assert {int(v) for v in info["voters"]} == ids
        assert info["learners"] == []
        assert int(info["leader_id"]) == int(infos[leader]["node_id"])
        nodes = decode(n.cmd("CLUSTER.NODES"))
        assert len(nodes) == 3
        by_id = {int(as_map(m)["id"]): as_map(m) for m in nodes}
        assert set(by_id) == ids
        node_of = {int(i["node_id"]): node for node, i in infos.items()}
        for node_id, m in by_id.items():
            assert m["address"].startswith("127.0.0.")
            assert m["role"] in ("leader", "follower")
            # Where a client reaches each node: what a failover client dials.
            assert m["client_address"] == f"{node_of[node_id].host}:{node_of[node_id].port}"
            assert m["http_address"] == (
                f"{node_of[node_id].host}:{node_of[node_id].http_port}")
        stats = as_map(n.cmd("STATS"))
        assert "keys" in stats or stats, stats
    # The founder's cluster id is everyone's, and node ids are distinct.
    assert len(ids) == 3


def test_five_nodes_survive_two_failures(make_cluster):
    c = make_cluster(5)
    leader = c.leader()
    for i in range(50):
        ok(write_until_ok(c.nodes[i % 5], "SET", f"f{i}", str(i)))
    # The leader and one follower die: three of five are still a majority.
    victims = [leader, next(n for n in c.nodes if n is not leader)]
    for v in victims:
        v.kill9()
    rest = [n for n in c.nodes if n not in victims]
    wait_until(lambda: c.leader_of(rest), timeout=15, what="a leader among the three")
    ok(write_until_ok(rest[0], "SET", "after", "two-failures"))
    for n in rest:
        assert n.cmd("GET", "f49") == b"49"
        assert n.cmd("GET", "after") == b"two-failures"
    for v in victims:
        v.join = None
        v.start()
    wait_until(c.all_voters, timeout=30, what="five voters again")
    for n in c.nodes:
        assert n.cmd("GET", "after") == b"two-failures"


def test_writes_and_reads_from_every_node(make_cluster):
    c = make_cluster(3)
    for i, n in enumerate(c.nodes):
        ok(write_until_ok(n, "SET", f"k{i}", f"from-{i}"))
    # Linearizable reads on every node see every acknowledged write at once.
    for n in c.nodes:
        for i in range(3):
            assert n.cmd("GET", f"k{i}") == f"from-{i}".encode()
    # INCR through all three nodes: each acknowledged increment counted exactly once.
    total = 0
    for _ in range(10):
        for n in c.nodes:
            r = write_until_ok(n, "INCR", "counter")
            total += 1
            assert r == total
    # Revisions are Raft indexes: the same on every node once applied.
    wait_until(lambda: len({int(i["applied_index"]) for i in c.infos().values()}) == 1,
               timeout=10, what="equal applied indexes")
    # A local read (CLIENT READMODE local) answers from the node's own state.
    with c.nodes[2].raw() as r:
        assert r.cmd("CLIENT", "READMODE") == b"linearizable"
        assert r.cmd("CLIENT", "READMODE", "local") == b"OK"
        assert r.cmd("GET", "k0") == b"from-0"
        assert isinstance(r.cmd("CLIENT", "READMODE", "sometimes"), RawError)


def test_leader_kill9_reelects_and_loses_nothing(make_cluster):
    c = make_cluster(3)
    leader = c.leader()
    follower = next(n for n in c.nodes if n is not leader)
    acked = {}
    for i in range(200):
        ok(write_until_ok(follower, "SET", f"key{i}", f"v{i}"))
        acked[f"key{i}"] = f"v{i}"
    old_term = int(leader.cluster_info()["term"])
    leader.kill9()
    t0 = time.monotonic()
    rest = [n for n in c.nodes if n is not leader]
    new_leader = wait_until(lambda: c.leader_of(rest), timeout=15, what="a new leader")
    elected_in = time.monotonic() - t0
    assert new_leader is not leader
    assert int(new_leader.cluster_info()["term"]) > old_term
    assert elected_in < 10, f"re-election took {elected_in:.1f}s"
    ok(write_until_ok(rest[0], "SET", "after", "failover"))
    for n in rest:
        for k, v in acked.items():
            assert n.cmd("GET", k) == v.encode(), (n, k)
    # The old leader comes back from its data directory (no --join needed) and catches up.
    leader.join = None
    leader.start()
    wait_until(lambda: leader.cluster_info() and
               leader.cluster_info()["role"] == "follower", timeout=20, what="rejoin")
    assert write_until_ok(leader, "GET", "after") == b"failover"
    assert leader.cmd("GET", "key199") == b"v199"


def test_follower_restart_catches_up_by_snapshot(make_cluster):
    # A small snapshot threshold makes the leader compact its log while the follower is
    # down, so the follower can only catch up from a snapshot.
    c = make_cluster(3, extra_args=["--snapshot-bytes", "65536"])
    leader = c.leader()
    follower = next(n for n in c.nodes if n is not leader)
    follower.stop()
    value = "x" * 500
    for i in range(600):   # ~300 KB of log: several compactions
        ok(write_until_ok(leader, "SET", f"s{i}", f"{value}{i}"))
    follower.join = None
    follower.start()
    wait_until(lambda: "installed a snapshot" in follower.log_text(), timeout=30,
               what="the follower to install a snapshot")
    with follower.raw() as r:
        r.cmd("CLIENT", "READMODE", "local")
        wait_until(lambda: r.cmd("GET", "s599") == f"{value}599".encode(), timeout=20,
                   what="catch-up")
        assert r.cmd("GET", "s0") == f"{value}0".encode()
        assert r.cmd("DBSIZE") == 600
    # It is a voter again and its applied index matches the leader's.
    wait_until(c.all_voters, timeout=20, what="all voters")


def test_remove_and_replace_a_node(make_cluster):
    c = make_cluster(3)
    ok(write_until_ok(c.nodes[0], "SET", "before", "1"))
    leader = c.leader()
    victim = next(n for n in c.nodes if n is not leader)
    victim_id = int(victim.cluster_info()["node_id"])
    other = next(n for n in c.nodes if n is not leader and n is not victim)
    # Removed through a follower (passed on to the leader) while the cluster serves writes.
    assert other.cmd("CLUSTER.REMOVE", str(victim_id)) == b"OK"
    wait_until(lambda: all(victim_id not in [int(v) for v in i["voters"]]
                           for n, i in c.infos([leader, other]).items()),
               timeout=15, what="the node to leave the voters")
    ok(write_until_ok(other, "SET", "during", "2"))
    victim.kill9()
    victim.wipe()
    # A wiped node comes back as a new node (a new id), never under its old one.
    victim.join = [leader.proxy_address]
    victim.start()
    wait_until(lambda: victim.cluster_info() and
               int(victim.cluster_info()["node_id"]) != victim_id and
               victim.cluster_info()["role"] == "follower", timeout=30, what="replacement")
    wait_until(c.all_voters, timeout=30, what="three voters again")
    with victim.raw() as r:
        assert r.cmd("GET", "before") == b"1"
        assert r.cmd("GET", "during") == b"2"
    ids = {int(v) for v in leader.cluster_info()["voters"]}
    assert victim_id not in ids and len(ids) == 3
    # Unknown ids and bad arguments are clear errors.
    assert isinstance(leader.cmd("CLUSTER.REMOVE", "12345"), RawError)
    assert isinstance(leader.cmd("CLUSTER.REMOVE", "abc"), RawError)


def test_mirror_resumes_on_another_node_without_gap_or_repeat(make_cluster):
    c = make_cluster(3)
    a, b = c.nodes[0], c.nodes[1]
    ok(write_until_ok(a, "SET", "m0", "0"))
    with a.raw(timeout=10) as m:
        assert isinstance(m.cmd("HELLO", "3"), dict)
        reply = m.cmd("MIRROR")
        assert isinstance(reply, dict), reply
        last = None
        while True:
            f = m.read_reply()
            if f[2] == b"ready":
                last = f[3]
                break
        for i in range(1, 6):
            ok(write_until_ok(b, "SET", f"m{i}", str(i)))
        seen = []
        while len(seen) < 5:
            f = m.read_reply()
            if f[2] == b"set":
                seen.append((f[3], f[4]))
        last = seen[-1][0]
    revisions = [r for r, _ in seen]
    assert revisions == sorted(revisions) and len(set(revisions)) == 5
    # Writes while no mirror is connected, then resume FROM the last revision on node B.
    for i in range(6, 9):
        ok(write_until_ok(c.nodes[2], "SET", f"m{i}", str(i)))
    with b.raw(timeout=10) as m:
        assert isinstance(m.cmd("HELLO", "3"), dict)
        reply = decode(m.cmd("MIRROR", "FROM", str(last)))
        assert reply["mode"] == "resume", reply
        got = []
        while len(got) < 3:
            f = m.read_reply()
            if f[2] == b"set":
                got.append((f[3], f[4]))
    assert [k for _, k in got] == [b"m6", b"m7", b"m8"]
    assert all(r > last for r, _ in got)
    assert [r for r, _ in got] == sorted(r for r, _ in got)


def test_cluster_port_refuses_nodes_without_the_secret(make_cluster, tmp_path):
    c = make_cluster(1)
    first = c.nodes[0]
    port = first.cluster_port
    # Garbage on the cluster port (e.g. redis-cli pointed at it) is closed unanswered.
    with socket.create_connection((first.host, port), timeout=5) as s:
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        s.settimeout(5)
        assert s.recv(100) == b""
    # A node with another secret keeps trying and never becomes a member.
    stranger = c.add_node()
    other_secret = tmp_path / "other.secret"
    fd = os.open(other_secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("y" * 64 + "\n")
    stranger.join = [first.proxy_address]
    c.secret_file, saved = other_secret, c.secret_file
    try:
        stranger.start()
    finally:
        c.secret_file = saved
    time.sleep(2)
    info = as_map(first.cmd("CLUSTER.INFO"))
    assert len(info["voters"]) == 1 and info["learners"] == []
    assert "handshake" in first.log_text()
    s_info = stranger.cluster_info()
    assert s_info is not None and int(s_info["cluster_id"]) == 0
    stranger.stop()
    # A secret on the command line is not accepted, and a world-readable file is refused.
    import subprocess
    out = subprocess.run([str(c.binary), "serve", "--cluster-secret", "abc"],
                         capture_output=True, timeout=30)
    assert out.returncode != 0
    loose = tmp_path / "loose.secret"
    loose.write_text("z" * 64)
    os.chmod(loose, 0o644)
    out = subprocess.run([str(c.binary), "serve", "--data", str(tmp_path / "loose"),
                          "--port", "0", "--http-port", "0", "--cluster-port", "0",
                          "--cluster-secret-file", str(loose)], capture_output=True, timeout=30)
    assert out.returncode != 0 and b"chmod 600" in out.stderr + out.stdout


def test_single_node_without_secret_has_no_cluster(server):
    with server.raw() as r:
        reply = r.cmd("CLUSTER.INFO")
        assert isinstance(reply, RawError) and "not in a cluster" in reply


def test_cluster_join_command_adds_a_fresh_node(make_cluster):
    c = make_cluster(1)
    first = c.nodes[0]
    ok(write_until_ok(first, "SET", "seed", "1"))
    # A new node started without --join is a cluster of one; CLUSTER.JOIN on it, naming any
    # member, makes it give that up and join (as --join would have).
    newcomer = c.add_node()
    newcomer.start()
    wait_until(lambda: (newcomer.cluster_info() or {}).get("role") == "leader", timeout=15,
               what="the newcomer to lead its own cluster of one")
    own_cluster = newcomer.cluster_info()["cluster_id"]
    # A member (one with data or other members) refuses to give up its cluster.
    refused = first.cmd("CLUSTER.JOIN", newcomer.proxy_address)
    assert isinstance(refused, RawError) and "holds data" in refused
    assert isinstance(newcomer.cmd("CLUSTER.JOIN", "not-an-address"), RawError)
    assert newcomer.cmd("CLUSTER.JOIN", first.proxy_address) == b"OK"
    wait_until(c.all_voters, timeout=30, what="two voters")
    info = newcomer.cluster_info()
    assert info["cluster_id"] == first.cluster_info()["cluster_id"] != own_cluster
    assert newcomer.cmd("GET", "seed") == b"1"
    # It rejoins from its data directory after a restart (no flags needed).
    newcomer.restart()
    wait_until(c.all_voters, timeout=30, what="two voters after a restart")


def test_the_issue_commands_form_a_cluster(tmp_path):
    """The three commands of the issue, as given (only the ports differ: free ones)."""
    import subprocess
    from cluster_util import free_port_on
    secret = tmp_path / "secret"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("s" * 48 + "\n")
    # --port P implies the HTTP port P+1 and the cluster port P+2 unless given; pick bases
    # whose three ports are free.
    def base():
        while True:
            p = free_port_on("127.0.0.1")
            if p + 2 < 65536 and all(_free(p + i) for i in (1, 2)):
                return p
    procs = []
    try:
        ports = []
        for i in range(3):
            p = base()
            argv = [str(distri_bin()), "serve", "--data", str(tmp_path / f"d{i + 1}"),
                    "--port", str(p), "--cluster-port", str(p + 2),
                    "--cluster-secret-file", str(secret)]
            if i:
                argv += ["--join", f"127.0.0.1:{ports[-1] + 2}"]   # through ANY member
            log = open(tmp_path / f"n{i + 1}.log", "wb")
            procs.append(subprocess.Popen(argv, stdout=log, stderr=log))
            ports.append(p)
            wait_until(lambda: _accepts(p), timeout=20, what=f"node {i + 1}")

        def voters(p):
            with HostRaw("127.0.0.1", p, 5) as r:
                return len(as_map(r.cmd("CLUSTER.INFO"))["voters"])
        wait_until(lambda: all(voters(p) == 3 for p in ports), timeout=30, what="3 voters")
        with HostRaw("127.0.0.1", ports[2], 5) as r:
            assert write_until_ok_raw(r, "SET", "hello", "cluster") == b"OK"
        with HostRaw("127.0.0.1", ports[0], 5) as r:
            assert r.cmd("GET", "hello") == b"cluster"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=20)


def _free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def write_until_ok_raw(r, *args):
    def attempt():
        reply = r.cmd(*args)
        if isinstance(reply, RawError):
            assert reply.startswith(("TRYAGAIN", "UNKNOWN")), reply
            return None
        return reply
    return wait_until(attempt, timeout=20, interval=0.05, what=str(args))
