"""How Python values are stored as the bytes of a key (docs/python.md, "Values").

Writers:
  - JSON-compatible values (str, int, float, bool, None, list, tuple, dict with
    str keys) are stored as compact JSON text, UTF-8: `42`, `"hi"`, `{"a":[1,2]}`.
    redis-cli, the dashboard and any other client see readable text.
  - bytes / bytearray / memoryview are stored raw behind a one-byte tag 0x00.
  - Anything else is refused (EncodeError), unless pickle is enabled for the
    connection: then it is pickled, signed and stored as
        0x01 | HMAC-SHA256(room_key, "distri-pickle-v1" | pickle) (32 bytes) | pickle.

Readers (the rule every client and the dashboard applies to any stored value):
  1. first byte 0x00: the rest is binary data -> bytes;
  2. first byte 0x01: a signed pickle -> verified, then unpickled (opt-in only);
  3. otherwise, if the value is UTF-8 text that parses as strict JSON (no NaN,
     no Infinity) -> that JSON value (so INCR's "41" reads as the int 41);
  4. otherwise, UTF-8 text -> str (e.g. `redis-cli set k hello` reads as "hello");
  5. otherwise -> bytes, as stored.
JSON text never starts with 0x00 or 0x01 and UTF-8 text almost never does, so
the tags cannot be confused with values written by other tools.

Used by both faces (distri and distri.aio) and by the mirror, which keeps the
stored bytes and decodes on every read (so each read returns a fresh object).

Messages (PUBLISH) and service payloads (CALL arguments and results) use the
same rules with one extension, encode_payload/decode_payload: bytes nested
inside a JSON value are written as the one-key object {"$bytes": "<base64>"}
and read back as bytes, so `call("encrypt", b"...")` needs no pickle. (Stored
values keep the plain rules above.)
"""

import base64
import binascii
import hashlib
import hmac
import json
import math
import pickle
from typing import Any, Dict, Optional, Union

from .errors import DecodeError, EncodeError, SignatureError

TAG_BYTES = 0x00
TAG_PICKLE = 0x01
_PICKLE_PREFIX = b"\x01"
_BYTES_PREFIX = b"\x00"
_MAC_LEN = 32
_MAC_CONTEXT = b"distri-pickle-v1"

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


class Codec:
    """Encodes and decodes values for one connection.

    room_key: secret shared by the processes that trust each other's pickles.
    allow_pickle: store non-JSON values as signed pickles and read them back.
    Thread-safe (no mutable state after construction).
    """

    __slots__ = ("_key", "_pickle")

    def __init__(self, room_key: Optional[Union[str, bytes]] = None,
                 allow_pickle: bool = False) -> None:
        if isinstance(room_key, str):
            room_key = room_key.encode("utf-8")
        if allow_pickle and not room_key:
            raise ValueError("pickle=True needs a room_key: every pickled value is signed "
                             "with it and verified before it is unpickled")
        self._key: bytes = room_key or b""
        self._pickle = bool(allow_pickle)

    @property
    def pickle_enabled(self) -> bool:
        return self._pickle

    # -- writing -------------------------------------------------------------

    def encode(self, value: Any) -> bytes:
        # Fast paths for the common scalar types give the same bytes as _dumps.
        t = type(value)
        if t is str:
            return _quote(value).encode("utf-8")
        if t is int:
            return b"%d" % value
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
            return _dumps(value).encode("utf-8")
        except (TypeError, ValueError) as e:
            if self._pickle:
                return self._sign(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
            raise EncodeError(
                f"cannot store a value of type {t.__name__}: {e}. Values are JSON "
                f"(str, int, float, bool, None, list, dict) or bytes; for other types "
                f"connect with room_key=... and pickle=True") from None

    def encode_payload(self, value: Any) -> bytes:
        """A message or service payload: encode() plus bytes nested in JSON values
        as {"$bytes": base64}."""
        t = type(value)
        if t is str or t is int or t is bytes or value is None or t is bool:
            return self.encode(value)
        if t is bytearray or t is memoryview or (t is float and _isfinite(value)):
            return self.encode(value)
        try:
            return _dumps_payload(value).encode("utf-8")
        except (TypeError, ValueError) as e:
            if self._pickle:
                return self._sign(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
            raise EncodeError(
                f"cannot send a value of type {t.__name__}: {e}. Messages and call "
                f"arguments are JSON (str, int, float, bool, None, list, dict) or bytes; "
                f"for other types connect with room_key=... and pickle=True") from None

    def decode_payload(self, raw: bytes) -> Any:
        """Reads what encode_payload wrote (and anything decode() reads)."""
        if _BYTES_MARK in raw and raw[:1] not in (_BYTES_PREFIX, _PICKLE_PREFIX):
            try:
                return _loads_payload(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                pass
        return self.decode(raw)

    def _sign(self, payload: bytes) -> bytes:
        mac = hmac.new(self._key, _MAC_CONTEXT + payload, hashlib.sha256).digest()
        return _PICKLE_PREFIX + mac + payload

    # -- reading -------------------------------------------------------------

    def decode(self, raw: bytes) -> Any:
        if raw:
            first = raw[0]
            if first == TAG_BYTES:
                return raw[1:]
            if first == TAG_PICKLE:
                return self._unpickle(raw)
            if raw.isdigit() and (first != 0x30 or len(raw) == 1):   # JSON: no leading 0
                return int(raw)
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

    def _unpickle(self, raw: bytes) -> Any:
        if not self._pickle:
            raise DecodeError("this value is a signed pickle; connect with room_key=... and "
                              "pickle=True to read it")
        if len(raw) < 1 + _MAC_LEN:
            raise SignatureError("pickled value too short to carry a signature")
        mac, payload = raw[1:1 + _MAC_LEN], raw[1 + _MAC_LEN:]
        want = hmac.new(self._key, _MAC_CONTEXT + payload, hashlib.sha256).digest()
        if not hmac.compare_digest(mac, want):
            raise SignatureError("pickled value has a bad signature (wrong room key, or the "
                                 "value was altered); refusing to unpickle it")
        return pickle.loads(payload)
