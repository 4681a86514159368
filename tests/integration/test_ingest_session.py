"""One ingest session for every source (issue 13): a file, a folder, a courier stick and a
LAN peer all bring content in through ``IngestSession``, so they all hold the ingest lock
while they write chunks (``fsck --repair`` waits for them and removes nothing of theirs),
all refuse below the free-space floor in the same way, and only the session commits."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import (
    Publisher,
    make_publisher,
    meshdrop_executable,
    meshdrop_in_process,
    pack,
    peak_memory_kib,
    run_meshdrop,
    write_tree,
)
from meshdrop.core.manifest import CHUNK_SIZE
from meshdrop.errors import IntegrityError
from meshdrop.store.batchimport import BatchImport
from meshdrop.store.ingest import IngestSession
from meshdrop.store.store import Store
from meshdrop.transports.courier.importer import CourierImport
from meshdrop.transports.lan.events import Event

FILES = {"index.html": b"<p>news</p>", "big.bin": os.urandom(2 * CHUNK_SIZE + 11)}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ingest")
    publisher = make_publisher(root / "publisher")
    (root / "in").mkdir()
    bundle = pack(publisher, write_tree(root / "src", FILES), root / "in" / "news.mdrop", "news")
    source = root / "source"  # the set-up runs its commands in process
    meshdrop_in_process("--home", source, "trust", "add", "--yes", publisher.pub, check=True)
    meshdrop_in_process("--home", source, "import", bundle, check=True)
    stick = root / "stick"
    stick.mkdir()
    meshdrop_in_process("--home", source, "export", stick, "-q", check=True)
    return {"publisher": publisher.folder, "bundle": bundle, "stick": stick, "source": source}


def fresh_node(world: dict[str, Path], home: Path) -> Path:
    pub = Publisher(world["publisher"]).pub
    meshdrop_in_process("--home", home, "trust", "add", "--yes", pub, check=True)
    return home


def repair_could_start(home: Path) -> bool:
    """Whether `fsck --repair` (which takes the ingest lock exclusively) could start now."""
    fd = os.open(home / "ingest.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def watch_puts(monkeypatch: pytest.MonkeyPatch, home: Path) -> list[bool]:
    """For each chunk a session puts, whether fsck --repair could have started then."""
    seen: list[bool] = []
    real = IngestSession.put

    def put(self: IngestSession, ref: object, data: object) -> Path:
        seen.append(repair_could_start(home))
        return real(self, ref, data)  # type: ignore[arg-type]

    monkeypatch.setattr(IngestSession, "put", put)
    return seen


def import_file(home: Path, world: dict[str, Path]) -> None:
    with Store(home) as store:
        store.import_file(world["bundle"])


def import_folder(home: Path, world: dict[str, Path]) -> None:
    with Store(home) as store, BatchImport(store) as batch:
        batch.add(world["bundle"])
        batch.finish()


def import_stick(home: Path, world: dict[str, Path]) -> None:
    with Store(home) as store:
        CourierImport(store).run(world["stick"] / "meshdrop")


SOURCES: dict[str, Callable[[Path, dict[str, Path]], None]] = {
    "file": import_file,
    "folder": import_folder,
    "stick": import_stick,
}


@pytest.mark.parametrize("source", SOURCES)
def test_the_ingest_lock_is_held_while_chunks_are_written(
    source: str, world: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = fresh_node(world, tmp_path / "node")
    seen = watch_puts(monkeypatch, home)
    SOURCES[source](home, world)
    assert seen and not any(seen), "fsck --repair could have started mid-ingest"
    assert repair_could_start(home)  # released at the end
    with Store(home) as store:
        assert [b.name for b in store.list_bundles()] == ["news"]


def test_a_peer_holds_the_ingest_lock_while_it_fetches(
    world: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node syncing from a real peer server on 127.0.0.1 stores every chunk with the
    ingest lock held."""
    from meshdrop.transports.lan.node import Node, NodeConfig
    from meshdrop.transports.lan.storeio import StoreIO

    home = fresh_node(world, tmp_path / "node")
    seen: list[bool] = []
    for name in ("store_chunk", "stage_chunk"):
        real = getattr(StoreIO, name)

        def watched(self: StoreIO, ref: object, data: object, real: object = real) -> object:
            seen.append(repair_could_start(home))
            return real(self, ref, data)  # type: ignore[operator]

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
                while not any(e["event"] == "bundle" for e in events):
                    await asyncio.sleep(0.05)
        finally:
            await node.stop()
            await source.stop()

    asyncio.run(scenario())
    assert seen and not any(seen), "fsck --repair could have started mid-sync"
    assert repair_could_start(home)


