"""Parses connection URLs: distri://[:password@]host[:port][,host[:port]...][/ROOM].

    distri://db.example:7379/0zlEP8wF-_RLNuC9CH8f8A   join that room
    distri://db.example                               a new room (port 7379)
    distri://:s3cret@10.0.0.5:7379/default            with a password
    localhost:7379/ROOM                               the scheme may be left out
    distri://h1:7379,h2:7479,h3:7579/ROOM             several nodes of one cluster

No URL (None) means $DISTRI_URL if set, else distri://127.0.0.1:7379 (a new room).
A list of URLs (or host:port strings) names the nodes of one cluster: they must
agree on the room and the password, which may be given once (see parse_targets).
"""

import os
from typing import Iterable, List, NamedTuple, Optional, Tuple, Union
from urllib.parse import unquote, urlsplit

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7379
SCHEMES = ("distri", "redis")
MAX_ADDRESSES = 64          # seeds plus learnt nodes: a bound on what a client dials

Address = Tuple[str, int]


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Endpoint(NamedTuple):
    host: str
    port: int
    password: Optional[str]
    room: Optional[str]   # None: create a new room

    def url(self, room: Optional[str] = None) -> str:
        room = room if room is not None else self.room
        addr = format_address(self.host, self.port)
        return f"distri://{addr}/{room}" if room else f"distri://{addr}"


class Targets(NamedTuple):
    """What a URL (or a list of them) names: the nodes to dial, in order, and the
    password and room shared by all of them."""

    addresses: Tuple[Address, ...]
    password: Optional[str]
    room: Optional[str]

    def endpoint(self, address: Optional[Address] = None) -> Endpoint:
        host, port = address or self.addresses[0]
        return Endpoint(host, port, self.password, self.room)


def parse_address(text: str, url: str = "") -> Address:
    """host, host:port, [v6] or [v6]:port -> (host, port)."""
    text = text.strip()
    where = url or text
    if not text:
        raise ValueError(f"empty host in URL {where!r}")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"bad address {text!r} in URL {where!r}")
        host, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError(f"bad address {text!r} in URL {where!r}")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:
        host, port_text = text, ""       # a bare IPv6 address
    else:
        host, port_text = text, ""
    if not port_text:
        return host or DEFAULT_HOST, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port in URL {where!r}")
    return host or DEFAULT_HOST, int(port_text)


def _parse_one(url: str) -> Targets:
    if "://" not in url:
        url = "distri://" + url
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"unsupported URL scheme {parts.scheme!r}: use distri://host:port/ROOM")
    netloc = parts.netloc
    password = None
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        _, _, secret = userinfo.partition(":")
        password = unquote(secret) if secret else None
    if netloc:
        addresses = tuple(parse_address(h, url) for h in netloc.split(","))
    else:
        addresses = ((DEFAULT_HOST, DEFAULT_PORT),)
    room = unquote(parts.path.strip("/")) or None
    if room is not None and "/" in room:
        raise ValueError(f"bad room in URL {url!r}: one path segment expected")
    return Targets(addresses, password, room)


def parse_targets(url: Union[None, str, Iterable[str]] = None) -> Targets:
    """A URL, or a list of URLs / host:port strings naming nodes of one cluster.
    In a list the room and password may be given on any element (once is enough);
    two different rooms or passwords are a ValueError."""
    if url is None:
        url = os.environ.get("DISTRI_URL") or f"distri://{DEFAULT_HOST}:{DEFAULT_PORT}"
    if isinstance(url, (bytes, bytearray)):
        raise TypeError("a URL is a str")
    if isinstance(url, str):
        t = _parse_one(url)
    else:
        items = list(url)
        if not items:
            raise ValueError("no address given: connect([...]) needs at least one")
        parsed = [_parse_one(u) for u in items]
        addresses: List[Address] = []
        for p in parsed:
            addresses.extend(p.addresses)
        rooms = {p.room for p in parsed if p.room is not None}
        passwords = {p.password for p in parsed if p.password is not None}
        if len(rooms) > 1:
            raise ValueError(f"the addresses name different rooms: {sorted(rooms)}")
        if len(passwords) > 1:
            raise ValueError("the addresses give different passwords")
        t = Targets(tuple(addresses), next(iter(passwords), None), next(iter(rooms), None))
    unique = tuple(dict.fromkeys(t.addresses))
    if len(unique) > MAX_ADDRESSES:
        raise ValueError(f"too many addresses ({len(unique)}; at most {MAX_ADDRESSES})")
    return t._replace(addresses=unique)


def parse_url(url: Optional[str] = None) -> Endpoint:
    """The first node of a URL (what a one-connection tool such as stats() dials)."""
    return parse_targets(url).endpoint()
