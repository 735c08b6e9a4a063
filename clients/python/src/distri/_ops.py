"""The room operations, written once for both faces.

Each function returns an `Op`: the command to send, a function that turns the
reply into the Python result, and whether the command may be sent again after
it may have reached a node whose reply was lost (`idempotent`): reads only (GET,
MGET, EXISTS, KEYS, TTL, DBSIZE, the statistics, PING). Writes are not: INCR and
CAS would count or swap twice, and even SET, MSET, DEL, EXPIRE and FLUSHDB sent
again could undo a later write of another client (write, lost reply, another
client writes, the resend overwrites it). Their lost replies raise
distri.UnknownOutcome (docs/python.md, "Clusters and failover"). The blocking
face runs `op.post(link.call(op.args))`, the asyncio face
`op.post(await link.call(...))`, and pipelines queue many ops on one round trip.
"""

from typing import Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Union

from ._codec import Codec
from ._resp import text

Key = Union[str, bytes]


def _identity(reply: Any) -> Any:
    return reply


def _none(reply: Any) -> None:
    return None


def _bool(reply: Any) -> bool:
    return bool(reply)


def _key_text(k: Any) -> str:
    return k.decode("utf-8", "surrogateescape") if isinstance(k, bytes) else k


class Op(NamedTuple):
    args: tuple
    post: Callable[[Any], Any]
    idempotent: bool


def _ms(seconds: float, what: str) -> int:
    ms = int(round(seconds * 1000))
    if ms <= 0:
        raise ValueError(f"{what} must be positive, got {seconds!r}")
    return ms


def glob_escape(prefix: str) -> str:
    """Escapes the glob characters of KEYS patterns (* ? [ ] \\) in a literal prefix."""
    out = []
    for ch in prefix:
        if ch in "*?[]\\":
            out.append("\\")
        out.append(ch)
    return "".join(out)


# ---------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------

def get(codec: Codec, key: Key, default: Any = None) -> Op:
    """A pipeline's get: one of many results, so an undecodable value is an
    Undecodable, not an exception that would lose the other results."""
    def post(reply: Any) -> Any:
        return default if reply is None else codec.decode_lenient(reply, key)
    return Op(("GET", key), post, True)


def getitem(codec: Codec, key: Key) -> Op:
    def post(reply: Any) -> Any:
        if reply is None:
            raise KeyError(key)
        return codec.decode(reply, key)
    return Op(("GET", key), post, True)


def set_(codec: Codec, key: Key, value: Any, ttl: Optional[float] = None) -> Op:
    if ttl is None:
        return Op(("SET", key, codec.encode(value, key)), _none, False)
    return Op(("SET", key, codec.encode(value, key), "PX", _ms(ttl, "ttl")), _none, False)


def get_raw(key: Key) -> Op:
    return Op(("GET", key), _identity, True)


def set_raw(key: Key, value: bytes, ttl: Optional[float] = None) -> Op:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError("set_raw stores bytes exactly as given")
    value = bytes(value)
    if ttl is None:
        return Op(("SET", key, value), _none, False)
    return Op(("SET", key, value, "PX", _ms(ttl, "ttl")), _none, False)


def get_many(codec: Codec, keys: Iterable[Key], default: Any = None) -> Op:
    keys = list(keys)

    def post(reply: List[Any]) -> List[Any]:
        decode = codec.decode_lenient     # one undecodable value must not hide the others
        return [default if r is None else decode(r, k) for r, k in zip(reply, keys)]
    if not keys:
        return Op(("PING",), lambda _r: [], True)
    return Op(("MGET", *keys), post, True)


def update(codec: Codec, items: Mapping[Key, Any]) -> Op:
    args: List[Any] = ["MSET"]
    for k, v in items.items():
        args.append(k)
        args.append(codec.encode(v, k))
    if len(args) == 1:
        return Op(("PING",), _none, True)
    return Op(tuple(args), _none, False)


def incr(key: Key, n: Union[int, float] = 1) -> Op:
    if isinstance(n, bool) or not isinstance(n, (int, float)):
        raise TypeError(f"incr by a number, not {type(n).__name__}")
    if isinstance(n, float):
        return Op(("INCRBYFLOAT", key, repr(n)), float, False)
    return Op(("INCRBY", key, n), _identity, False)


def cas(codec: Codec, key: Key, expected: Any, new: Any) -> Op:
    if expected is None:
        return Op(("CAS", key, codec.encode(new, key)), _bool, False)
    return Op(("CAS", key, codec.encode(expected, key), codec.encode(new, key)), _bool, False)


# ---------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------

def delete(*keys: Key) -> Op:
    if not keys:
        return Op(("PING",), lambda _r: 0, True)
    return Op(("DEL", *keys), _identity, False)


def delitem(key: Key) -> Op:
    def post(reply: int) -> None:
        if not reply:
            raise KeyError(key)
    return Op(("DEL", key), post, False)


def exists(key: Key) -> Op:
    return Op(("EXISTS", key), _bool, True)


def keys(prefix: Key = "") -> Op:
    if isinstance(prefix, bytes):
        prefix = prefix.decode("utf-8", "surrogateescape")

    def post(reply: List[bytes]) -> List[str]:
        return sorted(_key_text(k) for k in reply)
    return Op(("KEYS", glob_escape(prefix) + "*"), post, True)


def expire(key: Key, seconds: Optional[float]) -> Op:
    if seconds is None:
        return Op(("PERSIST", key), _bool, False)
    return Op(("PEXPIRE", key, _ms(seconds, "seconds")), _bool, False)


def ttl(key: Key) -> Op:
    def post(ms: int) -> Optional[float]:
        if ms == -2:
            raise KeyError(key)
        return None if ms == -1 else ms / 1000.0
    return Op(("PTTL", key), post, True)


def dbsize() -> Op:
    return Op(("DBSIZE",), _identity, True)


def clear() -> Op:
    return Op(("FLUSHDB",), _none, False)


# ---------------------------------------------------------------------------
# Room and server
# ---------------------------------------------------------------------------

def room_stats() -> Op:
    return Op(("ROOM.STATS",), text, True)


def room_info() -> Op:
    return Op(("ROOM.INFO",), text, True)


def server_stats() -> Op:
    return Op(("STATS",), text, True)


# ---------------------------------------------------------------------------
# Messaging introspection (the calls themselves are in _msg)
# ---------------------------------------------------------------------------

def subscribers(topic: Key) -> Op:
    def post(reply: Any) -> int:
        if isinstance(reply, dict):
            return int(next(iter(reply.values()), 0))
        return int(reply[1]) if len(reply) >= 2 else 0
    return Op(("PUBSUB", "NUMSUB", topic), post, True)


def services() -> Op:
    def post(reply: Any) -> Dict[str, Dict[str, Any]]:
        return {s["name"]: s for s in text(reply)}
    return Op(("SVC.LIST",), post, True)


def service_stats(name: str) -> Op:
    return Op(("SVC.STATS", name), text, True)


def ping() -> Op:
    return Op(("PING",), _none, True)


def command(*args: Any) -> Op:
    """Any command, reply as the server sent it (bytes stay bytes)."""
    return Op(tuple(args), _identity, False)


def stats_dict(reply: Any) -> Dict[str, Any]:
    return text(reply)
