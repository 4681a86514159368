"""The reader's view of the store: what it may show, read on threads of its own.

SQLite connections are not thread-safe, so every index query runs on ONE thread owned by
the reader; chunk files are read and re-hashed on a small pool of their own (both
through store/threaded.py, as the LAN's StoreIO). Neither is shared with the peer API,
so a busy reader cannot starve sync of threads, nor sync the reader.

What may be shown is a ``Shelf``: the committed bundles in state "ok" (verified, of a
trusted publisher, neither withdrawn nor expired), taken from ``Store.list_bundles``. It
is rebuilt when another connection commits (SQLite's ``PRAGMA data_version``), when a
shown bundle reaches its expiry, and at least every REFRESH_SECONDS.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from meshdrop.core.manifest import FileEntry, Manifest
from meshdrop.errors import MeshdropError
from meshdrop.store import search as fts
from meshdrop.store.chunks import ChunkStore
from meshdrop.store.models import StoredBundle, TrustedPublisher
from meshdrop.store.store import Store
from meshdrop.store.threaded import ThreadedStore

T = TypeVar("T")

REFRESH_SECONDS = 30.0
READ_THREADS = 4
MANIFESTS_CACHED = 32
SEARCH_LIMIT = 100


def compact(fingerprint: str) -> str:
    """A fingerprint as it appears in reader URLs: its 32 characters without dashes."""
    return fingerprint.replace("-", "")


@dataclass(frozen=True)
class Shelf:
    """What the reader may show right now."""

    bundles: tuple[StoredBundle, ...]  # state "ok" only, newest first
    publishers: dict[str, TrustedPublisher]  # by fingerprint
    now: int  # the node's effective time (never before the newest signed time seen)
    by_key: dict[tuple[str, str], StoredBundle] = field(default_factory=dict)
    by_id: dict[int, StoredBundle] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for bundle in self.bundles:
            self.by_key[(compact(bundle.publisher), bundle.name)] = bundle
            self.by_id[bundle.id] = bundle

    def find(self, fingerprint: str, name: str) -> StoredBundle | None:
        return self.by_key.get((fingerprint, name))


@dataclass(frozen=True)
class Found:
    bundle: StoredBundle
    hit: fts.Hit


class Library:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.chunks = ChunkStore(home / "chunks")
        # One index thread (the shelf and manifests below are touched there only), and
        # READ_THREADS for chunk files.
        self.threads = ThreadedStore(home, "meshdrop-reader", readers=1, data_workers=READ_THREADS)
        self._data_version: int | None = None
        self._shelf: Shelf | None = None
        self._shelf_until = 0.0
        self._manifests: OrderedDict[tuple[int, int], Manifest] = OrderedDict()

    # The event loop's side

    async def _on_store_thread(self, work: Callable[[], T]) -> T:
        return await self.threads.read(lambda _: work())

    async def shelf(self) -> Shelf:
        return await self._on_store_thread(self._current_shelf)

    async def manifest(self, bundle: StoredBundle) -> Manifest | None:
        """The bundle's manifest; None if it is no longer the stored one."""
        return await self._on_store_thread(lambda: self._manifest(bundle))

    async def search(self, query: str) -> list[Found]:
        shelf = await self.shelf()
        hits = await self._on_store_thread(lambda: self._search(query))
        if hits is None:  # no FTS5 in this SQLite: titles and descriptions only
            words = [w.casefold() for w in fts.query_terms(query)]
            return [
                Found(b, fts.Hit(b.id, "", -1, 0))
                for b in shelf.bundles
                if words and all(w in f"{b.title}\n{b.description}".casefold() for w in words)
            ]
        return [Found(shelf.by_id[h.bundle_id], h) for h in hits if h.bundle_id in shelf.by_id]

    async def backfill_search(self) -> int:
        """Index bundles stored before search existed, a batch at a time, so that pages
        are answered in between."""
        if not await self._on_store_thread(lambda: fts.purge(self._open().db)):
            return 0
        done = 0

        def index_some() -> int:
            return fts.index_some(self._open().db, self.chunks)

        while count := await self._on_store_thread(index_some):
            done += count
        return done

    async def read_chunk(self, entry: FileEntry, index: int) -> bytes | None:
        """Chunk ``index`` of a file, re-hashed; None if missing or damaged."""
        digest = entry.chunks[index]
        return await self.threads.data(lambda: self.chunks.read(digest))

    async def close(self) -> None:
        await self.threads.aclose()

    # The store thread's side

    def _open(self) -> Store:
        return self.threads.store()

    def _current_shelf(self) -> Shelf:
        store = self._open()
        version = store.db.data_version()
        changed = version != self._data_version
        if changed:  # another process committed (the store reloads trust by itself)
            self._data_version = version
            self._manifests.clear()
        if self._shelf is None or changed or time.monotonic() >= self._shelf_until:
            self._shelf = self._load_shelf(store)
        return self._shelf

    def _load_shelf(self, store: Store) -> Shelf:
        bundles = tuple(store.list_bundles())
        publishers = {p.fingerprint: p for p in store.trust_list()}
        now = store.now()
        wait = REFRESH_SECONDS
        expiring = [b.expires for b in bundles if b.expires is not None]
        if expiring:  # rebuild the moment the first of them expires
            wait = min(wait, max(min(expiring) + 1 - max(time.time(), now), 0))
        self._shelf_until = time.monotonic() + wait
        return Shelf(bundles, publishers, now)

    def _manifest(self, bundle: StoredBundle) -> Manifest | None:
        key = (bundle.id, bundle.version)
        cached = self._manifests.get(key)
        if cached is None:
            try:
                cached = self._open().manifest(bundle)
            except MeshdropError:
                return None
            self._manifests[key] = cached
            while len(self._manifests) > MANIFESTS_CACHED:
                self._manifests.popitem(last=False)
        # A row id can be reused by another bundle once the shelf is rebuilt: check.
        if (cached.name, cached.version) != (bundle.name, bundle.version):
            return None
        return cached

    def _search(self, query: str) -> list[fts.Hit] | None:
        return self._open().search(query, SEARCH_LIMIT)


def find_file(manifest: Manifest, path: str) -> FileEntry | None:
    return next((f for f in manifest.files if f.path == path), None)
