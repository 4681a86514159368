"""Small bundles are committed in groups (IngestSession): by `meshdrop import FOLDER`
(store/batchimport.py), by a courier folder's import, and by the LAN sync's group commit.
One sync and one index transaction per batch, results in the order the files came, each
bundle still checked and committed on its own."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import (
    Publisher,
    count_commit_batches,
    make_publisher,
    meshdrop_in_process,
    pack,
    run_meshdrop,
    write_tree,
)
from meshdrop.core.verify import VerifiedManifest
from meshdrop.errors import IntegrityError, MissingChunksError, StoreError
from meshdrop.store import ingest
from meshdrop.store.batchimport import BatchImport
from meshdrop.store.bundlefile import open_bundle_file
from meshdrop.store.crashpoints import ENV as CRASH_ENV
from meshdrop.store.models import ImportResult, Outcome
from meshdrop.store.store import Store
from meshdrop.transports.courier.importer import CourierImport
from meshdrop.transports.courier.outcome import Status
from meshdrop.transports.lan.groupcommit import GroupCommit
from meshdrop.transports.lan.storeio import StoreIO


@dataclass
class Bundles:
    publisher: Publisher
    folder: Path  # bundle files, or a courier folder

    def fresh_node(self, home: Path) -> Path:
        meshdrop_in_process("--home", home, "trust", "add", "--yes", self.publisher.pub, check=True)
        return home


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    root = tmp_path_factory.mktemp("batch-import")
    publisher = make_publisher(root / "publisher")
    folder = root / "bundles"
    folder.mkdir()
    for i in range(1, 6):
        src = write_tree(root / f"src-a{i}", {"index.md": f"# a {i}\n".encode() * 40})
        pack(publisher, src, folder / f"a-{i}.mdrop", f"a-{i}", "--version", "1")
    for version in (1, 2):
        src = write_tree(root / f"src-b{version}", {"index.md": f"# b {version}\n".encode()})
        pack(publisher, src, folder / f"b-v{version}.mdrop", "b", "--version", str(version))
    return Bundles(publisher, folder)  # a-1 .. a-5, b-v1, b-v2 (in that order)


def files(bundles: Bundles) -> list[Path]:
    return sorted(bundles.folder.glob("*.mdrop"))


def stored(home: Path) -> dict[str, int]:
    with Store(home) as store:
        return {b.name: b.version for b in store.list_bundles()}


def test_results_come_in_file_order_from_batches_of_the_configured_size(
    bundles: Bundles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest, "COMMIT_BATCH", 3)
    sizes = count_commit_batches(monkeypatch)
    home = bundles.fresh_node(tmp_path / "node")
    results = []
    with Store(home) as store, BatchImport(store) as batch:
        for path in files(bundles):
            results += batch.add(path)
        results += batch.finish()
    assert sizes == [3, 3, 1]
    assert [r.path for r in results] == files(bundles)
    outcomes = [r.outcome for r in results]
    assert all(isinstance(o, ImportResult) for o in outcomes), outcomes
    kinds = [o.outcome for o in outcomes if isinstance(o, ImportResult)]
    # b v2 is committed right after b v1, in the same batch: it replaces it.
    assert kinds == [Outcome.IMPORTED] * 6 + [Outcome.REPLACED]
    assert stored(home) == {**{f"a-{i}": 1 for i in range(1, 6)}, "b": 2}


def test_a_damaged_file_in_a_batch_is_refused_alone(bundles: Bundles, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for path in files(bundles):
        (folder / path.name).write_bytes(path.read_bytes())
    damaged = folder / "a-3.mdrop"
    data = bytearray(damaged.read_bytes())
    data[-10] ^= 0xFF  # in its data: the envelope verifies, a chunk does not
    damaged.write_bytes(bytes(data))
    home = bundles.fresh_node(tmp_path / "node")
    with Store(home) as store, BatchImport(store) as batch:
        results = [*[r for p in sorted(folder.iterdir()) for r in batch.add(p)], *batch.finish()]
    outcome = {r.path.name: r.outcome for r in results}
    assert isinstance(outcome.pop("a-3.mdrop"), IntegrityError)
    assert all(isinstance(o, ImportResult) for o in outcome.values())
    assert "a-3" not in stored(home) and len(stored(home)) == 5


def test_the_command_reports_every_file_in_order(bundles: Bundles, tmp_path: Path) -> None:
    home = bundles.fresh_node(tmp_path / "node")
    result = run_meshdrop("--home", home, "import", "--json", "-q", bundles.folder)
    assert result.code == 0, result.err
    lines = [json.loads(x) for x in result.out.splitlines()]
    assert [Path(x["files"][0]).name for x in lines] == [p.name for p in files(bundles)]
    assert [x["outcome"] for x in lines][-1] == "imported, replacing an older version"


ALREADY_THERE = ["already had"] * 5 + ["refused", "already had"]  # b v1 is older now
FRESH = ["imported"] * 6 + ["imported, replacing an older version"]


@pytest.mark.parametrize(
    ("point", "visible", "rerun"),
    [("after-chunk", 0, FRESH), ("after-commit", 6, ALREADY_THERE)],
)
def test_a_run_killed_in_a_batch_shows_all_or_none_of_it_and_a_rerun_completes(
    bundles: Bundles, tmp_path: Path, point: str, visible: int, rerun: list[str]
) -> None:
    home = bundles.fresh_node(tmp_path / "node")
    crashed = run_meshdrop("--home", home, "import", "-q", bundles.folder, env={CRASH_ENV: point})
    assert crashed.code == -9, crashed  # SIGKILL: no clean-up ran
    assert len(stored(home)) == visible  # the seven files are one batch
    again = run_meshdrop("--home", home, "import", "--json", "-q", bundles.folder)
    assert [json.loads(x)["outcome"] for x in again.out.splitlines()] == rerun, again.out
    assert stored(home) == {**{f"a-{i}": 1 for i in range(1, 6)}, "b": 2}


# A courier folder

NAMES = [f"small-{i}" for i in range(7)]


@pytest.fixture(scope="module")
def stick(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    root = tmp_path_factory.mktemp("batches")
    publisher = make_publisher(root / "publisher")
    source = root / "source"
    meshdrop_in_process("--home", source, "trust", "add", "--yes", publisher.pub, check=True)
    for name in NAMES:
        src = write_tree(root / "src" / name, {"index.md": f"# {name}\n".encode() * 50})
        bundle = pack(publisher, src, root / f"{name}.mdrop", name)
        meshdrop_in_process("--home", source, "import", "-q", bundle, check=True)
    (root / "stick").mkdir()
    meshdrop_in_process("--home", source, "export", root / "stick", "-q", check=True)
    return Bundles(publisher, root / "stick" / "meshdrop")


def test_small_bundles_are_committed_in_batches_and_all_go_in(
    stick: Bundles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest, "COMMIT_BATCH", 3)
    batches = count_commit_batches(monkeypatch)
    home = stick.fresh_node(tmp_path / "node")
    with Store(home) as store:
        reports = CourierImport(store).run(stick.folder)
    assert batches == [3, 3, 1]
    assert {r.name: r.status for r in reports if r.name in NAMES} == dict.fromkeys(
        NAMES, Status.IMPORTED
    )
    assert set(stored(home)) == set(NAMES)


def test_a_bundle_that_fails_at_commit_fails_alone_and_leaves_no_rows(
    stick: Bundles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Store._insert

    def failing(self: Store, conn: object, verified: VerifiedManifest) -> ImportResult:
        result = real(self, conn, verified)  # type: ignore[arg-type]
        if verified.manifest.name == "small-3":  # after its rows went in: they must go
            raise StoreError("the index refused small-3")
        return result

    monkeypatch.setattr(Store, "_insert", failing)
    home = stick.fresh_node(tmp_path / "node")
    with Store(home) as store:
        reports = CourierImport(store).run(stick.folder)
        rows = store.conn.execute("SELECT count(*) FROM bundles WHERE name = 'small-3'").fetchone()
    statuses = {r.name: r.status for r in reports if r.name in NAMES}
    assert statuses.pop("small-3") is not Status.IMPORTED
    assert set(statuses.values()) == {Status.IMPORTED}
    assert rows == (0,)
    assert set(stored(home)) == set(NAMES) - {"small-3"}


@pytest.mark.parametrize(
    ("point", "visible", "rerun"),
    [("after-chunk", set(), "imported"), ("after-commit", set(NAMES), "already had")],
)
def test_a_node_killed_in_a_batch_shows_all_or_none_of_it_and_a_rerun_completes(
    stick: Bundles, tmp_path: Path, point: str, visible: set[str], rerun: str
) -> None:
    home = stick.fresh_node(tmp_path / "node")
    crashed = run_meshdrop(
        "--home", home, "import", "-q", stick.folder.parent, env={CRASH_ENV: point}
    )
    assert crashed.code == -9, crashed  # SIGKILL: no clean-up ran
    assert set(stored(home)) == visible  # the seven bundles are one batch
    again = run_meshdrop("--home", home, "import", "--json", "-q", stick.folder.parent)
    assert again.code == 0, again.err
    assert again.out.count(f'"outcome": "{rerun}"') == len(NAMES), again.out
    assert set(stored(home)) == set(NAMES)


# The LAN sync's group commit (transports/lan/groupcommit.py): bundles whose chunks are
# stored, committed together through the node's real StoreIO (its writer thread).


def accepted(home: Path, paths: list[Path]) -> list[VerifiedManifest]:
    """Each bundle accepted and its chunks stored, as the sync leaves it before commit."""
    out = []
    with Store(home) as store:
        for path in paths:
            with open_bundle_file(path) as bundle:
                verified = store.accept(bundle.envelope)
                assert isinstance(verified, VerifiedManifest)
                for ref in store.missing_chunks(verified):
                    store.store_chunk(ref, bundle.read_chunk(ref.offset, ref.size))
            out.append(verified)
    return out


def commit_as_the_sync_does(
    home: Path, verified: list[VerifiedManifest]
) -> tuple[list[ImportResult | BaseException], int]:
    """Each bundle's commit through a GroupCommit, all begun at once; the results (or
    errors) in order, and the number of groups committed."""

    async def go() -> tuple[list[ImportResult | BaseException], int]:
        storeio = StoreIO(home)
        committer = GroupCommit(storeio, asyncio.ensure_future)
        try:
            commits = (committer.commit(v, set()) for v in verified)
            results = await asyncio.gather(*commits, return_exceptions=True)
            return list(results), committer.groups
        finally:
            await storeio.aclose()

    return asyncio.run(go())


def test_the_sync_commits_bundles_that_finish_together_in_one_group(
    bundles: Bundles, tmp_path: Path
) -> None:
    home = bundles.fresh_node(tmp_path / "node")
    paths = [p for p in files(bundles) if p.name.startswith("a-")]
    verified = accepted(home, paths)
    results, groups = commit_as_the_sync_does(home, verified)
    assert [r.outcome for r in results if isinstance(r, ImportResult)] == [Outcome.IMPORTED] * len(
        paths
    )
    assert groups == 1
    assert set(stored(home)) == {f"a-{i}" for i in range(1, 6)}


def test_a_bundle_refused_in_a_group_commit_fails_alone(bundles: Bundles, tmp_path: Path) -> None:
    home = bundles.fresh_node(tmp_path / "node")
    paths = [p for p in files(bundles) if p.name.startswith("a-")]
    verified = accepted(home, paths)
    with Store(home) as store:  # another writer removed a chunk of a-2 meanwhile
        ref = verified[1].manifest.chunk_refs()[0]
        store.chunks.delete([ref.digest])
    results, _groups = commit_as_the_sync_does(home, verified)
    assert isinstance(results[1], MissingChunksError)
    assert all(isinstance(r, ImportResult) for i, r in enumerate(results) if i != 1)
    assert set(stored(home)) == {f"a-{i}" for i in (1, 3, 4, 5)}
