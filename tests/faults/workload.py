"""The fault suite's clients and what is checked of their history, besides linearizability.

Clients (threads, raw RESP sockets with timeouts, one outstanding request each) run
SET/GET/CAS on shared register keys and INCR/GET on counter keys of their own kind (about
ten keys at a time, fresh ones every few seconds: KeySpace),
with values unique in the whole run ("c<client>-<seq>"). A client talks to one node and
moves to the next on a connection error, a timeout, or a reply saying the outcome is not
known there (UNKNOWN, TRYAGAIN). Every operation is recorded with monotonic call and return
times in the format tests/linearizability reads (see its model.go).

An error reply to a write counts as "unknown" (it may have applied), except the ones the
protocol documents as certainly not applied (IOERR, OOM, WRONGTYPE, and any error whose text
says "not applied", as a TRYAGAIN refused before proposing does): treating a failed write
as unknown only weakens the check, never the other way round.

Besides Porcupine's verdict, count_stale_reads() and count_lost_writes() count the two
anomalies users notice, in plain terms that do not need a linearization: a read returning a
value that an acknowledged write had already replaced before the read began, and a final
value that misses an acknowledged write.
"""

import bisect
import json
import random
import socket
import threading
import time

from conftest import RawError
from cluster_util import HostRaw

CERTAIN_FAILURES = ("IOERR", "OOM", "WRONGTYPE")   # documented as "not applied"
MOVE_ON = ("UNKNOWN", "TRYAGAIN")                  # this node cannot tell / serve now


class KeySpace:
    """The keys in use: 8 registers and 2 counters per epoch of `epoch_seconds`.

    Clients move to fresh keys every epoch so that no key gathers more than a few thousand
    operations: Porcupine's memory grows with the square of one key's operations (each
    cached state carries a bitset of them), and a long run would not fit otherwise. About
    ten keys are in use at any time, as the fault suite asks."""

    def __init__(self, epoch_seconds=5.0, registers=8, counters=2):
        self.t0 = time.monotonic()
        self.epoch_seconds = epoch_seconds
        self.n_registers = registers
        self.n_counters = counters

    def epoch(self):
        return int((time.monotonic() - self.t0) / self.epoch_seconds)

    def registers(self, epoch):
        return [f"reg{epoch}.{i}" for i in range(self.n_registers)]

    def counters(self, epoch):
        return [f"ctr{epoch}.{i}" for i in range(self.n_counters)]

    def all_keys(self):
        """Every key any client may have used so far."""
        keys = []
        for e in range(self.epoch() + 1):
            keys += self.registers(e) + self.counters(e)
        return keys


class History:
    """Operations of every client, appended from many threads."""

    def __init__(self):
        self.ops = []
        self.lock = threading.Lock()

    def add(self, rec):
        with self.lock:
            self.ops.append(rec)

    def write(self, path):
        with open(path, "w") as f:
            for rec in self.ops:
                f.write(json.dumps(rec) + "\n")

    def counts(self):
        ok = sum(1 for o in self.ops if not o["unknown"] and not o["error"])
        unknown = sum(1 for o in self.ops if o["unknown"])
        failed = sum(1 for o in self.ops if o["error"] and not o["unknown"])
        return ok, unknown, failed


def _text(v):
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


