"""`meshdrop get`: names up to the format's 255-byte limit (ASCII, Korean, emoji), temp
names that stay within it, a whole bundle written in fsync groups into a temp folder that
only appears under its name when complete, and gets cut short by a full disk, damage or
a kill that leave no output behind."""

from __future__ import annotations

import errno
import itertools
import os
import shutil
import signal
import stat
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import (
    Result,
    make_publisher,
    meshdrop_in_process,
    pack,
    read_tree,
    run_meshdrop,
    write_tree,
)
from meshdrop import fs
from meshdrop.errors import IntegrityError, StoreError, UsageError
from meshdrop.store import extract
from meshdrop.store.crashpoints import ENV as CRASH_ENV
from meshdrop.store.store import Store

KOREAN = "가나다라마바사아자차카타파하"  # each 3 bytes in UTF-8


def name_of(size: int, alphabet: str, suffix: str = ".txt") -> str:
    """A file name of exactly ``size`` bytes in UTF-8: ``alphabet`` repeated, then ASCII
    padding and ``suffix``."""
    width = len(alphabet[0].encode())
    count = (size - len(suffix)) // width
    body = (alphabet * count)[:count]
    return body + "x" * (size - len(suffix) - len(body.encode())) + suffix


LONG_NAMES = {
    f"{script}-{size}": name_of(size, alphabet)
    for size in (238, 250, 255)
    for script, alphabet in (("ascii", "abcdefghij"), ("korean", KOREAN))
}
LONG_NAMES["emoji-255"] = name_of(255, "😀🎉", suffix=".bin")  # 4-byte characters
LONG_PATHS = {
    **LONG_NAMES,
    "nested-255": f"{name_of(255, KOREAN, suffix='-dir')}/{LONG_NAMES['ascii-255']}",
}
LONG_FILES = {path: f"{key}\n".encode() * 40 for key, path in LONG_PATHS.items()}
MANY_FOLDERS = ("a", "b/c", "b/d")
MANY_FILES = {f"{MANY_FOLDERS[i % 3]}/file-{i:04d}.txt": os.urandom(700 + i) for i in range(300)}


@dataclass(frozen=True)
class Kit:
    home: Path  # a node holding "long" (LONG_FILES) and "many" (MANY_FILES)
    scratch: Path


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    root = tmp_path_factory.mktemp("get")
    publisher = make_publisher(root / "publisher")
    home = root / "node"  # set up in process; the tests run `get` as a real process
    meshdrop_in_process("--home", home, "trust", "add", "--yes", publisher.pub, check=True)
    for name, files in (("long", LONG_FILES), ("many", MANY_FILES)):
        src = write_tree(root / f"src-{name}", files)
        bundle = pack(publisher, src, root / f"{name}.mdrop", name)
        meshdrop_in_process("--home", home, "import", "--quiet", bundle, check=True)
    return Kit(home, root)


@pytest.fixture
def store(kit: Kit) -> Iterator[Store]:
    with Store(kit.home) as opened:
        yield opened


def assert_no_leftovers(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.startswith(fs.TEMP_PREFIX)]


# --- temp names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kept"),
    [
        pytest.param("short.txt", "short.txt", id="short-whole"),
        pytest.param("a" * 237, "a" * 237, id="ascii-237-whole"),
        pytest.param("a" * 255, "a" * 237, id="ascii-255"),
        pytest.param("가" * 85, "가" * 79, id="korean-255"),
        pytest.param("a" + "가" * 84, "a" + "가" * 78, id="korean-mid-char"),
        pytest.param("😀" * 63 + "abc", "😀" * 59, id="emoji-255"),
        pytest.param("ab" + "😀" * 62, "ab" + "😀" * 58, id="emoji-mid-char"),
    ],
)
def test_temp_names_fit_255_bytes_and_cut_between_characters(
    name: str, kept: str, tmp_path: Path
) -> None:
    temp = fs.temp_name_for(name)
    assert temp.startswith(fs.TEMP_PREFIX)
    assert len(temp.encode()) <= fs.NAME_MAX
    assert temp.split("-", 2)[2] == kept
    (tmp_path / temp).write_bytes(b"the file system takes it")


