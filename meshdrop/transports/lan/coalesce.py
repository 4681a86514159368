"""Calls made in one turn of the event loop, run together in one call on a store thread.

Many small bundles arrive together (a batch answer of envelopes or chunks wakes all their
transfers at once), and each then wants the same step done: an envelope checked against
the store, a chunk verified and written. One thread hand-off per bundle costs more than
the step itself, so the calls of one turn leave together, in one hand-off (up to
``max_items``, and ``max_weight`` unless a single item weighs more: big chunks still go
one per hand-off, so that several threads hash them at once), while earlier ones are
still being run. Each caller gets its own result or its own exception, exactly as from
a call of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# Runs every item, in order, and gives each item's result or the exception it raised.
RunMany = Callable[[Sequence[Item]], Awaitable[Sequence["Result | Exception"]]]


def batch_length(
    queue: Sequence[Item], weight: Callable[[Item], int], max_items: int, max_weight: int
) -> int:
    """How many items from the front of ``queue`` go together: at most ``max_items`` and
    ``max_weight`` in all, but always the first (however heavy it is)."""
    taken, total = 0, 0
    for item in queue:
        total += weight(item)
        if taken and (taken >= max_items or total > max_weight):
            break
        taken += 1
    return taken


class Coalescer(Generic[Item, Result]):
    def __init__(
        self,
        run_many: RunMany[Item, Result],
        keep: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
        max_items: int = 256,
        weight: Callable[[Item], int] = lambda _: 1,
        max_weight: int | None = None,
    ) -> None:
        self._run_many = run_many
        self._keep = keep  # a hand-off runs to its end even when the node stops
        self.max_items = max_items
        self.weight = weight
        self.max_weight = max_items if max_weight is None else max_weight
        self._queue: list[tuple[Item, asyncio.Future[Result]]] = []
        self._scheduled = False
        self.handoffs = 0

    async def call(self, item: Item) -> Result:
        done: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append((item, done))
        if not self._scheduled:
            self._scheduled = True  # next turn: the calls made in this one leave together
            asyncio.get_running_loop().call_soon(self._kick)
        return await done

    def _kick(self) -> None:
        self._scheduled = False
        while self._queue:
            taken = batch_length(
                [item for item, _ in self._queue], self.weight, self.max_items, self.max_weight
            )
            batch, self._queue = self._queue[:taken], self._queue[taken:]
            self.handoffs += 1
            self._keep(self._run(batch))

    async def _run(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._run_many([item for item, _ in batch])
        except BaseException as exc:  # the hand-off itself failed: every caller hears it
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, done), result in zip(batch, results, strict=True):
            if done.done():
                continue  # its caller stopped waiting
            if isinstance(result, Exception):
                done.set_exception(result)
            else:
                done.set_result(result)


def run_each(fn: Callable[[Item], Result], items: Sequence[Item]) -> list[Result | Exception]:
    """``fn`` on each item (on the calling thread): its result, or the exception it raised."""
    results: list[Result | Exception] = []
    for item in items:
        try:
            results.append(fn(item))
        except Exception as exc:
            results.append(exc)
    return results
