"""The store, called from an event loop without blocking it: the one async wrapper that
the LAN (transports/lan/storeio.py) and the reader (reader/library.py) build on.

SQLite connections belong to one thread each, so every thread of the wrapper's pools
opens a Store of its own on first use: ``readers`` threads for questions and one
``writer`` thread for what takes the store's write lock (commits, trust updates: it may
wait while another process imports). ``data`` threads work on chunk files only
(verifying, writing, reading: no SQLite, so they hash on every core). Each user makes its own, so a
busy reader cannot starve a sync of threads, nor a sync the reader."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from meshdrop.store.db import disk_error
from meshdrop.store.store import Store

T = TypeVar("T")


class ThreadedStore:
    def __init__(
        self,
        home: Path,
        name: str,
        readers: int = 1,
        writer: bool = False,
        data_workers: int = 4,
        on_open: Callable[[Store], None] | None = None,
    ) -> None:
        self.home = home
        self._local = threading.local()
        self._on_open = on_open
        self._pools: list[tuple[ThreadPoolExecutor, int]] = []
        self._read = self._pool(readers, f"{name}-read")
        self._write = self._pool(1, f"{name}-write") if writer else None
        self._data = ThreadPoolExecutor(data_workers, f"{name}-data")

    def _pool(self, threads: int, name: str) -> ThreadPoolExecutor:
        pool = ThreadPoolExecutor(threads, name)
        self._pools.append((pool, threads))
        return pool

    def store(self) -> Store:
        """This pool thread's own Store, opened on its first use (call only from a
        function run on a pool)."""
        store: Store | None = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = Store(self.home)
            if self._on_open is not None:
                self._on_open(store)
        return store

    @property
    def local(self) -> threading.local:
        """Per-thread values a user keeps beside the Store (set in ``on_open``)."""
        return self._local

    async def _run(self, pool: ThreadPoolExecutor, fn: Callable[[Store], T]) -> T:
        def run() -> T:
            try:
                return fn(self.store())
            except Exception as exc:  # SQLite's full or failing disk, outside a commit
                failed = disk_error(exc, f"the store index in {self.home}")
                if failed is None:
                    raise
                raise failed from exc

        return await asyncio.get_running_loop().run_in_executor(pool, run)

    async def read(self, fn: Callable[[Store], T]) -> T:
        """``fn(store)`` on a reader thread."""
        return await self._run(self._read, fn)

    async def write(self, fn: Callable[[Store], T]) -> T:
        """``fn(store)`` on the writer thread (or a reader thread if there is none)."""
        return await self._run(self._write or self._read, fn)

    async def data(self, fn: Callable[[], T]) -> T:
        """``fn()`` on a data thread: chunk files only, never the index."""
        return await asyncio.get_running_loop().run_in_executor(self._data, fn)

    async def aclose(self) -> None:
        """Wait for work already started (a commit, a chunk being written) to finish, so
        that what was verified stays stored; then close each Store in its own thread."""
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        self._data.shutdown(wait=True, cancel_futures=True)  # chunks queued: fetched again
        for pool, threads in self._pools:
            barrier = threading.Barrier(threads, timeout=30)
            closers = [pool.submit(self._close_local, barrier) for _ in range(threads)]
            for closer in closers:
                with contextlib.suppress(Exception):
                    closer.result()
            pool.shutdown(wait=True, cancel_futures=True)

    def _close_local(self, barrier: threading.Barrier) -> None:
        store = getattr(self._local, "store", None)
        if store is not None:
            store.close()
            self._local.store = None
        barrier.wait()  # one closer per thread: each waits until all threads took one
