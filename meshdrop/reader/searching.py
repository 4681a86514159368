"""The reader's search: the index is built in a process of its own, questions are asked on
a thread of their own; neither is the store thread that pages wait on.

Indexing (store/searchindex.py ``catch_up``) parses HTML, CPU-bound Python that would hold
this process's GIL, so it runs in a spawned child process: at the start and whenever the
store changed (the Library sees ``PRAGMA data_version`` move), never two at once, run
again at its end if the store changed meanwhile. A child of its own for each run (rather
than a pool) so that ``close`` can stop a long run at once: the index commits one
bundle at a time, so a stopped run loses nothing but the bundle it was on. The child
runs at a lower CPU priority (INDEXER_NICE, inherited from the one thread that starts
it): indexing is background work, and on a small machine during a sync its start-up
and parsing would otherwise take a core from the node's pages and transfers.

Queries run on QUERY_THREADS threads of their own, each with its own read connection to
search.sqlite, opened again if the file was replaced (deleted and rebuilt).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TypeVar

from meshdrop.errors import MeshdropError
from meshdrop.store import sealing, searchindex, searchquery
from meshdrop.store.db import SQL_ERRORS, is_damage
from meshdrop.store.searchquery import FileHit

T = TypeVar("T")
log = logging.getLogger("meshdrop.reader")
# SQLite lets go of the GIL while it answers: two questions at once use both cores of a
# small machine, so one long search does not hold up the next (each thread its own
# connection).
QUERY_THREADS = 2
INDEXER_NICE = 10  # added to the nice value of the thread that starts indexing children


def _lower_priority() -> None:
    """Lower this thread's CPU priority (per thread on Linux); its children inherit it."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(
            os.PRIO_PROCESS, 0, min(19, os.getpriority(os.PRIO_PROCESS, 0) + INDEXER_NICE)
        )


_UNANSWERED: tuple[type[Exception], ...] = (MeshdropError, *SQL_ERRORS)


class SearchService:
    def __init__(self, home: Path) -> None:
        self.home = home
        self._thread = ThreadPoolExecutor(QUERY_THREADS, "meshdrop-reader-search")
        # Starts and waits for the indexing children, which inherit its lowered priority.
        self._starter = ThreadPoolExecutor(
            1, "meshdrop-reader-indexer", initializer=_lower_priority
        )
        self._local = threading.local()
        self._child: BaseProcess | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._again = False
        self._runs = 0
        self._closed = False
        self._lock = threading.Lock()  # between starting the child and stopping it

    # Indexing, on the event loop

    def store_changed(self) -> None:
        """Bring the index up to date with the store (now, or after the current run)."""
        if self._closed:
            return
        if self._watcher is not None:
            self._again = True
            return
        self._runs += 1
        self._watcher = asyncio.get_running_loop().create_task(self._run_child())

    async def _run_child(self) -> None:
        try:
            while True:
                self._again = False
                loop = asyncio.get_running_loop()
                exitcode = await loop.run_in_executor(self._starter, self._run_child_once)
                if exitcode not in (0, None) and not self._closed:
                    log.error("reader: the search index could not be brought up to date")
                if not self._again or self._closed:
                    return
        except Exception as exc:  # never let indexing take the reader down
            log.error("reader: could not start the search indexer (%s)", type(exc).__name__)
        finally:
            self._watcher = None

    def _run_child_once(self) -> int | None:
        keys = sealing.keys_for(self.home)  # a sealed store's: handed over, not asked again
        child = multiprocessing.get_context("spawn").Process(
            target=searchindex.catch_up_in_child,
            args=(self.home, None if keys is None else keys.root),
            daemon=True,
        )
        with self._lock:
            if self._closed:
                return None
            child.start()
            self._child = child
        child.join()
        return child.exitcode

    def _stop_child(self) -> None:
        with self._lock:
            self._closed = True
            if self._child is not None and self._child.is_alive():
                self._child.terminate()  # safe: the index commits one bundle at a time

    def index_state(self) -> tuple[int, bool]:
        """How many indexing runs were started, and whether one is under way. A search
        between two equal states that are not under way asked a whole index; otherwise
        it may have missed what is new (the search page says so)."""
        return self._runs, self._watcher is not None

    async def indexed(self) -> None:
        """Wait until the index has caught up with the store as last seen (for tests)."""
        while self._watcher is not None:
            await asyncio.shield(self._watcher)

    # Questions, on the search thread

    async def search(self, query: str, limit: int) -> list[FileHit]:
        return await self._ask(lambda conn: searchquery.search(conn, query, limit), [])

    async def titles(self, publisher: str, name: str, version: int) -> dict[str, str]:
        return await self._ask(lambda conn: searchquery.titles(conn, publisher, name, version), {})

    async def _ask(self, question: Callable[[sqlite3.Connection], T], otherwise: T) -> T:
        loop = asyncio.get_running_loop()

        def work() -> T:
            try:
                return question(self._connection())
            except _UNANSWERED as exc:
                log.error("reader: search index unreadable (%s)", type(exc).__name__)
                self._drop_connection()
                if is_damage(exc):  # derived from the store: made again from it
                    searchindex.remove(self.home)
                    loop.call_soon_threadsafe(self.store_changed)
                return otherwise

        return await loop.run_in_executor(self._thread, work)

    def _connection(self) -> sqlite3.Connection:
        try:
            identity = searchindex.index_path(self.home).stat().st_ino
        except FileNotFoundError:
            identity = None
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or identity != self._local.identity:
            self._drop_connection()
            conn = self._local.conn = searchindex.connect(self.home)
            self._local.identity = searchindex.index_path(self.home).stat().st_ino
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    async def close(self) -> None:
        await asyncio.to_thread(self._stop_child)
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                await self._watcher
        await asyncio.get_running_loop().run_in_executor(self._thread, self._drop_connection)
        await asyncio.to_thread(self._thread.shutdown, wait=True)
        await asyncio.to_thread(self._starter.shutdown, wait=True)
