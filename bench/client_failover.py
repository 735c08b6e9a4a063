#!/usr/bin/env python3
"""How long the Python client takes to fail over: real 3-node clusters on loopback.

    DISTRI_BIN=build/release/distri python bench/client_failover.py [--runs 5]

For each run a fresh cluster (clients/python/tests/conftest.py's Cluster: nodes on
127.0.3.i, a relay in front of each cluster port, Raft's tick at 50 ms) and one
client on a follower:
  own node kill   kill -9 of the client's node: time to the next read and write
  leader kill     kill -9 of the leader: time to the next read and write (the election)
  partition       the client's node cut off from the others (its process answering):
                  time until the mirror has a write made through the leader, and the
                  next read after it (default node_timeout, then node_timeout=1.5)
Prints every run's seconds. Needs a cluster-capable binary.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "clients" / "python" / "src"))
sys.path.insert(0, str(REPO / "clients" / "python" / "tests"))

import distri  # noqa: E402
from conftest import Cluster, cluster_capable  # noqa: E402


def with_cluster(fn):
    c = Cluster(Path(tempfile.mkdtemp(prefix="distri-failover-")), 3).start()
    try:
        leader = c.leader()
        follower = next(n for n in c.nodes if n is not leader)
        return fn(c, leader, follower)
    finally:
        c.heal()
        for n in c.nodes:
            if n.proc is not None:
                n.kill9()
        c.close_relays()


def kill(which):
    def run(c, leader, follower):
        room = distri.connect(f"distri://{follower.address}", quiet=True)
        room["k"] = 1
        (leader if which == "leader" else follower).kill9()
        t = time.monotonic()
        room.get("k")
        read = time.monotonic() - t
        room.incr("n")
        write = time.monotonic() - t
        room.close()
        return f"read {read:.3f}s write {write:.3f}s"
    return run


def partition(node_timeout):
    def run(c, leader, follower):
        room = distri.connect(f"distri://{follower.address}", quiet=True,
                              node_timeout=node_timeout)
        writer = distri.connect(f"distri://{leader.address}/{room.code}", quiet=True)
        room["k"] = 1
        room.start_mirror()
        c.isolate(follower)
        t = time.monotonic()
        writer["after"] = 1
        room.wait_for("after", timeout=60)
        mirror = time.monotonic() - t
        t = time.monotonic()
        room.get("k")
        read = time.monotonic() - t
        room.close()
        writer.close()
        return f"mirror {mirror:.2f}s next read {read:.3f}s"
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if not cluster_capable():
        sys.exit("the binary has no --cluster-port: set DISTRI_BIN to a cluster build")
    cases = [("own node kill", kill("own")), ("leader kill", kill("leader")),
             ("partition, node_timeout=5", partition(5.0)),
             ("partition, node_timeout=1.5", partition(1.5))]
    for name, fn in cases:
        results = [with_cluster(fn) for _ in range(args.runs)]
        print(f"{name:28s} " + " | ".join(results), flush=True)


if __name__ == "__main__":
    main()
