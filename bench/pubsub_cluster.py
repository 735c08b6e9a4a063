#!/usr/bin/env python3
"""Pub/sub across cluster nodes: how many messages per second one publisher on node A gets
to subscribers on the same node, on another node, and spread over three nodes.

Three release nodes on loopback with direct cluster links (no proxies); one publisher on
node A pipelines PUBLISH in batches of 500 and stays at most 20,000 messages ahead of the
slowest subscriber (so no subscriber hits the slow-consumer cut-off); RESP2 subscribers
count bytes (every message has the same size). The rate is messages published per second
until every subscriber has every message, and messages delivered per second (rate times
subscribers). The load generator is Python (one publisher thread, one reader thread per
subscriber): on a small machine it competes with the three servers for the CPU, so compare
layouts within one run rather than with other tables. bench/nats_compare.py is the
side-by-side with NATS.

Usage
  bench/pubsub_cluster.py [--distri build/release/distri] [--msgs 1000000] [--size 64]
                          [--layouts A,C,BC,ABCABCABCA] [--repeat 3]

A layout names the node of each subscriber (A, B or C). Every process it starts is stopped
by PID on exit; its temp dir is removed.
"""

import argparse
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import Owned, free_port  # noqa: E402

WINDOW = 20000
BATCH = 500


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def read_value(f):
    """One RESP2/RESP3 value from a buffered socket file (bulk strings as bytes)."""
    line = f.readline()
    if not line:
        raise ConnectionError("closed")
    kind, rest = line[:1], line[1:-2]
    if kind in (b"+", b"-"):
        return rest
    if kind in (b":", b"("):
        return int(rest)
    if kind in (b"$", b"=", b"!"):
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2]
    if kind in (b"*", b"~", b">"):
        return [read_value(f) for _ in range(int(rest))]
    if kind in (b"%", b"|"):
        return {read_value(f): read_value(f) for _ in range(int(rest))}
    if kind == b"_":
        return None
    if kind == b"#":
        return rest == b"t"
    if kind == b",":
        return float(rest)
    raise ValueError(f"unexpected RESP line {line!r}")


def command(port, *args, resp3=False):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        f = s.makefile("rb")
        if resp3:
            s.sendall(encode("HELLO", "3"))
            read_value(f)
        s.sendall(encode(*args))
        return read_value(f)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def start_cluster(owned, binary):
    work = owned.tempdir("pubsub-cluster")
    secret = Path(work) / "secret"
    secret.write_text("s" * 64 + "\n")
    secret.chmod(0o600)
    nodes = []
    for i in range(3):
        port, http, cluster = free_port(), free_port(), free_port()
        argv = [binary, "serve", "--data", f"{work}/d{i}", "--port", str(port),
                "--http-port", str(http), "--cluster-port", str(cluster),
                "--cluster-secret-file", str(secret)]
        if nodes:
            argv += ["--join", f"127.0.0.1:{nodes[0][1]}"]
        owned.spawn(argv, f"{work}/node{i}.log")
        nodes.append((port, cluster))
        wait_for(lambda: command(port, "PING") == b"PONG", 30, f"node {i} to answer")

    def three_voters(port):
        info = command(port, "CLUSTER.INFO", resp3=True)
        return len(info.get(b"voters", [])) == 3 and not info.get(b"learners")
    wait_for(lambda: all(three_voters(p) for p, _ in nodes), 60, "three voters")
    return [p for p, _ in nodes]


def run(ports, layout, msgs, size):
    payload = b"x" * size
    frame_len = len(b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$%d\r\n" % size) + size + 2
    subs = []
    for node in layout:
        s = socket.create_connection(("127.0.0.1", ports[node]))
        s.sendall(encode("SUBSCRIBE", "ch"))
        want = len(b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n")
        got = b""
        while len(got) < want:
            got += s.recv(want - len(got))
        subs.append(s)
    pub = socket.create_connection(("127.0.0.1", ports[0]))
    pub.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    wait_for(lambda: command(ports[0], "PUBSUB", "NUMSUB", "ch")[1] == len(layout), 10,
             "the subscriptions to reach node A")
    counts = [0] * len(subs)

    def reader(i, s):
        total, have = msgs * frame_len, 0
        while have < total:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            have += len(chunk)
            counts[i] = have // frame_len

    threads = [threading.Thread(target=reader, args=(i, s)) for i, s in enumerate(subs)]
    for t in threads:
        t.start()
    batch = encode("PUBLISH", "ch", payload) * BATCH
    reply_bytes = len(b":%d\r\n" % len(layout)) * BATCH
    t0 = time.monotonic()
    sent = 0
    while sent < msgs:
        while sent - min(counts) > WINDOW:
            time.sleep(0.0005)
        pub.sendall(batch)
        need = reply_bytes
        while need > 0:
            need -= len(pub.recv(min(need, 1 << 20)))
        sent += BATCH
    for t in threads:
        t.join(timeout=120)
    elapsed = time.monotonic() - t0
    if any(c != sent for c in counts):
        raise SystemExit(f"lost messages: {counts} of {sent}")
    for s in subs + [pub]:
        s.close()
    return sent / elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--distri", default="build/release/distri")
    ap.add_argument("--msgs", type=int, default=1_000_000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--layouts", default="A,C,BC,ABCABCABCA")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    owned = Owned()
    try:
        ports = start_cluster(owned, os.path.abspath(args.distri))
        layouts = args.layouts.split(",")
        rates = {layout: [] for layout in layouts}
        for _ in range(args.repeat):
            for layout in layouts:
                rates[layout].append(run(ports, ["ABC".index(c) for c in layout], args.msgs,
                                         args.size))
        print(f"{args.msgs:,} messages of {args.size} B, publisher on A, "
              f"median of {args.repeat}; load average {os.getloadavg()[0]:.2f}")
        print("| subscribers on | published/s | delivered/s |")
        print("|---|---:|---:|")
        for layout in layouts:
            r = statistics.median(rates[layout])
            print(f"| {','.join(layout)} | {r:,.0f} | {r * len(layout):,.0f} |")
    finally:
        owned.cleanup()


if __name__ == "__main__":
    main()
