#!/usr/bin/env python3
"""Split work between workers on any number of machines, through one room.

Each worker atomically reserves the next chunk of numbers with `incr` (no two
workers can get the same chunk), processes it, and records what it finished in
the room. A progress bar (tqdm if installed, else a plain line) shows the
progress of the whole room, read from the live mirror.

    # machine 1: makes a room and prints its URL
    python examples/work_split.py distri://server:7379
    # machines 2, 3, ...: join the same room
    python examples/work_split.py distri://server:7379/ROOMCODE

Every number in 0..total-1 is processed exactly once, whatever the number of
workers. Records: `done:<start>` = {"worker", "start", "end", "sum"} per chunk,
and the counters `next` (reservations) and `finished` (numbers done).
"""

import argparse
import os
import socket
import sys
import time

import distri


def process(numbers: range, work_ms: float) -> int:
    """The 'work': here a sum of squares, with a little sleep to look busy."""
    time.sleep(work_ms / 1000.0)
    return sum(n * n for n in numbers)


class Progress:
    """Room-wide progress from the mirror: tqdm if available, else one updating line."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total = total
        self.quiet = quiet
        self.bar = None
        if not quiet:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, unit="n", desc="room", file=sys.stderr)
            except ImportError:
                pass

    def show(self, done: int) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.n = min(done, self.total)
            self.bar.refresh()
        else:
            pct = 100.0 * min(done, self.total) / self.total
            print(f"\rroom progress: {done}/{self.total} ({pct:5.1f}%)", end="",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif not self.quiet:
            print(file=sys.stderr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url", nargs="?", help="distri://host:port/ROOM (no room: make one)")
    ap.add_argument("--total", type=int, default=10000, help="numbers 0..total-1")
    ap.add_argument("--chunk", type=int, default=500, help="numbers reserved at a time")
    ap.add_argument("--name", default=f"{socket.gethostname()}:{os.getpid()}")
    ap.add_argument("--work-ms", type=float, default=50, help="simulated work per chunk")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args()

    room = distri.connect(args.url)
    if not args.url or room.code not in args.url:
        print(f"other workers: python {sys.argv[0]} {room.url}", file=sys.stderr)

    progress = Progress(args.total, args.quiet)
    room.on_change(lambda change: progress.show(change.value or 0), prefix="finished")

    mine = 0
    while True:
        end = room.incr("next", args.chunk)          # atomic: this chunk is ours alone
        start = end - args.chunk
        if start >= args.total:
            break
        numbers = range(start, min(end, args.total))
        result = process(numbers, args.work_ms)
        room[f"done:{start}"] = {"worker": args.name, "start": numbers.start,
                                 "end": numbers.stop, "sum": result}
        room.incr("finished", len(numbers))
        mine += len(numbers)

    # Wait (on the mirror) until the other workers finished their last chunks too.
    room.wait_for("finished", lambda n: n >= args.total, timeout=300)
    progress.show(room.data["finished"])
    progress.close()
    print(f"{args.name}: processed {mine} numbers; room finished {room.data['finished']}")
    room.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
