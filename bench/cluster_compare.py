#!/usr/bin/env python3
"""Side-by-side cluster run: Debian's etcd (3 nodes) vs Distri (3 nodes), same machine, same load.

What it measures (issue 10, "Benchmark")
  1. Durable puts of 100-byte values with 64 and 256 requests in flight: N workers, each
     with exactly one request outstanding (bench/loadgen, Go: Distri over RESP, one
     connection per worker; etcd through its official client, workers sharing
     --etcd-conns gRPC connections per node, which multiplex their requests). Throughput
     and p50/p99 latency of each, and the ratio Distri/etcd, median of --repeat
     alternating runs.
     --targets all: workers spread evenly over the three nodes (followers forward to the
     leader, in both systems); leader: every worker talks to the leader.
  2. Failover: kill -9 the leader, then time until the first write acknowledged through
     another node (from just before the kill to the acknowledgement), --kills times; the
     killed node is restarted on its data directory each time so the cluster stays at 3.
     Distri always; etcd with --etcd-kills N.
  3. --check-fsync: a short extra load run per system with `strace -f -c` on every node,
     counting fsync/fdatasync calls against acknowledged writes (its throughput is not
     reported: strace slows the servers).

Durability
  etcd 3.4: the WAL is fsynced before a Raft message or a client acknowledgement depends on
  it (it has no switch to turn that off in 3.4; --unsafe-no-fsync came in 3.5).
  Distri: --fsync always (the default): acknowledged only after a majority has fsynced.

If the Distri binary has no cluster flags (the single-node build), Distri runs as ONE node
and every Distri figure is labelled "single node": that is not the comparison the issue asks
for, only a way to develop the script before the cluster exists.

Usage
  bench/cluster_compare.py [--distri /work/bin/distri] [--inflight 64,256] [--targets all]
                           [--repeat 3] [--seconds 10] [--kills 20] [--etcd-kills 0]
                           [--check-fsync] [--markdown out.md] [--skip-put]

Needs etcd (Debian: etcd-server; `scripts/install-deps.sh --bench` installs it) and Go (it
builds bench/loadgen into build/bench/loadgen). Every process it starts is stopped by PID
on exit, including on Ctrl-C; temp dirs are removed unless --workdir is given. All traffic
goes to 127.0.0.1.
"""

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import (Owned, loadavg, cpu_model, distri_node_argv, free_port, version_of,
                      write_cluster_secret)

REPO = Path(__file__).resolve().parent.parent
LOADGEN_SRC = REPO / "bench" / "loadgen"
VALUE_SIZE = 100


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# The load generator
# ---------------------------------------------------------------------------

def build_loadgen(out):
    if not shutil.which("go"):
        raise SystemExit("go not found: bench/loadgen is a Go program (Go >= 1.22)")
    out.parent.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["go", "build", "-o", str(out), "."], cwd=LOADGEN_SRC,
                       capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise SystemExit(f"building bench/loadgen failed:\n{p.stderr}")
    return out


class Loadgen:
    def __init__(self, path):
        self.path = str(path)

    def run_json(self, args, timeout):
        p = subprocess.run([self.path, *args], capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"loadgen {' '.join(args)} failed: {p.stderr.strip()}")
        return json.loads(p.stdout)

    def info(self, system, endpoints):
        return self.run_json(["info", "--system", system, "--endpoints", ",".join(endpoints)],
                             timeout=30)

    def put(self, system, endpoints, inflight, target, seconds, warmup, etcd_conns):
        return self.run_json(["put", "--system", system, "--endpoints", ",".join(endpoints),
                              "--inflight", str(inflight), "--target", target,
                              "--duration", f"{seconds}s", "--warmup", f"{warmup}s",
                              "--value-size", str(VALUE_SIZE),
                              "--etcd-conns", str(etcd_conns)],
                             timeout=seconds + warmup + 120)


# ---------------------------------------------------------------------------
# Clusters we own (stopped by PID, never by name)
# ---------------------------------------------------------------------------

class NotHealthy(Exception):
    """A cluster did not become healthy in time (see Cluster.healthy)."""


class Node:
    def __init__(self, name, argv, workdir, client_port):
        self.name = name
        self.argv = argv
        self.workdir = workdir
        self.client_port = client_port
        self.proc = None

    @property
    def endpoint(self):
        return f"127.0.0.1:{self.client_port}"


