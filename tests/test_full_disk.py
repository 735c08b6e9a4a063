"""A full disk: writes fail with their own error code (IOERR, "not applied"),
nothing acknowledged is lost, reads keep working, the failures are logged a
bounded number of times, and writes and /readyz recover once space comes back.

Uses a small tmpfs mounted over the server's data directory, so it needs root
(CI runs as root); elsewhere it is skipped."""

import http.client
import json
import os
import re
import subprocess
import time

import pytest

import distri

pytestmark = pytest.mark.distri

REFUSED_WRITES = 2000


@pytest.fixture
def small_disk(server_factory):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    # A small snapshot threshold, so snapshots come due (and fail) while the
    # disk is full too.
    s = server_factory(start=False, extra_args=["--snapshot-bytes", "100k"])
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(s.data_dir)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield s
    finally:
        if s.alive():
            s.stop()
        subprocess.run(["umount", "-l", str(s.data_dir)], capture_output=True)


def readyz(s):
    conn = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=10)
    try:
        conn.request("GET", "/readyz")
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def fill_until_refused(s, c, acked, value):
    """Writes until the disk is full; returns the first error's text."""
    filler = s.data_dir / "filler"
    for i in range(4000):
        try:
            c.set(f"k{i}", value)
            acked[f"k{i}"] = value
        except Exception as e:  # noqa: BLE001 - the server's error reply
            return str(e)
        if i == 20:
            # Take most of the remaining space at once, so the log fills soon.
            st = os.statvfs(s.data_dir)
            with open(filler, "wb") as f:
                f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - 200_000))
    raise AssertionError("the disk never filled")


def test_full_disk_refuses_writes_and_recovers(small_disk):
    s = small_disk
    s.start()
    assert readyz(s) == (200, {"status": "ready"})
    c = s.client()
    acked = {}
    value = "v" * 2000
    failure = fill_until_refused(s, c, acked, value)
    print("failure after", len(acked), "writes:", failure)
    # Its own code, saying the write was not applied, with the OS's reason.
    assert failure.startswith("IOERR write not applied") and "No space left" in failure, failure
    assert "nothing changed" in failure
    status, body = readyz(s)
    assert status == 503 and "IOERR" in body["reason"], body
    # The Python client raises its own retryable class, not a bad request.
    room = distri.connect(f"127.0.0.1:{s.port}/default", quiet=True, retry_timeout=0)
    t0 = time.monotonic()
    for i in range(REFUSED_WRITES):
        with pytest.raises(distri.StorageError) as info:
            room[f"refused{i}"] = value
    elapsed = time.monotonic() - t0
    e = info.value
    assert e.code == "IOERR" and e.retryable and isinstance(e, distri.ServerError)
    assert not isinstance(e, distri.RequestError)
    # The server is alive, reads work, every acknowledged write is readable,
    # and no refused write was applied.
    assert c.ping()
    for k in list(acked)[::50]:
        assert c.get(k) == value
    assert room.get_many([f"refused{i}" for i in range(0, REFUSED_WRITES, 100)]) == [None] * 20
    # 2,000 refused writes (and the snapshots that came due meanwhile) log a
    # bounded number of ERROR lines: one per 10 s per kind, plus the first.
    log = s.log_text()
    errors = [line for line in log.splitlines() if " ERROR " in line]
    bound = 2 * (2 + int(elapsed // 10))
    assert 1 <= len(errors) <= bound, (len(errors), errors[:5])
    assert sum("log write failed" in line for line in errors) >= 1
    # Space comes back: the next write succeeds, and readiness recovers with it.
    (s.data_dir / "filler").unlink()
    room["after"] = "space"
    assert c.get("after") == '"space"'
    assert readyz(s) == (200, {"status": "ready"})
    recovered = re.search(r"log writes succeed again at index \d+ \((\d+) entries were refused",
                          s.log_text())
    assert recovered and int(recovered.group(1)) >= REFUSED_WRITES + 1, s.log_tail()
    room.close()
    # A crash now loses nothing that was acknowledged.
    s.restart(kill=True)
    c = s.client()
    assert c.get("after") == '"space"'
    assert all(c.get(k) == value for k in acked)
