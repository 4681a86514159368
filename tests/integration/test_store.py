"""The node's store: rollback protection, chunk reuse between bundles and versions, fsck,
a full disk, two importers at once and long listings. Through the installed command
where a user would act, through the Store API where that is the simpler way to look."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import (
    FIXED_CREATED,
    Publisher,
    Result,
    assert_clean_error,
    chunk_files,
    chunk_name,
    command_env,
    list_json,
    manifest_hash,
    meshdrop_executable,
    meshdrop_in_process,
    read_tree,
    write_tree,
)
from meshdrop.core.manifest import CHUNK_SIZE
from meshdrop.errors import RollbackError
from meshdrop.publish.keystore import load_publisher
from meshdrop.publish.pack import pack_folder
from meshdrop.store.store import Outcome, Store

MiB = 1024 * 1024

Run = Callable[..., Result]
NO_SPACE_CHECK = {"MESHDROP_MIN_FREE": str(-(2**40))}
MakeBundle = Callable[..., Path]


def digests(data: bytes) -> list[str]:
    """Hex SHA-256 of each chunk of one file's data, in order."""
    return [
        hashlib.sha256(data[i : i + CHUNK_SIZE]).hexdigest()
        for i in range(0, len(data), CHUNK_SIZE)
    ]


def chunk_path(home: Path, digest: str) -> Path:
    name = chunk_name(home, digest)
    return home / "chunks" / name[:2] / name


def stored_names(home: Path, data: bytes) -> list[str]:
    """The chunk file names of one file's data in the store in ``home``, in order."""
    return [chunk_name(home, digest) for digest in digests(data)]


# The command a test is about runs as a real process (``run``); set-up steps and the looks
# afterwards run the same command in process (``step``, and ``got`` and ``listed``).
step = meshdrop_in_process


def got(home: Path, name: str, out: Path) -> dict[str, bytes]:
    step("--home", home, "get", name, "-o", out, check=True)
    return read_tree(out)


def imported(run: Run, home: Path, *paths: Path) -> list[dict[str, str]]:
    result = run("--home", home, "import", "--json", "--quiet", *paths)
    assert "Traceback" not in result.err, result.err
    return [json.loads(line) for line in result.out.splitlines() if line.strip()]


def fsck_json(run: Run, home: Path, *extra: str) -> tuple[int, dict[str, object]]:
    result = run("--home", home, "fsck", "--json", "--quiet", *extra)
    assert "Traceback" not in result.err, result.err
    return result.code, json.loads(result.out)


def listed(home: Path) -> list[tuple[str, int]]:
    return sorted((str(b["name"]), int(str(b["version"]))) for b in list_json(home))


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


# Rollback


def test_older_version_is_refused_also_after_restart(
    run: Run, make_bundle: MakeBundle, node: Path
) -> None:
    v1 = make_bundle("news", {"a.txt": b"one"}, version=1)
    v2 = make_bundle("news", {"a.txt": b"two"}, version=2)
    step("--home", node, "import", v2, check=True)
    # Every `meshdrop` run is a new process: the refusal comes from the index on disk.
    refused = run("--home", node, "import", v1)
    assert_clean_error(refused, "older than version 2")
    for _restart in range(2):
        with Store(node) as store, pytest.raises(RollbackError, match="older than version 2"):
            store.import_file(v1)
    assert listed(node) == [("news", 2)]


@pytest.mark.parametrize("how", ["fsck-repair", "rm-command"])
def test_older_version_is_refused_after_the_newer_one_is_deleted(
    how: str, run: Run, make_bundle: MakeBundle, node: Path, tmp_path: Path
) -> None:
    v1 = make_bundle("news", {"a.bin": os.urandom(3000)}, version=1)
    # Of two copies of one version every node keeps the lower manifest hash: a twin with a
    # higher one is refused whatever the order. So v2 is the lower of two copies.
    copies = [{"a.bin": os.urandom(3000)}, {"a.bin": os.urandom(3000)}]
    made = sorted(
        ((make_bundle("news", files, version=2), files) for files in copies),
        key=lambda pair: manifest_hash(pair[0]),
    )
    (v2, v2_files), (v2_twin, _) = made
    step("--home", node, "import", v1, check=True)
    step("--home", node, "import", v2, check=True)
    if how == "fsck-repair":
        # A chunk of v2 is damaged, and fsck drops the bundle.
        flip_byte(chunk_path(node, digests(v2_files["a.bin"])[0]))
        code, report = fsck_json(run, node, "--repair")
        assert (code, report["dropped_bundles"]) == (0, 1)
    else:
        # The owner deletes it. Forgetting the bundle must not forget the newest version
        # seen: the rollback marks are kept apart from the bundles.
        removed = run("--home", node, "rm", "news")
        assert removed.code == 0 and "removed news v2" in removed.out, removed
    assert listed(node) == []

    assert_clean_error(run("--home", node, "import", v1), "older than version 2")
    assert_clean_error(run("--home", node, "import", v2_twin), "differs")
    assert listed(node) == []
    assert imported(run, node, v2)[0]["outcome"] == "imported"
    assert got(node, "news", tmp_path / "out") == v2_files


