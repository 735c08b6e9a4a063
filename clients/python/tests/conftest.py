"""Fixtures for the Python client's tests: the real server binary, no mocks.

The binary is $DISTRI_BIN (default <repo>/build/test/distri). Each server runs
on free ports with its own data directory under one temp dir per session; its
log is attached to a failing test's report. The approach follows the
repository's tests/conftest.py (kept separate: that suite is owned apart).

Fixtures:
  server          one server per test module (--fsync off: fast, still durable
                  against kill -9 of the process)
  server_factory  make(**opts) -> Server, for tests that restart or kill servers
  url             distri://127.0.0.1:PORT of `server`
  room            a fresh room on `server` (closed after the test)
  redis_client    a redis-py client on `server` (RESP3, bytes replies)
  cluster_factory make(size=3) -> Cluster: real nodes of one Raft cluster on
                  127.0.0.1 (needs a cluster-capable $DISTRI_BIN; tests skip
                  otherwise), torn down after the test
"""

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent
EXAMPLES = REPO / "examples"
DEFAULT_BIN = REPO / "build" / "test" / "distri"
START_TIMEOUT = float(os.environ.get("DISTRI_START_TIMEOUT", "30"))
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "AddressSanitizer:DEADLYSIGNAL")

# The package is normally installed (pip install -e ./clients/python); fall back
# to the source tree so the tests also run straight from a checkout.
if importlib.util.find_spec("distri") is None:  # pragma: no cover
    sys.path.insert(0, str(HERE.parent / "src"))


def distri_bin() -> Path:
    return Path(os.environ.get("DISTRI_BIN", DEFAULT_BIN)).resolve()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(predicate, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Server:
    """One distri process. Ports are kept across restarts so clients can reconnect."""

    def __init__(self, workdir: Path, fsync: str = "off", extra_args=(), host="127.0.0.1"):
        self.host = host
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "server.log"
        self.fsync = fsync
        self.extra_args = list(extra_args)
        self.port = None
        self.http_port = None
        self.proc = None

    @property
    def url(self) -> str:
        return f"distri://{self.host}:{self.port}"

    def argv(self):
        return [str(distri_bin()), "serve", "--port", str(self.port),
                "--http-port", str(self.http_port), "--bind", self.host,
                "--data", str(self.data_dir), "--fsync", self.fsync] + self.extra_args

    def start(self) -> "Server":
        assert self.proc is None
        for attempt in range(5):
            if self.port is None or attempt > 0:
                self.port, self.http_port = free_port(self.host), free_port(self.host)
            with open(self.log_path, "ab") as log:
                log.write(f"\n== start: {' '.join(self.argv())}\n".encode())
                log.flush()
                env = dict(os.environ)
                env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
                self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=log,
                                             stdin=subprocess.DEVNULL, cwd=self.workdir, env=env)
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if port_accepts(self.port, self.host):
                    return self
                time.sleep(0.02)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            if "in use" not in self.log_tail():
                break
        raise AssertionError(f"server failed to start\n{self.log_tail()}")

    def _signal(self, sig) -> int:
        if self.proc is None:
            return 0
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def stop(self) -> int:
        return self._signal(signal.SIGTERM)

    def kill9(self) -> int:
        return self._signal(signal.SIGKILL)

    def restart(self, kill: bool = True) -> "Server":
        (self.kill9 if kill else self.stop)()
        return self.start()

    def sanitizer_report(self):
        text = self.log_tail(10 ** 7)
        for marker in SANITIZER_MARKERS:
            i = text.find(marker)
            if i >= 0:
                return text[max(0, i - 200):i + 3000]
        return None

    def log_tail(self, n: int = 6000) -> str:
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")[-n:]
        except FileNotFoundError:
            return ""


def command(port: int, *args, timeout: float = 2.0, host: str = "127.0.0.1"):
    """One command on a fresh connection to host:port (RESP3); the reply, with an
    error reply as its distri exception instance (not raised)."""
    from distri._resp import NEED_MORE, new_reader, pack
    with socket.create_connection((host, port), timeout=timeout) as sock:
        reader = new_reader()
        sock.sendall(pack(("HELLO", "3")) + pack(args))
        replies = []
        while len(replies) < 2:
            r = reader.gets()
            if r is NEED_MORE:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                reader.feed(chunk)
                continue
            replies.append(r)
        return replies[1]


_CLUSTER_CAPABLE = {}


def cluster_capable() -> bool:
    """True when $DISTRI_BIN lists --cluster-port (a cluster-capable build)."""
    path = str(distri_bin())
    if path not in _CLUSTER_CAPABLE:
        out = subprocess.run([path, "serve", "--help"], capture_output=True, timeout=30)
        _CLUSTER_CAPABLE[path] = b"--cluster-port" in out.stdout + out.stderr
    return _CLUSTER_CAPABLE[path]


