"""Black-box test harness: starts the real server binary and hands tests clients.

Every test here talks to a real process over TCP. The target is chosen with
DISTRI_TEST_TARGET (or --target):

  distri (default)  the binary at $DISTRI_BIN, default <repo>/build/test/distri
  redis             Debian's redis-server ($REDIS_SERVER, default /usr/bin/redis-server);
                    tests marked `distri` are skipped. This validates that the
                    Redis-compatible tests encode Redis's real behaviour.

Fixtures:
  server          one server per test module, flushed before each test by `r`
  server_factory  start extra servers with their own options (max_clients=..., ...)
  r, rb           redis-py clients on `server` for RESP2 and RESP3 (decoded / bytes)

Each Server offers start(), stop(), kill9(), restart(), client(), raw(); its
stderr (stdout too) goes to a file whose tail is attached to a failing test's
report. Servers are always stopped by PID at teardown, and a distri that does
not exit 0 on SIGTERM, or that printed a sanitizer report, fails the test.

Running (from the repo root):
  pip install -r tests/requirements.txt          # plus Debian's redis-server, redis-tools
  pytest tests                                   # against build/test/distri
  DISTRI_BIN=build/release/distri pytest tests   # another build
  DISTRI_TEST_TARGET=redis pytest tests          # validate the tests against redis-server
Every test has a time limit (pytest.ini) and every socket a timeout, so a hung
server fails tests instead of hanging CI. Logs of a failed run stay under
/tmp/distri-tests-*.
"""

import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DISTRI = REPO / "build" / "test" / "distri"
DEFAULT_REDIS = "/usr/bin/redis-server"

# Sanitizer builds are several times slower to start on a loaded 2-core box.
START_TIMEOUT = float(os.environ.get("DISTRI_START_TIMEOUT", "20"))
STOP_TIMEOUT = float(os.environ.get("DISTRI_STOP_TIMEOUT", "15"))
SOCKET_TIMEOUT = float(os.environ.get("DISTRI_SOCKET_TIMEOUT", "10"))

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "ThreadSanitizer", "AddressSanitizer:DEADLYSIGNAL")


# ---------------------------------------------------------------------------
# Options, markers, target selection
# ---------------------------------------------------------------------------

def pytest_addoption(parser):
    parser.addoption("--target", choices=("distri", "redis"),
                     default=os.environ.get("DISTRI_TEST_TARGET", "distri"),
                     help="server under test (env DISTRI_TEST_TARGET)")


def pytest_configure(config):
    config.addinivalue_line("markers", "distri: Distri-only behaviour; skipped against redis")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--target") != "redis":
        return
    skip = pytest.mark.skip(reason="Distri-only test (target is redis)")
    for item in items:
        if "distri" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def target(pytestconfig):
    return pytestconfig.getoption("--target")


def distri_bin():
    return Path(os.environ.get("DISTRI_BIN", DEFAULT_DISTRI)).resolve()


@pytest.fixture(scope="session")
def distri_path(target):
    """Path of the distri binary; fails (does not skip) when it is missing."""
    path = distri_bin()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"distri binary not found at {path}: build it or set DISTRI_BIN")
    return path


# ---------------------------------------------------------------------------
# Ports and raw sockets
# ---------------------------------------------------------------------------

