"""The sync's hand-offs to store threads (transports/lan/coalesce.py) and its one shared
hold of the ingest lock (transports/lan/sharedhold.py): calls of one turn leave together,
each caller hears only its own result or error, and the lock is held exactly while
someone uses it (a real flock on a real file)."""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from meshdrop.errors import IntegrityError
from meshdrop.store.store import IngestHold
from meshdrop.transports.lan.coalesce import Coalescer, run_each
from meshdrop.transports.lan.sharedhold import SharedHold


class Recorder:
    """A hand-off that doubles numbers and refuses negative ones, remembering each batch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.kept: set[asyncio.Task[None]] = set()

    def keep(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self.kept.add(task)
        task.add_done_callback(self.kept.discard)
        return task

    async def run_many(self, items: Sequence[int]) -> list[int | Exception]:
        self.batches.append(list(items))
        await asyncio.sleep(0)
        return run_each(_double, items)


def _double(item: int) -> int:
    if item < 0:
        raise IntegrityError(f"item {item} is negative")
    return item * 2


def test_the_calls_of_one_turn_leave_in_one_hand_off() -> None:
    async def scenario() -> tuple[list[int], list[list[int]]]:
        recorder = Recorder()
        coalescer = Coalescer(recorder.run_many, recorder.keep, max_items=64)
        results = await asyncio.gather(*(coalescer.call(i) for i in range(10)))
        return list(results), recorder.batches

    results, batches = asyncio.run(scenario())
    assert results == [i * 2 for i in range(10)]
    assert batches == [list(range(10))]


def test_a_hand_off_takes_at_most_max_items() -> None:
    async def scenario() -> list[list[int]]:
        recorder = Recorder()
        coalescer = Coalescer(recorder.run_many, recorder.keep, max_items=4)
        await asyncio.gather(*(coalescer.call(i) for i in range(10)))
        return recorder.batches

    assert asyncio.run(scenario()) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_a_hand_off_takes_at_most_max_weight_but_always_one_item() -> None:
    async def scenario() -> list[list[int]]:
        recorder = Recorder()
        coalescer = Coalescer(
            recorder.run_many, recorder.keep, max_items=64, weight=lambda i: i, max_weight=10
        )
        await asyncio.gather(*(coalescer.call(i) for i in (4, 5, 2, 30, 1, 1)))
        return recorder.batches

    # A heavy item goes alone (the way a big chunk keeps a thread of its own).
    assert asyncio.run(scenario()) == [[4, 5], [2], [30], [1, 1]]


def test_each_caller_hears_only_its_own_error() -> None:
    async def scenario() -> list[object]:
        recorder = Recorder()
        coalescer = Coalescer(recorder.run_many, recorder.keep)
        calls = (coalescer.call(i) for i in (1, -2, 3))
        return list(await asyncio.gather(*calls, return_exceptions=True))

    first, second, third = asyncio.run(scenario())
    assert (first, third) == (2, 6)
    assert isinstance(second, IntegrityError) and "item -2" in str(second)


def test_a_failed_hand_off_reaches_every_caller_of_it() -> None:
    async def broken(items: Sequence[int]) -> list[int | Exception]:
        raise OSError("the store thread pool is shut down")

    async def scenario() -> list[object]:
        recorder = Recorder()
        coalescer: Coalescer[int, int] = Coalescer(broken, recorder.keep)
        return list(
            await asyncio.gather(*(coalescer.call(i) for i in range(3)), return_exceptions=True)
        )

    assert all(isinstance(r, OSError) for r in asyncio.run(scenario()))


def test_a_caller_that_stops_waiting_leaves_the_others_their_results() -> None:
    async def scenario() -> tuple[int, list[list[int]]]:
        recorder = Recorder()
        coalescer = Coalescer(recorder.run_many, recorder.keep)
        gone = asyncio.ensure_future(coalescer.call(1))
        stays = asyncio.ensure_future(coalescer.call(2))
        await asyncio.sleep(0)  # both queued, the hand-off not yet run
        gone.cancel()
        result = await stays
        await asyncio.gather(*recorder.kept)
        return result, recorder.batches

    assert asyncio.run(scenario()) == (4, [[1, 2]])


def test_run_each_keeps_order_and_puts_errors_in_place() -> None:
    results = run_each(_double, [3, -1, 0])
    assert results[0] == 6 and results[2] == 0
    assert isinstance(results[1], IntegrityError)


# The shared hold: a real shared flock, which an exclusive one (fsck --repair) must wait for.


@pytest.fixture
def lock_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "ingest.lock"
    path.touch()
    yield path


def exclusive_free(path: Path) -> bool:
    """Whether ``fsck --repair`` could take the lock now (without waiting)."""
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def test_many_users_share_one_hold_taken_once(lock_file: Path) -> None:
    taken: list[IngestHold] = []

    async def take() -> IngestHold:
        hold = await asyncio.to_thread(IngestHold, lock_file)
        taken.append(hold)
        return hold

    async def scenario() -> list[bool]:
        shared = SharedHold(take)
        seen = [exclusive_free(lock_file)]
        await asyncio.gather(*(shared.acquire() for _ in range(100)))
        seen.append(exclusive_free(lock_file))
        for _ in range(99):
            shared.release()
        seen.append(exclusive_free(lock_file))  # one user is left
        shared.release()
        seen.append(exclusive_free(lock_file))
        return seen

    assert asyncio.run(scenario()) == [True, False, False, True]
    assert len(taken) == 1


def test_the_hold_is_taken_again_after_the_last_user_left(lock_file: Path) -> None:
    takes = 0

    async def take() -> IngestHold:
        nonlocal takes
        takes += 1
        return await asyncio.to_thread(IngestHold, lock_file)

    async def scenario() -> bool:
        shared = SharedHold(take)
        await shared.acquire()
        shared.release()
        await shared.acquire()
        held = not exclusive_free(lock_file)
        shared.release()
        return held

    assert asyncio.run(scenario())
    assert takes == 2


def test_closing_lets_the_lock_go_whoever_still_uses_it(lock_file: Path) -> None:
    async def scenario() -> tuple[bool, int]:
        shared = SharedHold(lambda: asyncio.to_thread(IngestHold, lock_file))
        await shared.acquire()
        await shared.acquire()
        shared.close()
        shared.release()  # a transfer that ends after the stop: nothing left to let go
        return exclusive_free(lock_file), shared.users

    assert asyncio.run(scenario()) == (True, 0)
