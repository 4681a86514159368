"""Shared set-up for the courier tests: one publisher, a source node holding a few
bundles (two of them big enough to be split into parts with a small --part-size), a
pristine exported stick, and an empty node that trusts the publisher. Tests copy the
stick and the empty node, so each starts clean without packing anything again."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import (
    Publisher,
    Result,
    make_publisher,
    meshdrop_in_process,
    pack,
    run_meshdrop,
    write_tree,
)

PART_SIZE = "1200K"  # one 1 MiB chunk (plus envelope) per part: small bundles split


def random_bytes(size: int, seed: str) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}/{counter}".encode()).digest() * 64
        counter += 1
    return bytes(out[:size])


BUNDLES: dict[str, tuple[dict[str, bytes], tuple[str, ...]]] = {
    "news": (
        {"index.html": b"<h1>news</h1>", "img/photo.jpg": random_bytes(300_000, "photo")},
        ("--priority", "10"),
    ),
    "big": (
        {
            "a.bin": random_bytes(1_600_000, "a"),
            "b.bin": random_bytes(2_100_000, "b"),
            "c.txt": b"tail",
        },
        ("--priority", "5"),
    ),
    "video": ({"v.webm": random_bytes(2_500_000, "v")}, ("--priority", "0")),
    "radio": ({"r.opus": random_bytes(400_000, "r")}, ("--priority", "-5")),
}


@dataclass
class Setup:
    root: Path
    publisher: Publisher
    source: Path  # a node home holding every bundle in BUNDLES
    stick: Path  # a pristine stick root: stick/meshdrop/ exported with PART_SIZE
    empty_node: Path  # a node home that trusts the publisher and holds nothing

    def fresh_node(self, dest: Path) -> Path:
        shutil.copytree(self.empty_node, dest)
        return dest

    def fresh_stick(self, dest: Path) -> Path:
        shutil.copytree(self.stick, dest, symlinks=True)
        return dest

    def courier(self, stick: Path) -> Path:
        return stick / "meshdrop"

    def files_of(self, stick: Path, bundle: str) -> list[Path]:
        return sorted(p for p in self.courier(stick).iterdir() if p.name.startswith(bundle + "-"))


def build_setup(root: Path) -> Setup:
    """Set-up, run in process: the same commands as a user's, without a process each (the
    tests run the command they are about as a real process)."""
    step = meshdrop_in_process
    publisher = make_publisher(root / "publisher")
    source = root / "source"
    step("--home", source, "trust", "add", "--yes", publisher.pub, check=True)
    for name, (files, extra) in BUNDLES.items():
        src = write_tree(root / f"src-{name}", files)
        bundle = pack(publisher, src, root / f"{name}.mdrop", name, "--version", "1", *extra)
        step("--home", source, "import", bundle, "-q", check=True)
    stick = root / "stick"
    stick.mkdir()
    step("--home", source, "export", stick, "--part-size", PART_SIZE, "-q", check=True)
    empty = root / "empty-node"
    step("--home", empty, "trust", "add", "--yes", publisher.pub, check=True)
    return Setup(root, publisher, source, stick, empty)


def import_json(home: Path, *paths: Path) -> tuple[Result, list[dict[str, object]]]:
    result = run_meshdrop("--home", home, "import", *paths, "--json", "-q")
    assert "Traceback" not in result.err, result.err
    lines = [json.loads(line) for line in result.out.splitlines() if line.strip()]
    return result, lines


def outcomes(lines: list[dict[str, object]]) -> dict[str, str]:
    """bundle name -> outcome, for the lines that name a bundle."""
    return {str(x["name"]): str(x["outcome"]) for x in lines if x.get("name")}


def listed(home: Path) -> dict[str, int]:
    """The node's bundles and versions, from its ``ls --json`` run in process."""
    result = meshdrop_in_process("--home", home, "ls", "--json", check=True)
    return {
        str(b["name"]): int(b["version"])
        for b in (json.loads(x) for x in result.out.splitlines() if x)
    }


def assert_bundle_bytes(home: Path, name: str, out: Path) -> None:
    """Every file of bundle ``name`` as the node serves it (``get``, run in process) equals
    what was packed."""
    meshdrop_in_process("--home", home, "get", name, "-o", out, check=True)
    files, _ = BUNDLES[name]
    got = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert got == files


def snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every entry under ``folder`` (links not followed): mode, mtime and content hash."""
    found: dict[str, tuple[int, int, str]] = {}
    for dirpath, dirs, names in os.walk(folder, followlinks=False):
        for name in dirs + names:
            path = Path(dirpath) / name
            info = path.lstat()
            digest = ""
            if path.is_file() and not path.is_symlink():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(path.relative_to(folder))] = (info.st_mode, info.st_mtime_ns, digest)
    return found


def chunk_files(home: Path) -> dict[str, int]:
    """Chunk file name -> inode: a chunk copied again gets a new inode."""
    return {p.name: p.stat().st_ino for p in (home / "chunks").glob("*/*") if len(p.name) == 64}


_BUILT: list[Setup] = []


@pytest.fixture(name="setup")
def setup_fixture(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    """One Setup for every courier test in the run (import this fixture into a module;
    tests must not change it: they copy its stick and nodes)."""
    if not _BUILT:
        _BUILT.append(build_setup(tmp_path_factory.mktemp("courier")))
    return _BUILT[0]
