"""The blocking face's messaging: calls, subscriptions and workers.

The Room (distri/_sync.py) makes these; distri exports the public ones.
  - _CallPool: CALL holds its connection until answered, so each call in flight
    has its own connection, kept idle for the next one.
  - Subscription and Worker: a connection each, on any node of the room's
    NodeSet, reconnecting and subscribing / serving again after a loss.
  - Function: what @room.function returns (f.call runs it on a worker).

distri/_msg.py has the formats and the subscription state (no I/O);
distri/_link.py the dialing and the command link.
"""

import collections
import concurrent.futures
import functools
import logging
import random
import socket
import threading
import time
from typing import (TYPE_CHECKING, Any, Callable, Deque, Dict, FrozenSet, Iterable, List,
                    Optional, Tuple)

from . import _msg
from ._link import (_BACKOFF_FIRST, _BACKOFF_MAX, _STABLE_SESSION, _ConnectionLost, _dial,
                    _Link, _sleep_backoff)
from ._resp import NEED_MORE, PushFrame, pack
from ._url import Address, format_address
from .errors import ClosedError, ConnectionError, Error, ServerError, TimeoutError

if TYPE_CHECKING:
    from ._sync import Room

log = logging.getLogger("distri")


_IDLE_CALL_LINKS = 8          # idle call connections a room keeps for reuse


class _CallPool:
    """Connections for CALL and CALL.ALL. The server holds a connection while its
    call waits (as Redis does for blocking commands), so calls do not use the
    room's command link: each call in flight takes a connection of its own, and
    idle ones are kept for the next call. Threads can call concurrently."""

    def __init__(self, main: _Link) -> None:
        self._main = main
        self._idle: List[_Link] = []
        self._lock = threading.Lock()
        self.closed = False

    def run(self, args: Tuple[Any, ...], wait: Optional[float]) -> Any:
        if self.closed:
            raise ClosedError("room is closed")
        with self._lock:
            link = self._idle.pop() if self._idle else None
        if link is None:
            main = self._main
            main.ensure()
            link = _Link(main.nodes, main.room, timeout=wait,
                         connect_timeout=main.connect_timeout, retry_timeout=main.retry_timeout)
        reusable = False
        try:
            link.timeout = wait                # (the reply wait is set at each call)
            reply = link.call(args, False)     # a call may run twice if resent: never resend
            reusable = True
            return reply
        except ServerError:
            reusable = True                    # an answer: the connection is in step
            raise
        finally:
            # Anything else (interrupted, timed out, connection lost) may leave a
            # reply in flight on this connection: it is not reused.
            with self._lock:
                keep = reusable and not self.closed and len(self._idle) < _IDLE_CALL_LINKS
                if keep:
                    self._idle.append(link)
            if not keep:
                link.close()

    def close(self) -> None:
        self.closed = True
        with self._lock:
            idle, self._idle = self._idle, []
        for link in idle:
            link.close()


