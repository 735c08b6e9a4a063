#!/usr/bin/env python3
"""Python client overhead: the distri package next to redis-py, same server, same commands.

Runs each workload in one process, one connection, against one distri server,
with the distri client and with redis-py (which uses hiredis too when it is
installed, as here), and prints ops/s and the ratio distri / redis-py.

    python bench/python_client.py                     # starts its own server (--fsync off)
    python bench/python_client.py --url distri://127.0.0.1:7379
    python bench/python_client.py --ops 50000 --rounds 5 --fsync always

Workloads (N operations each; the best of --rounds runs is kept):
  set            room.set(k, v)            vs r.set(k, v)
  get            room["k"]                 vs r.get(k)
  incr           room.incr(k)              vs r.incr(k)
  pipeline set   room.pipeline(), 100/batch vs r.pipeline(transaction=False)
  mset / mget    room.update / get_many of 100 keys vs r.mset / r.mget

The server runs with --fsync off by default so the clients' own cost is what
differs; with --fsync always both wait for the disk on every write. Goal: the
distri client within 10% of redis-py (ratio >= 0.90).
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "clients" / "python" / "src"))

import distri  # noqa: E402
import redis  # noqa: E402

BATCH = 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_binary() -> str:
    env = os.environ.get("DISTRI_BIN")
    if env:
        return env
    for sub in ("release", "dev", "test"):
        p = REPO / "build" / sub / "distri"
        if p.exists():
            return str(p)
    sys.exit("no distri binary: build one (see README) or set DISTRI_BIN")


def start_server(fsync: str):
    tmp = tempfile.mkdtemp(prefix="distri-pybench-")
    port = free_port()
    proc = subprocess.Popen([find_binary(), "serve", "--port", str(port), "--http-port",
                             str(free_port()), "--data", os.path.join(tmp, "data"),
                             "--fsync", fsync, "--log-level", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, tmp, f"distri://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("server did not start")


def timed(fn, n: int) -> float:
    t = time.perf_counter()
    fn(n)
    return n / (time.perf_counter() - t)


def workloads(room, r):
    """(name, distri fn, redis-py fn); each fn(n) performs n operations."""
    value = "x" * 32
    keys = [f"key:{i}" for i in range(1000)]
    batch_items = {f"b:{i}": i for i in range(BATCH)}
    batch_keys = list(batch_items)

    def d_set(n):
        for i in range(n):
            room.set(keys[i % 1000], value)

    def r_set(n):
        for i in range(n):
            r.set(keys[i % 1000], value)

    def d_get(n):
        for i in range(n):
            room[keys[i % 1000]]

    def r_get(n):
        for i in range(n):
            r.get(keys[i % 1000])

    def d_incr(n):
        for _ in range(n):
            room.incr("counter")

    def r_incr(n):
        for _ in range(n):
            r.incr("counter")

    def d_pipe(n):
        for b in range(n // BATCH):
            with room.pipeline() as p:
                for i in range(BATCH):
                    p.set(keys[i], value)

    def r_pipe(n):
        for b in range(n // BATCH):
            p = r.pipeline(transaction=False)
            for i in range(BATCH):
                p.set(keys[i], value)
            p.execute()

    def d_mset(n):
        for _ in range(n // BATCH):
            room.update(batch_items)

    def r_mset(n):
        for _ in range(n // BATCH):
            r.mset(batch_items)

    def d_mget(n):
        for _ in range(n // BATCH):
            room.get_many(batch_keys)

    def r_mget(n):
        for _ in range(n // BATCH):
            r.mget(batch_keys)

    return [("set", d_set, r_set), ("get", d_get, r_get), ("incr", d_incr, r_incr),
            (f"pipeline set x{BATCH}", d_pipe, r_pipe), (f"mset x{BATCH}", d_mset, r_mset),
            (f"mget x{BATCH}", d_mget, r_mget)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="an existing server (default: start one)")
    ap.add_argument("--ops", type=int, default=20000, help="operations per run")
    ap.add_argument("--rounds", type=int, default=3, help="runs per workload; best kept")
    ap.add_argument("--fsync", default="off", choices=("off", "always"),
                    help="--fsync of the server this script starts")
    args = ap.parse_args()

    proc = tmp = None
    url = args.url
    if url is None:
        proc, tmp, url = start_server(args.fsync)
    try:
        room = distri.connect(url, quiet=True)
        host, port = room._link.ep.host, room._link.ep.port
        r = redis.Redis(host=host, port=port)
        r.execute_command("ROOM.JOIN", room.code)        # the same room as the distri client
        print(f"server {url}  (fsync {args.fsync if proc else '?'}); {args.ops} ops per run, "
              f"best of {args.rounds}; redis-py {redis.__version__}")
        print(f"{'workload':<20}{'distri ops/s':>14}{'redis-py ops/s':>16}{'ratio':>8}")
        worst = None
        for name, d_fn, r_fn in workloads(room, r):
            d_fn(min(args.ops, 2000))                     # warm up both
            r_fn(min(args.ops, 2000))
            d_best = r_best = 0.0
            for _ in range(args.rounds):                  # interleaved: same conditions
                d_best = max(d_best, timed(d_fn, args.ops))
                r_best = max(r_best, timed(r_fn, args.ops))
            ratio = d_best / r_best
            worst = ratio if worst is None else min(worst, ratio)
            print(f"{name:<20}{d_best:>14,.0f}{r_best:>16,.0f}{ratio:>8.2f}")
        print(f"lowest ratio {worst:.2f} (goal >= 0.90)")
        room.close()
        r.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
