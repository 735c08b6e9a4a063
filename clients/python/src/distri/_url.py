"""Parses connection URLs: distri://[:password@]host[:port][/ROOM].

    distri://db.example:7379/0zlEP8wF-_RLNuC9CH8f8A   join that room
    distri://db.example                               a new room (port 7379)
    distri://:s3cret@10.0.0.5:7379/default            with a password
    localhost:7379/ROOM                               the scheme may be left out

No URL (None) means $DISTRI_URL if set, else distri://127.0.0.1:7379 (a new room).
"""

import os
from typing import NamedTuple, Optional
from urllib.parse import unquote, urlsplit

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7379
SCHEMES = ("distri", "redis")


class Endpoint(NamedTuple):
    host: str
    port: int
    password: Optional[str]
    room: Optional[str]   # None: create a new room

    def url(self, room: Optional[str] = None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        room = room if room is not None else self.room
        return f"distri://{host}:{self.port}/{room}" if room else f"distri://{host}:{self.port}"


def parse_url(url: Optional[str] = None) -> Endpoint:
    if url is None:
        url = os.environ.get("DISTRI_URL") or f"distri://{DEFAULT_HOST}:{DEFAULT_PORT}"
    if "://" not in url:
        url = "distri://" + url
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"unsupported URL scheme {parts.scheme!r}: use distri://host:port/ROOM")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"bad port in URL {url!r}") from None
    room = unquote(parts.path.strip("/")) or None
    if room is not None and "/" in room:
        raise ValueError(f"bad room in URL {url!r}: one path segment expected")
    password = unquote(parts.password) if parts.password else None
    return Endpoint(parts.hostname or DEFAULT_HOST, port, password, room)
