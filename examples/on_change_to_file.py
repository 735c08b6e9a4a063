#!/usr/bin/env python3
"""Watch one key of a room and write its value to a file each time it changes.

    python examples/on_change_to_file.py distri://server:7379/ROOMCODE status status.txt

The file is replaced atomically (write to a temporary file, then rename), so a
reader never sees half a value. Strings are written as they are, other values
as JSON; when the key is deleted the file is removed. Stops after --count
changes (default: never) or on Ctrl-C.
"""

import argparse
import json
import os
import sys
import threading

import distri


def write_atomic(path: str, value: object) -> None:
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    os.replace(tmp, path)


def apply_change(path: str, change: distri.Change) -> None:
    if change.deleted:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
    else:
        write_atomic(path, change.value)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url", help="distri://host:port/ROOM")
    ap.add_argument("key")
    ap.add_argument("path")
    ap.add_argument("--count", type=int, default=0, help="stop after this many changes")
    args = ap.parse_args()

    room = distri.connect(args.url)
    seen = 0
    finished = threading.Event()
    file_lock = threading.Lock()        # the callback runs on the mirror's thread

    def on_change(change: distri.Change) -> None:
        nonlocal seen
        if change.key != args.key:
            return                      # the prefix also matches longer keys
        with file_lock:
            apply_change(args.path, change)
        seen += 1
        print(f"revision {change.revision}: {args.key} {change.kind}", flush=True)
        if args.count and seen >= args.count:
            finished.set()

    room.on_change(on_change, prefix=args.key)
    with file_lock:                     # start from the current value
        try:
            write_atomic(args.path, room.data[args.key])
        except KeyError:
            pass
    print(f"watching {args.key!r} in room {room.code}", flush=True)
    try:
        while not finished.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    room.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
