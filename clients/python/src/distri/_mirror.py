"""The live mirror of a room: a state machine over MIRROR's push frames (no I/O).

Both faces feed it: the blocking face from a background thread, the asyncio face
from a background task. They call, in this order, for each connection:

    args = state.mirror_args()      # MIRROR, or MIRROR FROM r to resume
    state.started(reply)            # the MIRROR reply map
    state.apply(frame, changes)     # every push frame, in arrival order
    state.disconnected()            # when the connection is lost

The frames (docs/protocol.md, "Live mirrors"): reset, snapshot, ready, set, del,
flush. Invariants:
  1. `data` always holds a complete copy of the room at some revision (possibly
     stale while disconnected or while a snapshot is being rebuilt): a snapshot
     is built aside in `_building` and swapped in whole at `ready`, so readers
     never see a half-loaded room.
  2. `_safe` is a revision whose changes were all applied: the `ready` revision,
     the revision before the newest one seen, or the newest one once confirmed.
     One write can span several frames with the same revision (MSET, RENAME)
     and the connection may break between them, so the newest revision is only
     known complete when something the server sent after it arrives: the owner
     sends `PING <revision>` after a batch of changes and passes the echo to
     confirmed() (the server appends all frames of one write at once, so the
     echo comes after all of them). A reconnect resumes FROM `_safe`; any
     overlap is re-applied idempotently and raises no duplicate change events.
  3. A copy interrupted before `ready` is not resumed (the protocol forbids it):
     the next connect mirrors afresh and, at `ready`, the differences between the
     old copy and the new one are reported as changes, so on_change callbacks
     miss nothing across a reconnect.
  4. The first load raises no change events (callbacks report changes after
     the mirror started; room.data shows the state).

Thread safety: not locked here. The owner applies frames under its lock;
readers of `data` rely on the GIL (single dict operations, `list(dict)`) or take
the same lock for multi-step reads (MirrorView.copy).
"""

import threading
from collections.abc import Mapping
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ._codec import Codec
from .errors import ProtocolError

Entry = Tuple[bytes, int]          # (stored value, expire_at_ms or 0)


def _text(b: Any) -> str:
    if isinstance(b, bytes):
        return b.decode("utf-8", "surrogateescape")
    return str(b)


class Change:
    """One change seen by the mirror, passed to on_change callbacks.

    key:          the key (str)
    kind:         "set", "del" (deleted), "expired" (its TTL ran out) or "flush"
                  (FLUSHDB / room dropped)
    revision:     the server's log index of the write
    value:        the new value, decoded (None when deleted); decoded on access; a
                  distri.Undecodable if this client cannot decode it
    raw:          the stored bytes (None when deleted)
    expire_at_ms: Unix ms at which the key expires, 0 for none
    """

    __slots__ = ("key", "kind", "revision", "raw", "expire_at_ms", "_codec")

    def __init__(self, key: str, kind: str, revision: int, raw: Optional[bytes],
                 expire_at_ms: int, codec: Codec) -> None:
        self.key = key
        self.kind = kind
        self.revision = revision
        self.raw = raw
        self.expire_at_ms = expire_at_ms
        self._codec = codec

    @property
    def deleted(self) -> bool:
        return self.raw is None

    @property
    def value(self) -> Any:
        return None if self.raw is None else self._codec.decode_lenient(self.raw, self.key)

    def __repr__(self) -> str:
        if self.raw is None:
            return f"Change({self.key!r}, {self.kind}, revision={self.revision})"
        return f"Change({self.key!r}, set, {self.raw[:40]!r}, revision={self.revision})"


