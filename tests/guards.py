"""Autouse guards for every test (loaded by conftest.py), in the manner of python-zeroconf's
test suite: a test must not leave a thread running, and meshdrop code must not make a
blocking call inside a running event loop (a peer server or the reader stalls for every
client while it waits)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from blockbuster import BlockBuster, blockbuster_ctx

THREAD_GRACE = 5.0  # seconds, for all the threads of one test together, to end on their own

FILES = ("os.mkdir", "os.stat", "os.scandir", "io.BufferedReader.read", "io.TextIOWrapper.read")
SQLITE = (
    "sqlite3.Connection.execute",
    "sqlite3.Connection.executescript",
    "sqlite3.Cursor.execute",
    "sqlite3.Cursor.fetchone",
    "sqlite3.Cursor.fetchall",
)

# The blocking calls let through, each only below one function (a file's name ending and
# a function's name, anywhere on the stack): (file, function, blocking calls, why).
ALLOWED: list[tuple[str, str, tuple[str, ...], str]] = [
    (
        "meshdrop/transports/lan/storeio.py",
        "__init__",
        (*FILES, *SQLITE, "os.path.abspath", "os.listdir"),
        "KNOWN, to fix in transports/lan: Node.start makes its StoreIO on the event loop, "
        "and StoreIO opens a Store there (folders, SQLite schema, a seal or panic cut "
        "short, a sealed store's keys looked up by its real path); once per start.",
    ),
    (
        "meshdrop/transports/lan/node.py",
        "stop",
        ("io.TextIOWrapper.read", "os.unlink"),
        "KNOWN, to fix in transports/lan: Node.stop reads and removes node.json on the "
        "event loop; once per stop.",
    ),
    (
        "meshdrop/reader/app.py",
        "__post_init__",
        FILES,
        "A Reader loads its static files and templates once when made, and reader/serve.py "
        "and Node.start make it on the event loop, before it serves anything.",
    ),
    (
        "/test_lan_hostile.py",
        "offer_of",
        FILES + SQLITE,
        "A test helper (also used by test_junk_records.py) that reads a store directly "
        "inside the test's own coroutine; meshdrop's loop is not involved.",
    ),
]


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every non-daemon thread started during the test has ended when it is over (after
    its fixtures are torn down). Such a thread keeps the interpreter alive at exit and
    may still write to a store that a later test, or the test's clean-up, removes."""
    before = set(threading.enumerate())
    yield
    leaked = threads_still_running(before, THREAD_GRACE)
    assert not leaked, f"threads still running after the test: {leaked}"


def threads_still_running(before: set[threading.Thread], grace: float) -> list[str]:
    """The names of the non-daemon threads not in ``before`` that are still running after
    waiting up to ``grace`` seconds, for all of them together, for them to end."""
    deadline = time.monotonic() + grace
    leaked = []
    for thread in set(threading.enumerate()) - before:
        if thread.daemon:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            leaked.append(thread.name)
    return sorted(leaked)


@pytest.fixture(autouse=True)
def no_blocking_calls_in_event_loop() -> Iterator[BlockBuster]:
    """A blocking call (files, sockets, SQLite, sleep, a contended lock) made inside a
    running event loop with meshdrop code on the stack raises BlockingError. Calls on
    other threads (``asyncio.to_thread``, executors) and outside any loop pass, so tests
    without an event loop are not affected."""
    with blockbuster_ctx("meshdrop") as blockbuster:
        for filename, function, blocking, _why in ALLOWED:
            for name in blocking:
                blockbuster.functions[name].can_block_in(filename, function)
        yield blockbuster
