"""The nodes a client may talk to, and which one to try first (no I/O).

One NodeSet is shared by every connection of a Room (the command link, the
mirror, calls, subscriptions, workers), on both faces. It starts with the
addresses of the URL (the seeds) and learns the others from `CLUSTER.NODES`
(docs/protocol.md): each member's `client_address` is where clients reach it.
A node that is not in a cluster answers CLUSTER.NODES with an error; the set
then stays what the URL gave (one address: the client behaves as it always did).

Failover policy (docs/python.md, "Clusters and failover"):
  - every connection dials the *preferred* node first, then the others in order;
  - a connection that finds its node gone (refused, reset, EOF, silent past the
    node timeout, a TRYAGAIN for which tryagain_moves() is true) calls
    `failed(address)`, which moves the preference
    to the next node, so the other connections of the room follow without each
    discovering the dead node themselves;
  - a connection that reached a node calls `reached(address)`;
  - the command link, before each request, asks `failed_since(its node, when it
    connected)`: when another connection of the room (the mirror, say) found
    that node gone meanwhile, the link moves before sending rather than wait
    for its own timeout.

Invariants:
  1. `addresses` holds no duplicate and at most MAX_ADDRESSES entries; seeds
     come first and are never forgotten (a learnt node that left the cluster is
     dropped at the next CLUSTER.NODES that no longer lists it).
  2. `preferred` is an element of `addresses`.

Thread safety: every method takes the set's own lock (the blocking face shares
the set between threads; the asyncio face uses it from one loop).
"""

import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from .errors import TryAgain
from ._url import MAX_ADDRESSES, Address, Endpoint, Targets, format_address, parse_address


