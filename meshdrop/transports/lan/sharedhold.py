"""One shared hold of the store's ingest lock for every bundle being fetched.

Each transfer holds the ingest lock (shared) from before its missing chunks are counted
until it ends, so that ``fsck --repair`` (which takes it exclusively) never removes what
a commit is about to count on. Taking it costs a thread hand-off, a file open and a
``flock``; a sync of a thousand small bundles would pay that a thousand times, and keep
as many descriptors open. So the transfers share one hold: taken by the first user,
released when the last one leaves, exactly as the many holds would have been.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from meshdrop.store.store import IngestHold


class SharedHold:
    def __init__(self, take: Callable[[], Awaitable[IngestHold]]) -> None:
        self._take = take  # blocks (on a thread) while fsck --repair runs
        self._hold: IngestHold | None = None
        self._users = 0
        self._taking = asyncio.Lock()

    @property
    def users(self) -> int:
        return self._users

    async def acquire(self) -> None:
        """One more user; the lock is taken first if nobody holds it."""
        async with self._taking:
            if self._hold is None:
                self._hold = await self._take()
            self._users += 1

    def release(self) -> None:
        """One user fewer; the last one lets the lock go."""
        self._users -= 1
        if self._users <= 0:
            self.close()

    def close(self) -> None:
        """Let the lock go, whoever still uses it (the node stops)."""
        self._users = 0
        if self._hold is not None:
            self._hold.release()
            self._hold = None
