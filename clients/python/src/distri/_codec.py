"""How Python values are stored as the bytes of a key (docs/python.md, "Values").

Writers:
  - JSON-compatible values (str, int, float, bool, None, list, tuple, dict with
    str keys) are stored as compact JSON text, UTF-8: `42`, `"hi"`, `{"a":[1,2]}`.
    redis-cli, the dashboard and any other client see readable text.
  - bytes / bytearray / memoryview are stored raw behind a one-byte tag 0x00.
  - Anything else is refused (EncodeError), unless pickle is enabled for the
    connection: then it is pickled, signed and stored as
        0x01 | HMAC-SHA256(room_key, place | pickle) (32 bytes) | pickle
    where place = "distri-pickle-v2" | lp(room code) | lp(kind) | lp(name), lp(x)
    = 4-byte big-endian length | x, and (kind, name) is ("key", the key) for a
    stored value. The signature binds the pickle to the room and key it was
    written to: a signed pickle copied to another key or room is refused
    (SignatureError), as is one in the old, unbound format ("distri-pickle-v1"
    | pickle), which is recognised only to say so.

Readers (the rule every client and the dashboard applies to any stored value):
  1. first byte 0x00: the rest is binary data -> bytes;
  2. first byte 0x01: a signed pickle -> verified, then unpickled (opt-in only);
  3. otherwise, if the value is UTF-8 text that parses as strict JSON (no NaN,
     no Infinity) -> that JSON value (so INCR's "41" reads as the int 41). An
     integer longer than Python's int-string limit (sys.get_int_max_str_digits(),
     4300 digits by default) cannot be converted, so such a value reads as text;
  4. otherwise, UTF-8 text -> str (e.g. `redis-cli set k hello` reads as "hello");
  5. otherwise -> bytes, as stored.
JSON text never starts with 0x00 or 0x01 and UTF-8 text almost never does, so
the tags cannot be confused with values written by other tools.

A value that cannot be decoded (a pickle without pickle enabled, a bad
signature, a pickle of a class this process cannot import) raises DecodeError
from decode(); decode_lenient() returns an Undecodable in its place instead.
Reads of one named key use decode(); reads of many values (get_many,
pipelines, the mirror) use decode_lenient(), so one such value never stops
them (docs/python.md, "Values").

Used by both faces (distri and distri.aio) and by the mirror, which keeps the
stored bytes and decodes on every read (so each read returns a fresh object).

Messages (PUBLISH) and service payloads (CALL arguments and results) use the
same rules with one extension, encode_payload/decode_payload: bytes nested
inside a JSON value are written as the one-key object {"$bytes": "<base64>"}
and read back as bytes, so `call("encrypt", b"...")` needs no pickle. (Stored
values keep the plain rules above.) Their pickles are bound like stored values,
to (kind, name) = ("message", topic), ("call", service) for a call's arguments
and ("reply", service) for its result.
"""

import base64
import binascii
import hashlib
import hmac
import json
import math
import pickle
from typing import Any, Dict, Optional, Tuple, Union

from .errors import DecodeError, EncodeError, SignatureError

TAG_BYTES = 0x00
TAG_PICKLE = 0x01
_PICKLE_PREFIX = b"\x01"
_BYTES_PREFIX = b"\x00"
_MAC_LEN = 32
_MAC_CONTEXT = b"distri-pickle-v2"
_OLD_MAC_CONTEXT = b"distri-pickle-v1"   # unbound; recognised only to refuse it clearly

# Where a pickle is written: (kind, name), e.g. ("key", "config"), ("message", topic).
Place = Tuple[str, Union[str, bytes, None]]

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_quote = json.encoder.encode_basestring      # the str case of _dumps, without its overhead
_isfinite = math.isfinite


def _reject_constant(name: str) -> Any:
    raise ValueError(f"not strict JSON: {name}")


_decoder = json.JSONDecoder(parse_constant=_reject_constant)
_loads = _decoder.decode
_scan = _decoder.scan_once  # type: ignore[attr-defined]  # one JSON value at an index

BYTES_KEY = "$bytes"
_BYTES_MARK = b'"$bytes"'


