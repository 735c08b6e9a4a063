"""The blocking face: `distri.connect()` -> Room, its Pipeline, and stats().

A Room owns two connections, and more for messaging:
  - the command link (_Link, in distri/_link.py): one socket, one command in
    flight at a time under a lock, so a Room may be shared by threads. It
    reconnects with backoff and re-joins the room; see _Link.call for what is
    sent again.
  - the mirror (_MirrorWorker, in distri/_sync_mirror.py), made on first use of
    room.data / on_change / wait_for: its own socket and a daemon thread that
    reads MIRROR push frames, applies them to the MirrorState under the room's
    lock, wakes waiters and runs on_change callbacks. After a lost connection it
    reconnects with backoff and resumes FROM its last complete revision
    (distri/_mirror.py).
  - calls (_CallPool, in distri/_sync_messaging.py): CALL holds its connection
    until answered, so each call in flight has its own connection, kept idle for
    the next one.
  - each Subscription and each Worker (distri/_sync_messaging.py): a connection
    of its own, reconnecting and subscribing / serving again after a loss
    (distri/_msg.py has the formats).

Every connection may go to any node of the room's NodeSet (distri/_nodes.py):
in a cluster a connection whose node dies, stays silent or cannot serve dials
the next one (docs/python.md, "Clusters and failover").
"""

import logging
import sys
import threading
import time
import weakref
from typing import (Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple,
                    Union)

from . import _msg, _ops
from ._codec import Codec
from ._mirror import Change, MirrorState, MirrorView
from ._link import _Link
from ._nodes import NodeSet
from ._resp import first_error
from ._sync_messaging import Function, Subscription, Worker, _CallPool
from ._sync_mirror import _MirrorWorker
from ._url import format_address, parse_targets
from .errors import ClosedError, ConnectionError, Error, TimeoutError

log = logging.getLogger("distri")

Key = Union[str, bytes]


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
