"""Connections of the blocking face (distri): dialing a node of the set,
opening the connection (distri._nodes.Opening) and the room's command link.

_dial() opens one connection on the first node that takes it; _Link is the
room's reconnecting command connection and decides what is sent again after a
failure (docs/python.md, "Clusters and failover"). The mirror thread
(distri._sync_mirror), subscriptions and workers (distri._sync_messaging) dial
with _dial() too. A _Link is shared by threads (one command in flight at a
time, under its lock).
"""

import random
import select
import socket
import threading
import time
from typing import Any, List, NamedTuple, Optional, Tuple

from ._nodes import BARRIER, NodeSet, Opening, tryagain_moves
from ._resp import NEED_MORE, PushFrame, new_reader, pack
from ._url import Address, Endpoint, format_address
from .errors import (AuthError, ClosedError, ConnectionError, ProtocolError,
                     ProtocolVersionError, ServerError, TimeoutError, TryAgain, UnknownOutcome)

_POLLIN = getattr(select, "POLLIN", 1)
_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 1.0
# A mirror or worker session that lasted this long (seconds) worked: the backoff
# starts afresh after it. One that ends sooner (a node in a crash loop, or that
# cuts the connection after the snapshot) keeps backing off.
_STABLE_SESSION = 3.0
_MIRROR_IDLE_PING = 15.0      # seconds of silence before the mirror pings the server


def _mirror_revision(reply: Any) -> int:
    """The `revision` of a MIRROR reply map (0 when absent)."""
    try:
        return int(reply.get(b"revision", 0)) if isinstance(reply, dict) else 0
    except (TypeError, ValueError):
        return 0


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


def _run_opening(sock: socket.socket, reader: Any, opening: Opening) -> List[Any]:
    """Sends the opening's rounds and reads one reply per command; push frames that
    arrive in between are kept aside. Raises the first error reply.
    -> the early push frames (the replies are opening.replies)"""
    early: List[Any] = []
    while True:
        cmds = opening.next_round()
        if cmds is None:
            return early
        sock.sendall(b"".join(pack(c) for c in cmds))
        replies: List[Any] = []
        while len(replies) < len(cmds):
            r = _read_reply(sock, reader)
            (early if isinstance(r, PushFrame) else replies).append(r)
        opening.take(replies)


class _Dialed(NamedTuple):
    sock: socket.socket
    reader: Any
    address: Address
    replies: List[Any]       # of ROOM.JOIN / ROOM.NEW and the extra commands
    early: List[Any]         # push frames that came with them


def _dial(nodes: NodeSet, room: Optional[str], extra: List[Tuple[Any, ...]], *,
          connect_timeout: float, idle_timeout: Optional[float], learn: bool = False) -> _Dialed:
    """Opens a connection in `room` to the first node that takes it, in the node
    set's order (the preferred node first): connect, the opening rounds (Opening),
    then the socket's timeout is idle_timeout. A node that refuses, stays silent
    for connect_timeout, answers TRYAGAIN (cut off from its cluster) or another
    error (NOTFOUND, a removed node's ERR) is marked failed and the next one is
    tried; each node once. Raises an OSError (_ConnectionLost for TRYAGAIN),
    which callers retry, unless every node answered with an error: then the last
    one, which they do not (a node that refuses while the others are unreachable
    may be a wiped node not yet back in its cluster). Auth and protocol errors are
    raised at once (every node would say the same)."""
    last: Optional[BaseException] = None
    refused: Optional[str] = None     # the last node that answered with an error
    unreachable = False               # some node could not be reached or could not serve
    for address in nodes.order():
        ep = nodes.endpoint(address, room)
        try:
            sock = _open_socket(ep, connect_timeout, connect_timeout)
        except OSError as e:
            nodes.failed(address)
            last, unreachable = e, True
            continue
        try:
            reader = new_reader()
            opening = Opening(nodes, room, extra, learn)
            early = _run_opening(sock, reader, opening)
            sock.settimeout(idle_timeout)
        except TryAgain as e:
            sock.close()
            nodes.failed(address)
            last = _ConnectionLost(f"{format_address(*address)} cannot serve now: {e}")
            unreachable = True
            continue
        except OSError as e:
            sock.close()
            nodes.failed(address)
            last, unreachable = e, True
            continue
        except (AuthError, ProtocolVersionError):
            sock.close()
            raise                  # the same answer from every node
        except ServerError as e:
            sock.close()           # this node refuses (e.g. removed from its cluster):
            nodes.failed(address)  # another may not; raised if every node refused
            last = e
            refused = format_address(*address)
            continue
        except BaseException:
            sock.close()
            raise
        nodes.reached(address)
        return _Dialed(sock, reader, address, opening.replies, early)
    assert last is not None
    if isinstance(last, ServerError) and unreachable:
        # Only some nodes refused, the others could not be reached (a wiped node
        # not yet back in its cluster answers NOTFOUND while the rest restart):
        # not final, the caller retries.
        raise _ConnectionLost(f"{refused} refused ({last}); the other nodes could "
                              f"not be reached")
    raise last


