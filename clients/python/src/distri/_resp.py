"""RESP2/RESP3 framing, done by hiredis (the C parser maintained by the Redis
project; docs/python.md says why it was chosen).

  pack(args)     -> the bytes of one command (an array of bulk strings)
  new_reader()   -> a hiredis.Reader: feed(bytes), then gets() until NEED_MORE.
                    Error replies come back as distri.errors.ServerError
                    instances (not raised, so a pipeline can hold them), RESP3
                    push frames as hiredis.PushNotification (a list subclass).
"""

from typing import Any, Optional, Sequence, Tuple

import hiredis

from .errors import ProtocolError, error_from_reply

NEED_MORE = object()            # gets() result while a reply is incomplete
PushFrame = hiredis.PushNotification
_pack = hiredis.pack_command


def pack(args: Tuple[Any, ...]) -> bytes:
    """The RESP bytes of one command; args are str, bytes, int or float."""
    try:
        return _pack(args)
    except (TypeError, UnicodeEncodeError):
        return _pack(tuple(_coerce(a) for a in args))


def _coerce(a: Any) -> Any:
    if isinstance(a, str):
        return a.encode("utf-8", "surrogateescape")   # keys read back from the server
    if isinstance(a, (bytearray, memoryview)):
        return bytes(a)
    if isinstance(a, (bytes, int, float)) and not isinstance(a, bool):
        return a
    raise TypeError(f"keys and arguments must be str or bytes, not {type(a).__name__}")


def _protocol_error(message: str) -> ProtocolError:
    return ProtocolError(f"bad reply from server: {message}")


def new_reader() -> "hiredis.Reader":
    return hiredis.Reader(replyError=error_from_reply, protocolError=_protocol_error,
                          notEnoughData=NEED_MORE)


def text(value: Any) -> Any:
    """Recursively turns bytes into str (UTF-8) in a reply (maps, arrays)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {text(k): text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [text(v) for v in value]
    return value


def first_error(replies: Sequence[Any]) -> Optional[BaseException]:
    for r in replies:
        if isinstance(r, BaseException):
            return r
    return None
