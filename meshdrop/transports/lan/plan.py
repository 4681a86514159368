"""Which chunk of a bundle to fetch from which peer (docs/PROTOCOL.md section 6.3). Pure:
transfer.py does the fetching and tells the plan how each chunk went."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

from meshdrop.core.manifest import ChunkRef

Holders = frozenset[str]  # the partial sources that hold a chunk


class ChunkPlan:
    """The chunks of one bundle still to fetch, shared by every peer that has it: each
    chunk is handed to one peer at a time, and never fetched again once stored; a chunk
    a peer got wrong goes back to the queue for the others (never blacklisted, only that
    peer is avoided for it).

    A source holds the whole bundle unless ``add_source`` says which chunks it holds (a
    partial source). Rarest first: each peer is handed, of the chunks it holds, one that
    the fewest sources hold (a chunk only one partial source has is fetched while that
    source is still here), in data order among equals. Chunks are kept in groups by the
    set of partial sources holding them, so a take costs the number of groups, not of
    chunks."""

    def __init__(self, refs: Iterable[ChunkRef]) -> None:
        self.partial: dict[str, frozenset[bytes]] = {}  # partial source -> digests it holds
        self.groups: dict[Holders, deque[ChunkRef]] = {}
        self._order: list[Holders] = []  # the groups, rarest first
        self.in_flight: dict[bytes, str] = {}
        self.avoid: dict[bytes, set[str]] = {}
        self.reset(refs)

    def _holders(self, digest: bytes) -> Holders:
        return frozenset(peer for peer, held in self.partial.items() if digest in held)

    def _group(self, refs: Iterable[ChunkRef]) -> None:
        groups: dict[Holders, deque[ChunkRef]] = {}
        for ref in refs:
            groups.setdefault(self._holders(ref.digest), deque()).append(ref)
        self.groups = groups
        self._order = sorted(groups, key=len)

    def pending(self) -> Iterator[ChunkRef]:
        for group in self.groups.values():
            yield from group

    def reset(self, refs: Iterable[ChunkRef]) -> None:
        self._group(r for r in refs if r.digest not in self.in_flight)

    def add_source(self, peer: str, held: frozenset[bytes] | None) -> None:
        """A source and the chunks it holds (None: every chunk of the bundle)."""
        if held is None:
            if self.partial.pop(peer, None) is None:
                return
        else:
            self.partial[peer] = held
        self._group(sorted(self.pending(), key=lambda r: r.offset))

    def remove_source(self, peer: str) -> None:
        """A source left: what only it held no longer counts as held by someone."""
        if self.partial.pop(peer, None) is not None:
            self._group(sorted(self.pending(), key=lambda r: r.offset))

    def _serves(self, peer: str, holders: Holders) -> bool:
        return peer not in self.partial or peer in holders

    def take(self, peer: str) -> ChunkRef | None:
        for holders in self._order:
            queue = self.groups[holders]
            if not queue or not self._serves(peer, holders):
                continue
            for i, ref in enumerate(queue):
                if peer not in self.avoid.get(ref.digest, ()):
                    del queue[i]
                    self.in_flight[ref.digest] = peer
                    return ref
        return None

    def finished(self, ref: ChunkRef) -> None:
        self.in_flight.pop(ref.digest, None)

    def failed(self, ref: ChunkRef, peer: str, bad_data: bool) -> None:
        self.in_flight.pop(ref.digest, None)
        if bad_data:
            self.avoid.setdefault(ref.digest, set()).add(peer)
        holders = self._holders(ref.digest)
        if holders not in self.groups:
            self.groups[holders] = deque()
            self._order = sorted(self.groups, key=len)
        self.groups[holders].appendleft(ref)

    def can_serve(self, peer: str) -> bool:
        return any(
            self._serves(peer, holders) and any(peer not in self.avoid.get(r.digest, ()) for r in q)
            for holders, q in self.groups.items()
        )

    def holds_none_left(self, held: frozenset[bytes]) -> bool:
        """Whether none of the chunks still to fetch (or being fetched) is in ``held``:
        a partial source that has given all it could."""
        return not any(d in held for d in self.in_flight) and not any(
            r.digest in held for r in self.pending()
        )

    @property
    def complete(self) -> bool:
        return not self.in_flight and not any(self.groups.values())

    @property
    def remaining(self) -> int:
        return sum(len(q) for q in self.groups.values()) + len(self.in_flight)