def _bytes_default(o: Any) -> Any:
    if isinstance(o, (bytes, bytearray, memoryview)):
        return {BYTES_KEY: base64.b64encode(bytes(o)).decode("ascii")}
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def _bytes_hook(obj: Dict[str, Any]) -> Any:
    if len(obj) == 1 and BYTES_KEY in obj and isinstance(obj[BYTES_KEY], str):
        try:
            return base64.b64decode(obj[BYTES_KEY], validate=True)
        except (binascii.Error, ValueError):
            return obj
    return obj


_dumps_payload = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                                  default=_bytes_default).encode
_loads_payload = json.JSONDecoder(parse_constant=_reject_constant, object_hook=_bytes_hook).decode


def _utf8(name: Union[str, bytes]) -> bytes:
    """Key, topic and room names as the server sees them (str keys are UTF-8; the
    mirror decodes key bytes with surrogateescape, which this undoes)."""
    return name if isinstance(name, bytes) else name.encode("utf-8", "surrogateescape")


def _lp(b: bytes) -> bytes:
    return len(b).to_bytes(4, "big") + b


class Undecodable:
    """A stored value this client cannot decode, returned in its place by reads of
    many values (get_many, pipelines, room.data, Change.value) so that one such
    value does not stop them.

    raw:   the stored bytes, exactly
    error: the distri.DecodeError (or SignatureError) that reading the value by
           itself with room[k] raises, e.g. "this value is a signed pickle;
           connect with room_key=... and pickle=True to read it"
    Equal to another Undecodable with the same bytes. Never unpickled.
    """

    __slots__ = ("raw", "error")

    def __init__(self, raw: bytes, error: DecodeError) -> None:
        self.raw = raw
        self.error = error

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Undecodable) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash((Undecodable, self.raw))

    def __repr__(self) -> str:
        return f"<distri.Undecodable {len(self.raw)} bytes: {self.error}>"


