"""Which chunk of a bundle to fetch from which peer (docs/PROTOCOL.md section 6). Pure:
transfer.py does the fetching and tells the plan how each chunk went."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from meshdrop.core.manifest import ChunkRef


class ChunkPlan:
    """The chunks of one bundle still to fetch, shared by every peer that has it: each
    chunk is handed to one peer at a time; a chunk a peer got wrong goes back to the queue
    for the others (never blacklisted, only that peer is avoided for it)."""

    def __init__(self, refs: Iterable[ChunkRef]) -> None:
        self.pending: deque[ChunkRef] = deque()
        self.in_flight: dict[bytes, str] = {}
        self.avoid: dict[bytes, set[str]] = {}
        self.reset(refs)

    def reset(self, refs: Iterable[ChunkRef]) -> None:
        self.pending = deque(r for r in refs if r.digest not in self.in_flight)

    def take(self, peer: str) -> ChunkRef | None:
        for i, ref in enumerate(self.pending):
            if peer not in self.avoid.get(ref.digest, ()):
                del self.pending[i]
                self.in_flight[ref.digest] = peer
                return ref
        return None

    def finished(self, ref: ChunkRef) -> None:
        self.in_flight.pop(ref.digest, None)

    def failed(self, ref: ChunkRef, peer: str, bad_data: bool) -> None:
        self.in_flight.pop(ref.digest, None)
        if bad_data:
            self.avoid.setdefault(ref.digest, set()).add(peer)
        self.pending.appendleft(ref)

    def can_serve(self, peer: str) -> bool:
        return any(peer not in self.avoid.get(r.digest, ()) for r in self.pending)

    @property
    def complete(self) -> bool:
        return not self.pending and not self.in_flight

    @property
    def remaining(self) -> int:
        return len(self.pending) + len(self.in_flight)