class MirrorState:
    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.data: Dict[str, Entry] = {}
        self.room: Optional[str] = None
        self.mode: Optional[str] = None   # "resume" or "snapshot", of the last MIRROR
        self.ready = False       # connected, and the copy is current
        self.synced = False      # a complete copy was reached at least once
        self.revision = 0        # revision of the copy
        self.resyncs = 0         # how many times the copy was rebuilt after the first load
        self._safe = 0
        self._resumable = False
        self._building: Optional[Dict[str, Entry]] = None
        self._seen = 0           # highest revision applied to `data`
        self._horizon = 0        # _seen when the current connection started
        self._in_session = False # a MIRROR reply was received on the current connection

    # -- connection lifecycle --------------------------------------------------

    def mirror_args(self) -> tuple:
        if self._resumable:
            return ("MIRROR", "FROM", self._safe)
        return ("MIRROR",)

    def resume_point(self) -> Optional[int]:
        """The revision mirror_args() resumes FROM, or None (a fresh copy). A node
        must have applied it to resume; a node behind it is not used (the client
        would see the room go back in time)."""
        return self._safe if self._resumable else None

    def started(self, reply: Any) -> None:
        if not isinstance(reply, dict):
            raise ProtocolError(f"MIRROR replied {reply!r}, expected a map")
        self.room = _text(reply.get(b"room", b""))
        self.mode = _text(reply.get(b"mode", b""))
        self._in_session = True
        self.ready = False
        self._building = None
        self._horizon = self._seen
        if self.mode == "resume" and not self._resumable:
            raise ProtocolError("server resumed a mirror that was not asked to resume")

    def unconfirmed(self) -> Optional[int]:
        """The newest revision not yet known complete (send PING <it>), or None."""
        if self.ready and self.revision > self._safe:
            return self.revision
        return None

    def confirmed(self, rev: int) -> None:
        """The server echoed PING <rev>: every frame of revisions <= rev has arrived."""
        if self._safe < rev <= self.revision:
            self._safe = rev

    def disconnected(self) -> None:
        """The connection is gone (or a connect attempt failed)."""
        if self._in_session and not self.ready:
            self._resumable = False     # interrupted before `ready`: invariant 3
        self._in_session = False
        self.ready = False
        self._building = None

    # -- frames ------------------------------------------------------------------

    def apply(self, frame: List[Any], out: List[Change]) -> None:
        """Applies one push frame; appends the resulting changes to `out`."""
        if len(frame) < 3 or frame[0] != b"mirror":
            return  # not ours (another kind of push)
        kind = frame[2]
        if kind == b"set":
            _, _, _, rev, key, value, exp = frame[:7]
            self._set(int(rev), _text(key), value, int(exp), out)
        elif kind == b"del":
            rev, key, reason = int(frame[3]), _text(frame[4]), frame[5]
            self._del(rev, key, "expired" if reason == b"expired" else "del", out)
        elif kind == b"snapshot":
            if self._building is None:
                raise ProtocolError("mirror snapshot frame without reset")
            items = frame[3] if len(frame) == 4 and isinstance(frame[3], list) else frame[3:]
            b = self._building
            for i in range(0, len(items) - 2, 3):
                b[_text(items[i])] = (items[i + 1], int(items[i + 2]))
        elif kind == b"reset":
            self._building = {}
        elif kind == b"flush":
            self._flush(int(frame[3]), out)
        elif kind == b"ready":
            self._ready(int(frame[3]), out)

    def _advance(self, rev: int) -> None:
        if rev > self.revision:
            self._safe = self.revision
            self.revision = rev
        if rev > self._seen:
            self._seen = rev

    def _set(self, rev: int, key: str, value: bytes, exp: int, out: List[Change]) -> None:
        if self._building is not None:
            self._building[key] = (value, exp)
            return
        entry = (value, exp)
        old = self.data.get(key)
        self.data[key] = entry
        self._advance(rev)
        if rev > self._horizon or old != entry:
            out.append(Change(key, "set", rev, value, exp, self.codec))

    def _del(self, rev: int, key: str, kind: str, out: List[Change]) -> None:
        if self._building is not None:
            self._building.pop(key, None)
            return
        existed = self.data.pop(key, None) is not None
        self._advance(rev)
        if existed:
            out.append(Change(key, kind, rev, None, 0, self.codec))

    def _flush(self, rev: int, out: List[Change]) -> None:
        if self._building is not None:
            self._building.clear()
            return
        old, self.data = self.data, {}
        self._advance(rev)
        for key in old:
            out.append(Change(key, "flush", rev, None, 0, self.codec))

    def _ready(self, rev: int, out: List[Change]) -> None:
        if self._building is not None:
            old, new = self.data, self._building
            if self.synced:
                self.resyncs += 1
                for key, entry in new.items():
                    if old.get(key) != entry:
                        out.append(Change(key, "set", rev, entry[0], entry[1], self.codec))
                for key in old:
                    if key not in new:
                        out.append(Change(key, "del", rev, None, 0, self.codec))
            self.data = new
            self._building = None
            self.revision = rev
        elif rev > self.revision:
            self.revision = rev
        self._safe = self.revision
        self._seen = max(self._seen, self.revision)
        self.ready = True
        self.synced = True
        self._resumable = True


class MirrorView(Mapping):
    """room.data: a read-only Mapping over the live copy of a room.

    Reads are local (no network). Values are decoded on every read, so each read
    returns a fresh object that the caller may change freely. A value this client
    cannot decode (a pickle without pickle=True, a bad signature) reads as a
    distri.Undecodable, so that it never breaks reading the room (copy(), items(),
    dict(room.data), ==, wait_until all go through __getitem__). Keys past their
    expiry stay until the server's expiry frame arrives (about 100 ms later);
    `expire_at(key)` tells when.
    """

    def __init__(self, state: MirrorState, lock: "threading.RLock") -> None:
        self._state = state
        self._lock = lock

    def __getitem__(self, key: str) -> Any:
        if isinstance(key, bytes):
            key = _text(key)
        return self._state.codec.decode_lenient(self._state.data[key][0], key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, bytes):
            key = _text(key)
        return key in self._state.data

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._state.data))

    def __len__(self) -> int:
        return len(self._state.data)

    def __repr__(self) -> str:
        state = "ready" if self._state.ready else "stale"
        return f"<distri room.data {len(self)} keys, revision {self.revision}, {state}>"

    @property
    def revision(self) -> int:
        """The server revision the copy reflects."""
        return self._state.revision

    @property
    def ready(self) -> bool:
        """True while connected and current; False while reconnecting (the copy is
        then the last state seen, complete but possibly stale)."""
        return self._state.ready

    def raw(self, key: str) -> bytes:
        """The stored bytes of a key, undecoded."""
        return self._state.data[key][0]

    def expire_at(self, key: str) -> Optional[float]:
        """Unix time (seconds) at which the key expires, or None."""
        ms = self._state.data[key][1]
        return ms / 1000.0 if ms else None

    def copy(self) -> Dict[str, Any]:
        """A plain dict of the whole room, decoded, taken at one revision."""
        with self._lock:
            items = list(self._state.data.items())
        decode = self._state.codec.decode_lenient
        return {k: decode(v[0], k) for k, v in items}
