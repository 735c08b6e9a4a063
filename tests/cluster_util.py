"""A harness for tests that run several real distri processes: a cluster, its faults, its links.

Used by tests/test_cluster_faults.py (and any cluster test): every node is a real process of
$DISTRI_BIN with its own data directory, log file and loopback address 127.0.0.(10+i), so
that a node's outbound cluster connections (made from its --bind address) tell the proxies
which node they come from.

  cluster = Cluster(workdir, size=3)       # or size=1, clustered=False: one plain node
  cluster.start()                          # node 1 alone, the others --join through it
  leader = cluster.leader()                # CLUSTER.INFO of the nodes agrees
  cluster.net.isolate(leader)              # cut every link to and from it
  cluster.net.heal()
  node.kill9(); node.start()               # same data directory
  node.pause(); node.resume()              # SIGSTOP / SIGCONT
  cluster.teardown()                       # every process killed, sanitizer reports returned

Links: each node advertises (--advertise) the address of its own proxy, a userspace TCP
relay in front of its cluster port, and nodes join through proxy addresses too, so every
byte between two nodes goes through the proxy of the node that accepted the connection.
The proxy knows the destination from which proxy it is, and the source node from the peer
address (a node dials from its --bind address) or, when a connection comes from elsewhere,
from the node id in the first bytes of the link's handshake (HELLO), mapped to a node with
CLUSTER.INFO. Cutting the link (a, b) resets the connections between them and leaves new ones
hanging (accepted, never answered) until the link heals: the peers see both a reset and a
silent network, as in a real partition.

A binary without --cluster-port (today's single-node build) runs as clustered=False: one
node, no proxies; kill -9, SIGSTOP and restart still apply. Switching a test to 3 nodes is
a change of Cluster(size=..., clustered=...), nothing else.

All waiting is polling with a deadline (wait_until), never a fixed sleep. Logs stay in the
test's directory; conftest's report hook attaches each node's log tail to a failing test.
"""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

import conftest
from conftest import Raw, RawError, ServerLog, wait_until

START_TIMEOUT = float(os.environ.get("DISTRI_START_TIMEOUT", "20"))
HELLO_NODE_ID_END = 24              # header (8) + cluster id (8) + node id (8)
STOP_TIMEOUT = float(os.environ.get("DISTRI_STOP_TIMEOUT", "15"))


def node_host(index):
    """The loopback address of node `index` (1-based)."""
    return f"127.0.0.{10 + index}"


def free_port_on(host):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


_CLUSTER_SUPPORT = {}


def binary_supports_cluster(binary):
    """True when `binary serve --help` lists --cluster-port (a cluster-capable build)."""
    binary = str(binary)
    if binary not in _CLUSTER_SUPPORT:
        out = subprocess.run([binary, "serve", "--help"], capture_output=True, timeout=30)
        _CLUSTER_SUPPORT[binary] = b"--cluster-port" in out.stdout + out.stderr
    return _CLUSTER_SUPPORT[binary]


class HostRaw(Raw):
    """conftest.Raw to any host: a plain RESP connection with a timeout."""

    def __init__(self, host, port, timeout):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False


def decode(v):
    """RESP values with bytes turned into str, and RESP2 flat pair arrays left as they are."""
    if isinstance(v, RawError):
        return v
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, list):
        return [decode(x) for x in v]
    if isinstance(v, dict):
        return {decode(k): decode(x) for k, x in v.items()}
    return v


def as_map(v):
    """A RESP3 map, or a RESP2 flat array of pairs, as a dict."""
    v = decode(v)
    if isinstance(v, dict):
        return v
    if isinstance(v, list) and len(v) % 2 == 0:
        return {v[i]: v[i + 1] for i in range(0, len(v), 2)}
    raise AssertionError(f"not a map: {v!r}")


# ---------------------------------------------------------------------------
# One node
# ---------------------------------------------------------------------------

