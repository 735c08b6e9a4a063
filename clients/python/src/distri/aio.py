"""The asyncio face: `room = await distri.aio.connect(url)`.

Same rooms, values, errors and mirror as the blocking face (distri), with
coroutines instead of blocking calls:

    import distri.aio
    room = await distri.aio.connect("distri://host:7379/CODE", mirror=True)
    await room.set("k", {"v": 1})
    await room.incr("n")
    room.data["k"]                          # the live mirror (plain reads)
    await room.wait_for("done", lambda v: v is True, timeout=10)
    await room.publish("news", {"n": 1})
    async for msg in room.subscribe("news"): ...
    print(await room.call("resize", "a.png", 100))

A room runs one command at a time on its connection (an asyncio.Lock keeps
replies in order); the mirror runs as a background task on the same loop;
calls, subscriptions and workers have connections of their own, on any node
of a cluster, moving to another when theirs fails (distri/_aio_link.py).
Use a room from the event loop that created it.

This module has Room, Pipeline, connect() and stats(); Subscription, Worker,
Function and the call connections are in distri/_aio_messaging.py (imported
here: use them as distri.aio.Subscription etc.).
"""

import asyncio
import inspect
import logging
import sys
import threading
import time
import weakref
from typing import (Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set,
                    Tuple, Union)

from . import _msg, _ops
from ._aio_link import (_BACKOFF_FIRST, _STABLE_SESSION, _backoff, _ConnectionLost, _dial,
                        _Link, _mirror_revision)
from ._aio_messaging import Function, Subscription, Worker, _CallPool
from ._codec import Codec
from ._mirror import Change, MirrorState, MirrorView
from ._nodes import NodeSet
from ._resp import NEED_MORE, PushFrame, first_error, pack
from ._url import Address, format_address, parse_targets
from .errors import ClosedError, ConnectionError, Error, ServerError, TimeoutError, TryAgain

__all__ = ["connect", "stats", "Room", "Pipeline", "Subscription", "Worker", "Function",
           "Message"]

Message = _msg.Message

log = logging.getLogger("distri")

