"""Couriers, through the installed command: export into a courier folder, top it up,
choose what fits, honour a want file, carry publisher records, and watch for sticks."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from pathlib import Path

import pytest
from courierkit import (
    BUNDLES,
    PART_SIZE,
    Setup,
    assert_bundle_bytes,
    import_json,
    listed,
    setup_fixture,  # noqa: F401 (the `setup` fixture)
    snapshot,
)

from conftest import (
    assert_clean_error,
    chunk_name,
    make_publisher,
    meshdrop_in_process,
    pack,
    run_meshdrop,
    write_tree,
)
from meshdrop.transports.courier.watch import Watcher

ALL = set(BUNDLES)
# The command a test is about runs as a real process (run_meshdrop); set-up steps and the
# looks afterwards run the same commands in process.
step = meshdrop_in_process
FAT_SAFE = re.compile(r"[a-z0-9][a-z0-9._-]*-[0-9a-f]{12}\.(mdrop|p\d{3})|[a-z0-9]{16}\.pub")


def export_json(
    home: Path, dest: Path, *args: str
) -> tuple[int, list[dict[str, object]], dict[str, object]]:
    result = run_meshdrop("--home", home, "export", dest, "--json", "-q", *args)
    assert "Traceback" not in result.err, result.err
    lines = [json.loads(x) for x in result.out.splitlines() if x.strip()]
    summary = lines.pop()["summary"]
    assert isinstance(summary, dict)
    return result.code, lines, summary


def by_name(lines: list[dict[str, object]]) -> dict[str, str]:
    return {str(x["name"]): str(x["outcome"]) for x in lines}


def test_export_writes_a_fat_safe_courier_folder_that_a_fresh_node_imports_byte_for_byte(
    setup: Setup, tmp_path: Path
) -> None:
    names = sorted(p.name for p in setup.courier(setup.stick).iterdir())
    assert all(FAT_SAFE.fullmatch(n) for n in names), names
    assert (
        len(setup.files_of(setup.stick, "big")) > 1
        and len(setup.files_of(setup.stick, "video")) > 1
    )
    assert len(setup.files_of(setup.stick, "news")) == 1
    assert all((setup.courier(setup.stick) / n).stat().st_size < 4 * 1024**3 for n in names)
    node = setup.fresh_node(tmp_path / "node")
    result = run_meshdrop("--home", node, "import", setup.stick, "-q")
    assert result.code == 0, result.out + result.err
    assert result.out.count(": imported: ") == len(BUNDLES)
    for name in BUNDLES:
        assert_bundle_bytes(node, name, tmp_path / name)


NEWS_V2 = b"<h1>news, second edition</h1>"


def with_news_v2(setup: Setup, tmp_path: Path) -> tuple[Path, Path, list[Path]]:
    """A copy of the source node that also holds news v2, a copy of the stick (news v1),
    and the stick's news v1 files."""
    source = shutil.copytree(setup.source, tmp_path / "source")
    stick = setup.fresh_stick(tmp_path / "stick")
    src = write_tree(tmp_path / "news2", {"index.html": NEWS_V2})
    v2 = pack(setup.publisher, src, tmp_path / "news2.mdrop", "news", "--version", "2")
    step("--home", source, "import", v2, "-q", check=True)
    return source, stick, setup.files_of(stick, "news")


def test_export_tops_up_and_replaces_superseded_versions(setup: Setup, tmp_path: Path) -> None:
    source, stick, old_news = with_news_v2(setup, tmp_path)
    code, lines, summary = export_json(source, stick, "--part-size", PART_SIZE)
    assert code == 0
    assert by_name(lines) == {
        "news": "written, replacing an older version",
        "big": "already there",
        "video": "already there",
        "radio": "already there",
    }
    assert summary["removed"] == [p.name for p in old_news]
    assert not any(p.exists() for p in old_news)
    code, lines, summary = export_json(source, stick, "--part-size", PART_SIZE)
    assert set(by_name(lines).values()) == {"already there"} and summary["written"] == 0
    node = setup.fresh_node(tmp_path / "node")
    step("--home", node, "import", stick, "-q", check=True)
    assert listed(node) == {"news": 2, "big": 1, "video": 1, "radio": 1}


