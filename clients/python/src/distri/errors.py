"""Exceptions raised by the distri client, and the one table that maps the
server's error codes to them.

Every error reply from the server starts with a code word (docs/protocol.md,
"Errors"). `ERROR_CODES` below is the only place that knows those words; the
RESP reader (distri._resp) calls `error_from_reply` for every error reply it
parses, so a reply of `-WRONGTYPE ...` arrives at the caller as `WrongType`.

Every exception the package raises derives from `distri.Error`, so
`except distri.Error` catches them all. `ConnectionError` and `TimeoutError`
also derive from Python's built-in exceptions of the same names, so code that
already handles those keeps working.
"""

import builtins
from typing import Dict, Optional, Type


class Error(Exception):
    """Base class of every exception raised by distri."""


# ---------------------------------------------------------------------------
# Errors replied by the server
# ---------------------------------------------------------------------------

class ServerError(Error):
    """The server replied with an error. `code` is its code word, `message` the rest.

    `retryable` is True for the errors whose request the server certainly did not
    apply (nothing changed) and that may succeed when sent again later: `IOERR`
    and `OOM`. It is False for the others, including errors whose outcome is
    unknown (a call's `TIMEOUT`: the worker may have run it)."""

    code = ""
    retryable = False

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(f"{code} {message}".strip() if code else message)
        self.code = code or type(self).code
        self.message = message


class RequestError(ServerError):
    """`ERR`: bad request (syntax, arity, not an integer, overflow, ...)."""

    code = "ERR"


class WrongType(ServerError):
    """`WRONGTYPE`: the key holds a different kind of value."""

    code = "WRONGTYPE"


class OutOfMemory(ServerError):
    """`OOM`: the server is over its --max-memory and refuses writes (reads still work).
    The write was not applied; it may succeed once data is deleted (retryable)."""

    code = "OOM"
    retryable = True


class StorageError(ServerError):
    """`IOERR`: the server could not persist the write to its log (a full disk, an
    I/O error), so it did not apply it: nothing changed, and sending the same write
    again is safe and succeeds once the server can write (retryable). Reads keep
    working meanwhile. The message carries the server's reason, e.g. "No space
    left on device"."""

    code = "IOERR"
    retryable = True


class LimitReached(ServerError):
    """`LIMIT`: a server limit other than memory is reached (e.g. --max-rooms)."""

    code = "LIMIT"


class AuthError(ServerError):
    """`NOAUTH` / `WRONGPASS`: a password is required, or the one given is wrong."""

    code = "NOAUTH"


class NotFound(ServerError):
    """`NOTFOUND`: the named room (or object) does not exist."""

    code = "NOTFOUND"


class ProtocolVersionError(ServerError):
    """`NOPROTO`: the server does not speak the RESP version asked for."""

    code = "NOPROTO"


class NoWorker(ServerError):
    """`NOWORKER`: a call found no worker serving the service before its timeout."""

    code = "NOWORKER"


class ServiceError(ServerError):
    """`SVCERR`: the worker answered the call with an error (in Python: its handler
    raised). `message` is the remote error text, e.g. "ValueError: bad input";
    `remote_type` is the remote exception's class name when the text starts with
    one ("ValueError"), else None (e.g. "worker disconnected before replying")."""

    code = "SVCERR"

    @property
    def remote_type(self) -> Optional[str]:
        head, sep, _ = self.message.partition(": ")
        if sep and head.replace(".", "").replace("_", "").isalnum() and head[0].isalpha():
            return head
        return None


class TryAgain(ServerError):
    """`TRYAGAIN` (cluster): the node could not take the request now (no leader known,
    the leader unreachable, no read point within the cluster's request timeout) and
    proposed nothing: nothing changed, sending it again is safe (retryable). The
    client resends by itself after a pause, until its retry_timeout: on another
    node when this one says it has no leader or quorum, else (e.g. too many
    statistics requests in flight) on the same node; this is raised only when
    that runs out, or from a pipeline that holds writes."""

    code = "TRYAGAIN"
    retryable = True


