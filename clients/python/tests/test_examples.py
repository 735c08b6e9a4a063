"""Each example in examples/ run as a user would, against the real server."""

import subprocess
import sys

import distri
from conftest import EXAMPLES, python_env, run_example, wait_until


def test_work_split_three_workers_each_number_once(server):
    room = distri.connect(server.url, quiet=True)
    workers = [subprocess.Popen([sys.executable, str(EXAMPLES / "work_split.py"), room.url,
                                 "--total", "10000", "--chunk", "500", "--name", f"w{i}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=python_env())
               for i in range(3)]
    outputs = [w.communicate(timeout=90) for w in workers]
    for w, (out, err) in zip(workers, outputs):
        assert w.returncode == 0, err
        assert "room finished 10000" in out
    assert "room" in outputs[0][1]               # a progress bar/line was shown

    chunks = {k: room[k] for k in room.keys("done:")}
    assert sorted(c["start"] for c in chunks.values()) == list(range(0, 10000, 500))
    covered = sorted(n for c in chunks.values() for n in range(c["start"], c["end"]))
    assert covered == list(range(10000))         # every number exactly once
    assert sum(c["sum"] for c in chunks.values()) == sum(n * n for n in range(10000))
    assert room["finished"] == 10000
    per_worker = {c["worker"] for c in chunks.values()}
    assert len(per_worker) >= 2                  # the work was actually shared
    reported = sum(int(out.split("processed ")[1].split()[0]) for out, _ in outputs)
    assert reported == 10000
    room.close()


def test_work_split_without_room_makes_one(server):
    r = run_example("work_split.py", server.url, "--total", "1000", "--quiet", timeout=60)
    assert r.returncode == 0, r.stderr
    assert "processed 1000 numbers" in r.stdout
    assert "other workers:" in r.stderr


def test_kv_clients_four_processes(server):
    room = distri.connect(server.url, quiet=True)
    r = run_example("kv_clients.py", room.url, "--procs", "4", "--rounds", "1000", timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "every process read its own writes" in r.stdout
    assert room.get_many([f"counter:{n}" for n in range(4)]) == [999] * 4
    room.close()


def test_on_change_to_file(server, tmp_path):
    room = distri.connect(server.url, quiet=True)
    room["status"] = "starting"
    path = tmp_path / "status.txt"
    watcher = subprocess.Popen([sys.executable, str(EXAMPLES / "on_change_to_file.py"),
                                room.url, "status", str(path), "--count", "4"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=python_env())
    try:
        wait_until(lambda: path.exists() and path.read_text() == "starting\n", timeout=15,
                   what="the current value in the file")
        for value, text in (("running", "running\n"), ({"done": 3}, '{"done": 3}\n'),
                            (42, "42\n")):
            room["status"] = value
            room["status:other"] = "ignored"     # same prefix, another key
            wait_until(lambda: path.read_text() == text, timeout=10, what=repr(text))
        del room["status"]
        wait_until(lambda: not path.exists(), timeout=10, what="file removed")
        out, err = watcher.communicate(timeout=15)
        assert watcher.returncode == 0, err
        assert out.count("revision ") == 4
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    room.close()


def test_ping_pong_two_processes(server):
    r = run_example("ping_pong.py", server.url, "--rounds", "20", timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "20 pings, 20 pongs" in r.stdout
    assert r.stdout.count("-> pong from ponger") == 20
    assert "ponger: answered 20 pings" in r.stdout       # the second process's own output


def test_encrypt_service_spread_over_two_workers(server):
    room = distri.connect(server.url, quiet=True)
    r = run_example("encrypt_service.py", room.url, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "100 requests in" in r.stdout and "spread over 2 workers" in r.stdout
    assert "tampered ciphertext refused by the worker: ValueError" in r.stdout
    served = {k: room[k] for k in room.keys("served:")}
    assert set(served) == {"served:worker-1", "served:worker-2"}
    assert sum(served.values()) == 100 and min(served.values()) >= 20   # both took a share
    for name, n in served.items():
        assert f"{name.split(':')[1]}: {n} requests" in r.stdout
    room.close()


def test_broadcast_reload_every_worker_answers(server):
    room = distri.connect(server.url, quiet=True)
    r = run_example("broadcast_reload.py", room.url, "--workers", "3", timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 of 3 workers reloaded the configuration" in r.stdout
    for i in (1, 2, 3):
        assert f"worker-{i}: now runs version 2 (was 1" in r.stdout
    assert room["config"]["version"] == 2
    room.close()
