"""distri: the Python client of the Distri coordination server.

    import distri
    room = distri.connect("distri://host:7379/ROOMCODE")   # no code: a new room
    room["greeting"] = "hello"
    room.incr("next", 500)
    room.data["greeting"]          # live local mirror, kept current by the server
    room.publish("news", {"n": 1})                     # pub/sub
    for msg in room.subscribe("news"): ...
    @room.function
    def resize(path, width): ...
    resize.call("a.png", 100)      # runs on a worker that called room.serve()

Blocking API here; the asyncio face is distri.aio. See docs/python.md.
"""

from ._codec import Codec, Undecodable
from ._mirror import Change, MirrorView
from ._msg import Message
from ._sync import Function, Pipeline, Room, Subscription, Worker, connect, stats
from .errors import (ERROR_CODES, AuthError, CallTimeout, ClosedError, ConnectionError,
                     DecodeError, EncodeError, Error, LimitReached, NotFound, NoWorker,
                     OutOfMemory,
                     ProtocolError, ProtocolVersionError, RequestError, ServerError,
                     ServiceError, SignatureError, StorageError, TimeoutError, TryAgain,
                     UnknownOutcome, WrongType)

__version__ = "0.1.0"

__all__ = [
    "connect", "stats", "Room", "Pipeline", "Change", "MirrorView", "Codec", "Undecodable",
    "Message", "Subscription", "Worker", "Function",
    "Error", "ServerError", "RequestError", "WrongType", "OutOfMemory", "StorageError",
    "LimitReached",
    "AuthError",
    "NotFound", "ProtocolVersionError", "NoWorker", "CallTimeout", "ServiceError",
    "TryAgain", "UnknownOutcome",
    "ConnectionError", "TimeoutError", "ProtocolError",
    "DecodeError", "SignatureError", "EncodeError", "ClosedError", "ERROR_CODES",
    "__version__",
]