Key = Union[str, bytes]


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
        self.mirror_address: Optional[Address] = None    # the node mirrored from
        self._mirror_reached_at = 0.0                     # when the session got `ready`
        self._changed = asyncio.Event()
        self._callbacks: List[Tuple[Optional[str], Callable[[Change], Any]]] = []
        self._tasks: Set["asyncio.Task[Any]"] = set()
        self._closing = False
        self._handlers: Dict[str, Callable[..., Any]] = {}
        self._subs: "weakref.WeakSet[Subscription]" = weakref.WeakSet()
        self._workers: List[Worker] = []
        self._calls = _CallPool(link)

    @property
    def code(self) -> str:
        return self._link.room or ""

    @property
    def url(self) -> str:
        addrs = ",".join(format_address(h, p) for h, p in self._link.nodes.order())
        return f"distri://{addrs}/{self.code}"

    @property
    def address(self) -> Optional[str]:
        """host:port of the node the room's commands go to now (None between connections)."""
        a = self._link.address
        return None if a is None else format_address(*a)

    @property
    def nodes(self) -> List[str]:
        """Every node the client knows, as host:port, the one it prefers first."""
        return [format_address(h, p) for h, p in self._link.nodes.order()]

    def __repr__(self) -> str:
        return f"<distri.aio.Room {self.url}>"

    async def _run(self, op: _ops.Op) -> Any:
        return op.post(await self._link.call(op.args, op.idempotent))

    # -- the dictionary (see distri.Room for each call's meaning) ----------------------

    async def get(self, key: Key, default: Any = None) -> Any:
        raw = await self._link.call(("GET", key), True)
        return default if raw is None else self._codec.decode(raw, key)

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
        return await self._link.call(("GET", key), True)

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
                    await self._mirror_session()
                except ServerError as e:
                    self._mirror_fatal = self._mirror_error = e
                    log.error("distri: mirror of room %s stopped: %s", self.code, e)
                except (OSError, Error, asyncio.TimeoutError) as e:
                    self._mirror_error = e
                    if not self._closing:
                        log.log(logging.INFO if delay == _BACKOFF_FIRST else logging.DEBUG,
                                "distri: mirror of room %s lost its connection (%s); "
                                "reconnecting", self.code, e)
                self._state.disconnected()
                self._notify()
                if self._closing or self._mirror_fatal is not None:
                    return
                since = time.monotonic() - self._mirror_reached_at
                if self._mirror_reached_at and since >= _STABLE_SESSION:
                    delay = _BACKOFF_FIRST   # a session that worked a while: start afresh
                self._mirror_reached_at = 0.0
                delay = await _backoff(delay)
        except asyncio.CancelledError:
            self._state.disconnected()
            raise

    async def _mirror_session(self) -> bool:
        link = self._link
        if link.room is None:
            await link.ensure()
        resume_from = self._state.resume_point()
        s, address, replies, early = await _dial(link.nodes, self.code,
                                                 [self._state.mirror_args()],
                                                 connect_timeout=link.connect_timeout)
        self.mirror_address = address
        try:
            if resume_from is not None and _mirror_revision(replies[-1]) < resume_from:
                link.nodes.failed(address)     # behind this copy: see distri._sync_mirror
                raise _ConnectionLost(f"{format_address(*address)} is behind revision "
                                      f"{resume_from}")
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
                    elif isinstance(r, TryAgain):      # the idle probe: cut off
                        link.nodes.failed(address)
                        raise _ConnectionLost(f"node cannot serve now: {r}")
                    elif isinstance(r, ServerError):
                        raise r
                    else:
                        ping_out = False
                        if isinstance(r, bytes) and r.isdigit():
                            confirm_out = False
                            self._state.confirmed(int(r))
                reached_ready = reached_ready or self._state.ready
                if reached_ready and not self._mirror_reached_at:
                    self._mirror_reached_at = time.monotonic()
                if not confirm_out:
                    unconfirmed = self._state.unconfirmed()
                    if unconfirmed is not None:
                        s.writer.write(pack(("PING", unconfirmed)))
                        confirm_out = True
                self._notify()
                self._dispatch(changes)
                changes = []
                try:
                    chunk = await asyncio.wait_for(s.reader.read(262144), link.idle_ping())
                except asyncio.TimeoutError:
                    if ping_out:
                        link.nodes.failed(address)
                        raise _ConnectionLost("server did not answer a PING") from None
                    s.writer.write(pack(link.idle_probe()))
                    ping_out = True
                    chunk = b""
                    continue
                if not chunk:
                    if not self._closing:
                        link.nodes.failed(address)
                    raise _ConnectionLost("connection closed by the server")
            return reached_ready
        finally:
            self.mirror_address = None
            s.close()

    # -- messaging (see distri.Room for each call's meaning) ----------------------------

    async def publish(self, topic: str, message: Any) -> int:
        return await self._link.call(("PUBLISH", topic,
                                      self._codec.encode_payload(message, ("message", topic))),
                                     False)

    def subscribe(self, *topics: str, patterns: Iterable[str] = (),
                  timeout: Optional[float] = None) -> Subscription:
        """`sub = await room.subscribe(...)`, `async with room.subscribe(...) as sub`,
        or `async for msg in room.subscribe(...)`."""
        if self._link.closed:
            raise ClosedError("room is closed")
        sub = Subscription(self, topics, patterns, timeout)
        self._subs.add(sub)
        return sub

    def service(self, name: Any = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: @room.service("name") registers a handler (coroutine function or
        plain function) for room.serve()."""
        if callable(name):
            self._handlers[name.__name__] = name
            return name

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self._handlers[name or fn.__name__] = fn
            return fn
        return register

    def function(self, fn: Optional[Callable[..., Any]] = None, *,
                 name: Optional[str] = None) -> Any:
        """Decorator: f(...) runs here, `await f.call(...)` on one worker, `await
        f.call_all(...)` on all; served by room.serve() as module.qualname."""
        def wrap(f: Callable[..., Any]) -> Function:
            func = Function(self, f, name or _msg.function_name(f))
            self._handlers[func.name] = f
            return func
        return wrap if fn is None else wrap(fn)

    async def serve(self, *services: str, concurrency: int = 1, background: bool = False,
                    name: Optional[str] = None) -> Worker:
        """Serves the registered services (or those named) until the worker is stopped
        or the task cancelled; background=True returns the running Worker once the
        server registered it."""
        handlers = _msg.check_handlers(self._handlers, services)
        if self._link.closed:
            raise ClosedError("room is closed")
        await self._link.ensure()
        worker = Worker(self, handlers, concurrency, name)
        self._workers.append(worker)
        if background:
            return await worker.start()
        await worker.run()
        return worker

    async def call(self, service: str, *args: Any,
                   timeout: Optional[float] = _msg.DEFAULT_CALL_TIMEOUT, **kwargs: Any) -> Any:
        cmd = _msg.call_args(self._codec, service, args, kwargs, timeout)
        reply = await self._calls.run(cmd, _msg.reply_wait(timeout))
        return self._codec.decode_payload(reply, ("reply", service))

    async def call_all(self, service: str, *args: Any,
                       timeout: Optional[float] = _msg.DEFAULT_CALL_TIMEOUT,
                       **kwargs: Any) -> Dict[str, Any]:
        cmd = _msg.call_args(self._codec, service, args, kwargs, timeout, every=True)
        reply = await self._calls.run(cmd, _msg.reply_wait(timeout))
        return _msg.call_all_result(self._codec, service, reply)

    async def subscribers(self, topic: str) -> int:
        """How many subscriptions of the room receive messages published to topic
        (by name; pattern subscriptions are not counted)."""
        return await self._run(_ops.subscribers(topic))

    async def services(self) -> Dict[str, Dict[str, Any]]:
        """The room's services that have workers: {name: {workers, in_flight, waiting}}."""
        return await self._run(_ops.services())

    async def service_stats(self, name: str) -> Dict[str, Any]:
        """SVC.STATS: workers (names), in_flight, waiting, calls, errors, timeouts,
        dropped_replies, p50_ms, p99_ms. distri.NotFound for a name never used."""
        return await self._run(_ops.service_stats(name))

    def _forget(self, thing: Any) -> None:
        self._subs.discard(thing)
        if thing in self._workers:
            self._workers.remove(thing)

    # -- lifecycle ----------------------------------------------------------------------------

    async def close(self) -> None:
        """Closes the room's connections: the mirror, workers (finishing requests in
        progress, up to 5 s), subscriptions and call connections."""
        for w in list(self._workers):
            await w.stop()
        for sub in list(self._subs):
            await sub.close()
        await self._calls.close()
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


async def connect(url: Union[None, str, Sequence[str]] = None, *,
                  room_key: Optional[Union[str, bytes]] = None,
                  pickle: bool = False, timeout: Optional[float] = 30.0,
                  connect_timeout: float = 5.0, retry_timeout: float = 10.0,
                  node_timeout: Optional[float] = 5.0,
                  mirror: bool = False, quiet: bool = False) -> Room:
    """Connects to a room (arguments as distri.connect: one URL, several addresses
    in it, or a list; the client learns the cluster's other nodes and fails over)."""
    targets = parse_targets(url)
    if node_timeout is not None and node_timeout <= 0:
        raise ValueError(f"node_timeout must be positive or None, got {node_timeout!r}")
    Codec(room_key, pickle)                       # bad pickle options fail before connecting
    link = _Link(NodeSet(targets), targets.room, timeout=timeout,
                 connect_timeout=connect_timeout, retry_timeout=retry_timeout,
                 node_timeout=node_timeout, learn=True)
    await link.ensure()
    codec = Codec(room_key, pickle, room=link.room or "")   # pickles are bound to the room
    room = Room(link, codec, mirror_timeout=max(retry_timeout, 10.0))
    if targets.room is None and not quiet:
        print(f"distri: created room {link.room}  (join: distri.connect({room.url!r}))",
              file=sys.stderr)
    if mirror:
        await room.start_mirror()
    return room


async def stats(url: Union[None, str, Sequence[str]] = None, *,
                timeout: float = 10.0) -> Dict[str, Any]:
    """Statistics (STATS) of the server at url (of several, the first that answers)."""
    targets = parse_targets(url)
    link = _Link(NodeSet(targets), "default", timeout=timeout,
                 connect_timeout=min(timeout, 5.0), retry_timeout=0.0)
    try:
        return _ops.server_stats().post(await link.call(("STATS",), True))
    finally:
        await link.close()
