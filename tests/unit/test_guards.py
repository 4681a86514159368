"""The autouse guards of tests/guards.py do what they say: a thread left running is named,
and meshdrop code blocking inside an event loop fails the test that runs it."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from blockbuster import BlockingError
from guards import threads_still_running

from meshdrop.store.store import Store


def test_a_thread_left_running_is_named_and_daemon_or_ended_threads_are_not() -> None:
    before = set(threading.enumerate())
    release = threading.Event()
    stuck = threading.Thread(target=release.wait, name="stuck")
    daemon = threading.Thread(target=release.wait, name="daemon", daemon=True)
    ending = threading.Thread(target=lambda: None, name="ending")
    for thread in (stuck, daemon, ending):
        thread.start()
    try:
        assert threads_still_running(before, grace=0.2) == ["stuck"]
    finally:
        release.set()
        stuck.join()
        daemon.join()
    assert threads_still_running(before, grace=0.2) == []


def test_opening_a_store_inside_the_event_loop_fails_and_on_a_thread_passes(
    tmp_path: Path,
) -> None:
    async def on_the_loop() -> None:
        Store(tmp_path / "on-the-loop")

    def open_and_close(home: Path) -> None:
        with Store(home):
            pass

    async def on_a_thread() -> None:
        await asyncio.to_thread(open_and_close, tmp_path / "on-a-thread")

    with pytest.raises(BlockingError):
        asyncio.run(on_the_loop())
    asyncio.run(on_a_thread())