def free_port():
    """A port the kernel just handed out; the caller retries if it gets taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(predicate, timeout=10.0, interval=0.01, what="condition"):
    """Polls predicate() until it is truthy; returns its value or fails."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Raw:
    """A plain TCP connection for byte-exact protocol tests."""

    def __init__(self, port, timeout=SOCKET_TIMEOUT):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def read_until_eof(self, timeout=SOCKET_TIMEOUT):
        """Everything the server sends until it closes; fails if it never does."""
        self.sock.settimeout(timeout)
        try:
            while self._fill():
                pass
        except socket.timeout:
            raise AssertionError(f"server did not close the connection within {timeout}s; "
                                 f"got {self.buf[:200]!r}")
        out, self.buf = self.buf, b""
        return out

    def read_exactly(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise AssertionError(f"connection closed; wanted {n} bytes, have {self.buf!r}")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_line(self):
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise AssertionError(f"connection closed mid-line: {self.buf!r}")
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_reply(self):
        """One RESP2/RESP3 reply, decoded to Python values; errors come back as RawError."""
        line = self.read_line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            return RawError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"_":
            return None
        if kind == b"#":
            return rest == b"t"
        if kind == b",":
            return float(rest)
        if kind == b"(":
            return int(rest)
        if kind in (b"$", b"=", b"!"):
            n = int(rest)
            if n < 0:
                return None
            data = self.read_exactly(n + 2)
            assert data[-2:] == b"\r\n", f"bulk not terminated by CRLF: {data!r}"
            return data[:-2] if kind != b"!" else RawError(data[:-2].decode())
        if kind in (b"*", b"~", b">"):
            n = int(rest)
            if n < 0:
                return None
            return [self.read_reply() for _ in range(n)]
        if kind in (b"%", b"|"):
            n = int(rest)
            return {_hashable(self.read_reply()): self.read_reply() for _ in range(n)}
        raise AssertionError(f"unknown RESP type byte in {line!r}")

    def cmd(self, *args):
        """Sends one command as a RESP array and returns the decoded reply."""
        self.send(encode_command(*args))
        return self.read_reply()

    def closed_by_peer(self, timeout=SOCKET_TIMEOUT):
        """True when the server has closed (reads EOF/reset) within timeout."""
        self.sock.settimeout(timeout)
        try:
            while self._fill():
                pass
            return True
        except socket.timeout:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _hashable(v):
    return tuple(v) if isinstance(v, list) else v


class RawError(str):
    """An error reply read by Raw (a str subclass, so startswith() works)."""


def encode_command(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, int):
            a = str(a)
        if isinstance(a, str):
            a = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


# ---------------------------------------------------------------------------
# The server process
# ---------------------------------------------------------------------------

_ALL_SERVERS = []   # every Server made this session, for failure reports
_STATE = {"failed": False}  # keep the temp dir (logs) when anything failed


class ServerStartError(Exception):
    pass


class ServerLog:
    """What a test reads from a server process's log file (`self.log_path`): its text, its
    tail, and the first sanitizer report in it. Shared by Server and cluster_util's nodes."""

    def log_text(self):
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=8000):
        return self.log_text()[-n:]

    def sanitizer_report(self):
        text = self.log_text()
        for m in SANITIZER_MARKERS:
            i = text.find(m)
            if i >= 0:
                return text[max(0, i - 200): i + 3000]
        return None


