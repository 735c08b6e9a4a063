#!/usr/bin/env python3
"""Several processes share one room; each sets and reads back its own counter.

    python examples/kv_clients.py distri://server:7379/ROOMCODE --procs 4 --rounds 1000

Each process writes `counter:<n>` = i for i in 0..rounds-1 and reads it back at
once: it must always read its own latest write (a read on a connection sees
every earlier write of that connection). The parent checks every final value.
Exit status 0 when every process read its own writes.
"""

import argparse
import multiprocessing
import sys

import distri


def worker(url: str, n: int, rounds: int) -> None:
    with distri.connect(url) as room:
        key = f"counter:{n}"
        for i in range(rounds):
            room[key] = i
            got = room[key]
            assert got == i, f"process {n}: wrote {i}, read {got!r}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url", nargs="?", help="distri://host:port/ROOM (no room: make one)")
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=1000)
    args = ap.parse_args()

    room = distri.connect(args.url)        # makes the room when the URL has none
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=worker, args=(room.url, n, args.rounds))
             for n in range(args.procs)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    failed = [n for n, p in enumerate(procs) if p.exitcode != 0]
    final = room.get_many([f"counter:{n}" for n in range(args.procs)])
    print(f"{args.procs} processes x {args.rounds} rounds; final counters {final}")
    room.close()
    if failed or final != [args.rounds - 1] * args.procs:
        print(f"FAILED: processes {failed}", file=sys.stderr)
        return 1
    print("every process read its own writes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
