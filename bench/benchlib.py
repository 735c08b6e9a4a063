"""Shared pieces of the side-by-side benchmark runners (redis_compare.py,
nats_compare.py): child processes and temp dirs we own and always clean up,
free loopback ports, and what to say about the machine and the peers."""

import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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
