"""The fault suite: clients, a mirror and a nemesis against real nodes; the history is checked
with Porcupine (tests/linearizability) and for lost writes, stale reads and mirror gaps.

With a cluster-capable $DISTRI_BIN (it lists --cluster-port) this runs 3 nodes behind link
proxies; with a single-node build it runs one node with kill -9 and SIGSTOP faults (a single
node must not lose an acknowledged write either). The choice is the `cluster` fixture.

  DISTRI_FAULT_SECONDS=600 pytest tests/test_cluster_faults.py -s     # the long run
  DISTRI_FAULT_SEED=1234 ...                                           # replay a schedule
  DISTRI_FAULT_NODES=5, DISTRI_FAULT_CLIENTS=10, DISTRI_FAULT_FAILPOINTS="raft.persist=sleep(50)"

Defaults: 60 s of faults (the whole file takes about 2 minutes). The history, the checker's
output (and its HTML for a failing key), the nemesis log and every node's log stay in the
test's directory under /tmp/distri-tests-* when a test fails. See docs/replication.md,
"Fault testing".
"""

import json
import os
import random
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from cluster_util import Cluster, HostRaw, Network, binary_supports_cluster, node_host
from conftest import REPO, _STATE, distri_bin
from faults.run import FaultRun, run_checker
from faults.workload import Client, History, count_lost_writes, count_stale_reads, final_reads

pytestmark = pytest.mark.distri

FAULT_SECONDS = float(os.environ.get("DISTRI_FAULT_SECONDS", "60"))
SEED = int(os.environ.get("DISTRI_FAULT_SEED", str(random.SystemRandom().randrange(1 << 30))))
CLIENTS = int(os.environ.get("DISTRI_FAULT_CLIENTS", "6"))
NODES = int(os.environ.get("DISTRI_FAULT_NODES", "3"))       # when the binary can cluster
# Failpoints for the nodes (src/base/failpoint.h; effective in builds with DISTRI_FAILPOINTS,
# ignored by others). By default a cluster loses 1% of its Raft messages on top of the
# nemesis; DISTRI_FAULT_FAILPOINTS="" turns that off, any other value replaces it.
FAILPOINTS = os.environ.get("DISTRI_FAULT_FAILPOINTS", "raft.send=drop(0.01)")
CHECKER_SRC = REPO / "tests" / "linearizability"


@pytest.fixture(scope="session")
def checker(_base_tmp):
    """The Go checker: $DISTRI_LINCHECK, the one scripts/test.sh built, or built here."""
    for path in (os.environ.get("DISTRI_LINCHECK"), REPO / "build" / "test" / "linearizability"):
        if path and Path(path).is_file() and os.access(path, os.X_OK):
            return Path(path)
    go = shutil.which("go")
    if go is None:
        pytest.fail("no Go toolchain to build tests/linearizability: "
                    "run scripts/install-deps.sh --test or set DISTRI_LINCHECK")
    out = _base_tmp / "linearizability"
    subprocess.run([go, "build", "-o", str(out), "."], cwd=CHECKER_SRC, check=True, timeout=600)
    return out


@pytest.fixture
def cluster(request, _base_tmp):
    """3 nodes when the binary can form a cluster, else 1; torn down whatever happens."""
    workdir = _base_tmp / f"{request.node.name}-{os.getpid()}"
    clustered = binary_supports_cluster(distri_bin())
    env = {"DISTRI_FAILPOINTS": FAILPOINTS} if clustered and FAILPOINTS else {}
    c = Cluster(workdir, size=NODES if clustered else 1, env=env)
    try:
        c.start()
        yield c
    finally:
        problems = c.teardown()
        if problems:
            _STATE["failed"] = True
            pytest.fail("\n".join(problems), pytrace=False)


