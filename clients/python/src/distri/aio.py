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
"""

import asyncio
import collections
import functools
import inspect
import logging
import random
import sys
import threading
import time
import weakref
from typing import (Any, Callable, Deque, Dict, FrozenSet, Generator, Iterable, List, Mapping,
                    Optional, Sequence, Set, Tuple, Union)

from . import _msg, _ops
from ._codec import Codec
from ._mirror import Change, MirrorState, MirrorView
from ._aio_link import (_BACKOFF_FIRST, _BACKOFF_MAX, _STABLE_SESSION, _backoff,
                        _ConnectionLost, _dial, _Link, _mirror_revision, _Stream)
from ._nodes import NodeSet
from ._resp import NEED_MORE, PushFrame, first_error, pack
from ._url import Address, format_address, parse_targets
from .errors import ClosedError, ConnectionError, Error, ServerError, TimeoutError, TryAgain

__all__ = ["connect", "stats", "Room", "Pipeline", "Subscription", "Worker", "Function",
           "Message"]

Message = _msg.Message

log = logging.getLogger("distri")

Key = Union[str, bytes]
# ---------------------------------------------------------------------------
# Messaging: calls, subscriptions, workers (see distri._sync for the design)
# ---------------------------------------------------------------------------

_IDLE_CALL_LINKS = 8


class _CallPool:
    """Connections for CALL / CALL.ALL: one per call in flight, idle ones reused
    (the server holds a connection while its call waits)."""

    def __init__(self, main: _Link) -> None:
        self._main = main
        self._idle: List[_Link] = []
        self.closed = False

    async def run(self, args: Tuple[Any, ...], wait: Optional[float]) -> Any:
        if self.closed:
            raise ClosedError("room is closed")
        link = self._idle.pop() if self._idle else None
        if link is None:
            main = self._main
            await main.ensure()
            link = _Link(main.nodes, main.room, timeout=wait,
                         connect_timeout=main.connect_timeout, retry_timeout=main.retry_timeout)
        link.timeout = wait
        reusable = False
        try:
            reply = await link.call(args, False)
            reusable = True
            return reply
        except ServerError:
            reusable = True
            raise
        finally:
            if reusable and not self.closed and len(self._idle) < _IDLE_CALL_LINKS:
                self._idle.append(link)
            else:
                await link.close()

    async def close(self) -> None:
        self.closed = True
        idle, self._idle = self._idle, []
        for link in idle:
            await link.close()


class Subscription:
    """Messages published to topics and patterns of a room (asyncio): made by
    room.subscribe(). Confirmed and ready with `sub = await room.subscribe(...)` or
    `async with room.subscribe(...) as sub`; `async for msg in room.subscribe(...)`
    also works (it subscribes on the first iteration). Items are distri.Message.
    Reconnects after a lost connection as distri.Subscription does."""

    def __init__(self, room: "Room", topics: Iterable[Any], patterns: Iterable[Any],
                 timeout: Optional[float]) -> None:
        self._room = room
        self._link = room._link
        self._state = _msg.SubState(room._codec)
        self._state.add(topics, patterns)
        self._timeout = timeout
        self._stream: Optional[_Stream] = None
        self._read_lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._pending: Deque[_msg.Message] = collections.deque()
        self._delay = _BACKOFF_FIRST
        self._ping_out = False
        self._ping_sent = 0.0
        self._heard = 0.0
        self.address: Optional[Address] = None       # the node subscribed on
        self._started = False
        self._start_lock = asyncio.Lock()
        self.closed = False
        self.error: Optional[BaseException] = None

    @property
    def topics(self) -> FrozenSet[str]:
        return frozenset(self._state.topics)

    @property
    def patterns(self) -> FrozenSet[str]:
        return frozenset(self._state.patterns)

    async def _ensure_started(self) -> "Subscription":
        if not self._started:
            async with self._start_lock:
                if not self._started:
                    if self.closed:
                        raise ClosedError("subscription is closed")
                    link = self._link
                    timeout = (link.connect_timeout + link.retry_timeout
                               if self._timeout is None else self._timeout)
                    try:
                        async with self._read_lock:
                            await self._connect(time.monotonic() + timeout, initial=True)
                        st = self._state
                        await self._wait_confirmed(list(st.topics), list(st.patterns), timeout)
                    except BaseException:
                        await self.close()
                        raise
                    self._started = True
        return self

    def __await__(self) -> Generator[Any, None, "Subscription"]:
        return self._ensure_started().__await__()

    async def __aenter__(self) -> "Subscription":
        return await self._ensure_started()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __del__(self) -> None:
        # An abandoned subscription (an `async for` left by break) closes its
        # connection when it is garbage collected.
        s = getattr(self, "_stream", None)
        if s is not None and not getattr(self, "closed", True):
            self.closed = True
            try:
                s.writer.transport.abort()
            except Exception:
                pass

    def _notify(self) -> None:
        ev, self._changed = self._changed, asyncio.Event()
        ev.set()

    # -- the connection (REQUIRES: read lock) ---------------------------------------

    async def _connect(self, deadline: Optional[float], initial: bool = False) -> bool:
        link = self._link
        if link.room is None:
            await link.ensure()
        while not self.closed:
            try:
                s, address, _, _ = await _dial(link.nodes, link.room, [],
                                               connect_timeout=link.connect_timeout)
                try:
                    s.writer.write(b"".join(pack(c) for c in self._state.commands()))
                except BaseException:
                    s.close()
                    raise
                self._stream, self.address = s, address
                self._ping_out = False
                self._heard = time.monotonic()
                self._delay = _BACKOFF_FIRST
                if not initial:
                    log.info("distri: subscription in room %s reconnected to %s", link.room,
                             format_address(*address))
                return True
            except ServerError:
                raise
            except (OSError, asyncio.TimeoutError) as e:
                self.error = e
                if initial and deadline is not None and time.monotonic() >= deadline:
                    raise ConnectionError(f"cannot reach distri server at "
                                          f"{link.nodes.describe()}: {e}") from None
            if deadline is not None and time.monotonic() >= deadline:
                return False
            limit = _BACKOFF_MAX if deadline is None else max(0.0, deadline - time.monotonic())
            self._delay = await _backoff(self._delay, limit)
        return False

    def _drop(self) -> None:
        s, self._stream = self._stream, None
        self.address = None
        if s is not None:
            s.close()

    async def _step(self, deadline: Optional[float]) -> None:
        if self._stream is None:
            if not await self._connect(deadline):
                return
        s = self._stream
        assert s is not None
        if self._drain(s):
            return
        # Silence: a PING after idle_ping seconds, another node after as long again.
        idle = self._link.idle_ping()
        now = time.monotonic()
        if self._ping_out:
            if now - self._ping_sent >= idle:
                if self.address is not None:
                    self._link.nodes.failed(self.address)
                self._lost(_ConnectionLost("server did not answer a PING"))
                return
            wait = idle - (now - self._ping_sent)
        elif now - self._heard >= idle:
            self._ping_out = True
            self._ping_sent = now
            self._send([("PING",)])
            wait = idle
        else:
            wait = idle - (now - self._heard)
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - now))
        try:
            chunk = await asyncio.wait_for(s.reader.read(262144), max(wait, 0.0001))
            if not chunk:
                raise _ConnectionLost("connection closed by the server")
        except asyncio.TimeoutError:
            return                    # the caller's deadline, or time to ping: see above
        except OSError as e:
            if self.address is not None and not self.closed:   # close() ends it: no fault
                self._link.nodes.failed(self.address)
            self._lost(e)
            return
        self._heard = time.monotonic()
        s.parser.feed(chunk)
        self._drain(s)

    def _drain(self, s: _Stream) -> bool:
        """Handles every complete reply in the parser; returns whether there was one."""
        confirmations = False
        any_reply = False
        state, pending = self._state, self._pending
        while True:
            r = s.parser.gets()
            if r is NEED_MORE:
                break
            any_reply = True
            if isinstance(r, PushFrame):
                m = state.frame(r)
                if m is not None:
                    pending.append(m)
                else:
                    confirmations = True
            elif isinstance(r, ServerError):
                log.warning("distri: subscription in room %s: %s", self._link.room, r)
            else:
                self._ping_out = False
        if confirmations:
            self._notify()
        return any_reply

    def _lost(self, e: BaseException) -> None:
        self._drop()
        if not self.closed:
            self.error = e
            log.info("distri: subscription in room %s lost its connection (%s); "
                     "reconnecting", self._link.room, e)

    def _send(self, cmds: List[Tuple[Any, ...]]) -> None:
        s = self._stream
        if cmds and s is not None and not s.writer.is_closing():
            s.writer.write(b"".join(pack(c) for c in cmds))

    # -- reading ------------------------------------------------------------------------

    async def get(self, timeout: Optional[float] = None) -> Optional[_msg.Message]:
        """The next message; None after timeout seconds without one, or when closed."""
        await self._ensure_started()
        deadline = None if timeout is None else time.monotonic() + timeout
        async with self._read_lock:
            while True:
                if self._pending:
                    return self._pending.popleft()
                if self.closed:
                    return None
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                await self._step(deadline)

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> _msg.Message:
        m = await self.get()
        if m is None:
            raise StopAsyncIteration
        return m

    # -- changing the subscriptions -----------------------------------------------------

    async def subscribe(self, *topics: str, patterns: Iterable[str] = (),
                        timeout: float = 10.0) -> None:
        """Adds topics and patterns; returns once the server confirmed them."""
        await self._ensure_started()
        if self.closed:
            raise ClosedError("subscription is closed")
        topics_l, patterns_l = list(topics), list(patterns)
        self._send(self._state.add(topics_l, patterns_l))
        await self._wait_confirmed(topics_l, patterns_l, timeout)

    async def unsubscribe(self, *topics: str, patterns: Iterable[str] = ()) -> None:
        """Removes topics and patterns (nothing named: all of them), effective at once."""
        patterns_l = list(patterns)
        if not topics and not patterns_l:
            cmds = self._state.remove(list(self._state.topics), list(self._state.patterns))
        else:
            cmds = self._state.remove(topics, patterns_l)
        self._send(cmds)

    async def _wait_confirmed(self, topics: List[str], patterns: List[str],
                              timeout: float) -> None:
        deadline = time.monotonic() + timeout
        state = self._state
        while state.pending(topics, patterns):
            if self.closed:
                raise ClosedError("subscription is closed")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"subscription not confirmed within {timeout}s")
            if not self._read_lock.locked():
                async with self._read_lock:
                    while state.pending(topics, patterns) and not self.closed \
                            and time.monotonic() < deadline:
                        await self._step(deadline)
            else:
                try:
                    await asyncio.wait_for(self._changed.wait(), min(0.1, remaining))
                except asyncio.TimeoutError:
                    pass

    async def close(self) -> None:
        """Ends the subscription; iteration stops."""
        self.closed = True
        self._drop()
        self._notify()
        self._room._forget(self)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return (f"<distri.aio.Subscription {state} topics={sorted(self._state.topics)} "
                f"patterns={sorted(self._state.patterns)}>")


class Worker:
    """A connection serving services (asyncio): made by room.serve(). Each request
    runs as a task: coroutine handlers on the loop, plain functions in the loop's
    default executor; at most `concurrency` at a time. Reconnects as
    distri.Worker does."""

    def __init__(self, room: "Room", handlers: Dict[str, Callable[..., Any]], concurrency: int,
                 name: Optional[str]) -> None:
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive int, got {concurrency!r}")
        self._room = room
        self._codec = room._codec
        self._handlers = handlers
        self.name = _msg.worker_name(name)
        self.concurrency = concurrency
        self.services: Tuple[str, ...] = tuple(handlers)
        self.handled = 0
        self.failed = 0
        self.error: Optional[BaseException] = None
        self._stream: Optional[_Stream] = None
        self._tasks: Set["asyncio.Task[Any]"] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stop = asyncio.Event()
        self._stopping = False
        self._ready = asyncio.Event()
        self._served_at = 0.0                        # when the current session began serving
        self.address: Optional[Address] = None       # the node served on
        self._fatal: Optional[BaseException] = None
        self._task: Optional["asyncio.Task[None]"] = None
        self._running = False

    @property
    def running(self) -> bool:
        return self._running and not self._stop.is_set()

    def __repr__(self) -> str:
        return (f"<distri.aio.Worker {self.name} services={list(self.services)} "
                f"concurrency={self.concurrency} {'running' if self.running else 'stopped'}>")

    async def start(self, timeout: Optional[float] = None) -> "Worker":
        """Runs the worker as a task; returns once the server registered it."""
        link = self._room._link
        self._task = asyncio.ensure_future(self._run_quietly())
        timeout = link.connect_timeout + link.retry_timeout if timeout is None else timeout
        ready = asyncio.ensure_future(self._ready.wait())
        await asyncio.wait([ready, self._task], timeout=timeout,
                           return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if self._fatal is not None:
            raise self._fatal
        if not self._ready.is_set():
            await self.stop(timeout=0)
            raise ConnectionError(f"worker could not register with the server: {self.error}")
        return self

    async def _run_quietly(self) -> None:
        try:
            await self.run()
        except ServerError:
            pass
        except Exception:
            log.exception("distri: worker %s stopped", self.name)

    async def run(self) -> None:
        """Serves until stop(). Cancelling it stops the worker at once."""
        if self._running:
            raise Error("a worker runs once; call room.serve() again for another")
        self._running = True
        delay = _BACKOFF_FIRST
        try:
            while not self._stop.is_set():
                try:
                    await self._session()
                except ServerError as e:
                    self._fatal = e
                    log.error("distri: worker %s refused by the server: %s", self.name, e)
                    raise
                except (OSError, Error, asyncio.TimeoutError) as e:
                    self.error = e
                    if self._stop.is_set():
                        break
                    log.log(logging.INFO if delay == _BACKOFF_FIRST else logging.DEBUG,
                            "distri: worker %s lost its connection (%s); reconnecting",
                            self.name, e)
                finally:
                    s, self._stream = self._stream, None
                    self.address = None
                    if s is not None:
                        s.close()
                if self._served_at and time.monotonic() - self._served_at >= _STABLE_SESSION:
                    delay = _BACKOFF_FIRST     # it served a while: the next loss starts afresh
                self._served_at = 0.0
                try:
                    await asyncio.wait_for(self._stop.wait(),
                                           min(delay * random.uniform(0.8, 1.2), _BACKOFF_MAX))
                    break
                except asyncio.TimeoutError:
                    pass
                delay = min(delay * 2, _BACKOFF_MAX)
        finally:
            self._stop.set()
            self._running = False
            for t in list(self._tasks):
                t.cancel()
            self._room._forget(self)

    async def _session(self) -> None:
        link = self._room._link
        cmds = [("CLIENT", "SETNAME", self.name),
                ("SVC.SERVE", *self.services, "CONCURRENCY", self.concurrency)]
        s, address, _, early = await _dial(link.nodes, link.room, cmds,
                                           connect_timeout=link.connect_timeout)
        self._stream, self.address = s, address
        self._served_at = time.monotonic()
        self._ready.set()
        for frame in early:
            self._dispatch(frame, s)
        ping_out = False
        chunk = b""                # requests may already wait in the parser's buffer
        while not self._stop.is_set():
            if chunk:
                s.parser.feed(chunk)
            while True:
                r = s.parser.gets()
                if r is NEED_MORE:
                    break
                if isinstance(r, PushFrame):
                    self._dispatch(r, s)
                elif isinstance(r, ServerError):
                    log.warning("distri: worker %s: %s", self.name, r)
                else:
                    ping_out = False
            try:
                chunk = await asyncio.wait_for(s.reader.read(262144), link.idle_ping())
            except asyncio.TimeoutError:
                if ping_out:
                    link.nodes.failed(address)
                    raise _ConnectionLost("server did not answer a PING") from None
                self._send(("PING",))
                ping_out = True
                chunk = b""
                continue
            if not chunk:
                if not self._stop.is_set():   # (stop() closes the stream: not the node's fault)
                    link.nodes.failed(address)
                raise _ConnectionLost("connection closed by the server")

    def _dispatch(self, frame: List[Any], s: _Stream) -> None:
        """Handles a request that came on stream `s` (the session's connection)."""
        req = _msg.request_frame(frame)
        if req is None:
            return
        task = asyncio.ensure_future(self._handle(s, *req))
        self._tasks.add(task)
        self._idle.clear()
        task.add_done_callback(self._task_done)

    def _task_done(self, task: "asyncio.Task[Any]") -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._idle.set()
            if self._stop.is_set():
                self._drop()

    async def _handle(self, s: _Stream, req_id: int, service: str, payload: bytes) -> None:
        handler = self._handlers.get(service)
        try:
            if handler is None:
                raise LookupError(f"no handler for service {service!r} in this worker")
            args, kwargs = _msg.decode_request(self._codec, service, payload)
            if inspect.iscoroutinefunction(handler):
                result = await handler(*args, **kwargs)
            else:
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(None, functools.partial(handler, *args,
                                                                            **kwargs))
                if inspect.isawaitable(result):
                    result = await result
            out = ("SVC.REPLY", req_id, self._codec.encode_payload(result, ("reply", service)))
            self.handled += 1
        except Exception as e:
            self.failed += 1
            log.warning("distri: worker %s: %s handler raised %s", self.name, service,
                        _msg.error_text(e), exc_info=log.isEnabledFor(logging.DEBUG))
            out = ("SVC.ERROR", req_id, _msg.error_text(e))
        self._send(out, s)

    def _send(self, cmd: Tuple[Any, ...], session: Optional[_Stream] = None) -> None:
        """Sends cmd on the current stream; with `session`, only if that is still
        it (a reply on a later connection could answer another caller: see
        distri._sync.Worker._send)."""
        s = self._stream
        if session is not None and s is not session:
            return
        if s is not None and not s.writer.is_closing():
            s.writer.write(pack(cmd))

    def _drop(self) -> None:
        s = self._stream
        if s is not None:
            s.close()

    async def stop(self, timeout: float = 5.0) -> None:
        """Stops serving: no new requests (SVC.UNSERVE), the requests in progress
        finish and are answered (up to timeout seconds), then the connection
        closes and serve() returns. From a handler it returns at once."""
        if self._stop.is_set():
            return
        if not self._stopping:
            self._stopping = True
            self._send(("SVC.UNSERVE",))
        inside = asyncio.current_task() in self._tasks
        if not inside and self._tasks:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        self._stop.set()
        if not self._tasks or not inside:
            self._drop()
        task = self._task
        if not inside and task is not None and task is not asyncio.current_task():
            try:
                await asyncio.wait_for(asyncio.shield(task), max(1.0, timeout))
            except (asyncio.TimeoutError, asyncio.CancelledError, Exception):
                pass

    async def __aenter__(self) -> "Worker":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()


class Function:
    """A function made callable everywhere by @room.function (asyncio): f(...) runs
    it here (a coroutine function stays one), `await f.call(...)` on one worker,
    `await f.call_all(...)` on every worker; room.serve() serves it."""

    def __init__(self, room: "Room", fn: Callable[..., Any], name: str) -> None:
        functools.update_wrapper(self, fn)
        self.name = name
        self.function = fn
        self._room = room

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    async def call(self, *args: Any, timeout: Optional[float] = _msg.DEFAULT_CALL_TIMEOUT,
                   **kwargs: Any) -> Any:
        return await self._room.call(self.name, *args, timeout=timeout, **kwargs)

    async def call_all(self, *args: Any, timeout: Optional[float] = _msg.DEFAULT_CALL_TIMEOUT,
                       **kwargs: Any) -> Dict[str, Any]:
        return await self._room.call_all(self.name, *args, timeout=timeout, **kwargs)

    def __repr__(self) -> str:
        return f"<distri.aio.Function {self.name}>"


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
                link.nodes.failed(address)     # behind this copy: see distri._sync
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