# ---------------------------------------------------------------------------
# The command link
# ---------------------------------------------------------------------------

class _Link:
    """A reconnecting connection that is in one room, on any node of `nodes`.

    room: the room code to join, or None to create a room at the first connect
    (the code is then kept, so reconnects re-join it). learn: ask CLUSTER.NODES
    at each connect (the room's main link does; call connections do not).
    node_timeout: in a cluster, how long a node may stay silent while a reply is
    due before it is taken as gone (None: wait `timeout`, as on a single node).
    """

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
        self.address: Optional[Address] = None   # the node connected to, None when not
        self._lock = threading.Lock()
        self._sock: Optional[socket.socket] = None
        self._sock_wait: Optional[float] = None   # the socket's timeout now
        self._connected_at = 0.0
        self._reader: Any = None
        self._poll: Any = None

    @property
    def ep(self) -> Endpoint:
        """The node connected to (else the preferred one) with the password and room."""
        return self.nodes.endpoint(self.address or self.nodes.preferred, self.room)

    def idle_probe(self) -> Tuple[Any, ...]:
        """What an idle mirror sends to check its node: PING, or in a cluster the
        barrier read, which a node cut off from the quorum cannot answer in time
        (it answers TRYAGAIN after the cluster's request timeout): a mirror on such
        a node would see no change and not know it, so it moves instead."""
        return BARRIER if self.nodes.clustered else ("PING",)

    def idle_ping(self) -> float:
        """How long a listening connection (mirror, subscription, worker) stays silent
        before it pings; it gives up after as long again without an answer."""
        if self.nodes.clustered and self.node_timeout:
            return self.node_timeout / 2
        return _MIRROR_IDLE_PING

    # -- connecting ------------------------------------------------------------

    def _open(self) -> None:
        """One round over the nodes: connect, HELLO 3, join (or create) the room.
        REQUIRES: lock."""
        d = _dial(self.nodes, self.room, [], connect_timeout=self.connect_timeout,
                  idle_timeout=self.timeout, learn=self.learn)
        if self.room is None:
            self.room = d.replies[0].decode()
        self._sock, self._reader, self.address = d.sock, d.reader, d.address
        self._sock_wait = self.timeout       # what _dial set (idle_timeout)
        self._connected_at = time.monotonic()
        if hasattr(select, "poll"):
            self._poll = select.poll()
            self._poll.register(d.sock, _POLLIN)

    def _connect(self, deadline: float) -> None:
        """Connects, retrying every node with backoff until `deadline`. REQUIRES: lock."""
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
                                      f"{self.nodes.describe()}: {last}")
            delay = _sleep_backoff(delay, remaining)

    def _drop(self, failed: bool = False) -> None:
        """Closes the connection; failed: its node is gone (prefer another)."""
        if failed and self.address is not None:
            self.nodes.failed(self.address)
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = self._reader = self._poll = None
        self.address = None

    def _stale(self) -> bool:
        """True when the idle socket has something to read: EOF (the server went
        away) or bytes nobody asked for, or when another connection of the room
        found this node gone since this one connected. Checked before each send
        so that a request is not written into a dead connection."""
        if self.address is not None and self.nodes.failed_since(self.address,
                                                                 self._connected_at):
            return True
        if self._poll is not None:
            return bool(self._poll.poll(0))
        return bool(select.select([self._sock], [], [], 0)[0])  # type: ignore[type-var]

    def ensure(self) -> None:
        with self._lock:
            if self._sock is None:
                self._connect(time.monotonic() + self.retry_timeout)

    def _reply_wait(self) -> Tuple[Optional[float], bool]:
        """-> (seconds to wait for a reply, whether running out means the node is gone)."""
        if self.nodes.clustered and self.node_timeout is not None:
            if self.timeout is None or self.node_timeout < self.timeout:
                return self.node_timeout, True
        return self.timeout, False

    # -- requests ----------------------------------------------------------------

    def call(self, args: Tuple[Any, ...], idempotent: bool = False) -> Any:
        """Sends one command and returns its reply; raises the server's error.

        What is sent again (docs/python.md, "Clusters and failover"): a command
        that surely did not reach a node (the connection was found dead before
        sending, or the send failed) or that the node refused with TRYAGAIN
        (nothing proposed) is sent again, on the next node if its node is gone.
        A command whose reply was lost (the connection broke, or the node stayed
        silent past node_timeout) is sent again only if it is `idempotent` (a
        read); otherwise UnknownOutcome is raised. Reconnecting is retried with
        backoff for up to retry_timeout seconds, then ConnectionError.
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
            delay = _BACKOFF_FIRST
            while True:
                if self.closed:
                    raise ClosedError("room is closed")
                if deadline and time.monotonic() > deadline:
                    raise ConnectionError(f"no reply from {self.nodes.describe()} "
                                          f"within {self.retry_timeout}s of retries")
                if self._sock is None or self._stale():
                    self._drop(failed=self._sock is not None)
                    if not deadline:
                        deadline = time.monotonic() + self.retry_timeout
                    self._connect(deadline)
                sock = self._sock
                assert sock is not None
                try:
                    sock.sendall(data)
                except OSError as e:
                    self._drop(failed=True)
                    if n > 1 and not idempotent:   # part of a pipeline may have gone
                        raise UnknownOutcome(f"connection lost while sending ({e}); some of "
                                             f"the commands may have been applied") from None
                    continue                       # not delivered whole: safe to send again
                except BaseException:
                    self._drop()       # interrupted: part of it may be on the way
                    raise
                wait, gone_if_silent = self._reply_wait()
                try:
                    if wait != self._sock_wait:      # (settimeout is a system call)
                        sock.settimeout(wait)
                        self._sock_wait = wait
                    replies = [_read_reply(sock, self._reader) for _ in range(n)]
                except socket.timeout:
                    where = format_address(*self.ep[:2])
                    self._drop(failed=gone_if_silent)
                    if not gone_if_silent:
                        raise TimeoutError(f"no reply within {self.timeout}s") from None
                    if not idempotent:
                        raise UnknownOutcome(f"no reply from {where} "
                                             f"within {wait}s (node timeout): the command may "
                                             f"or may not have been applied") from None
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
                    # Interrupted (KeyboardInterrupt, ...) with a reply still due: the
                    # next command would read it as its own. The connection goes; a
                    # write sent may or may not apply.
                    self._drop()
                    raise
                # TRYAGAIN: nothing was proposed. Sent again after a pause when that
                # cannot repeat anything: a single command, a pipeline of reads, or a
                # pipeline refused whole; on the next node only when this one says it
                # cannot reach a leader or quorum (tryagain_moves), else on this one.
                again = [isinstance(r, TryAgain) for r in replies]
                if any(again) and (n == 1 or idempotent or all(again)):
                    if not deadline:
                        deadline = time.monotonic() + self.retry_timeout
                    if time.monotonic() + delay < deadline:
                        if any(tryagain_moves(r) for r in replies):
                            self._drop(failed=True)
                        delay = _sleep_backoff(delay, deadline - time.monotonic())
                        continue
                break
        if raise_errors:
            for r in replies:
                if isinstance(r, ServerError):
                    raise r
        return replies

    def close(self) -> None:
        self.closed = True
        with self._lock:
            self._drop()
