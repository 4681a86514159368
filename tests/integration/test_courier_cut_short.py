"""Sticks a courier can trust (issue 14, point 3), through the installed command: an
export killed mid-part keeps the parts it finished (carried on a real FAT32 image), the
import names what was cut short, a dry run writes nothing, an export ends with "safe to
remove" only when it succeeded, and `pack --part-size` writes parts that import."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from courierkit import (
    BUNDLES,
    Setup,
    assert_bundle_bytes,
    chunk_files,
    import_json,
    setup_fixture,  # noqa: F401 (the `setup` fixture)
    snapshot,
)
from test_courier_fat import make_fat32, need_tools, sh

from conftest import assert_clean_error, meshdrop_in_process, run_meshdrop, write_tree
from meshdrop.store.crashpoints import ENV as CRASH_ENV

step = meshdrop_in_process
TWO_CHUNK_PARTS = "2200K"  # big (4 chunks) goes as 2 parts of 2 chunks each


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def by_outcome(lines: list[dict[str, object]], outcome: str) -> list[dict[str, object]]:
    return [line for line in lines if line.get("outcome") == outcome]


def through_fat32(folder: Path, tmp_path: Path) -> Path:
    """The courier folder copied onto a fresh FAT32 image and back: what a stick carries."""
    image = make_fat32(tmp_path / "stick.img")
    sh("mcopy", "-s", "-i", image, folder, "::/")
    back = tmp_path / "from-fat32"
    back.mkdir()
    sh("mcopy", "-s", "-n", "-i", image, "::/meshdrop", back)
    return back


def test_killed_export_keeps_finished_parts_and_the_next_export_writes_only_the_rest(
    setup: Setup, tmp_path: Path
) -> None:
    need_tools()
    stick = tmp_path / "stick"
    stick.mkdir()
    export = ("--home", setup.source, "export", stick, "--name", "big", "-q")
    killed = run_meshdrop(
        *export, "--part-size", TWO_CHUNK_PARTS, env={CRASH_ENV: "courier-export-part-2"}
    )
    assert killed.code == -9, killed
    courier = stick / "meshdrop"
    names = sorted(p.name for p in courier.iterdir())
    finished = [n for n in names if n.startswith("big-")]
    assert [n[-5:] for n in finished] == [".p001"], names
    assert len([n for n in names if n.startswith(".tmp-")]) == 1, names
    first_part = (courier / finished[0]).stat()

    node = setup.fresh_node(tmp_path / "node")
    result, lines = import_json(node, through_fat32(courier, tmp_path))
    assert result.code == 1, result
    (incomplete,) = by_outcome(lines, "incomplete")
    assert incomplete["name"] == "big" and incomplete["files"] == finished
    assert "parts missing or damaged: 2 of 2" in str(incomplete["detail"])
    (leftover,) = by_outcome(lines, "cut short")
    assert leftover["detail"] == (
        "a copy of big v1 (part 2 of 2) was cut short at 1.0 MiB of 2.0 MiB; ignored"
    )
    assert leftover["exit_code"] == 0 and leftover["name"] == "big"
    kept = chunk_files(node)
    assert len(kept) == 2, "the finished part's chunks were not kept"

    again = run_meshdrop(*export, "--part-size", TWO_CHUNK_PARTS, "--json")
    assert again.code == 0, again.err
    (big,) = [line for line in json_lines(again.out) if line.get("name") == "big"]
    assert big["written_files"] == [finished[0].replace(".p001", ".p002")]
    assert big["files"] == [finished[0], finished[0].replace(".p001", ".p002")]
    summary = json_lines(again.out)[-1]["summary"]
    assert isinstance(summary, dict) and summary["safe_to_remove"] is True
    assert not [p for p in courier.iterdir() if p.name.startswith(".tmp-")]
    assert (courier / finished[0]).stat().st_ino == first_part.st_ino
    assert (courier / finished[0]).stat().st_mtime_ns == first_part.st_mtime_ns

    done, lines = import_json(node, courier)
    assert done.code == 0 and by_outcome(lines, "imported")[0]["name"] == "big", lines
    assert all(chunk_files(node)[name] == inode for name, inode in kept.items())
    assert_bundle_bytes(node, "big", tmp_path / "get-big")


def test_import_names_a_leftover_it_cannot_read_by_its_size_and_exits_0(
    setup: Setup, tmp_path: Path
) -> None:
    stick = setup.fresh_stick(tmp_path / "stick")
    (setup.courier(stick) / ".tmp-0123456789ab-news-0123456789ab.mdrop").write_bytes(b"MDR" * 7)
    node = setup.fresh_node(tmp_path / "node")
    result = run_meshdrop("--home", node, "import", stick, "-q")
    assert result.code == 0, result.err
    leftover = [line for line in result.out.splitlines() if ": cut short: " in line]
    assert leftover == [
        f"{setup.courier(stick)}/.tmp-0123456789ab-news-0123456789ab.mdrop: cut short: "
        "left by an export that was cut short (21 B); ignored"
    ]


def test_export_dry_run_says_what_fits_and_writes_nothing(setup: Setup, tmp_path: Path) -> None:
    stick = setup.fresh_stick(tmp_path / "stick")
    for path in setup.files_of(stick, "video") + setup.files_of(stick, "radio"):
        path.unlink()
    leftover = setup.courier(stick) / ".tmp-0123456789ab-video.p001"
    leftover.write_bytes(b"x")
    before = snapshot(stick)
    result = run_meshdrop(
        "--home", setup.source, "export", stick, "--dry-run", "--part-size", "1200K",
        "--max-bytes", "5M",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert snapshot(stick) == before
    lines = result.out.splitlines()
    assert any(line.startswith("radio v1: would be written, 391.4 KiB: radio-") for line in lines)
    assert any(line.startswith("video v1: left out: does not fit in --max-bytes") for line in lines)
    assert any(line.startswith("news v1: already there, 293.9 KiB: news-") for line in lines)
    assert f"note: would remove {leftover.name}, left by an export that was cut short" in lines
    assert lines[-1].startswith(
        f"{setup.courier(stick)}: dry run, nothing written: 1 bundle would be written "
        "(391.4 KiB), 2 already there, 1 left out (2.4 MiB); "
    )
    assert not any("safe to remove" in line for line in lines)


def test_export_dry_run_json_has_sizes_and_makes_no_courier_folder(
    setup: Setup, tmp_path: Path
) -> None:
    dest = tmp_path / "empty-stick"
    dest.mkdir()
    result = run_meshdrop("--home", setup.source, "export", dest, "--dry-run", "--json")
    assert result.code == 0, result.err
    assert list(dest.iterdir()) == []
    lines = json_lines(result.out)
    bundles = [line for line in lines if "name" in line]
    assert {line["name"] for line in bundles} == set(BUNDLES)
    assert all(line["dry_run"] is True and line["outcome"] == "written" for line in bundles)
    assert all(line["written_bytes"] == line["size"] for line in bundles)
    summary = lines[-1]["summary"]
    assert isinstance(summary, dict)
    assert summary["dry_run"] is True and summary["safe_to_remove"] is False
    assert summary["written_bytes"] == sum(int(str(line["size"])) for line in bundles)


def test_export_ends_with_safe_to_remove_once_synced(setup: Setup, tmp_path: Path) -> None:
    dest = tmp_path / "stick"
    dest.mkdir()
    result = run_meshdrop("--home", setup.source, "export", dest, "-q")
    assert result.code == 0, result.err
    assert result.out.splitlines()[-2:] == [
        f"{dest / 'meshdrop'}: 4 bundles written (6.6 MiB), 0 already there, 0 left out",
        f"safe to remove: everything written to {dest / 'meshdrop'} is synced",
    ]


@pytest.fixture(name="read_only_stick")
def read_only_stick_fixture(tmp_path: Path) -> Iterator[Path]:
    """A real read-only file system (tmpfs mounted ro; needs root, as the netns tests do)."""
    mount = tmp_path / "ro-stick"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,ro", "tmpfs", mount], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", mount], check=True)


def test_export_onto_a_read_only_stick_exits_7_without_safe_to_remove(
    setup: Setup, read_only_stick: Path
) -> None:
    result = run_meshdrop("--home", setup.source, "export", read_only_stick, "-q")
    assert result.code == 7, result
    assert_clean_error(result, "read-only")
    assert "safe to remove" not in result.out + result.err


@pytest.mark.parametrize(
    ("dest", "fragment"),
    [("missing", "does not exist"), ("a-file", "is not a folder")],
)
def test_export_to_a_path_that_is_no_folder_exits_2(
    setup: Setup, tmp_path: Path, dest: str, fragment: str
) -> None:
    (tmp_path / "a-file").write_bytes(b"not a stick")
    result = run_meshdrop("--home", setup.source, "export", tmp_path / dest, "-q")
    assert result.code == 2
    assert_clean_error(result, fragment)


def test_pack_part_size_writes_parts_that_import_from_their_folder(
    setup: Setup, tmp_path: Path
) -> None:
    files, _ = BUNDLES["big"]
    src = write_tree(tmp_path / "src", files)
    out = tmp_path / "out"
    out.mkdir()
    result = run_meshdrop(
        "pack", src, "--publisher", setup.publisher.folder, "--name", "big", "--version", "1",
        "-o", out / "big.mdrop", "--part-size", "1200K", "-q",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert sorted(p.name for p in out.iterdir()) == [f"big.p00{n}" for n in range(1, 5)]
    assert result.out == f"packed {out}/big.p001 ... big.p004 (4 parts): big v1, 3 files, 3.5 MiB\n"
    assert all(p.stat().st_size <= 1200 * 1024 for p in out.iterdir())
    node = setup.fresh_node(tmp_path / "node")
    imported = run_meshdrop("--home", node, "import", out, "--json", "-q")
    assert imported.code == 0, imported.err
    assert [(x["name"], x["outcome"]) for x in json_lines(imported.out)] == [("big", "imported")]
    assert_bundle_bytes(node, "big", tmp_path / "get-big")


def test_pack_part_files_given_by_name_import_as_one_bundle(setup: Setup, tmp_path: Path) -> None:
    files, _ = BUNDLES["big"]
    src = write_tree(tmp_path / "src", files)
    step(
        "pack", src, "--publisher", setup.publisher.folder, "--name", "big", "--version", "1",
        "-o", tmp_path / "big.mdrop", "--part-size", "1200K", "-q", check=True,
    )  # fmt: skip
    node = setup.fresh_node(tmp_path / "node")
    parts = sorted(tmp_path.glob("big.p*"))
    result = run_meshdrop("--home", node, "import", *parts, "-q")
    assert result.code == 0, result.err
    assert result.out.endswith("imported: big v1\n")


def test_pack_small_bundle_with_part_size_stays_one_file_and_json(
    setup: Setup, tmp_path: Path
) -> None:
    files, _ = BUNDLES["news"]
    src = write_tree(tmp_path / "src", files)
    result = run_meshdrop(
        "pack", src, "--publisher", setup.publisher.folder, "--name", "news", "--version", "2",
        "-o", tmp_path / "news.mdrop", "--part-size", "1200K", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert json.loads(result.out) == {
        "files": [str(tmp_path / "news.mdrop")],
        "name": "news",
        "version": 2,
        "file_count": 2,
        "size": sum(len(data) for data in files.values()),
    }


def test_pack_part_size_too_small_is_one_clear_line(setup: Setup, tmp_path: Path) -> None:
    result = run_meshdrop(
        "pack", tmp_path, "--publisher", setup.publisher.folder, "--name", "x",
        "-o", tmp_path / "x.mdrop", "--part-size", "1M",
    )  # fmt: skip
    assert result.code == 2
    assert_clean_error(result, "--part-size must be more than 1 MiB")
    assert not (tmp_path / "x.mdrop").exists()


def test_want_json_carries_counts_and_size(setup: Setup, tmp_path: Path) -> None:
    dest = tmp_path / "stick"
    dest.mkdir()
    result = run_meshdrop("--home", setup.source, "want", dest, "--json")
    assert result.code == 0, result.err
    line = json.loads(result.out)
    want = dest / "meshdrop" / "want.mdw"
    assert line == {
        "path": str(want),
        "bundles": len(BUNDLES),
        "publishers": 0,
        "size": want.stat().st_size,
    }
