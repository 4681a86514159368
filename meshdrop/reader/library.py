"""The reader's view of the store: what it may show, read on threads of its own.

SQLite connections are not thread-safe, so every index query runs on ONE thread owned by
the reader; chunk files are read and re-hashed on a small pool of their own (both
through store/threaded.py, as the LAN's StoreIO). Neither is shared with the peer API,
so a busy reader cannot starve sync of threads, nor sync the reader. Search has a
process and a thread of its own (searching.py), so pages never wait behind it.

What may be shown is a ``Shelf``: the committed bundles in state "ok" (verified, of a
trusted publisher, neither withdrawn nor expired), taken from ``Store.list_bundles``. It
is rebuilt when another connection commits (SQLite's ``PRAGMA data_version``), when a
shown bundle reaches its expiry, and at least every REFRESH_SECONDS. A page waits for a
rebuild, unless the shelf is big and the last rebuild was slow (BIG_SHELF,
SLOW_SHELF_SECONDS): then it gets the shelf shown so far once it has waited that long,
and the rebuild goes on for the next page.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TypeVar

from meshdrop.core.manifest import FileEntry, Manifest
from meshdrop.core.reportkeys import REPORT_KEYS_BUNDLE, ReportKey
from meshdrop.errors import MeshdropError
from meshdrop.reader import readerids
from meshdrop.reader.searching import SearchService
from meshdrop.store.chunks import ChunkStore
from meshdrop.store.models import StoredBundle, TrustedPublisher
from meshdrop.store.reportkeys import report_keys
from meshdrop.store.store import Store
from meshdrop.store.threaded import ThreadedStore

log = logging.getLogger("meshdrop.reader")


def _retrieve(done: asyncio.Future[Shelf]) -> None:
    """A look at the store nobody awaited any more (pages served the shown shelf): its
    error is seen by the next one, not reported as never retrieved."""
    if not done.cancelled():
        done.exception()


T = TypeVar("T")

REFRESH_SECONDS = 30.0
WATCH_SECONDS = 5.0  # how often an unread reader looks for new bundles to index
# A shelf of at least BIG_SHELF bundles that took longer than SLOW_SHELF_SECONDS to load
# is served as it was while the next one loads, once a page has waited that long for it:
# during a sync every commit changes the store, and each page would otherwise wait for a
# whole reload of thousands of bundles. Smaller stores' pages are always fresh. 10 ms:
# what a page may spend of the reader's 100 ms budget (issue 19) hoping for a fresh shelf.
BIG_SHELF = 1000
SLOW_SHELF_SECONDS = 0.01
READ_THREADS = 4
MANIFESTS_CACHED = 32
SEARCH_LIMIT = 50  # hits asked of the index (the search page shows 50)


_STORED_FIELDS = tuple(f.name for f in fields(StoredBundle))


@dataclass(frozen=True)
class ShelvedBundle(StoredBundle):
    """A bundle as the reader shows it, with its opaque id in this node's URLs
    (readerids.py) and what computes its files' ids."""

    bid: str = ""
    key: bytes = field(default=b"", repr=False, compare=False)  # the node's reader secret

    @classmethod
    def of(cls, bundle: StoredBundle, key: bytes) -> ShelvedBundle:
        values = {name: getattr(bundle, name) for name in _STORED_FIELDS}
        return cls(**values, bid=readerids.bundle_id(key, bundle.publisher, bundle.name), key=key)

    def file_id(self, path: str) -> str:
        return readerids.file_id(self.key, self.publisher, self.name, path)


@dataclass(frozen=True)
class Shelf:
    """What the reader may show right now."""

    bundles: tuple[ShelvedBundle, ...]  # state "ok" only, newest first
    publishers: dict[str, TrustedPublisher]  # by fingerprint
    now: int  # the node's effective time (never before the newest signed time seen)
    # What the write pages need, loaded with the rest so that no page waits for it behind
    # a reload: the report keys one may seal to now, by fingerprint, and the reader secret.
    report_keys: dict[str, list[ReportKey]] = field(default_factory=dict)
    reader_key: bytes = field(default=b"", repr=False)
    by_bid: dict[str, ShelvedBundle] = field(default_factory=dict)
    by_id: dict[int, ShelvedBundle] = field(default_factory=dict)
    newest: dict[str, int] = field(default_factory=dict)  # newest_content(bundles), once

    def __post_init__(self) -> None:
        for bundle in self.bundles:
            self.by_bid[bundle.bid] = bundle
            self.by_id[bundle.id] = bundle
        self.newest.update(newest_content(self.bundles))

    def find(self, bid: str) -> ShelvedBundle | None:
        """The bundle whose opaque id (in this node's URLs) is ``bid``."""
        return self.by_bid.get(bid)


