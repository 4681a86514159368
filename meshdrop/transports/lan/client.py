"""The peer API client: every request bounded in concurrency, size and time.

- Concurrency: at most ``per_peer`` requests to one peer and ``total`` in all.
- Size: a response never beyond what is expected of it (a chunk: exactly its signed
  size); a declared Content-Length over that is refused before reading a byte, and a
  response without one is refused. Nothing is decompressed.
- Time: a connect timeout, a read timeout (no byte for that long), a minimum rate once
  ``min_time`` has passed, and a hard deadline for the whole request from the minimum
  rate, so a slow drip cannot hold a slot for ever.
- Only IP literals are contacted (no DNS), from the bound address when one is given, so
  a node confined to loopback never sends a packet elsewhere.

The HTTP itself is wire.py's: keep-alive connections that receive a chunk straight into
a buffer of the caller's (``chunk_into``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from meshdrop.core.bundle import MAX_ENVELOPE_BYTES
from meshdrop.core.holdings import bitmap_bytes
from meshdrop.core.manifest import ChunkRef
from meshdrop.errors import FormatError
from meshdrop.transports.lan import protocol
from meshdrop.transports.lan.buffers import Hold
from meshdrop.transports.lan.errors import (
    PeerBusy,
    PeerMisbehaved,
    PeerNotFound,
    PeerUnreachable,
)
from meshdrop.transports.lan.protocol import (
    Address,
    HeldPublishers,
    Hello,
    InventoryRequest,
    InventoryResponse,
)
from meshdrop.transports.lan.wire import ClientLimits, Pool, TLSFor, no_tls, request_bytes

MAX_PUBLISHER_FILE_BYTES = 16 * 1024 * 1024


class PeerClient:
    def __init__(
        self, limits: ClientLimits, local_host: str | None = None, tls: TLSFor = no_tls
    ) -> None:
        self.limits = limits
        self.local_host = local_host
        self.tls = tls  # the TLS context to call an address with (circles), None: plain
        self._pool: Pool | None = None
        self._total = asyncio.Semaphore(limits.total)
        self._per_peer: dict[Address, asyncio.Semaphore] = {}
        self.requests = 0
        self.bytes_received = 0

    async def start(self) -> None:
        self._pool = Pool(self.limits, self.local_host, self.tls)

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _peer_slots(self, address: Address) -> asyncio.Semaphore:
        sem = self._per_peer.get(address)
        if sem is None:
            if len(self._per_peer) > 1024:  # forget idle peers' semaphores
                self._per_peer = {a: s for a, s in self._per_peer.items() if s.locked()}
            sem = self._per_peer[address] = asyncio.Semaphore(self.limits.per_peer)
        return sem

    async def _fetch(
        self,
        address: Address,
        path: str,
        max_bytes: int,
        *,
        into: memoryview | None = None,
        body: bytes | None = None,
        hold: Hold | None = None,
    ) -> memoryview:
        """The body of the answer to ``path``: at most ``max_bytes``, or exactly
        ``len(into)`` bytes received into ``into``. With ``hold``, the declared size is
        taken from its budget before the body is read (waiting while it does not fit)."""
        assert self._pool is not None, "start() the client first"
        # A hard deadline for the worst case; the minimum rate is also checked as the
        # bytes arrive (wire.Connection), so a slow drip is cut off after min_time.
        deadline = self.limits.min_time + max_bytes / self.limits.min_rate
        async with self._total, self._peer_slots(address):
            self.requests += 1
            try:
                async with asyncio.timeout(deadline):
                    return await self._exchange(address, path, max_bytes, into, body, hold)
            except TimeoutError as exc:
                raise PeerUnreachable(
                    f"peer {protocol.format_address(address)} is too slow ({path})"
                ) from exc
            except OSError as exc:
                raise PeerUnreachable(
                    f"peer {protocol.format_address(address)}: {type(exc).__name__} ({path})"
                ) from exc

    async def _exchange(
        self,
        address: Address,
        path: str,
        max_bytes: int,
        into: memoryview | None,
        body: bytes | None,
        hold: Hold | None,
    ) -> memoryview:
        assert self._pool is not None
        who = protocol.format_address(address)
        method = "GET" if body is None else "POST"
        request = request_bytes(
            method, address, protocol.PEER_API_PREFIX + path, body, protocol.MSGPACK_TYPE
        )
        connection, head = await self._pool.request(address, request)
        try:
            if head.status == 404:
                raise PeerNotFound(f"peer {who} does not have {path}")
            if head.status == 503:
                raise PeerBusy(f"peer {who} is busy")
            if head.status != 200:
                raise PeerMisbehaved(f"peer {who} answered {path} with status {head.status}")
            if head.headers.get("content-encoding", "identity").lower() != "identity":
                raise PeerMisbehaved(f"peer {who} sent a compressed answer")
            declared = head.content_length
            if declared is None:
                raise PeerMisbehaved(f"peer {who} sent an answer of no declared length")
            if declared > max_bytes or (into is not None and declared != len(into)):
                raise PeerMisbehaved(f"peer {who} declares {declared} bytes for {path}")
            if hold is not None:
                await hold.take(declared)
            target = memoryview(bytearray(declared)) if into is None else into
            await connection.receive_into(target)
        except BaseException:
            connection.abort()  # mid-answer: never reused, and stops writing into ``into``
            raise
        if head.keep_alive and not connection.closed:
            self._pool.give_back(address, connection)
        else:
            connection.abort()
        self.bytes_received += len(target)
        return target

    async def hello(self, address: Address, introduction: str = "") -> Hello:
        """The peer's hello; ``introduction`` (introduce.py's query) tells it who asks."""
        path = "hello" + introduction
        data = bytes(await self._fetch(address, path, protocol.MAX_HELLO_BYTES))
        try:
            return protocol.parse_hello(data)
        except (FormatError, TypeError, ValueError) as exc:
            raise PeerMisbehaved(str(exc)) from exc

    async def held_publishers(self, address: Address) -> HeldPublishers:
        """Which publishers the peer holds, blinded (protocol.HeldPublishers)."""
        path = "publishers"
        data = bytes(await self._fetch(address, path, protocol.MAX_HELD_RESPONSE_BYTES))
        try:
            return protocol.parse_held_publishers(data)
        except (FormatError, TypeError, ValueError) as exc:
            raise PeerMisbehaved(str(exc)) from exc

    async def inventory(self, address: Address, request: InventoryRequest) -> InventoryResponse:
        body = protocol.encode_inventory_request(request)
        data = bytes(
            await self._fetch(
                address, "inventory", protocol.MAX_INVENTORY_RESPONSE_BYTES, body=body
            )
        )
        try:  # up to 4 MiB of msgpack: parsed off the event loop
            return await asyncio.to_thread(protocol.parse_inventory_response, data, request)
        except (FormatError, TypeError, ValueError) as exc:
            raise PeerMisbehaved(str(exc)) from exc

    async def envelope(self, address: Address, manifest_hash: bytes, hold: Hold) -> bytes:
        """The envelope as sent (not yet checked); its size is taken from ``hold``."""
        path = f"envelope/{manifest_hash.hex()}"
        return bytes(await self._fetch(address, path, MAX_ENVELOPE_BYTES, hold=hold))

    async def envelopes(
        self, address: Address, manifest_hashes: Sequence[bytes], hold: Hold
    ) -> list[bytes | None]:
        """Several envelopes as sent (not yet checked), in the order asked: None for one
        the peer does not serve, and the list cut short where the rest did not fit in
        its answer (3.8). The answer's size is taken from ``hold``."""
        body = protocol.encode_digests(manifest_hashes)
        limit = protocol.MAX_BATCH_ENVELOPE_BYTES + 1024
        data = bytes(await self._fetch(address, "envelopes", limit, body=body, hold=hold))
        try:
            return await asyncio.to_thread(
                protocol.parse_envelope_batch, data, len(manifest_hashes)
            )
        except (FormatError, TypeError, ValueError) as exc:
            raise PeerMisbehaved(str(exc)) from exc

    async def chunks(self, address: Address, refs: Sequence[ChunkRef]) -> memoryview:
        """Several chunks' bytes as sent (not yet verified), back to back: exactly the sum
        of their signed sizes, or PeerMisbehaved before a byte of the body is read (3.9)."""
        into = memoryview(bytearray(sum(ref.size for ref in refs)))
        body = protocol.encode_digests(ref.digest for ref in refs)
        return await self._fetch(address, "chunks", len(into), into=into, body=body)

    async def chunk_into(self, address: Address, ref: ChunkRef, buffer: memoryview) -> memoryview:
        """The chunk's bytes as sent (not yet verified), received into ``buffer``; the
        returned view of it is valid until the buffer is reused."""
        into = buffer[: ref.size]
        return await self._fetch(address, f"chunk/{ref.digest.hex()}", ref.size, into=into)

    async def have(self, address: Address, manifest_hash: bytes, chunk_count: int) -> bytes:
        """The peer's chunk bitmap of a bundle of ``chunk_count`` chunk entries: exactly
        its size, as sent (core/holdings.py checks it)."""
        into = memoryview(bytearray(bitmap_bytes(chunk_count)))
        path = f"have/{manifest_hash.hex()}"
        return bytes(await self._fetch(address, path, len(into), into=into))

    async def request(
        self, address: Address, path: str, max_bytes: int, body: bytes | None = None
    ) -> bytes:
        """The answer to ``path`` (a POST with ``body``) as sent, at most ``max_bytes``:
        for routes whose messages another module parses (dropsync.py)."""
        return bytes(await self._fetch(address, path, max_bytes, body=body))

    async def publisher_file(self, address: Address, publisher: bytes) -> bytes:
        path = f"publisher/{publisher.hex()}"
        return bytes(await self._fetch(address, path, MAX_PUBLISHER_FILE_BYTES))