def test_a_bundle_damaged_in_the_store_fails_alone_and_its_old_copy_stays(
    setup: Setup, tmp_path: Path
) -> None:
    # Export writes many bundles per sync: one that fails half-way (a chunk damaged on
    # the node's disk) must not cost the others of its batch, must leave no temp file,
    # and must leave the stick's older version of it in place.
    source, stick, old_news = with_news_v2(setup, tmp_path)
    for name in ("video", "radio"):  # written again, alongside the failing bundle
        for path in setup.files_of(stick, name):
            path.unlink()
    chunk = chunk_name(source, hashlib.sha256(NEWS_V2).hexdigest())
    (source / "chunks" / chunk[:2] / chunk).write_bytes(b"<h1>news, forged  edition</h1>")
    code, lines, _ = export_json(source, stick, "--part-size", PART_SIZE)
    assert code != 0
    assert by_name(lines) == {
        "news": "failed",
        "big": "already there",
        "video": "written",
        "radio": "written",
    }
    assert "damaged in the store" in next(str(x["detail"]) for x in lines if x["name"] == "news")
    assert all(p.exists() for p in old_news)
    assert not [p for p in (stick / "meshdrop").iterdir() if p.name.startswith(".tmp-")]
    node = setup.fresh_node(tmp_path / "node")
    step("--home", node, "import", stick, "-q", check=True)
    assert listed(node) == {"news": 1, "big": 1, "video": 1, "radio": 1}


def test_max_bytes_and_reserve_choose_by_priority_and_say_what_was_left_out(
    setup: Setup, tmp_path: Path
) -> None:
    dest = tmp_path / "stick"
    dest.mkdir()
    code, lines, _ = export_json(setup.source, dest, "--max-bytes", "800K")
    assert code == 0
    got = by_name(lines)
    assert got == {"news": "written", "radio": "written", "big": "left out", "video": "left out"}
    assert all("--max-bytes" in str(x["detail"]) for x in lines if x["outcome"] == "left out")
    assert [x["name"] for x in lines if x["outcome"] == "written"] == ["news", "radio"]
    text = run_meshdrop("--home", setup.source, "export", tmp_path / "other", "--reserve", "100T")
    assert_clean_error(text, "does not exist")
    (tmp_path / "other").mkdir()
    text = run_meshdrop("--home", setup.source, "export", tmp_path / "other", "--reserve", "100T")
    assert text.code == 0
    assert text.out.count("left out: not enough free space") == len(BUNDLES)
    assert "0 bundles written" in text.out


def test_want_file_puts_what_the_destination_lacks_first(setup: Setup, tmp_path: Path) -> None:
    dest = tmp_path / "stick"
    dest.mkdir()
    node = setup.fresh_node(tmp_path / "node")
    step("--home", node, "import", setup.files_of(setup.stick, "news")[0], check=True)
    wrote = run_meshdrop("--home", node, "want", dest, check=True)
    assert "1 bundle," in wrote.out
    assert (dest / "meshdrop" / "want.mdw").stat().st_size < 1024
    # news has the highest priority, but the destination has it: radio goes first.
    _, lines, _ = export_json(setup.source, dest, "--max-bytes", "500K")
    assert by_name(lines)["radio"] == "written"
    assert by_name(lines)["news"] == "left out"
    fingerprint = json.loads(step("--home", node, "trust", "ls", "--json").out)["fingerprint"]
    asked = run_meshdrop("--home", node, "want", dest, "--publisher", fingerprint[:9], check=True)
    assert "1 publisher asked for" in asked.out


def test_publisher_files_travel_and_carry_a_newer_record(tmp_path: Path) -> None:
    publisher = make_publisher(tmp_path / "pub")
    src = write_tree(tmp_path / "src", {"a.txt": b"a"})
    bundle = pack(publisher, src, tmp_path / "a.mdrop", "notes")
    source, dest_node = tmp_path / "source", tmp_path / "dest-node"
    for home in (source, dest_node):
        step("--home", home, "trust", "add", "--yes", publisher.pub, check=True)
    step("--home", source, "import", bundle, check=True)
    step("publisher", "add-signer", publisher.folder, "--unencrypted", check=True)
    step("--home", source, "import", publisher.pub, check=True)
    stick = tmp_path / "stick"
    stick.mkdir()
    result = run_meshdrop("--home", source, "export", stick, check=True)
    assert "publisher files written" in result.out
    _, lines = import_json(dest_node, stick)
    assert [x["outcome"] for x in lines] == ["publisher updated", "imported"], lines