class ClusterNode(ServerLog):
    """One distri process: start, kill9, pause/resume, restart on the same data directory."""

    def __init__(self, cluster, index):
        self.cluster = cluster
        self.index = index
        self.host = node_host(index)
        self.workdir = cluster.workdir / f"node{index}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "server.log"
        self.env = dict(cluster.env)
        self.port = self.http_port = self.cluster_port = None
        self.join = None            # addresses for --join; None: first node
        self.proc = None
        self.paused = False
        self.exit_codes = []
        self.generation = 0         # bumped when the data directory is wiped
        conftest._ALL_SERVERS.append(self)  # conftest attaches log tails to failures

    def __repr__(self):
        return f"node{self.index}"

    @property
    def proxy_address(self):
        return f"{self.host}:{self.cluster.net.proxy(self.index).port}"

    def argv(self):
        c = self.cluster
        argv = [str(c.binary), "serve", "--data", str(self.data_dir), "--bind", self.host,
                "--port", str(self.port), "--http-port", str(self.http_port)]
        if c.clustered:
            argv += ["--cluster-port", str(self.cluster_port),
                     "--cluster-secret-file", str(c.secret_file),
                     "--advertise", self.proxy_address]
            if self.join:
                argv += ["--join", ",".join(self.join)]
        return argv + list(c.extra_args)

    def _pick_ports(self):
        taken = set()
        for attr in ("port", "http_port", "cluster_port"):
            p = free_port_on(self.host)
            while p in taken:
                p = free_port_on(self.host)
            taken.add(p)
            setattr(self, attr, p)
        if self.cluster.clustered:
            self.cluster.net.proxy(self.index).set_target(self.host, self.cluster_port)

    def start(self, timeout=START_TIMEOUT):
        """Starts the process and waits until its client port accepts. Ports are kept
        across restarts (clients and peers reconnect to the same addresses) unless taken."""
        assert self.proc is None, f"{self} already running"
        if self.port is None:
            self._pick_ports()
        for attempt in range(4):
            if attempt:
                self._pick_ports()
            if self._spawn_and_wait(timeout):
                return self
            if "in use" not in self.log_tail(2000).lower():
                break
        raise AssertionError(f"{self} failed to start\n--- log ---\n{self.log_tail()}")

    def _spawn_and_wait(self, timeout):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start {time.strftime('%H:%M:%S')}: "
                      f"{' '.join(self.argv())}\n".encode())
            log.flush()
            env = dict(os.environ)
            env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
            env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
            env.update(self.env)
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, cwd=self.workdir, env=env)
        self.paused = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.exit_codes.append(("start", self.proc.returncode))
                self.proc = None
                return False
            if self._accepts():
                return True
            time.sleep(0.02)
        self._signal_and_wait(signal.SIGKILL)
        raise AssertionError(f"{self}: port {self.port} not accepting after {timeout}s\n"
                             f"--- log ---\n{self.log_tail()}")

    def _accepts(self):
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _signal_and_wait(self, sig):
        if self.proc is None:
            return None
        if self.paused and sig != signal.SIGKILL:
            self.resume()
        try:
            self.proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            code = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(STOP_TIMEOUT)
            self.exit_codes.append((f"{sig.name} (hung, killed)", code))
            self.proc = None
            raise AssertionError(f"{self} did not exit within {STOP_TIMEOUT}s of {sig.name}")
        self.proc = None
        self.paused = False
        self.exit_codes.append((sig.name, code))
        return code

    def kill9(self):
        return self._signal_and_wait(signal.SIGKILL)

    def stop(self):
        return self._signal_and_wait(signal.SIGTERM)

    def pause(self):
        """SIGSTOP: the process keeps its sockets but answers nothing (a GC pause, a VM stall)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        if self.proc is not None and self.paused:
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def restart(self, kill=True):
        self.kill9() if kill else self.stop()
        return self.start()

    def wipe(self):
        """Deletes the data directory (the node must be stopped): it comes back as a new node."""
        assert self.proc is None
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.generation += 1

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    # -- talking to it ---------------------------------------------------------

    def raw(self, timeout=5.0):
        return HostRaw(self.host, self.port, timeout)

    def cmd(self, *args, timeout=5.0):
        """One command on a fresh connection; the decoded reply (errors as RawError)."""
        with self.raw(timeout) as c:
            return c.cmd(*args)

    def cluster_info(self, timeout=2.0):
        """CLUSTER.INFO as a dict, or None when the node does not answer it."""
        try:
            reply = self.cmd("CLUSTER.INFO", timeout=timeout)
        except (OSError, AssertionError):
            return None
        if isinstance(reply, RawError):
            return None
        return as_map(reply)



# ---------------------------------------------------------------------------
# Links: one userspace TCP proxy per node's cluster port
# ---------------------------------------------------------------------------

def _close(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class LinkProxy:
    """Relays connections to one node's cluster port; drops or holds those of cut links.

    Threads: one accepting, two per relayed connection (one per direction), one per held
    connection. Blocking sockets; shutdown() wakes a blocked recv when a link is cut."""

    def __init__(self, net, index):
        self.net = net
        self.index = index
        self.host = node_host(index)
        self.target = None
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((self.host, 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.conns = []             # (source index or None, downstream, upstream or None)
        self.closed = False
        self.relayed = 0
        self.refused = 0
        threading.Thread(target=self._accept_loop, daemon=True,
                         name=f"proxy{index}-accept").start()

    def set_target(self, host, port):
        self.target = (host, port)

    def _accept_loop(self):
        while not self.closed:
            try:
                down, addr = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._setup, args=(down, addr[0]), daemon=True).start()

    def _setup(self, down, peer_ip):
        """Finds the source node of a new connection, then relays it or holds it."""
        src = self.net.source_of(peer_ip)
        first = b""
        if src is None:
            # Not from a node's own address: read the handshake's HELLO far enough to see
            # the initiator's node id (docs/replication.md, "Messages": an 8-byte header,
            # then cluster id and node id, u64 little-endian), and forward it afterwards.
            try:
                down.settimeout(5.0)
                while len(first) < HELLO_NODE_ID_END:
                    chunk = down.recv(HELLO_NODE_ID_END - len(first))
                    if not chunk:
                        break
                    first += chunk
                down.settimeout(None)
            except OSError:
                _close(down)
                return
            if len(first) == HELLO_NODE_ID_END and first[:4] == b"DSCL":
                src = self.net.resolve(int.from_bytes(first[16:24], "little"))
        if self.net.blocked(src, self.index) or self.target is None:
            self.refused += 1
            self._hold(src, down)
            return
        try:
            up = socket.create_connection(self.target, timeout=2.0)
            up.settimeout(None)
            if first:
                up.sendall(first)
        except OSError:
            _close(down)            # the node is down: the peer sees a reset, as it would
            return
        for s in (up, down):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        entry = (src, down, up)
        with self.lock:
            if self.closed:
                _close(up), _close(down)
                return
            self.conns.append(entry)
        self.relayed += 1
        threading.Thread(target=self._pump, args=(entry, down, up), daemon=True).start()
        threading.Thread(target=self._pump, args=(entry, up, down), daemon=True).start()

    def _hold(self, src, down):
        """A connection over a cut link: accepted, never answered, closed when the link heals."""
        entry = (src, down, None)
        with self.lock:
            self.conns.append(entry)

        def drain():
            try:
                while down.recv(65536):
                    pass
            except OSError:
                pass
            self._forget(entry)
        threading.Thread(target=drain, daemon=True).start()

    def _pump(self, entry, src_sock, dst_sock):
        try:
            while True:
                data = src_sock.recv(65536)
                # A link cut while this connection was being set up: drop it here.
                if not data or self.net.blocked(entry[0], self.index):
                    break
                dst_sock.sendall(data)
        except OSError:
            pass
        self._forget(entry)

    def _forget(self, entry):
        with self.lock:
            if entry in self.conns:
                self.conns.remove(entry)
        for s in entry[1:]:
            if s is not None:
                _close(s)

    def drop(self, should_drop):
        """Closes the connections for which should_drop(source index, held) is true."""
        with self.lock:
            victims = [e for e in self.conns if should_drop(e[0], e[2] is None)]
        for e in victims:
            self._forget(e)

    def close(self):
        self.closed = True
        _close(self.listener)
        self.drop(lambda src, held: True)


class Network:
    """The proxies of a cluster and which directed links (source, destination) are cut.

    A link (a, b) carries the connections a opens to b; Raft traffic flows both ways over
    them, so cut() and the helpers cut both directions."""

    def __init__(self):
        self.proxies = {}
        self.resolver = None        # node id -> node index
        self.cut_links = set()
        self.lock = threading.Lock()
        self.cuts_made = 0

    def proxy(self, index):
        if index not in self.proxies:
            self.proxies[index] = LinkProxy(self, index)
        return self.proxies[index]

    def source_of(self, ip):
        for index, p in self.proxies.items():
            if p.host == ip:
                return index
        return None                 # not a node's own address: see LinkProxy._setup

    def resolve(self, node_id):
        """The node index of a Raft node id (from its handshake); None if unknown, and a
        connection from an unknown node is never cut. The Cluster sets the resolver."""
        return self.resolver(node_id) if self.resolver is not None else None

    def blocked(self, src, dst):
        with self.lock:
            return src is not None and (src, dst) in self.cut_links

    def _apply(self, links):
        links = {(a, b) for a, b in links if a != b}
        with self.lock:
            added = links - self.cut_links
            self.cut_links = links
        if added:
            self.cuts_made += 1
        # Reset relayed connections of newly cut links; release held ones of healed links.
        for dst, p in self.proxies.items():
            p.drop(lambda src, held, dst=dst: (src, dst) in added if not held
                   else (src, dst) not in links)

    @staticmethod
    def _index(n):
        return n if isinstance(n, int) else n.index

    def cut(self, a, b):
        a, b = self._index(a), self._index(b)
        self._apply(self.cut_links | {(a, b), (b, a)})

    def isolate(self, node):
        """Cuts every link to and from node (leader isolation, when node is the leader)."""
        n = self._index(node)
        others = [i for i in self.proxies if i != n]
        self._apply(self.cut_links | {(n, o) for o in others} | {(o, n) for o in others})

    def partition(self, *groups):
        """Only nodes in the same group talk; a node in no group is isolated."""
        group_of = {}
        for g, members in enumerate(groups):
            for m in members:
                group_of[self._index(m)] = g
        nodes = list(self.proxies)
        self._apply({(a, b) for a in nodes for b in nodes
                     if group_of.get(a, ("alone", a)) != group_of.get(b, ("alone", b))})

    def heal(self):
        self._apply(set())

    def close(self):
        for p in self.proxies.values():
            p.close()


# ---------------------------------------------------------------------------
# The cluster
# ---------------------------------------------------------------------------

class Cluster:
    """size nodes of `binary`; clustered=None: a cluster when the binary can be one."""

    def __init__(self, workdir, size=3, binary=None, clustered=None, env=None, extra_args=()):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.binary = Path(binary or conftest.distri_bin()).resolve()
        if clustered is None:
            clustered = binary_supports_cluster(self.binary)
        if not clustered and size != 1:
            raise ValueError(f"{self.binary} has no --cluster-port: only size=1 can run")
        self.clustered = clustered
        self.env = dict(env or {})
        self.extra_args = list(extra_args)
        self.net = Network()
        self.secret_file = self.workdir / "cluster.secret"
        if clustered:
            fd = os.open(self.secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")   # 64 bytes, mode 0600
        self.nodes = []
        self.ids = {}               # Raft node id -> ClusterNode, learnt from CLUSTER.INFO
        self.ids_lock = threading.Lock()
        self.net.resolver = self._index_of_node_id
        for i in range(1, size + 1):
            self.add_node()

    def add_node(self):
        """A new node object (not started). Its index is never reused."""
        n = ClusterNode(self, len(self.nodes) + 1)
        if self.clustered:
            self.net.proxy(n.index)
        self.nodes.append(n)
        return n

    def start(self, timeout=60):
        """Starts node 1 as a cluster of one, then each other node joining through the
        previous one (joining through any member must work); waits until all are voters."""
        first = self.nodes[0]
        first.start()
        if not self.clustered:
            return self
        self.wait_for(lambda: self.leader_of([first]), timeout, "node 1 to lead its cluster")
        for prev, n in zip(self.nodes, self.nodes[1:]):
            n.join = [prev.proxy_address]
            n.start()
        self.wait_for(self.all_voters, timeout, "every node to be a voter")
        return self

    def running(self):
        return [n for n in self.nodes if n.alive()]

    def infos(self, nodes=None, timeout=2.0):
        """CLUSTER.INFO of each running, unpaused node that answers."""
        out = {}
        for n in nodes or self.running():
            if n.alive() and not n.paused:
                info = n.cluster_info(timeout)
                if info is not None:
                    out[n] = info
                    with self.ids_lock:
                        self.ids[int(info["node_id"])] = n
        return out

    def _index_of_node_id(self, node_id):
        """For the proxies: which node a Raft id is (asks the nodes when it is new)."""
        with self.ids_lock:
            n = self.ids.get(node_id)
        if n is None:
            self.infos(timeout=1.0)
            with self.ids_lock:
                n = self.ids.get(node_id)
        return n.index if n is not None else None

    def node_by_id(self, node_id, nodes=None):
        for n, info in self.infos(nodes).items():
            if int(info.get("node_id", -1)) == int(node_id):
                return n
        return None

    def leader_of(self, nodes=None):
        """The node that says it is leader and that every answering node agrees on (same
        leader id, none with a higher term); None when there is no such node right now."""
        nodes = nodes or self.running()
        if not self.clustered:
            return nodes[0] if nodes and nodes[0].alive() and not nodes[0].paused else None
        infos = self.infos(nodes)
        leaders = [(n, i) for n, i in infos.items() if i.get("role") == "leader"]
        if len(leaders) != 1:
            return None
        node, info = leaders[0]
        for i in infos.values():
            if int(i.get("term", 0)) > int(info["term"]):
                return None
            if int(i.get("leader_id", 0)) not in (0, int(info["node_id"])):
                return None
        return node

    def leader(self, timeout=30):
        return self.wait_for(self.leader_of, timeout, "a leader all nodes agree on")

    def all_voters(self):
        """True when every node runs, answers, and each sees exactly the running nodes as
        voters (no learner, no leftover of a removed node)."""
        infos = self.infos()
        if len(infos) != len(self.running()):
            return False
        ids = {int(i["node_id"]) for i in infos.values()}
        return all({int(v) for v in i.get("voters", [])} == ids and
                   not i.get("learners") for i in infos.values())

    def wait_for(self, predicate, timeout=30, what="condition"):
        return wait_until(predicate, timeout=timeout, interval=0.05, what=what)

    def describe(self):
        """One line per node: pid, state, and CLUSTER.INFO if it answers (for failures)."""
        lines = []
        for n in self.nodes:
            state = "paused" if n.paused else ("up" if n.alive() else "down")
            info = n.cluster_info() if self.clustered and n.alive() and not n.paused else None
            lines.append(f"{n} {n.host}:{n.port} pid={n.pid} {state} {info or ''}")
        return "\n".join(lines)

    def teardown(self):
        """Stops every process (SIGCONT first, SIGTERM, SIGKILL if it hangs) and the
        proxies; returns the problems found: sanitizer reports, unclean exits."""
        problems = []
        for n in self.nodes:
            n.resume()
        for n in self.nodes:
            if n.proc is not None:
                try:
                    code = n.stop()
                    if code != 0:
                        problems.append(f"{n} exited {code} on SIGTERM")
                except AssertionError as e:
                    problems.append(str(e))
        self.net.close()
        for n in self.nodes:
            report = n.sanitizer_report()
            if report:
                problems.append(f"sanitizer report in {n.log_path}:\n{report}")
        return problems


@pytest.fixture
def make_cluster(tmp_path):
    """make(size=3, start=True, **Cluster kwargs) -> a Cluster under the test's tmp_path;
    every cluster made is torn down after the test, which fails on any problem teardown
    finds (sanitizer reports, unclean exits). Import it into a test module to use it."""
    made = []

    def make(size=3, start=True, **kw):
        c = Cluster(tmp_path / f"cluster{len(made)}", size=size, **kw)
        made.append(c)
        if start:
            c.start()
        return c

    yield make
    problems = []
    for c in made:
        problems += c.teardown()
    assert not problems, "\n".join(problems)
