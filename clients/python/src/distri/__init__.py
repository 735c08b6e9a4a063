"""distri: the Python client of the Distri coordination server.

    import distri
    room = distri.connect("distri://host:7379/ROOMCODE")   # no code: a new room
    room["greeting"] = "hello"
    room.incr("next", 500)
    room.data["greeting"]          # live local mirror, kept current by the server

Blocking API here; the asyncio face is distri.aio. See docs/python.md.
"""

from ._codec import Codec
from ._mirror import Change, MirrorView
from ._sync import Pipeline, Room, connect, stats
from .errors import (ERROR_CODES, AuthError, ClosedError, ConnectionError, DecodeError,
                     EncodeError, Error, NotFound, OutOfMemory, ProtocolError,
                     ProtocolVersionError, RequestError, ServerError, SignatureError,
                     TimeoutError, WrongType)

__version__ = "0.1.0"

__all__ = [
    "connect", "stats", "Room", "Pipeline", "Change", "MirrorView", "Codec",
    "Error", "ServerError", "RequestError", "WrongType", "OutOfMemory", "AuthError",
    "NotFound", "ProtocolVersionError", "ConnectionError", "TimeoutError", "ProtocolError",
    "DecodeError", "SignatureError", "EncodeError", "ClosedError", "ERROR_CODES",
    "__version__",
]
