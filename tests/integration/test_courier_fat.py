"""Real FAT32 media: images made with mkfs.vfat and filled and read with mtools (the
kernel here has no FAT driver, so nothing is mounted). mcopy exits 0 even when it refuses
a file or a name, so what landed on the image is checked with mdir."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from courierkit import (
    BUNDLES,
    PART_SIZE,
    Setup,
    assert_bundle_bytes,
    import_json,
    outcomes,
    setup_fixture,  # noqa: F401 (the `setup` fixture)
)

from conftest import run_meshdrop

TOOLS = ("mkfs.vfat", "mcopy", "mdir")


def need_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found: install dosfstools and mtools "
            "(apt-get install dosfstools mtools; .ci/run does this)"
        )


def sh(*args: str | Path) -> str:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{args}: {proc.stderr}"
    return proc.stdout


def make_fat32(path: Path, size_kib: int = 65536) -> Path:
    sh("mkfs.vfat", "-F", "32", "-C", path, str(size_kib))
    return path


def image_files(image: Path, folder: str = "::/meshdrop") -> list[str]:
    """Every file name under ``folder`` on the image, as FAT stores the long names."""
    listing = sh("mdir", "-/", "-b", "-i", image, folder)
    return sorted(
        line.rsplit("/", 1)[-1] for line in listing.splitlines() if line and not line.endswith("/")
    )


def test_fat32_round_trip_with_mtools(setup: Setup, tmp_path: Path) -> None:
    need_tools()
    exported = tmp_path / "exported"
    exported.mkdir()
    run_meshdrop(
        "--home", setup.source, "export", exported, "--part-size", PART_SIZE, "-q", check=True
    )
    names = sorted(p.name for p in (exported / "meshdrop").iterdir())
    assert any(n.endswith(".p002") for n in names), "the split path was not taken"
    image = make_fat32(tmp_path / "stick.img")
    sh("mcopy", "-s", "-i", image, exported / "meshdrop", "::/")
    assert image_files(image) == names, "mcopy dropped or renamed a file"
    back = tmp_path / "back"
    back.mkdir()
    sh("mcopy", "-s", "-n", "-i", image, "::/meshdrop", back)
    for name in names:
        assert (back / "meshdrop" / name).read_bytes() == (
            exported / "meshdrop" / name
        ).read_bytes()
    node = setup.fresh_node(tmp_path / "node")
    result, lines = import_json(node, back)
    assert result.code == 0, lines
    assert outcomes(lines) == {
        **dict.fromkeys(BUNDLES, "imported"),
        "Test Publisher": "publisher already known",
    }
    for name in BUNDLES:
        assert_bundle_bytes(node, name, tmp_path / f"get-{name}")


def test_fat32_stick_with_a_part_lost_on_the_way_completes_from_a_second_image(
    setup: Setup, tmp_path: Path
) -> None:
    need_tools()
    first = make_fat32(tmp_path / "first.img")
    second = make_fat32(tmp_path / "second.img")
    parts = setup.files_of(setup.stick, "big")
    sh("mmd", "-i", first, "::/meshdrop")
    sh("mmd", "-i", second, "::/meshdrop")
    for path in setup.courier(setup.stick).iterdir():
        target = second if path == parts[1] else first
        sh("mcopy", "-i", target, path, f"::/meshdrop/{path.name}")
    node = setup.fresh_node(tmp_path / "node")
    for label, image in (("first", first), ("second", second)):
        out = tmp_path / label
        out.mkdir()
        sh("mcopy", "-s", "-n", "-i", image, "::/meshdrop", out)
        _result, lines = import_json(node, out)
        expected = "incomplete" if label == "first" else "imported"
        assert outcomes(lines)["big"] == expected, lines
    assert_bundle_bytes(node, "big", tmp_path / "get-big")
