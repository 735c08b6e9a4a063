"""The Python side of the browser tests: a long-lived helper that reads one
JSON command per line on stdin and answers one JSON line on stdout.

It uses Distri's Python client (clients/python) as a user would; where that
package is not importable it falls back to redis-py with the same value
encoding (JSON text), so the browser tests still run.

  {"op": "set", "port": P, "room": R, "key": K, "value": V}  -> {"ok": true}
  {"op": "get", "port": P, "room": R, "key": K}              -> {"ok": true, "value": V | null}
  {"op": "fill", "port": P, "room": R, "n": N}               -> {"ok": true}  (keys k:00000.. = i)
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python" / "src"))

try:
    import distri
except ImportError:  # the client is not in this tree: speak RESP directly
    distri = None
    import redis

_rooms = {}


def room(port, code):
    if (port, code) not in _rooms:
        if distri is not None:
            _rooms[(port, code)] = distri.connect(f"distri://127.0.0.1:{port}/{code}", quiet=True,
                                                  retry_timeout=0)
        else:
            r = redis.Redis(port=port, single_connection_client=True)
            r.execute_command("ROOM.JOIN", code)
            _rooms[(port, code)] = r
    return _rooms[(port, code)]


def handle(cmd):
    r = room(cmd["port"], cmd["room"])
    if cmd["op"] == "set":
        if distri is not None:
            r[cmd["key"]] = cmd["value"]
        else:
            r.set(cmd["key"], json.dumps(cmd["value"]))
        return {"ok": True}
    if cmd["op"] == "get":
        if distri is not None:
            return {"ok": True, "value": r.get(cmd["key"])}
        raw = r.get(cmd["key"])
        return {"ok": True, "value": None if raw is None else json.loads(raw)}
    if cmd["op"] == "fill":
        n = cmd["n"]
        for start in range(0, n, 1000):
            batch = {f"k:{i:05d}": i for i in range(start, min(n, start + 1000))}
            if distri is not None:
                r.update(batch)
            else:
                r.mset({k: json.dumps(v) for k, v in batch.items()})
        return {"ok": True}
    return {"ok": False, "error": f"unknown op {cmd['op']}"}


def main():
    print(json.dumps({"ok": True, "client": "distri" if distri is not None else "redis-py"}), flush=True)
    for line in sys.stdin:
        try:
            reply = handle(json.loads(line))
        except Exception as e:  # report, keep serving
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
