"""How many connections the node's server keeps open, and how often it complains: pure
decisions (no sockets), the I/O beside them in ``serverguard.py`` (docs/PROTOCOL.md
section 7).

A process has a fixed number of file descriptors (often 1,024). Every open connection
takes one; so do the store's files, SQLite, zeroconf's sockets and the node's own
connections to its peers. A stranger who opens idle connections until the process has
none left stops everything: no chunk can be written, no peer reached, no reader served.
So the server keeps open connections below the descriptor limit, with room left for the
rest, and per remote address below that. When a new connection would pass a cap, the
oldest *idle* connection (one waiting for its next request, never one being answered)
of the address holding the most is closed to make room; only when none is idle is the
new one refused. A flood from one address thus costs that address its own idle
connections, never another reader's or peer's answer in progress.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

RESERVED_DESCRIPTORS = 256  # store files, SQLite, zeroconf, outgoing sync, threads
MAX_CONNECTIONS = 1024  # more gains a LAN node nothing, and each costs memory
MIN_CONNECTIONS = 16
PER_ADDRESS = 64  # a phone browser uses about 6 connections, a peer at most 6
LOG_INTERVAL = 60.0  # seconds: one line per kind of error at most this often
HEAD_TIMEOUT = 15.0  # seconds a connection may wait for (the rest of) a request head
PEER_KEEPALIVE = 300.0  # seconds a peer's connection may wait between requests

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class ConnectionLimits:
    total: int = MAX_CONNECTIONS - RESERVED_DESCRIPTORS
    per_address: int = PER_ADDRESS

    @classmethod
    def for_descriptors(cls, descriptors: int) -> ConnectionLimits:
        """Caps that leave RESERVED_DESCRIPTORS free (half the descriptors when there are
        few), at most MAX_CONNECTIONS."""
        spare = max(descriptors - RESERVED_DESCRIPTORS, descriptors // 2)
        total = max(MIN_CONNECTIONS, min(MAX_CONNECTIONS, spare))
        return cls(total=total, per_address=min(PER_ADDRESS, total))


@dataclass(frozen=True)
class Admit:
    """Open the new connection, after closing ``evict`` (if any)."""

    evict: object | None = None


@dataclass(frozen=True)
class Refuse:
    """Every connection that would have to go is busy: close the new one."""


@dataclass
class ConnectionTable(Generic[K]):
    """The open connections, per remote address, oldest first. ``idle(connection)``
    says whether a connection is waiting for its next request (it may be closed)."""

    limits: ConnectionLimits
    idle: Callable[[K], bool]
    _by_address: dict[str, OrderedDict[K, None]] = field(default_factory=dict)
    _address_of: dict[K, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._address_of)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._address_of))

    def count(self, address: str) -> int:
        return len(self._by_address.get(address, ()))

    def admit(self, connection: K, address: str) -> Admit | Refuse:
        """Decide on a new connection from ``address``; if admitted it is counted (and a
        connection to evict, already uncounted, may come with it)."""
        victim: K | None = None
        if self.count(address) >= self.limits.per_address:
            victim = self._oldest_idle(address)
            if victim is None:
                return Refuse()
        elif len(self._address_of) >= self.limits.total:
            victim = self._idle_of_the_busiest()
            if victim is None:
                return Refuse()
        if victim is not None:
            self.remove(victim)
        self._by_address.setdefault(address, OrderedDict())[connection] = None
        self._address_of[connection] = address
        return Admit(victim)

    def remove(self, connection: K) -> None:
        """Forget a connection (closed, or chosen to be); nothing if unknown."""
        address = self._address_of.pop(connection, None)
        if address is None:
            return
        held = self._by_address[address]
        del held[connection]
        if not held:
            del self._by_address[address]

    def _oldest_idle(self, address: str) -> K | None:
        return next((c for c in self._by_address.get(address, ()) if self.idle(c)), None)

    def _idle_of_the_busiest(self) -> K | None:
        """The oldest idle connection of the address holding the most, else of any."""
        by_size = sorted(self._by_address, key=lambda a: len(self._by_address[a]), reverse=True)
        for address in by_size:
            found = self._oldest_idle(address)
            if found is not None:
                return found
        return None


def idle_expired(idle_for: float, peer: bool, head_timeout: float = HEAD_TIMEOUT) -> bool:
    """Close a connection waiting this long for a request head? A browser or a stranger
    gets ``head_timeout`` (HEAD_TIMEOUT; tests shorten it); a connection that already
    carried a peer API request keeps PEER_KEEPALIVE, longer than the peers' ping
    interval, so a peer's pings reuse one connection instead of opening a new one each
    time. Under pressure idle connections
    are still closed for room first (``ConnectionTable.admit``), peers' included."""
    return idle_for >= (PEER_KEEPALIVE if peer else head_timeout)


@dataclass
class Throttle:
    """One line per kind of complaint per ``interval``: the first is said at once, the
    ones after it only counted, and the count said with the next one after the interval.
    A flood of failed accepts (EMFILE) or of a repeated error then costs a few lines a
    minute, not a line (or a traceback) per event."""

    interval: float = LOG_INTERVAL
    _next: dict[str, float] = field(default_factory=dict)
    _held: dict[str, int] = field(default_factory=dict)

    def allow(self, kind: str, now: float) -> int | None:
        """None: stay quiet (counted). Otherwise say it now, with how many like it were
        held back since the last time."""
        if now < self._next.get(kind, float("-inf")):
            self._held[kind] = self._held.get(kind, 0) + 1
            return None
        self._next[kind] = now + self.interval
        if len(self._next) > 256:  # kinds come from exception types: few, but bounded
            self._next = {k: t for k, t in self._next.items() if t > now}
        return self._held.pop(kind, 0)
