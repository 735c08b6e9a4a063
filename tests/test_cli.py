"""The distri command line: --help, flag errors, the start line, signals, --bind.

Distri-only: skipped when DISTRI_TEST_TARGET=redis.
"""

import signal
import socket
import subprocess
import time

import pytest

from conftest import free_port, port_accepts, wait_until

pytestmark = pytest.mark.distri

SERVE_FLAGS = ["--port", "--http-port", "--bind", "--data", "--fsync", "--max-memory",
               "--max-clients", "--max-bulk", "--requirepass", "--trust-loopback", "--auth-timeout",
               "--auth-fail-limit", "--auth-reserved-clients", "--http-max-connections",
               "--http-idle-timeout", "--http-request-timeout", "--http-body-memory"]


def run(distri_path, *args, timeout=20):
    return subprocess.run([str(distri_path), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("argv", [["--help"], ["serve", "--help"]], ids=["top", "serve"])
def test_help_lists_every_flag(distri_path, argv):
    p = run(distri_path, *argv)
    assert p.returncode == 0, f"{argv} exited {p.returncode}: {p.stderr}"
    text = p.stdout + p.stderr
    missing = [f for f in SERVE_FLAGS if f not in text]
    assert not missing, f"`distri {' '.join(argv)}` does not mention {missing}:\n{text}"
    assert "serve" in text


@pytest.mark.parametrize("argv", [["serve", "--bogus-flag"], ["--bogus-flag"],
                                  ["serve", "--port", "1", "--no-such-thing", "x"]])
def test_unknown_flag_exits_2_with_message(distri_path, argv):
    p = run(distri_path, *argv)
    assert p.returncode == 2, f"{argv}: exit {p.returncode}, stderr {p.stderr!r}"
    bad = [a for a in argv if a.startswith("--") and a not in SERVE_FLAGS][0]
    assert bad in p.stderr, f"the message should name {bad}: {p.stderr!r}"


@pytest.mark.parametrize("argv", [
    ["serve", "--port", "notanumber"],
    ["serve", "--port", "70000"],
    ["serve", "--fsync", "sometimes"],
    ["serve", "--max-clients", "-3"],
    ["serve", "--max-memory", "lots"],
    ["serve", "--port"],
    ["serve", "--auth-timeout", "0"],
    ["serve", "--trust-loopback", "maybe"],
    ["serve", "--http-body-memory", "0"],
], ids=["port-nan", "port-range", "fsync", "clients", "memory", "missing-value", "auth-timeout",
        "trust-loopback", "http-body-memory"])
def test_bad_flag_values_are_refused(distri_path, tmp_path, argv):
    p = run(distri_path, *argv, "--data", str(tmp_path / "d"))
    assert p.returncode > 0, f"{argv}: exit {p.returncode} (negative = killed by a signal)"
    assert p.stderr.strip(), "a refused flag needs a message on stderr"


def test_unknown_subcommand(distri_path):
    p = run(distri_path, "no-such-subcommand")
    assert p.returncode != 0
    assert p.stderr.strip()


def test_start_line_names_address_and_data_dir(server_factory):
    s = server_factory()
    text = s.log_text()
    assert f"listening on 127.0.0.1:{s.port}" in text, text[-2000:]
    line = [l for l in text.splitlines() if "listening on" in l][0]
    assert str(s.data_dir) in line or str(s.data_dir) in text, (
        f"the start output should name the data dir {s.data_dir}: {text[-2000:]}")
    assert len([l for l in text.splitlines() if "listening on" in l]) == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signal_exits_cleanly_and_keeps_data(server_factory, sig):
    s = server_factory()
    c = s.client()
    c.set("k", "v")
    busy = s.raw()
    busy.send(b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$100\r\npartial")  # an open, mid-frame client
    assert s.stop(sig) == 0, f"exit code on {sig.name} should be 0"
    busy.close()
    s.start()
    assert s.client().get("k") == "v"


def test_bind_address_is_respected(distri_path, tmp_path):
    port, http = free_port(), free_port()
    log = open(tmp_path / "log", "wb")
    p = subprocess.Popen([str(distri_path), "serve", "--port", str(port), "--http-port", str(http),
                          "--bind", "127.0.0.2", "--data", str(tmp_path / "data")],
                         stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: port_accepts(port, "127.0.0.2") or p.poll() is not None, timeout=20,
                   what="distri to listen on 127.0.0.2")
        assert p.poll() is None, (tmp_path / "log").read_text()
        assert not port_accepts(port, "127.0.0.1"), "listening on more than --bind"
        with socket.create_connection(("127.0.0.2", port), timeout=5) as s:
            s.sendall(b"PING\r\n")
            assert s.recv(100) == b"+PONG\r\n"
        assert f"listening on 127.0.0.2:{port}" in (tmp_path / "log").read_text()
    finally:
        p.send_signal(signal.SIGTERM)
        code = p.wait(15)
        log.close()
    assert code == 0


def test_port_in_use_is_a_clear_error(distri_path, tmp_path):
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = run(distri_path, "serve", "--port", str(port), "--http-port", str(free_port()),
                "--bind", "127.0.0.1", "--data", str(tmp_path / "d"))
    assert p.returncode > 0
    assert str(port) in p.stderr or "in use" in p.stderr.lower(), p.stderr
    assert "listening on" not in p.stderr, "the start line must not claim a port it failed to get"


def test_fsync_off_serves(server_factory):
    s = server_factory(fsync="off")
    c = s.client()
    assert c.set("k", "v") is True
    assert c.get("k") == "v"
    s.restart()  # a graceful stop flushes even without per-write fsync
    assert s.client().get("k") == "v"


def test_starts_fast(server_factory):
    s = server_factory(start=False)
    t0 = time.monotonic()
    s.start()
    assert time.monotonic() - t0 < 10