class Cluster:
    """Three nodes of one system. healthy() is the single notion of "ready": every node
    answers, all name the same leader, and every node has applied what the leader has
    committed (so a restarted node has caught up)."""

    def __init__(self, system, owned, loadgen, label):
        self.system = system
        self.owned = owned
        self.loadgen = loadgen
        self.label = label
        self.nodes = []

    @property
    def endpoints(self):
        return [n.endpoint for n in self.nodes]

    def start_node(self, node):
        node.proc = self.owned.spawn(node.argv, node.workdir / "server.log", cwd=node.workdir,
                                     append=True)

    def infos(self, nodes=None):
        nodes = nodes or self.nodes
        return self.loadgen.info(self.system, [n.endpoint for n in nodes])

    def healthy(self, nodes=None, voters=None):
        nodes = nodes or self.nodes
        infos = self.infos(nodes)
        if not all(i["ok"] for i in infos):
            return None
        if len(infos) == 1 and infos[0].get("single"):
            return infos
        leaders = {i["leader_id"] for i in infos}
        if len(leaders) != 1 or leaders & {"", "0", "<nil>", "none", "None"}:
            return None
        lead = [i for i in infos if i["role"] == "leader"]
        if len(lead) != 1:
            return None
        if voters and self.system == "distri" and lead[0]["voter_count"] != voters:
            return None
        if any(i["applied_index"] < lead[0]["commit_index"] for i in infos):
            return None
        return infos

    def wait_healthy(self, timeout=60, nodes=None, voters=None):
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            for n in nodes or self.nodes:
                if n.proc.poll() is not None:
                    tail = (n.workdir / "server.log").read_text(errors="replace")[-3000:]
                    raise NotHealthy(f"{self.label} node {n.name} exited with "
                                     f"{n.proc.returncode}; log tail:\n{tail}")
            try:
                infos = self.healthy(nodes, voters)
                if infos:
                    return infos
            except RuntimeError as e:
                last_error = e
            time.sleep(0.05)
        infos = None
        try:
            infos = self.infos(nodes)
        except RuntimeError as e:
            last_error = e
        raise NotHealthy(f"{self.label}: not healthy after {timeout}s; last view: {infos}; "
                         f"last error: {last_error}")

    def stop(self):
        for n in self.nodes:
            self.owned.stop(n.proc)

    def leader(self):
        infos = self.wait_healthy()
        for node, info in zip(self.nodes, infos):
            if info["role"] == "leader":
                return node
        raise NotHealthy(f"{self.label}: no leader in {infos}")


