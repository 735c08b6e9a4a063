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
hot frames (as cheap for the load generator as its NATS parser; the fair server comparison).
It also reports the CPU time each server process used per message (from /proc/PID/stat), which
is less sensitive than wall-clock rates to other load on the machine.

Caveat for small machines: the load generator (one thread) runs on the same machine and takes
up to one core away from the server; on a 2-core box that matters for nats-server, which
would otherwise use both cores, more than for distri, whose event loop is one thread.

--nodes 3 (issue 11): three nats-server processes, each with a cluster block routing to the
other two, against three distri nodes formed into one cluster (--cluster-secret-file, --join),
all on this machine. Node A, B, C are the first, second and third of each. Scenarios:
  fan10        pub/sub 1->10: the publisher on A, 10 subscribers round robin over A, B, C
  fan1         pub/sub 1->1: publisher on A, subscriber on B
  rr10, rr1    request/reply: 10 (or 1) callers on A, 2 workers on B
  fan10-local, rr10-local   the same with every connection on A (a baseline; not by default)
Before measuring, msg_bench probes until every subscriber and caller is reached (a
subscription or worker made on B is known on A a moment later), up to --ready-timeout s; a
run in which that does not happen, or in which any subscriber misses, repeats or reorders a
message, is reported as FAILED with msg_bench's reason, never as a rate. Server CPU per
message is given for each process (A+B+C) and in total.

Usage
  bench/nats_compare.py [--distri build/release/distri] [--msg-bench build/release/bench/msg_bench]
                        [--nodes 1|3] [--only fan10,rr10] [--repeat 3] [--seconds 3] [--quick]
                        [--markdown out.md]

Build first:  cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release \
                -DDISTRI_TESTS=OFF -DDISTRI_BENCH=ON && ninja -C build/release