def test_two_copies_of_one_version_end_the_same_on_every_node_and_are_recorded(
    run: Run, make_bundle: MakeBundle, publisher: Publisher, tmp_path: Path
) -> None:
    """Two different bundles signed as version 3 (only a stolen signing key makes them):
    whichever order they arrive in, a node keeps the one with the lower manifest hash,
    refuses or replaces the other, and records both for `trust show` and `ls`."""
    copies = [
        make_bundle("news", {"a.txt": b"the real version 3"}, version=3),
        make_bundle("news", {"a.txt": b"a forged version 3"}, version=3),
    ]
    low, high = sorted(copies, key=manifest_hash)
    kept = {"a.txt": (b"the real version 3" if low == copies[0] else b"a forged version 3")}
    for order in ((low, high), (high, low)):
        home = tmp_path / f"node-{order[0].name}"
        step("--home", home, "trust", "add", "--yes", publisher.pub, check=True)
        step("--home", home, "import", order[0], check=True)
        second = run("--home", home, "import", order[1], "--json")
        line = json.loads(second.out)
        if order[1] == high:
            assert second.code != 0 and line["outcome"] == "refused", second
            assert "differs from the copy of that version" in line["detail"]
            assert "stolen" in line["detail"] and line["exit_code"] == 6
        else:
            assert second.code == 0, second
            assert line["outcome"] == "imported, replacing another copy of the same version"
        assert listed(home) == [("news", 3)]
        assert got(home, "news", tmp_path / f"out-{order[0].name}") == kept
        [bundle] = list_json(home)
        assert bundle["equivocated"] is True
        shown = run("--home", home, "trust", "show", fingerprint_of(home), "--json")
        [twin] = json.loads(shown.out)["equivocations"]
        assert (twin["name"], twin["version"]) == ("news", 3)
        assert {twin["kept"], twin["other"]} == {manifest_hash(c).hex() for c in copies}
        assert twin["kept"] == manifest_hash(low).hex()
        text = run("--home", home, "trust", "show", fingerprint_of(home), check=True)
        assert "most likely stolen" in text.out


def fingerprint_of(home: Path) -> str:
    [trusted] = step("--home", home, "trust", "ls", "--json", check=True).out.splitlines()
    return str(json.loads(trusted)["fingerprint"])


def test_same_version_same_content_is_already_had(
    run: Run, make_bundle: MakeBundle, node: Path
) -> None:
    bundle = make_bundle("news", {"a.bin": os.urandom(CHUNK_SIZE + 5)}, version=3)
    assert imported(run, node, bundle)[0]["outcome"] == "imported"
    stored = chunk_files(node)
    again = run("--home", node, "import", bundle)
    assert again.code == 0 and "already had: news v3" in again.out
    with Store(node) as store:
        assert store.import_file(bundle).outcome is Outcome.ALREADY_HAD
    assert chunk_files(node) == stored
    assert listed(node) == [("news", 3)]


# Chunks shared between bundles and versions


def test_identical_file_in_two_bundles_is_stored_once(
    run: Run, make_bundle: MakeBundle, node: Path, tmp_path: Path
) -> None:
    shared = os.urandom(2 * MiB)
    first = {"video.bin": shared, "a.txt": b"first"}
    second = {"copy/of/video.bin": shared, "b.txt": b"second"}
    run("--home", node, "import", make_bundle("first", first), check=True)
    after_first = chunk_files(node)
    run("--home", node, "import", make_bundle("second", second), check=True)
    after_second = chunk_files(node)
    expected = {*stored_names(node, shared), *stored_names(node, b"first")}
    expected |= {*stored_names(node, b"second")}
    assert set(after_second) == expected
    assert len(after_second) == 4  # not 6: the two chunks of the shared file once
    assert {d: after_second[d] for d in after_first} == after_first
    assert got(node, "first", tmp_path / "first") == first
    assert got(node, "second", tmp_path / "second") == second


