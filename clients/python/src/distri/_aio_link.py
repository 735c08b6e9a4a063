"""Connections of the asyncio face (distri.aio): streams, dialing a node of the
set, opening the connection (distri._nodes.Opening) and the room's command link.

The same rules as the blocking face's distri._link (docs/python.md, "Clusters
and failover"), as coroutines. Everything here runs on the event loop that
created the room.
"""

import asyncio
import random
import time
from typing import Any, List, Optional, Tuple

from ._nodes import BARRIER, NodeSet, Opening, tryagain_moves
from ._resp import NEED_MORE, PushFrame, new_reader, pack
from ._url import Address, Endpoint, format_address
from .errors import (AuthError, ClosedError, ConnectionError, ProtocolError,
                     ProtocolVersionError, ServerError, TimeoutError, TryAgain, UnknownOutcome)

_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 1.0
# A mirror or worker session that lasted this long (seconds) worked: the backoff
# starts afresh after it. One that ends sooner (a node in a crash loop, or that
# cuts the connection after the snapshot) keeps backing off.
_STABLE_SESSION = 3.0
_MIRROR_IDLE_PING = 15.0


class _ConnectionLost(OSError):
    pass


def _mirror_revision(reply: Any) -> int:
    """The `revision` of a MIRROR reply map (0 when absent)."""
    try:
        return int(reply.get(b"revision", 0)) if isinstance(reply, dict) else 0
    except (TypeError, ValueError):
        return 0


async def _backoff(delay: float, limit: float = _BACKOFF_MAX) -> float:
    await asyncio.sleep(min(delay * random.uniform(0.8, 1.2), limit))
    return min(delay * 2, _BACKOFF_MAX)


