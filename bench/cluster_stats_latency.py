#!/usr/bin/env python3
"""How long STATS, CLUSTER.STATS and ROOM.STATS take when every member is asked (issue 11).

Starts a real 3-node cluster with the test harness (tests/cluster_util.py; the binary is
$DISTRI_BIN, default build/test/distri), holds one RESP3 connection to a follower and times
N sequential requests of each command (CLUSTER.INFO, answered from the node's own state, is
the baseline), then the same with one other member SIGSTOPped (each request then waits for
the 1 s gather timeout), then STATS and ROOM.STATS on a single node. Prints p50/p99/max.

  build/venv/bin/python bench/cluster_stats_latency.py [N]

Results are in docs/benchmarks.md ("Statistics from every node").
"""

import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
from cluster_util import Cluster, HostRaw  # noqa: E402


def timed(conn, args, n):
    xs = []
    for _ in range(n):
        t = time.perf_counter()
        reply = conn.cmd(*args)
        xs.append((time.perf_counter() - t) * 1e3)
        assert not isinstance(reply, Exception), reply
    xs.sort()
    return (f"p50 {xs[len(xs) // 2]:.2f} ms, p99 {xs[int(len(xs) * 0.99)]:.2f} ms, "
            f"max {xs[-1]:.2f} ms")


def resp3(node):
    conn = HostRaw(node.host, node.port, 10)
    conn.cmd("HELLO", "3")
    return conn


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    work = pathlib.Path(tempfile.mkdtemp(prefix="distri-stats-bench-"))
    c = Cluster(work / "three", size=3)
    try:
        c.start()
        leader = c.leader()
        follower = next(x for x in c.nodes if x is not leader)
        conn = resp3(follower)
        # Every member reachable with its addresses known before timing.
        c.wait_for(lambda: all(e[b"reachable"] for e in conn.cmd("CLUSTER.STATS")), 15,
                   "every member reachable")
        print(f"3 nodes, {n} sequential requests to a follower:")
        for args in (("CLUSTER.INFO",), ("STATS",), ("CLUSTER.STATS",), ("ROOM.STATS",)):
            print(f"  {' '.join(args):14s} {timed(conn, args, n)}")
        victim = next(x for x in c.nodes if x is not leader and x is not follower)
        victim.pause()
        print(f"  STATS, one member SIGSTOPped: {timed(conn, ('STATS',), 5)}")
        victim.resume()
        conn.close()
    finally:
        problems = c.teardown()
    s = Cluster(work / "one", size=1, clustered=False)
    try:
        s.start()
        conn = resp3(s.nodes[0])
        print(f"single node, {n} sequential requests:")
        for args in (("STATS",), ("ROOM.STATS",)):
            print(f"  {' '.join(args):14s} {timed(conn, args, n)}")
        conn.close()
    finally:
        problems += s.teardown()
    if problems:
        sys.exit("\n".join(problems))


if __name__ == "__main__":
    main()
