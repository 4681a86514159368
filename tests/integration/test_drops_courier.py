"""Drops (sealed reports) on sticks: `export` writes the drops a node holds into the courier
folder's drops/ (FORMAT.md section 15), a real FAT32 image (mtools) carries them, and
`import` on another home takes them through DropStore.add; bad drop files on a stick are
refused one line each while the rest go in."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from courierkit import Setup, setup_fixture  # noqa: F401 (the `setup` fixture)
from dropkit import add_drops, drop_id, expired_drop, held_ids, make_drop, tampered
from test_courier_fat import image_files, make_fat32, need_tools, sh

from conftest import run_meshdrop

DROPS = [make_drop(f"report {n}") for n in range(3)]


def exported_with_drops(setup: Setup, tmp: Path, *extra: str) -> tuple[Path, Path]:
    """A node holding the bundles' trust and DROPS, and its export into tmp/out/."""
    home = setup.fresh_node(tmp / "a")
    add_drops(home, *DROPS)
    out = tmp / "out"
    out.mkdir()
    result = run_meshdrop("--home", home, "export", out, *extra)
    assert result.code == 0 and "Traceback" not in result.err, result.err
    return home, out / "meshdrop"


def test_export_to_a_fat32_image_carries_the_drops_and_import_on_another_home_holds_them(
    setup: Setup, tmp_path: Path
) -> None:
    need_tools()
    _, courier = exported_with_drops(setup, tmp_path)
    names = sorted(drop_id(blob).hex() + ".drop" for blob in DROPS)
    assert sorted(p.name for p in (courier / "drops").iterdir()) == names
    image = make_fat32(tmp_path / "stick.img")
    sh("mcopy", "-s", "-i", image, courier, "::/")
    assert image_files(image, "::/meshdrop/drops") == names, "mcopy dropped or renamed a drop"
    back = tmp_path / "back"
    back.mkdir()
    sh("mcopy", "-s", "-n", "-i", image, "::/meshdrop", back)
    other = setup.fresh_node(tmp_path / "b")
    result = run_meshdrop("--home", other, "import", back, "--json")
    assert result.code == 0 and "Traceback" not in result.err, result.err
    assert held_ids(other) == {drop_id(blob) for blob in DROPS}
    lines = [json.loads(line) for line in result.out.splitlines() if line.strip()]
    assert any("3 drops (sealed reports) taken in" in str(x.get("detail")) for x in lines), lines


def test_export_writes_no_more_drops_than_the_room_left_and_says_so(
    setup: Setup, tmp_path: Path
) -> None:
    # --max-bytes of 40 KiB: the bundles are left out, and two of the 16 KiB drops fit.
    home = setup.fresh_node(tmp_path / "a")
    add_drops(home, *DROPS)
    out = tmp_path / "out"
    out.mkdir()
    result = run_meshdrop("--home", home, "export", out, "--max-bytes", "40K")
    assert result.code == 0 and "Traceback" not in result.err, result.err
    assert len(list((out / "meshdrop" / "drops").iterdir())) == 2
    assert "drops: 2 written (32768 bytes), 0 already there, 1 left out" in result.out


def test_a_damaged_drop_on_the_stick_is_refused_in_one_line_and_the_rest_imported(
    setup: Setup, tmp_path: Path
) -> None:
    _, courier = exported_with_drops(setup, tmp_path)
    drops = courier / "drops"
    first, second = (drops / (drop_id(blob).hex() + ".drop") for blob in DROPS[:2])
    first.write_bytes(tampered(first.read_bytes()))  # a flipped bit on the way
    second.write_bytes(second.read_bytes()[:5000])  # cut short
    other = setup.fresh_node(tmp_path / "b")
    result = run_meshdrop("--home", other, "import", courier.parent)
    assert result.code == 1, (result.out, result.err)  # a stick: 1 if anything was refused
    assert "Traceback" not in result.err
    refused = [line for line in result.err.splitlines() if "drops/" in line]
    assert len(refused) == 2, result.err
    assert any(first.name in line and "stamp does not check" in line for line in refused)
    assert any(second.name in line and "not one of the drop sizes" in line for line in refused)
    assert held_ids(other) == {drop_id(DROPS[2])}
    assert held_ids(tmp_path / "a") == {drop_id(blob) for blob in DROPS}  # nothing lost


def test_an_expired_drop_on_the_stick_is_left_alone_and_removed_by_the_next_export(
    setup: Setup, tmp_path: Path
) -> None:
    _, courier = exported_with_drops(setup, tmp_path)
    old = expired_drop()
    stale = courier / "drops" / (drop_id(old).hex() + ".drop")
    stale.write_bytes(old)
    other = setup.fresh_node(tmp_path / "b")
    result = run_meshdrop("--home", other, "import", courier.parent)
    assert result.code == 0 and "Traceback" not in result.err, result.err
    assert "1 drops past their expiry" in result.out
    assert held_ids(other) == {drop_id(blob) for blob in DROPS}
    again = run_meshdrop("--home", other, "export", courier.parent)
    assert again.code == 0, again.err
    assert not stale.exists()
    assert "3 already there" in again.out and "1 past their expiry removed" in again.out


def test_import_of_a_stick_without_drops_says_nothing_of_drops(
    setup: Setup, tmp_path: Path
) -> None:
    stick = setup.fresh_stick(tmp_path / "stick")
    other = setup.fresh_node(tmp_path / "b")
    result = run_meshdrop("--home", other, "import", stick)
    assert result.code == 0, result.err
    assert "drops" not in result.out and "skipped" not in result.out
    assert held_ids(other) == set()
    shutil.rmtree(stick)