def newest_content(shown: Iterable[StoredBundle]) -> dict[str, int]:
    """Per publisher, when its newest bundle of those ``shown`` was signed: what a reader
    can actually read, not what its key record last saw (withdrawn or expired, maybe)."""
    newest: dict[str, int] = {}
    for bundle in shown:
        if bundle.created > newest.get(bundle.publisher, -1):
            newest[bundle.publisher] = bundle.created
    return newest


@dataclass(frozen=True)
class FoundFile:
    """A search hit: a file of a shown bundle (path "": the bundle itself)."""

    bundle: ShelvedBundle
    path: str
    title: str  # the article's own title, "" if it names none
    before: str  # the snippet around the first match in its text
    match: str
    after: str


class Library:
    def __init__(self, home: Path) -> None:
        self.home = home
        # The store's chunk files, with its sealer if sealed: taken from the first Store
        # the index thread opens (which asks for the keys), then used on the data pool.
        self._chunks: ChunkStore | None = None
        # One index thread (the shelf and manifests below are touched there only), and
        # READ_THREADS for chunk files.
        self.threads = ThreadedStore(home, "meshdrop-reader", readers=1, data_workers=READ_THREADS)
        self._data_version: int | None = None
        self._shelf: Shelf | None = None
        self._shelf_until = 0.0
        # Each with its files by opaque id (the ids in this node's URLs).
        self._manifests: OrderedDict[tuple[int, int], tuple[Manifest, dict[str, FileEntry]]]
        self._manifests = OrderedDict()
        self._key: bytes | None = None  # the reader secret (readerids.py), read once
        self.searching = SearchService(home)  # its own process and thread (searching.py)
        self._store_changed = False  # set on the store thread, seen on the event loop
        self._watching: asyncio.Task[None] | None = None
        self._loading: asyncio.Future[Shelf] | None = None  # one look at the store at a time
        self._load_seconds = 0.0  # how long the last shelf took to load
        # The last shelf's bundles as listed, each with its ShelvedBundle: a reload wraps
        # only what changed (a big shelf reloads at every commit of a sync).
        self._wrapped: dict[StoredBundle, ShelvedBundle] = {}

    # The event loop's side

    async def _on_store_thread(self, work: Callable[[], T]) -> T:
        return await self.threads.read(lambda _: work())

    async def shelf(self) -> Shelf:
        shown = self._shelf
        slow = self._load_seconds > SLOW_SHELF_SECONDS
        if shown is None or len(shown.bundles) < BIG_SHELF or not slow:
            shelf = await self._on_store_thread(self._current_shelf)  # always fresh
        else:
            loading = self._loading
            if loading is None or loading.done():  # one look at a time: pages share it
                loading = self._loading = asyncio.ensure_future(
                    self._on_store_thread(self._current_shelf)
                )
                loading.add_done_callback(_retrieve)
            try:
                shelf = await asyncio.wait_for(asyncio.shield(loading), SLOW_SHELF_SECONDS)
            except TimeoutError:
                return shown
        if self._store_changed:
            self._store_changed = False
            self.searching.store_changed()
        return shelf

    def watch(self) -> None:
        """Look at the store every WATCH_SECONDS even when nobody reads, so what a sync or
        an import brings is indexed for search before the first reader asks."""
        self._watching = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            try:
                await self.shelf()
            except MeshdropError as exc:  # the pages say so; the watch goes on
                log.error("reader: the store could not be read (%s)", type(exc).__name__)

    async def manifest(self, bundle: StoredBundle) -> Manifest | None:
        """The bundle's manifest; None if it is no longer the stored one."""
        found = await self._on_store_thread(lambda: self._manifest(bundle))
        return found[0] if found else None

    async def file(
        self, bundle: ShelvedBundle, fid: str
    ) -> tuple[Manifest, FileEntry | None] | None:
        """The bundle's manifest and its file whose opaque id is ``fid`` (None if no file
        has it); None if the manifest is no longer the stored one."""
        found = await self._on_store_thread(lambda: self._manifest(bundle))
        return (found[0], found[1].get(fid)) if found else None

    async def search(self, query: str) -> list[FoundFile]:
        """One hit per matching file, best first, on bundles shown right now at the
        version shown (the index may hold others, or not hold the newest yet)."""
        shelf = await self.shelf()
        hits = await self.searching.search(query, SEARCH_LIMIT)
        shown = {(b.publisher, b.name): b for b in shelf.bundles}
        found = []
        for hit in hits:
            bundle = shown.get((hit.publisher, hit.name))
            if bundle is not None and bundle.version == hit.version:
                found.append(FoundFile(bundle, hit.path, hit.title, *hit.snippet))
        return found

    async def titles(self, bundle: StoredBundle) -> dict[str, str]:
        """Path -> the article's own title, for the files of ``bundle`` that name one
        ({} until the search index holds this version)."""
        return await self.searching.titles(bundle.publisher, bundle.name, bundle.version)

    async def read_chunk(self, entry: FileEntry, index: int) -> bytes | None:
        """Chunk ``index`` of a file, re-hashed; None if missing or damaged."""
        digest = entry.chunks[index]
        chunks = self._chunks
        if chunks is None:
            chunks = await self._on_store_thread(lambda: self._open().chunks)
        return await self.threads.data(lambda: chunks.read(digest))

    async def close(self) -> None:
        if self._watching is not None:
            self._watching.cancel()
            await asyncio.gather(self._watching, return_exceptions=True)
        await self.searching.close()
        await self.threads.aclose()

    # The store thread's side

    def _open(self) -> Store:
        store = self.threads.store()
        self._chunks = store.chunks
        return store

    def _current_shelf(self) -> Shelf:
        store = self._open()
        version = store.db.data_version()
        changed = version != self._data_version
        if changed:  # another process committed (the store reloads trust by itself)
            self._data_version = version
            self._manifests.clear()
            self._store_changed = True  # the search index catches up (searching.py)
        if self._shelf is None or changed or time.monotonic() >= self._shelf_until:
            started = time.monotonic()
            self._shelf = self._load_shelf(store)
            self._load_seconds = time.monotonic() - started
        return self._shelf

    def _load_shelf(self, store: Store) -> Shelf:
        if self._key is None:
            self._key = readerids.reader_key(self.home)
        key = self._key
        listed = store.list_bundles()
        # A publisher's report keys and acks travel as a bundle; nobody reads it.
        shown = [b for b in listed if b.name != REPORT_KEYS_BUNDLE]
        before = self._wrapped
        bundles = tuple(before.get(b) or ShelvedBundle.of(b, key) for b in shown)
        self._wrapped = dict(zip(shown, bundles, strict=True))
        publishers = {p.fingerprint: p for p in store.trust_list()}
        now = store.now()
        sealable = report_keys(store, now, listed)
        wait = REFRESH_SECONDS
        expiring = [b.expires for b in bundles if b.expires is not None]
        if expiring:  # rebuild the moment the first of them expires
            wait = min(wait, max(min(expiring) + 1 - max(time.time(), now), 0))
        self._shelf_until = time.monotonic() + wait
        return Shelf(bundles, publishers, now, sealable, key)

    def _manifest(self, bundle: StoredBundle) -> tuple[Manifest, dict[str, FileEntry]] | None:
        """The bundle's manifest and, for a shelved bundle, its files by opaque id (both
        cached; the ids only once asked for with a ShelvedBundle, which knows the key)."""
        key = (bundle.id, bundle.version)
        cached = self._manifests.get(key)
        if cached is None:
            try:
                cached = (self._open().manifest(bundle), {})
            except MeshdropError:
                return None
            self._manifests[key] = cached
            while len(self._manifests) > MANIFESTS_CACHED:
                self._manifests.popitem(last=False)
        manifest, files = cached
        # A row id can be reused by another bundle once the shelf is rebuilt: check.
        if (manifest.name, manifest.version) != (bundle.name, bundle.version):
            return None
        if not files and isinstance(bundle, ShelvedBundle):
            files.update((bundle.file_id(f.path), f) for f in manifest.files)
        return cached
