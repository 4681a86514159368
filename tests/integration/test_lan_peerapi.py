"""The peer API server of an in-process node on 127.0.0.1 (port 0): what it answers, what it
never serves (partial, expired, untrusted), the limits on what it is sent, no banner."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from conftest import FIXED_CREATED, Publisher, meshdrop_in_process, pack, run_meshdrop, write_tree
from meshdrop.core import codec
from meshdrop.core.inventory import publisher_slot
from meshdrop.core.manifest import CHUNK_SIZE
from meshdrop.store.crashpoints import ENV as CRASH_ENV
from meshdrop.store.inventory import PeerView
from meshdrop.store.store import Store
from meshdrop.transports.lan import protocol
from meshdrop.transports.lan.node import AppHook, ExtraApps, Node, NodeConfig

FILES = {"a.txt": b"hello", "b.bin": bytes(range(256)) * (CHUNK_SIZE // 128)}


def digests_of(home: Path, unlisted: bytes = b"") -> tuple[list[bytes], set[bytes]]:
    """(manifest hashes of visible bundles, hashes of the chunks in the chunk folder):
    those the index names, and those of the file data ``unlisted`` (a sealed store's file
    names do not give the hashes)."""
    with Store(home) as store:
        entries = PeerView(store).snapshot().inventory.entries
        manifests = [e.digest for e in entries if e.slot != publisher_slot(e.publisher)]
        named = store.conn.execute(
            "SELECT hash FROM bundle_chunks UNION SELECT hash FROM staging_chunks"
        )
        cut = (unlisted[i : i + CHUNK_SIZE] for i in range(0, len(unlisted), CHUNK_SIZE))
        known = {row[0] for row in named} | {hashlib.sha256(piece).digest() for piece in cut}
        chunks = {digest for digest in known if store.chunks.has(digest)}
    return manifests, chunks


@asynccontextmanager
async def running(
    home: Path, extra_apps: ExtraApps = (), hook: AppHook | None = None
) -> AsyncIterator[tuple[Node, str]]:
    config = NodeConfig(home=home, bind="127.0.0.1", port=0, discovery=False)
    node = Node(config, lambda e: None, extra_apps, hook)
    await node.start()
    try:
        yield node, f"http://127.0.0.1:{node.port}"
    finally:
        await node.stop()


async def get(url: str, **kwargs: object) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as session, session.get(url, **kwargs) as resp:  # type: ignore[arg-type]
        return resp.status, dict(resp.headers), await resp.read()


async def post(url: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as session, session.post(url, data=body) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    async with asyncio.timeout(10):
        data = await reader.read(65536)
    writer.close()
    return data


@pytest.fixture
def holder(tmp_path: Path, publisher: Publisher) -> Path:
    bundle = pack(publisher, write_tree(tmp_path / "src", FILES), tmp_path / "n.mdrop", "news")
    home = tmp_path / "holder"  # set up in process: what is tested is the peer API
    meshdrop_in_process("--home", home, "trust", "add", "--yes", publisher.pub, check=True)
    meshdrop_in_process("--home", home, "import", "--quiet", bundle, check=True)
    return home


def test_no_answer_names_the_software_or_its_version(holder: Path) -> None:
    async def scenario() -> list[bytes]:
        async with running(holder) as (node, base):
            answers = []
            for path in ("/peer/v1/hello", "/peer/v1/chunk/" + "0" * 64, "/nothing", "/peer/v1/"):
                status, headers, body = await get(base + path)
                assert "Server" not in headers, (path, headers)
                answers.append(json.dumps(headers).encode() + body)
            status, headers, body = await post(base + "/peer/v1/inventory", b"\xc1")
            assert status == 400 and "Server" not in headers
            answers.append(await raw(node.port, b"GET / HTTP/1.1\r\nContent-Length: zz\r\n\r\n"))
            answers.append(await raw(node.port, b"NOT HTTP AT ALL\r\n\r\n"))
            return answers

    for answer in asyncio.run(scenario()):
        lowered = answer.lower()
        assert b"aiohttp" not in lowered and b"python" not in lowered, answer


def test_request_bodies_are_capped(holder: Path) -> None:
    async def scenario() -> int:
        async with running(holder) as (_, base):
            status, _, _ = await post(base + "/peer/v1/inventory", bytes(300 * 1024))
            return status

    assert asyncio.run(scenario()) == 413


def test_batches_answer_what_is_served_and_refuse_the_rest(holder: Path) -> None:
    """POST envelopes and chunks (PROTOCOL 3.8, 3.9): the envelope of a visible bundle
    and nil for an unknown hash; the chunks back to back in the order asked; 404 for a
    batch naming a chunk not served; 400 for a malformed request; 413 over the cap."""
    [manifest], chunks = digests_of(holder)
    ordered = sorted(chunks)
    with Store(holder) as store:
        expected = b"".join(store.chunks.read(d) or b"" for d in reversed(ordered))
        envelope = PeerView(store).envelope(manifest)
    unknown = bytes(32)

    async def scenario() -> list[tuple[int, bytes]]:
        async with running(holder) as (_, base):
            answers = []
            for path, body in (
                ("envelopes", protocol.encode_digests([manifest, unknown])),
                ("chunks", protocol.encode_digests(list(reversed(ordered)))),
                ("chunks", protocol.encode_digests([*ordered, unknown])),
                ("chunks", codec.pack([manifest[:31]])),
                ("envelopes", bytes(protocol.MAX_BATCH_REQUEST_BYTES + 1)),
            ):
                status, _, answer = await post(f"{base}/peer/v1/{path}", body)
                answers.append((status, answer))
            return answers

    envelopes, batch, missing, malformed, oversized = asyncio.run(scenario())
    assert envelopes == (200, protocol.encode_envelope_batch([envelope, None]))
    assert batch == (200, expected)
    assert [missing[0], malformed[0], oversized[0]] == [404, 400, 413]


def test_it_serves_a_visible_bundle_and_nothing_of_a_partial_one(
    holder: Path, tmp_path: Path, publisher: Publisher
) -> None:
    data = b"partial" * 200_000
    partial = pack(
        publisher,
        write_tree(tmp_path / "p", {"x.bin": data}),
        tmp_path / "partial.mdrop",
        "partial",
    )
    killed = run_meshdrop(
        "--home", holder, "import", "--quiet", partial, env={CRASH_ENV: "before-commit"}
    )
    assert killed.code == -9
    [manifest], chunks = digests_of(holder, unlisted=data)

    async def scenario() -> dict[str, int]:
        async with running(holder) as (_, base):
            results = {}
            status, _, _envelope = await get(f"{base}/peer/v1/envelope/{manifest.hex()}")
            results["envelope"] = status
            for digest in chunks:
                status, _, _data = await get(f"{base}/peer/v1/chunk/{digest.hex()}")
                results[digest.hex()] = status
            return results

    results = asyncio.run(scenario())
    assert results.pop("envelope") == 200
    served = {d for d, s in results.items() if s == 200}
    refused = {d for d, s in results.items() if s == 404}
    assert len(served) == 2  # a.txt and b.bin of the visible bundle
    assert len(refused) == len(chunks) - 2 > 0  # the partial bundle's chunks: never
    assert served | refused == {d.hex() for d in chunks}


def test_a_chunk_is_sent_as_stored_and_says_nothing_of_its_file(holder: Path) -> None:
    _, chunks = digests_of(holder)

    async def scenario() -> list[tuple[bytes, int, dict[str, str], bytes]]:
        async with running(holder) as (_, base):
            answers = []
            for digest in chunks:
                url = f"{base}/peer/v1/chunk/{digest.hex()}"
                status, headers, body = await get(url)
                answers.append((digest, status, headers, body))
                status, headers, body = await get(url, headers={"Range": "bytes=0-9"})
                answers.append((digest, status, headers, body))
            return answers

    answers = asyncio.run(scenario())
    assert len(answers) == 2 * len(chunks) == 4
    for digest, status, headers, body in answers:
        assert status == 200  # whole chunks only: no ranges
        assert hashlib.sha256(body).digest() == digest
        assert headers["Content-Length"] == str(len(body))
        assert headers["Content-Type"] == "application/octet-stream"
        # When this node stored the chunk is nobody's business: no file dates or tags.
        names = {name.lower() for name in headers}
        assert not {"last-modified", "etag", "accept-ranges"} & names, headers


def test_an_untrusted_or_expired_bundle_is_not_served(tmp_path: Path, publisher: Publisher) -> None:
    soon = str(int(time.time()) + 3)
    bundle = pack(
        publisher,
        write_tree(tmp_path / "src", {"a.txt": b"short-lived"}),
        tmp_path / "s.mdrop",
        "soon",
        "--expires",
        soon,
    )
    home = tmp_path / "h"
    meshdrop_in_process("--home", home, "trust", "add", "--yes", publisher.pub, check=True)
    meshdrop_in_process("--home", home, "import", "--quiet", bundle, check=True)
    [manifest], chunks = digests_of(home)
    [chunk] = chunks

    async def fetch(base: str) -> tuple[int, int]:
        envelope, _, _ = await get(f"{base}/peer/v1/envelope/{manifest.hex()}")
        chunk_status, _, _ = await get(f"{base}/peer/v1/chunk/{chunk.hex()}")
        return envelope, chunk_status

    async def scenario() -> list[tuple[int, int]]:
        async with running(home) as (_, base):
            before = await fetch(base)
            async with asyncio.timeout(30):
                while time.time() <= int(soon) + 1:
                    await asyncio.sleep(0.2)
            return [before, await fetch(base)]

    assert asyncio.run(scenario()) == [(200, 200), (404, 404)]

    home2 = tmp_path / "h2"
    fresh = pack(
        publisher, write_tree(tmp_path / "f", {"a.txt": b"kept"}), tmp_path / "f.mdrop", "fresh"
    )
    meshdrop_in_process("--home", home2, "trust", "add", "--yes", publisher.pub, check=True)
    meshdrop_in_process("--home", home2, "import", "--quiet", fresh, check=True)
    [manifest], _ = digests_of(home2)
    fingerprint = json.loads(meshdrop_in_process("--home", home2, "trust", "ls", "--json").out)
    meshdrop_in_process("--home", home2, "trust", "rm", fingerprint["fingerprint"], check=True)

    async def untrusted() -> int:
        async with running(home2) as (_, base):
            status, _, _ = await get(f"{base}/peer/v1/envelope/{manifest.hex()}")
            return status

    assert asyncio.run(untrusted()) == 404
    assert FIXED_CREATED  # bundles above were made with the suite's fixed creation time


def test_status_needs_the_token_from_the_home(holder: Path) -> None:
    async def scenario() -> tuple[int, int, dict[str, Any]]:
        async with running(holder) as (_node, base):
            denied, _, _ = await get(base + "/node/status")
            info = json.loads((holder / "node.json").read_text())
            status, _, body = await get(
                base + "/node/status", headers={"X-Meshdrop-Token": info["token"]}
            )
            return denied, status, json.loads(body)

    denied, status, info = asyncio.run(scenario())
    assert (denied, status) == (403, 200)
    assert info["inventory"]["entries"] == 2  # the publisher chain and one bundle
    assert not (holder / "node.json").exists()  # removed when the node stopped


def test_other_applications_share_the_server_under_their_own_prefix(holder: Path) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="a reader page")

    reader = web.Application()
    reader.router.add_get("/", hello)
    added: list[Callable[[web.Application], None]] = []

    def hook(app: web.Application) -> None:
        app.router.add_get("/", hello)
        added.append(hook)

    async def scenario() -> list[tuple[int, bytes, bool]]:
        async with running(holder, extra_apps=[("/read", reader)], hook=hook) as (_, base):
            results = []
            for path in ("/read/", "/", "/peer/v1/hello"):
                status, headers, body = await get(base + path)
                results.append((status, body[:13], "Server" in headers))
            return results

    results = asyncio.run(scenario())
    assert results[0] == (200, b"a reader page", False)
    assert results[1] == (200, b"a reader page", False)
    assert results[2][0] == 200 and not results[2][2]
    assert added
