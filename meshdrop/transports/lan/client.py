"""The peer API client: every request bounded in concurrency, size and time.

- Concurrency: at most ``per_peer`` requests to one peer and ``total`` in all.
- Size: a response never beyond what is expected of it (a chunk: exactly its signed
  size); a declared Content-Length over that is refused before reading a byte, and an
  endless body is cut off one byte past the limit. Nothing is decompressed.
- Time: a connect timeout, a read timeout (no byte for that long), and a deadline for the
  whole request from a minimum rate, so a slow drip cannot hold a slot for ever.
- Only IP literals are contacted (no DNS), from the bound address when one is given, so
  a node confined to loopback never sends a packet elsewhere.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from meshdrop.core import sync
from meshdrop.core.bundle import MAX_ENVELOPE_BYTES
from meshdrop.core.manifest import CHUNK_SIZE, ChunkRef
from meshdrop.core.sync import Address, Hello, InventoryRequest, InventoryResponse
from meshdrop.errors import FormatError
from meshdrop.transports.lan.errors import (
    PeerBusy,
    PeerMisbehaved,
    PeerNotFound,
    PeerUnreachable,
)

PREFIX = "/peer/v1/"
MAX_PUBLISHER_FILE_BYTES = 16 * 1024 * 1024
READ_PIECE = 256 * 1024


@dataclass(frozen=True)
class ClientLimits:
    connect_timeout: float = 5.0
    read_timeout: float = 15.0  # no byte for this long: give up
    min_rate: float = 16 * 1024.0  # bytes per second a response must average
    min_time: float = 10.0  # every request may take this long whatever its size
    per_peer: int = 6
    total: int = 24


def url_for(address: Address, path: str) -> str:
    return f"http://{sync.format_address(address)}{PREFIX}{path}"


class PeerClient:
    def __init__(self, limits: ClientLimits, local_host: str | None = None) -> None:
        self.limits = limits
        self.local_host = local_host
        self._session: aiohttp.ClientSession | None = None
        self._total = asyncio.Semaphore(limits.total)
        self._per_peer: dict[Address, asyncio.Semaphore] = {}
        self.requests = 0
        self.bytes_received = 0

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self.limits.total,
            limit_per_host=self.limits.per_peer,
            local_addr=(self.local_host, 0) if self.local_host else None,
            use_dns_cache=False,
            keepalive_timeout=10,  # under the servers' 15 s, so a reused connection is open
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=self.limits.connect_timeout,
                sock_read=self.limits.read_timeout,
            ),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
            max_line_size=8190,
            max_field_size=8190,
            # Buffer up to a whole chunk per response before pausing the socket: with the
            # 64 KiB default, reading stalls and resumes 16 times per chunk.
            read_bufsize=CHUNK_SIZE,
            trust_env=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

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
        exact: int | None = None,
        body: bytes | None = None,
    ) -> bytes:
        assert self._session is not None, "start() the client first"
        # A hard deadline for the worst case; the minimum rate is also checked as the
        # bytes arrive (_exchange), so a slow drip is cut off after min_time.
        deadline = self.limits.min_time + max_bytes / self.limits.min_rate
        async with self._total, self._peer_slots(address):
            self.requests += 1
            try:
                async with asyncio.timeout(deadline):
                    return await self._exchange(address, path, max_bytes, exact, body)
            except TimeoutError:
                raise PeerUnreachable(
                    f"peer {sync.format_address(address)} is too slow ({path})"
                ) from None
            except (aiohttp.ClientError, OSError) as exc:
                raise PeerUnreachable(
                    f"peer {sync.format_address(address)}: {type(exc).__name__} ({path})"
                ) from None

    async def _exchange(
        self, address: Address, path: str, max_bytes: int, exact: int | None, body: bytes | None
    ) -> bytes:
        assert self._session is not None
        who = sync.format_address(address)
        loop = asyncio.get_running_loop()
        started = loop.time()
        method = "GET" if body is None else "POST"
        headers = {"Content-Type": "application/x-msgpack"} if body is not None else None
        async with self._session.request(
            method, url_for(address, path), data=body, headers=headers, allow_redirects=False
        ) as resp:
            if resp.status == 404:
                raise PeerNotFound(f"peer {who} does not have {path}")
            if resp.status == 503:
                raise PeerBusy(f"peer {who} is busy")
            if resp.status != 200:
                raise PeerMisbehaved(f"peer {who} answered {path} with status {resp.status}")
            if resp.headers.get("Content-Encoding", "identity").lower() != "identity":
                raise PeerMisbehaved(f"peer {who} sent a compressed answer")
            declared = resp.content_length
            if declared is not None and (
                declared > max_bytes or (exact is not None and declared != exact)
            ):
                raise PeerMisbehaved(f"peer {who} declares {declared} bytes for {path}")
            if exact is not None and declared == exact:
                # The common case, a chunk of known size: one read, then nothing more.
                try:
                    body = await resp.content.readexactly(exact)
                except asyncio.IncompleteReadError as exc:
                    raise PeerMisbehaved(
                        f"peer {who} sent {len(exc.partial)} of {exact} bytes"
                    ) from None
                self.bytes_received += len(body)
                if await resp.content.read(1):
                    raise PeerMisbehaved(f"peer {who} sends more than {exact} bytes for {path}")
                return body
            data = bytearray()
            while True:
                piece = await resp.content.read(min(READ_PIECE, max_bytes + 1 - len(data)))
                if not piece:
                    break
                data += piece
                self.bytes_received += len(piece)
                if len(data) > max_bytes:
                    raise PeerMisbehaved(f"peer {who} sends more than {max_bytes} bytes for {path}")
                elapsed = loop.time() - started
                if elapsed > self.limits.min_time and len(data) < elapsed * self.limits.min_rate:
                    raise PeerUnreachable(f"peer {who} is too slow ({path})")
            if exact is not None and len(data) != exact:
                raise PeerMisbehaved(f"peer {who} sent {len(data)} bytes, not {exact}, for {path}")
            return bytes(data)

    async def hello(self, address: Address) -> Hello:
        data = await self._fetch(address, "hello", sync.MAX_HELLO_BYTES)
        try:
            return sync.parse_hello(data)
        except (FormatError, TypeError, ValueError) as exc:
            raise PeerMisbehaved(str(exc)) from None

    async def inventory(self, address: Address, request: InventoryRequest) -> InventoryResponse:
        body = sync.encode_inventory_request(request)
        data = await self._fetch(address, "inventory", sync.MAX_INVENTORY_RESPONSE_BYTES, body=body)
        try:  # up to 4 MiB of msgpack: parsed off the event loop
            return await asyncio.to_thread(sync.parse_inventory_response, data, request)
        except (FormatError, TypeError, ValueError) as exc:
            raise PeerMisbehaved(str(exc)) from None

    async def envelope(self, address: Address, manifest_hash: bytes) -> bytes:
        return await self._fetch(address, f"envelope/{manifest_hash.hex()}", MAX_ENVELOPE_BYTES)

    async def chunk(self, address: Address, ref: ChunkRef) -> bytes:
        return await self._fetch(address, f"chunk/{ref.digest.hex()}", ref.size, exact=ref.size)

    async def publisher_file(self, address: Address, publisher: bytes) -> bytes:
        return await self._fetch(address, f"publisher/{publisher.hex()}", MAX_PUBLISHER_FILE_BYTES)
