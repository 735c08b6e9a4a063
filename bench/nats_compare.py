#!/usr/bin/env python3
"""Side-by-side messaging load run: Debian's nats-server vs distri, same machine, same load.

What it measures (every number comes from bench/msg_bench, one load generator with a NATS
and a RESP adapter, so both servers see byte-for-byte the same pattern of work):
  1. publish-only: one publisher, no subscribers, 64-byte payloads, pipelined. NATS: done at
     the PONG for a PING sent after the last PUB; distri: done when every PUBLISH reply is read.
  2. pub/sub 1->1 and 1->10: 64-byte messages on one subject, counted until every subscriber
     has every message (messages delivered per second; the publisher stays at most
     --window = 3,000 messages ahead of the slowest subscriber, and 30,000 in a second 1->10
     row, where each subscriber's backlog in the server reaches ~3 MB).
  3. request/reply with two workers: NATS workers in a queue group answer on the reply
     subject; distri workers are RESP3 connections with SVC.SERVE answering SVC.REPLY, and
     callers use CALL. 10 concurrent callers (throughput), and 1 caller (latency p50/p99).
Each scenario runs for --seconds on each server, rotating which goes first, --repeat times; the
table shows medians and the ratio distri/nats. distri is measured twice: with msg_bench reading
its replies through distri::protocol::ParseValue, and with msg_bench's in-place parser for the
hot frames (as cheap for the load generator as its NATS parser; the fair server comparison). It also reports the CPU time each
server process used per message (from /proc/PID/stat), which is less sensitive than wall-clock
rates to other load on the machine.

Caveat for small machines: the load generator (one thread) runs on the same machine and takes
up to one core away from the server; on a 2-core box that matters for nats-server, which
would otherwise use both cores, more than for distri, whose event loop is one thread.

Usage
  bench/nats_compare.py [--distri build/release/distri] [--msg-bench build/release/bench/msg_bench]
                        [--repeat 3] [--seconds 3] [--quick] [--markdown out.md]

Build first:  cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release \
                -DDISTRI_TESTS=OFF -DDISTRI_BENCH=ON && ninja -C build/release
Needs nats-server (Debian: apt-get install nats-server). Every process it starts is stopped by
PID on exit, including on Ctrl-C; temp dirs are removed.
"""

import argparse
import os
import platform
import resource
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
SIZE = 64

# (key, label, msg_bench arguments, unit of `rate`). Later msg_bench flags override earlier
# ones, so a scenario can set its own --window.
SCENARIOS = [
    ("pub", "publish-only, 1 publisher", ["--scenario", "pub"], "msgs/s"),
    ("fan1", "pub/sub 1→1", ["--scenario", "fanout", "--subs", "1"], "msgs/s delivered"),
    ("fan10", "pub/sub 1→10", ["--scenario", "fanout", "--subs", "10"], "msgs/s delivered"),
    ("fan10deep", "pub/sub 1→10, deep backlog (window 30,000 ≈ 3 MB per subscriber)",
     ["--scenario", "fanout", "--subs", "10", "--window", "30000"], "msgs/s delivered"),
    ("rr10", "request/reply, 10 callers, 2 workers", ["--scenario", "reqrep", "--callers", "10",
                                                      "--workers", "2"], "round trips/s"),
    ("rr1", "request/reply, 1 caller, 2 workers", ["--scenario", "reqrep", "--callers", "1",
                                                   "--workers", "2"], "round trips/s"),
]

# (variant, server, extra msg_bench arguments, column heading). The same distri process is
# measured twice: with msg_bench parsing replies through distri::protocol::ParseValue (what a
# client built on the project's parser pays), and with its in-place parser for the hot frames,
# which costs the load generator about what its NATS parser does, so that column compares
# the servers.
VARIANTS = [
    ("nats", "nats", [], "nats"),
    ("distri", "distri", ["--resp-parser", "value"], "distri"),
    ("distri-fast", "distri", ["--resp-parser", "fast"], "distri, fast client parser"),
]


