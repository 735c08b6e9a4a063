"""The blocking face: `distri.connect()` -> Room.

A Room owns two connections:
  - the command link (_Link): one socket, one command in flight at a time under
    a lock, so a Room may be shared by threads. It reconnects with backoff and
    re-joins the room; see _Link.call for what is retried.
  - the mirror (_MirrorWorker), made on first use of room.data / on_change /
    wait_for: its own socket and a daemon thread that reads MIRROR push frames,
    applies them to the MirrorState under the room's lock, wakes waiters and runs
    on_change callbacks. After a lost connection it reconnects with backoff and
    resumes FROM its last complete revision (distri/_mirror.py).
"""

import logging
import random
import select
import socket
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from . import _ops
from ._codec import Codec
from ._mirror import Change, MirrorState, MirrorView
from ._resp import NEED_MORE, PushFrame, first_error, handshake, new_reader, pack
from ._url import Endpoint, parse_url
from .errors import (ClosedError, ConnectionError, Error, ProtocolError, ServerError,
                     TimeoutError)

log = logging.getLogger("distri")

Key = Union[str, bytes]
_POLLIN = getattr(select, "POLLIN", 1)
_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 1.0
_MIRROR_IDLE_PING = 15.0      # seconds of silence before the mirror pings the server


def _sleep_backoff(delay: float, limit: float = _BACKOFF_MAX) -> float:
    """Sleeps about `delay` (jittered, at most `limit`); returns the next delay."""
    time.sleep(min(delay * random.uniform(0.8, 1.2), limit))
    return min(delay * 2, _BACKOFF_MAX)


class _ConnectionLost(OSError):
    pass


