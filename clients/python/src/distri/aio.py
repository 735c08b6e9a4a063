"""The asyncio face: `room = await distri.aio.connect(url)`.

Same rooms, values, errors and mirror as the blocking face (distri), with
coroutines instead of blocking calls:

    import distri.aio
    room = await distri.aio.connect("distri://host:7379/CODE", mirror=True)
    await room.set("k", {"v": 1})
    await room.incr("n")
    room.data["k"]                          # the live mirror (plain reads)
    await room.wait_for("done", lambda v: v is True, timeout=10)

A room runs one command at a time on its connection (an asyncio.Lock keeps
replies in order); the mirror runs as a background task on the same loop. Use
a room from the event loop that created it.
"""

import asyncio
import inspect
import logging
import random
import sys
import threading
import time
from typing import (Any, Callable, Dict, Iterable, List, Mapping, Optional, Set,
                    Tuple, Union)

from . import _ops
from ._codec import Codec
from ._mirror import Change, MirrorState, MirrorView
from ._resp import NEED_MORE, PushFrame, first_error, handshake, new_reader, pack
from ._url import Endpoint, parse_url
from .errors import (ClosedError, ConnectionError, Error, ProtocolError, ServerError,
                     TimeoutError)

__all__ = ["connect", "stats", "Room", "Pipeline"]

log = logging.getLogger("distri")

Key = Union[str, bytes]
_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 1.0
_MIRROR_IDLE_PING = 15.0


class _ConnectionLost(OSError):
    pass


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

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:
            pass


class _Link:
    """The reconnecting command connection of an asyncio Room (see distri._sync._Link
    for the retry rules, which are the same)."""

    def __init__(self, ep: Endpoint, room: Optional[str], *, timeout: Optional[float],
                 connect_timeout: float, retry_timeout: float) -> None:
        self.ep = ep
        self.room = room
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retry_timeout = retry_timeout
        self.closed = False
        self._lock = asyncio.Lock()
        self._stream: Optional[_Stream] = None

    async def _open(self) -> None:
        s = await _Stream.open(self.ep, self.connect_timeout)
        try:
            cmds = handshake(self.ep.password, self.room)
            s.writer.write(b"".join(pack(c) for c in cmds))
            replies = [await s.read(self.connect_timeout) for _ in cmds]
        except asyncio.TimeoutError:
            s.close()
            raise _ConnectionLost("no answer to HELLO") from None
        except BaseException:
            s.close()
            raise
        err = first_error(replies)
        if err is not None:
            s.close()
            raise err
        if self.room is None:
            self.room = replies[1].decode()
        self._stream = s

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
                                      f"{self.ep.host}:{self.ep.port}: {last}")
            delay = await _backoff(delay, remaining)

    def _drop(self) -> None:
        if self._stream is not None:
            self._stream.close()
        self._stream = None

    async def ensure(self) -> None:
        async with self._lock:
            if self._stream is None:
                await self._connect(time.monotonic() + self.retry_timeout)

    async def call(self, args: Tuple[Any, ...], idempotent: bool = True) -> Any:
        return (await self.roundtrip(pack(args), 1, idempotent))[0]

    async def call_many(self, commands: List[Tuple[Any, ...]], idempotent: bool) -> List[Any]:
        data = b"".join([pack(c) for c in commands])
        return await self.roundtrip(data, len(commands), idempotent, raise_errors=False)

    async def roundtrip(self, data: bytes, n: int, idempotent: bool,
                        raise_errors: bool = True) -> List[Any]:
        async with self._lock:
            deadline = 0.0
            while True:
                if self.closed:
                    raise ClosedError("room is closed")
                if deadline and time.monotonic() > deadline:
                    raise ConnectionError(f"no reply from {self.ep.host}:{self.ep.port} "
                                          f"within {self.retry_timeout}s of retries")
                s = self._stream
                if s is None or s.reader.at_eof() or s.writer.is_closing():
                    self._drop()
                    if not deadline:
                        deadline = time.monotonic() + self.retry_timeout
                    await self._connect(deadline)
                    s = self._stream
                assert s is not None
                try:
                    s.writer.write(data)
                    if len(data) > 65536:
                        await s.writer.drain()
                except OSError:
                    self._drop()
                    continue
                try:
                    replies = [await s.read(self.timeout) for _ in range(n)]
                    break
                except asyncio.TimeoutError:
                    self._drop()
                    raise TimeoutError(f"no reply within {self.timeout}s") from None
                except ProtocolError:
                    self._drop()
                    raise
                except OSError as e:
                    self._drop()
                    if not idempotent:
                        raise ConnectionError(f"connection lost before the reply ({e}); the "
                                              f"command may or may not have been applied",
                                              maybe_applied=True) from None
                    if not deadline:
                        deadline = time.monotonic() + self.retry_timeout
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