class Subscription:
    """Messages published to topics (and patterns) of a room: made by
    room.subscribe(). Iterate it (`for msg in sub`) or call get(timeout); each
    item is a distri.Message (topic, value, pattern, raw).

    It has its own connection. Subscriptions are confirmed by the server before
    subscribe() returns, so a message published after that is delivered. After a
    lost connection it reconnects (backoff 50 ms to 1 s, for as long as it
    takes) and subscribes again; messages published meanwhile are missed (pub/sub
    keeps nothing). Iteration ends when the subscription is closed (close(), the
    with block, room.close()), also from another thread. Thread-safe; one thread
    at a time reads.
    """

    def __init__(self, room: "Room", topics: Iterable[Any], patterns: Iterable[Any]) -> None:
        self._room = room
        self._link = room._link
        self._state = _msg.SubState(room._codec)
        self._state.add(topics, patterns)
        self._sock: Optional[socket.socket] = None
        self._reader: Any = None
        self._send_lock = threading.Lock()     # the socket (send side) and subscribe state
        self._read_lock = threading.Lock()     # one reader at a time
        self._cond = threading.Condition()     # notified when confirmations arrive
        self._pending: Deque[_msg.Message] = collections.deque()
        self._delay = _BACKOFF_FIRST
        self._ping_out = False
        self._ping_sent = 0.0
        self._heard = 0.0
        self.closed = False
        self.address: Optional[Address] = None       # the node subscribed on
        self.error: Optional[BaseException] = None   # the last connection failure

    def _start(self, timeout: float) -> None:
        with self._read_lock:
            self._connect(time.monotonic() + timeout, initial=True)
        st = self._state
        self._wait_confirmed(list(st.topics), list(st.patterns), timeout)

    @property
    def topics(self) -> FrozenSet[str]:
        return frozenset(self._state.topics)

    @property
    def patterns(self) -> FrozenSet[str]:
        return frozenset(self._state.patterns)

    # -- the connection (REQUIRES: read lock) ---------------------------------------

    def _connect(self, deadline: Optional[float], initial: bool = False) -> bool:
        """Connects and sends the subscriptions; retries with backoff until deadline
        (None: forever). Returns whether it is connected."""
        link = self._link
        while not self.closed:
            try:
                d = _dial(link.nodes, link.room, [], connect_timeout=link.connect_timeout,
                          idle_timeout=link.idle_ping())
                try:
                    with self._send_lock:
                        d.sock.sendall(b"".join(pack(c) for c in self._state.commands()))
                        self._sock, self._reader, self.address = d.sock, d.reader, d.address
                except BaseException:
                    d.sock.close()
                    raise
                self._ping_out = False
                self._heard = time.monotonic()
                self._delay = _BACKOFF_FIRST
                if not initial:
                    log.info("distri: subscription in room %s reconnected to %s", link.room,
                             format_address(*d.address))
                return True
            except ServerError:
                raise                  # refused (room dropped, auth): not a network failure
            except OSError as e:
                self.error = e
                if initial and deadline is not None and time.monotonic() >= deadline:
                    raise ConnectionError(f"cannot reach distri server at "
                                          f"{link.nodes.describe()}: {e}") from None
            if deadline is not None and time.monotonic() >= deadline:
                return False
            limit = _BACKOFF_MAX if deadline is None else max(0.0, deadline - time.monotonic())
            self._delay = _sleep_backoff(self._delay, limit)
        return False

    def _drop(self) -> None:
        with self._send_lock:
            sock, self._sock, self._reader = self._sock, None, None
            self.address = None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _step(self, deadline: Optional[float]) -> None:
        """Reads what the server sent (waiting at most until deadline) and handles it."""
        if self._sock is None:
            if not self._connect(deadline):
                return
        sock, reader = self._sock, self._reader
        assert sock is not None
        if self._drain(reader):
            return
        # Silence: after idle_ping seconds a PING, after as long again the node is
        # taken as gone (a stopped process, a cut network) and another one dialed.
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
            sock.settimeout(max(wait, 0.0001))
            chunk = sock.recv(262144)
            if not chunk:
                raise _ConnectionLost("connection closed by the server")
        except socket.timeout:
            return                    # the caller's deadline, or time to ping: see above
        except OSError as e:
            if self.address is not None and not self.closed:   # close() shuts it: no fault
                self._link.nodes.failed(self.address)
            self._lost(e)
            return
        self._heard = time.monotonic()
        reader.feed(chunk)
        self._drain(reader)

    def _drain(self, reader: Any) -> bool:
        """Handles every complete reply in the reader; returns whether there was one."""
        confirmations = False
        any_reply = False
        state, pending = self._state, self._pending
        while True:
            r = reader.gets()
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
            with self._cond:
                self._cond.notify_all()
        return any_reply

    def _lost(self, e: BaseException) -> None:
        self._drop()
        if not self.closed:
            self.error = e
            log.info("distri: subscription in room %s lost its connection (%s); "
                     "reconnecting", self._link.room, e)

    def _send(self, cmds: List[Tuple[Any, ...]]) -> None:
        if not cmds:
            return
        with self._send_lock:
            sock = self._sock
            if sock is None:
                return        # sent with every subscription when it reconnects
            try:
                sock.sendall(b"".join(pack(c) for c in cmds))
            except OSError:
                pass          # the reader finds the connection dead and reconnects

    # -- reading ------------------------------------------------------------------------

    def get(self, timeout: Optional[float] = None) -> Optional[_msg.Message]:
        """The next message; None after timeout seconds without one (None: wait until
        one comes), or when the subscription is closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._read_lock:
            while True:
                if self._pending:
                    return self._pending.popleft()
                if self.closed:
                    return None
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                self._step(deadline)

    def __iter__(self) -> "Subscription":
        return self

    def __next__(self) -> _msg.Message:
        m = self.get()
        if m is None:
            raise StopIteration
        return m

    # -- changing the subscriptions -----------------------------------------------------

    def subscribe(self, *topics: str, patterns: Iterable[str] = (),
                  timeout: float = 10.0) -> None:
        """Adds topics (and glob patterns: * ? [abc]); returns once the server
        confirmed them."""
        if self.closed:
            raise ClosedError("subscription is closed")
        topics_l, patterns_l = list(topics), list(patterns)
        with self._send_lock:
            cmds = self._state.add(topics_l, patterns_l)
        self._send(cmds)
        self._wait_confirmed(topics_l, patterns_l, timeout)

    def unsubscribe(self, *topics: str, patterns: Iterable[str] = ()) -> None:
        """Removes topics and patterns (nothing named: all of them). Messages for
        them stop at once, including those already on the way."""
        patterns_l = list(patterns)
        with self._send_lock:
            if not topics and not patterns_l:
                cmds = self._state.remove(list(self._state.topics), list(self._state.patterns))
            else:
                cmds = self._state.remove(topics, patterns_l)
        self._send(cmds)

    def _wait_confirmed(self, topics: List[str], patterns: List[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        state = self._state
        while True:
            with self._cond:
                if not state.pending(topics, patterns):
                    return
                if self.closed:
                    raise ClosedError("subscription is closed")
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"subscription not confirmed within {timeout}s")
            if self._read_lock.acquire(blocking=False):
                try:                       # nobody is reading: read ourselves
                    while state.pending(topics, patterns) and not self.closed \
                            and time.monotonic() < deadline:
                        self._step(deadline)
                finally:
                    self._read_lock.release()
            else:                          # a reader is in get(): it notifies us
                with self._cond:
                    if state.pending(topics, patterns):
                        self._cond.wait(min(0.1, max(0.0, deadline - time.monotonic())))

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Ends the subscription (its connection closes; iteration stops)."""
        self.closed = True
        with self._send_lock:
            sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)   # wakes a reader blocked in recv
            except OSError:
                pass
        if self._read_lock.acquire(blocking=False):
            try:
                self._drop()
            finally:
                self._read_lock.release()
        with self._cond:
            self._cond.notify_all()
        self._room._forget(self)

    def __del__(self) -> None:
        # An abandoned subscription (e.g. `for msg in room.subscribe(...)` left by
        # break) closes its connection when it is garbage collected.
        sock = getattr(self, "_sock", None)
        if sock is not None and not getattr(self, "closed", True):
            self.closed = True
            try:
                sock.close()
            except OSError:
                pass

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return (f"<distri.Subscription {state} topics={sorted(self._state.topics)} "
                f"patterns={sorted(self._state.patterns)}>")