@settings(max_examples=300)
@given(st.text(st.characters(exclude_categories=["Cs"], exclude_characters="/\0"), max_size=300))
def test_any_temp_name_fits_and_keeps_a_whole_start_of_the_name(name: str) -> None:
    temp = fs.temp_name_for(name)
    raw = temp.encode()  # never a lone surrogate: no character was split
    assert len(raw) <= fs.NAME_MAX and temp.startswith(fs.TEMP_PREFIX)
    kept = temp.split("-", 2)[2]
    assert name.startswith(kept)
    assert kept == name or len(raw) > fs.NAME_MAX - 4  # cut only as much as it must


# --- names at the limit -------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(LONG_PATHS))
def test_one_file_with_a_long_name(key: str, store: Store, tmp_path: Path) -> None:
    path = LONG_PATHS[key]
    bundle = store.find_bundle("long")
    entry = extract.find_file(store, bundle, path)
    target = extract.write_file(store, bundle, entry, tmp_path)
    assert target == tmp_path / path.rsplit("/", 1)[-1]
    assert target.read_bytes() == LONG_FILES[path]
    assert_no_leftovers(tmp_path)


def test_get_of_one_file_named_255_bytes_of_korean(kit: Kit, tmp_path: Path) -> None:
    name = LONG_NAMES["korean-255"]
    result = run_meshdrop("--home", kit.home, "get", "long", name, "-o", tmp_path, check=True)
    assert (tmp_path / name).read_bytes() == LONG_FILES[name]
    assert result.out.startswith("wrote ")
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_get_of_a_whole_bundle_of_long_names_into_a_255_byte_folder(
    kit: Kit, tmp_path: Path
) -> None:
    out = tmp_path / LONG_NAMES["korean-255"]
    result = run_meshdrop("--home", kit.home, "get", "long", "-o", out, check=True)
    assert read_tree(out) == LONG_FILES
    assert f"wrote {len(LONG_FILES)} files of long" in result.out
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


# --- batching -----------------------------------------------------------------------------


