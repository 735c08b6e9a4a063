"""The blocking face: `distri.connect()` -> Room.

A Room owns two connections, and more for messaging:
  - the command link (_Link, in distri/_link.py): one socket, one command in
    flight at a time under a lock, so a Room may be shared by threads. It
    reconnects with backoff and re-joins the room; see _Link.call for what is
    sent again.
  - the mirror (_MirrorWorker), made on first use of room.data / on_change /
    wait_for: its own socket and a daemon thread that reads MIRROR push frames,
    applies them to the MirrorState under the room's lock, wakes waiters and runs
    on_change callbacks. After a lost connection it reconnects with backoff and
    resumes FROM its last complete revision (distri/_mirror.py).
  - calls (_CallPool): CALL holds its connection until answered, so each call
    in flight has its own connection, kept idle for the next one.
  - each Subscription and each Worker: a connection of its own, reconnecting
    and subscribing / serving again after a loss (distri/_msg.py has the
    formats).

Every connection may go to any node of the room's NodeSet (distri/_nodes.py):
in a cluster a connection whose node dies, stays silent or cannot serve dials
the next one (docs/python.md, "Clusters and failover").
"""

import collections
import concurrent.futures
import functools
import logging
import random
import socket
import sys
import threading
import time
import weakref
from typing import (Any, Callable, Deque, Dict, FrozenSet, Iterable, List, Mapping, Optional,
                    Sequence, Tuple, Union)

from . import _msg, _ops
from ._codec import Codec
from ._mirror import Change, MirrorState, MirrorView
from ._link import (_BACKOFF_FIRST, _BACKOFF_MAX, _STABLE_SESSION, _ConnectionLost, _dial,
                    _Link, _mirror_revision, _sleep_backoff)
from ._nodes import NodeSet
from ._resp import NEED_MORE, PushFrame, first_error, pack
from ._url import Address, format_address, parse_targets
from .errors import ClosedError, ConnectionError, Error, ServerError, TimeoutError, TryAgain

log = logging.getLogger("distri")

Key = Union[str, bytes]
# ---------------------------------------------------------------------------
# The mirror thread
# ---------------------------------------------------------------------------