class Server(ServerLog):
    """One server process (distri or redis-server) with its own data dir.

    opts: max_memory, max_clients, max_bulk, requirepass, fsync ("always"/"off"),
    extra_args (list). Ports are picked fresh at the first start and kept across
    restarts (so clients can reconnect) unless they are taken.
    """

    def __init__(self, target, workdir, distri_path=None, **opts):
        self.target = target
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.log_path = self.workdir / "server.log"
        self.distri_path = distri_path
        self.opts = opts
        self.port = None
        self.http_port = None
        self.proc = None
        self.exit_codes = []        # (how, returncode) for every stop
        self.clients = []
        _ALL_SERVERS.append(self)

    # -- command line --------------------------------------------------------

    def argv(self):
        o = self.opts
        if self.target == "distri":
            argv = [str(self.distri_path), "serve", "--port", str(self.port),
                    "--http-port", str(self.http_port), "--bind", "127.0.0.1",
                    "--data", str(self.data_dir), "--fsync", o.get("fsync", "always")]
            for key, flag in (("max_memory", "--max-memory"), ("max_clients", "--max-clients"),
                              ("max_bulk", "--max-bulk"), ("requirepass", "--requirepass")):
                if o.get(key) is not None:
                    argv += [flag, str(o[key])]
        else:
            redis_bin = os.environ.get("REDIS_SERVER", DEFAULT_REDIS)
            argv = [redis_bin, "--port", str(self.port), "--bind", "127.0.0.1",
                    "--dir", str(self.data_dir), "--save", "", "--daemonize", "no",
                    "--appendonly", "yes",
                    "--appendfsync", "always" if o.get("fsync", "always") == "always" else "no",
                    "--protected-mode", "no"]
            if o.get("max_memory") is not None:
                argv += ["--maxmemory", str(o["max_memory"]), "--maxmemory-policy", "noeviction"]
            if o.get("max_clients") is not None:
                argv += ["--maxclients", str(o["max_clients"])]
            if o.get("max_bulk") is not None:
                argv += ["--proto-max-bulk-len", str(max(int(o["max_bulk"]), 1 << 20))]
            if o.get("requirepass") is not None:
                argv += ["--requirepass", str(o["requirepass"])]
        return argv + list(o.get("extra_args", []))

    # -- lifecycle -----------------------------------------------------------

    def start(self, timeout=START_TIMEOUT):
        """Starts and waits until the port accepts; retries with new ports on a collision."""
        assert self.proc is None, "already running"
        last = None
        for attempt in range(5):
            if self.port is None or attempt > 0:
                self.port = free_port()
                self.http_port = free_port()
                while self.http_port == self.port:
                    self.http_port = free_port()
            try:
                self._spawn_and_wait(timeout)
                return self
            except ServerStartError as e:
                last = e
                if not re.search(r"in use|EADDRINUSE|bind", self.log_tail(), re.I):
                    break
        raise AssertionError(f"server failed to start: {last}\n--- log ---\n{self.log_tail()}")

    def _spawn_and_wait(self, timeout):
        log = open(self.log_path, "ab")
        log.write(f"\n===== start {time.strftime('%H:%M:%S')}: {' '.join(self.argv())}\n".encode())
        log.flush()
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                     env=env, cwd=self.workdir)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.exit_codes.append(("start", code))
                self.proc = None
                raise ServerStartError(f"exited with code {code} during start")
            if port_accepts(self.port) and self._loaded():
                return
            time.sleep(0.01)
        self._kill(signal.SIGKILL)
        raise ServerStartError(f"port {self.port} not accepting after {timeout}s")

    def _loaded(self):
        """redis-server accepts while still loading its AOF (-LOADING); distri must not.
        distri writes its start line right after listen(): wait for it too, so a
        test that reads the log never races the line."""
        if self.target != "redis":
            return b"listening on" in self.log_path.read_bytes().rsplit(b"\n===== start", 1)[-1]
        try:
            with Raw(self.port, timeout=2) as c:
                c.send(b"PING\r\n")
                return not c.read_line().startswith(b"-LOADING")
        except (OSError, AssertionError):
            return False

    def start_expect_exit(self, timeout=START_TIMEOUT):
        """Starts a server that should refuse to run; returns (exit code, log text of this run)."""
        assert self.proc is None
        if self.port is None:
            self.port, self.http_port = free_port(), free_port()
        before = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, cwd=self.workdir)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            accepting = port_accepts(self.port)
            self._kill(signal.SIGKILL)
            raise AssertionError(f"server kept running (accepting={accepting}) "
                                 f"instead of refusing to start")
        self.proc = None
        self.exit_codes.append(("expect_exit", code))
        return code, self.log_path.read_bytes()[before:].decode("utf-8", "replace")

    def _kill(self, sig):
        if self.proc is None:
            return None
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
            raise AssertionError(f"server did not exit within {STOP_TIMEOUT}s of {sig.name}")
        self.proc = None
        self.exit_codes.append((sig.name, code))
        return code

    def close_clients(self):
        for c in self.clients:
            try:
                c.close()
            except Exception:
                pass
        self.clients = []

    def stop(self, sig=signal.SIGTERM):
        """Graceful stop; returns the exit code. Open clients just see the connection drop."""
        return self._kill(sig)

    def kill9(self):
        return self._kill(signal.SIGKILL)

    def restart(self, kill=False):
        if kill:
            self.kill9()
        else:
            self.stop()
        return self.start()

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # -- clients -------------------------------------------------------------

    def client(self, protocol=2, decode=True, **kw):
        """A redis-py client (protocol 2 or 3) that fails fast instead of retrying."""
        from redis.retry import Retry
        from redis.backoff import NoBackoff
        args = dict(host="127.0.0.1", port=self.port, protocol=protocol,
                    decode_responses=decode, socket_timeout=SOCKET_TIMEOUT,
                    socket_connect_timeout=SOCKET_TIMEOUT, retry=Retry(NoBackoff(), 0))
        if protocol == 3:
            try:
                from redis.maint_notifications import MaintNotificationsConfig
                args["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
            except ImportError:
                pass
        if self.opts.get("requirepass") is not None and "password" not in kw:
            args["password"] = self.opts["requirepass"]
        args.update(kw)
        c = redis.Redis(**args)
        self.clients.append(c)
        return c

    def raw(self, timeout=SOCKET_TIMEOUT):
        return Raw(self.port, timeout)

    def teardown_problems(self):
        """Stops the server; returns a list of problems (unclean exit, sanitizer output)."""
        problems = []
        self.close_clients()
        if self.proc is not None:
            try:
                self.stop()
            except AssertionError as e:
                problems.append(str(e))
        if self.target == "distri":
            bad = [(how, c) for how, c in self.exit_codes if how == "SIGTERM" and c != 0]
            if bad:
                problems.append(f"distri exited non-zero on SIGTERM: {bad}")
            report = self.sanitizer_report()
            if report:
                problems.append("sanitizer report in server log:\n" + report)
        return problems


@pytest.fixture(scope="session")
def _base_tmp():
    d = tempfile.mkdtemp(prefix="distri-tests-")
    yield Path(d)
    # Keep logs of a failed session around for inspection; remove otherwise.
    if not _STATE["failed"]:
        subprocess.run(["rm", "-rf", d])


def _make_server(target, base, name, **opts):
    path = distri_bin() if target == "distri" else None
    if target == "distri" and not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"distri binary not found at {path}: build it or set DISTRI_BIN")
    workdir = Path(tempfile.mkdtemp(prefix=re.sub(r"[^\w.-]", "_", name)[:60] + "-", dir=base))
    return Server(target, workdir, path, **opts)