class Codec:
    """Encodes and decodes values for one connection to one room.

    room_key: secret shared by the processes that trust each other's pickles.
    allow_pickle: store non-JSON values as signed pickles and read them back.
    room: the room's code; pickles are signed for (room, key), so a pickle is
        only read back from where it was written.
    Thread-safe (no mutable state after construction).
    """

    __slots__ = ("_key", "_pickle", "_room")

    def __init__(self, room_key: Optional[Union[str, bytes]] = None,
                 allow_pickle: bool = False, room: Union[str, bytes] = "") -> None:
        if isinstance(room_key, str):
            room_key = room_key.encode("utf-8")
        if allow_pickle and not room_key:
            raise ValueError("pickle=True needs a room_key: every pickled value is signed "
                             "with it and verified before it is unpickled")
        self._key: bytes = room_key or b""
        self._pickle = bool(allow_pickle)
        self._room = _lp(_utf8(room))

    @property
    def pickle_enabled(self) -> bool:
        return self._pickle

    # -- writing -------------------------------------------------------------

    def encode(self, value: Any, key: Union[str, bytes, None] = None) -> bytes:
        """The stored bytes of `value` at `key` (the key matters only for a
        pickle, which is signed for this room and key)."""
        # Fast paths for the common scalar types give the same bytes as _dumps.
        t = type(value)
        if t is str:
            return _quote(value).encode("utf-8")
        if t is int:
            try:
                return b"%d" % value
            except ValueError:   # past Python's int-string limit: pickle or EncodeError below
                pass
        if t is bytes:
            return _BYTES_PREFIX + value
        if t is float and _isfinite(value):
            return float.__repr__(value).encode()
        if value is None:
            return b"null"
        if t is bool:
            return b"true" if value else b"false"
        if t is bytearray or t is memoryview:
            return _BYTES_PREFIX + bytes(value)
        try:
            # A big int too: ValueError past Python's int-string limit.
            return _dumps(value).encode("utf-8")
        except (TypeError, ValueError) as e:
            if self._pickle:
                return self._sign(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL),
                                  ("key", key))
            raise EncodeError(
                f"cannot store a value of type {t.__name__}: {e}. Values are JSON "
                f"(str, int, float, bool, None, list, dict) or bytes; for other types "
                f"connect with room_key=... and pickle=True") from None

    def encode_payload(self, value: Any, place: Place) -> bytes:
        """A message or service payload: encode() plus bytes nested in JSON values
        as {"$bytes": base64}. `place`: ("message", topic), ("call", service) or
        ("reply", service), which a pickle is signed for."""
        t = type(value)
        if t is str or t is bytes or value is None or t is bool:
            return self.encode(value)
        if t is int:
            try:
                return b"%d" % value
            except ValueError:   # past Python's int-string limit: pickle or EncodeError below
                pass
        if t is bytearray or t is memoryview or (t is float and _isfinite(value)):
            return self.encode(value)
        try:
            return _dumps_payload(value).encode("utf-8")
        except (TypeError, ValueError) as e:
            if self._pickle:
                return self._sign(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL), place)
            raise EncodeError(
                f"cannot send a value of type {t.__name__}: {e}. Messages and call "
                f"arguments are JSON (str, int, float, bool, None, list, dict) or bytes; "
                f"for other types connect with room_key=... and pickle=True") from None

    def decode_payload(self, raw: bytes, place: Place) -> Any:
        """Reads what encode_payload wrote at `place` (and anything decode() reads)."""
        if _BYTES_MARK in raw and raw[:1] not in (_BYTES_PREFIX, _PICKLE_PREFIX):
            try:
                return _loads_payload(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                pass
        if raw[:1] == _PICKLE_PREFIX:
            return self._unpickle(raw, place)
        return self.decode(raw)

    def _mac(self, place: Place, payload: bytes) -> bytes:
        kind, name = place
        msg = b"".join((_MAC_CONTEXT, self._room, _lp(kind.encode()), _lp(_utf8(name)), payload))
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def _sign(self, payload: bytes, place: Place) -> bytes:
        if place[1] is None:
            raise TypeError("a pickled value is signed for its key: pass the key to encode")
        return _PICKLE_PREFIX + self._mac(place, payload) + payload

    # -- reading -------------------------------------------------------------

    def decode(self, raw: bytes, key: Union[str, bytes, None] = None) -> Any:
        """The value of the stored bytes `raw` of `key`. Raises DecodeError (or
        SignatureError) for a value this client cannot decode (see module doc);
        `key` is needed only to verify a pickle."""
        if raw:
            first = raw[0]
            if first == TAG_BYTES:
                return raw[1:]
            if first == TAG_PICKLE:
                return self._unpickle(raw, ("key", key))
            if raw.isdigit() and (first != 0x30 or len(raw) == 1):   # JSON: no leading 0
                try:
                    return int(raw)
                except ValueError:     # past Python's int-string limit: the text
                    return raw.decode("ascii")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw
        try:
            value, end = _scan(text, 0)      # the usual case: no surrounding whitespace
            if end == len(text):
                return value
        except StopIteration:
            pass
        except (ValueError, RecursionError):
            return text
        try:
            return _loads(text)
        except (ValueError, RecursionError):
            return text

    def decode_lenient(self, raw: bytes, key: Union[str, bytes, None] = None) -> Any:
        """decode(), but a value it cannot decode comes back as an Undecodable
        holding the bytes and the error instead of raising: for reads of many
        values at once, which one such value must not stop."""
        try:
            return self.decode(raw, key)
        except DecodeError as e:
            return Undecodable(raw, e)

    def _unpickle(self, raw: bytes, place: Place) -> Any:
        if not self._pickle:
            raise DecodeError("this value is a signed pickle; connect with room_key=... and "
                              "pickle=True to read it")
        if place[1] is None:
            raise TypeError("a pickled value is signed for its key: pass the key to decode")
        if len(raw) < 1 + _MAC_LEN:
            raise SignatureError("pickled value too short to carry a signature")
        mac, payload = raw[1:1 + _MAC_LEN], raw[1 + _MAC_LEN:]
        if not hmac.compare_digest(mac, self._mac(place, payload)):
            old = hmac.new(self._key, _OLD_MAC_CONTEXT + payload, hashlib.sha256).digest()
            if hmac.compare_digest(mac, old):
                raise SignatureError(
                    "pickled value is in the old format, signed without its room and key "
                    "(distri-pickle-v1), so it may have been copied from elsewhere; refusing "
                    "to unpickle it. Write it again with this client")
            kind, name = place
            raise SignatureError(
                f"pickled value has a bad signature for {kind} {_utf8(name)!r} of this room "
                f"(wrong room key, copied from another {kind} or room, or altered); refusing "
                f"to unpickle it")
        try:
            return pickle.loads(payload)
        except Exception as e:  # noqa: BLE001 - a valid signature, but not loadable here
            raise DecodeError(f"signed pickle cannot be loaded here: {type(e).__name__}: "
                              f"{e}") from e

