"""A MIRROR client that follows the default room through the faults, as an application would.

It holds a RESP3 connection to one node, applies every push frame, and on any error, on a
silence of `stall` seconds, or every `hop` seconds anyway, reconnects to the next node with
`MIRROR FROM <last revision>` (or without FROM when it never reached `ready`). What it checks
(see docs/protocol.md, "Resuming"; these are etcd's watch guarantees, validate/watch.go):

* ordered: within a session every change frame's revision is above the previous frame's,
  and `ready` is not below them;
* no repeat, no going back: after a resume every change is above the FROM revision, and a
  `reset` (snapshot mode) is never below the revision the copy had reached;
* resumable: reconnecting elsewhere continues the copy (counted: resumes and snapshots);
* complete: at the end its copy equals the final state read by the clients (the test
  compares; this class only keeps the copy and its revision).

Our workload writes one key per command, so one revision never has two frames.
"""

import threading
import time

from conftest import RawError
from cluster_util import HostRaw


def _text(v):
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


class MirrorFollower(threading.Thread):
    def __init__(self, cluster, stop, stall=3.0, hop=7.0):
        super().__init__(daemon=True, name="mirror")
        self.cluster = cluster
        self.stop = stop
        self.stall = stall
        self.hop = hop
        self.state = {}             # the copy as of last_rev (only after a ready)
        self.last_rev = None
        self.lock = threading.Lock()
        self.violations = []
        self.sessions = 0
        self.resumes = 0
        self.snapshots = 0
        self.changes = 0
        self.node_pos = 0
        self.exception = None

    def run(self):
        try:
            while not self.stop.is_set():
                node = self.cluster.nodes[self.node_pos % len(self.cluster.nodes)]
                self.node_pos += 1
                if node.port is None:
                    continue
                try:
                    self._session(node)
                except (OSError, AssertionError):
                    pass            # the node went away: the next one resumes
                if not self.cluster.running():
                    self.stop.wait(0.05)
        except Exception as e:      # surfaced by the test
            self.exception = e

    def _violation(self, text):
        with self.lock:
            self.violations.append(text)

    def _session(self, node):
        conn = HostRaw(node.host, node.port, self.stall)
        with conn:
            hello = conn.cmd("HELLO", "3")
            if isinstance(hello, RawError):
                return
            with self.lock:
                from_rev = self.last_rev
            args = ["MIRROR"] + (["FROM", str(from_rev)] if from_rev is not None else [])
            reply = conn.cmd(*args)
            if isinstance(reply, RawError):
                return              # e.g. no leader yet on this node: try the next one
            if not isinstance(reply, dict):
                self._violation(f"MIRROR replied {reply!r}")
                return
            self.sessions += 1
            mode = _text(reply.get(b"mode"))
            if from_rev is not None:
                if mode == "resume":
                    self.resumes += 1
                else:
                    self.snapshots += 1
            copy = dict(self.state) if mode == "resume" else None
            cur = from_rev if mode == "resume" else None  # revision of the last frame
            ready = False
            hop_at = time.monotonic() + self.hop
            while not self.stop.is_set() and time.monotonic() < hop_at:
                frame = conn.read_reply()       # socket timeout = stall: reconnect elsewhere
                if not (isinstance(frame, list) and frame and frame[0] == b"mirror"):
                    self._violation(f"unexpected reply on a mirror connection: {frame!r}")
                    return
                kind = _text(frame[2])
                if kind == "reset":
                    rev = int(frame[3])
                    if from_rev is not None and rev < from_rev:
                        self._violation(f"reset to {rev} below the copy's revision {from_rev}")
                    copy, cur = {}, rev
                elif kind == "snapshot":
                    items = frame[3]
                    for i in range(0, len(items), 3):
                        copy[_text(items[i])] = _text(items[i + 1])
                elif kind == "ready":
                    rev = int(frame[3])
                    if cur is not None and rev < cur:
                        self._violation(f"ready {rev} below an applied revision {cur}")
                    with self.lock:
                        self.state, self.last_rev = copy, rev
                    copy, cur, ready = None, rev, True
                elif kind in ("set", "del", "flush"):
                    rev = int(frame[3])
                    if cur is not None and rev <= cur:
                        self._violation(f"{kind} at revision {rev} after revision {cur} "
                                        f"({'repeat' if rev == cur else 'out of order'}, "
                                        f"mode {mode}, from {from_rev})")
                    cur = rev
                    target = self.state if ready else copy
                    with self.lock:
                        if kind == "set":
                            target[_text(frame[4])] = _text(frame[5])
                        elif kind == "del":
                            target.pop(_text(frame[4]), None)
                        else:
                            target.clear()
                        if ready:
                            self.last_rev = rev
                    self.changes += 1
                else:
                    self._violation(f"unknown mirror frame {frame!r}")

    def snapshot(self):
        with self.lock:
            return dict(self.state), self.last_rev
