"""Hostile and broken media, each a named case: whatever happened to a stick, import
finishes in bounded time and memory, imports every intact bundle, exposes nothing else,
never follows a link and never modifies the stick; a rerun of export repairs it."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest
from courierkit import (
    BUNDLES,
    Setup,
    assert_bundle_bytes,
    chunk_files,
    import_json,
    listed,
    outcomes,
    setup_fixture,  # noqa: F401 (the `setup` fixture)
    snapshot,
)

from conftest import meshdrop_executable, meshdrop_in_process, peak_memory_kib, run_meshdrop
from meshdrop.core.manifest import Manifest
from meshdrop.errors import FormatError
from meshdrop.store import export
from meshdrop.store.store import Store
from meshdrop.transports.courier.exporter import CourierExport, ExportOptions
from meshdrop.transports.courier.exportplan import Done
from meshdrop.transports.courier.importer import CourierImport
from meshdrop.transports.courier.outcome import Status
from meshdrop.transports.courier.want import MAX_HAVE, WANT_MAGIC, parse_want

PART_BYTES = 1200 * 1024
ALL = set(BUNDLES)


def import_in_process(home: Path, folder: Path) -> dict[str, Status]:
    with Store(home) as store:
        reports = CourierImport(store).run(folder)
    return {r.name: r.status for r in reports if r.name}


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def head_size(path: Path) -> int:
    """Bytes before the data: header (16 or 36) plus the envelope length it declares."""
    data = path.read_bytes()[:36]
    if data.startswith(b"\x89MDPRT"):
        return 36 + int.from_bytes(data[12:16], "big")
    return 16 + int.from_bytes(data[12:16], "big")


def test_stick_pulled_mid_export_leaves_the_rest_importable_and_export_repairs_it(
    setup: Setup, tmp_path: Path
) -> None:
    targets = [
        setup.files_of(setup.stick, "news")[0].name,
        setup.files_of(setup.stick, "big")[1].name,
    ]
    for target in targets:
        size = (setup.courier(setup.stick) / target).stat().st_size
        env_end = head_size(setup.courier(setup.stick) / target)
        points = sorted(
            {0, 1, 8, 15, 16, 35, 100, env_end - 1, env_end, env_end + 4096, size // 2, size - 1}
        )
        for point in points:
            case = tmp_path / f"{target}-{point}"
            stick = setup.fresh_stick(case / "stick")
            courier = setup.courier(stick)
            with (courier / target).open("r+b") as handle:
                handle.truncate(point)
            # A pulled stick may also hold our temp file of the file being written.
            (courier / f".tmp-0123456789ab-{target}").write_bytes(b"\x89MDROP\r\n\x00")
            node = setup.fresh_node(case / "node")
            before = snapshot(stick)
            got = import_in_process(node, courier)
            assert snapshot(stick) == before, "import modified the stick"
            damaged = target.split("-")[0]
            for name in ALL - {damaged}:
                assert got[name] is Status.IMPORTED, (target, point, got)
            assert got.get(damaged) is not Status.IMPORTED, (target, point, got)
            with Store(setup.source) as store:
                summary = CourierExport(store, ExportOptions(part_size=PART_BYTES)).run(courier)
            done = {r.name: r.done for r in summary.reports}
            assert done[damaged] is Done.REPAIRED, (target, point, done)
            assert not list(courier.glob(".tmp-*")), "export left a temp file behind"
            again = import_in_process(node, courier)
            assert again[damaged] is Status.IMPORTED, (target, point, again)
    assert_bundle_bytes(node, "big", tmp_path / "out-big")


def test_flipped_bytes(setup: Setup, tmp_path: Path) -> None:
    news = setup.files_of(setup.stick, "news")[0].name
    part2 = setup.files_of(setup.stick, "big")[1].name
    news_head = head_size(setup.courier(setup.stick) / news)
    part_head = head_size(setup.courier(setup.stick) / part2)
    cases = [
        ("magic", news, 0, "news", Status.REFUSED),
        ("envelope", news, news_head - 20, "news", Status.REFUSED),
        ("data", news, news_head + 200_000, "news", Status.INCOMPLETE),
        ("part data", part2, part_head + 5, "big", Status.INCOMPLETE),
    ]
    for label, target, offset, bundle, expected in cases:
        stick = setup.fresh_stick(tmp_path / label / "stick")
        flip(setup.courier(stick) / target, offset)
        node = setup.fresh_node(tmp_path / label / "node")
        got = import_in_process(node, setup.courier(stick))
        for name in ALL - {bundle}:
            assert got[name] is Status.IMPORTED, (label, got)
        assert got.get(bundle, Status.REFUSED) is expected, (label, got)
        assert bundle not in listed(node)
    # The last node kept what verified; the pristine stick completes it, copying only
    # the chunk that was damaged.
    kept = chunk_files(node)
    _result, lines = import_json(node, setup.stick)
    assert outcomes(lines)["big"] == "imported", lines
    assert all(chunk_files(node)[name] == inode for name, inode in kept.items())
    assert_bundle_bytes(node, "big", tmp_path / "out")


def test_zeroed_4k_blocks(setup: Setup, tmp_path: Path) -> None:
    stick = setup.fresh_stick(tmp_path / "stick")
    courier = setup.courier(stick)
    for path in (setup.files_of(stick, "news")[0], setup.files_of(stick, "big")[2]):
        with path.open("r+b") as handle:
            handle.seek(8192)
            handle.write(bytes(4096))
    node = setup.fresh_node(tmp_path / "node")
    result, lines = import_json(node, stick)
    got = outcomes(lines)
    assert result.code == 1
    assert got["news"] == got["big"] == "incomplete", lines
    assert got["video"] == got["radio"] == "imported"
    assert set(listed(node)) == {"video", "radio"}
    kept = chunk_files(node)
    result, lines = import_json(node, setup.stick)
    assert result.code == 0, lines
    assert all(chunk_files(node)[name] == inode for name, inode in kept.items())
    assert_bundle_bytes(node, "news", tmp_path / "news")
    assert_bundle_bytes(node, "big", tmp_path / "big")
    assert courier.exists()


def test_truncated_part_stays_staged_and_a_second_stick_completes_it(
    setup: Setup, tmp_path: Path
) -> None:
    stick = setup.fresh_stick(tmp_path / "stick")
    part2 = setup.files_of(stick, "big")[1]
    count = len(setup.files_of(stick, "big"))
    with part2.open("r+b") as handle:
        handle.truncate(part2.stat().st_size // 2)
    node = setup.fresh_node(tmp_path / "node")
    _result, lines = import_json(node, stick)
    [big] = [x for x in lines if x.get("name") == "big"]
    assert big["outcome"] == "incomplete"
    assert f"parts missing or damaged: 2 of {count}" in str(big["detail"])
    assert "truncated" in str(big["detail"])
    assert "big" not in listed(node)
    # fsck --repair must keep a staged bundle's verified chunks.
    kept = chunk_files(node)
    run_meshdrop("--home", node, "fsck", "--repair", check=True)
    assert chunk_files(node) == kept
    # The second stick brings only the missing part.
    second = tmp_path / "second" / "meshdrop"
    second.mkdir(parents=True)
    shutil.copy(setup.files_of(setup.stick, "big")[1], second / part2.name)
    _result, lines = import_json(node, second.parent)
    assert outcomes(lines) == {"big": "imported"}, lines
    assert all(chunk_files(node)[name] == inode for name, inode in kept.items())
    assert_bundle_bytes(node, "big", tmp_path / "out")
    meshdrop_in_process("--home", node, "fsck", check=True)  # a look afterwards


def test_part_from_another_bundle(setup: Setup, tmp_path: Path) -> None:
    stick = setup.fresh_stick(tmp_path / "stick")
    big2 = setup.files_of(stick, "big")[1]
    shutil.copy(setup.files_of(stick, "video")[1], big2)  # another bundle's part, renamed
    node = setup.fresh_node(tmp_path / "node")
    before = snapshot(stick)
    _result, lines = import_json(node, stick)
    assert snapshot(stick) == before
    got = outcomes(lines)
    assert got["big"] == "incomplete" and "parts missing or damaged: 2 of" in str(
        next(x["detail"] for x in lines if x.get("name") == "big")
    )
    assert got["video"] == got["news"] == got["radio"] == "imported"
    assert set(listed(node)) == {"news", "video", "radio"}


def test_duplicate_and_extra_parts(setup: Setup, tmp_path: Path) -> None:
    stick = setup.fresh_stick(tmp_path / "stick")
    courier = setup.courier(stick)
    parts = setup.files_of(stick, "big")
    base = parts[0].name.rsplit(".", 1)[0]
    shutil.copy(parts[0], courier / "copy-of-big.p001")  # a duplicate under another name
    shutil.copy(parts[2], courier / f"{base}.p009")  # an extra part (really part 3)
    (courier / f"{base}.p010").write_bytes(b"\x89MDPRT\r\n" + os.urandom(5000))  # junk
    node = setup.fresh_node(tmp_path / "node")
    result, lines = import_json(node, stick)
    assert outcomes(lines)["big"] == "imported", lines
    assert set(listed(node)) == ALL
    junk = [x for x in lines if x["files"] == [f"{base}.p010"]]
    assert junk and junk[0]["outcome"] == "refused"
    assert result.code == 1  # the junk part is reported as refused
    assert_bundle_bytes(node, "big", tmp_path / "out")


def test_courier_folder_with_100000_junk_files(setup: Setup, tmp_path: Path) -> None:
    stick = setup.fresh_stick(tmp_path / "stick")
    courier = setup.courier(stick)
    for i in range(100_000):
        os.close(os.open(courier / f"junk-{i:06d}.dat", os.O_CREAT | os.O_WRONLY, 0o644))
    for i in range(300):
        (courier / f"junk-{i:03d}.mdrop").write_bytes(os.urandom(64))
    for i in range(50):
        (courier / f"folder-{i}.mdrop").mkdir()
    node = setup.fresh_node(tmp_path / "node")
    started = time.monotonic()
    proc = subprocess.Popen(
        [meshdrop_executable(), "--home", str(node), "import", str(stick), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=120)
    elapsed = time.monotonic() - started
    assert "Traceback" not in err, err
    assert set(listed(node)) == ALL
    assert elapsed < 60, f"import took {elapsed:.1f} s"
    assert len((out + err).splitlines()) < 60, "junk must be summarised, not listed line by line"
    assert "100050 entries that are not meshdrop files" in out  # 50 are folders
    assert "more files are not meshdrop bundles" in err


def test_junk_import_peak_memory_is_bounded(setup: Setup, tmp_path: Path) -> None:
    stick = setup.fresh_stick(tmp_path / "stick")
    courier = setup.courier(stick)
    for i in range(20_000):
        os.close(os.open(courier / f"x{i:05d}.mdrop", os.O_CREAT | os.O_WRONLY, 0o644))
    node = setup.fresh_node(tmp_path / "node")
    argv = [meshdrop_executable(), "--home", str(node), "import", str(stick), "-q"]
    _, peak = peak_memory_kib(argv)
    assert peak < 200 * 1024, f"peak memory {peak} KiB"
    assert set(listed(node)) == ALL


def test_names_colliding_on_case_insensitive_media(setup: Setup, tmp_path: Path) -> None:
    names = [p.name for p in setup.courier(setup.stick).iterdir()]
    assert all(n == n.lower() and n.isascii() for n in names)
    assert len({n.casefold() for n in names}) == len(names)
    stick = setup.fresh_stick(tmp_path / "stick")
    courier = setup.courier(stick)
    news = setup.files_of(stick, "news")[0]
    radio = setup.files_of(stick, "radio")[0]
    upper = courier / news.name.upper()
    shutil.copy(news, upper)
    flip(upper, upper.stat().st_size - 10)  # a damaged twin that differs only in case
    shutil.copy(radio, courier / news.name.replace("news", "News"))  # another bundle's bytes
    node = setup.fresh_node(tmp_path / "node")
    before = snapshot(stick)
    _result, lines = import_json(node, stick)
    assert snapshot(stick) == before
    got = outcomes(lines)
    assert got["news"] == got["radio"] == "imported", lines
    assert set(listed(node)) == ALL
    assert_bundle_bytes(node, "news", tmp_path / "news")
    # Export onto the colliding stick works and rewrites nothing that is intact.
    export = run_meshdrop("--home", setup.source, "export", stick, "--part-size", "1200K", "-q")
    assert export.code == 0, export.err
    assert "0 bundles written" in export.out


def test_symlinks_fifos_and_device_nodes_are_never_followed_and_never_block(
    setup: Setup, tmp_path: Path
) -> None:
    stick = setup.fresh_stick(tmp_path / "stick")
    courier = setup.courier(stick)
    radio = setup.files_of(stick, "radio")[0]
    radio.unlink()
    outside = setup.files_of(setup.stick, "radio")[0]
    (courier / "radio-link.mdrop").symlink_to(outside)
    (courier / "link.pub").symlink_to(setup.publisher.pub)
    (courier / "loop").symlink_to("..")
    os.mkfifo(courier / "fifo.mdrop")
    os.mkfifo(courier / "fifo.p001")
    os.mkfifo(courier / "fifo.pub")
    os.mkfifo(courier / "want.mdw")
    if os.geteuid() == 0:
        os.mknod(courier / "zero.mdrop", stat.S_IFCHR | 0o644, os.makedev(1, 5))
    node = setup.fresh_node(tmp_path / "node")
    before = snapshot(stick)
    result, lines = import_json(node, stick)
    assert snapshot(stick) == before
    assert set(listed(node)) == ALL - {"radio"}
    refused = {tuple(map(str, x["files"])) for x in lines if x["outcome"] == "refused"}  # type: ignore[call-overload]
    for name in ("radio-link.mdrop", "fifo.mdrop", "fifo.p001", "fifo.pub", "link.pub"):
        assert (name,) in refused, lines
    if os.geteuid() == 0:
        assert ("zero.mdrop",) in refused
    # Export onto the same stick: the FIFO want file is ignored, nothing blocks.
    export = run_meshdrop(
        "--home", setup.source, "export", stick, "--part-size", "1200K", timeout=60
    )
    assert export.code == 0, export.err
    assert "ignored the want file" in export.out
    assert stat.S_ISFIFO((courier / "want.mdw").lstat().st_mode)
    # A courier folder that is itself a link is not followed.
    linked = tmp_path / "linked-stick"
    linked.mkdir()
    (linked / "meshdrop").symlink_to(setup.courier(setup.stick))
    other = setup.fresh_node(tmp_path / "other")
    result = run_meshdrop("--home", other, "import", linked)
    assert result.code != 0 and "Traceback" not in result.err
    assert listed(other) == {}


@pytest.mark.parametrize(
    ("label", "data"),
    [
        ("empty", b""),
        ("wrong magic", b"\x89MDPUB\r\n" + b"\x80"),
        ("garbage", WANT_MAGIC + os.urandom(200)),
        (
            "float",
            WANT_MAGIC
            + b"\x84\xa4have\x90\xa6format\x01\xa7created\xcb"
            + bytes(8)
            + b"\xaapublishers\x90",
        ),
        ("deep", WANT_MAGIC + b"\x91" * 50 + b"\x01"),
        (
            "too many",
            WANT_MAGIC + b"\xdd" + (MAX_HAVE + 300).to_bytes(4, "big") + b"\xc4\x10" + bytes(16),
        ),
        ("huge", WANT_MAGIC + bytes(2 * 1024 * 1024)),
        (
            "unknown field",
            WANT_MAGIC
            + b"\x85\xa1x\x01\xa4have\x90\xa6format\x01\xa7created\x01\xaapublishers\x90",
        ),
        (
            "short entry",
            WANT_MAGIC
            + b"\x84\xa4have\x91\xc4\x03abc\xa6format\x01\xa7created\x01\xaapublishers\x90",
        ),
    ],
)
def test_malformed_want_files_are_refused(label: str, data: bytes) -> None:
    with pytest.raises(FormatError):
        parse_want(data, "want.mdw")


def test_huge_or_malformed_want_file_only_gets_ignored(setup: Setup, tmp_path: Path) -> None:
    for label, make in (
        ("huge", lambda p: os.truncate(p, 10 * 1024**3)),
        ("malformed", lambda p: p.write_bytes(WANT_MAGIC + b"\xc1" * 100)),
    ):
        dest = tmp_path / label
        (dest / "meshdrop").mkdir(parents=True)
        want = dest / "meshdrop" / "want.mdw"
        want.touch()
        make(want)
        started = time.monotonic()
        result = run_meshdrop("--home", setup.source, "export", dest, "--part-size", "1200K")
        assert result.code == 0, result.err
        assert "ignored the want file" in result.out
        assert "4 bundles written" in result.out
        assert time.monotonic() - started < 30


def test_a_top_up_parses_no_manifest_of_a_bundle_already_on_the_stick(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stick = setup.fresh_stick(tmp_path / "stick")
    parsed: list[bytes] = []
    real = export.parse_manifest

    def counting(data: bytes) -> Manifest:
        parsed.append(data)
        return real(data)

    monkeypatch.setattr(export, "parse_manifest", counting)
    with Store(setup.source) as store:
        export_run = CourierExport(store, ExportOptions(part_size=PART_BYTES))
        summary = export_run.run(setup.courier(stick))
    assert {r.done for r in summary.reports} == {Done.ALREADY_THERE}
    assert parsed == []