def _text(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def client_addresses(reply: Any) -> List[Address]:
    """The client addresses in a CLUSTER.NODES reply (RESP3 maps or RESP2 pairs);
    members whose address is not known yet ("") are left out."""
    out: List[Address] = []
    if not isinstance(reply, list):
        return out
    for member in reply:
        if isinstance(member, list) and len(member) % 2 == 0:
            member = {member[i]: member[i + 1] for i in range(0, len(member), 2)}
        if not isinstance(member, dict):
            continue
        fields = {_text(k): v for k, v in member.items()}
        addr = _text(fields.get("client_address", "") or "")
        if not addr:
            continue
        try:
            out.append(parse_address(addr))
        except ValueError:
            continue          # a malformed entry must not break the client
    return out


# What a node says in a TRYAGAIN when it cannot reach a leader or a quorum
# (docs/protocol.md, "Errors"): another node may. Any other TRYAGAIN (too many
# statistics requests in flight, an earlier membership change still applying, the
# leader refused a forwarded write) is about the request, not the node: it is
# sent again to the same node after a pause.
_TRYAGAIN_MOVES = ("no leader", "leader is not reachable", "no linearizable read point")


def tryagain_moves(reply: Any) -> bool:
    """Whether a reply is a TRYAGAIN that says its node is cut off from the
    cluster's leader or quorum (so another node should be tried)."""
    if not isinstance(reply, TryAgain):
        return False
    text = str(reply).lower()
    return any(m in text for m in _TRYAGAIN_MOVES)


class NodeSet:
    def __init__(self, targets: Targets) -> None:
        self.password = targets.password
        self._lock = threading.Lock()
        self._seeds: Tuple[Address, ...] = targets.addresses
        self._addresses: List[Address] = list(targets.addresses)
        self._preferred: Address = targets.addresses[0]
        self._failed_at: Dict[Address, float] = {}   # the last failure seen (monotonic)
        self.clustered: Optional[bool] = None   # None until a node was asked

    # -- reading ---------------------------------------------------------------

    @property
    def addresses(self) -> List[Address]:
        with self._lock:
            return list(self._addresses)

    @property
    def preferred(self) -> Address:
        with self._lock:
            return self._preferred

    def order(self) -> List[Address]:
        """Every known address, the preferred one first (the dial order)."""
        with self._lock:
            i = self._addresses.index(self._preferred)
            return self._addresses[i:] + self._addresses[:i]

    def endpoint(self, address: Address, room: Optional[str]) -> Endpoint:
        return Endpoint(address[0], address[1], self.password, room)

    def describe(self) -> str:
        return ",".join(format_address(h, p) for h, p in self.addresses)

    # -- what the connections report -------------------------------------------

    def reached(self, address: Address) -> None:
        with self._lock:
            if address in self._addresses:
                self._preferred = address

    def failed_since(self, address: Address, since: float) -> bool:
        """Whether a connection found the node at address gone after `since`."""
        with self._lock:
            return self._failed_at.get(address, -1.0) > since

    def failed(self, address: Address) -> None:
        """The node at address is gone or unusable: prefer the next one."""
        with self._lock:
            self._failed_at[address] = time.monotonic()
            if self._preferred == address and len(self._addresses) > 1:
                i = self._addresses.index(address)
                self._preferred = self._addresses[(i + 1) % len(self._addresses)]

    def learn(self, reply: Any) -> None:
        """Takes a CLUSTER.NODES reply (or its error: not a cluster)."""
        if isinstance(reply, Exception):
            with self._lock:
                if self.clustered is None:
                    self.clustered = False
            return
        members = client_addresses(reply)
        with self._lock:
            self.clustered = True
            if not members:
                return
            # Seeds first (invariant 1), then the members in the order given.
            merged = list(dict.fromkeys(list(self._seeds) + members))[:MAX_ADDRESSES]
            if self._preferred not in merged:
                merged = merged[:MAX_ADDRESSES - 1] + [self._preferred]
            self._addresses = merged


# ---------------------------------------------------------------------------
# Opening a connection
# ---------------------------------------------------------------------------

# A linearizable read sent before ROOM.JOIN on a cluster node: it returns once the
# node has applied every write committed before it was sent, so a room created
# through another node is there to join and `MIRROR FROM r` finds r applied. It
# fails with TRYAGAIN on a node cut off from the quorum, which the dialer then
# skips. (Any key will do; it is only read.)
BARRIER = ("EXISTS", "distri:client:barrier")


class Opening:
    """The commands that open a connection, in rounds (no I/O): HELLO 3 (with AUTH),
    CLUSTER.NODES when `learn`, the barrier read in a cluster, then ROOM.JOIN (or
    ROOM.NEW) and `extra` (MIRROR, SVC.SERVE, ...). On a node known not to be in a
    cluster it is one round, as it always was.

        opening = Opening(nodes, room, extra, learn)
        while (cmds := opening.next_round()) is not None:
            opening.take(<one reply per command, push frames aside>)   # raises errors
        opening.replies       # the replies of the join and of `extra`
    """

    def __init__(self, nodes: NodeSet, room: Optional[str], extra: List[Tuple[Any, ...]],
                 learn: bool) -> None:
        hello: Tuple[Any, ...] = ("HELLO", "3")
        if nodes.password is not None:
            hello += ("AUTH", "default", nodes.password)
        self._nodes = nodes
        self._hello: Optional[Tuple[Any, ...]] = hello     # None once sent
        self._learn = learn
        self._barrier_sent = False
        self._join: List[Tuple[Any, ...]] = [
            ("ROOM.JOIN", room) if room is not None else ("ROOM.NEW",)] + list(extra)
        self._joined = False
        self._round: List[Tuple[Any, ...]] = []
        self.replies: List[Any] = []

    def next_round(self) -> Optional[List[Tuple[Any, ...]]]:
        if self._joined:
            return None
        clustered = self._nodes.clustered
        if self._hello is not None:
            hello, self._hello = self._hello, None
            if clustered is False or (clustered is None and not self._learn):
                self._round = [hello] + self._join        # a plain node: one round
                return self._round
            self._round = [hello]
            if self._learn:
                self._round.append(("CLUSTER.NODES",))
            if clustered:
                self._round.append(BARRIER)
                self._barrier_sent = True
            return self._round
        if clustered and not self._barrier_sent:      # just learnt it is a cluster
            self._barrier_sent = True
            self._round = [BARRIER]
            return self._round
        self._round = list(self._join)
        return self._round

    def take(self, replies: List[Any]) -> None:
        """The replies of the round just sent, in order. Raises the first error
        (a CLUSTER.NODES error only says the node is not in a cluster)."""
        error: Optional[BaseException] = None
        for cmd, reply in zip(self._round, replies):
            if cmd == ("CLUSTER.NODES",):
                self._nodes.learn(reply)
            elif isinstance(reply, BaseException) and error is None:
                error = reply
        if error is not None:
            raise error
        n = len(self._join)
        if self._round[-n:] == self._join and len(replies) >= n:
            self.replies = replies[-n:]
            self._joined = True
