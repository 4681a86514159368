"""Hostile and broken blind folders, each a named case: a changed, cut, foreign, renamed
or replayed file, a hostile inner header, links, FIFOs and junk. Import refuses or ignores
it in one line, imports everything intact, exposes nothing, never changes the stick, and
what the node stored stays as it was."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from courierkit import (
    BUNDLES,
    import_json,
    listed,
    outcomes,
    setup_fixture,  # noqa: F401 (the `setup` fixture)
    snapshot,
)
from test_blind_courier import (
    Blind,
    blind_fixture,  # noqa: F401 (the `blind` fixture)
    export,
)

from conftest import meshdrop_in_process, pack, write_tree
from meshdrop.core.blind import INNER, SALT_BYTES, SEGMENT, TAG_BYTES, InnerHeader, Kind
from meshdrop.transports.courier.blindfile import BlindWriter

ALL = set(BUNDLES)


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def refused(lines: list[dict[str, object]]) -> dict[str, str]:
    return {
        str(x["files"][0]): str(x["detail"])  # type: ignore[index]
        for x in lines
        if x["outcome"] == "refused" and x["files"]
    }


def import_checked(blind: Blind, stick: Path, node: Path) -> list[dict[str, object]]:
    """Import ``stick`` into ``node``: the stick is not changed and nothing of it is
    written anywhere but the node's store."""
    before = snapshot(stick)
    result, lines = import_json(node, stick)
    assert result.code in (0, 1), result.err
    assert snapshot(stick) == before
    return lines


