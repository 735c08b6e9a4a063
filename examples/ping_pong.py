#!/usr/bin/env python3
"""Two processes play ping pong through the topics "ping" and "pong" of a room.

    # one command: makes a room (or joins the one in the URL), starts the ponger
    # as a second process and plays --rounds pings
    python examples/ping_pong.py distri://server:7379
    # or on two machines, in the same room:
    python examples/ping_pong.py distri://server:7379/ROOMCODE --pong
    python examples/ping_pong.py distri://server:7379/ROOMCODE --ping

The pinger publishes {"n": i} on "ping" and waits for the pong that carries the
same n on "pong"; the ponger answers each ping it receives. Both subscribe
before they publish (pub/sub keeps nothing for late subscribers), and the pinger
starts only once the ponger listens: publish() returns how many received it.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

import distri


def pong(url: str, name: str) -> int:
    room = distri.connect(url, quiet=True)
    answered = 0
    with room.subscribe("ping") as pings:
        print(f"{name}: listening on 'ping' in room {room.code}", flush=True)
        for msg in pings:
            ping = msg.value
            if ping.get("stop"):
                break
            room.publish("pong", {"n": ping["n"], "by": name})
            answered += 1
    print(f"{name}: answered {answered} pings")
    room.close()
    return 0


def ping(url: str, rounds: int, start_ponger: bool, timeout: float) -> int:
    room = distri.connect(url)
    child = None
    if start_ponger:
        child = subprocess.Popen([sys.executable, os.path.abspath(__file__), room.url, "--pong",
                                  "--name", "ponger"])
    try:
        with room.subscribe("pong") as pongs:
            deadline = time.monotonic() + timeout
            while room.subscribers("ping") == 0:        # wait for a ponger to listen
                if time.monotonic() > deadline or (child and child.poll() is not None):
                    print("no ponger is listening on 'ping'", file=sys.stderr)
                    return 1
                time.sleep(0.02)
            times = []
            for n in range(rounds):
                t = time.perf_counter()
                room.publish("ping", {"n": n})
                msg = pongs.get(timeout=timeout)
                if msg is None:
                    print(f"ping {n}: no pong within {timeout}s", file=sys.stderr)
                    return 1
                if msg.value["n"] != n:
                    print(f"ping {n}: got pong {msg.value['n']}", file=sys.stderr)
                    return 1
                times.append((time.perf_counter() - t) * 1000)
                print(f"ping {n} -> pong from {msg.value['by']} in {times[-1]:.2f} ms")
        print(f"{rounds} pings, {len(times)} pongs; round trip median "
              f"{statistics.median(times):.2f} ms, max {max(times):.2f} ms")
        return 0
    finally:
        if child is not None:
            room.publish("ping", {"stop": True})
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        room.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url", nargs="?", help="distri://host:port/ROOM (no room: make one)")
    role = ap.add_mutually_exclusive_group()
    role.add_argument("--pong", action="store_true", help="only answer pings")
    role.add_argument("--ping", action="store_true", help="only ping (a ponger runs elsewhere)")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a pong")
    ap.add_argument("--name", default=f"{socket.gethostname()}:{os.getpid()}")
    args = ap.parse_args()
    if args.pong:
        if not args.url:
            ap.error("--pong needs the URL of the pinger's room")
        return pong(args.url, args.name)
    return ping(args.url, args.rounds, start_ponger=not args.ping, timeout=args.timeout)


if __name__ == "__main__":
    sys.exit(main())