class _MirrorWorker:
    """Keeps room.data current: one connection, one daemon thread."""

    def __init__(self, room: "Room") -> None:
        self._room = room
        self._stop = False
        self._sock: Optional[socket.socket] = None
        self.address: Optional[Address] = None        # the node mirrored from
        self.reached_at = 0.0                         # when this session got `ready`
        self.error: Optional[BaseException] = None    # the last failure
        self.fatal: Optional[BaseException] = None    # a server error that stopped it
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"distri-mirror-{room.code[:8]}")

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop = True
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout=5)

    def _run(self) -> None:
        room = self._room
        delay = _BACKOFF_FIRST
        while not self._stop:
            try:
                self._session()
            except ServerError as e:
                self.fatal = self.error = e
                log.error("distri: mirror of room %s stopped: %s", room.code, e)
            except (OSError, Error) as e:
                self.error = e
                if not self._stop:
                    log.log(logging.INFO if delay == _BACKOFF_FIRST else logging.DEBUG,
                            "distri: mirror of room %s lost its connection (%s); "
                            "reconnecting", room.code, e)
            finally:
                self.address = None
                if self._sock is not None:
                    try:
                        self._sock.close()
                    except OSError:
                        pass
                    self._sock = None
                with room._cond:
                    room._state.disconnected()
                    room._cond.notify_all()
            if self._stop or self.fatal is not None:
                return
            # A session that worked a while: the next loss starts afresh. One that
            # ended soon after `ready` (a node in a crash loop, or cutting us off
            # after the snapshot) keeps backing off.
            if self.reached_at and time.monotonic() - self.reached_at >= _STABLE_SESSION:
                delay = _BACKOFF_FIRST
            self.reached_at = 0.0
            delay = _sleep_backoff(delay)

    def _session(self) -> bool:
        """One connection's life; returns whether it reached `ready` (raises on loss)."""
        room, state = self._room, self._room._state
        link = room._link
        with room._cond:
            mirror_args = state.mirror_args()
            resume_from = state.resume_point()
        # early: push frames that came before the MIRROR reply
        d = _dial(link.nodes, room.code, [mirror_args], connect_timeout=link.connect_timeout,
                  idle_timeout=link.idle_ping())
        sock, reader, early = d.sock, d.reader, d.early
        self._sock = sock
        self.address = d.address
        if self._stop:
            return False
        reply = d.replies[-1]
        if resume_from is not None and _mirror_revision(reply) < resume_from:
            # A node that has not applied what this copy already shows (the barrier
            # makes that rare): a snapshot from it would go back in time.
            link.nodes.failed(d.address)
            raise _ConnectionLost(f"{format_address(*d.address)} is behind revision "
                                  f"{resume_from}")
        changes: List[Change] = []
        with room._cond:
            state.started(reply)
            for frame in early:
                state.apply(frame, changes)
        reached_ready = False
        ping_out = False        # an idle-check PING is unanswered
        confirm_out = False     # a PING <revision> is unanswered (see _mirror.py, invariant 2)
        chunk = b""
        while not self._stop:
            if chunk:
                reader.feed(chunk)
            with room._cond:
                while True:
                    r = reader.gets()
                    if r is NEED_MORE:
                        break
                    if isinstance(r, PushFrame):
                        state.apply(r, changes)
                    elif isinstance(r, TryAgain):      # the idle probe: cut off
                        link.nodes.failed(d.address)
                        raise _ConnectionLost(f"node cannot serve now: {r}")
                    elif isinstance(r, ServerError):
                        raise r
                    else:
                        ping_out = False
                        if isinstance(r, bytes) and r.isdigit():
                            confirm_out = False
                            state.confirmed(int(r))
                reached_ready = reached_ready or state.ready
                if reached_ready and not self.reached_at:
                    self.reached_at = time.monotonic()
                unconfirmed = None if confirm_out else state.unconfirmed()
                room._cond.notify_all()
            if unconfirmed is not None:
                sock.sendall(pack(("PING", unconfirmed)))
                confirm_out = True
            room._dispatch(changes)
            changes = []
            try:
                chunk = sock.recv(262144)
            except socket.timeout:
                if ping_out:
                    link.nodes.failed(d.address)
                    raise _ConnectionLost("server did not answer a PING")
                sock.sendall(pack(link.idle_probe()))
                ping_out = True
                chunk = b""
                continue
            if not chunk:
                if not self._stop:       # (stop() shuts the socket: not the node's fault)
                    link.nodes.failed(d.address)
                raise _ConnectionLost("connection closed by the server")
        return reached_ready


# ---------------------------------------------------------------------------
# Messaging: calls, subscriptions, workers
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# Room
# ---------------------------------------------------------------------------