class Relay:
    """A TCP relay in front of one node's cluster port. The node advertises the
    relay, so every connection between nodes passes through the relay of the node
    that accepts it, and Cluster.isolate() can cut a node off from the others
    while clients still reach it (a partition). Each node binds a loopback address
    of its own and dials from it, so the peer address names the source node.
    Threads: one accepting, two per relayed connection."""

    def __init__(self, host: str, blocked):
        self.host = host
        self.blocked = blocked       # blocked(source ip) -> bool
        self.target = None           # (host, port) of the node's cluster port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.conns = []              # (source ip, accepted socket, upstream socket)
        self.closed = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self):
        while not self.closed:
            try:
                down, (ip, _) = self.listener.accept()
            except OSError:
                return
            if self.blocked(ip) or self.target is None:
                down.close()
                continue
            try:
                up = socket.create_connection(self.target, timeout=2)
            except OSError:
                down.close()
                continue
            with self.lock:
                self.conns.append((ip, down, up))
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        """Resets the relayed connections that are blocked now."""
        with self.lock:
            keep = []
            for ip, down, up in self.conns:
                if self.blocked(ip):
                    for sock in (down, up):
                        try:
                            sock.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                        sock.close()
                else:
                    keep.append((ip, down, up))
            self.conns = keep

    def close(self):
        self.closed = True
        self.listener.close()
        self.cut_all()

    def cut_all(self):
        with self.lock:
            conns, self.conns = self.conns, []
        for _, down, up in conns:
            for sock in (down, up):
                try:
                    sock.close()
                except OSError:
                    pass


class ClusterServer(Server):
    """One node of a Cluster: a Server on a loopback address of its own, with a
    cluster port behind a Relay, the shared secret and --join; Raft's tick is
    50 ms so that elections (and so these tests) take about half a second rather
    than one or two."""

    def __init__(self, workdir: Path, secret_file: Path, host: str, relay: Relay, **opts):
        super().__init__(workdir, host=host, **opts)
        self.secret_file = secret_file
        self.relay = relay
        self.cluster_port = None
        self.join = None

    def argv(self):
        if self.cluster_port is None:        # kept across restarts: peers dial it
            self.cluster_port = free_port(self.host)
            self.relay.target = (self.host, self.cluster_port)
        argv = super().argv() + ["--cluster-port", str(self.cluster_port),
                                 "--cluster-secret-file", str(self.secret_file),
                                 "--advertise", f"{self.host}:{self.relay.port}",
                                 "--raft-tick-ms", "50"]
        if self.join:
            argv += ["--join", self.join]
        return argv

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def at(self):
        """(host, port): how the client's `address` attributes name a node."""
        return (self.host, self.port)

    def info(self):
        """CLUSTER.INFO as a dict of str -> value, or None if it does not answer."""
        if self.proc is None:
            return None
        try:
            reply = command(self.port, "CLUSTER.INFO", timeout=1.0, host=self.host)
        except OSError:
            return None
        if not isinstance(reply, dict):
            return None
        return {k.decode(): v for k, v in reply.items()}


