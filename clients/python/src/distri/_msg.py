"""Messaging, written once for both faces (no I/O here): pub/sub messages and
subscription state, service payloads, handlers and function names.

Wire formats (docs/python.md, "Messaging"):

  message   PUBLISH topic <payload>: codec.encode_payload(msg) - the value rules
            (JSON text, 0x00+bytes, signed pickle when enabled) plus nested bytes
            as {"$bytes": base64}.
  request   CALL name <payload>: encode_payload({"args": [...], "kwargs": {...}})
            ("kwargs" left out when empty). A worker also accepts a payload that
            is not such an object (from redis-cli or another language): the
            decoded value is then the one positional argument, and an empty
            payload means no arguments.
  result    the handler's return value, encode_payload(result).
  error     SVC.ERROR id "<ExceptionType>: <message>" when the handler raised;
            the caller gets distri.ServiceError with that text.
"""

import itertools
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

from ._codec import Codec
from .errors import CallTimeout, DecodeError, Error, ServerError, ServiceError

log = logging.getLogger("distri")

NO_TIMEOUT_MS = 10 ** 9        # a call "without" timeout: about 11.5 days
DEFAULT_CALL_TIMEOUT = 30.0    # seconds, the server's default too
REPLY_MARGIN = 10.0            # the socket waits this much longer than the call


def _text(b: Any) -> str:
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b)


# ---------------------------------------------------------------------------
# Pub/sub
# ---------------------------------------------------------------------------

class Message:
    """One message received by a subscription.

    topic:   the channel it was published to (str)
    value:   the message, decoded (decoded on access: a message this connection
             cannot decode raises distri.DecodeError there, not in the iterator;
             a pickle is verified as signed for this room and topic)
    pattern: the pattern that matched, for pattern subscriptions; else None
    raw:     the payload bytes as published
    """

    __slots__ = ("topic", "pattern", "raw", "_codec")

    def __init__(self, topic: str, raw: bytes, pattern: Optional[str], codec: Codec) -> None:
        self.topic = topic
        self.raw = raw
        self.pattern = pattern
        self._codec = codec

    @property
    def value(self) -> Any:
        return self._codec.decode_payload(self.raw, ("message", self.topic))

    def __repr__(self) -> str:
        try:
            v = repr(self.value)
        except Error:
            v = f"<{len(self.raw)} undecodable bytes>"
        p = f", pattern={self.pattern!r}" if self.pattern is not None else ""
        return f"Message(topic={self.topic!r}, value={v}{p})"


def _names(names: Iterable[Any], what: str) -> List[str]:
    out = []
    for n in names:
        if isinstance(n, bytes):
            n = n.decode("utf-8", "surrogateescape")
        if not isinstance(n, str) or not n:
            raise TypeError(f"{what} must be non-empty strings, not {n!r}")
        out.append(n)
    return out