@pytest.mark.timeout(FAULT_SECONDS + 600)
def test_faults_keep_history_linearizable(cluster, checker, capsys):
    run = FaultRun(cluster, checker, SEED, clients=CLIENTS)
    run.start()
    run.faults_stop.wait(FAULT_SECONDS)
    run.stop_nemesis()                  # healed: every node up and connected, a leader known
    run.wait_ops(20 * CLIENTS)          # some traffic on the healed cluster
    run.stop_clients()
    summary, problems, report = run.check()
    with capsys.disabled():
        print("\n" + summary)
    # The run must have exercised something, or the verdicts mean little.
    if report["ok"] < 200 * max(1, FAULT_SECONDS / 60) or sum(report["faults"].values()) < 3:
        problems.append(f"too little happened: {report['ok']} ok operations, "
                        f"faults {report['faults']}")
    if report["mirror_changes"] == 0 or report["mirror_sessions"] < 2:
        problems.append(f"the mirror did not follow: {report['mirror_sessions']} sessions, "
                        f"{report['mirror_changes']} changes")
    if problems:
        _STATE["failed"] = True
        run.fail(summary + "\n" + "\n".join(problems))


def test_checks_catch_a_node_that_forgets_acknowledged_writes(_base_tmp, checker):
    """The whole pipeline against a real broken node: its data directory is copied while it
    is stopped, writes go on and are acknowledged, then it is killed and restarted on the
    old copy. The history must come out not linearizable, with lost writes and stale reads
    counted, or the fault run's green verdict would prove nothing."""
    c = Cluster(_base_tmp / "rollback", size=1, clustered=False)
    try:
        c.start()
        node = c.nodes[0]
        run = FaultRun(c, checker, SEED, clients=CLIENTS, mirror=False, nemesis=False)
        run.start()
        run.wait_ops(500)
        node.pause()                    # a consistent copy: nothing moves while it is taken
        shutil.copytree(node.data_dir, c.workdir / "old-data")
        node.resume()
        run.wait_ops(2000)              # acknowledged writes the old copy does not have
        run.stop_clients()
        node.kill9()
        shutil.rmtree(node.data_dir)
        shutil.move(c.workdir / "old-data", node.data_dir)
        node.start()
        summary, problems, report = run.check()
    finally:
        assert c.teardown() == []
    print(summary)
    assert not report["linearizable"] and report["checker_exit"] == 1, summary
    assert report["lost_writes"] > 0 and report["stale_reads"] > 0, summary
    assert any("not linearizable" in p for p in problems)
    assert list((c.workdir / "porcupine").glob("*.html")), "no visualisation written"


# ---------------------------------------------------------------------------
# The tools, tested on their own (fast): a check that cannot fail proves nothing
# ---------------------------------------------------------------------------

def test_checker_rejects_a_stale_read_in_a_real_history(tmp_path, checker):
    """A valid history with one read moved after an acknowledged overwrite must fail both
    the Go checker and count_stale_reads."""
    t = 1000
    ops = []
    for i in range(50):
        ops.append({"client": i % 3, "op": "set", "key": "reg0", "args": [f"v{i}"],
                    "output": "OK", "call": t, "return": t + 10, "unknown": False, "error": ""})
        ops.append({"client": 3, "op": "get", "key": "reg0", "args": [], "output": f"v{i}",
                    "call": t + 20, "return": t + 30, "unknown": False, "error": ""})
        t += 100
    path = tmp_path / "good.jsonl"
    path.write_text("".join(json.dumps(o) + "\n" for o in ops))
    code, verdict = run_checker(checker, path, tmp_path)
    assert code == 0 and verdict["linearizable"] and verdict["ops"] == 100
    assert count_stale_reads(ops) == [] and count_lost_writes(ops, {"reg0": "v49"}) == []

    ops[61]["output"] = "v10"           # the read after v30's write sees v10
    path.write_text("".join(json.dumps(o) + "\n" for o in ops))
    code, verdict = run_checker(checker, path, tmp_path)
    assert code == 1 and not verdict["linearizable"]
    assert Path(verdict["keys"]["reg0"]["html"]).is_file()
    assert [o["output"] for o in count_stale_reads(ops)] == ["v10"]
    assert count_lost_writes(ops, {"reg0": "v48"}) == [("reg0", "v48")]


