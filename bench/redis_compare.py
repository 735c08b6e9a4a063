#!/usr/bin/env python3
"""Side-by-side load run: Debian's redis-server vs distri, same machine, same load.

What it measures
  1. Memory: exactly 1,000,000 distinct keys with 100-byte values, loaded into each
     fresh server with `redis-cli --pipe` from one RESP file; VmRSS of each from /proc.
  2. Throughput (after FLUSHALL): redis-benchmark -c 50 -d 100 -t set,get,incr at
     pipeline 1 and 16, against each server in turn (alternating which goes first), --repeat times;
     the median ops/s of each is reported with the ratio distri/redis.

Durability settings (the ones each project ships as its durable default)
  redis-server: --appendonly yes --appendfsync everysec --save ""  (may lose ~1 s on a crash)
  distri:       --fsync always  (acknowledges a write only after its fsync; group commit)
So distri does strictly more work per write; the table says so.

Usage
  bench/redis_compare.py [--distri build/release/distri] [--quick] [--repeat 3]
                         [--keys 1000000] [--markdown out.md] [--baseline OTHER_DISTRI]

--baseline runs a second distri binary (e.g. the build before a change) as a third server
in the same rotation, and adds its figures and the ratio distri/baseline to the tables: an
A/B of two builds on the same machine in the same minutes.

Every process it starts is stopped by PID on exit, including on Ctrl-C; temp dirs are
removed. Needs redis-server, redis-cli and redis-benchmark (Debian: redis-server, redis-tools).
"""

import argparse
import csv
import io
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import Owned, cpu_model, free_port, version_of

REPO = Path(__file__).resolve().parent.parent
TESTS = ("SET", "GET", "INCR")
PIPELINES = (1, 16)
CLIENTS = 50
VALUE_SIZE = 100


# ---------------------------------------------------------------------------
# Processes we own (stopped by PID, never by name)
# ---------------------------------------------------------------------------

def ping(port, timeout=1.0):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class Server:
    def __init__(self, name, argv_for_port, owned, workdir):
        self.name = name
        self.argv_for_port = argv_for_port
        self.owned = owned
        self.workdir = workdir
        self.proc = None
        self.port = None

    def start(self, timeout=30):
        for _ in range(5):
            self.port = free_port()
            self.proc = self.owned.spawn(self.argv_for_port(self.port), self.workdir / "server.log",
                                         cwd=self.workdir)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if ping(self.port):
                    return self
                time.sleep(0.02)
            self.owned.stop(self.proc)
            log = (self.workdir / "server.log").read_text(errors="replace")
            if "in use" not in log.lower():
                break
        raise SystemExit(f"{self.name} did not start; log:\n{log[-3000:]}")

    def rss_kb(self):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def cli(self, *args, stdin=None, timeout=600):
        return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), *args],
                              input=stdin, capture_output=True, timeout=timeout)


# ---------------------------------------------------------------------------
# Throughput
# ---------------------------------------------------------------------------

def benchmark(server, pipeline, requests, tests=TESTS):
    """One redis-benchmark run; returns {test: ops/s}."""
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(server.port), "-c", str(CLIENTS),
            "-d", str(VALUE_SIZE), "-P", str(pipeline), "-n", str(requests),
            "-t", ",".join(t.lower() for t in tests), "--csv"]
    timeout = 600
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise SystemExit(f"redis-benchmark against {server.name} failed: {p.stderr}")
    out = {}
    for row in csv.reader(io.StringIO(p.stdout)):
        if not row or row[0] == "test":
            continue
        out[row[0].split(" ")[0]] = float(row[1])
    missing = [t for t in tests if t not in out]
    if missing:
        raise SystemExit(f"redis-benchmark against {server.name}: no result for {missing}:\n"
                         f"{p.stdout}\n{p.stderr}")
    return out


def calibrate(servers, pipeline, seconds, probe, floor):
    """Requests per run: the faster server's slowest test takes ~`seconds` (the slower
    server then takes longer, never shorter). At least `floor`."""
    per_server = [min(benchmark(s, pipeline, probe).values()) for s in servers]
    n = int(max(per_server) * seconds)
    n = max(floor, min(n, 10_000_000))
    return (n // 1000) * 1000


# ---------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------

def make_load_file(path, keys):
    value = b"v" * VALUE_SIZE
    vlen = b"$%d\r\n" % VALUE_SIZE
    with open(path, "wb", buffering=1 << 20) as f:
        for i in range(keys):
            key = b"key:%010d" % i
            f.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n%s%s\r\n" % (len(key), key, vlen, value))


def load_and_measure(server, load_file, keys):
    before = server.rss_kb()
    t0 = time.monotonic()
    with open(load_file, "rb") as f:
        p = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(server.port), "--pipe",
                            "--pipe-timeout", "300"], stdin=f, capture_output=True, timeout=1800)
    elapsed = time.monotonic() - t0
    out = p.stdout.decode(errors="replace")
    if f"errors: 0, replies: {keys}" not in out:
        raise SystemExit(f"loading {server.name} failed: {out}\n{p.stderr.decode()}")
    dbsize = int(server.cli("DBSIZE").stdout.strip() or -1)
    if dbsize != keys:
        raise SystemExit(f"{server.name}: DBSIZE {dbsize} after loading {keys} keys")
    time.sleep(1.0)  # let background work (AOF/log flush, snapshots) settle before reading RSS
    return {"rss_before_kb": before, "rss_kb": server.rss_kb(), "load_s": elapsed}


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------