class SubState:
    """What one subscription connection is subscribed to, and what the server has
    confirmed. The owner sends commands() after each (re)connect and passes every
    push frame to frame(); messages for names no longer subscribed (in flight
    while unsubscribing) are dropped."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.topics: Set[str] = set()
        self.patterns: Set[str] = set()
        self.confirmed: Set[Tuple[bool, str]] = set()   # (is_pattern, name)

    def add(self, topics: Iterable[Any], patterns: Iterable[Any]) -> List[Tuple[Any, ...]]:
        t = [n for n in _names(topics, "topics") if n not in self.topics]
        p = [n for n in _names(patterns, "patterns") if n not in self.patterns]
        self.topics.update(t)
        self.patterns.update(p)
        cmds: List[Tuple[Any, ...]] = []
        if t:
            cmds.append(("SUBSCRIBE", *t))
        if p:
            cmds.append(("PSUBSCRIBE", *p))
        return cmds

    def remove(self, topics: Iterable[Any], patterns: Iterable[Any]) -> List[Tuple[Any, ...]]:
        t = [n for n in _names(topics, "topics") if n in self.topics]
        p = [n for n in _names(patterns, "patterns") if n in self.patterns]
        self.topics.difference_update(t)
        self.patterns.difference_update(p)
        cmds: List[Tuple[Any, ...]] = []
        if t:
            cmds.append(("UNSUBSCRIBE", *t))
        if p:
            cmds.append(("PUNSUBSCRIBE", *p))
        return cmds

    def commands(self) -> List[Tuple[Any, ...]]:
        """The commands that restore every subscription on a new connection."""
        self.confirmed = set()
        cmds: List[Tuple[Any, ...]] = []
        if self.topics:
            cmds.append(("SUBSCRIBE", *sorted(self.topics)))
        if self.patterns:
            cmds.append(("PSUBSCRIBE", *sorted(self.patterns)))
        return cmds

    def pending(self, topics: Iterable[str], patterns: Iterable[str]) -> bool:
        """True while one of these (still wanted) subscriptions is unconfirmed."""
        for t in topics:
            if t in self.topics and (False, t) not in self.confirmed:
                return True
        for p in patterns:
            if p in self.patterns and (True, p) not in self.confirmed:
                return True
        return False

    def frame(self, frame: List[Any]) -> Optional[Message]:
        """Handles one push frame; returns the message it carries, if one is wanted."""
        if not frame:
            return None
        kind = frame[0]
        if kind == b"message" and len(frame) >= 3:
            topic = _text(frame[1])
            if topic in self.topics:
                return Message(topic, frame[2], None, self.codec)
        elif kind == b"pmessage" and len(frame) >= 4:
            pattern = _text(frame[1])
            if pattern in self.patterns:
                return Message(_text(frame[2]), frame[3], pattern, self.codec)
        elif kind in (b"subscribe", b"psubscribe") and len(frame) >= 2:
            self.confirmed.add((kind == b"psubscribe", _text(frame[1])))
        elif kind in (b"unsubscribe", b"punsubscribe") and len(frame) >= 2:
            self.confirmed.discard((kind == b"punsubscribe", _text(frame[1])))
        return None


# ---------------------------------------------------------------------------
# Services
# ---------------------------------------------------------------------------

def encode_request(codec: Codec, service: str, args: Tuple[Any, ...],
                   kwargs: Dict[str, Any]) -> bytes:
    envelope: Dict[str, Any] = {"args": list(args)}
    if kwargs:
        envelope["kwargs"] = kwargs
    return codec.encode_payload(envelope, ("call", service))


def decode_request(codec: Codec, service: str, raw: bytes) -> Tuple[List[Any], Dict[str, Any]]:
    if not raw:
        return [], {}
    value = codec.decode_payload(raw, ("call", service))
    if (isinstance(value, dict) and isinstance(value.get("args", []), list)
            and isinstance(value.get("kwargs", {}), dict)
            and "args" in value and set(value) <= {"args", "kwargs"}):
        return value["args"], value.get("kwargs", {})
    return [value], {}


def error_text(e: BaseException) -> str:
    """The SVC.ERROR message for an exception raised by a handler."""
    text = str(e)
    name = type(e).__name__
    return f"{name}: {text}" if text else name


def request_frame(frame: List[Any]) -> Optional[Tuple[int, str, bytes]]:
    """(id, service, payload) of a [svc.request, id, service, payload] push frame."""
    if len(frame) == 4 and frame[0] == b"svc.request":
        return int(frame[1]), _text(frame[2]), frame[3] if frame[3] is not None else b""
    return None


def timeout_ms(timeout: Optional[float]) -> int:
    if timeout is None:
        return NO_TIMEOUT_MS
    ms = int(round(timeout * 1000))
    if ms <= 0:
        raise ValueError(f"timeout must be positive, got {timeout!r}")
    return ms


def reply_wait(timeout: Optional[float]) -> Optional[float]:
    """How long the caller's socket waits for a CALL's reply."""
    return None if timeout is None else timeout + REPLY_MARGIN


def call_args(codec: Codec, name: str, args: Tuple[Any, ...], kwargs: Dict[str, Any],
              timeout: Optional[float], every: bool = False) -> Tuple[Any, ...]:
    if not isinstance(name, str) or not name:
        raise TypeError(f"service name must be a non-empty string, not {name!r}")
    return ("CALL.ALL" if every else "CALL", name, encode_request(codec, name, args, kwargs),
            "TIMEOUT", timeout_ms(timeout))


def call_all_result(codec: Codec, name: str, reply: List[Any]) -> Dict[str, Any]:
    """CALL.ALL's [[worker, status, payload], ...] -> {worker: result or exception}.

    A worker whose handler raised maps to a distri.ServiceError, one that did not
    answer in time to a distri.CallTimeout, a result this connection cannot
    decode to the DecodeError (none is raised). A name seen twice gets "#2", ...
    """
    out: Dict[str, Any] = {}
    for entry in reply:
        worker, status, payload = _text(entry[0]), _text(entry[1]), entry[2]
        key, n = worker, 1
        while key in out:
            n += 1
            key = f"{worker}#{n}"
        if status == "ok":
            try:
                out[key] = codec.decode_payload(payload or b"", ("reply", name))
            except DecodeError as e:
                out[key] = e
        elif status == "error":
            out[key] = ServiceError(_text(payload or b""), "SVCERR")
        else:
            out[key] = CallTimeout(f"worker {worker} of service '{name}' did not answer "
                                   f"in time", "TIMEOUT")
    return out


def raise_if_error(reply: Any) -> Any:
    if isinstance(reply, ServerError):
        raise reply
    return reply


def function_name(fn: Callable[..., Any]) -> str:
    """The service name of a @room.function: module.qualname, where a script run
    as __main__ counts as the module named after its file, so `python tasks.py`
    and `import tasks` agree."""
    module = getattr(fn, "__module__", None) or ""
    if module == "__main__":
        main = sys.modules.get("__main__")
        path = getattr(main, "__file__", None)
        if path:
            module = Path(path).stem
    qual = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if not qual:
        raise TypeError(f"cannot name {fn!r}: give @room.function(name=...)")
    return f"{module}.{qual}" if module else qual


_worker_seq = itertools.count(1)


def worker_name(name: Optional[str]) -> str:
    """A worker's connection name (shown in call_all results and SVC.STATS):
    the one given, else host-pid, plus -2, -3, ... for more workers in a process."""
    if name:
        return name
    n = next(_worker_seq)
    host = "".join(ch if ch.isalnum() or ch in "-_." else "_"
                   for ch in socket.gethostname()) or "host"
    base = f"{host}-{os.getpid()}"
    return base if n == 1 else f"{base}-{n}"


def check_handlers(handlers: Dict[str, Callable[..., Any]], names: Tuple[str, ...]
                   ) -> Dict[str, Callable[..., Any]]:
    if not names:
        if not handlers:
            raise ValueError("nothing to serve: register handlers with @room.service(name) "
                             "or @room.function first")
        return dict(handlers)
    missing = [n for n in names if n not in handlers]
    if missing:
        raise ValueError(f"no handler registered for {', '.join(missing)}")
    return {n: handlers[n] for n in names}