# ---------------------------------------------------------------------------
# Servers (processes are owned through benchlib.Owned: stopped by PID)
# ---------------------------------------------------------------------------

def ready(name, port):
    """nats-server greets with INFO; distri answers PING with +PONG."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.settimeout(1.0)
            if name == "nats":
                return s.recv(4096).startswith(b"INFO ")
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class Server:
    def __init__(self, name, argv_for_port, owned, workdir):
        self.name, self.argv_for_port, self.owned, self.workdir = name, argv_for_port, owned, workdir
        self.proc = None
        self.port = None

    def start(self, timeout=20):
        log = ""
        for _ in range(5):  # a free port can be taken between probing and binding
            self.port = free_port()
            self.proc = self.owned.spawn(self.argv_for_port(self.port), self.workdir / "server.log")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if ready(self.name, self.port):
                    return self
                time.sleep(0.02)
            self.owned.stop(self.proc)
            log = (self.workdir / "server.log").read_text(errors="replace")
            if "in use" not in log.lower():
                break
        raise SystemExit(f"{self.name} did not start; log:\n{log[-3000:]}")

    def cpu_seconds(self):
        """utime + stime of the whole process (all threads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def check_alive(self):
        if self.proc.poll() is not None:
            log = (self.workdir / "server.log").read_text(errors="replace")
            raise SystemExit(f"{self.name} exited with {self.proc.returncode}; log:\n{log[-3000:]}")


# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------

def busy_seconds():
    """CPU time the whole machine spent busy (all CPUs), from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = f
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def wait_quiet(args):
    """Waits (up to --quiet-wait s) until other processes use under --quiet cores, so a run
    does not start in the middle of someone else's compile. Returns the last load seen."""
    deadline = time.monotonic() + args.quiet_wait
    while True:
        b0, t0 = busy_seconds(), time.monotonic()
        time.sleep(0.5)
        load = (busy_seconds() - b0) / (time.monotonic() - t0)
        if load <= args.quiet or time.monotonic() >= deadline:
            return load
        time.sleep(1.0)


def run_one(args, server, scenario_args):
    proto = "nats" if server.name == "nats" else "resp"
    argv = [*args.pin_client, args.msg_bench, "--proto", proto, "--port", str(server.port),
            "--size", str(SIZE), "--seconds", str(args.seconds), "--msgs", str(args.max_msgs),
            "--window", str(args.window), *scenario_args]
    if args.quiet > 0:
        wait_quiet(args)
    cpu0, busy0, child0, t0 = server.cpu_seconds(), busy_seconds(), children_cpu(), time.monotonic()
    p = subprocess.run(argv, capture_output=True, text=True, timeout=args.seconds * 10 + 60)
    wall = time.monotonic() - t0
    cpu = server.cpu_seconds() - cpu0
    other = busy_seconds() - busy0 - cpu - (children_cpu() - child0)
    server.check_alive()
    if p.returncode != 0:
        raise SystemExit(f"msg_bench against {server.name} failed ({p.returncode}):\n"
                         f"{' '.join(argv)}\n{p.stdout}{p.stderr}")
    out = dict(kv.split("=", 1) for kv in p.stdout.split())
    units = int(out.get("delivered", out.get("calls", 0)))
    out["server_cpu_s"] = cpu
    out["server_cores"] = cpu / float(out["seconds"])
    out["client_cores"] = float(out["client_cpu_s"]) / float(out["seconds"])
    out["other_cores"] = max(0.0, other / wall)  # everything else on the machine
    out["server_us_per_msg"] = cpu * 1e6 / units if units else float("nan")
    out["client_us_per_msg"] = float(out["client_cpu_s"]) * 1e6 / units if units else float("nan")
    return out


def loadavg():
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"




# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------

def med(results, name, key, field):
    return statistics.median(float(r[field]) for r in results[(name, key)])


def render(results, args, meta, scenarios):
    def ratio(d, n):
        return f"{d / n:.2f}" if n else "n/a"

    names = [v[0] for v in VARIANTS]
    heads = {v[0]: v[3] for v in VARIANTS}
    md = [f"### nats-server vs distri, messaging — {time.strftime('%Y-%m-%d')}", ""]
    md.append(f"Machine: {cpu_model()}, {os.cpu_count()} CPUs, Linux {platform.release()}; "
              f"load average {meta['load_before']} before, {meta['load_after']} after. "
              f"{meta['nats_version']}; distri `{meta['distri_version']}`. Load generator: "
              f"`bench/msg_bench` (one thread, on the same machine: it competes with the server "
              f"for the CPU). {SIZE}-byte payloads, {args.seconds:g} s per run, median of "
              f"{args.repeat} rotated run(s)."
              + (" Pinned: each server on CPU 1, msg_bench on CPU 0." if args.pin else ""))
    md.append("")
    md.append("| scenario | nats | distri | distri/nats | distri, fast client parser | "
              "distri/nats |")
    md.append("|---|---:|---:|---:|---:|---:|")

    def row(label, field, fmt):
        n = med(results, "nats", key, field)
        d = med(results, "distri", key, field)
        f = med(results, "distri-fast", key, field)
        return (f"| {label} | {fmt.format(n)} | {fmt.format(d)} | {ratio(d, n)} | "
                f"{fmt.format(f)} | {ratio(f, n)} |")

    for key, label, _, unit in scenarios:
        md.append(row(f"{label} ({unit})", "rate", "{:,.0f}"))
    for key, label, _, _ in scenarios:
        if key.startswith("rr"):
            md.append(row(f"{label}: latency p50 (µs, lower is better)", "p50_us", "{:,.1f}"))
            md.append(row(f"{label}: latency p99 (µs, lower is better)", "p99_us", "{:,.1f}"))
    md.append("")
    md.append("\"distri\": msg_bench reads distri's replies with `distri::protocol::ParseValue`; "
              "\"fast client parser\": it reads the hot frames in place, at about the CPU cost "
              "of its NATS parser, so that column compares the servers.")
    md.append("")
    md.append("Where the CPU went (medians): the server's user+system time per message delivered "
              "or round trip (lower is better); the cores the server and msg_bench kept busy; "
              "what other processes on the machine used meanwhile (noise).")
    md.append("")
    md.append("| scenario | " + " | ".join(f"server µs/msg, {heads[n]}" for n in names) + " | "
              + " | ".join(f"server cores, {heads[n]}" for n in names) + " | "
              + " | ".join(f"msg_bench cores, {heads[n]}" for n in names)
              + " | other cores (max) |")
    md.append("|---|" + "---:|" * (3 * len(names) + 1))
    for key, label, _, _ in scenarios:
        cells = [f"{med(results, n, key, 'server_us_per_msg'):.3f}" for n in names]
        cells += [f"{med(results, n, key, 'server_cores'):.2f}" for n in names]
        cells += [f"{med(results, n, key, 'client_cores'):.2f}" for n in names]
        cells.append(f"{max(med(results, n, key, 'other_cores') for n in names):.2f}")
        md.append(f"| {label} | " + " | ".join(cells) + " |")
    md.append("")
    md.append(f"Reproduce: `{meta['command']}`")
    return "\n".join(md)


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--distri", default=str(REPO / "build" / "release" / "distri"))
    ap.add_argument("--msg-bench", default=str(REPO / "build" / "release" / "bench" / "msg_bench"))
    ap.add_argument("--nats-server", default=shutil.which("nats-server") or "/usr/sbin/nats-server")
    ap.add_argument("--repeat", type=int, default=3, help="alternating runs; medians reported")
    ap.add_argument("--seconds", type=float, default=3.0, help="production time per run")
    ap.add_argument("--max-msgs", type=int, default=50_000_000, help="cap on messages per run")
    ap.add_argument("--window", type=int, default=3_000,
                    help="fan-out: most messages the publisher may be ahead of the slowest "
                    "subscriber (default 3,000, about 300 KB; the deep-backlog row uses 30,000)")
    ap.add_argument("--only", help="comma-separated scenario keys: "
                    + ",".join(s[0] for s in SCENARIOS))
    ap.add_argument("--pin", action="store_true",
                    help="pin each server to CPU 1 and msg_bench to CPU 0 (taskset): each "
                    "server then gets exactly one core, whatever its thread count")
    ap.add_argument("--quiet", type=float, default=0.3,
                    help="before each run wait until other processes use at most this many "
                    "cores (0 = don't wait; default 0.3)")
    ap.add_argument("--quiet-wait", type=float, default=20,
                    help="longest wait for --quiet, seconds (then run anyway; the report "
                    "shows the background load)")
    ap.add_argument("--quick", action="store_true", help="1 s runs, 1 repeat: a smoke run")
    ap.add_argument("--markdown", help="also write the markdown report to this file")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.repeat = 1.0, 1
    args.pin_server, args.pin_client = [], []
    if args.pin:
        if not shutil.which("taskset") or (os.cpu_count() or 1) < 2:
            raise SystemExit("--pin needs taskset and at least 2 CPUs")
        args.pin_server, args.pin_client = ["taskset", "-c", "1"], ["taskset", "-c", "0"]
    scenarios = SCENARIOS
    if args.only:
        keep = set(args.only.split(","))
        scenarios = [s for s in SCENARIOS if s[0] in keep]
    for path, what in ((args.distri, "distri binary"), (args.msg_bench, "msg_bench"),
                       (args.nats_server, "nats-server")):
        if not os.access(path, os.X_OK):
            raise SystemExit(f"{what} not found at {path} (see --help for how to build; "
                             f"Debian: apt-get install nats-server)")

    owned = Owned()

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        ndir, ddir = owned.tempdir("bench-nats-"), owned.tempdir("bench-distri-")
        servers = {
            "nats": Server("nats", lambda port: [*args.pin_server, args.nats_server,
                                                 "-a", "127.0.0.1", "-p", str(port)],
                           owned, ndir).start(),
            "distri": Server("distri", lambda port: [
                *args.pin_server, args.distri, "serve", "--port", str(port), "--http-port", str(free_port()),
                "--bind", "127.0.0.1", "--data", str(ddir / "data")], owned, ddir).start(),
        }
        print(f"nats-server pid {servers['nats'].proc.pid} port {servers['nats'].port}; "
              f"distri pid {servers['distri'].proc.pid} port {servers['distri'].port}",
              file=sys.stderr)
        meta = {"load_before": loadavg(),
                "nats_version": version_of([args.nats_server, "--version"]),
                "distri_version": version_of([args.distri, "--version"]),
                "command": " ".join(["bench/nats_compare.py", *sys.argv[1:]])}
        results = {}
        for rep in range(args.repeat):
            # Rotate which variant goes first, so drift in the machine's state is shared.
            order = VARIANTS[rep % len(VARIANTS):] + VARIANTS[:rep % len(VARIANTS)]
            for key, label, scenario_args, unit in scenarios:
                for name, server, extra, _ in order:
                    out = run_one(args, servers[server], [*scenario_args, *extra])
                    results.setdefault((name, key), []).append(out)
                    lat = (f" p50 {float(out['p50_us']):.1f} µs p99 {float(out['p99_us']):.1f} µs"
                           if "p50_us" in out else "")
                    print(f"run {rep + 1}/{args.repeat} {name:11} {label}: "
                          f"{float(out['rate']):,.0f} {unit}{lat}; server "
                          f"{out['server_us_per_msg']:.3f} µs/msg, {out['server_cores']:.2f} "
                          f"cores; msg_bench {out['client_cores']:.2f} cores; other processes "
                          f"{out['other_cores']:.2f} cores",
                          file=sys.stderr)
        meta["load_after"] = loadavg()
        md = render(results, args, meta, scenarios)
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