def fmt_ops(x):
    return f"{x:,.0f}"


def render(results, mem, args, requests, redis_version):
    rows = []
    has_base = bool(args.baseline)
    for pipeline in PIPELINES:
        for test in TESTS:
            r = statistics.median(results[("redis", pipeline, test)])
            d = statistics.median(results[("distri", pipeline, test)])
            b = statistics.median(results[("baseline", pipeline, test)]) if has_base else None
            rows.append((test, pipeline, r, d, d / r if r else float("nan"), b))

    plain = [f"{'test':6} {'pipeline':>8} {'redis ops/s':>14} {'distri ops/s':>14} "
             f"{'distri/redis':>12}" + (f" {'base ops/s':>14} {'base/redis':>10} "
                                        f"{'distri/base':>11}" if has_base else "")]
    for test, pipeline, r, d, ratio, b in rows:
        plain.append(f"{test:6} {pipeline:>8} {fmt_ops(r):>14} {fmt_ops(d):>14} {ratio:>12.2f}" +
                     (f" {fmt_ops(b):>14} {b / r:>10.2f} {d / b:>11.2f}" if has_base else ""))

    md = []
    md.append(f"### redis-server vs distri — {time.strftime('%Y-%m-%d')}")
    md.append("")
    md.append(f"Machine: {cpu_model()}, {os.cpu_count()} CPUs, Linux {platform.release()}. "
              f"{redis_version}. distri: `{args.distri}`." +
              (f" baseline: `{args.baseline}`." if has_base else ""))
    md.append("")
    md.append(f"Load: `redis-benchmark -c {CLIENTS} -d {VALUE_SIZE} -t set,get,incr` at -P 1 "
              f"(-n {requests[1]:,}) and -P 16 (-n {requests[16]:,}); median of {args.repeat} "
              f"alternating run(s). redis: `--appendonly yes --appendfsync everysec --save \"\"`; "
              f"distri: `--fsync always` (each write fsynced before it is acknowledged).")
    md.append("")
    if has_base:
        md.append("| test | pipeline | redis ops/s | distri ops/s | distri/redis | "
                  "baseline ops/s | baseline/redis | distri/baseline |")
        md.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    else:
        md.append("| test | pipeline | redis ops/s | distri ops/s | distri/redis |")
        md.append("|---|---:|---:|---:|---:|")
    for test, pipeline, r, d, ratio, b in rows:
        md.append(f"| {test} | {pipeline} | {fmt_ops(r)} | {fmt_ops(d)} | {ratio:.2f} |" +
                  (f" {fmt_ops(b)} | {b / r:.2f} | {d / b:.2f} |" if has_base else ""))
    if mem:
        rk, dk = mem["redis"], mem["distri"]
        md.append("")
        md.append(f"Memory after loading {args.keys:,} distinct keys with {VALUE_SIZE}-byte values "
                  f"(`redis-cli --pipe`), VmRSS:")
        md.append("")
        md.append("| | redis | distri | distri/redis |")
        md.append("|---|---:|---:|---:|")
        md.append(f"| RSS at start, empty (MiB) | {rk['rss_before_kb'] / 1024:.1f} | "
                  f"{dk['rss_before_kb'] / 1024:.1f} | "
                  f"{dk['rss_before_kb'] / rk['rss_before_kb']:.2f} |")
        md.append(f"| RSS loaded (MiB) | {rk['rss_kb'] / 1024:.1f} | {dk['rss_kb'] / 1024:.1f} | "
                  f"{dk['rss_kb'] / rk['rss_kb']:.2f} |")
        md.append(f"| load time (s) | {rk['load_s']:.1f} | {dk['load_s']:.1f} | "
                  f"{dk['load_s'] / rk['load_s']:.2f} |")
        plain.append("")
        plain.append(f"VmRSS after {args.keys:,} keys: redis {rk['rss_kb'] / 1024:.1f} MiB, "
                     f"distri {dk['rss_kb'] / 1024:.1f} MiB, "
                     f"ratio distri/redis {dk['rss_kb'] / rk['rss_kb']:.2f} "
                     f"(empty: {rk['rss_before_kb'] / 1024:.1f} / "
                     f"{dk['rss_before_kb'] / 1024:.1f} MiB)")
        if "baseline" in mem:
            bk = mem["baseline"]
            line = (f"Baseline VmRSS after {args.keys:,} keys: {bk['rss_kb'] / 1024:.1f} MiB "
                    f"(distri/baseline {dk['rss_kb'] / bk['rss_kb']:.2f}), load time "
                    f"{bk['load_s']:.1f} s.")
            md.append("")
            md.append(line)
            plain.append(line)
    return "\n".join(plain), "\n".join(md)


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--distri", default=str(REPO / "build" / "release" / "distri"),
                    help="distri binary (default: build/release/distri)")
    ap.add_argument("--redis-server",
                    default=shutil.which("redis-server") or "/usr/bin/redis-server")
    ap.add_argument("--quick", action="store_true", help="small -n and key count: a smoke run")
    ap.add_argument("--repeat", type=int, default=1,
                    help="alternating runs; the median is reported")
    ap.add_argument("--seconds", type=float, default=3.0,
                    help="target duration of the slowest test per run (default 3)")
    ap.add_argument("--keys", type=int, default=None,
                    help="keys for the memory test (default 1,000,000; --quick: 100,000)")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory test")
    ap.add_argument("--markdown", help="also write the markdown report to this file")
    ap.add_argument("--baseline", help="a second distri binary measured in the same rotation")
    args = ap.parse_args()
    args.distri = str(Path(args.distri).resolve())
    if args.baseline:
        args.baseline = str(Path(args.baseline).resolve())
        if not os.access(args.baseline, os.X_OK):
            raise SystemExit(f"baseline binary not found at {args.baseline}")
    if args.keys is None:
        args.keys = 100_000 if args.quick else 1_000_000
    for tool in ("redis-benchmark", "redis-cli"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found (Debian: apt-get install redis-tools)")
    if not os.access(args.distri, os.X_OK):
        raise SystemExit(f"distri binary not found at {args.distri} (build the release preset "
                         f"or pass --distri)")

    owned = Owned()

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        rdir, ddir = owned.tempdir("bench-redis-"), owned.tempdir("bench-distri-")
        redis = Server("redis", lambda port: [
            args.redis_server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(rdir),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--daemonize", "no", "--protected-mode", "no", "--logfile", ""], owned, rdir).start()
        distri = Server("distri", lambda port: [
            args.distri, "serve", "--port", str(port), "--http-port", str(free_port()),
            "--bind", "127.0.0.1", "--data", str(ddir / "data"), "--fsync", "always"],
            owned, ddir).start()
        servers = {"redis": redis, "distri": distri}
        if args.baseline:
            bdir = owned.tempdir("bench-baseline-")
            servers["baseline"] = Server("baseline", lambda port: [
                args.baseline, "serve", "--port", str(port), "--http-port", str(free_port()),
                "--bind", "127.0.0.1", "--data", str(bdir / "data"), "--fsync", "always"],
                owned, bdir).start()
        print(f"redis-server pid {redis.proc.pid} port {redis.port}; "
              f"distri pid {distri.proc.pid} port {distri.port}", file=sys.stderr)

        mem = None
        if not args.no_memory:
            load_file = owned.tempdir("bench-load-") / "load.resp"
            make_load_file(load_file, args.keys)
            mem = {}
            # First, on fresh processes, so 'empty' is the RSS right after start.
            for name in servers:
                mem[name] = load_and_measure(servers[name], load_file, args.keys)
                print(f"{name}: loaded {args.keys} keys in {mem[name]['load_s']:.1f}s, "
                      f"VmRSS {mem[name]['rss_kb']} kB", file=sys.stderr)
            load_file.unlink()

        for server in servers.values():
            server.cli("FLUSHALL")

        seconds = 0.5 if args.quick else args.seconds
        requests = {}
        for pipeline in PIPELINES:
            probe = (5_000 if args.quick else 20_000) * (1 if pipeline == 1 else 10)
            floor = probe if args.quick else probe * 5
            requests[pipeline] = calibrate(list(servers.values()), pipeline, seconds, probe,
                                           floor)
            print(f"-P {pipeline}: -n {requests[pipeline]}", file=sys.stderr)

        results = {}
        for rep in range(args.repeat):
            # Rotate which server goes first, so no one always runs on a warmer machine.
            names = list(servers)
            order = names[rep % len(names):] + names[:rep % len(names)]
            for pipeline in PIPELINES:
                for name in order:
                    got = benchmark(servers[name], pipeline, requests[pipeline])
                    for test, ops in got.items():
                        results.setdefault((name, pipeline, test), []).append(ops)
                    print(f"run {rep + 1}/{args.repeat} {name:6} -P {pipeline:<2} " +
                          " ".join(f"{t}={fmt_ops(v)}" for t, v in got.items()), file=sys.stderr)

        redis_version = version_of([args.redis_server, "--version"])
        plain, md = render(results, mem, args, requests, redis_version)
        print(plain)
        print()
        print(md)
        if args.markdown:
            Path(args.markdown).write_text(md + "\n")
    except KeyboardInterrupt:
        print("interrupted; stopping servers", file=sys.stderr)
        return 130
    finally:
        owned.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