def test_new_version_reuses_unchanged_chunks_and_deletes_only_unused_old_ones(
    run: Run, make_bundle: MakeBundle, node: Path, tmp_path: Path
) -> None:
    a, b, c = os.urandom(2 * MiB), os.urandom(3 * MiB), b"<p>unchanged</p>"
    b_new = b[:CHUNK_SIZE] + os.urandom(2 * MiB)  # first chunk unchanged, the rest new
    v1_files = {"a.bin": a, "b.bin": b, "c.html": c}
    v2_files = {"a.bin": a, "b.bin": b_new, "c.html": c}
    archive_files = {"tail.bin": b[2 * CHUNK_SIZE :]}  # the last chunk of v1's b.bin
    a0, a1 = stored_names(node, a)
    b0, b1, b2 = stored_names(node, b)
    _, n1, n2 = stored_names(node, b_new)
    [c0] = stored_names(node, c)

    step("--home", node, "import", make_bundle("news", v1_files, version=1), check=True)
    step("--home", node, "import", make_bundle("archive", archive_files), check=True)
    before = chunk_files(node)
    assert set(before) == {a0, a1, b0, b1, b2, c0}

    replaced = run("--home", node, "import", make_bundle("news", v2_files, version=2))
    assert replaced.code == 0 and "replaces v1" in replaced.out
    after = chunk_files(node)
    # b1 was used only by v1: deleted. b2 is still used by "archive": kept. The chunks v1
    # and v2 share are the very same files, not copies written again.
    assert set(after) == {a0, a1, b0, n1, n2, c0, b2}
    assert {d: after[d] for d in (a0, a1, b0, c0, b2)} == {
        d: before[d] for d in (a0, a1, b0, c0, b2)
    }
    assert got(node, "news", tmp_path / "news") == v2_files
    assert got(node, "archive", tmp_path / "archive") == archive_files
    code, report = fsck_json(step, node)
    assert (code, report["damaged_chunks"]) == (0, 0)


# fsck


def damage(path: Path, how: str) -> None:
    if how == "flip-byte":
        flip_byte(path)
    else:
        path.unlink()


@pytest.mark.parametrize("how", ["flip-byte", "remove"])
def test_fsck_finds_damage_repair_drops_the_bundle_and_reimport_restores_it(
    how: str, run: Run, make_bundle: MakeBundle, node: Path, tmp_path: Path
) -> None:
    news_files = {"index.html": b"<h1>news</h1>", "video.bin": os.urandom(CHUNK_SIZE + 777)}
    good_files = {"index.html": b"<h1>good</h1>"}
    news = make_bundle("news", news_files)
    step("--home", node, "import", news, make_bundle("good", good_files), check=True)
    damage(chunk_path(node, digests(news_files["video.bin"])[0]), how)

    check = run("--home", node, "fsck", "--quiet")
    assert check.code == 1, check
    assert "damaged: news v1" in check.out and "good" not in check.out
    code, report = fsck_json(run, node)
    assert (code, report["damaged_chunks"], report["damaged_bundles"]) == (1, 1, ["news v1"])

    for args in (("-o", tmp_path / "whole"), ("video.bin", "-o", tmp_path / "video.bin")):
        failed = run("--home", node, "get", "news", *args)
        assert_clean_error(failed, "video.bin", "missing or damaged", "fsck --repair")
        assert len(failed.err.strip().splitlines()) == 1, failed.err
        assert not Path(args[-1]).exists()  # nothing half-written is left behind
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert got(node, "good", tmp_path / "good") == good_files

    repair = run("--home", node, "fsck", "--repair", "--quiet")
    assert repair.code == 0, repair
    assert "dropped: news v1" in repair.out
    assert listed(node) == [("good", 1)]
    code, report = fsck_json(step, node)
    assert (code, report["damaged_chunks"], report["damaged_bundles"]) == (0, 0, [])

    assert imported(run, node, news)[0]["outcome"] == "imported"
    assert listed(node) == [("good", 1), ("news", 1)]
    assert got(node, "news", tmp_path / "restored") == news_files
    code, report = fsck_json(step, node)
    assert (code, report["damaged_chunks"]) == (0, 0)


