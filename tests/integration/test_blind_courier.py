"""Blind courier folders (issue 20, FORMAT.md section 25): a node in a circle exports a
folder of random-looking files that only the circle's members find and read; they import
it through the one verified ingest path; top-up, partial import, resume, want files, drops
and a rekey's grace period work as for open folders; a stranger sees random files."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from courierkit import (
    BUNDLES,
    PART_SIZE,
    Setup,
    assert_bundle_bytes,
    import_json,
    listed,
    outcomes,
    setup_fixture,  # noqa: F401 (the `setup` fixture)
    snapshot,
)
from dropkit import add_drops, drop_id, held_ids, make_drop

from conftest import meshdrop_in_process, pack, run_meshdrop, write_tree
from meshdrop.core.blind import Kind, blind_key, looks_blind
from meshdrop.store.circles import CircleStore
from meshdrop.store.crashpoints import ENV as CRASH_ENV
from meshdrop.transports.courier.blindfolder import BlindScan, scan_blind

ALL = set(BUNDLES)


@dataclass
class Blind:
    base: Setup
    source: Path  # holds every bundle; made the circle "dorm"
    member: Path  # trusts the publisher, joined "dorm", holds nothing
    stick: Path  # a pristine stick: stick/backup/ exported blind with PART_SIZE

    def key(self, home: Path | None = None) -> bytes:
        book = CircleStore(home or self.source).load()
        return blind_key(book.circles[0].circle.current.secret)

    def fresh_member(self, dest: Path) -> Path:
        shutil.copytree(self.member, dest)
        return dest

    def fresh_stick(self, dest: Path) -> Path:
        shutil.copytree(self.stick, dest, symlinks=True)
        return dest

    def scan(self, stick: Path) -> BlindScan:
        return scan_blind(stick / "backup", self.key())

    def files_of(self, stick: Path, bundle: str) -> dict[str, Path]:
        """Inner name -> blind file, for the files of ``bundle``."""
        return {e.name: e.path for e in self.scan(stick).entries if e.name.startswith(bundle)}


_BUILT: list[Blind] = []


def join(home: Path, invite: str) -> None:
    meshdrop_in_process("--home", home, "circle", "join", invite, "--name", "dorm", check=True)


def build_blind(setup: Setup) -> Blind:
    root = setup.root / "blind"
    root.mkdir()
    source = root / "source"
    shutil.copytree(setup.source, source)
    made = meshdrop_in_process("--home", source, "circle", "new", "dorm", "--json", check=True)
    invite = json.loads(made.out)["invite"]
    member = setup.fresh_node(root / "member")
    join(member, invite)
    stick = root / "stick"
    stick.mkdir()
    step = ("--home", source, "export", stick, "--part-size", PART_SIZE, "-q")
    meshdrop_in_process(*step, check=True)
    return Blind(setup, source, member, stick)


@pytest.fixture(name="blind")
def blind_fixture(setup: Setup) -> Blind:
    if not _BUILT:
        _BUILT.append(build_blind(setup))
    return _BUILT[0]


def export(home: Path, stick: Path, *extra: str) -> None:
    result = run_meshdrop("--home", home, "export", stick, "--part-size", PART_SIZE, "-q", *extra)
    assert result.code == 0 and "Traceback" not in result.err, result.err


def test_a_member_imports_a_blind_stick_and_reads_every_bundle(
    blind: Blind, tmp_path: Path
) -> None:
    folder = blind.stick / "backup"
    names = sorted(p.name for p in folder.iterdir())
    assert ".nomedia" in names
    assert all(looks_blind(n) for n in names if n != ".nomedia"), names
    node = blind.fresh_member(tmp_path / "node")
    result, lines = import_json(node, blind.stick)
    assert result.code == 0, lines
    assert outcomes(lines) == {
        **dict.fromkeys(BUNDLES, "imported"),
        "Test Publisher": ("publisher already known"),
    }
    assert listed(node) == dict.fromkeys(BUNDLES, 1)
    assert_bundle_bytes(node, "big", tmp_path / "big")


def test_a_stranger_sees_no_courier_folder_and_the_stick_is_untouched(
    blind: Blind, tmp_path: Path
) -> None:
    stick = blind.fresh_stick(tmp_path / "stick")
    before = snapshot(stick)
    result = run_meshdrop("--home", blind.base.fresh_node(tmp_path / "n"), "import", stick)
    assert result.code == 2 and "Traceback" not in result.err
    assert result.err.strip() == f"meshdrop: no .mdrop files found in {stick}"  # as if empty
    assert listed(tmp_path / "n") == {}
    assert snapshot(stick) == before


def test_two_exports_of_the_same_content_differ_in_names_and_bytes(
    blind: Blind, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    export(blind.source, other)
    one = {p.name: p.read_bytes() for p in (blind.stick / "backup").iterdir()}
    two = {p.name: p.read_bytes() for p in (other / "backup").iterdir()}
    marker = {n for n in one if n in two and n != ".nomedia"}
    assert len(marker) == 1  # the marker's name is the circle key's; its bytes still differ
    assert sorted(len(b) for b in one.values()) == sorted(len(b) for b in two.values())
    assert not {n for n in one if n not in marker and n != ".nomedia"} & set(two)
    assert not set(one.values()) - {b""} & set(two.values())


def test_a_second_export_writes_nothing(blind: Blind, tmp_path: Path) -> None:
    stick = blind.fresh_stick(tmp_path / "stick")
    before = snapshot(stick)
    result = run_meshdrop(
        "--home", blind.source, "export", stick, "--part-size", PART_SIZE, "--json", "-q"
    )
    lines = [json.loads(x) for x in result.out.splitlines() if x.strip()]
    assert {x["outcome"] for x in lines if x.get("name")} == {"already there"}, lines
    assert snapshot(stick) == before


def test_a_stick_missing_a_part_imports_the_rest_and_a_top_up_completes_it(
    blind: Blind, tmp_path: Path
) -> None:
    stick = blind.fresh_stick(tmp_path / "stick")
    parts = blind.files_of(stick, "big-")
    parts[sorted(parts)[1]].unlink()
    node = blind.fresh_member(tmp_path / "node")
    result, lines = import_json(node, stick)
    assert result.code == 1
    assert outcomes(lines)["big"] == "incomplete"
    assert "parts missing or damaged: 2 of 4" in str(lines), lines
    assert set(listed(node)) == ALL - {"big"}
    export(blind.source, stick)  # writes only the missing part
    assert len(blind.files_of(stick, "big-")) == 4
    result, lines = import_json(node, stick)
    assert result.code == 0 and outcomes(lines)["big"] == "imported", lines


def test_an_export_cut_mid_part_leaves_only_temps_and_the_next_one_finishes(
    blind: Blind, tmp_path: Path
) -> None:
    stick = tmp_path / "stick"
    stick.mkdir()
    cut = run_meshdrop(
        "--home",
        blind.source,
        "export",
        stick,
        "--part-size",
        PART_SIZE,
        "-q",
        env={CRASH_ENV: "courier-export-part-2"},
    )
    assert cut.code != 0
    leftovers = [p for p in (stick / "backup").iterdir() if p.name.startswith(".tmp-")]
    assert leftovers
    assert all(p.stat().st_size > 0 for p in leftovers)
    export(blind.source, stick)
    assert not [p for p in (stick / "backup").iterdir() if p.name.startswith(".tmp-")]
    result, lines = import_json(blind.fresh_member(tmp_path / "node"), stick)
    assert result.code == 0 and set(outcomes(lines)) >= ALL, lines


def test_the_want_file_is_sealed_and_the_next_export_reads_it(blind: Blind, tmp_path: Path) -> None:
    stick = tmp_path / "stick"
    stick.mkdir()
    node = blind.fresh_member(tmp_path / "node")
    result = run_meshdrop("--home", node, "want", stick)
    assert result.code == 0 and "Traceback" not in result.err, result.err
    folder = stick / "backup"
    raw = b"".join(p.read_bytes() for p in folder.iterdir())
    assert b"MDWANT" not in raw and b"want" not in raw
    scan = scan_blind(folder, blind.key())
    assert [e.name for e in scan.of_kind(Kind.WANT)] == ["want.mdw"]
    result = run_meshdrop("--home", blind.source, "export", stick, "--part-size", PART_SIZE)
    assert result.code == 0 and "want file" not in result.out + result.err, result.out


def test_drops_travel_inside_the_blind_folder(blind: Blind, tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(blind.source, source)
    drops = [make_drop(f"report {n}") for n in range(2)]
    add_drops(source, *drops)
    stick = tmp_path / "stick"
    stick.mkdir()
    export(source, stick)
    assert not (stick / "backup" / "drops").exists()
    names = [e.name for e in scan_blind(stick / "backup", blind.key()).of_kind(Kind.DROP)]
    assert sorted(names) == sorted(f"drops/{drop_id(b).hex()}.drop" for b in drops)
    node = blind.fresh_member(tmp_path / "node")
    result, lines = import_json(node, stick)
    assert result.code == 0, lines
    assert held_ids(node) == {drop_id(b) for b in drops}


def test_after_a_rekey_a_stick_under_the_old_key_still_imports(
    blind: Blind, tmp_path: Path
) -> None:
    node = blind.fresh_member(tmp_path / "node")
    meshdrop_in_process("--home", node, "circle", "rekey", "dorm", check=True)
    result, lines = import_json(node, blind.stick)
    assert result.code == 0 and set(outcomes(lines)) >= ALL, lines


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        pytest.param(("--circle", "dorm", "--open"), 2, "cannot go together", id="both"),
        pytest.param(("--circle", "nope"), 2, "no circle named 'nope'", id="unknown-circle"),
        pytest.param(("--folder", "../up"), 2, "--folder '../up'", id="bad-folder"),
        pytest.param(("--open", "--folder", "x"), 2, "use it with a circle", id="folder-open"),
    ],
)
def test_bad_export_options_are_one_line(
    blind: Blind, tmp_path: Path, extra: tuple[str, ...], code: int, message: str
) -> None:
    stick = tmp_path / "stick"
    stick.mkdir()
    result = run_meshdrop("--home", blind.source, "export", stick, *extra)
    assert result.code == code and "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1 and message in result.err, result.err
    assert list(stick.iterdir()) == []


def test_a_node_in_two_circles_must_say_which_and_open_writes_the_readable_folder(
    blind: Blind, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    shutil.copytree(blind.source, home)
    meshdrop_in_process("--home", home, "circle", "new", "work", check=True)
    stick = tmp_path / "stick"
    stick.mkdir()
    result = run_meshdrop("--home", home, "export", stick)
    assert result.code == 2 and "Traceback" not in result.err
    assert "--circle NAME" in result.err and len(result.err.strip().splitlines()) == 1
    assert list(stick.iterdir()) == []
    export(home, stick, "--open")
    assert (stick / "meshdrop").is_dir() and not (stick / "backup").exists()
    export(home, stick, "--circle", "work", "--folder", "photos")
    assert (stick / "photos" / ".nomedia").exists()
    result, lines = import_json(blind.fresh_member(tmp_path / "node"), stick)
    assert result.code == 0 and set(outcomes(lines)) >= ALL  # the open folder; not "work"


def test_watch_imports_a_blind_stick_of_its_circle_and_tops_it_up_blind(
    blind: Blind, tmp_path: Path
) -> None:
    root = tmp_path / "media"
    stick = blind.fresh_stick(root / "STICK")
    (root / "STRANGER").mkdir()
    before = {p.name for p in (stick / "backup").iterdir()}
    node = blind.fresh_member(tmp_path / "node")
    src = write_tree(tmp_path / "extra-src", {"x.txt": b"only on the member"})
    extra = pack(blind.base.publisher, src, tmp_path / "extra.mdrop", "extra", "--version", "1")
    meshdrop_in_process("--home", node, "import", extra, "-q", check=True)
    result = run_meshdrop("--home", node, "watch", "--root", root, "--once", "-q")
    assert result.code == 0 and "Traceback" not in result.err, result.err
    assert set(listed(node)) == ALL | {"extra"}
    after = {p.name for p in (stick / "backup").iterdir()}
    assert before < after and all(looks_blind(n) for n in after - before)
    assert [e.name for e in blind.scan(stick).entries if e.name.startswith("extra-")]
    assert not (stick / "meshdrop").exists() and list((root / "STRANGER").iterdir()) == []
