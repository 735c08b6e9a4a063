#!/usr/bin/env python3
"""Every worker reloads its configuration on one broadcast call, and every
worker's answer comes back.

    # one command: makes a room, starts three workers, changes the configuration
    # and asks all of them to reload it
    python examples/broadcast_reload.py distri://server:7379
    # or workers on other machines, joining the room:
    python examples/broadcast_reload.py distri://server:7379/ROOMCODE --worker
    python examples/broadcast_reload.py distri://server:7379/ROOMCODE --workers 0 --expect 3

The configuration lives in the room under "config". Each worker loads it at
start and serves "reload", which loads it again and answers with the version it
now runs. room.call_all("reload") sends the request to every worker registered
at that moment and returns {worker: answer}; a worker that fails or does not
answer in time appears with its error instead of hiding the others' answers.
"""

import argparse
import os
import signal
import subprocess
import sys
import time

import distri


def worker(url: str, name: str) -> int:
    room = distri.connect(url, quiet=True)
    config = room.get("config", {})

    @room.service("reload")
    def reload() -> dict:
        nonlocal config
        old = config.get("version")
        config = room["config"]
        print(f"{name}: configuration {old} -> {config['version']}", flush=True)
        return {"version": config["version"], "previous": old, "pid": os.getpid()}

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        room.serve(name=name)                   # blocks
    finally:
        room.close()
    return 0


def main_caller(url: str, workers: int, expect: int, timeout: float) -> int:
    room = distri.connect(url)
    room["config"] = {"version": 1, "greeting": "hello", "batch": 100}
    procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), room.url, "--worker",
                               "--name", f"worker-{i + 1}"]) for i in range(workers)]
    try:
        deadline = time.monotonic() + timeout
        while room.services().get("reload", {}).get("workers", 0) < expect:
            if time.monotonic() > deadline:
                print(f"fewer than {expect} workers serve 'reload'", file=sys.stderr)
                return 1
            time.sleep(0.02)

        room["config"] = {"version": 2, "greeting": "hi", "batch": 250}
        replies = room.call_all("reload", timeout=timeout)      # one call, every worker
        ok = 0
        for w, reply in sorted(replies.items()):
            if isinstance(reply, Exception):
                print(f"  {w}: FAILED {reply}")
            else:
                print(f"  {w}: now runs version {reply['version']} "
                      f"(was {reply['previous']}, pid {reply['pid']})")
                ok += reply["version"] == 2
        print(f"{ok} of {len(replies)} workers reloaded the configuration")
        return 0 if ok == len(replies) >= expect else 1
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)
        room.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url", nargs="?", help="distri://host:port/ROOM (no room: make one)")
    ap.add_argument("--worker", action="store_true", help="be a worker (serves until killed)")
    ap.add_argument("--name", default=f"worker-{os.getpid()}", help="the worker's name")
    ap.add_argument("--workers", type=int, default=3, help="worker processes to start")
    ap.add_argument("--expect", type=int, help="workers to wait for (default: --workers)")
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()
    if args.worker:
        if not args.url:
            ap.error("--worker needs the URL of the caller's room")
        return worker(args.url, args.name)
    expect = args.workers if args.expect is None else args.expect
    return main_caller(args.url, args.workers, expect, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
