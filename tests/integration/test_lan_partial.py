"""Partly held bundles are shared (issue 15, docs/PROTOCOL.md 3.3-3.6, 4.1, 6.3): a node
offers the verified chunks of a bundle whose envelope verified here, says which it holds,
and serves nothing of a partial bundle that is expired or no longer trusted; two nodes
that each hold a different half complete each other once the source is gone."""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

from lankit import Nodes, wait_until
from test_lan_netns import Lan, lan, start_in  # noqa: F401 (fixtures)
from test_lan_nodes import names, trusting
from test_lan_peerapi import get, running

from conftest import Publisher, meshdrop_in_process, pack, run_meshdrop, write_tree
from meshdrop.core.bundle import parse_envelope
from meshdrop.core.holdings import decode_bitmap
from meshdrop.core.manifest import CHUNK_SIZE, parse_manifest
from meshdrop.store.inventory import PeerView
from meshdrop.store.store import Store

HALF_CHUNKS = 12  # a 24 MiB bundle in two parts of 12 chunks


def two_part_bundle(publisher: Publisher, tmp_path: Path, name: str, *extra: str) -> list[Path]:
    """A bundle of 2 x HALF_CHUNKS chunks of random bytes (seeded), packed as two courier
    parts: each part holds one half of its chunks."""
    data = random.Random(name).randbytes(2 * HALF_CHUNKS * CHUNK_SIZE)
    src = write_tree(tmp_path / f"{name}-src", {"big.bin": data})
    out = tmp_path / f"{name}.mdrop"
    pack(publisher, src, out, name, "--part-size", f"{HALF_CHUNKS + 1}M", *extra)
    parts = sorted(tmp_path.glob(f"{name}.p0*"))
    assert len(parts) == 2
    return parts


def holding_part(home: Path, part: Path) -> None:
    """Import one part: the bundle stays incomplete (staged), with that part's chunks."""
    result = meshdrop_in_process("--home", home, "import", "--quiet", part)
    assert "incomplete" in result.out + result.err, result.out + result.err


def chunk_list(home: Path) -> tuple[bytes, list[bytes]]:
    """(manifest hash, chunk list in data order) of the one partial bundle in ``home``."""
    with Store(home) as store:
        [partial] = PeerView(store).snapshot().partials.values()
    manifest = parse_manifest(parse_envelope(partial.envelope, "test").manifest_bytes)
    return partial.manifest_hash, [ref.digest for ref in manifest.chunk_refs()]


def test_a_partial_bundle_is_offered_and_served_until_expired_or_untrusted(
    tmp_path: Path, publisher: Publisher
) -> None:
    soon = int(time.time()) + 4
    first, _ = two_part_bundle(publisher, tmp_path, "soon", "--expires", str(soon))
    home = trusting(tmp_path / "h", publisher)
    holding_part(home, first)
    manifest, chunks = chunk_list(home)
    with Store(home) as store:
        entries = PeerView(store).snapshot().inventory.entries
    assert [e.digest for e in entries if e.partial] == [manifest]
    assert names(home) == {}  # not visible: only offered to peers

    async def ask(base: str) -> dict[str, object]:
        have, _, bitmap = await get(f"{base}/peer/v1/have/{manifest.hex()}")
        envelope, _, _ = await get(f"{base}/peer/v1/envelope/{manifest.hex()}")
        held, _, data = await get(f"{base}/peer/v1/chunk/{chunks[0].hex()}")
        absent, _, _ = await get(f"{base}/peer/v1/chunk/{chunks[-1].hex()}")
        return {"have": have, "bitmap": bitmap, "envelope": envelope, "chunk": held,
                "size": len(data), "absent": absent}  # fmt: skip

    async def scenario() -> list[dict[str, object]]:
        async with running(home) as (_, base):
            before = await ask(base)
            async with asyncio.timeout(30):
                while time.time() <= soon + 1:
                    await asyncio.sleep(0.2)
            return [before, await ask(base)]

    before, expired = asyncio.run(scenario())
    bits = decode_bitmap(before.pop("bitmap"), len(chunks))  # type: ignore[arg-type]
    assert bits == [True] * HALF_CHUNKS + [False] * HALF_CHUNKS
    assert before == {"have": 200, "envelope": 200, "chunk": 200, "size": CHUNK_SIZE,
                      "absent": 404}  # fmt: skip
    assert (expired["have"], expired["envelope"], expired["chunk"]) == (404, 404, 404)

    # No longer trusted: nothing of it is offered or served.
    first, _ = two_part_bundle(publisher, tmp_path, "kept")
    home2 = trusting(tmp_path / "h2", publisher)
    holding_part(home2, first)
    manifest, chunks = chunk_list(home2)
    fingerprint = json.loads(meshdrop_in_process("--home", home2, "trust", "ls", "--json").out)
    meshdrop_in_process("--home", home2, "trust", "rm", fingerprint["fingerprint"], check=True)
    with Store(home2) as store:
        assert PeerView(store).snapshot().partials == {}

    async def untrusted() -> list[int]:
        async with running(home2) as (_, base):
            paths = [f"have/{manifest.hex()}", f"envelope/{manifest.hex()}",
                     f"chunk/{chunks[0].hex()}"]  # fmt: skip
            return [(await get(f"{base}/peer/v1/{p}"))[0] for p in paths]

    assert asyncio.run(untrusted()) == [404, 404, 404]


def test_two_half_filled_nodes_complete_each_other_after_the_source_left(
    lan: Lan,  # noqa: F811
    nodes: Nodes,
    tmp_path: Path,
    publisher: Publisher,
) -> None:
    """Network namespaces on a bridge, real multicast. The source packed the bundle as two
    courier parts and is gone (it never joins the network): B holds the first half, C the
    second, deterministically. Each must fetch exactly the half it lacks from the other."""
    first, second = two_part_bundle(publisher, tmp_path, "big")
    b = trusting(tmp_path / "b", publisher)
    c = trusting(tmp_path / "c", publisher)
    holding_part(b, first)
    holding_part(c, second)
    node_b = start_in(nodes, lan, lan.add_host(1), b)
    node_c = start_in(nodes, lan, lan.add_host(2), c)
    wait_until(lambda: "big" in names(b) and "big" in names(c), what="both to complete")
    for node in (node_b, node_c):
        status = wait_until(
            lambda node=node: (s := node.status())["fetched"]["bundles"] == 1 and s,  # type: ignore[misc]
            what="the fetch counted",
        )
        half = HALF_CHUNKS * CHUNK_SIZE
        assert status["fetched"]["chunks"] == HALF_CHUNKS  # nothing fetched twice
        assert status["fetched"]["bytes"] == half
        assert status["served"]["chunks"] == HALF_CHUNKS
    for home in (b, c):
        checked = run_meshdrop("--home", home, "fsck", "--json")
        assert checked.code == 0, checked.err
        report = json.loads(checked.out)
        assert report["chunks_checked"] == 2 * HALF_CHUNKS and report["damaged_chunks"] == 0
    for node in (node_b, node_c):
        assert not [e for e in node.events if e["event"] in ("bad-peer", "error")]
