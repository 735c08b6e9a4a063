"""A full disk: writes fail with a clear error, nothing acknowledged is lost,
reads keep working, and writes succeed again once space comes back.

Uses a small tmpfs mounted over the server's data directory, so it needs root
(CI runs as root); elsewhere it is skipped."""

import os
import subprocess

import pytest

pytestmark = pytest.mark.distri


@pytest.fixture
def small_disk(server_factory):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    s = server_factory(start=False)
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


def test_full_disk_refuses_writes_and_recovers(small_disk):
    s = small_disk
    filler = s.data_dir / "filler"
    s.start()
    c = s.client()
    acked = {}
    failure = None
    value = "v" * 2000
    for i in range(4000):
        try:
            c.set(f"k{i}", value)
            acked[f"k{i}"] = value
        except Exception as e:  # noqa: BLE001 - the server's error reply
            failure = str(e)
            break
        if i == 20:
            # Take most of the remaining space at once, so the log fills soon.
            free = os.statvfs(s.data_dir).f_bavail * os.statvfs(s.data_dir).f_frsize
            with open(filler, "wb") as f:
                f.write(b"\0" * max(0, free - 200_000))
    assert failure is not None, "the disk never filled"
    print("failure after", len(acked), "writes:", failure)
    assert "write not persisted" in failure and "No space left" in failure, failure
    # The server is alive, reads work, every acknowledged write is readable.
    assert c.ping()
    for k in list(acked)[::50]:
        assert c.get(k) == value
    # Space comes back: writes work again.
    filler.unlink()
    c.set("after", "space")
    assert c.get("after") == "space"
    # A crash now loses nothing that was acknowledged.
    s.restart(kill=True)
    c = s.client()
    assert c.get("after") == "space"
    assert all(c.get(k) == value for k in acked)
    assert "log write failed" in s.log_text()