def test_a_whole_bundle_is_fsynced_in_groups_not_file_by_file(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file is fsynced, but a group of them at a time, with no temp name of its own
    and each folder fsynced once (the old way: a temp name, fsync, rename and folder
    fsync per file)."""
    events: list[str] = []  # "create" per file made, "fsync" per file fsynced
    temp_names: list[str] = []
    folder_fsyncs: list[int] = []
    lock = threading.Lock()
    real_open, real_fsync = os.open, os.fsync

    def recording_open(path: str | os.PathLike[str], flags: int, *args: int, **kw: int) -> int:
        if flags & os.O_CREAT:
            with lock:
                events.append("create")
                if os.fspath(path).rsplit("/", 1)[-1].startswith(fs.TEMP_PREFIX):
                    temp_names.append(os.fspath(path))
        return real_open(path, flags, *args, **kw)

    def recording_fsync(fd: int) -> None:
        with lock:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                folder_fsyncs.append(fd)
            else:
                events.append("fsync")
        real_fsync(fd)

    monkeypatch.setattr(os, "open", recording_open)
    monkeypatch.setattr(os, "fsync", recording_fsync)
    count = extract.write_bundle(store, store.find_bundle("many"), tmp_path / "out")
    monkeypatch.undo()

    assert count == len(MANY_FILES) == events.count("create") == events.count("fsync")
    groups = sum(1 for pair in itertools.pairwise(events) if pair == ("create", "fsync"))
    assert groups == -(-len(MANY_FILES) // extract.SYNC_FILES)  # 2 for 300 files
    assert temp_names == []
    folders = {"", *MANY_FOLDERS, "b"}  # the temp folder, each folder in it
    assert len(folder_fsyncs) == len(folders) + 1  # and the output's parent
    assert read_tree(tmp_path / "out") == MANY_FILES


def test_progress_counts_every_byte(store: Store, tmp_path: Path) -> None:
    seen: list[int] = []
    bundle = store.find_bundle("many")
    extract.write_bundle(store, bundle, tmp_path / "out", seen.append)
    assert sum(seen) == bundle.size == sum(map(len, MANY_FILES.values()))


# --- where the output goes ----------------------------------------------------------------


def test_an_empty_folder_is_filled_and_missing_parents_are_made(
    store: Store, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    extract.write_bundle(store, store.find_bundle("many"), tmp_path / "empty")
    assert read_tree(tmp_path / "empty") == MANY_FILES
    extract.write_bundle(store, store.find_bundle("many"), tmp_path / "new" / "deeper" / "out")
    assert read_tree(tmp_path / "new" / "deeper" / "out") == MANY_FILES
    assert_no_leftovers(tmp_path)


@pytest.mark.parametrize("kind", ["non-empty-folder", "file", "link-to-empty-folder"])
def test_an_existing_output_is_refused_and_untouched(
    kind: str, store: Store, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    if kind == "non-empty-folder":
        write_tree(out, {"mine.txt": b"do not touch"})
    elif kind == "file":
        out.write_bytes(b"do not touch")
    else:
        (tmp_path / "empty").mkdir()
        out.symlink_to(tmp_path / "empty")
    before = {p.name: p.lstat().st_mtime_ns for p in tmp_path.rglob("*")}
    with pytest.raises(UsageError, match="already exists"):
        extract.write_bundle(store, store.find_bundle("many"), out)
    assert {p.name: p.lstat().st_mtime_ns for p in tmp_path.rglob("*")} == before
    assert (
        read_tree(tmp_path)
        == {
            "non-empty-folder": {"out/mine.txt": b"do not touch"},
            "file": {"out": b"do not touch"},
            "link-to-empty-folder": {},
        }[kind]
    )


# --- cut short ----------------------------------------------------------------------------


def test_a_full_disk_midway_leaves_no_output_and_one_clear_line(
    kit: Kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The 200th file written into the output's temp folder finds the disk full."""
    from meshdrop.cli.main import main

    real_write = os.write
    written: list[int] = []

    def filling(fd: int, data: bytes | memoryview) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(f"{tmp_path}/"):
            written.append(fd)
            if len(written) >= 200:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", filling)
    monkeypatch.setattr(sys, "argv", ["meshdrop", "--home", str(kit.home), "get", "many", "-q"])
    sys.argv += ["-o", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err
    assert exited.value.code == StoreError.exit_code
    assert err.count("\n") == 1 and "the disk is full" in err and "Traceback" not in err
    assert len(written) == 200
    assert list(tmp_path.iterdir()) == []


def test_damage_found_midway_leaves_no_output(kit: Kit, tmp_path: Path) -> None:
    home = Path(shutil.copytree(kit.home, tmp_path / "node"))
    with Store(home) as store:
        bundle = store.find_bundle("many")
        victim = extract.find_file(store, bundle, "b/d/file-0299.txt").chunks[0]
        chunk = store.chunks.path(victim)
        chunk.write_bytes(b"damaged" + chunk.read_bytes()[7:])
        with pytest.raises(IntegrityError):
            extract.write_bundle(store, bundle, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node"]


@pytest.mark.parametrize("point", ["get-after-group", "get-before-rename"])
def test_a_kill_leaves_no_output_only_a_temp_folder_to_delete(
    point: str, kit: Kit, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    killed: Result = run_meshdrop(
        "--home", kit.home, "get", "many", "-o", out, env={CRASH_ENV: point}
    )
    assert killed.code == -signal.SIGKILL, killed
    assert not out.exists()
    (leftover,) = tmp_path.iterdir()  # what `get --help` says may be deleted
    assert leftover.name.startswith(fs.TEMP_PREFIX) and leftover.name.endswith("-out")
    assert len(read_tree(leftover)) == (len(MANY_FILES) if point == "get-before-rename" else 256)
    run_meshdrop("--home", kit.home, "get", "many", "-o", out, check=True)
    assert read_tree(out) == MANY_FILES
