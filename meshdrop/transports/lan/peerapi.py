"""The peer API server: an aiohttp sub-application mounted at /peer/v1/ (docs/PROTOCOL.md).

It answers only what a node may pass on (store/inventory.py): which publishers it holds
(blinded: only a caller who knows a publisher's id can tell it is listed), the inventory
of visible bundles and trusted chains, their envelopes, their chunks and publisher files. Its own
limits: concurrent requests in all and per remote address (503 when full), request
bodies capped, nothing compressed, no access log (what others fetched is not recorded).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import BinaryIO

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web_request import BaseRequest

from meshdrop.core.inventory import Inventory
from meshdrop.errors import FormatError
from meshdrop.transports.lan import dropsync, protocol
from meshdrop.transports.lan.introduce import Introduction, parse_query
from meshdrop.transports.lan.protocol import Hello, InventoryResponse
from meshdrop.transports.lan.storeio import StoreIO

PREFIX = protocol.PEER_API_PREFIX
HEX64 = re.compile(r"[0-9a-f]{64}")
OCTETS = "application/octet-stream"
MSGPACK = protocol.MSGPACK_TYPE


@dataclass(frozen=True)
class ServerLimits:
    total: int = 32  # requests being answered at once, from everyone
    per_remote: int = 8  # ... from one address
    queue_wait: float = 2.0  # how long a request may wait for a slot before a 503
    body_timeout: float = 10.0
    min_time: float = 10.0  # any answer may take this long to send ...
    min_rate: float = 16 * 1024.0  # ... and then must go at this many bytes a second


@dataclass
class ServerStats:
    requests: int = 0
    refused_busy: int = 0
    chunks: int = 0
    envelopes: int = 0
    bytes_sent: int = 0


class PeerServer:
    """The state behind the routes: the store, this start's node id, and counters."""

    def __init__(
        self,
        storeio: StoreIO,
        node_id: bytes,
        limits: ServerLimits = ServerLimits(),
    ) -> None:
        self.storeio = storeio
        self.node_id = node_id
        self.limits = limits
        self.stats = ServerStats()
        # Told of every hello that introduces its caller (liveness.py's Liveness.heard).
        self.on_hello: Callable[[str, Introduction], None] | None = None
        self.drops: dropsync.DropService | None = None  # None: no drops served (404)
        self._total = asyncio.Semaphore(limits.total)
        self._per_remote: dict[str, asyncio.Semaphore] = {}
        # Keyed by content (digests), not by a store marker: each reader thread has its own
        # SQLite connection, and their markers are not comparable.
        self._scoped: OrderedDict[tuple[bytes, bytes, frozenset[bytes]], Inventory] = OrderedDict()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._limit])
        app.router.add_get("/hello", self.hello)
        app.router.add_get("/publishers", self.publishers)
        app.router.add_post("/inventory", self.inventory)
        app.router.add_get("/envelope/{digest}", self.envelope)
        app.router.add_post("/envelopes", self.envelopes)
        app.router.add_post("/chunks", self.chunks)
        app.router.add_get("/chunk/{digest}", self.chunk)
        app.router.add_get("/have/{digest}", self.have)
        app.router.add_get("/publisher/{digest}", self.publisher)
        app.router.add_get("/drops", self.held_drops)
        app.router.add_post("/drops", self.wanted_drops)
        return app

    @web.middleware
    async def _limit(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        remote = request.remote or "?"
        per_remote = self._per_remote.get(remote)
        if per_remote is None:
            if len(self._per_remote) > 4096:
                self._per_remote = {r: s for r, s in self._per_remote.items() if s.locked()}
            per_remote = self._per_remote[remote] = asyncio.Semaphore(self.limits.per_remote)
        try:
            async with asyncio.timeout(self.limits.queue_wait):
                await per_remote.acquire()
        except TimeoutError as exc:
            self.stats.refused_busy += 1
            raise web.HTTPServiceUnavailable(headers={"Retry-After": "5"}) from exc
        try:
            try:
                async with asyncio.timeout(self.limits.queue_wait):
                    await self._total.acquire()
            except TimeoutError as exc:
                self.stats.refused_busy += 1
                raise web.HTTPServiceUnavailable(headers={"Retry-After": "5"}) from exc
            try:
                self.stats.requests += 1
                response = await handler(request)
                # Send the body while holding the slot, at a minimum rate: a peer that
                # reads slowly (or not at all) holds one slot for a bounded time.
                size = response.content_length or 0
                try:
                    async with asyncio.timeout(self.limits.min_time + size / self.limits.min_rate):
                        await response.prepare(request)
                        await response.write_eof()
                except TimeoutError:
                    if request.transport is not None:
                        request.transport.close()  # aiohttp then sees a reset peer
                return response
            finally:
                self._total.release()
        finally:
            per_remote.release()

    async def hello(self, request: web.Request) -> web.Response:
        query = request.query
        try:
            intro = parse_query({k: query[k] for k in query}, len(query))
        except FormatError as exc:
            raise web.HTTPBadRequest() from exc
        if intro is not None and self.on_hello is not None and request.remote:
            self.on_hello(request.remote, intro)
        snap = await self.storeio.snapshot()
        digest = self.storeio.advertised_digest(snap.inventory)
        body = protocol.encode_hello(Hello(protocol.PROTOCOL_VERSION, digest, self.node_id))
        return web.Response(body=body, content_type=MSGPACK)

    async def publishers(self, request: web.Request) -> web.Response:
        """The publishers this node holds, each blinded under a fresh nonce (3.7)."""
        snap = await self.storeio.snapshot()
        nonce = secrets.token_bytes(protocol.NONCE_BYTES)
        body = await asyncio.to_thread(protocol.encode_held_publishers, nonce, snap.states)
        return web.Response(body=body, content_type=MSGPACK)

    async def inventory(self, request: web.Request) -> web.Response:
        body = await self._body(request, protocol.MAX_REQUEST_BYTES)
        try:
            asked = protocol.parse_inventory_request(body)
        except (FormatError, TypeError, ValueError) as exc:
            raise web.HTTPBadRequest() from exc
        snap = await self.storeio.snapshot()
        scope = frozenset(asked.scope) & frozenset(snap.states)
        key = (snap.inventory.digest, snap.trust_digest, scope)
        scoped = self._scoped.get(key)
        if scoped is None:
            scoped = await asyncio.to_thread(snap.inventory.restricted, scope)
            self._scoped[key] = scoped
            while len(self._scoped) > 8:
                self._scoped.popitem(last=False)

        def answer() -> bytes:
            nodes = tuple(scoped.answer(p) for p in asked.prefixes)
            held = tuple(p for p in asked.scope if p in scope)
            return protocol.encode_inventory_response(InventoryResponse(held, nodes))

        return web.Response(body=await asyncio.to_thread(answer), content_type=MSGPACK)

    async def envelope(self, request: web.Request) -> web.Response:
        data = await self.storeio.envelope(_digest(request))
        if data is None:
            raise web.HTTPNotFound()
        self.stats.envelopes += 1
        self.stats.bytes_sent += len(data)
        return web.Response(body=data, content_type=OCTETS)

    async def envelopes(self, request: web.Request) -> web.Response:
        """Several envelopes at once (3.8), as many as fit in one answer."""
        asked = await self._digests(request, protocol.MAX_BATCH_ENVELOPES, "envelopes")
        found = await self.storeio.envelopes(asked, protocol.MAX_BATCH_ENVELOPE_BYTES)
        body = protocol.encode_envelope_batch(found)
        self.stats.envelopes += sum(1 for envelope in found if envelope is not None)
        self.stats.bytes_sent += len(body)
        return web.Response(body=body, content_type=MSGPACK)

    async def chunks(self, request: web.Request) -> web.Response:
        """Several chunks at once (3.9), back to back, or 404 if any is not served."""
        asked = await self._digests(request, protocol.MAX_BATCH_CHUNKS, "chunks")
        data = await self.storeio.visible_chunks(asked, protocol.MAX_BATCH_CHUNK_BYTES)
        if data is None:
            raise web.HTTPNotFound()
        self.stats.chunks += len(asked)
        self.stats.bytes_sent += len(data)
        return web.Response(body=data, content_type=OCTETS)

    async def _digests(self, request: web.Request, max_items: int, what: str) -> tuple[bytes, ...]:
        body = await self._body(request, protocol.MAX_BATCH_REQUEST_BYTES)
        try:
            return protocol.parse_digests(body, max_items, f"a request for {what}")
        except (FormatError, TypeError, ValueError) as exc:
            raise web.HTTPBadRequest() from exc

    async def have(self, request: web.Request) -> web.Response:
        """Which chunks of a visible or partly held bundle this node holds (3.6)."""
        data = await self.storeio.have(_digest(request))
        if data is None:
            raise web.HTTPNotFound()
        self.stats.bytes_sent += len(data)
        return web.Response(body=data, content_type=OCTETS)

    async def chunk(self, request: web.Request) -> web.StreamResponse:
        digest = _digest(request)
        opened = await self.storeio.open_visible_chunk(digest)
        if opened is None:
            raise web.HTTPNotFound()
        self.stats.chunks += 1
        if isinstance(opened, bytes):  # a sealed store's chunk, decrypted and verified
            self.stats.bytes_sent += len(opened)
            return web.Response(body=opened, content_type=OCTETS)
        response = ChunkFileResponse(opened)
        self.stats.bytes_sent += response.content_length or 0
        return response

    async def publisher(self, request: web.Request) -> web.Response:
        data = await self.storeio.publisher_file(_digest(request))
        if data is None:
            raise web.HTTPNotFound()
        self.stats.bytes_sent += len(data)
        return web.Response(body=data, content_type=OCTETS)

    async def held_drops(self, request: web.Request) -> web.Response:
        """The drops this node holds: ids, sizes, expiries (dropsync.py)."""
        if self.drops is None:
            raise web.HTTPNotFound()
        body = await self.drops.held_answer()
        self.stats.bytes_sent += len(body)
        return web.Response(body=body, content_type=MSGPACK)

    async def wanted_drops(self, request: web.Request) -> web.Response:
        """The drops asked for by id, as many as fit in one answer (dropsync.py)."""
        if self.drops is None:
            raise web.HTTPNotFound()
        body = await self._body(request, protocol.MAX_BATCH_REQUEST_BYTES)
        try:
            asked = dropsync.parse_wanted(body)
        except (FormatError, TypeError, ValueError) as exc:
            raise web.HTTPBadRequest() from exc
        answer = await self.drops.batch_answer(asked)
        self.stats.bytes_sent += len(answer)
        return web.Response(body=answer, content_type=MSGPACK)

    async def _body(self, request: web.Request, limit: int) -> bytes:
        if request.content_length is not None and request.content_length > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
        data = bytearray()
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                while True:
                    piece = await request.content.read(min(65536, limit + 1 - len(data)))
                    if not piece:
                        break
                    data += piece
                    if len(data) > limit:
                        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(data))
        except TimeoutError as exc:
            raise web.HTTPRequestTimeout() from exc
        return bytes(data)