# CallTimeout is also a distri.TimeoutError, UnknownOutcome a distri.ConnectionError;
# they are defined below those classes.

# The wire error codes -> exception classes. Codes not listed map to ServerError.
ERROR_CODES: Dict[str, Type[ServerError]] = {
    "ERR": RequestError,
    "WRONGTYPE": WrongType,
    "OOM": OutOfMemory,
    "IOERR": StorageError,
    "LIMIT": LimitReached,
    "NOAUTH": AuthError,
    "WRONGPASS": AuthError,
    "NOTFOUND": NotFound,
    "NOPROTO": ProtocolVersionError,
    "NOWORKER": NoWorker,
    "SVCERR": ServiceError,
    "TRYAGAIN": TryAgain,
    # "TIMEOUT": CallTimeout, "UNKNOWN": UnknownOutcome, added below
}


def error_from_reply(text: str) -> ServerError:
    """Builds the exception for an error reply `text` ("CODE message")."""
    code, _, message = text.partition(" ")
    cls = ERROR_CODES.get(code)
    if cls is None:
        if code.isupper():  # an unknown code word: keep it
            return ServerError(message, code)
        return ServerError(text)
    return cls(message, code)


# ---------------------------------------------------------------------------
# Errors of the client side
# ---------------------------------------------------------------------------

class ConnectionError(Error, builtins.ConnectionError):  # noqa: A001 - mirrors the builtin
    """The server could not be reached within the retry timeout, or the connection
    broke while a non-idempotent call (incr, cas, ...) was in flight, so its outcome
    is unknown (`maybe_applied` is then True)."""

    def __init__(self, message: str, maybe_applied: bool = False) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied


class TimeoutError(Error, builtins.TimeoutError):  # noqa: A001 - mirrors the builtin
    """A wait (wait_for, a reply, the first mirror sync, a call) did not finish in time."""


class CallTimeout(ServerError, TimeoutError):
    """`TIMEOUT`: the worker did not answer a call before its timeout (or every
    worker stayed busy until then). Also a distri.TimeoutError."""

    code = "TIMEOUT"


ERROR_CODES["TIMEOUT"] = CallTimeout


class UnknownOutcome(ServerError, ConnectionError):
    """A write's outcome is not known: it may have been applied, or may still be,
    or never. Raised when

      - the server says so (`UNKNOWN`, cluster only: the leader changed before the
        write committed, or no answer came within the cluster's request timeout);
      - the connection broke (the node died, was cut off, or stayed silent past
        the node timeout) after the request was sent and before its reply came.

    The client never resends such a write by itself: an INCR would count twice, a
    CAS could succeed twice, and even a SET or DELETE sent again could undo a later
    write of another client. Read the key to find out what happened. `maybe_applied`
    is True; the class is both a distri.ServerError (code "UNKNOWN") and a
    distri.ConnectionError, so code written for either catches it."""

    code = "UNKNOWN"

    def __init__(self, message: str, code: str = "UNKNOWN") -> None:
        super().__init__(message, code)
        self.maybe_applied = True


ERROR_CODES["UNKNOWN"] = UnknownOutcome


class ProtocolError(Error):
    """The server sent something this client does not understand."""


class DecodeError(Error, ValueError):
    """A stored value cannot be turned back into a Python value (for example a
    pickled value read without pickle enabled). Raised by reads of one key; reads
    of many values return a distri.Undecodable holding it instead."""


class SignatureError(DecodeError):
    """A pickled value's HMAC-SHA256 signature does not match the room key, room
    and key (or topic, service) it is read from: it was written with another
    room key, copied from another key or room, altered, or is in the old unbound
    format. It is never unpickled."""


class EncodeError(Error, TypeError):
    """A Python value cannot be stored: not JSON-compatible, and pickle is not enabled."""


class ClosedError(Error):
    """The room object was closed."""
