#!/usr/bin/env python3
"""How long a snapshot stalls clients: the longest gap between the replies of a client
that sends PING in a loop while the server writes a snapshot of a big state.

What it does
  1. Starts distri with --snapshot-bytes far above the load and loads --keys keys of
     --value-bytes each (MSET, 1,000 keys per command, pipelined): about 600 MB of
     state by default. Stops it (SIGTERM: no snapshot at shutdown).
  2. Restarts it with --snapshot-bytes just above the log it replays, so no snapshot
     runs at start-up, and starts a client that PINGs in a loop, one at a time.
  3. After a quiet second (the baseline), one SET of 2 MiB takes the log past
     --snapshot-bytes: the server snapshots. The run ends once the snapshot file
     appears in snap/ and the PING loop has run for another second.
  4. Prints the longest gap between two PING replies before and during the snapshot,
     the 99.9th percentile, how long the snapshot took (the SET until snap/*.snap
     exists), the fork's duration (INFO latest_fork_usec, where the server has it),
     and the server's RSS.

Before/after: run it against two release builds, e.g.
  bench/snapshot_stall.py --distri build/release/distri
  bench/snapshot_stall.py --distri /path/to/older/build/release/distri

Usage
  bench/snapshot_stall.py [--distri build/release/distri] [--keys 2000000]
                          [--value-bytes 300] [--fsync off]

Every process it starts is stopped by PID on exit, including on Ctrl-C; temp dirs are
removed. Needs the redis Python package (build/venv has it).
"""

import argparse
import sys
import threading
import time
from pathlib import Path

import redis

from benchlib import Owned, cpu_model, free_port

REPO = Path(__file__).resolve().parent.parent


def wait_port(port, proc, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"distri exited with code {proc.returncode} while starting")
        try:
            if redis.Redis(port=port, socket_timeout=5).ping():
                return
        except (redis.ConnectionError, redis.TimeoutError):
            time.sleep(0.05)
    sys.exit(f"distri did not accept on port {port} within {timeout}s")


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--distri", default=str(REPO / "build" / "release" / "distri"))
    ap.add_argument("--keys", type=int, default=2_000_000)
    ap.add_argument("--value-bytes", type=int, default=300)
    ap.add_argument("--fsync", default="off", choices=["off", "always"],
                    help="fsync mode for the run (the load is faster with off)")
    args = ap.parse_args()

    owned = Owned()
    try:
        data = owned.tempdir("distri-snapbench-")
        port, http_port = free_port(), free_port()

        def start(snapshot_bytes, log_name):
            argv = [args.distri, "serve", "--port", str(port), "--http-port", str(http_port),
                    "--bind", "127.0.0.1", "--data", str(data / "data"), "--fsync", args.fsync,
                    "--snapshot-bytes", str(snapshot_bytes)]
            p = owned.spawn(argv, data / log_name)
            wait_port(port, p)
            return p

        # 1. Load.
        p = start(1 << 40, "load.log")
        c = redis.Redis(port=port, socket_timeout=120)
        value = b"v" * args.value_bytes
        t0 = time.monotonic()
        pipe = c.pipeline(transaction=False)
        per_cmd = 1000
        for start_key in range(0, args.keys, per_cmd):
            n = min(per_cmd, args.keys - start_key)
            pipe.mset({f"key:{start_key + j}": value for j in range(n)})
            if (start_key // per_cmd) % 20 == 19:
                pipe.execute()
        pipe.execute()
        load_s = time.monotonic() - t0
        assert c.dbsize() == args.keys
        log_bytes = int(c.info()["log_bytes_since_snapshot"])
        owned.stop(p)

        # 2. Restart just under the threshold.
        threshold = log_bytes + (1 << 20)
        t0 = time.monotonic()
        p = start(threshold, "run.log")
        replay_s = time.monotonic() - t0
        c = redis.Redis(port=port, socket_timeout=120)
        assert c.dbsize() == args.keys
        rss = rss_mb(p.pid)

        gaps = []   # (time of the reply, gap before it)
        stop = threading.Event()

        def pinger():
            pc = redis.Redis(port=port, socket_timeout=120, single_connection_client=True)
            last = time.monotonic()
            while not stop.is_set():
                pc.ping()
                now = time.monotonic()
                gaps.append((now, now - last))
                last = now

        t = threading.Thread(target=pinger, daemon=True)
        t.start()
        time.sleep(1.0)
        snap_dir = data / "data" / "snap"
        began = time.monotonic()
        c.set("trigger", b"t" * (2 << 20))
        while not list(snap_dir.glob("*.snap")):
            if time.monotonic() - began > 600:
                sys.exit("no snapshot file after 600 s")
            time.sleep(0.002)
        done = time.monotonic()
        fork_us = int(c.info("persistence").get("latest_fork_usec", -1))
        time.sleep(1.0)
        stop.set()
        t.join(30)
        owned.stop(p)

        before = [g for at, g in gaps if at < began]
        during = [g for at, g in gaps if at >= began]
        print(f"machine: {cpu_model()}")
        print(f"binary: {args.distri}")
        print(f"state: {args.keys:,} keys x {args.value_bytes} B; RSS {rss:.0f} MB after replay; "
              f"log {log_bytes / 2**20:.0f} MiB; fsync {args.fsync}")
        print(f"load {load_s:.1f} s, restart (replay) {replay_s:.1f} s")
        print(f"snapshot: {1000 * (done - began):.0f} ms from the triggering SET to snap/*.snap"
              + (f"; fork() {fork_us / 1000:.1f} ms" if fork_us >= 0 else ""))
        print(f"PING gaps before the snapshot: max {1000 * max(before):.2f} ms, "
              f"p99.9 {1000 * percentile(before, 0.999):.2f} ms ({len(before)} pings)")
        print(f"PING gaps from the trigger on: max {1000 * max(during):.2f} ms, "
              f"p99.9 {1000 * percentile(during, 0.999):.2f} ms ({len(during)} pings)")
    finally:
        owned.cleanup()


if __name__ == "__main__":
    main()