class Worker:
    """A connection that serves services: made by room.serve(). Requests are
    handled on its thread (concurrency 1) or on a pool of `concurrency` threads;
    the server sends at most that many at a time. After a lost connection it
    reconnects (backoff, for as long as it takes) and serves again; requests it
    was handling are then answered by another worker or fail for the caller
    (the server retries a request once)."""

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
        self.handled = 0            # requests answered with a result
        self.failed = 0             # requests answered with an error (the handler raised)
        self.error: Optional[BaseException] = None   # the last connection failure
        self.address: Optional[Address] = None       # the node served on
        self._served_at = 0.0                        # when the current session began serving
        self._sock: Optional[socket.socket] = None
        self._send_lock = threading.Lock()
        self._busy = threading.Condition()
        self._in_flight = 0
        self._stop = threading.Event()
        self._stopping = False
        self._ready = threading.Event()
        self._fatal: Optional[BaseException] = None
        self._local = threading.local()
        self._pool: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._runner: Optional[threading.Thread] = None    # the thread in run()
        self._done = threading.Event()                    # run() returned

    @property
    def running(self) -> bool:
        return not self._stop.is_set() and self._fatal is None

    def __repr__(self) -> str:
        return (f"<distri.Worker {self.name} services={list(self.services)} "
                f"concurrency={self.concurrency} {'running' if self.running else 'stopped'}>")

    # -- running --------------------------------------------------------------------------

    def start(self, timeout: Optional[float] = None) -> "Worker":
        """Runs the worker on a daemon thread; returns once the server registered it."""
        link = self._room._link
        threading.Thread(target=self._run_quietly, daemon=True,
                         name=f"distri-worker-{self.name}").start()
        timeout = link.connect_timeout + link.retry_timeout if timeout is None else timeout
        ready = self._ready.wait(timeout)
        if self._fatal is not None:
            raise self._fatal
        if not ready:
            self.stop(timeout=0)
            raise ConnectionError(f"worker could not register with the server: {self.error}")
        return self

    def _run_quietly(self) -> None:
        try:
            self.run()
        except ServerError:
            pass                   # kept in _fatal, logged
        except Exception:
            log.exception("distri: worker %s stopped", self.name)

    def run(self) -> None:
        """Serves until stop() (from another thread or a handler). Blocks."""
        if self._runner is not None:
            raise Error("a worker runs once; call room.serve() again for another")
        self._runner = threading.current_thread()
        if self.concurrency > 1:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                self.concurrency, thread_name_prefix=f"distri-{self.name}")
        delay = _BACKOFF_FIRST
        try:
            while not self._stop.is_set():
                try:
                    self._session()
                except ServerError as e:
                    self._fatal = e
                    self._ready.set()
                    log.error("distri: worker %s refused by the server: %s", self.name, e)
                    raise
                except (OSError, Error) as e:
                    self.error = e
                    if self._stop.is_set():
                        break
                    log.log(logging.INFO if delay == _BACKOFF_FIRST else logging.DEBUG,
                            "distri: worker %s lost its connection (%s); reconnecting",
                            self.name, e)
                finally:
                    with self._send_lock:
                        sock, self._sock = self._sock, None
                        self.address = None
                    if sock is not None:
                        try:
                            sock.close()
                        except OSError:
                            pass
                if self._served_at and time.monotonic() - self._served_at >= _STABLE_SESSION:
                    delay = _BACKOFF_FIRST     # it served a while: the next loss starts afresh
                self._served_at = 0.0
                if self._stop.wait(min(delay * random.uniform(0.8, 1.2), _BACKOFF_MAX)):
                    break
                delay = min(delay * 2, _BACKOFF_MAX)
        finally:
            self._stop.set()
            if self._pool is not None:
                self._pool.shutdown(wait=False)
            self._room._forget(self)
            self._done.set()

    def _session(self) -> None:
        link = self._room._link
        cmds = [("CLIENT", "SETNAME", self.name),
                ("SVC.SERVE", *self.services, "CONCURRENCY", self.concurrency)]
        d = _dial(link.nodes, link.room, cmds, connect_timeout=link.connect_timeout,
                  idle_timeout=link.idle_ping())
        sock, reader, early = d.sock, d.reader, d.early
        with self._send_lock:
            self._sock = sock
            self.address = d.address
        if self._stop.is_set():
            return
        self._served_at = time.monotonic()
        self._ready.set()
        for frame in early:
            self._dispatch(frame, sock)
        ping_out = False
        chunk = b""                # requests may already wait in the reader's buffer
        while not self._stop.is_set():
            if chunk:
                reader.feed(chunk)
            while True:
                r = reader.gets()
                if r is NEED_MORE:
                    break
                if isinstance(r, PushFrame):
                    self._dispatch(r, sock)
                elif isinstance(r, ServerError):
                    log.warning("distri: worker %s: %s", self.name, r)
                else:
                    ping_out = False
            try:
                chunk = sock.recv(262144)
            except socket.timeout:
                if ping_out:
                    link.nodes.failed(d.address)
                    raise _ConnectionLost("server did not answer a PING")
                self._send(("PING",))
                ping_out = True
                chunk = b""
                continue
            if not chunk:
                if not self._stop.is_set():   # (stop() shuts the socket: not the node's fault)
                    link.nodes.failed(d.address)
                raise _ConnectionLost("connection closed by the server")

    def _dispatch(self, frame: List[Any], sock: socket.socket) -> None:
        """Handles a request that came on `sock` (the session's connection)."""
        req = _msg.request_frame(frame)
        if req is None:
            return
        with self._busy:
            self._in_flight += 1
        if self._pool is not None:
            self._pool.submit(self._handle, sock, *req)
        else:
            self._handle(sock, *req)

    def _handle(self, sock: socket.socket, req_id: int, service: str, payload: bytes) -> None:
        self._local.inside = True
        ok = False
        try:
            handler = self._handlers.get(service)
            try:
                if handler is None:
                    raise LookupError(f"no handler for service {service!r} in this worker")
                args, kwargs = _msg.decode_request(self._codec, service, payload)
                result = handler(*args, **kwargs)
                out = ("SVC.REPLY", req_id, self._codec.encode_payload(result, ("reply", service)))
                ok = True
            except Exception as e:
                log.warning("distri: worker %s: %s handler raised %s", self.name, service,
                            _msg.error_text(e), exc_info=log.isEnabledFor(logging.DEBUG))
                out = ("SVC.ERROR", req_id, _msg.error_text(e))
            with self._busy:         # counted before the caller can see the answer
                if ok:
                    self.handled += 1
                else:
                    self.failed += 1
            self._send(out, sock)
        finally:
            self._local.inside = False
            with self._busy:
                self._in_flight -= 1
                idle = self._in_flight == 0
                self._busy.notify_all()
            if idle and self._stop.is_set():
                self._shutdown()

    def _send(self, cmd: Tuple[Any, ...], session: Optional[socket.socket] = None) -> None:
        """Sends cmd on the current connection; with `session`, only if that is
        still it. A reply belongs to the connection its request came on: on a
        later one (after a reconnect, maybe to another node or a restarted one)
        its request id may name another caller's request, which would get this
        answer. The request itself is answered by the server (retried or failed)."""
        with self._send_lock:
            sock = self._sock
            if sock is None or (session is not None and sock is not session):
                return
            try:
                sock.sendall(pack(cmd))
            except OSError:
                pass           # the reading loop finds the connection dead

    def _shutdown(self) -> None:
        with self._send_lock:
            sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self, timeout: float = 5.0) -> None:
        """Stops serving: the server sends no new requests (SVC.UNSERVE), requests
        being handled finish and are answered (waiting up to timeout seconds), then
        the connection closes and serve() returns. From a handler it returns at
        once; the worker stops when the handlers in progress have answered."""
        if self._stop.is_set():
            return
        if not self._stopping:
            self._stopping = True
            self._send(("SVC.UNSERVE",))
        inside = getattr(self._local, "inside", False)
        if not inside:
            deadline = time.monotonic() + timeout
            with self._busy:
                while self._in_flight > 0:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._busy.wait(remaining)
        self._stop.set()
        with self._busy:
            idle = self._in_flight == 0
        if idle or not inside:
            self._shutdown()
        runner = self._runner
        if not inside and runner is not None and runner is not threading.current_thread():
            self._done.wait(max(1.0, timeout))

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class Function:
    """A function made callable everywhere by @room.function: calling it runs it
    here; f.call(...) runs it on one worker of the room, f.call_all(...) on every
    worker; room.serve() serves it (as the service f.name)."""

    def __init__(self, room: "Room", fn: Callable[..., Any], name: str) -> None:
        functools.update_wrapper(self, fn)
        self.name = name
        self.function = fn
        self._room = room

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def call(self, *args: Any, timeout: Optional[float] = _msg.DEFAULT_CALL_TIMEOUT,
             **kwargs: Any) -> Any:
        """Runs the function on one worker serving it; returns its result."""
        return self._room.call(self.name, *args, timeout=timeout, **kwargs)

    def call_all(self, *args: Any, timeout: Optional[float] = _msg.DEFAULT_CALL_TIMEOUT,
                 **kwargs: Any) -> Dict[str, Any]:
        """Runs the function on every worker serving it: {worker: result or exception}."""
        return self._room.call_all(self.name, *args, timeout=timeout, **kwargs)

    def __repr__(self) -> str:
        return f"<distri.Function {self.name}>"