class ChunkFileResponse(web.StreamResponse):
    """A stored chunk sent straight from its file (sendfile(2) where the event loop has
    it: no copy through Python). Unlike aiohttp's FileResponse it sends no ETag or
    Last-Modified (they would tell when this node got the chunk) and takes no ranges."""

    def __init__(self, file: BinaryIO) -> None:
        super().__init__(headers={hdrs.CONTENT_TYPE: OCTETS})
        self._file = file
        self.content_length = os.fstat(file.fileno()).st_size

    async def prepare(self, request: BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return await super().prepare(request)
        try:
            writer = await super().prepare(request)
            if request.method != "HEAD" and self.content_length:
                transport = request.transport
                if transport is None:
                    raise ConnectionResetError("the peer went away")
                if transport.get_extra_info("sslcontext") is not None:
                    # Over TLS (a circle) there is no sendfile: asyncio's fallback reads
                    # and writes 256 KiB at a time, one after the other (~0.15 x plain).
                    # A chunk is at most 1 MiB: read once, encrypt and write once.
                    await super().write(await asyncio.to_thread(self._file.read))
                else:
                    await asyncio.get_running_loop().sendfile(
                        transport, self._file, 0, self.content_length
                    )
            await super().write_eof()
            return writer
        finally:
            self._file.close()


def _digest(request: web.Request) -> bytes:
    text = request.match_info["digest"]
    if not HEX64.fullmatch(text):
        raise web.HTTPNotFound()
    return bytes.fromhex(text)
