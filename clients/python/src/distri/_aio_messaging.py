"""The asyncio face's messaging: calls, subscriptions and workers.

The Room (distri/aio.py) makes these; distri.aio exports the public ones. The
design is the blocking face's (distri/_sync_messaging.py), with tasks on the
room's event loop instead of threads: _CallPool (one connection per call in
flight, idle ones reused), Subscription and Worker (a connection each, on any
node, reconnecting after a loss), Function (what @room.function returns).
distri/_msg.py has the formats (no I/O), distri/_aio_link.py the dialing.
"""

import asyncio
import collections
import functools
import inspect
import logging
import random
import time
from typing import (TYPE_CHECKING, Any, Callable, Deque, Dict, FrozenSet, Generator, Iterable,
                    List, Optional, Set, Tuple)

from . import _msg
from ._aio_link import (_BACKOFF_FIRST, _BACKOFF_MAX, _STABLE_SESSION, _backoff,
                        _ConnectionLost, _dial, _Link, _Stream)
from ._resp import NEED_MORE, PushFrame, pack
from ._url import Address, format_address
from .errors import ClosedError, ConnectionError, Error, ServerError, TimeoutError

if TYPE_CHECKING:
    from .aio import Room

log = logging.getLogger("distri")


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
        distri._sync_messaging.Worker._send)."""
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