class _Stream:
    """An asyncio TCP stream with a hiredis reader."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = new_reader()

    @classmethod
    async def open(cls, ep: Endpoint, connect_timeout: float) -> "_Stream":
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(ep.host, ep.port),
                                          connect_timeout)
        except asyncio.TimeoutError:
            raise _ConnectionLost(f"connect timed out after {connect_timeout}s") from None
        return cls(r, w)

    async def read(self, timeout: Optional[float]) -> Any:
        while True:
            reply = self.parser.gets()
            if reply is not NEED_MORE:
                return reply
            if timeout is None:
                chunk = await self.reader.read(262144)
            else:
                chunk = await asyncio.wait_for(self.reader.read(262144), timeout)
            if not chunk:
                raise _ConnectionLost("connection closed by the server")
            self.parser.feed(chunk)

    async def run_opening(self, opening: Opening, timeout: Optional[float]) -> List[Any]:
        """Sends the opening's rounds and reads one reply per command; push frames
        that arrive in between are kept aside. Raises the first error reply.
        -> the early push frames (the replies are opening.replies)"""
        early: List[Any] = []
        while True:
            cmds = opening.next_round()
            if cmds is None:
                return early
            self.writer.write(b"".join(pack(c) for c in cmds))
            replies: List[Any] = []
            while len(replies) < len(cmds):
                r = await self.read(timeout)
                (early if isinstance(r, PushFrame) else replies).append(r)
            opening.take(replies)

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:
            pass


async def _dial(nodes: NodeSet, room: Optional[str], extra: List[Tuple[Any, ...]], *,
                connect_timeout: float, learn: bool = False
                ) -> Tuple[_Stream, Address, List[Any], List[Any]]:
    """Opens a stream in `room` to the first node that takes it, the preferred node
    first (distri._link._dial has the rules). -> (stream, address, replies of the
    join and `extra`, early push frames)"""
    last: Optional[BaseException] = None
    refused: Optional[str] = None     # the last node that answered with an error
    unreachable = False               # some node could not be reached or could not serve
    for address in nodes.order():
        try:
            s = await _Stream.open(nodes.endpoint(address, room), connect_timeout)
        except OSError as e:
            nodes.failed(address)
            last, unreachable = e, True
            continue
        try:
            opening = Opening(nodes, room, extra, learn)
            early = await s.run_opening(opening, connect_timeout)
        except TryAgain as e:
            s.close()
            nodes.failed(address)
            last = _ConnectionLost(f"{format_address(*address)} cannot serve now: {e}")
            unreachable = True
            continue
        except asyncio.TimeoutError:
            s.close()
            nodes.failed(address)
            last = _ConnectionLost(f"{format_address(*address)}: no answer to HELLO")
            unreachable = True
            continue
        except OSError as e:
            s.close()
            nodes.failed(address)
            last, unreachable = e, True
            continue
        except (AuthError, ProtocolVersionError):
            s.close()
            raise                  # the same answer from every node
        except ServerError as e:
            s.close()              # this node refuses (e.g. removed from its cluster):
            nodes.failed(address)  # another may not; raised if every node refused
            last = e
            refused = format_address(*address)
            continue
        except BaseException:
            s.close()
            raise
        nodes.reached(address)
        return s, address, opening.replies, early
    assert last is not None
    if isinstance(last, ServerError) and unreachable:
        # Only some nodes refused, the others could not be reached (a wiped node
        # not yet back in its cluster answers NOTFOUND while the rest restart):
        # not final, the caller retries.
        raise _ConnectionLost(f"{refused} refused ({last}); the other nodes could "
                              f"not be reached")
    raise last


class _Link:
    """The reconnecting command connection of an asyncio Room, on any node of
    `nodes` (see distri._link._Link for the retry rules, which are the same)."""

    def __init__(self, nodes: NodeSet, room: Optional[str], *, timeout: Optional[float],
                 connect_timeout: float, retry_timeout: float,
                 node_timeout: Optional[float] = None, learn: bool = False) -> None:
        self.nodes = nodes
        self.room = room
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retry_timeout = retry_timeout
        self.node_timeout = node_timeout
        self.learn = learn
        self.closed = False
        self.address: Optional[Address] = None
        self._lock = asyncio.Lock()
        self._stream: Optional[_Stream] = None
        self._connected_at = 0.0

    @property
    def ep(self) -> Endpoint:
        return self.nodes.endpoint(self.address or self.nodes.preferred, self.room)

    def idle_probe(self) -> Tuple[Any, ...]:
        """What an idle mirror sends to check its node: PING, or in a cluster the
        barrier read, which a node cut off from the quorum cannot answer in time
        (it answers TRYAGAIN after the cluster's request timeout): a mirror on such
        a node would see no change and not know it, so it moves instead."""
        return BARRIER if self.nodes.clustered else ("PING",)

    def idle_ping(self) -> float:
        if self.nodes.clustered and self.node_timeout:
            return self.node_timeout / 2
        return _MIRROR_IDLE_PING

    async def _open(self) -> None:
        s, address, replies, _ = await _dial(self.nodes, self.room, [],
                                             connect_timeout=self.connect_timeout,
                                             learn=self.learn)
        if self.room is None:
            self.room = replies[0].decode()
        self._stream, self.address = s, address
        self._connected_at = time.monotonic()

    async def _connect(self, deadline: float) -> None:
        delay = _BACKOFF_FIRST
        while True:
            if self.closed:
                raise ClosedError("room is closed")
            try:
                await self._open()
                return
            except OSError as e:
                last = e
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConnectionError(f"cannot reach distri server at "
                                      f"{self.nodes.describe()}: {last}")
            delay = await _backoff(delay, remaining)

    def _drop(self, failed: bool = False) -> None:
        if failed and self.address is not None:
            self.nodes.failed(self.address)
        if self._stream is not None:
            self._stream.close()
        self._stream = None
        self.address = None

    async def ensure(self) -> None:
        async with self._lock:
            if self._stream is None:
                await self._connect(time.monotonic() + self.retry_timeout)

    def _reply_wait(self) -> Tuple[Optional[float], bool]:
        if self.nodes.clustered and self.node_timeout is not None:
            if self.timeout is None or self.node_timeout < self.timeout:
                return self.node_timeout, True
        return self.timeout, False

    async def call(self, args: Tuple[Any, ...], idempotent: bool = False) -> Any:
        return (await self.roundtrip(pack(args), 1, idempotent))[0]

    async def call_many(self, commands: List[Tuple[Any, ...]], idempotent: bool) -> List[Any]:
        data = b"".join([pack(c) for c in commands])
        return await self.roundtrip(data, len(commands), idempotent, raise_errors=False)

    async def roundtrip(self, data: bytes, n: int, idempotent: bool,
                        raise_errors: bool = True) -> List[Any]:
        async with self._lock:
            deadline = 0.0
            delay = _BACKOFF_FIRST
            while True:
                if self.closed:
                    raise ClosedError("room is closed")
                if deadline and time.monotonic() > deadline:
                    raise ConnectionError(f"no reply from {self.nodes.describe()} "
                                          f"within {self.retry_timeout}s of retries")
                s = self._stream
                if s is None or s.reader.at_eof() or s.writer.is_closing() or \
                        self.nodes.failed_since(self.address or ("", 0), self._connected_at):
                    self._drop(failed=s is not None)
                    if not deadline:
                        deadline = time.monotonic() + self.retry_timeout
                    await self._connect(deadline)
                    s = self._stream
                assert s is not None
                try:
                    s.writer.write(data)
                    if len(data) > 65536:
                        await s.writer.drain()
                except OSError as e:
                    self._drop(failed=True)
                    if n > 1 and not idempotent:
                        raise UnknownOutcome(f"connection lost while sending ({e}); some of "
                                             f"the commands may have been applied") from None
                    continue
                except BaseException:
                    self._drop()       # cancelled: part of it may be on the way
                    raise
                wait, gone_if_silent = self._reply_wait()
                try:
                    replies = [await s.read(wait) for _ in range(n)]
                except asyncio.TimeoutError:
                    where = format_address(*self.ep[:2])
                    self._drop(failed=gone_if_silent)
                    if not gone_if_silent:
                        raise TimeoutError(f"no reply within {self.timeout}s") from None
                    if not idempotent:
                        raise UnknownOutcome(f"no reply from {where} within {wait}s (node "
                                             f"timeout): the command may or may not have "
                                             f"been applied") from None
                    if not deadline:
                        deadline = time.monotonic() + self.retry_timeout
                    continue
                except ProtocolError:
                    self._drop()
                    raise
                except OSError as e:
                    self._drop(failed=True)
                    if not idempotent:
                        raise UnknownOutcome(f"connection lost before the reply ({e}); the "
                                             f"command may or may not have been applied") \
                            from None
                    if not deadline:
                        deadline = time.monotonic() + self.retry_timeout
                    continue
                except BaseException:
                    # Cancelled with a reply still due: the next command would read it
                    # as its own. The connection goes; a write sent may or may not apply.
                    self._drop()
                    raise
                again = [isinstance(r, TryAgain) for r in replies]
                if any(again) and (n == 1 or idempotent or all(again)):
                    if not deadline:
                        deadline = time.monotonic() + self.retry_timeout
                    if time.monotonic() + delay < deadline:
                        if any(tryagain_moves(r) for r in replies):
                            self._drop(failed=True)     # see distri._link
                        delay = await _backoff(delay, deadline - time.monotonic())
                        continue
                break
        if raise_errors:
            for r in replies:
                if isinstance(r, ServerError):
                    raise r
        return replies

    async def close(self) -> None:
        self.closed = True
        s, self._stream = self._stream, None
        if s is not None:
            s.close()
            try:
                await s.writer.wait_closed()
            except Exception:
                pass
