"""A stick of many small bundles is committed in batches (Store.commit_many): one sync and
one index transaction per batch, each bundle still checked and committed on its own."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import Publisher, make_publisher, pack, run_meshdrop, write_tree
from meshdrop.core.verify import VerifiedManifest
from meshdrop.errors import StoreError
from meshdrop.store.crashpoints import ENV as CRASH_ENV
from meshdrop.store.models import ImportResult
from meshdrop.store.store import Store
from meshdrop.transports.courier import importer
from meshdrop.transports.courier.importer import CourierImport, Status

NAMES = [f"small-{i}" for i in range(7)]


@dataclass
class Stick:
    publisher: Publisher
    folder: Path  # the courier folder on it

    def fresh_node(self, home: Path) -> Path:
        run_meshdrop("--home", home, "trust", "add", self.publisher.pub, check=True)
        return home


@pytest.fixture(scope="module")
def stick(tmp_path_factory: pytest.TempPathFactory) -> Stick:
    root = tmp_path_factory.mktemp("batches")
    publisher = make_publisher(root / "publisher")
    source = root / "source"
    run_meshdrop("--home", source, "trust", "add", publisher.pub, check=True)
    for name in NAMES:
        src = write_tree(root / "src" / name, {"index.md": f"# {name}\n".encode() * 50})
        bundle = pack(publisher, src, root / f"{name}.mdrop", name)
        run_meshdrop("--home", source, "import", "-q", bundle, check=True)
    (root / "stick").mkdir()
    run_meshdrop("--home", source, "export", root / "stick", "-q", check=True)
    return Stick(publisher, root / "stick" / "meshdrop")


def stored_names(home: Path) -> set[str]:
    with Store(home) as store:
        return {b.name for b in store.list_bundles()}


def test_small_bundles_are_committed_in_batches_and_all_go_in(
    stick: Stick, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "COMMIT_BATCH", 3)
    batches: list[int] = []
    real = Store.commit_many

    def counting(
        self: Store, items: list[tuple[VerifiedManifest, set[Path]]]
    ) -> list[ImportResult | Exception]:
        batches.append(len(items))
        return real(self, items)  # type: ignore[return-value]

    monkeypatch.setattr(Store, "commit_many", counting)
    home = stick.fresh_node(tmp_path / "node")
    with Store(home) as store:
        reports = CourierImport(store).run(stick.folder)
    assert batches == [3, 3, 1]
    assert {r.name: r.status for r in reports if r.name in NAMES} == dict.fromkeys(
        NAMES, Status.IMPORTED
    )
    assert stored_names(home) == set(NAMES)


def test_a_bundle_that_fails_at_commit_fails_alone_and_leaves_no_rows(
    stick: Stick, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
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
    assert stored_names(home) == set(NAMES) - {"small-3"}


@pytest.mark.parametrize(
    ("point", "visible", "rerun"),
    [("after-chunk", set(), "imported"), ("after-commit", set(NAMES), "already had")],
)
def test_a_node_killed_in_a_batch_shows_all_or_none_of_it_and_a_rerun_completes(
    stick: Stick, tmp_path: Path, point: str, visible: set[str], rerun: str
) -> None:
    home = stick.fresh_node(tmp_path / "node")
    crashed = run_meshdrop(
        "--home", home, "import", "-q", stick.folder.parent, env={CRASH_ENV: point}
    )
    assert crashed.code == -9, crashed  # SIGKILL: no clean-up ran
    assert stored_names(home) == visible  # the seven bundles are one batch
    again = run_meshdrop("--home", home, "import", "--json", "-q", stick.folder.parent)
    assert again.code == 0, again.err
    assert again.out.count(f'"outcome": "{rerun}"') == len(NAMES), again.out
    assert stored_names(home) == set(NAMES)