Needs nats-server (Debian's nats-server; scripts/install-deps.sh --bench). Every process it
starts is stopped by PID on exit, including on Ctrl-C; temp dirs are removed. All traffic
stays on 127.0.0.1.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import namedtuple
from pathlib import Path

from benchlib import (Owned, busy_seconds, children_cpu, cpu_model, distri_cluster_view,
                      distri_node_argv, free_port, loadavg, proc_cpu_seconds, version_of,
                      wait_quiet, write_cluster_secret)

REPO = Path(__file__).resolve().parent.parent
SIZE = 64
NODE_NAMES = "ABC"

# key, label, msg_bench arguments, unit of `rate`; pub: the node (index) of the publisher or
# the callers; subs: the nodes the subscribers or workers are spread over, round robin.
# Later msg_bench flags override earlier ones, so a scenario can set its own --window.
Scenario = namedtuple("Scenario", "key label args unit pub subs", defaults=(0, (0,)))
FAN = ["--scenario", "fanout"]
RR = ["--scenario", "reqrep", "--workers", "2"]
DELIVERED, TRIPS = "msgs/s delivered", "round trips/s"

SCENARIOS = [
    Scenario("pub", "publish-only, 1 publisher", ["--scenario", "pub"], "msgs/s"),
    Scenario("fan1", "pub/sub 1→1", [*FAN, "--subs", "1"], DELIVERED),
    Scenario("fan10", "pub/sub 1→10", [*FAN, "--subs", "10"], DELIVERED),
    Scenario("fan10deep", "pub/sub 1→10, deep backlog (window 30,000 ≈ 3 MB per subscriber)",
             [*FAN, "--subs", "10", "--window", "30000"], DELIVERED),
    Scenario("rr10", "request/reply, 10 callers, 2 workers", [*RR, "--callers", "10"], TRIPS),
    Scenario("rr1", "request/reply, 1 caller, 2 workers", [*RR, "--callers", "1"], TRIPS),
]

# --nodes 3: where each role connects is part of the scenario.
CLUSTER_SCENARIOS = [
    Scenario("fan10", "pub/sub 1→10, publisher on A, subscribers over A, B, C (4+3+3)",
             [*FAN, "--subs", "10"], DELIVERED, 0, (0, 1, 2)),
    Scenario("fan1", "pub/sub 1→1, publisher on A, subscriber on B", [*FAN, "--subs", "1"],
             DELIVERED, 0, (1,)),
    Scenario("rr10", "request/reply, 10 callers on A, 2 workers on B",
             [*RR, "--callers", "10"], TRIPS, 0, (1,)),
    Scenario("rr1", "request/reply, 1 caller on A, 2 workers on B", [*RR, "--callers", "1"],
             TRIPS, 0, (1,)),
    Scenario("fan10-local", "pub/sub 1→10, all on A", [*FAN, "--subs", "10"], DELIVERED),
    Scenario("rr10-local", "request/reply, 10 callers and 2 workers, all on A",
             [*RR, "--callers", "10"], TRIPS),
]
CLUSTER_DEFAULT = "fan10,fan1,rr10,rr1"

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

class PortInUse(Exception):
    pass


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


def wait_until(predicate, timeout, what, system):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        system.check_alive()
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    raise SystemExit(f"{system.name}: {what} within {timeout:g} s\n{system.log_tails()}")


class Node:
    """One server process of a system, and the client port it listens on."""

    def __init__(self, proc, port, workdir):
        self.proc, self.port, self.workdir = proc, port, workdir

    def log_tail(self, n=3000):
        return (self.workdir / "server.log").read_text(errors="replace")[-n:]


class System:
    """nats-server or distri: one process, or three forming a cluster."""

    def __init__(self, name, owned):
        self.name, self.owned, self.nodes = name, owned, []

    @property
    def ports(self):
        return [n.port for n in self.nodes]

    def spawn(self, argv, port, workdir, timeout=20):
        """Starts one process and waits until its client port answers."""
        node = Node(self.owned.spawn(argv, workdir / "server.log"), port, workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and node.proc.poll() is None:
            if ready(self.name, port):
                self.nodes.append(node)
                return node
            time.sleep(0.02)
        self.owned.stop(node.proc)
        log = node.log_tail()
        if "in use" in log.lower():
            raise PortInUse(log)
        raise SystemExit(f"{self.name} did not start; log:\n{log}")

    def cpu_seconds(self):
        """user+system seconds of each process (all threads)."""
        return [proc_cpu_seconds(n.proc.pid) for n in self.nodes]

    def check_alive(self):
        for i, n in enumerate(self.nodes):
            if n.proc.poll() is not None:
                raise SystemExit(f"{self.name} node {NODE_NAMES[i]} exited with "
                                 f"{n.proc.returncode}; log:\n{n.log_tail()}")

    def log_tails(self):
        return "\n".join(f"--- {self.name} {NODE_NAMES[i]} ---\n{n.log_tail(1500)}"
                         for i, n in enumerate(self.nodes))


def start_single(name, argv_for_port, owned, workdir):
    """One process on a free port (retried: a port can be taken between probe and bind)."""
    system = System(name, owned)
    last = ""
    for _ in range(5):
        try:
            port = free_port()
            system.spawn(argv_for_port(port), port, workdir)
            return system
        except PortInUse as e:
            last = str(e)
    raise SystemExit(f"{name} did not start (port in use five times); log:\n{last[-3000:]}")


def nats_routes(monitor_port):
    """How many routes a nats-server has up, from its monitoring endpoint."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor_port}/routez", timeout=1) as r:
            return json.load(r).get("num_routes", 0)
    except (OSError, ValueError):
        return 0


def start_nats_cluster(args, owned, base, count):
    """count nats-server processes, each with a cluster block whose routes name the others,
    up when every one has a route to every other."""
    system = System("nats", owned)
    ports = [[free_port() for _ in range(3)] for _ in range(count)]  # client, route, monitor
    for i, (port, route, monitor) in enumerate(ports):
        d = base / f"nats{NODE_NAMES[i]}"
        d.mkdir()
        routes = ", ".join(f'"nats-route://127.0.0.1:{p[1]}"' for j, p in enumerate(ports)
                           if j != i)
        (d / "nats.conf").write_text(
            f"server_name: bench{NODE_NAMES[i]}\n"
            f"listen: 127.0.0.1:{port}\n"
            f"http: 127.0.0.1:{monitor}\n"
            f"cluster {{\n  name: bench\n  listen: 127.0.0.1:{route}\n"
            f"  routes: [{routes}]\n}}\n")
        system.spawn([args.nats_server, "-c", str(d / "nats.conf")], port, d)
    wait_until(lambda: all(nats_routes(p[2]) >= count - 1 for p in ports), 30,
               "routes between all nodes not up", system)
    return system


def start_distri_cluster(args, owned, base, count):
    """count distri nodes in one cluster: the first alone, each next one joining through the
    first once the previous is a voter; up when distri_cluster_view says so."""
    system = System("distri", owned)
    secret = write_cluster_secret(base / "cluster.secret")
    cluster_ports = [free_port() for _ in range(count)]
    for i in range(count):
        d = base / f"distri{NODE_NAMES[i]}"
        d.mkdir()
        port = free_port()
        argv = distri_node_argv(args.distri, d / "data", port, free_port(), cluster_ports[i],
                                secret, join=cluster_ports[0] if i else None)
        system.spawn(argv, port, d)
        wait_until(lambda: distri_cluster_view(system.ports), 60,
                   f"node {NODE_NAMES[i]} not a voter with live links", system)
    return system


# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------

def run_one(args, system, scenario, extra):
    """One msg_bench run. Returns its key=value output plus CPU figures, or {"failed": why}
    when msg_bench reports wrong or missing deliveries, a stall or no readiness."""
    proto = "nats" if system.name == "nats" else "resp"
    ports = system.ports
    argv = [*args.pin_client, args.msg_bench, "--proto", proto,
            "--pub-port", str(ports[scenario.pub]),
            "--sub-ports", ",".join(str(ports[i]) for i in scenario.subs),
            "--size", str(SIZE), "--seconds", str(args.seconds), "--msgs", str(args.max_msgs),
            "--window", str(args.window), "--ready-timeout", str(args.ready_timeout),
            "--stall", str(args.stall), *scenario.args, *extra]
    if args.quiet > 0:
        wait_quiet(args.quiet, args.quiet_wait)
    cpu0, busy0, child0, t0 = system.cpu_seconds(), busy_seconds(), children_cpu(), time.monotonic()
    try:
        p = subprocess.run(argv, capture_output=True, text=True,
                           timeout=args.seconds * 10 + args.ready_timeout + args.stall + 60)
    except subprocess.TimeoutExpired:
        return {"failed": "msg_bench did not finish in time (killed)"}
    wall = time.monotonic() - t0
    cpu = [b - a for a, b in zip(cpu0, system.cpu_seconds())]
    other = busy_seconds() - busy0 - sum(cpu) - (children_cpu() - child0)
    system.check_alive()
    if p.returncode != 0:
        why = (p.stderr.strip().splitlines() or [""])[-1].removeprefix("msg_bench: ")
        if p.returncode not in (2, 3):  # a usage error or a crash: the harness is wrong
            raise SystemExit(f"msg_bench against {system.name} failed ({p.returncode}):\n"
                             f"{' '.join(map(str, argv))}\n{p.stdout}{p.stderr}")
        return {"failed": why or f"exit {p.returncode}"}
    out = dict(kv.split("=", 1) for kv in p.stdout.split())
    units = int(out.get("delivered", out.get("calls", 0)))
    out["server_cpu_s"] = sum(cpu)
    out["server_cores"] = sum(cpu) / float(out["seconds"])
    out["client_cores"] = float(out["client_cpu_s"]) / float(out["seconds"])
    out["other_cores"] = max(0.0, other / wall)  # everything else on the machine
    out["server_us_per_msg"] = sum(cpu) * 1e6 / units if units else float("nan")
    out["node_us_per_msg"] = [c * 1e6 / units if units else float("nan") for c in cpu]
    out["client_us_per_msg"] = float(out["client_cpu_s"]) * 1e6 / units if units else float("nan")
    return out


def describe_run(out, unit):
    if "failed" in out:
        return f"FAILED: {out['failed']}"
    lat = (f" p50 {float(out['p50_us']):.1f} µs p99 {float(out['p99_us']):.1f} µs"
           if "p50_us" in out else "")
    nodes = (" (" + " + ".join(f"{x:.3f}" for x in out["node_us_per_msg"]) + ")"
             if len(out["node_us_per_msg"]) > 1 else "")
    return (f"{float(out['rate']):,.0f} {unit}{lat}; server {out['server_us_per_msg']:.3f}"
            f"{nodes} µs/msg, {out['server_cores']:.2f} cores; msg_bench "
            f"{out['client_cores']:.2f} cores; ready after {float(out['ready_ms']):.0f} ms; "
            f"other processes {out['other_cores']:.2f} cores")


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------

def ok_runs(results, name, key):
    return [r for r in results[(name, key)] if "failed" not in r]


def failures(results, name, key):
    return [r["failed"] for r in results[(name, key)] if "failed" in r]


def med(results, name, key, field):
    """Median over the runs that succeeded; None when any run failed (a failure is never
    averaged away)."""
    if failures(results, name, key):
        return None
    return statistics.median(float(r[field]) for r in ok_runs(results, name, key))


def render(results, args, meta, scenarios):
    def ratio(d, n):
        return f"{d / n:.2f}" if d is not None and n else "n/a"

    def cell(v, fmt):
        return "FAILED" if v is None else fmt.format(v)

    names = [v[0] for v in VARIANTS]
    heads = {v[0]: v[3] for v in VARIANTS}
    cluster = args.nodes > 1
    title = ("3-node nats-server cluster vs 3-node distri cluster, messaging" if cluster
             else "nats-server vs distri, messaging")
    md = [f"### {title} — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", ""]
    md.append(f"Machine: {cpu_model()}, {os.cpu_count()} CPUs, Linux {platform.release()}; "
              f"load average {meta['load_before']} before, {meta['load_after']} after. "
              f"{meta['nats_version']}; distri `{meta['distri_version']}`. Load generator: "
              f"`bench/msg_bench` (one thread, on the same machine: it competes with the server "
              f"for the CPU). {SIZE}-byte payloads, {args.seconds:g} s per run, median of "
              f"{args.repeat} rotated run(s)."
              + (" Pinned: each server on CPU 1, msg_bench on CPU 0." if args.pin else ""))
    if cluster:
        md.append("")
        md.append("nats-server: three processes, each with a `cluster` block whose `routes` name "
                  "the other two. distri: three nodes in one Raft cluster "
                  "(`--cluster-secret-file`, `--join`). Both on 127.0.0.1; A, B, C are the "
                  "first, second, third node of each. Every subscriber checks that it gets "
                  "every message once and in order; a run where that fails, or where a "
                  "subscriber or caller is not reached within "
                  f"{args.ready_timeout:g} s, shows as FAILED.")
    md.append("")
    md.append("| scenario | nats | distri | distri/nats | distri, fast client parser | "
              "distri/nats |")
    md.append("|---|---:|---:|---:|---:|---:|")

    def row(label, key, field, fmt):
        n = med(results, "nats", key, field)
        d = med(results, "distri", key, field)
        f = med(results, "distri-fast", key, field)
        return (f"| {label} | {cell(n, fmt)} | {cell(d, fmt)} | {ratio(d, n)} | "
                f"{cell(f, fmt)} | {ratio(f, n)} |")

    for sc in scenarios:
        md.append(row(f"{sc.label} ({sc.unit})", sc.key, "rate", "{:,.0f}"))
    for sc in scenarios:
        if sc.key.startswith("rr"):
            md.append(row(f"{sc.label}: latency p50 (µs, lower is better)", sc.key, "p50_us",
                          "{:,.1f}"))
            md.append(row(f"{sc.label}: latency p99 (µs, lower is better)", sc.key, "p99_us",
                          "{:,.1f}"))
    md.append("")
    failed = [(heads[n], sc.label, failures(results, n, sc.key), len(results[(n, sc.key)]))
              for sc in scenarios for n in names if failures(results, n, sc.key)]
    if failed:
        md.append("Failed runs (msg_bench's reason, from the first failed run):")
        md.append("")
        md.extend(f"* {head}, {label}: {len(whys)} of {runs} run(s) failed: {whys[0]}"
                  for head, label, whys, runs in failed)
        md.append("")
    md.append("\"distri\": msg_bench reads distri's replies with `distri::protocol::ParseValue`; "
              "\"fast client parser\": it reads the hot frames in place, at about the CPU cost "
              "of its NATS parser, so that column compares the servers.")
    md.append("")
    md.append("Where the CPU went (medians): the server's user+system time per message delivered "
              "or round trip (lower is better"
              + ("; all three processes, then A + B + C" if cluster else "")
              + "); the cores the server"
              + ("s" if cluster else "") + " and msg_bench kept busy; what other processes on "
              "the machine used meanwhile (noise).")
    md.append("")
    md.append("| scenario | " + " | ".join(f"server µs/msg, {heads[n]}" for n in names) + " | "
              + " | ".join(f"server cores, {heads[n]}" for n in names) + " | "
              + " | ".join(f"msg_bench cores, {heads[n]}" for n in names)
              + " | other cores (max) |")
    md.append("|---|" + "---:|" * (3 * len(names) + 1))

    def per_msg(n, key):
        total = med(results, n, key, "server_us_per_msg")
        if total is None:
            return "FAILED"
        if not cluster:
            return f"{total:.3f}"
        runs = ok_runs(results, n, key)
        parts = [statistics.median(r["node_us_per_msg"][i] for r in runs)
                 for i in range(args.nodes)]
        return f"{total:.3f} ({' + '.join(f'{x:.3f}' for x in parts)})"

    for sc in scenarios:
        cells = [per_msg(n, sc.key) for n in names]
        cells += [cell(med(results, n, sc.key, "server_cores"), "{:.2f}") for n in names]
        cells += [cell(med(results, n, sc.key, "client_cores"), "{:.2f}") for n in names]
        others = [med(results, n, sc.key, "other_cores") for n in names]
        others = [o for o in others if o is not None]
        cells.append(f"{max(others):.2f}" if others else "n/a")
        md.append(f"| {sc.label} | " + " | ".join(cells) + " |")
    md.append("")
    md.append(f"Reproduce: `{meta['command']}`")
    return "\n".join(md)


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--distri", default=str(REPO / "build" / "release" / "distri"))
    ap.add_argument("--msg-bench", default=str(REPO / "build" / "release" / "bench" / "msg_bench"))
    ap.add_argument("--nats-server", default=shutil.which("nats-server") or "/usr/sbin/nats-server")
    ap.add_argument("--nodes", type=int, choices=(1, 3), default=1,
                    help="1: one process each (default); 3: a 3-node cluster each")
    ap.add_argument("--repeat", type=int, default=3, help="alternating runs; medians reported")
    ap.add_argument("--seconds", type=float, default=3.0, help="production time per run")
    ap.add_argument("--max-msgs", type=int, default=50_000_000, help="cap on messages per run")
    ap.add_argument("--window", type=int, default=3_000,
                    help="fan-out: most messages the publisher may be ahead of the slowest "
                    "subscriber (default 3,000, about 300 KB; the deep-backlog row uses 30,000)")
    ap.add_argument("--ready-timeout", type=float, default=10.0,
                    help="longest wait, per run, until every subscriber and caller is reached "
                    "(then the run fails)")
    ap.add_argument("--stall", type=float, default=10.0,
                    help="a run with no progress for this many seconds fails")
    ap.add_argument("--only", help="comma-separated scenario keys: "
                    + ",".join(s.key for s in SCENARIOS) + " (--nodes 1); "
                    + ",".join(s.key for s in CLUSTER_SCENARIOS)
                    + f" (--nodes 3; default {CLUSTER_DEFAULT})")
    ap.add_argument("--pin", action="store_true",
                    help="pin each server to CPU 1 and msg_bench to CPU 0 (taskset): each "
                    "server then gets exactly one core, whatever its thread count (--nodes 1)")
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
    if args.repeat < 1 or args.seconds <= 0 or args.ready_timeout <= 0 or args.stall <= 0:
        ap.error("--repeat, --seconds, --ready-timeout and --stall must be positive")
    args.pin_server, args.pin_client = [], []
    if args.pin:
        if args.nodes > 1:
            ap.error("--pin is for --nodes 1 (three servers cannot share one pinned core fairly)")
        if not shutil.which("taskset") or (os.cpu_count() or 1) < 2:
            ap.error("--pin needs taskset and at least 2 CPUs")
        args.pin_server, args.pin_client = ["taskset", "-c", "1"], ["taskset", "-c", "0"]
    pool = CLUSTER_SCENARIOS if args.nodes > 1 else SCENARIOS
    only = args.only or (CLUSTER_DEFAULT if args.nodes > 1 else None)
    args.scenarios = pool
    if only:
        keep = only.split(",")
        unknown = set(keep) - {s.key for s in pool}
        if unknown:
            ap.error(f"unknown scenario(s) for --nodes {args.nodes}: {','.join(sorted(unknown))}")
        args.scenarios = [s for s in pool if s.key in keep]
    for path, what in ((args.distri, "distri binary"), (args.msg_bench, "msg_bench"),
                       (args.nats_server, "nats-server")):
        if not os.access(path, os.X_OK):
            ap.error(f"{what} not found at {path} (see --help for how to build; "
                     f"scripts/install-deps.sh --bench installs nats-server)")
    return args


def start_systems(args, owned):
    ndir, ddir = owned.tempdir("bench-nats-"), owned.tempdir("bench-distri-")
    if args.nodes > 1:
        return {"nats": start_nats_cluster(args, owned, ndir, args.nodes),
                "distri": start_distri_cluster(args, owned, ddir, args.nodes)}
    return {
        "nats": start_single("nats", lambda port: [*args.pin_server, args.nats_server,
                                                   "-a", "127.0.0.1", "-p", str(port)],
                             owned, ndir),
        "distri": start_single("distri", lambda port: [
            *args.pin_server, *distri_node_argv(args.distri, ddir / "data", port, free_port())],
            owned, ddir),
    }


def main():
    args = parse_args()
    owned = Owned()

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        systems = start_systems(args, owned)
        for s in systems.values():
            print(f"{s.name}: " + ", ".join(f"{NODE_NAMES[i]} pid {n.proc.pid} port {n.port}"
                                            for i, n in enumerate(s.nodes)), file=sys.stderr)
        meta = {"load_before": loadavg(),
                "nats_version": version_of([args.nats_server, "--version"]),
                "distri_version": version_of([args.distri, "--version"]),
                "command": " ".join(["bench/nats_compare.py", *sys.argv[1:]])}
        results = {}
        for rep in range(args.repeat):
            # Rotate which variant goes first, so drift in the machine's state is shared.
            order = VARIANTS[rep % len(VARIANTS):] + VARIANTS[:rep % len(VARIANTS)]
            for sc in args.scenarios:
                for name, server, extra, _ in order:
                    out = run_one(args, systems[server], sc, extra)
                    results.setdefault((name, sc.key), []).append(out)
                    print(f"run {rep + 1}/{args.repeat} {name:11} {sc.label}: "
                          f"{describe_run(out, sc.unit)}", file=sys.stderr)
        meta["load_after"] = loadavg()
        md = render(results, args, meta, args.scenarios)
        print(md)
        if args.markdown:
            Path(args.markdown).write_text(md + "\n")
        if any("failed" in r for runs in results.values() for r in runs):
            return 1
    except KeyboardInterrupt:
        print("interrupted; stopping servers", file=sys.stderr)
        return 130
    finally:
        owned.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