def _finish(servers):
    problems = []
    for s in servers:
        problems += s.teardown_problems()
    if problems:
        _STATE["failed"] = True
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def server(target, _base_tmp, request):
    """One server per test module with default options."""
    s = _make_server(target, _base_tmp, request.module.__name__).start()
    yield s
    _finish([s])


@pytest.fixture
def server_factory(target, _base_tmp, request):
    """server_factory(start=True, **opts) -> Server; all are stopped at teardown."""
    made = []

    def make(start=True, **opts):
        s = _make_server(target, _base_tmp, request.node.name, **opts)
        made.append(s)
        if start:
            s.start()
        return s

    yield make
    _finish(made)


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def protocol(request):
    return request.param


@pytest.fixture
def r(server, protocol):
    """A decoded redis-py client on the module server; the keyspace is empty."""
    c = server.client(protocol=protocol)
    c.flushall()
    yield c
    c.close()


@pytest.fixture
def rb(server, protocol):
    """Like r, but returns bytes."""
    c = server.client(protocol=protocol, decode=False)
    c.flushall()
    yield c
    c.close()


# ---------------------------------------------------------------------------
# Attach server logs to failing tests
# ---------------------------------------------------------------------------

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    item._servers_before = len(_ALL_SERVERS)
    item._servers_alive = [s for s in _ALL_SERVERS if s.alive()]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    _STATE["failed"] = True
    involved = list(getattr(item, "_servers_alive", []))
    involved += _ALL_SERVERS[getattr(item, "_servers_before", 0):]
    for s in dict.fromkeys(involved):
        rep.sections.append((f"server log {s.log_path} (tail)", s.log_tail(6000)))