class Room:
    """A room, asyncio flavour. Made by `await distri.aio.connect()`."""

    def __init__(self, link: _Link, codec: Codec, *, mirror_timeout: float) -> None:
        self._link = link
        self._codec = codec
        self._mirror_timeout = mirror_timeout
        self._state = MirrorState(codec)
        self._view = MirrorView(self._state, threading.RLock())
        self._mirror_task: Optional["asyncio.Task[None]"] = None
        self._mirror_error: Optional[BaseException] = None
        self._mirror_fatal: Optional[BaseException] = None
        self._changed = asyncio.Event()
        self._callbacks: List[Tuple[Optional[str], Callable[[Change], Any]]] = []
        self._tasks: Set["asyncio.Task[Any]"] = set()
        self._closing = False

    @property
    def code(self) -> str:
        return self._link.room or ""

    @property
    def url(self) -> str:
        return self._link.ep.url(self.code)

    def __repr__(self) -> str:
        return f"<distri.aio.Room {self.url}>"

    async def _run(self, op: _ops.Op) -> Any:
        return op.post(await self._link.call(op.args, op.idempotent))

    # -- the dictionary (see distri.Room for each call's meaning) ----------------------

    async def get(self, key: Key, default: Any = None) -> Any:
        raw = await self._link.call(("GET", key))
        return default if raw is None else self._codec.decode(raw)

    async def set(self, key: Key, value: Any, ttl: Optional[float] = None) -> None:
        await self._run(_ops.set_(self._codec, key, value, ttl))

    async def incr(self, key: Key, n: Union[int, float] = 1) -> Union[int, float]:
        return await self._run(_ops.incr(key, n))

    async def cas(self, key: Key, expected: Any, new: Any) -> bool:
        return await self._run(_ops.cas(self._codec, key, expected, new))

    async def delete(self, *keys: Key) -> int:
        return await self._run(_ops.delete(*keys))

    async def exists(self, key: Key) -> bool:
        return await self._run(_ops.exists(key))

    async def keys(self, prefix: Key = "") -> List[str]:
        return await self._run(_ops.keys(prefix))

    async def expire(self, key: Key, seconds: Optional[float]) -> bool:
        return await self._run(_ops.expire(key, seconds))

    async def ttl(self, key: Key) -> Optional[float]:
        return await self._run(_ops.ttl(key))

    async def size(self) -> int:
        return await self._run(_ops.dbsize())

    async def get_many(self, keys: Iterable[Key], default: Any = None) -> List[Any]:
        return await self._run(_ops.get_many(self._codec, keys, default))

    async def update(self, items: Mapping[Key, Any]) -> None:
        await self._run(_ops.update(self._codec, items))

    async def clear(self) -> None:
        await self._run(_ops.clear())

    async def get_raw(self, key: Key) -> Optional[bytes]:
        return await self._link.call(("GET", key))

    async def set_raw(self, key: Key, value: bytes, ttl: Optional[float] = None) -> None:
        await self._run(_ops.set_raw(key, value, ttl))

    async def stats(self) -> Dict[str, Any]:
        return await self._run(_ops.room_stats())

    async def info(self) -> Dict[str, Any]:
        return await self._run(_ops.room_info())

    async def ping(self) -> None:
        await self._run(_ops.ping())

    async def execute(self, *args: Any) -> Any:
        return await self._run(_ops.command(*args))

    def pipeline(self) -> "Pipeline":
        """`async with room.pipeline() as p: p.set(...); p.incr(...)` -> p.results."""
        return Pipeline(self)

    # -- the mirror ------------------------------------------------------------------------

    def _notify(self) -> None:
        ev, self._changed = self._changed, asyncio.Event()
        ev.set()

    def _start_mirror_task(self) -> None:
        if self._mirror_task is None:
            self._mirror_task = asyncio.ensure_future(self._mirror_loop())

    async def start_mirror(self, timeout: Optional[float] = None) -> MirrorView:
        """Starts the mirror (if needed) and waits for the first complete copy."""
        if self._link.closed:
            raise ClosedError("room is closed")
        self._start_mirror_task()
        timeout = self._mirror_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while not self._state.synced:
            if self._mirror_fatal is not None:
                raise self._mirror_fatal
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if isinstance(self._mirror_error, OSError):
                    raise ConnectionError(f"mirror could not connect: {self._mirror_error}")
                raise TimeoutError(f"mirror not loaded after {timeout}s")
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass
        return self._view

    @property
    def data(self) -> MirrorView:
        """The live local copy (read-only Mapping). Start it first with
        `await room.start_mirror()` or `connect(..., mirror=True)`."""
        if not self._state.synced:
            raise Error("the mirror is not loaded: await room.start_mirror() first "
                        "(or connect with mirror=True)")
        return self._view

    def on_change(self, callback: Callable[[Change], Any],
                  prefix: Optional[str] = None) -> Callable[[], None]:
        """Calls callback(change) for each change under prefix; a coroutine function is
        run as a task. Starts the mirror if needed. Returns an unsubscribe function."""
        entry = (prefix, callback)
        self._callbacks = self._callbacks + [entry]
        self._start_mirror_task()

        def unsubscribe() -> None:
            self._callbacks = [e for e in self._callbacks if e is not entry]
        return unsubscribe

    def _dispatch(self, changes: List[Change]) -> None:
        callbacks = self._callbacks
        if not changes or not callbacks:
            return
        for ch in changes:
            for prefix, cb in callbacks:
                if prefix is None or ch.key.startswith(prefix):
                    try:
                        result = cb(ch)
                        if inspect.isawaitable(result):
                            task = asyncio.ensure_future(result)
                            self._tasks.add(task)
                            task.add_done_callback(self._task_done)
                    except Exception:
                        log.exception("distri: on_change callback %r failed", cb)

    def _task_done(self, task: "asyncio.Task[Any]") -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("distri: on_change callback failed", exc_info=task.exception())

    async def wait_until(self, predicate: Callable[[MirrorView], Any],
                         timeout: Optional[float] = None) -> Any:
        """Waits until predicate(room.data) is truthy; returns its value."""
        await self.start_mirror()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            result = predicate(self._view)
            if result:
                return result
            ev = self._changed
            if deadline is None:
                await ev.wait()
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout}s")
            try:
                await asyncio.wait_for(ev.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def wait_for(self, key: str, predicate: Optional[Callable[[Any], Any]] = None,
                       timeout: Optional[float] = None) -> Any:
        """Waits until key exists (and predicate(value) holds) in the mirror."""
        found: List[Any] = []

        def check(data: MirrorView) -> bool:
            if key in data:
                value = data[key]
                if predicate is None or predicate(value):
                    found.append(value)
                    return True
            return False
        await self.wait_until(check, timeout)
        return found[0]

    async def _mirror_loop(self) -> None:
        delay = _BACKOFF_FIRST
        try:
            while not self._closing:
                try:
                    if await self._mirror_session():
                        delay = _BACKOFF_FIRST
                except ServerError as e:
                    self._mirror_fatal = self._mirror_error = e
                    log.error("distri: mirror of room %s stopped: %s", self.code, e)
                except (OSError, Error, asyncio.TimeoutError) as e:
                    self._mirror_error = e
                    if not self._closing:
                        log.log(logging.INFO if delay == _BACKOFF_FIRST else logging.DEBUG,"distri: mirror of room %s lost its connection (%s); "
                                 "reconnecting", self.code, e)
                self._state.disconnected()
                self._notify()
                if self._closing or self._mirror_fatal is not None:
                    return
                delay = await _backoff(delay)
        except asyncio.CancelledError:
            self._state.disconnected()
            raise

    async def _mirror_session(self) -> bool:
        link = self._link
        if link.room is None:
            await link.ensure()
        s = await _Stream.open(link.ep, link.connect_timeout)
        try:
            cmds = handshake(link.ep.password, self.code) + [self._state.mirror_args()]
            s.writer.write(b"".join(pack(c) for c in cmds))
            early: List[Any] = []
            replies: List[Any] = []
            while len(replies) < len(cmds):
                r = await s.read(link.connect_timeout + 10)
                (early if isinstance(r, PushFrame) else replies).append(r)
            err = first_error(replies)
            if err is not None:
                raise err
            changes: List[Change] = []
            self._state.started(replies[-1])
            for frame in early:
                self._state.apply(frame, changes)
            reached_ready = False
            ping_out = False
            confirm_out = False
            chunk = b""
            while not self._closing:
                if chunk:
                    s.parser.feed(chunk)
                while True:
                    r = s.parser.gets()
                    if r is NEED_MORE:
                        break
                    if isinstance(r, PushFrame):
                        self._state.apply(r, changes)
                    elif isinstance(r, ServerError):
                        raise r
                    else:
                        ping_out = False
                        if isinstance(r, bytes) and r.isdigit():
                            confirm_out = False
                            self._state.confirmed(int(r))
                reached_ready = reached_ready or self._state.ready
                if not confirm_out:
                    unconfirmed = self._state.unconfirmed()
                    if unconfirmed is not None:
                        s.writer.write(pack(("PING", unconfirmed)))
                        confirm_out = True
                self._notify()
                self._dispatch(changes)
                changes = []
                try:
                    chunk = await asyncio.wait_for(s.reader.read(262144), _MIRROR_IDLE_PING)
                except asyncio.TimeoutError:
                    if ping_out:
                        raise _ConnectionLost("server did not answer a PING") from None
                    s.writer.write(pack(("PING",)))
                    ping_out = True
                    chunk = b""
                    continue
                if not chunk:
                    raise _ConnectionLost("connection closed by the server")
            return reached_ready
        finally:
            s.close()

    # -- lifecycle ----------------------------------------------------------------------------

    async def close(self) -> None:
        self._closing = True
        task, self._mirror_task = self._mirror_task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        await self._link.close()

    async def __aenter__(self) -> "Room":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class Pipeline:
    """Queues calls and sends them in one round trip (see distri.Pipeline)."""

    def __init__(self, room: Room) -> None:
        self._room = room
        self._codec = room._codec
        self._ops: List[_ops.Op] = []
        self.results: List[Any] = []

    def _add(self, op: _ops.Op) -> "Pipeline":
        self._ops.append(op)
        return self

    def __len__(self) -> int:
        return len(self._ops)

    def get(self, key: Key, default: Any = None) -> "Pipeline":
        return self._add(_ops.get(self._codec, key, default))

    def set(self, key: Key, value: Any, ttl: Optional[float] = None) -> "Pipeline":
        return self._add(_ops.set_(self._codec, key, value, ttl))

    def incr(self, key: Key, n: Union[int, float] = 1) -> "Pipeline":
        return self._add(_ops.incr(key, n))

    def cas(self, key: Key, expected: Any, new: Any) -> "Pipeline":
        return self._add(_ops.cas(self._codec, key, expected, new))

    def delete(self, *keys: Key) -> "Pipeline":
        return self._add(_ops.delete(*keys))

    def expire(self, key: Key, seconds: Optional[float]) -> "Pipeline":
        return self._add(_ops.expire(key, seconds))

    async def execute(self) -> List[Any]:
        ops, self._ops = self._ops, []
        if not ops:
            self.results = []
            return self.results
        idempotent = all(op.idempotent for op in ops)
        replies = await self._room._link.call_many([op.args for op in ops], idempotent)
        err = first_error(replies)
        if err is not None:
            raise err
        self.results = [op.post(r) for op, r in zip(ops, replies)]
        return self.results

    async def __aenter__(self) -> "Pipeline":
        return self

    async def __aexit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            await self.execute()


async def connect(url: Optional[str] = None, *, room_key: Optional[Union[str, bytes]] = None,
                  pickle: bool = False, timeout: Optional[float] = 30.0,
                  connect_timeout: float = 5.0, retry_timeout: float = 10.0,
                  mirror: bool = False, quiet: bool = False) -> Room:
    """Connects to a room (arguments as distri.connect)."""
    ep = parse_url(url)
    codec = Codec(room_key, pickle)
    link = _Link(ep, ep.room, timeout=timeout, connect_timeout=connect_timeout,
                 retry_timeout=retry_timeout)
    await link.ensure()
    if ep.room is None and not quiet:
        print(f"distri: created room {link.room}  (join: distri.connect({ep.url(link.room)!r}))",
              file=sys.stderr)
    room = Room(link, codec, mirror_timeout=max(retry_timeout, 10.0))
    if mirror:
        await room.start_mirror()
    return room


async def stats(url: Optional[str] = None, *, timeout: float = 10.0) -> Dict[str, Any]:
    """Site-wide statistics (STATS) of the server at url."""
    ep = parse_url(url)
    link = _Link(ep, "default", timeout=timeout, connect_timeout=min(timeout, 5.0),
                 retry_timeout=0.0)
    try:
        return _ops.server_stats().post(await link.call(("STATS",)))
    finally:
        await link.close()
