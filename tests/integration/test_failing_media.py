"""Sticks that lie or fail (issue 21), through a real meshdrop process with the media of
tests/fakemedia.py installed: an export onto a fake-capacity card is refused with one
line and exit 7 once it reads back what it wrote, and leaves none of the files the card
corrupted; an honest card passes the same read-back; an import from a stick that fails to
read a file mid-way keeps every bundle and part that verified, names the file, and the
next stick completes it. Open and blind folders alike."""

from __future__ import annotations

import json
import shutil
import subprocess
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
)
from fakemedia import command

from conftest import Result, command_env, meshdrop_in_process
from meshdrop.core.blind import blind_key
from meshdrop.store.circles import CircleStore
from meshdrop.transports.courier.blindfolder import scan_blind

CARD_BLOCKS = 1000  # 4 MiB of real capacity; an export of every bundle writes about 7


@dataclass(frozen=True)
class Circle:
    source: Path  # every bundle; made the circle "dorm"
    member: Path  # joined "dorm", holds nothing
    stick: Path  # stick/backup/ exported blind with PART_SIZE

    def key(self) -> bytes:
        return blind_key(CircleStore(self.source).load().circles[0].circle.current.secret)


_CIRCLE: list[Circle] = []


@pytest.fixture(name="circle")
def circle_fixture(setup: Setup) -> Circle:
    if not _CIRCLE:
        root = setup.root / "failing-media-circle"
        root.mkdir()
        source = root / "source"
        shutil.copytree(setup.source, source)
        made = meshdrop_in_process("--home", source, "circle", "new", "dorm", "--json", check=True)
        member = setup.fresh_node(root / "member")
        invite = json.loads(made.out)["invite"]
        meshdrop_in_process(
            "--home", member, "circle", "join", invite, "--name", "dorm", check=True
        )
        stick = root / "stick"
        stick.mkdir()
        meshdrop_in_process(
            "--home", source, "export", stick, "--part-size", PART_SIZE, "-q", check=True
        )
        _CIRCLE.append(Circle(source, member, stick))
    return _CIRCLE[0]