# A full disk


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 40 MiB tmpfs mounted for this test only."""
    if os.geteuid() != 0:
        pytest.skip("the disk-full test mounts a small tmpfs, which needs root")
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=40m,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)]).returncode != 0:
            subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


def leave_free(filler: Path, wanted: int) -> None:
    """Grow or shrink ``filler`` until exactly ``wanted`` bytes stay free on its file
    system (a multiple of the 4 KiB page, as tmpfs counts whole pages)."""
    info = os.statvfs(filler.parent)
    size = filler.stat().st_size if filler.exists() else 0
    target = size + info.f_bavail * info.f_frsize - wanted
    if target < size:
        os.truncate(filler, target)
    with filler.open("ab") as handle:
        handle.write(bytes(max(0, target - size)))
    info = os.statvfs(filler.parent)
    assert info.f_bavail * info.f_frsize == wanted


def test_full_disk_refuses_cleanly_keeps_what_was_stored_and_resumes(
    run: Run, make_bundle: MakeBundle, publisher: Publisher, small_disk: Path, tmp_path: Path
) -> None:
    home = small_disk / "node"
    step("--home", home, "trust", "add", "--yes", publisher.pub, check=True)
    good_files = {"index.html": b"<p>small and good</p>", "img.bin": os.urandom(300_000)}
    big_files = {"one.bin": os.urandom(10 * MiB), "two.bin": os.urandom(10 * MiB)}
    good = make_bundle("good", good_files)
    big = make_bundle("big", big_files)
    step("--home", home, "import", good, check=True)
    filler = small_disk / "filler"
    # Room for 6 of the 20 chunks and half of a 7th: the half-written chunk is removed
    # when its write fails, so the store keeps enough space to be opened afterwards
    # (with none at all it cannot be: see test_import_onto_a_nearly_full_disk_...).
    leave_free(filler, 6 * MiB + 512 * 1024)

    # Refused before anything is written: the import would leave less than the reserve.
    before = chunk_files(home)
    early = run("--home", home, "import", "--quiet", big)
    assert_clean_error(early, "not enough free disk space")
    assert chunk_files(home) == before
    # With the pre-check off (a negative reserve: as if another program filled the disk
    # after the check), the import starts and the disk really fills up on the way.
    full = run("--home", home, "import", "--quiet", big, env=NO_SPACE_CHECK)
    assert_clean_error(full, "disk is full")
    assert listed(home) == [("good", 1)]
    assert got(home, "good", tmp_path / "good") == good_files
    code, report = fsck_json(step, home)
    assert (code, report["damaged_chunks"], report["damaged_bundles"]) == (0, 0, [])
    assert not [p for p in home.rglob(".tmp-*")]

    filler.unlink()
    assert imported(run, home, big)[0]["outcome"] == "imported"
    assert listed(home) == [("big", 1), ("good", 1)]
    assert got(home, "big", tmp_path / "big") == big_files
    code, report = fsck_json(step, home)
    assert (code, report["damaged_chunks"]) == (0, 0)


def test_import_onto_a_nearly_full_disk_fails_cleanly_whatever_space_is_left(
    run: Run, make_bundle: MakeBundle, publisher: Publisher, small_disk: Path, tmp_path: Path
) -> None:
    # The new version needs one tiny chunk and an index commit, so as the free space
    # shrinks the disk fills up in each step of ingest: the chunk, the index, the open.
    a = os.urandom(300_000)
    v1 = make_bundle("news", {"a.bin": a}, version=1)
    v2 = make_bundle("news", {"a.bin": a, "b.txt": b"new"}, version=2)
    template = tmp_path / "template"
    step("--home", template, "trust", "add", "--yes", publisher.pub, check=True)
    step("--home", template, "import", v1, check=True)
    filler = small_disk / "filler"
    problems: list[str] = []
    refused: list[Path] = []
    for kib in (0, 8, 16, 32, 40, 48, 56, 64, 96, 128):
        leave_free(filler, 2 * MiB)  # room to copy the node in
        home = shutil.copytree(template, small_disk / f"node-{kib}")
        leave_free(filler, kib * 1024)
        result = run("--home", home, "import", "--quiet", v2, env=NO_SPACE_CHECK)
        text = (result.out + result.err).strip()
        if result.code != 0:
            refused.append(home)
            if "disk is full" not in text or "internal error" in text or "Traceback" in text:
                problems.append(f"{kib} KiB free: exit {result.code}: {text}")
    filler.unlink()
    assert refused, "no step ran out of space"
    for home in refused:  # with space again: v1 intact and nothing damaged, v2 imports
        code, report = fsck_json(step, home)
        if (code, report["damaged_chunks"]) != (0, 0):
            problems.append(f"{home.name}: fsck after freeing space: {report}")
        outcome = imported(step, home, v2)[0]["outcome"]
        if outcome != "imported, replacing an older version":
            problems.append(f"{home.name}: rerun after freeing space: {outcome}")
    assert not problems, "\n".join(problems)


# Two importers at once


def start(*args: str | Path) -> subprocess.Popen[str]:
    env = command_env()
    return subprocess.Popen(
        [meshdrop_executable(), *map(str, args)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_two_imports_at_once_both_succeed(
    run: Run, make_bundle: MakeBundle, node: Path, tmp_path: Path
) -> None:
    # The node holds news v1. At once, news v2 replaces it (deleting the chunks only v1
    # used) while "other" arrives with v1's shared.bin: were the two to interleave,
    # "other" could find those chunks present, skip them, and commit after v2 deleted them.
    # Whether they overlap here depends on timing; the next test proves the lock itself.
    shared = os.urandom(2 * MiB)
    step("--home", node, "import", make_bundle("news", {"shared.bin": shared}), check=True)
    files = {
        "news": {"index.html": b"<p>v2</p>", "a.bin": os.urandom(MiB)},
        "other": {"a-shared.bin": shared, "b.bin": os.urandom(4 * MiB)},
    }
    bundles = [make_bundle("news", files["news"], version=2), make_bundle("other", files["other"])]
    procs = [start("--home", node, "import", "--quiet", path) for path in bundles]
    outs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outs
    assert "news v2 (replaces v1)" in outs[0][0]
    assert "imported: other v1" in outs[1][0]
    assert listed(node) == [("news", 2), ("other", 1)]
    for name, expected in files.items():
        assert got(node, name, tmp_path / name) == expected
    code, report = fsck_json(step, node)
    assert (code, report["damaged_chunks"]) == (0, 0)
    assert set(chunk_files(node)) == {
        d
        for f in (*files["news"].values(), *files["other"].values())
        for d in stored_names(node, f)
    }


def lock_waiters(lock_file: Path) -> set[int]:
    """Pids blocked waiting for a flock on ``lock_file``, from /proc/locks."""
    info = lock_file.stat()
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    waiters = set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "->" and fields[2] == "FLOCK" and fields[6] == device:
            waiters.add(int(fields[5]))
    return waiters


def test_import_commits_only_once_it_has_the_write_lock(
    run: Run, make_bundle: MakeBundle, node: Path, tmp_path: Path
) -> None:
    files = {"a.bin": os.urandom(2 * MiB), "b.txt": b"waiting"}
    bundle = make_bundle("news", files)
    fd = os.open(node / "lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as another writer (import, fsck, rm) would
        proc = start("--home", node, "import", "--quiet", bundle)
        deadline = time.monotonic() + 60
        while proc.pid not in lock_waiters(node / "lock"):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the import never waited for the store lock"
            time.sleep(0.01)
        # Blocked on the lock, the bundle is not visible. (Its chunks may already be
        # stored: copying needs no lock, only the commit does.)
        assert listed(node) == []
    finally:
        os.close(fd)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "imported: news v1" in out
    assert got(node, "news", tmp_path / "out") == files


# Many bundles


def test_ls_lists_200_bundles_imported_from_one_folder(
    run: Run, publisher: Publisher, node: Path, tmp_path: Path
) -> None:
    # Packed in-process: 200 runs of `meshdrop pack` would take most of a minute.
    folder = load_publisher(publisher.folder)
    created = int(FIXED_CREATED)
    key, _ = folder.load_signer(lambda what: None, created)
    stick = tmp_path / "stick"
    stick.mkdir()
    names = [f"item-{i:03d}" for i in range(200)]
    for name in names:
        src = write_tree(tmp_path / "src" / name, {"index.html": f"<p>{name}</p>".encode()})
        pack_folder(
            src,
            stick / f"{name}.mdrop",
            signing_key=key,
            state=folder.state,
            name=name,
            version=1,
            created=created,
            expires=None,
            title=f"Item {name}",
            description="",
            language="en",
            priority=0,
        )

    reports = imported(run, node, stick)
    assert [r["outcome"] for r in reports] == ["imported"] * 200
    bundles = list_json(node)
    assert len(bundles) == 200
    assert sorted(str(b["name"]) for b in bundles) == names
    assert all(b["title"] == f"Item {b['name']}" and b["files"] == 1 for b in bundles)
    text = run("--home", node, "ls", check=True)
    assert len(text.out.splitlines()) == 200
    again = imported(run, node, stick)
    assert [r["outcome"] for r in again] == ["already had"] * 200
    assert len(list_json(node)) == 200
