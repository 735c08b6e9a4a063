#!/usr/bin/env python3
"""An "encrypt" service on bytes, served by two worker processes; a caller sends
it 100 requests and shows how the server spread them over the workers.

    # one command: makes a room, starts two workers, sends the requests
    python examples/encrypt_service.py distri://server:7379
    # or workers on other machines, joining the room:
    python examples/encrypt_service.py distri://server:7379/ROOMCODE --worker
    python examples/encrypt_service.py distri://server:7379/ROOMCODE --workers 0

Each call goes to the worker with the fewest requests in flight (round robin
among ties), so two equal workers share the load. Arguments and results are
bytes here, sent as they are (no pickle). Each worker counts what it served in
the room (`served:<worker>`), which is how the caller shows the spread.

The cipher is a small demonstration built from the standard library
(HMAC-SHA256 as a keystream, then an HMAC tag over nonce and ciphertext); the
key stays with the workers ($ENCRYPT_KEY). Use a real library (`cryptography`)
for real data.
"""

import argparse
import concurrent.futures
import hashlib
import hmac
import os
import signal
import subprocess
import sys
import time

import distri

NONCE, TAG = 16, 16


def _keystream(key: bytes, nonce: bytes, n: int) -> bytes:
    blocks = (hmac.new(key, nonce + i.to_bytes(8, "big"), hashlib.sha256).digest()
              for i in range((n + 31) // 32))
    return b"".join(blocks)[:n]


def seal(key: bytes, data: bytes) -> bytes:
    nonce = os.urandom(NONCE)
    body = bytes(a ^ b for a, b in zip(data, _keystream(key, nonce, len(data))))
    return nonce + body + hmac.new(key, nonce + body, hashlib.sha256).digest()[:TAG]


def open_sealed(key: bytes, sealed: bytes) -> bytes:
    nonce, body, tag = sealed[:NONCE], sealed[NONCE:-TAG], sealed[-TAG:]
    if not hmac.compare_digest(tag, hmac.new(key, nonce + body, hashlib.sha256).digest()[:TAG]):
        raise ValueError("ciphertext was altered or sealed with another key")
    return bytes(a ^ b for a, b in zip(body, _keystream(key, nonce, len(body))))


def worker(url: str, name: str) -> int:
    key = hashlib.sha256(os.environ.get("ENCRYPT_KEY", "demo key").encode()).digest()
    room = distri.connect(url, quiet=True)

    @room.service("encrypt")
    def encrypt(data: bytes) -> bytes:
        room.incr(f"served:{name}")
        return seal(key, data)

    @room.service("decrypt")
    def decrypt(sealed: bytes) -> bytes:
        return open_sealed(key, sealed)          # a ValueError reaches the caller

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"{name}: serving encrypt, decrypt in room {room.code}", flush=True)
    try:
        room.serve(name=name, concurrency=2)     # blocks
    finally:
        room.close()
    return 0


def caller(url: str, requests: int, workers: int, timeout: float) -> int:
    room = distri.connect(url)
    procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), room.url, "--worker",
                               "--name", f"worker-{i + 1}"]) for i in range(workers)]
    try:
        deadline = time.monotonic() + timeout
        want = max(workers, 1)
        while room.services().get("encrypt", {}).get("workers", 0) < want:
            if time.monotonic() > deadline:
                print(f"fewer than {want} workers serve 'encrypt'", file=sys.stderr)
                return 1
            time.sleep(0.02)

        messages = [f"message {i}: {'secret ' * (i % 7)}".encode() for i in range(requests)]
        t = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:   # 8 calls in flight
            sealed = list(pool.map(lambda m: room.call("encrypt", m, timeout=timeout), messages))
        elapsed = time.perf_counter() - t
        assert all(isinstance(s, bytes) and len(s) == len(m) + NONCE + TAG
                   for s, m in zip(sealed, messages))
        assert room.call("decrypt", sealed[0]) == messages[0]
        assert room.call("decrypt", sealed[-1]) == messages[-1]
        try:
            room.call("decrypt", sealed[1][:-1] + bytes([sealed[1][-1] ^ 1]))
            print("a tampered ciphertext was accepted", file=sys.stderr)
            return 1
        except distri.ServiceError as e:
            print(f"tampered ciphertext refused by the worker: {e.message}")

        served = {k.split(":", 1)[1]: room[k] for k in room.keys("served:")}
        print(f"{requests} requests in {elapsed * 1000:.0f} ms; spread over "
              f"{len(served)} workers:")
        for w in sorted(served):
            print(f"  {w}: {served[w]} requests")
        if sum(served.values()) != requests:
            print("the counts do not add up", file=sys.stderr)
            return 1
        return 0
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
    ap.add_argument("--workers", type=int, default=2, help="worker processes to start")
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()
    if args.worker:
        if not args.url:
            ap.error("--worker needs the URL of the caller's room")
        return worker(args.url, args.name)
    return caller(args.url, args.requests, args.workers, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