def test_only_visible_bundles_are_exported(setup: Setup, tmp_path: Path) -> None:
    source = shutil.copytree(setup.source, tmp_path / "source")
    now = int(time.time())
    src = write_tree(tmp_path / "soon", {"a.txt": b"gone soon"})
    soon = pack(
        setup.publisher,
        src,
        tmp_path / "soon.mdrop",
        "soon",
        "--version",
        "1",
        "--expires",
        str(now + 2),
    )
    step("--home", source, "import", soon, check=True)
    time.sleep(max(0.0, now + 3 - time.time()))
    dest = tmp_path / "stick"
    dest.mkdir()
    _, lines, _ = export_json(source, dest, "--part-size", PART_SIZE)
    assert set(by_name(lines)) == ALL
    assert not list((dest / "meshdrop").glob("soon-*"))


def test_watch_once_imports_then_tops_up_and_never_writes_to_other_drives(
    setup: Setup, tmp_path: Path
) -> None:
    media = tmp_path / "media"
    stick_a = setup.fresh_stick(media / "user" / "STICKA")
    for path in setup.files_of(stick_a, "radio"):
        path.unlink()
    plain = media / "STICKB"
    plain.mkdir()
    (plain / "holiday.jpg").write_bytes(b"photo")
    allowed = media / "user" / "STICKC"
    allowed.mkdir()
    before = snapshot(plain)
    node = setup.fresh_node(tmp_path / "node")
    step("--home", node, "import", setup.files_of(setup.stick, "radio")[0], check=True)
    result = run_meshdrop(
        "--home",
        node,
        "watch",
        "--once",
        "--root",
        media,
        "--allow-drive",
        "STICKC",
        "--part-size",
        PART_SIZE,
        "-q",
        timeout=120,
    )
    assert result.code == 0, result.out + result.err
    assert set(listed(node)) == ALL
    assert setup.files_of(stick_a, "radio"), "the stick was not topped up"
    assert snapshot(plain) == before and not (plain / "meshdrop").exists()
    assert {p.name.split("-")[0] for p in (allowed / "meshdrop").iterdir()} >= ALL
    again = step("--home", setup.fresh_node(tmp_path / "n2"), "import", allowed, "-q")
    assert again.code == 0


def test_watcher_reports_a_stick_once_until_it_is_replaced(tmp_path: Path) -> None:
    drive = tmp_path / "media" / "STICK"
    (drive / "meshdrop").mkdir(parents=True)
    (tmp_path / "media" / "EMPTY").mkdir()
    watcher = Watcher([tmp_path / "media"], [])
    assert [d.path for d in watcher.poll()] == [drive]
    assert watcher.poll() == []
    shutil.rmtree(drive)
    assert watcher.poll() == []
    (drive / "meshdrop").mkdir(parents=True)
    assert [d.path for d in watcher.poll()] == [drive]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("export", "{tmp}/missing"), "does not exist"),
        (("export", "{tmp}/file"), "is not a folder"),
        (("export", "{tmp}", "--max-bytes", "lots"), "is not a size"),
        (("export", "{tmp}", "--part-size", "10"), "--part-size"),
        (("export", "{tmp}", "--publisher", "ZZZZ-ZZZZ"), "no trusted publisher"),
        (("want", "{tmp}/missing"), "does not exist"),
        (("watch", "--once", "--interval", "0"), "--interval"),
    ],
)
def test_bad_courier_input_is_a_one_line_error(
    setup: Setup, tmp_path: Path, args: tuple[str, ...], fragment: str
) -> None:
    (tmp_path / "file").write_bytes(b"x")
    home = setup.fresh_node(tmp_path / "node")
    result = run_meshdrop("--home", home, *(a.format(tmp=tmp_path) for a in args))
    assert_clean_error(result, fragment)
    assert len(result.err.strip().splitlines()) == 1, result.err