def etcd_cluster(etcd_bin, owned, loadgen, base):
    c = Cluster("etcd", owned, loadgen, "etcd")
    peer_ports = [free_port() for _ in range(3)]
    client_ports = [free_port() for _ in range(3)]
    initial = ",".join(f"e{i}=http://127.0.0.1:{peer_ports[i]}" for i in range(3))
    token = "bench-" + secrets.token_hex(4)
    for i in range(3):
        d = base / f"etcd{i}"
        d.mkdir()
        argv = [etcd_bin, "--name", f"e{i}", "--data-dir", str(d / "data"),
                "--listen-client-urls", f"http://127.0.0.1:{client_ports[i]}",
                "--advertise-client-urls", f"http://127.0.0.1:{client_ports[i]}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer_ports[i]}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_ports[i]}",
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", token, "--logger", "zap", "--log-level", "warn"]
        c.nodes.append(Node(f"e{i}", argv, d, client_ports[i]))
    for n in c.nodes:
        c.start_node(n)
    c.wait_healthy()
    return c


def distri_has_cluster(distri_bin):
    p = subprocess.run([distri_bin, "serve", "--help"], capture_output=True, text=True,
                       timeout=10)
    return "--cluster-port" in (p.stdout + p.stderr)


def distri_cluster(distri_bin, owned, loadgen, base, cluster):
    label = "distri" if cluster else "distri (single node)"
    c = Cluster("distri", owned, loadgen, label)
    secret = write_cluster_secret(base / "cluster.secret")
    count = 3 if cluster else 1
    cluster_ports = [free_port() for _ in range(count)]
    for i in range(count):
        d = base / f"distri{i}"
        d.mkdir()
        port = free_port()
        argv = distri_node_argv(distri_bin, d / "data", port, free_port(),
                                cluster_ports[i] if cluster else None, secret,
                                join=cluster_ports[0] if i > 0 else None,
                                extra=["--fsync", "always"])
        c.nodes.append(Node(f"d{i}", argv, d, port))
    # One at a time: each joiner must be a voter before the next one joins.
    for i, n in enumerate(c.nodes):
        c.start_node(n)
        c.wait_healthy(nodes=c.nodes[:i + 1], voters=i + 1 if cluster else None)
    return c


# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------

def cpu_ticks(pid):
    """utime + stime of a process, in clock ticks (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


def run_puts(clusters, loadgen, args):
    """{(system, inflight, target): [result, ...]}, alternating which system goes first."""
    results = {}
    for rep in range(args.repeat):
        order = ["etcd", "distri"] if rep % 2 == 0 else ["distri", "etcd"]
        for inflight in args.inflight:
            for target in args.targets:
                for name in order:
                    c = clusters[name]
                    c.wait_healthy()
                    pids = [n.proc.pid for n in c.nodes]
                    ticks0, t0 = [cpu_ticks(p) for p in pids], time.monotonic()
                    r = loadgen.put(name, c.endpoints, inflight, target, args.seconds,
                                    args.warmup, args.etcd_conns)
                    # Cores the servers kept busy over the whole run (warm-up included).
                    wall = time.monotonic() - t0
                    hz = os.sysconf("SC_CLK_TCK")
                    r["server_cores"] = [round((cpu_ticks(p) - t) / hz / wall, 2)
                                         for p, t in zip(pids, ticks0)]
                    results.setdefault((name, inflight, target), []).append(r)
                    log(f"run {rep + 1}/{args.repeat} {c.label:22} inflight {inflight:4} "
                        f"target {target:6} {r['ops_per_sec']:10,.0f}/s p50 {r['p50_ms']:.2f} "
                        f"p99 {r['p99_ms']:.2f} ms errors {r['errors']} "
                        f"loadgen {r['loadgen_cores']:.2f} cores, servers "
                        f"{r['server_cores']} cores")
                    if r["errors"]:
                        log(f"  first error: {r['first_error']}")
    return results


def failover(cluster, loadgen_path, kills, settle):
    """kill -9 the leader `kills` times; ms from the kill to the first acknowledged write
    through a surviving node. The probe process keeps its connections across kills.
    Returns (times, failure): failure says why it stopped early (None if it did not)."""
    probe = subprocess.Popen([loadgen_path, "probe", "--system", cluster.system,
                              "--endpoints", ",".join(cluster.endpoints)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
    times = []
    failure = None
    try:
        for k in range(kills):
            try:
                victim = cluster.leader()
            except NotHealthy as e:
                failure = f"before kill {k + 1}: {str(e)[:1500]}"
                log(failure)
                break
            others = [n for n in cluster.nodes if n is not victim]
            via = others[k % len(others)]
            time.sleep(settle)  # a quiet cluster, as a real leader loss would find it
            t0 = time.monotonic_ns()
            os.kill(victim.proc.pid, signal.SIGKILL)
            probe.stdin.write(f"{via.endpoint} {t0}\n")
            probe.stdin.flush()
            line = probe.stdout.readline()
            if not line:
                raise SystemExit("failover probe exited")
            r = json.loads(line)
            victim.proc.wait(10)
            if r["ms"] < 0:
                failure = (f"kill {k + 1}: no write acknowledged through {via.name} within "
                           f"60 s after killing {victim.name}: {r}")
                log(failure)
                cluster.start_node(victim)
                break
            times.append(r["ms"])
            log(f"{cluster.label} kill {k + 1}/{kills}: leader {victim.name} killed, first "
                f"write acknowledged through {via.name} after {r['ms']:.0f} ms "
                f"({r['attempts']} attempts; errors: {r.get('errors') or []})")
            cluster.start_node(victim)
            try:
                cluster.wait_healthy(timeout=120, voters=3)
            except NotHealthy as e:
                failure = (f"after kill {k + 1} the restarted node {victim.name} did not "
                           f"rejoin within 120 s: {str(e)[:1500]}")
                log(failure)
                break
    finally:
        probe.stdin.close()
        try:
            probe.wait(10)
        except subprocess.TimeoutExpired:
            probe.kill()
            probe.wait()
    return times, failure


def check_fsync(cluster, loadgen, seconds=3):
    """strace every node during a short load of 64 in flight; returns per-node counts of
    fsync+fdatasync and the writes acknowledged."""
    if not shutil.which("strace"):
        return None
    tracers = []
    for n in cluster.nodes:
        out = n.workdir / "strace.txt"
        tracers.append((n, out, subprocess.Popen(
            ["strace", "-f", "-c", "-e", "trace=fsync,fdatasync,sync_file_range,msync",
             "-o", str(out), "-p", str(n.proc.pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)))
    time.sleep(1.0)  # strace attaches to every thread
    r = loadgen.put(cluster.system, cluster.endpoints, 64, "all", seconds, 0.5, 8)
    counts = {}
    for n, out, t in tracers:
        t.send_signal(signal.SIGINT)
        t.wait(30)
        calls = {}
        for line in out.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 5 and parts[-1] in ("fsync", "fdatasync", "sync_file_range",
                                                  "msync"):
                calls[parts[-1]] = int(parts[3])
        counts[n.name] = calls
    # strace counts over the whole load (warm-up included); loadgen counts the writes of
    # the measured window only, so writes per fsync are slightly understated.
    return {"ops_in_window": r["ops"], "window_s": seconds, "warmup_s": 0.5,
            "ops_per_sec": r["ops_per_sec"], "calls": counts}


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------

def med(rs, key):
    return statistics.median(r[key] for r in rs)


def render(results, fails, fsync, args, distri_label, versions, load_before, load_after):
    md = []
    when = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    md.append(f"### etcd vs Distri, 3 nodes each — {when}")
    md.append("")
    md.append(f"Machine: {cpu_model()}, {os.cpu_count()} CPUs (shared with other work: load "
              f"average {load_before} before, {load_after} after), Linux {platform.release()}. "
              f"{versions['etcd']}; distri `{args.distri}` ({distri_label}). Load generator: "
              f"bench/loadgen (Go), on the same two cores.")
    md.append("")
    if results:
        md.append(f"Durable puts of {VALUE_SIZE}-byte values over {args.keys_note}; "
                  f"{args.seconds} s measured after {args.warmup} s warm-up, median of "
                  f"{args.repeat} alternating run(s). Target `all`: workers spread over the "
                  f"three nodes; `leader`: all on the leader.")
        md.append("")
        md.append("| in flight | target | etcd ops/s | etcd p50 / p99 ms | distri ops/s | "
                  "distri p50 / p99 ms | distri/etcd |")
        md.append("|---:|---|---:|---:|---:|---:|---:|")
        for inflight in args.inflight:
            for target in args.targets:
                e = results[("etcd", inflight, target)]
                d = results[("distri", inflight, target)]
                eo, do = med(e, "ops_per_sec"), med(d, "ops_per_sec")
                md.append(f"| {inflight} | {target} | {eo:,.0f} | {med(e, 'p50_ms'):.2f} / "
                          f"{med(e, 'p99_ms'):.2f} | {do:,.0f} | {med(d, 'p50_ms'):.2f} / "
                          f"{med(d, 'p99_ms'):.2f} | {do / eo:.2f} |")
        md.append("")
        errs = {k: sum(r["errors"] for r in v) for k, v in results.items()}
        md.append("Errors during measured windows: " + ", ".join(
            f"{k[0]} {k[1]}/{k[2]}: {v}" for k, v in sorted(errs.items())) + ". Load generator "
                  "CPU (median cores): " + ", ".join(
            f"{k[0]} {k[1]}/{k[2]}: {med(v, 'loadgen_cores'):.2f}"
            for k, v in sorted(results.items())) + ". Server CPU over the run (median; all "
                  "nodes together, and the busiest node): " + ", ".join(
            f"{k[0]} {k[1]}/{k[2]}: {statistics.median(sum(r['server_cores']) for r in v):.2f}"
            f" ({statistics.median(max(r['server_cores']) for r in v):.2f})"
            for k, v in sorted(results.items())) + " cores.")
        md.append("")
    for name, (times, failure) in fails.items():
        if failure:
            md.append(f"Failover, {name}: STOPPED EARLY: {failure.splitlines()[0][:600]}")
            md.append("")
        if times:
            md.append(f"Failover, {name}: leader `kill -9` to the first write acknowledged "
                      f"through another node, {len(times)} kills: p50 "
                      f"{statistics.median(times):.0f} ms, max {max(times):.0f} ms, min "
                      f"{min(times):.0f} ms (all: {', '.join(f'{t:.0f}' for t in times)}).")
            md.append("")
    if fsync:
        for name, f in fsync.items():
            if f:
                md.append(f"fsync check, {name} (strace -f -c on every node, {f['warmup_s']} s "
                          f"+ {f['window_s']} s of 64 in flight, {f['ops_in_window']:,} writes "
                          f"acknowledged in the last {f['window_s']} s): " + "; ".join(
                              f"{node}: " + ", ".join(f"{c} {k}" for k, c in calls.items())
                              for node, calls in f["calls"].items()) + ".")
                md.append("")
    return "\n".join(md)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--distri", default="/work/bin/distri"
                    if os.access("/work/bin/distri", os.X_OK)
                    else str(REPO / "build" / "release" / "distri"))
    ap.add_argument("--etcd", default=shutil.which("etcd") or "/usr/bin/etcd")
    ap.add_argument("--inflight", default="64,256", help="requests in flight, comma-separated")
    ap.add_argument("--targets", default="all", help="all, leader, or all,leader")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0, help="measured window per run")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--etcd-conns", type=int, default=1,
                    help="etcd gRPC connections per node shared by the workers (default 1: "
                         "on 2 cores it beat 8 and 64, see docs/benchmarks.md)")
    ap.add_argument("--kills", type=int, default=20, help="Distri leader kills (0: skip)")
    ap.add_argument("--etcd-kills", type=int, default=0, help="etcd leader kills (0: skip)")
    ap.add_argument("--settle", type=float, default=0.5,
                    help="seconds of quiet before each kill")
    ap.add_argument("--check-fsync", action="store_true")
    ap.add_argument("--skip-put", action="store_true", help="only failover / fsync check")
    ap.add_argument("--workdir", help="keep data and logs here (default: a temp dir, removed)")
    ap.add_argument("--markdown", help="also write the markdown report to this file")
    ap.add_argument("--json", help="write every put run's loadgen result to this file")
    args = ap.parse_args()
    args.distri = str(Path(args.distri).resolve())
    args.inflight = [int(x) for x in args.inflight.split(",") if x]
    args.targets = [t for t in args.targets.split(",") if t]
    args.keys_note = "100,000 keys (`bench:N`)"
    if any(t not in ("all", "leader") for t in args.targets):
        raise SystemExit("--targets: all and/or leader")
    if not os.access(args.etcd, os.X_OK):
        raise SystemExit(f"etcd not found at {args.etcd} (scripts/install-deps.sh --bench, or "
                         f"apt-get install etcd-server)")
    if not os.access(args.distri, os.X_OK):
        raise SystemExit(f"distri binary not found at {args.distri} (pass --distri)")

    owned = Owned()

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        loadgen = Loadgen(build_loadgen(REPO / "build" / "bench" / "loadgen"))
        if args.workdir:
            base = Path(args.workdir)
            base.mkdir(parents=True, exist_ok=False)
        else:
            base = owned.tempdir("bench-cluster-")
        cluster_mode = distri_has_cluster(args.distri)
        distri_label = "3 nodes" if cluster_mode else "SINGLE NODE: no cluster flags in this build"
        log(f"distri: {args.distri} ({distri_label})")
        load_before = loadavg(3)
        etcd = etcd_cluster(args.etcd, owned, loadgen, base)
        log(f"etcd up: {etcd.endpoints} (pids {[n.proc.pid for n in etcd.nodes]})")
        distri = distri_cluster(args.distri, owned, loadgen, base, cluster_mode)
        log(f"{distri.label} up: {distri.endpoints} (pids {[n.proc.pid for n in distri.nodes]})")
        clusters = {"etcd": etcd, "distri": distri}

        results = {} if args.skip_put else run_puts(clusters, loadgen, args)
        if args.json:
            Path(args.json).write_text(json.dumps(
                [{"system": k[0], "inflight": k[1], "target": k[2], "runs": v}
                 for k, v in results.items()], indent=1) + "\n")
        fsync = None
        if args.check_fsync:
            fsync = {name: check_fsync(c, loadgen) for name, c in clusters.items()}
            log(f"fsync check: {fsync}")
        fails = {}
        if (args.kills and cluster_mode) or args.etcd_kills:
            # Fresh clusters: the failover figures should not depend on how much the put
            # runs left in the logs (each restart replays its node's log).
            etcd.stop()
            distri.stop()
            fbase = base / "failover"
            fbase.mkdir()
            if args.kills and cluster_mode:
                distri = distri_cluster(args.distri, owned, loadgen, fbase, cluster_mode)
                fails["distri"] = failover(distri, loadgen.path, args.kills, args.settle)
                distri.stop()
            if args.etcd_kills:
                etcd = etcd_cluster(args.etcd, owned, loadgen, fbase)
                fails["etcd"] = failover(etcd, loadgen.path, args.etcd_kills, args.settle)

        versions = {"etcd": version_of([args.etcd, "--version"])}
        md = render(results, fails, fsync, args, distri_label, versions, load_before, loadavg(3))
        print(md)
        if args.markdown:
            Path(args.markdown).write_text(md + "\n")
    except NotHealthy as e:
        log(f"giving up: {e}")
        return 1
    except KeyboardInterrupt:
        log("interrupted; stopping servers")
        return 130
    finally:
        owned.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