def _open_socket(ep: Endpoint, connect_timeout: float, timeout: Optional[float]) -> socket.socket:
    sock = socket.create_connection((ep.host, ep.port), timeout=connect_timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(timeout)
    except OSError:
        sock.close()
        raise
    return sock


def _read_reply(sock: socket.socket, reader: Any) -> Any:
    while True:
        reply = reader.gets()
        if reply is not NEED_MORE:
            return reply
        chunk = sock.recv(65536)
        if not chunk:
            raise _ConnectionLost("connection closed by the server")
        reader.feed(chunk)


# ---------------------------------------------------------------------------
# The command link
# ---------------------------------------------------------------------------

class _Link:
    """A reconnecting connection that is in one room.

    room: the room code to join, or None to create a room at the first connect
    (the code is then kept, so reconnects re-join it).
    """

    def __init__(self, ep: Endpoint, room: Optional[str], *, timeout: Optional[float],
                 connect_timeout: float, retry_timeout: float) -> None:
        self.ep = ep
        self.room = room
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retry_timeout = retry_timeout
        self.closed = False
        self._lock = threading.Lock()
        self._sock: Optional[socket.socket] = None
        self._reader: Any = None
        self._poll: Any = None

    # -- connecting ------------------------------------------------------------

    def _open(self) -> None:
        """One attempt: connect, HELLO 3, join (or create) the room. REQUIRES: lock."""
        sock = _open_socket(self.ep, self.connect_timeout, self.timeout)
        try:
            reader = new_reader()
            cmds = handshake(self.ep.password, self.room)
            sock.sendall(b"".join(pack(c) for c in cmds))
            replies = [_read_reply(sock, reader) for _ in cmds]
        except BaseException:
            sock.close()
            raise
        err = first_error(replies)
        if err is not None:
            sock.close()
            raise err
        if self.room is None:
            self.room = replies[1].decode()
        self._sock, self._reader = sock, reader
        if hasattr(select, "poll"):
            self._poll = select.poll()
            self._poll.register(sock, _POLLIN)

    def _connect(self, deadline: float) -> None:
        """Connects, retrying with backoff until `deadline`. REQUIRES: lock."""
        delay = _BACKOFF_FIRST
        while True:
            if self.closed:
                raise ClosedError("room is closed")
            try:
                self._open()
                return
            except OSError as e:
                last = e
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConnectionError(f"cannot reach distri server at "
                                      f"{self.ep.host}:{self.ep.port}: {last}")
            delay = _sleep_backoff(delay, remaining)

    def _drop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = self._reader = self._poll = None

    def _stale(self) -> bool:
        """True when the idle socket has something to read: EOF (the server went
        away) or bytes nobody asked for. Checked before each send so that a
        request is not written into a dead connection."""
        if self._poll is not None:
            return bool(self._poll.poll(0))
        return bool(select.select([self._sock], [], [], 0)[0])  # type: ignore[type-var]

    def ensure(self) -> None:
        with self._lock:
            if self._sock is None:
                self._connect(time.monotonic() + self.retry_timeout)

    # -- requests ----------------------------------------------------------------

    def call(self, args: Tuple[Any, ...], idempotent: bool = True) -> Any:
        """Sends one command and returns its reply; raises the server's error.

        Connection failures: the command is sent again on a new connection when
        it surely did not reach the server (the connection was found dead before
        sending, or the send failed), or when it is idempotent. A non-idempotent
        command whose reply was lost raises ConnectionError(maybe_applied=True).
        Reconnecting is retried with backoff for up to retry_timeout seconds.
        """
        return self.roundtrip(pack(args), 1, idempotent)[0]

    def call_many(self, commands: List[Tuple[Any, ...]], idempotent: bool) -> List[Any]:
        """Sends commands in one write and reads every reply (errors as instances)."""
        data = b"".join([pack(c) for c in commands])
        return self.roundtrip(data, len(commands), idempotent, raise_errors=False)

    def roundtrip(self, data: bytes, n: int, idempotent: bool,
                  raise_errors: bool = True) -> List[Any]:
        with self._lock:
            deadline = 0.0
            while True:
                if self.closed:
                    raise ClosedError("room is closed")
                if deadline and time.monotonic() > deadline:
                    raise ConnectionError(f"no reply from {self.ep.host}:{self.ep.port} "
                                          f"within {self.retry_timeout}s of retries")
                if self._sock is None or self._stale():
                    self._drop()
                    if not deadline:
                        deadline = time.monotonic() + self.retry_timeout
                    self._connect(deadline)
                sock = self._sock
                assert sock is not None
                try:
                    sock.sendall(data)
                except OSError:
                    self._drop()          # not delivered whole: safe to send again
                    continue
                try:
                    replies = [_read_reply(sock, self._reader) for _ in range(n)]
                    break
                except socket.timeout:
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

    def close(self) -> None:
        self.closed = True
        with self._lock:
            self._drop()


# ---------------------------------------------------------------------------
# The mirror thread
# ---------------------------------------------------------------------------

class _MirrorWorker:
    """Keeps room.data current: one connection, one daemon thread."""

    def __init__(self, room: "Room") -> None:
        self._room = room
        self._stop = False
        self._sock: Optional[socket.socket] = None
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
                if self._session():
                    delay = _BACKOFF_FIRST
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
            delay = _sleep_backoff(delay)

    def _session(self) -> bool:
        """One connection's life; returns whether it reached `ready` (raises on loss)."""
        room, state = self._room, self._room._state
        link = room._link
        sock = _open_socket(link.ep, link.connect_timeout, _MIRROR_IDLE_PING)
        self._sock = sock
        if self._stop:
            return False
        reader = new_reader()
        with room._cond:
            mirror_args = state.mirror_args()
        cmds = handshake(link.ep.password, room.code) + [mirror_args]
        sock.sendall(b"".join(pack(c) for c in cmds))
        early: List[Any] = []         # push frames that came before the MIRROR reply
        replies: List[Any] = []
        while len(replies) < len(cmds):
            r = _read_reply(sock, reader)
            (early if isinstance(r, PushFrame) else replies).append(r)
        err = first_error(replies)
        if err is not None:
            raise err
        changes: List[Change] = []
        with room._cond:
            state.started(replies[-1])
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
                    elif isinstance(r, ServerError):
                        raise r
                    else:
                        ping_out = False
                        if isinstance(r, bytes) and r.isdigit():
                            confirm_out = False
                            state.confirmed(int(r))
                reached_ready = reached_ready or state.ready
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
                    raise _ConnectionLost("server did not answer a PING")
                sock.sendall(pack(("PING",)))
                ping_out = True
                chunk = b""
                continue
            if not chunk:
                raise _ConnectionLost("connection closed by the server")
        return reached_ready


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

    # -- identity ------------------------------------------------------------------

    @property
    def code(self) -> str:
        """The room's code (give it to other processes to join the room)."""
        return self._link.room or ""

    @property
    def url(self) -> str:
        """distri://host:port/CODE, ready to pass to distri.connect elsewhere."""
        return self._link.ep.url(self.code)

    def __repr__(self) -> str:
        return f"<distri.Room {self.url}>"

    # -- the dictionary ----------------------------------------------------------------

    def _run(self, op: _ops.Op) -> Any:
        return op.post(self._link.call(op.args, op.idempotent))

    def __getitem__(self, key: Key) -> Any:
        raw = self._link.call(("GET", key))
        if raw is None:
            raise KeyError(key)
        return self._codec.decode(raw)

    def __setitem__(self, key: Key, value: Any) -> None:
        self._link.call(("SET", key, self._codec.encode(value)))

    def __delitem__(self, key: Key) -> None:
        self._run(_ops.delitem(key))

    def __contains__(self, key: Key) -> bool:
        return self._run(_ops.exists(key))

    def __len__(self) -> int:
        return self._run(_ops.dbsize())

    def get(self, key: Key, default: Any = None) -> Any:
        """The value of key, or default when it does not exist."""
        raw = self._link.call(("GET", key))
        return default if raw is None else self._codec.decode(raw)

    def set(self, key: Key, value: Any, ttl: Optional[float] = None) -> None:
        """Stores value; with ttl (seconds) the key expires after that time."""
        if ttl is None:
            self._link.call(("SET", key, self._codec.encode(value)))
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
        return self._link.call(("GET", key))

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

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Closes both connections and stops the mirror. room.data keeps its last state."""
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

def connect(url: Optional[str] = None, *, room_key: Optional[Union[str, bytes]] = None,
            pickle: bool = False, timeout: Optional[float] = 30.0,
            connect_timeout: float = 5.0, retry_timeout: float = 10.0,
            mirror: bool = False, quiet: bool = False) -> Room:
    """Connects to a room: distri.connect("distri://host:7379/CODE").

    With no room in the URL a new room is created; its code is printed to stderr
    (unless quiet) and is room.code. No URL: $DISTRI_URL, else 127.0.0.1:7379.

    room_key, pickle: pickle=True stores values that are not JSON as pickles
        signed with HMAC-SHA256(room_key), verified before unpickling.
    timeout: seconds to wait for a reply (None: forever).
    connect_timeout: seconds for one TCP connect attempt.
    retry_timeout: while the server is unreachable, calls retry with backoff for
        this long, then raise distri.ConnectionError (0: fail fast).
    mirror: start room.data's mirror now (it starts on first use otherwise).
    """
    ep = parse_url(url)
    codec = Codec(room_key, pickle)
    link = _Link(ep, ep.room, timeout=timeout, connect_timeout=connect_timeout,
                 retry_timeout=retry_timeout)
    link.ensure()
    if ep.room is None and not quiet:
        print(f"distri: created room {link.room}  (join: distri.connect({ep.url(link.room)!r}))",
              file=sys.stderr)
    room = Room(link, codec, mirror_timeout=max(retry_timeout, 10.0))
    if mirror:
        room.start_mirror()
    return room


def stats(url: Optional[str] = None, *, timeout: float = 10.0) -> Dict[str, Any]:
    """Site-wide statistics of the server at url (STATS): version, rooms, clients,
    mirrors, keys, memory, rates, revision, ... The URL's room is ignored."""
    ep = parse_url(url)
    link = _Link(ep, "default", timeout=timeout, connect_timeout=min(timeout, 5.0),
                 retry_timeout=0.0)
    try:
        return _ops.server_stats().post(link.call(("STATS",)))
    finally:
        link.close()