class Client(threading.Thread):
    """One client: a loop of single operations until `stop` is set."""

    def __init__(self, client_id, cluster, keyspace, history, stop, seed, op_timeout=2.0):
        super().__init__(daemon=True, name=f"client{client_id}")
        self.client_id = client_id
        self.keyspace = keyspace
        self.cluster = cluster
        self.history = history
        self.stop = stop
        self.rng = random.Random(seed)
        self.op_timeout = op_timeout
        self.node_pos = client_id
        self.conn = None
        self.seq = 0
        self.last_seen = {}         # key -> last value this client read or wrote (for CAS)
        self.moves = 0
        self.errors = {}            # error code -> count
        self.exception = None

    # -- connection --------------------------------------------------------------

    def _connect(self):
        nodes = self.cluster.nodes
        for _ in range(len(nodes)):
            node = nodes[self.node_pos % len(nodes)]
            if node.port is not None:
                try:
                    self.conn = HostRaw(node.host, node.port, self.op_timeout)
                    return True
                except OSError:
                    pass
            self.node_pos += 1
        return False

    def _move(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.node_pos += 1
        self.moves += 1

    # -- operations --------------------------------------------------------------

    def _next_op(self):
        self.seq += 1
        value = f"c{self.client_id}-{self.seq}"
        epoch = self.keyspace.epoch()
        if self.rng.random() < 0.25:
            key = self.rng.choice(self.keyspace.counters(epoch))
            return ("incr", key, []) if self.rng.random() < 0.5 else ("get", key, [])
        key = self.rng.choice(self.keyspace.registers(epoch))
        r = self.rng.random()
        if r < 0.4:
            return "get", key, []
        if r < 0.7:
            return "set", key, [value]
        seen = self.last_seen.get(key)
        return "cas", key, ([value] if seen is None else [seen, value])

    def run(self):
        try:
            while not self.stop.is_set():
                if self.conn is None and not self._connect():
                    self.stop.wait(0.05)     # every node down: try again shortly
                    continue
                self.do(*self._next_op())
        except Exception as e:              # surfaced by the test, never swallowed
            self.exception = e
        finally:
            if self.conn is not None:
                self.conn.close()

    def do(self, op, key, args):
        """Runs one operation on the current connection and records it."""
        command = {"get": ["GET", key], "set": ["SET", key] + args,
                   "cas": ["CAS", key] + args, "incr": ["INCR", key]}[op]
        rec = {"client": self.client_id, "op": op, "key": key, "args": args,
               "output": None, "unknown": False, "error": ""}
        rec["call"] = time.monotonic_ns()
        try:
            reply = self.conn.cmd(*command)
        except (OSError, AssertionError) as e:  # reset, timeout, closed mid-reply
            rec["return"] = time.monotonic_ns()
            rec["error"] = f"connection: {type(e).__name__}"
            rec["unknown"] = op != "get"
            self._count("connection")
            self.history.add(rec)
            self._move()
            return rec
        rec["return"] = time.monotonic_ns()
        if isinstance(reply, RawError):
            code = reply.split(" ", 1)[0]
            rec["error"] = str(reply)[:200]
            certain = code in CERTAIN_FAILURES or "not applied" in reply
            rec["unknown"] = op != "get" and not certain
            self._count(code)
            self.history.add(rec)
            if code in MOVE_ON:
                self._move()
            return rec
        if op == "get":
            rec["output"] = _text(reply)
            if reply is not None:
                self.last_seen[key] = rec["output"]
        elif op == "set":
            rec["output"] = _text(reply)
            self.last_seen[key] = args[0]
        else:
            rec["output"] = reply
            if op == "cas" and reply == 1:
                self.last_seen[key] = args[-1]
        self.history.add(rec)
        return rec

    def _count(self, code):
        self.errors[code] = self.errors.get(code, 0) + 1


def final_reads(cluster, history, client_id, keys):
    """Reads every key through every running node (followers forward linearizable reads),
    recorded in the history like any client's reads; returns {key: value} as seen by the
    first node that answered every key."""
    finals = None
    for node in cluster.running():
        try:
            conn = HostRaw(node.host, node.port, 10.0)
        except OSError:
            continue
        with conn:
            client = Client(client_id, cluster, None, history, threading.Event(), 0, 10.0)
            client.conn = conn
            got = {}
            for key in keys:
                rec = client.do("get", key, [])
                if rec["error"]:
                    break
                got[key] = rec["output"]
            if finals is None and len(got) == len(keys):
                finals = got
        client_id += 1
    return finals


# ---------------------------------------------------------------------------
# Anomalies counted directly from the history
# ---------------------------------------------------------------------------

class _KeyIndex:
    """Per key, the acknowledged writes sorted by call time with the suffix minimum of
    their return times, and the acknowledged increments by return time with the prefix
    maximum of their results: each question below is then one bisection."""

    def __init__(self, ops):
        self.by_value = {}          # value -> the write that produced it (values are unique)
        writes, incrs = {}, {}
        for o in ops:
            certainly_failed = o["error"] and not o["unknown"]
            if o["op"] == "set" and not certainly_failed:
                self.by_value[o["args"][0]] = o
            elif o["op"] == "cas" and (o["unknown"] or o["output"] == 1):
                self.by_value[o["args"][-1]] = o
            if o["unknown"] or o["error"]:
                continue
            if o["op"] == "set" or (o["op"] == "cas" and o["output"] == 1):
                writes.setdefault(o["key"], []).append((o["call"], o["return"]))
            elif o["op"] == "incr":
                incrs.setdefault(o["key"], []).append((o["return"], o["output"]))
        self.writes = {}
        for key, ws in writes.items():
            ws.sort()
            suffix_min = [0] * len(ws)
            low = float("inf")
            for i in range(len(ws) - 1, -1, -1):
                low = min(low, ws[i][1])
                suffix_min[i] = low
            self.writes[key] = ([c for c, _ in ws], suffix_min)
        self.incrs = {}
        for key, xs in incrs.items():
            xs.sort()
            prefix_max, high = [], -1
            for _, out in xs:
                high = max(high, out)
                prefix_max.append(high)
            self.incrs[key] = ([r for r, _ in xs], prefix_max)

    def superseded(self, key, value, before):
        """True when an acknowledged write of key began after value's write had returned
        and returned before `before` (value None: any acknowledged write did)."""
        if key not in self.writes:
            return False
        calls, suffix_min = self.writes[key]
        if value is None:
            start = -1
        else:
            w = self.by_value.get(value)
            if w is None or w["unknown"]:
                return False        # never written (Porcupine reports it) or time unknown
            start = w["return"]
        i = bisect.bisect_right(calls, start)
        return i < len(calls) and suffix_min[i] < before

    def max_incr_before(self, key, before):
        """The largest result of an increment of key acknowledged before `before`."""
        if key not in self.incrs:
            return None
        returns, prefix_max = self.incrs[key]
        i = bisect.bisect_left(returns, before)
        return prefix_max[i - 1] if i else None


def count_stale_reads(ops):
    """Reads that returned a value (or nothing) when an acknowledged write had replaced it
    before the read was sent; for counters, a value below an INCR acknowledged earlier."""
    index = _KeyIndex(ops)
    stale = []
    for r in ops:
        if r["op"] != "get" or r["error"]:
            continue
        if r["key"].startswith("ctr"):
            high = index.max_incr_before(r["key"], r["call"])
            if high is not None and int(r["output"] or 0) < high:
                stale.append(r)
        elif index.superseded(r["key"], r["output"], r["call"]):
            stale.append(r)
    return stale


def count_lost_writes(ops, finals):
    """Final values that miss an acknowledged write: a register whose final value had been
    overwritten by an acknowledged write, a counter below an acknowledged increment."""
    index = _KeyIndex(ops)
    lost = []
    for key, value in finals.items():
        if key.startswith("ctr"):
            high = index.max_incr_before(key, float("inf"))
            if high is not None and int(value or 0) < high:
                lost.append((key, value, high))
        elif index.superseded(key, value, float("inf")):
            lost.append((key, value))
    return lost
