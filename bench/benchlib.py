"""Shared pieces of the side-by-side benchmark runners (redis_compare.py,
nats_compare.py, cluster_compare.py): child processes and temp dirs we own and
always clean up, free loopback ports, what to say about the machine and the
peers, CPU accounting from /proc, a minimal RESP client, and how a Distri
cluster node is started."""

import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


class Owned:
    """Every child process and temp dir we create, so cleanup() can undo them.
    Processes are stopped by PID, never by name."""

    def __init__(self):
        self.procs = []
        self.dirs = []

    def spawn(self, argv, log_path, cwd=None, append=False):
        with open(log_path, "ab" if append else "wb") as log:
            # Own session: a terminal Ctrl-C reaches only us; we stop the children ourselves.
            p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True)
        self.procs.append(p)
        return p

    def tempdir(self, prefix):
        d = Path(tempfile.mkdtemp(prefix=prefix))
        self.dirs.append(d)
        return d

    @staticmethod
    def stop(p, timeout=20):
        if p.poll() is not None:
            return
        try:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)
        except ProcessLookupError:
            pass

    def cleanup(self):
        for p in reversed(self.procs):
            try:
                self.stop(p)
            except Exception as e:  # keep cleaning up the rest
                print(f"warning: could not stop pid {p.pid}: {e}", file=sys.stderr)
        self.procs.clear()
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)
        self.dirs.clear()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def version_of(argv):
    """First line a program prints about its version, or "unknown"."""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (p.stdout or p.stderr).strip().splitlines()[0]
    except Exception:
        return "unknown"


# ---------------------------------------------------------------------------
# CPU accounting (from /proc: the servers are our children, but still running)
# ---------------------------------------------------------------------------

def proc_cpu_seconds(pid):
    """utime + stime of a process (all its threads), or 0.0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def busy_seconds():
    """CPU time the whole machine spent busy (all CPUs), from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = f
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu():
    """CPU time of our children that have exited (the load generator runs)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def wait_quiet(quiet, longest):
    """Waits (up to `longest` s) until other processes use at most `quiet` cores, so a run
    does not start in the middle of someone else's compile. Returns the last load seen."""
    deadline = time.monotonic() + longest
    while True:
        b0, t0 = busy_seconds(), time.monotonic()
        time.sleep(0.5)
        load = (busy_seconds() - b0) / (time.monotonic() - t0)
        if load <= quiet or time.monotonic() >= deadline:
            return load
        time.sleep(1.0)


def loadavg(fields=1):
    """The load average: the 1-minute figure, or the first `fields` (1, 5, 15 minutes)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:fields])
    except OSError:
        return "?"


# ---------------------------------------------------------------------------
# A minimal RESP client (setup and health checks only, not load)
# ---------------------------------------------------------------------------

class RespError(Exception):
    """An error reply."""


def _resp_read(f):
    line = f.readline(1 << 20)
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed in the middle of a reply")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RespError(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2]
    if kind in (b"*", b"~", b">"):
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    if kind == b"%":
        return {_resp_read(f): _resp_read(f) for _ in range(int(rest))}
    if kind == b"#":
        return rest == b"t"
    if kind == b"_":
        return None
    if kind == b",":
        return float(rest)
    raise ValueError(f"unexpected RESP reply: {line[:80]!r}")


def resp_command(port, *args, timeout=2.0):
    """Sends one command to 127.0.0.1:port on a fresh connection and returns the reply
    (bytes, int, list, dict, RespError). Raises OSError if the server does not answer."""
    out = f"*{len(args)}\r\n".encode()
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(out)
        with s.makefile("rb") as f:
            return _resp_read(f)


def resp_map(v):
    """A RESP3 map, or RESP2's flat array of pairs, as a dict with str keys."""
    if isinstance(v, list) and len(v) % 2 == 0:
        v = {v[i]: v[i + 1] for i in range(0, len(v), 2)}
    if not isinstance(v, dict):
        raise ValueError(f"not a map: {v!r}")
    return {(k.decode() if isinstance(k, bytes) else k): x for k, x in v.items()}


# ---------------------------------------------------------------------------
# Distri cluster nodes
# ---------------------------------------------------------------------------

def write_cluster_secret(path):
    """A fresh cluster secret, readable by us only (--cluster-secret-file)."""
    path.touch(mode=0o600)
    path.write_text(secrets.token_hex(32) + "\n")
    return path


def distri_node_argv(distri, data, port, http_port, cluster_port=None, secret=None,
                     join=None, extra=()):
    """`distri serve` on 127.0.0.1. With cluster_port (and the secret file every node
    shares) it is a cluster member; join: the cluster port of a member to join through
    (None for the first node)."""
    argv = [str(distri), "serve", "--data", str(data), "--bind", "127.0.0.1",
            "--port", str(port), "--http-port", str(http_port), *extra]
    if cluster_port is not None:
        argv += ["--cluster-port", str(cluster_port), "--cluster-secret-file", str(secret)]
        if join is not None:
            argv += ["--join", f"127.0.0.1:{join}"]
    return argv


def distri_cluster_view(ports):
    """None until the nodes on these client ports form one cluster in which every node is a
    voter, all name the same leader, and every node has a live link to every other
    (CLUSTER.NODES `healthy`: ephemeral traffic between members needs those links).
    Then the CLUSTER.INFO of each node."""
    infos = []
    for port in ports:
        try:
            info = resp_map(resp_command(port, "CLUSTER.INFO"))
            nodes = resp_command(port, "CLUSTER.NODES")
        except (OSError, ValueError, ConnectionError):
            return None
        if isinstance(nodes, RespError) or len(info.get("voters") or []) != len(ports):
            return None
        if info.get("learners") or not info.get("leader_id"):
            return None
        if len(nodes) != len(ports) or not all(
                resp_map(n).get("healthy") in (True, 1) for n in nodes):
            return None
        infos.append(info)
    if len({i["leader_id"] for i in infos}) != 1:
        return None
    return infos