def run_on_media(env: dict[str, str], *args: str | Path) -> Result:
    proc = subprocess.run(
        command(*args),
        capture_output=True,
        text=True,
        env=command_env(env),
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def export_onto_card(home: Path, stick: Path, blocks: int, report: Path) -> Result:
    env = {
        "FAKE_CARD_ROOT": str(stick),
        "FAKE_CARD_BLOCKS": str(blocks),
        "FAKE_CARD_REPORT": str(report),
    }
    return run_on_media(env, "--home", home, "export", stick, "--part-size", PART_SIZE, "-q")


def homes(kind: str, setup: Setup, circle: Circle, tmp_path: Path) -> tuple[Path, Path, Path]:
    """(exporting node, empty importing node, courier folder name) for ``kind``."""
    if kind == "open":
        return setup.source, setup.fresh_node(tmp_path / "node"), Path("meshdrop")
    member = tmp_path / "member"
    shutil.copytree(circle.member, member)
    return circle.source, member, Path("backup")


@pytest.mark.parametrize("kind", ["open", "blind"])
def test_an_export_onto_a_fake_capacity_card_is_refused_and_keeps_nothing_corrupted(
    kind: str, setup: Setup, circle: Circle, tmp_path: Path
) -> None:
    source, node, folder_name = homes(kind, setup, circle, tmp_path)
    stick, report = tmp_path / "stick", tmp_path / "corrupted"
    stick.mkdir()
    result = export_onto_card(source, stick, CARD_BLOCKS, report)
    assert result.code == 7, result
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "the stick returned different bytes than were written" in lines[0]
    assert "fake-capacity card" in lines[0]
    assert "safe to remove" not in result.out
    corrupted = set(report.read_text().split())
    assert corrupted, "the card wrapped over none of the files: the test proves nothing"
    left = {p.name for p in (stick / folder_name).iterdir()}
    assert not corrupted & left, corrupted & left
    # What is left reads back as written: whatever imports is whole and right.
    imported, _ = import_json(node, stick)
    assert "Traceback" not in imported.err
    have = listed(node)
    assert set(have) < set(BUNDLES), have
    for name in have:
        assert_bundle_bytes(node, name, tmp_path / f"got-{name}")


@pytest.mark.parametrize("kind", ["open", "blind"])
def test_an_export_onto_an_honest_card_reads_back_and_is_safe_to_remove(
    kind: str, setup: Setup, circle: Circle, tmp_path: Path
) -> None:
    source, node, _ = homes(kind, setup, circle, tmp_path)
    stick, report = tmp_path / "stick", tmp_path / "corrupted"
    stick.mkdir()
    result = export_onto_card(source, stick, 1 << 20, report)
    assert result.code == 0 and "Traceback" not in result.err, result
    assert report.read_text() == ""
    imported, lines = import_json(node, stick)
    assert imported.code == 0, lines
    assert set(listed(node)) == set(BUNDLES)


def import_failing(
    node: Path, folder: Path, name: str, at: int
) -> tuple[Result, list[dict[str, object]]]:
    env = {"READ_ERROR_NAME": name, "READ_ERROR_AT": str(at)}
    result = run_on_media(env, "--home", node, "import", folder, "--json", "-q")
    assert "Traceback" not in result.err, result.err
    return result, [json.loads(line) for line in result.out.splitlines() if line.strip()]


def partial(node: Path, name: str) -> dict[str, object]:
    shown = meshdrop_in_process("--home", node, "ls", "--all", "--json", check=True)
    entries = [json.loads(line) for line in shown.out.splitlines() if line]
    return next(e for e in entries if e["name"] == name)


def assert_kept_and_completed(node: Path, folder: Path, tmp_path: Path, bundle: str) -> None:
    """``bundle`` is partial, with what verified stored; a good stick completes it."""
    kept = partial(node, bundle)
    assert kept["state"] == "partial", kept
    assert 0 < int(str(kept["stored"])) < int(str(kept["size"])), kept
    result, lines = import_json(node, folder)
    assert result.code == 0, lines
    assert set(listed(node)) == set(BUNDLES)
    assert_bundle_bytes(node, bundle, tmp_path / "got")


@pytest.mark.parametrize(
    ("bundle", "index", "at"),
    [
        pytest.param("big", 1, 500_000, id="the-second-part-of-four"),
        pytest.param("news", 0, 100_000, id="a-whole-bundle-file"),
    ],
)
def test_an_import_from_a_stick_failing_mid_file_keeps_what_verified(
    bundle: str, index: int, at: int, setup: Setup, tmp_path: Path
) -> None:
    node = setup.fresh_node(tmp_path / "node")
    bad = setup.files_of(setup.stick, bundle)[index]
    result, lines = import_failing(node, setup.courier(setup.stick), bad.name, at)
    assert result.code == 1, lines
    got = outcomes(lines)
    assert got.pop(bundle) == "incomplete"
    assert set(got) == {"Test Publisher", *BUNDLES} - {bundle}
    assert set(got.values()) <= {"imported", "publisher already known"}, got
    line = next(x for x in lines if x.get("name") == bundle)
    assert f"{bad.name}: 1 chunk could not be read (the stick gave a read error)" in str(
        line["detail"]
    ), line
    assert_kept_and_completed(node, setup.courier(setup.stick), tmp_path, bundle)


def test_an_import_from_a_blind_stick_failing_mid_file_keeps_what_verified(
    circle: Circle, tmp_path: Path
) -> None:
    node = tmp_path / "member"
    shutil.copytree(circle.member, node)
    folder = circle.stick / "backup"
    entries = {e.name: e.path for e in scan_blind(folder, circle.key()).entries}
    bad = entries[next(n for n in sorted(entries) if n.startswith("big-") and n.endswith("p002"))]
    result, lines = import_failing(node, circle.stick, bad.name, 500_000)
    assert result.code == 1, lines
    got = outcomes(lines)
    assert got.pop("big") == "incomplete"
    assert set(got) == {"Test Publisher", *BUNDLES} - {"big"}
    assert set(got.values()) <= {"imported", "publisher already known"}, got
    # A blind part is one segment here, read whole to open it: the file is named.
    refused = [x for x in lines if x.get("files") == [bad.name]]
    assert [(x["outcome"], x["detail"]) for x in refused] == [("refused", "cannot be read")]
    assert_kept_and_completed(node, circle.stick, tmp_path, "big")