def test_harness_kills_pauses_restarts_and_cleans_up(_base_tmp):
    """cluster_util on one real node: kill -9 and SIGSTOP do what they say, a restart keeps
    the data and the address, and teardown leaves no process behind (a paused one too)."""
    c = Cluster(_base_tmp / "harness", size=1, clustered=False)
    try:
        c.start()
        n = c.nodes[0]
        assert n.cmd("SET", "k", "v1") == b"OK"
        pid, port = n.pid, n.port
        n.kill9()
        assert n.exit_codes[-1] == ("SIGKILL", -9) and not n.alive()
        n.start()
        assert (n.port, n.cmd("GET", "k")) == (port, b"v1") and n.pid != pid
        n.pause()
        with pytest.raises(socket.timeout):
            n.cmd("PING", timeout=0.5)
        n.resume()
        assert n.cmd("PING") == b"PONG"
        assert c.leader() is n                      # a lone node is its own leader
        n.pause()
        pid = n.pid
    finally:
        assert c.teardown() == []
    assert not Path(f"/proc/{pid}").exists()       # killed and reaped


def test_cluster_harness_isolates_the_leader_and_heals(_base_tmp):
    """With a cluster binary: 3 nodes through the proxies elect one leader; cutting every
    link of the leader makes the other two elect a new one in a higher term; after healing
    all three agree again and are voters. (Skipped with a single-node binary.)"""
    if not binary_supports_cluster(distri_bin()):
        pytest.skip(f"{distri_bin()} cannot form a cluster (no --cluster-port)")
    c = Cluster(_base_tmp / "harness3", size=3)
    try:
        c.start()
        old = c.leader()
        old_term = int(old.cluster_info()["term"])
        assert old.cmd("SET", "k", "before") == b"OK"
        c.net.isolate(old)
        rest = [n for n in c.nodes if n is not old]
        new = c.wait_for(lambda: c.leader_of(rest), 30, "a leader among the other two")
        assert new is not old and int(new.cluster_info()["term"]) > old_term
        assert new.cmd("SET", "k", "during") == b"OK"
        c.net.heal()
        c.wait_for(lambda: c.leader_of() is not None and c.all_voters(), 30, "the healed cluster")
        # Every node, the old leader too, reads the write. A read forwarded over a link the
        # heal just reset is answered TRYAGAIN after --cluster-request-timeout (5 s): ask
        # again until the deadline.
        for n in c.nodes:
            def read(n=n):
                reply = n.cmd("GET", "k", timeout=10)
                assert reply in (b"during",) or str(reply).startswith("TRYAGAIN"), reply
                return reply == b"during"
            c.wait_for(read, 30, f"{n} to read the write made during the isolation")
    finally:
        assert c.teardown() == []


