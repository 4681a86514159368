"""Small bundles' requests to one peer, gathered into batches (docs/PROTOCOL.md 3.8, 3.9).

Each of many small bundles fetched at once asks for its envelope, then its chunks, one
at a time, as a big bundle does; a round trip per request would cost more than the bytes.
So the requests of one kind to one peer that are waiting when a batch can go out leave
together, in one request (up to the protocol's caps), and at most ``IN_FLIGHT`` batches
per peer and kind are under way at once: the first request goes alone, and the others
gather while it travels. Nothing is checked here: each caller gets its own bytes back
and checks them as it would a single answer (an envelope's signature, a chunk's hash),
and a fault of the whole batch reaches every caller as its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from meshdrop.core.manifest import ChunkRef
from meshdrop.transports.lan import protocol
from meshdrop.transports.lan.buffers import ByteBudget
from meshdrop.transports.lan.client import PeerClient
from meshdrop.transports.lan.coalesce import batch_length
from meshdrop.transports.lan.errors import NetworkError, PeerNotFound
from meshdrop.transports.lan.protocol import Address

IN_FLIGHT = 2  # batches of one kind under way to one peer

Item = TypeVar("Item")
Answer = TypeVar("Answer")


class Batcher(Generic[Item, Answer]):
    """Requests for ``Item``s, each answered by an ``Answer``, sent in batches."""

    def __init__(self, max_items: int, weight: Callable[[Item], int], max_weight: int) -> None:
        self.max_items = max_items
        self.weight = weight
        self.max_weight = max_weight
        self._queue: list[tuple[Item, asyncio.Future[Answer]]] = []
        self._sending = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0

    @property
    def busy(self) -> bool:
        return bool(self._queue) or self._sending > 0

    async def fetch(self, item: Item) -> Answer:
        done: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._queue.append((item, done))
        if not self._scheduled:
            # Next turn of the loop: the requests made in this one leave together.
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._kick)
        return await done

    def _kick(self) -> None:
        self._scheduled = False
        self._queue = [(i, d) for i, d in self._queue if not d.done()]  # callers gone
        while self._queue and self._sending < IN_FLIGHT:
            taken = batch_length(
                [item for item, _ in self._queue], self.weight, self.max_items, self.max_weight
            )
            batch, self._queue = self._queue[:taken], self._queue[taken:]
            self._sending += 1
            self.batches += 1
            task = asyncio.ensure_future(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[Item, asyncio.Future[Answer]]]) -> None:
        try:
            answers = await self.request([item for item, _ in batch])
        except NetworkError as exc:
            for _, done in batch:  # each caller hears it as its own
                if not done.done():
                    done.set_exception(type(exc)(str(exc)))
        except BaseException:  # stopped (the node stops), or a bug: no caller waits for ever
            for _, done in batch:
                done.cancel()
            raise
        else:
            for (_, done), answer in zip(batch, answers, strict=True):
                if not done.done():
                    done.set_result(answer)
        finally:
            self._sending -= 1
            self._kick()

    async def request(self, items: Sequence[Item]) -> Sequence[Answer]:
        raise NotImplementedError

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


_NOT_SERVED = b""  # never an envelope (an answer's items are never empty)


class EnvelopeBatcher(Batcher[bytes, "bytes | None"]):
    """Envelopes by manifest hash (``envelope``)."""

    def __init__(self, client: PeerClient, address: Address, budget: ByteBudget) -> None:
        super().__init__(protocol.MAX_BATCH_ENVELOPES, lambda _: 1, protocol.MAX_BATCH_ENVELOPES)
        self.client, self.address, self.budget = client, address, budget

    async def envelope(self, manifest_hash: bytes) -> bytes | None:
        """The envelope as sent (not yet checked), PeerNotFound if the peer does not serve
        it, or None if it did not fit in its batch's answer: ask for it alone."""
        data = await self.fetch(manifest_hash)
        if data == _NOT_SERVED:
            who = protocol.format_address(self.address)
            raise PeerNotFound(f"peer {who} does not have envelope/{manifest_hash.hex()}")
        return data

    async def request(self, items: Sequence[bytes]) -> Sequence[bytes | None]:
        # The answer's size is held from the envelope budget while it is read and parsed.
        try:
            async with self.budget.hold() as hold:
                found = await self.client.envelopes(self.address, items, hold)
        except PeerNotFound:  # the batch as a whole: each is asked for alone
            return [None] * len(items)
        answers = [_NOT_SERVED if envelope is None else envelope for envelope in found]
        return [*answers, *[None] * (len(items) - len(found))]


class ChunkBatcher(Batcher[ChunkRef, "memoryview | None"]):
    """Chunks of small bundles. A caller gets its chunk's bytes as sent (exactly its
    signed size, not yet verified), or None if the peer refused the batch (404: one of
    them is not served there): the caller then asks for its chunk alone."""

    def __init__(self, client: PeerClient, address: Address) -> None:
        super().__init__(
            protocol.MAX_BATCH_CHUNKS, lambda ref: ref.size, protocol.MAX_BATCH_CHUNK_BYTES
        )
        self.client, self.address = client, address

    async def request(self, items: Sequence[ChunkRef]) -> Sequence[memoryview | None]:
        try:
            data = await self.client.chunks(self.address, items)
        except PeerNotFound:
            return [None] * len(items)
        answers: list[memoryview | None] = []
        offset = 0
        for ref in items:
            answers.append(data[offset : offset + ref.size])
            offset += ref.size
        return answers
