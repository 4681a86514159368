"""Many small bundles from a real peer on 127.0.0.1 (issue 16): their envelopes are checked
and their chunks stored many per store-thread hand-off (transports/lan/coalesce.py), all
while the one shared hold of the ingest lock is held (transports/lan/sharedhold.py), so
``fsck --repair`` could never start in between; the hold is let go when the sync ends,
and every bundle arrives byte for byte."""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path
from typing import Any

import pytest

from conftest import make_publisher, meshdrop_in_process, pack, write_tree
from meshdrop.store.store import Store
from meshdrop.transports.lan.events import Event
from meshdrop.transports.lan.node import Node, NodeConfig
from meshdrop.transports.lan.storeio import StoreIO

BUNDLES = 40


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("small-handoffs")
    publisher = make_publisher(root / "publisher")
    packed = root / "packed"
    packed.mkdir()
    for i in range(BUNDLES):
        src = write_tree(root / f"src-{i}", {"a.bin": os.urandom(3000 + i)})
        pack(publisher, src, packed / f"small-{i}.mdrop", f"small-{i}")
    source = root / "source"
    meshdrop_in_process("--home", source, "trust", "add", "--yes", publisher.pub, check=True)
    meshdrop_in_process("--home", source, "import", packed, check=True)
    node = root / "node"
    meshdrop_in_process("--home", node, "trust", "add", "--yes", publisher.pub, check=True)
    return {"source": source, "node": node}


def repair_could_start(home: Path) -> bool:
    """Whether `fsck --repair` (which takes the ingest lock exclusively) could start now."""
    fd = os.open(home / "ingest.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def test_small_bundles_are_checked_and_stored_in_hand_offs_under_the_ingest_lock(
    world: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = world["node"]
    handoffs: dict[str, list[int]] = {"check_offers": [], "stage_chunks": []}
    repair_possible: list[bool] = []
    for name, sizes in handoffs.items():
        real = getattr(StoreIO, name)

        async def watched(
            self: StoreIO, items: list[Any], real: Any = real, sizes: list[int] = sizes
        ) -> Any:
            repair_possible.append(repair_could_start(home))
            sizes.append(len(items))
            return await real(self, items)

        monkeypatch.setattr(StoreIO, name, watched)

    async def scenario() -> None:
        events: list[Event] = []
        source = Node(
            NodeConfig(home=world["source"], bind="127.0.0.1", port=0, discovery=False),
            lambda e: None,
        )
        await source.start()
        node = Node(
            NodeConfig(
                home=home,
                bind="127.0.0.1",
                port=0,
                peers=(("127.0.0.1", source.port),),
                discovery=False,
            ),
            events.append,
        )
        await node.start()
        try:
            async with asyncio.timeout(30):
                while sum(e["event"] == "bundle" for e in events) < BUNDLES:
                    await asyncio.sleep(0.05)
                while not any(e["event"] == "sync" for e in events):
                    await asyncio.sleep(0.05)
                while not repair_could_start(home):  # let go once no sync fetches
                    await asyncio.sleep(0.05)
        finally:
            await node.stop()
            await source.stop()

    asyncio.run(scenario())
    assert repair_possible and not any(repair_possible), "fsck --repair could have started"
    # Each bundle's envelope checked once, and its one chunk stored once ...
    assert sum(handoffs["check_offers"]) == BUNDLES
    assert sum(handoffs["stage_chunks"]) == BUNDLES
    # ... in fewer hand-offs than bundles (a batch answer wakes many at once).
    assert len(handoffs["check_offers"]) < BUNDLES
    assert len(handoffs["stage_chunks"]) < BUNDLES
    with Store(home) as store, Store(world["source"]) as source_store:
        assert sorted(b.name for b in store.list_bundles()) == sorted(
            b.name for b in source_store.list_bundles()
        )
        for bundle in store.list_bundles():
            for entry in store.manifest(bundle).files:
                mine = b"".join(store.read_file(entry, bundle.name))
                theirs = b"".join(source_store.read_file(entry, bundle.name))
                assert mine == theirs and len(mine) == entry.size