def test_checks_catch_stale_local_reads_from_an_isolated_leader(_base_tmp, checker):
    """With a cluster binary: reads that opted into CLIENT READMODE local on a leader cut off
    from the others return the value a new leader has already replaced, and the checker and
    the stale-read count must both say so (real nodes, real partition, recorded history)."""
    if not binary_supports_cluster(distri_bin()):
        pytest.skip(f"{distri_bin()} cannot form a cluster (no --cluster-port)")
    c = Cluster(_base_tmp / "stale", size=3)
    history = History()
    try:
        c.start()
        old = c.leader()
        local = Client(0, c, None, history, threading.Event(), 0, 10.0)
        local.conn = HostRaw(old.host, old.port, 10.0)
        if local.conn.cmd("CLIENT", "READMODE", "local") != b"OK":
            pytest.skip("this build has no CLIENT READMODE local")
        assert local.do("set", "k", ["v1"])["output"] == "OK"
        c.net.isolate(old)
        rest = [n for n in c.nodes if n is not old]
        new = c.wait_for(lambda: c.leader_of(rest), 30, "a leader among the other two")
        writer = Client(1, c, None, history, threading.Event(), 0, 10.0)
        writer.conn = HostRaw(new.host, new.port, 10.0)
        c.wait_for(lambda: writer.do("set", "k", ["v2"])["output"] == "OK", 30,
                   "the new leader to acknowledge a write")
        assert local.do("get", "k", [])["output"] == "v1"     # stale, as local mode allows
        c.net.heal()
        c.wait_for(lambda: c.leader_of() is not None and c.all_voters(), 30, "healed")
        for client in (local, writer):
            client.conn.close()
        assert final_reads(c, history, 2, ["k"]) == {"k": "v2"}
        path = c.workdir / "history.jsonl"
        history.write(path)
        code, verdict = run_checker(checker, path, c.workdir)
    finally:
        assert c.teardown() == []
    assert code == 1 and not verdict["linearizable"], verdict
    assert [r["output"] for r in count_stale_reads(history.ops)] == ["v1"]


def _echo_server(host):
    """A one-connection-at-a-time echo server (the 'node' behind a proxy)."""
    srv = socket.create_server((host, 0))
    srv.settimeout(30)

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=conn: _echo(c), daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    return srv


def _echo(conn):
    with conn:
        try:
            while data := conn.recv(65536):
                conn.sendall(data)
        except OSError:
            pass


def _roundtrip(sock, payload=b"ping"):
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("closed")
        got += chunk
    return got


def test_link_proxy_cuts_and_heals_per_node_pair():
    """The proxies tell nodes apart by source address: a cut (1, 2) resets 1's connection to
    2 and hangs new ones, leaves 3 -> 2 alone, and heals."""
    net = Network()
    echo = _echo_server(node_host(2))
    try:
        for i in (1, 2, 3):
            net.proxy(i)
        net.proxy(2).set_target(node_host(2), echo.getsockname()[1])
        target = (node_host(2), net.proxy(2).port)

        def connect(src):
            return socket.create_connection(target, timeout=1.0,
                                            source_address=(node_host(src), 0))
        a, b = connect(1), connect(3)
        assert _roundtrip(a) == b"ping" and _roundtrip(b) == b"ping"
        net.cut(1, 2)
        with pytest.raises(OSError):
            _roundtrip(a)                       # reset (or EOF) by the cut
        assert _roundtrip(b) == b"ping"         # another pair is untouched
        held = connect(1)                       # accepted but never answered
        with pytest.raises(socket.timeout):
            _roundtrip(held)
        net.heal()
        with pytest.raises(OSError):            # the held connection is closed at heal
            held.settimeout(5.0)
            _roundtrip(held)
        assert _roundtrip(connect(1)) == b"ping"
        net.isolate(2)
        with pytest.raises(OSError):
            _roundtrip(b)
        net.partition([1, 2], [3])
        assert _roundtrip(connect(1)) == b"ping"
        with pytest.raises(socket.timeout):
            _roundtrip(connect(3))
        assert net.cuts_made == 3
        # A connection from an address that is no node's is told apart by the node id in
        # its first bytes (a handshake HELLO); an id nobody knows is never cut.
        net.resolver = {1001: 1, 1003: 3}.get
        net.partition([1, 2], [3])

        def hello(node_id):
            return (b"DSCL\x01\x01\x00\x30" + (7).to_bytes(8, "little") +
                    node_id.to_bytes(8, "little") + bytes(32))
        for node_id, cut in ((1001, False), (1003, True), (4242, False)):
            s = socket.create_connection(target, timeout=1.0)
            if cut:
                with pytest.raises(socket.timeout):
                    _roundtrip(s, hello(node_id))
            else:
                assert _roundtrip(s, hello(node_id)) == hello(node_id)
            s.close()
        for s in (a, b, held):
            s.close()
    finally:
        net.close()
        echo.close()