@pytest.fixture(name="big_stick")
def big_stick_fixture(blind: Blind, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A blind stick exported with the default part size: video is one 4 MiB blind file
    (four segments)."""
    stick = tmp_path_factory.mktemp("big") / "stick"
    stick.mkdir()
    meshdrop_in_process("--home", blind.source, "export", stick, "-q", check=True)
    return stick


@pytest.mark.parametrize(
    ("where", "outcome"),
    [
        pytest.param(lambda size: SALT_BYTES + 5, "refused", id="inner-header"),
        pytest.param(lambda size: SALT_BYTES + SEGMENT + TAG_BYTES + 99, "incomplete", id="middle"),
        pytest.param(lambda size: size - 20, "refused", id="last-segment"),
    ],
)
def test_a_flipped_byte_in_a_blind_file(
    blind: Blind, big_stick: Path, tmp_path: Path, where: object, outcome: str
) -> None:
    stick = shutil.copytree(big_stick, tmp_path / "stick")
    (video,) = [p for name, p in blind.files_of(stick, "video-").items()]
    flip(video, where(video.stat().st_size))  # type: ignore[operator]
    node = blind.fresh_member(tmp_path / "node")
    lines = import_checked(blind, stick, node)
    assert set(listed(node)) == ALL - {"video"}
    if outcome == "refused":
        assert "does not open with the circle's key" in refused(lines)[video.name], lines
    else:
        assert outcomes(lines)["video"] == "incomplete"
        assert "damaged chunks" in str(lines)


def test_a_truncated_blind_file_is_refused(blind: Blind, big_stick: Path, tmp_path: Path) -> None:
    stick = shutil.copytree(big_stick, tmp_path / "stick")
    (video,) = blind.files_of(stick, "video-").values()
    os.truncate(video, video.stat().st_size - SEGMENT)
    node = blind.fresh_member(tmp_path / "node")
    lines = import_checked(blind, stick, node)
    assert set(listed(node)) == ALL - {"video"}
    assert "does not open" in refused(lines)[video.name]


def test_a_file_of_another_circle_is_refused_and_its_circle_cannot_find_ours(
    blind: Blind, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    shutil.copytree(blind.source, other)
    for path in (other / "circles").iterdir():
        path.unlink()
    meshdrop_in_process("--home", other, "circle", "new", "work", check=True)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    export(other, theirs)
    stick = blind.fresh_stick(tmp_path / "stick")
    (foreign,) = [p for p in (theirs / "backup").iterdir() if p.stat().st_size == 16384][:1]
    shutil.copy(foreign, stick / "backup" / "zzzzzzzz.dat")
    node = blind.fresh_member(tmp_path / "node")
    lines = import_checked(blind, stick, node)
    assert set(listed(node)) == ALL
    assert "does not open" in refused(lines)["zzzzzzzz.dat"]
    result, _ = import_json(other, blind.stick)  # a node of circle "work" sees nothing
    assert result.code == 2 and "no .mdrop files found" in result.err


def test_swapped_file_names_change_nothing(blind: Blind, tmp_path: Path) -> None:
    stick = blind.fresh_stick(tmp_path / "stick")
    (news,) = blind.files_of(stick, "news-").values()
    (radio,) = blind.files_of(stick, "radio-").values()
    news.rename(stick / "backup" / "swap.tmp")
    radio.rename(news)
    (stick / "backup" / "swap.tmp").rename(radio)
    node = blind.fresh_member(tmp_path / "node")
    lines = import_checked(blind, stick, node)
    assert set(listed(node)) == ALL and not refused(lines)


def test_a_replayed_old_file_is_refused_as_older(blind: Blind, tmp_path: Path) -> None:
    old = blind.fresh_stick(tmp_path / "old")
    source = tmp_path / "source"
    shutil.copytree(blind.source, source)
    src = write_tree(tmp_path / "radio2", {"r.opus": b"second version"})
    bundle = pack(blind.base.publisher, src, tmp_path / "r2.mdrop", "radio", "--version", "2")
    meshdrop_in_process("--home", source, "import", bundle, "-q", check=True)
    stick = tmp_path / "stick"
    stick.mkdir()
    export(source, stick)
    node = blind.fresh_member(tmp_path / "node")
    import_checked(blind, stick, node)
    assert listed(node)["radio"] == 2
    ((inner_name, replayed),) = blind.files_of(old, "radio-").items()
    shutil.copy(replayed, stick / "backup" / "replayed.dat")
    lines = import_checked(blind, stick, node)
    replay = [x["outcome"] for x in lines if x["files"] == [inner_name]]
    assert replay == ["older than what we have"], lines
    assert listed(node)["radio"] == 2


def hostile_file(blind: Blind, path: Path, kind: int, name: bytes, length: int) -> None:
    """A blind file that authenticates (made with the circle's key) but whose inner header
    is hostile."""

    class Raw(InnerHeader):
        def encode(self) -> bytes:
            return INNER.pack(1, kind, len(name), length, INNER.size + len(name)) + name

        @property
        def size(self) -> int:
            return INNER.size + len(name)

    header = Raw(Kind.BUNDLE, "x", 0)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        writer = BlindWriter(fd, blind.key(), header, 16384)
        writer.finish()
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("kind", "name", "length", "message"),
    [
        pytest.param(1, b"../../../escaped-0123456789ab.mdrop", 0, "not allowed", id="traversal"),
        pytest.param(1, b"x" * 121, 0, "over the limit", id="over-long-name"),
        pytest.param(42, b"a-0123456789ab.mdrop", 0, "unknown kind", id="unknown-kind"),
        pytest.param(1, b"a-0123456789ab.mdrop", 10**12, "more than it can hold", id="length"),
    ],
)
def test_a_hostile_inner_header_is_refused(
    blind: Blind, tmp_path: Path, kind: int, name: bytes, length: int, message: str
) -> None:
    stick = blind.fresh_stick(tmp_path / "stick")
    hostile_file(blind, stick / "backup" / "hostile0.dat", kind, name, length)
    node = blind.fresh_member(tmp_path / "node")
    lines = import_checked(blind, stick, node)
    assert set(listed(node)) == ALL
    assert message in refused(lines)["hostile0.dat"], lines
    assert not list(tmp_path.rglob("escaped*"))


def test_links_fifos_and_junk_in_a_blind_folder_are_never_opened(
    blind: Blind, tmp_path: Path
) -> None:
    stick = blind.fresh_stick(tmp_path / "stick")
    folder = stick / "backup"
    (radio,) = blind.files_of(stick, "radio-").values()
    outside = tmp_path / "outside.dat"
    radio.rename(outside)
    (folder / "linklink.dat").symlink_to(outside)
    os.mkfifo(folder / "fifofifo.dat")
    for i in range(20_000):
        os.close(os.open(folder / f"{i:08d}.dat", os.O_CREAT | os.O_WRONLY, 0o644))
    for i in range(30):
        (folder / f"rnd{i:05d}.dat").write_bytes(os.urandom(16384))
    node = blind.fresh_member(tmp_path / "node")
    lines = import_checked(blind, stick, node)
    assert set(listed(node)) == ALL - {"radio"}
    got = refused(lines)
    assert "symbolic link" in got["linklink.dat"] and "FIFO" in got["fifofifo.dat"], got
    assert len(lines) < 60, "junk must be summarised, not listed line by line"
    assert stat.S_ISFIFO((folder / "fifofifo.dat").lstat().st_mode)


def test_a_member_of_the_circle_only_before_a_rekey_is_shown_nothing_new(
    blind: Blind, tmp_path: Path
) -> None:
    """The source rekeys: its next stick is under the new key, which a member that did
    not get the new invite cannot open (it sees no courier folder)."""
    source = tmp_path / "source"
    shutil.copytree(blind.source, source)
    meshdrop_in_process("--home", source, "circle", "rekey", "dorm", check=True)
    stick = tmp_path / "stick"
    stick.mkdir()
    export(source, stick)
    result, _ = import_json(blind.fresh_member(tmp_path / "node"), stick)
    assert result.code == 2 and "no .mdrop files found" in result.err
