"""The blocking face's mirror thread (_MirrorWorker): keeps room.data current.

The Room (distri/_sync.py) makes it on first use of room.data / on_change /
wait_for: its own socket and a daemon thread that reads MIRROR push frames,
applies them to the room's MirrorState under the room's lock, wakes waiters and
runs on_change callbacks. After a lost connection it reconnects with backoff, on
any node of the room's NodeSet, and resumes FROM its last complete revision
(distri/_mirror.py has the state machine, distri/_link.py the dialing).
"""

import logging
import socket
import threading
import time
from typing import TYPE_CHECKING, List, Optional

from ._mirror import Change
from ._link import (_BACKOFF_FIRST, _STABLE_SESSION, _ConnectionLost, _dial, _mirror_revision,
                    _sleep_backoff)
from ._resp import NEED_MORE, PushFrame, pack
from ._url import Address, format_address
from .errors import Error, ServerError, TryAgain

if TYPE_CHECKING:
    from ._sync import Room

log = logging.getLogger("distri")


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