class Room:
    """A room on a distri server: a shared dictionary plus its live mirror.

    Made by distri.connect(). Thread-safe. Use as a context manager or call
    close() to release the connections (they are daemon-owned and also go away
    with the process).
    """

    def __init__(self, link: _Link, codec: Codec, *, mirror_timeout: float) -> None:
        self._link = link
        self._codec = codec
        self._mirror_timeout = mirror_timeout
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._state = MirrorState(codec)
        self._view = MirrorView(self._state, self._lock)
        self._mirror: Optional[_MirrorWorker] = None
        self._callbacks: List[Tuple[Optional[str], Callable[[Change], Any]]] = []
        self._handlers: Dict[str, Callable[..., Any]] = {}
        self._subs: "weakref.WeakSet[Subscription]" = weakref.WeakSet()
        self._workers: List[Worker] = []
        self._calls = _CallPool(link)

    # -- identity ------------------------------------------------------------------

    @property
    def code(self) -> str:
        """The room's code (give it to other processes to join the room)."""
        return self._link.room or ""

    @property
    def url(self) -> str:
        """distri://host:port/CODE, ready to pass to distri.connect elsewhere (in a
        cluster every known node: distri://h1:p1,h2:p2,h3:p3/CODE)."""
        addrs = ",".join(format_address(h, p) for h, p in self._link.nodes.order())
        return f"distri://{addrs}/{self.code}"

    @property
    def address(self) -> Optional[str]:
        """host:port of the node the room's commands go to now (None between
        connections). The mirror, subscriptions and workers each have their own."""
        a = self._link.address
        return None if a is None else format_address(*a)

    @property
    def nodes(self) -> List[str]:
        """Every node the client knows (the URL's, plus those learnt from the
        cluster), as host:port, the one it prefers first."""
        return [format_address(h, p) for h, p in self._link.nodes.order()]

    def __repr__(self) -> str:
        return f"<distri.Room {self.url}>"

    # -- the dictionary ----------------------------------------------------------------

    def _run(self, op: _ops.Op) -> Any:
        return op.post(self._link.call(op.args, op.idempotent))

    def __getitem__(self, key: Key) -> Any:
        raw = self._link.call(("GET", key), True)
        if raw is None:
            raise KeyError(key)
        return self._codec.decode(raw, key)

    def __setitem__(self, key: Key, value: Any) -> None:
        self._link.call(("SET", key, self._codec.encode(value, key)), False)

    def __delitem__(self, key: Key) -> None:
        self._run(_ops.delitem(key))

    def __contains__(self, key: Key) -> bool:
        return self._run(_ops.exists(key))

    def __len__(self) -> int:
        return self._run(_ops.dbsize())

    def get(self, key: Key, default: Any = None) -> Any:
        """The value of key, or default when it does not exist."""
        raw = self._link.call(("GET", key), True)
        return default if raw is None else self._codec.decode(raw, key)

    def set(self, key: Key, value: Any, ttl: Optional[float] = None) -> None:
        """Stores value; with ttl (seconds) the key expires after that time."""
        if ttl is None:
            self._link.call(("SET", key, self._codec.encode(value, key)), False)
        else:
            self._run(_ops.set_(self._codec, key, value, ttl))

    def incr(self, key: Key, n: Union[int, float] = 1) -> Union[int, float]:
        """Atomically adds n (default 1) to the number at key (missing = 0); returns
        the new value. An int n keeps integers; a float n makes a float."""
        if type(n) is int:
            return self._link.call(("INCRBY", key, n), False)
        return self._run(_ops.incr(key, n))

    def cas(self, key: Key, expected: Any, new: Any) -> bool:
        """Atomically sets key to new if it currently holds expected (None: if the
        key does not exist). Returns whether it did."""
        return self._run(_ops.cas(self._codec, key, expected, new))

    def delete(self, *keys: Key) -> int:
        """Deletes keys; returns how many existed."""
        return self._run(_ops.delete(*keys))

    def keys(self, prefix: Key = "") -> List[str]:
        """The keys that start with prefix, sorted (asks the server)."""
        return self._run(_ops.keys(prefix))

    def expire(self, key: Key, seconds: Optional[float]) -> bool:
        """Makes key expire in seconds (None: never). False if the key does not exist."""
        return self._run(_ops.expire(key, seconds))

    def ttl(self, key: Key) -> Optional[float]:
        """Seconds until key expires, None if it never does; KeyError if missing."""
        return self._run(_ops.ttl(key))

    def get_many(self, keys: Iterable[Key], default: Any = None) -> List[Any]:
        """The values of keys, in one round trip (default for missing ones)."""
        return self._run(_ops.get_many(self._codec, keys, default))

    def update(self, items: Mapping[Key, Any]) -> None:
        """Stores several keys atomically, in one round trip."""
        self._run(_ops.update(self._codec, items))

    def clear(self) -> None:
        """Deletes every key of the room."""
        self._run(_ops.clear())

    def get_raw(self, key: Key) -> Optional[bytes]:
        """The stored bytes of key, undecoded (None if missing)."""
        return self._link.call(("GET", key), True)

    def set_raw(self, key: Key, value: bytes, ttl: Optional[float] = None) -> None:
        """Stores bytes exactly as given (no tag): for values other tools read."""
        self._run(_ops.set_raw(key, value, ttl))

    def stats(self) -> Dict[str, Any]:
        """Room statistics (ROOM.STATS): keys, clients, mirrors, reads, writes, rates..."""
        return self._run(_ops.room_stats())

    def info(self) -> Dict[str, Any]:
        """ROOM.INFO: code, name, keys, memory_bytes, created_at_ms, revision."""
        return self._run(_ops.room_info())

    def ping(self) -> None:
        self._run(_ops.ping())

    def execute(self, *args: Any) -> Any:
        """Runs any server command in this room; the reply is returned as sent."""
        return self._run(_ops.command(*args))

    def pipeline(self) -> "Pipeline":
        """Batches calls into one round trip: `with room.pipeline() as p: ...`."""
        return Pipeline(self)

    # -- the mirror --------------------------------------------------------------------

    def _ensure_mirror(self, timeout: Optional[float] = None) -> None:
        """Starts the mirror on first use and waits for its first complete copy."""
        if self._state.synced:
            return
        if self._link.closed:
            raise ClosedError("room is closed")
        with self._cond:
            if self._mirror is None:
                self._link.ensure()   # the room code must be known
                self._mirror = _MirrorWorker(self)
                self._mirror.start()
            timeout = self._mirror_timeout if timeout is None else timeout
            deadline = time.monotonic() + timeout
            while not self._state.synced:
                if self._mirror.fatal is not None:
                    raise self._mirror.fatal
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    err = self._mirror.error
                    if isinstance(err, (OSError, ConnectionError)):
                        raise ConnectionError(f"mirror could not connect: {err}")
                    raise TimeoutError(f"mirror not loaded after {timeout}s")
                self._cond.wait(remaining)

    @property
    def data(self) -> MirrorView:
        """The live local copy of the room: a read-only Mapping, kept current by the
        server. The first use starts the mirror and waits for the room to load."""
        self._ensure_mirror()
        return self._view

    def start_mirror(self, timeout: Optional[float] = None) -> MirrorView:
        """Starts the mirror now (otherwise it starts on first use of data)."""
        self._ensure_mirror(timeout)
        return self._view

    def on_change(self, callback: Callable[[Change], Any],
                  prefix: Optional[str] = None) -> Callable[[], None]:
        """Calls callback(change) for every change to a key (under prefix) seen by
        the mirror, on the mirror's thread, in revision order. Returns a function
        that unsubscribes. Exceptions from callbacks are logged, not raised."""
        entry = (prefix, callback)
        with self._lock:
            self._callbacks = self._callbacks + [entry]

        def unsubscribe() -> None:
            with self._lock:
                self._callbacks = [e for e in self._callbacks if e is not entry]
        self._ensure_mirror()
        return unsubscribe

    def _dispatch(self, changes: List[Change]) -> None:
        if not changes:
            return
        callbacks = self._callbacks
        if not callbacks:
            return
        for ch in changes:
            for prefix, cb in callbacks:
                if prefix is None or ch.key.startswith(prefix):
                    try:
                        cb(ch)
                    except Exception:
                        log.exception("distri: on_change callback %r failed", cb)

    def wait_until(self, predicate: Callable[[MirrorView], Any],
                   timeout: Optional[float] = None) -> Any:
        """Waits until predicate(room.data) is truthy and returns its value; raises
        distri.TimeoutError after timeout seconds (None: wait forever)."""
        mirror = self._mirror
        if mirror is not None and threading.current_thread() is mirror.thread:
            raise Error("wait_for/wait_until called from an on_change callback would wait "
                        "for its own thread; read room.data instead")
        self._ensure_mirror()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate(self._view)
                if result:
                    return result
                if deadline is None:
                    self._cond.wait()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"condition not met within {timeout}s")
                self._cond.wait(remaining)

    def wait_for(self, key: str, predicate: Optional[Callable[[Any], Any]] = None,
                 timeout: Optional[float] = None) -> Any:
        """Waits until key exists (and predicate(value) is true) in the mirror; returns
        the value. Raises distri.TimeoutError after timeout seconds."""
        found: List[Any] = []

        def check(data: MirrorView) -> bool:
            if key not in data:
                return False
            try:
                value = data[key]
            except KeyError:
                return False
            if predicate is None or predicate(value):
                found.append(value)
                return True
            return False
        self.wait_until(check, timeout)
        return found[0]

    # -- messaging -----------------------------------------------------------------------

    def publish(self, topic: str, message: Any) -> int:
        """Sends message to the subscribers of topic (in this room); returns how many
        received it. Messages are encoded like values (JSON, bytes, signed pickle
        when enabled); nothing is stored."""
        payload = self._codec.encode_payload(message, ("message", topic))
        return self._link.call(("PUBLISH", topic, payload), False)

    def subscribe(self, *topics: str, patterns: Iterable[str] = (),
                  timeout: Optional[float] = None) -> Subscription:
        """Subscribes to topics and glob patterns (`patterns=["jobs.*"]`); returns a
        Subscription, an iterator of distri.Message, confirmed by the server."""
        if self._link.closed:
            raise ClosedError("room is closed")
        self._link.ensure()
        sub = Subscription(self, topics, patterns)
        with self._lock:
            self._subs.add(sub)
        try:
            sub._start(self._link.connect_timeout + self._link.retry_timeout
                       if timeout is None else timeout)
        except BaseException:
            sub.close()
            raise
        return sub

    def service(self, name: Any = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: @room.service("resize") registers the function as the handler
        of the service "resize" (bare @room.service uses the function's name).
        room.serve() serves it. The function is returned unchanged."""
        if callable(name):
            fn = name
            self._handlers[fn.__name__] = fn
            return fn

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self._handlers[name or fn.__name__] = fn
            return fn
        return register

    def function(self, fn: Optional[Callable[..., Any]] = None, *,
                 name: Optional[str] = None) -> Any:
        """Decorator: makes a function callable everywhere (a distri.Function).
        f(...) runs here, f.call(...) on one worker, f.call_all(...) on all; the
        service is named module.qualname (name=... to choose)."""
        def wrap(f: Callable[..., Any]) -> Function:
            func = Function(self, f, name or _msg.function_name(f))
            self._handlers[func.name] = f
            return func
        return wrap if fn is None else wrap(fn)

    def serve(self, *services: str, concurrency: int = 1, background: bool = False,
              name: Optional[str] = None) -> Worker:
        """Serves the registered services (or the ones named) and functions.

        Blocks until the worker is stopped (worker.stop(), room.close()) or the
        process is interrupted; background=True runs it on a daemon thread and
        returns the Worker once the server has registered it. concurrency: how many
        requests are handled at once (on that many threads). name: the worker's
        name in call_all results (default host-pid)."""
        handlers = _msg.check_handlers(self._handlers, services)
        if self._link.closed:
            raise ClosedError("room is closed")
        self._link.ensure()
        worker = Worker(self, handlers, concurrency, name)
        with self._lock:
            self._workers.append(worker)
        if background:
            return worker.start()
        worker.run()
        return worker

    def call(self, service: str, *args: Any, timeout: Optional[float] = _msg.DEFAULT_CALL_TIMEOUT,
             **kwargs: Any) -> Any:
        """Runs service(*args, **kwargs) on one worker (the least busy) and returns its
        result. Raises distri.ServiceError (the worker's handler raised; its text),
        distri.CallTimeout (no answer within timeout seconds; None: no limit) or
        distri.NoWorker (no worker appeared within the timeout). `timeout` is this
        call's own keyword: pass a parameter of that name positionally."""
        cmd = _msg.call_args(self._codec, service, args, kwargs, timeout)
        reply = self._calls.run(cmd, _msg.reply_wait(timeout))
        return self._codec.decode_payload(reply, ("reply", service))

    def call_all(self, service: str, *args: Any,
                 timeout: Optional[float] = _msg.DEFAULT_CALL_TIMEOUT,
                 **kwargs: Any) -> Dict[str, Any]:
        """Runs service(*args, **kwargs) on every worker registered now; returns
        {worker name: result}, where a worker that failed maps to its exception
        (distri.ServiceError, distri.CallTimeout), not raised. {} with no worker."""
        cmd = _msg.call_args(self._codec, service, args, kwargs, timeout, every=True)
        reply = self._calls.run(cmd, _msg.reply_wait(timeout))
        return _msg.call_all_result(self._codec, service, reply)

    def subscribers(self, topic: str) -> int:
        """How many subscriptions of the room receive messages published to topic
        (by name; pattern subscriptions are not counted)."""
        return self._run(_ops.subscribers(topic))

    def services(self) -> Dict[str, Dict[str, Any]]:
        """The room's services that have workers: {name: {workers, in_flight, waiting}}."""
        return self._run(_ops.services())

    def service_stats(self, name: str) -> Dict[str, Any]:
        """SVC.STATS: workers (names), in_flight, waiting, calls, errors, timeouts,
        dropped_replies, p50_ms, p99_ms. distri.NotFound for a name never used."""
        return self._run(_ops.service_stats(name))

    def _forget(self, thing: Any) -> None:
        with self._lock:
            self._subs.discard(thing)
            if thing in self._workers:
                self._workers.remove(thing)

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Closes the room's connections: stops the mirror, its workers (each finishing
        the requests in progress, up to 5 s) and its subscriptions. room.data keeps
        its last state."""
        with self._lock:
            workers, subs = list(self._workers), list(self._subs)
        for w in workers:
            w.stop()
        for sub in subs:
            sub.close()
        self._calls.close()
        self._link.close()
        mirror = self._mirror
        if mirror is not None:
            mirror.stop()

    def __enter__(self) -> "Room":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Pipeline:
    """Queues room calls and sends them in one round trip.

        with room.pipeline() as p:
            for i in range(100):
                p.set(f"k{i}", i)
            p.incr("n")
        p.results      # [None, ..., None, 1]

    execute() sends the queue and returns the results; leaving the with block
    calls it. An error reply raises its exception after every reply was read.
    """

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

    def execute(self) -> List[Any]:
        ops, self._ops = self._ops, []
        if not ops:
            self.results = []
            return self.results
        idempotent = all(op.idempotent for op in ops)
        replies = self._room._link.call_many([op.args for op in ops], idempotent)
        err = first_error(replies)
        if err is not None:
            raise err
        self.results = [op.post(r) for op, r in zip(ops, replies)]
        return self.results

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.execute()


# ---------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------

URL = Union[None, str, Sequence[str]]


def connect(url: URL = None, *, room_key: Optional[Union[str, bytes]] = None,
            pickle: bool = False, timeout: Optional[float] = 30.0,
            connect_timeout: float = 5.0, retry_timeout: float = 10.0,
            node_timeout: Optional[float] = 5.0,
            mirror: bool = False, quiet: bool = False) -> Room:
    """Connects to a room: distri.connect("distri://host:7379/CODE").

    With no room in the URL a new room is created; its code is printed to stderr
    (unless quiet) and is room.code. No URL: $DISTRI_URL, else 127.0.0.1:7379.
    Nodes of a cluster: "distri://h1:7379,h2:7479/CODE" or a list of URLs /
    host:port strings; one is enough, the client learns the others (CLUSTER.NODES)
    and moves to another node when its node dies (docs/python.md, "Clusters").

    room_key, pickle: pickle=True stores values that are not JSON as pickles
        signed with HMAC-SHA256(room_key), verified before unpickling.
    timeout: seconds to wait for a reply (None: forever).
    connect_timeout: seconds for one TCP connect attempt (and its handshake).
    retry_timeout: while no node can be reached, calls retry with backoff for
        this long, then raise distri.ConnectionError (0: fail fast).
    node_timeout: in a cluster, a node silent this long while a reply is due is
        taken as gone: a read is sent to another node, a write raises
        distri.UnknownOutcome; idle connections ping after half of it. None: no
        such check (replies wait `timeout`). Unused on a single node.
    mirror: start room.data's mirror now (it starts on first use otherwise).
    """
    targets = parse_targets(url)
    if node_timeout is not None and node_timeout <= 0:
        raise ValueError(f"node_timeout must be positive or None, got {node_timeout!r}")
    Codec(room_key, pickle)                       # bad pickle options fail before connecting
    link = _Link(NodeSet(targets), targets.room, timeout=timeout,
                 connect_timeout=connect_timeout, retry_timeout=retry_timeout,
                 node_timeout=node_timeout, learn=True)
    link.ensure()
    codec = Codec(room_key, pickle, room=link.room or "")   # pickles are bound to the room
    room = Room(link, codec, mirror_timeout=max(retry_timeout, 10.0))
    if targets.room is None and not quiet:
        print(f"distri: created room {link.room}  (join: distri.connect({room.url!r}))",
              file=sys.stderr)
    if mirror:
        room.start_mirror()
    return room


def stats(url: URL = None, *, timeout: float = 10.0) -> Dict[str, Any]:
    """Statistics of the server at url (STATS): version, rooms, clients, mirrors,
    keys, memory, rates, revision, ... The URL's room is ignored; of several
    addresses the first that answers is asked (in a cluster: that node's view)."""
    targets = parse_targets(url)
    link = _Link(NodeSet(targets), "default", timeout=timeout,
                 connect_timeout=min(timeout, 5.0), retry_timeout=0.0)
    try:
        return _ops.server_stats().post(link.call(("STATS",), True))
    finally:
        link.close()
