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
"""

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
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

    def __init__(self, workdir: Path, fsync: str = "off", extra_args=()):
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
        return f"distri://127.0.0.1:{self.port}"

    def argv(self):
        return [str(distri_bin()), "serve", "--port", str(self.port),
                "--http-port", str(self.http_port), "--bind", "127.0.0.1",
                "--data", str(self.data_dir), "--fsync", self.fsync] + self.extra_args

    def start(self) -> "Server":
        assert self.proc is None
        for attempt in range(5):
            if self.port is None or attempt > 0:
                self.port, self.http_port = free_port(), free_port()
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
                if port_accepts(self.port):
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