def test_fsck_repair_started_mid_ingest_waits_and_loses_nothing(
    world: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real `meshdrop fsck --repair` started while a folder import is between its first
    chunk and its commit waits for the import, then finds nothing to remove."""
    home = fresh_node(world, tmp_path / "node")
    started = threading.Event()
    release = threading.Event()
    real = IngestSession.put

    def slow_put(self: IngestSession, ref: object, data: object) -> Path:
        path = real(self, ref, data)  # type: ignore[arg-type]
        started.set()
        release.wait(30)
        return path

    monkeypatch.setattr(IngestSession, "put", slow_put)
    importer = threading.Thread(target=import_folder, args=(home, world))
    importer.start()
    assert started.wait(30)
    fsck = subprocess.Popen(
        [meshdrop_executable(), "--home", str(home), "fsck", "--repair", "--json", "-q"],
        stdout=subprocess.PIPE,
        text=True,
    )
    with pytest.raises(subprocess.TimeoutExpired):
        fsck.wait(1.0)  # it waits for the ingest lock
    release.set()
    importer.join(30)
    out, _ = fsck.communicate(timeout=60)
    report = json.loads(out)
    assert fsck.returncode == 0
    assert report["orphans_removed"] == 0 and report["temp_files_removed"] == 0
    out_dir = tmp_path / "out"
    meshdrop_in_process("--home", home, "get", "news", "-o", out_dir, check=True)
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == FILES


@pytest.mark.parametrize("source", ["file", "folder", "stick"])
def test_the_free_space_floor_refuses_the_same_way_on_every_source(
    source: str, world: dict[str, Path], tmp_path: Path
) -> None:
    home = fresh_node(world, tmp_path / "node")
    target = {
        "file": world["bundle"],
        "folder": world["bundle"].parent,
        "stick": world["stick"],
    }[source]
    result = run_meshdrop(
        "--home", home, "import", target, "--json", env={"MESHDROP_MIN_FREE": str(10**18)}
    )
    assert result.code != 0 and "Traceback" not in result.err
    lines = [json.loads(line) for line in result.out.splitlines()]
    refused = [line for line in lines if line["name"] == "news" or line["outcome"] == "refused"]
    assert refused and all(line["outcome"] == "refused" for line in refused), lines
    assert all("not enough free disk space" in str(line["detail"]) for line in refused)
    assert all(line["exit_code"] == 7 for line in refused)
    with Store(home) as store:
        assert store.list_bundles() == []
    assert not [p for p in (home / "chunks").rglob("*") if p.is_file()]


def test_every_import_json_line_has_one_shape(world: dict[str, Path], tmp_path: Path) -> None:
    """A file, a folder and a stick in one run: every line carries the same keys."""
    home = fresh_node(world, tmp_path / "node")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "bad.mdrop").write_bytes(b"not a bundle")
    result = run_meshdrop("--home", home, "import", world["stick"], world["bundle"], junk, "--json")
    lines = [json.loads(line) for line in result.out.splitlines()]
    assert len(lines) >= 3
    keys = {"files", "folder", "outcome", "detail", "name", "version", "publisher"}
    keys |= {"exit_code", "withdrawn"}
    assert all(set(line) == keys for line in lines), lines
    by_outcome = {line["outcome"]: line for line in lines}
    assert by_outcome["refused"]["exit_code"] == 3
    assert by_outcome["imported"]["exit_code"] == 0
    assert by_outcome["already had"]["name"] == "news"


def test_a_folder_of_refused_files_is_imported_in_bounded_memory_and_reported_as_it_goes(
    world: dict[str, Path], tmp_path: Path
) -> None:
    """150 copies of a bundle with one flipped data bit (each refused after its 2 MiB of
    chunks were read): nothing of a refused file is kept, so peak memory stays far below
    what 150 MiB of read chunks would take, and each refusal is final at once."""
    data = bytearray(world["bundle"].read_bytes())
    data[-CHUNK_SIZE] ^= 1  # a byte of the big file's data: its chunk no longer matches
    folder = tmp_path / "refused"
    folder.mkdir()
    for i in range(150):
        (folder / f"copy-{i:03}.mdrop").write_bytes(data)
    home = fresh_node(world, tmp_path / "node")
    code, kib = peak_memory_kib(
        [meshdrop_executable(), "--home", str(home), "import", str(folder), "-q"]
    )
    assert code != 0
    assert kib < 100 * 1024, f"peak {kib} KiB"
    with Store(home) as store, BatchImport(store) as batch:
        for path in sorted(folder.iterdir())[:3]:
            [result] = batch.add(path)  # final at once: printed before the next file
            assert isinstance(result.outcome, IntegrityError)
            assert result.outcome.__traceback__ is None