class Cluster:
    """size nodes of one Raft cluster: node 1 founds it, the others join through
    the node before them; start() returns once every node is a voter. Node i runs
    on 127.0.3.i (a range tests/cluster_util.py does not use)."""

    def __init__(self, base: Path, size: int):
        self.workdir = Path(tempfile.mkdtemp(prefix="cluster-", dir=base))
        self.secret_file = self.workdir / "cluster.secret"
        fd = os.open(self.secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        self.nodes = []
        self.cut_off = set()         # hosts of the nodes isolated from the others
        for i in range(size):
            d = self.workdir / f"node{i + 1}"
            d.mkdir()
            host = f"127.0.3.{i + 1}"

            def blocked(src, dst=host):
                return src in self.cut_off or dst in self.cut_off
            n = ClusterServer(d, self.secret_file, host, Relay(host, blocked))
            _ALL.append(n)
            self.nodes.append(n)

    def isolate(self, node: ClusterServer) -> None:
        """Cuts every link between node and the others (clients still reach it)."""
        self.cut_off.add(node.host)
        for n in self.nodes:
            n.relay.cut()

    def heal(self) -> None:
        self.cut_off.clear()

    def close_relays(self) -> None:
        for n in self.nodes:
            n.relay.close()

    def start(self, timeout: float = 30.0) -> "Cluster":
        first = self.nodes[0].start()
        wait_until(lambda: (first.info() or {}).get("role") == b"leader", timeout,
                   what="node 1 to lead its cluster")
        for prev, n in zip(self.nodes, self.nodes[1:]):
            n.join = f"{prev.host}:{prev.relay.port}"
            n.start()
        wait_until(self._all_voters, timeout, what="every node to be a voter")
        # Every node knows every other's client address (learnt from the links' HELLO).
        wait_until(lambda: all(self._knows_all(n) for n in self.nodes), timeout,
                   what="CLUSTER.NODES to show every client address")
        return self

    def _all_voters(self):
        infos = [n.info() for n in self.nodes]
        return all(i is not None and len(i.get("voters", [])) == len(self.nodes)
                   and i.get("leader_id") for i in infos)

    def _knows_all(self, node):
        try:
            reply = command(node.port, "CLUSTER.NODES", host=node.host)
        except OSError:
            return False
        if not isinstance(reply, list):
            return False
        return sum(1 for m in reply if isinstance(m, dict) and m.get(b"client_address")) \
            == len(self.nodes)

    def leader(self, among=None, timeout: float = 15.0) -> ClusterServer:
        """The node all running nodes (or `among`) agree leads."""
        def find():
            nodes = [n for n in (among or self.nodes) if n.proc is not None]
            infos = {n: n.info() for n in nodes}
            if any(i is None for i in infos.values()):
                return None
            leaders = [n for n, i in infos.items() if i.get("role") == b"leader"]
            if len(leaders) != 1:
                return None
            lid = infos[leaders[0]].get("node_id")
            if any(i.get("leader_id") != lid for i in infos.values()):
                return None
            return leaders[0]
        return wait_until(find, timeout, interval=0.05, what="a leader all nodes agree on")

    def node_at(self, address: str) -> ClusterServer:
        return next(n for n in self.nodes if n.address == address)


_ALL = []
_FAILED = {"any": False}


@pytest.fixture(scope="session")
def _base_tmp():
    path = distri_bin()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"distri binary not found at {path}: build it or set DISTRI_BIN")
    d = Path(tempfile.mkdtemp(prefix="distri-py-tests-"))
    yield d
    if not _FAILED["any"]:
        subprocess.run(["rm", "-rf", str(d)])


def _make(base: Path, name: str, **opts) -> Server:
    workdir = Path(tempfile.mkdtemp(prefix=name[:40].replace("/", "_") + "-", dir=base))
    s = Server(workdir, **opts)
    _ALL.append(s)
    return s


@pytest.fixture(scope="module")
def server(_base_tmp, request):
    s = _make(_base_tmp, request.module.__name__).start()
    yield s
    _finish([s])


@pytest.fixture
def server_factory(_base_tmp, request):
    made = []

    def make(start=True, **opts):
        s = _make(_base_tmp, request.node.name, **opts)
        made.append(s)
        return s.start() if start else s

    yield make
    _finish(made)


@pytest.fixture
def cluster_factory(_base_tmp, request):
    if not cluster_capable():
        pytest.skip(f"{distri_bin()} has no --cluster-port (a single-node build)")
    made = []

    def make(size: int = 3) -> Cluster:
        c = Cluster(_base_tmp, size)
        made.append(c)
        return c.start()

    yield make
    try:
        _finish([n for c in made for n in c.nodes])
    finally:
        for c in made:
            c.close_relays()


def _finish(servers):
    """Stops servers; fails on an unclean SIGTERM exit or a sanitizer report."""
    problems = []
    for s in servers:
        if s.proc is not None:
            code = s.stop()
            if code != 0:
                problems.append(f"server exited with {code} on SIGTERM\n{s.log_tail()}")
        report = s.sanitizer_report()
        if report:
            problems.append(f"sanitizer report in {s.log_path}:\n{report}")
    if problems:
        _FAILED["any"] = True
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def url(server):
    return server.url


@pytest.fixture
def room(server):
    import distri
    r = distri.connect(server.url, quiet=True)
    yield r
    r.close()


@pytest.fixture
def redis_client(server):
    import redis
    kw = dict(host="127.0.0.1", port=server.port, protocol=3, socket_timeout=10)
    try:
        from redis.maint_notifications import MaintNotificationsConfig
        kw["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
    except ImportError:
        pass
    c = redis.Redis(**kw)
    yield c
    c.close()


def python_env(**extra):
    """Environment for child Python processes: they import this checkout's distri."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(p for p in [str(HERE.parent / "src"),
                                                  e.get("PYTHONPATH", "")] if p)
    e.update(extra)
    return e


def run_example(name, *args, timeout=60):
    """Runs examples/<name> with this interpreter; returns the CompletedProcess."""
    return subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                          text=True, timeout=timeout, env=python_env())


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    item._distri_before = len(_ALL)
    item._distri_alive = [s for s in _ALL if s.proc is not None]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        _FAILED["any"] = True
        involved = getattr(item, "_distri_alive", []) + _ALL[getattr(item, "_distri_before", 0):]
        for s in dict.fromkeys(involved):
            rep.sections.append((f"server log {s.log_path}", s.log_tail(3000)))
