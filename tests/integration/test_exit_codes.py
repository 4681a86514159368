"""README's exit-code table, row by row: each command a row names exits with that code in
the case the row describes (one input: that input's own code; several: 1 if any was
refused). The table is read from README.md, so a row added there without a case here, or a
case here whose code README does not list, fails."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections.abc import Callable, Iterator
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

README = Path(__file__).resolve().parents[2] / "README.md"
PASSPHRASE = "a long enough passphrase for the tests"
NO_ROOM = {"MESHDROP_MIN_FREE": str(2**60)}  # the store's free-space floor: never enough


def readme_rows() -> dict[int, set[str]]:
    """{code: commands} from the table under README's "## Exit codes"."""
    section = README.read_text().split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows: dict[int, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and re.fullmatch(r"`\d+`", cells[0]):
            rows[int(cells[0].strip("`"))] = set(re.findall(r"`([a-z -]+)`", cells[2]))
    return rows


@dataclass(frozen=True)
class World:
    publisher: Publisher
    locked: Publisher  # its keys need PASSPHRASE
    home: Path  # trusts publisher, holds "news" v2
    good: Path  # "news" v2
    older: Path  # "news" v1
    fresh: Path  # "extra" v1, not stored yet
    stranger: Path  # a bundle of a publisher the node does not trust
    junk: Path
    tampered: Path  # "extra" v1 with one data byte changed
    forged: Path  # news v2 with one manifest byte changed (the signature fails)
    source: Path  # a folder to pack


def _flip_last_byte(source: Path, target: Path) -> Path:
    data = bytearray(source.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    return target


def _replace_once(source: Path, target: Path, old: bytes, new: bytes) -> Path:
    data = source.read_bytes()
    assert data.count(old) == 1
    target.write_bytes(data.replace(old, new))
    return target


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("exit-codes")
    publisher = make_publisher(root / "publisher", "Exit Code Tests")
    stranger = make_publisher(root / "stranger", "Someone Else")
    locked = root / "locked"
    meshdrop_in_process(
        "publisher", "new", locked, "--name", "Locked", env={"MESHDROP_PASSPHRASE": PASSPHRASE},
        check=True,
    )  # fmt: skip
    source = write_tree(root / "src", {"index.html": b"<p>news</p>" * 50})
    title = ("--title", "Unforgeable title")
    older = pack(publisher, source, root / "news-1.mdrop", "news", "--version", "1", *title)
    good = pack(publisher, source, root / "news-2.mdrop", "news", "--version", "2", *title)
    other = write_tree(root / "other", {"index.html": b"<p>extra</p>" * 50})  # chunks not stored
    fresh = pack(publisher, other, root / "extra.mdrop", "extra", "--version", "1")
    home = root / "node"
    meshdrop_in_process("--home", home, "trust", "add", "--yes", publisher.pub, check=True)
    meshdrop_in_process("--home", home, "import", good, check=True)
    junk = root / "junk.mdrop"
    junk.write_bytes(b"this is not a bundle" * 10)
    return World(
        publisher=publisher,
        locked=Publisher(locked),
        home=home,
        good=good,
        older=older,
        fresh=fresh,
        stranger=pack(stranger, source, root / "stranger.mdrop", "news", "--version", "3"),
        junk=junk,
        tampered=_flip_last_byte(fresh, root / "tampered.mdrop"),
        forged=_replace_once(good, root / "forged.mdrop", b"Unforgeable", b"Unforgeabl3"),
        source=source,
    )


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs filled to the last block (mounting needs root, as CI runs)."""
    mount = tmp_path / "full"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mount], check=True)
    try:
        with open(mount / "filler", "wb") as filler:
            try:
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
            except OSError:
                pass
        yield mount
    finally:
        subprocess.run(["umount", "-l", mount], check=True)


@dataclass(frozen=True)
class Case:
    command: str
    code: int
    run: Callable[[World, Path, pytest.FixtureRequest], Result]


def home_of(world: World, tmp_path: Path) -> Path:
    """A copy of the world's node, so that a case cannot change what the next one sees."""
    import shutil

    return Path(shutil.copytree(world.home, tmp_path / "node"))


def _import(*files: str) -> Callable[[World, Path, pytest.FixtureRequest], Result]:
    def run(world: World, tmp_path: Path, _request: pytest.FixtureRequest) -> Result:
        paths = [getattr(world, name) for name in files]
        return run_meshdrop("--home", home_of(world, tmp_path), "import", *paths)

    return run


def _verify(*files: str) -> Callable[[World, Path, pytest.FixtureRequest], Result]:
    def run(world: World, _tmp_path: Path, _request: pytest.FixtureRequest) -> Result:
        paths = [getattr(world, name) for name in files]
        return run_meshdrop("verify", *paths, "--trust", world.publisher.pub)

    return run


def _import_without_room(world: World, tmp_path: Path, _r: pytest.FixtureRequest) -> Result:
    return run_meshdrop("--home", home_of(world, tmp_path), "import", world.fresh, env=NO_ROOM)


def _get(world: World, tmp_path: Path, _r: pytest.FixtureRequest) -> Result:
    return run_meshdrop("--home", world.home, "get", "news", "-o", tmp_path / "out")


def _get_unknown(world: World, tmp_path: Path, _r: pytest.FixtureRequest) -> Result:
    return run_meshdrop("--home", world.home, "get", "nothing", "-o", tmp_path / "out")


def _get_onto_full_disk(world: World, _tmp_path: Path, request: pytest.FixtureRequest) -> Result:
    disk: Path = request.getfixturevalue("full_disk")
    return run_meshdrop("--home", world.home, "get", "news", "-o", disk / "out")


def _server(command: str) -> Callable[[World, Path, pytest.FixtureRequest], Result]:
    def run(world: World, tmp_path: Path, request: pytest.FixtureRequest) -> Result:
        port = str(request.getfixturevalue("taken_port"))
        extra = ["--no-discovery", "--no-watch"] if command == "node" else []
        home = home_of(world, tmp_path)
        return run_meshdrop("--home", home, command, "--bind", "127.0.0.1", "--port", port, *extra)

    return run


def _bad_option(*args: str) -> Callable[[World, Path, pytest.FixtureRequest], Result]:
    def run(world: World, tmp_path: Path, _request: pytest.FixtureRequest) -> Result:
        return run_meshdrop("--home", home_of(world, tmp_path), *args)

    return run


def _status(world: World, tmp_path: Path, _request: pytest.FixtureRequest) -> Result:
    return run_meshdrop("--home", home_of(world, tmp_path), "status")


def _export_to(kind: str) -> Callable[[World, Path, pytest.FixtureRequest], Result]:
    def run(world: World, tmp_path: Path, request: pytest.FixtureRequest) -> Result:
        stick = tmp_path / "stick"
        if kind == "ok":
            stick.mkdir()
        elif kind == "file":
            stick.write_bytes(b"not a folder")
        else:
            stick = request.getfixturevalue("full_disk")
        return run_meshdrop("--home", world.home, "export", stick)

    return run


def _pack_with_wrong_passphrase(world: World, tmp_path: Path, _r: pytest.FixtureRequest) -> Result:
    return run_meshdrop(
        "pack", world.source, "--publisher", world.locked.folder, "--name", "locked",
        "-o", tmp_path / "locked.mdrop", env={"MESHDROP_PASSPHRASE": "not the passphrase"},
    )  # fmt: skip


def _circle(kind: str) -> Callable[[World, Path, pytest.FixtureRequest], Result]:
    """A circle made on a fresh home (in process: set-up), then the command under test:
    ``new`` itself, ``join`` with a mistyped invite, or ``ls`` of a damaged circle file."""

    def run(world: World, tmp_path: Path, _request: pytest.FixtureRequest) -> Result:
        home = tmp_path / "circles"
        if kind == "new":
            return run_meshdrop("--home", home, "circle", "new", "dorm")
        made = meshdrop_in_process("--home", home, "circle", "new", "dorm", "--json", check=True)
        invite = json.loads(made.out)["invite"]
        if kind == "typo":
            typo = ("B" if invite[5] != "B" else "C").join((invite[:5], invite[6:]))
            return run_meshdrop("--home", tmp_path / "other", "circle", "join", typo)
        (circle_file,) = (home / "circles").glob("*.circle")
        circle_file.write_bytes(circle_file.read_bytes()[:20])  # cut short by a pulled plug
        return run_meshdrop("--home", home, "circle", "ls")

    return run


SEALED = {"MESHDROP_STORE_PASSPHRASE": PASSPHRASE, "MESHDROP_TEST_FAST_KDF": "1"}


def _locked(*args: str) -> Callable[[World, Path, pytest.FixtureRequest], Result]:
    """The world's node sealed (in process: set-up), then a command given no key."""

    def run(world: World, tmp_path: Path, _request: pytest.FixtureRequest) -> Result:
        home = home_of(world, tmp_path)
        meshdrop_in_process("--home", home, "seal", env=SEALED, check=True)
        paths = [str(getattr(world, a)) if hasattr(world, a) else a for a in args]
        paths = [str(tmp_path / "out") if a == "OUT" else a for a in paths]
        return run_meshdrop("--home", home, *paths, env={"MESHDROP_TEST_FAST_KDF": "1"})

    return run


def _unlock_wrong(world: World, tmp_path: Path, _r: pytest.FixtureRequest) -> Result:
    home = home_of(world, tmp_path)
    meshdrop_in_process("--home", home, "seal", env=SEALED, check=True)
    wrong = {**SEALED, "MESHDROP_STORE_PASSPHRASE": "not the passphrase"}
    return run_meshdrop("--home", home, "unlock", env=wrong)


SERVE = ("--bind", "127.0.0.1", "--port", "0")

CASES = {
    "circle-new": Case("circle", 0, _circle("new")),
    "circle-join-mistyped-invite": Case("circle", 2, _circle("typo")),
    "circle-damaged-file": Case("circle", 7, _circle("damaged")),
    "import-one-good": Case("import", 0, _import("fresh")),
    "import-several-one-refused": Case("import", 1, _import("fresh", "junk")),
    "import-malformed": Case("import", 3, _import("junk")),
    "import-untrusted": Case("import", 4, _import("stranger")),
    "import-bad-signature": Case("import", 4, _import("forged")),
    "import-altered-data": Case("import", 5, _import("tampered")),
    "import-older-version": Case("import", 6, _import("older")),
    "import-no-room": Case("import", 7, _import_without_room),
    "verify-one-good": Case("verify", 0, _verify("good")),
    "verify-several-one-failed": Case("verify", 1, _verify("good", "junk")),
    "verify-malformed": Case("verify", 3, _verify("junk")),
    "verify-untrusted": Case("verify", 4, _verify("stranger")),
    "verify-bad-signature": Case("verify", 4, _verify("forged")),
    "verify-altered-data": Case("verify", 5, _verify("tampered")),
    "get-bundle": Case("get", 0, _get),
    "get-unknown-bundle": Case("get", 2, _get_unknown),
    "get-onto-a-full-disk": Case("get", 7, _get_onto_full_disk),
    "read-bad-port": Case("read", 2, _bad_option("read", "--port", "eighty")),
    "read-port-taken": Case("read", 9, _server("read")),
    "node-bad-peer": Case("node", 2, _bad_option("node", "--peer", "no-port-here")),
    "node-port-taken": Case("node", 9, _server("node")),
    "status-no-node": Case("status", 9, _status),
    "export-to-a-folder": Case("export", 0, _export_to("ok")),
    "export-to-a-file": Case("export", 2, _export_to("file")),
    "export-onto-a-full-stick": Case("export", 7, _export_to("full")),
    "pack-wrong-passphrase": Case("pack", 8, _pack_with_wrong_passphrase),
    "unlock-wrong-passphrase": Case("unlock", 8, _unlock_wrong),
    "ls-locked": Case("ls", 10, _locked("ls")),
    "import-locked": Case("import", 10, _locked("import", "fresh")),
    "get-locked": Case("get", 10, _locked("get", "news", "-o", "OUT")),
    "read-locked": Case("read", 10, _locked("read", *SERVE)),
    "node-locked": Case("node", 10, _locked("node", *SERVE, "--no-discovery", "--no-watch")),
}


@pytest.mark.parametrize("case_id", CASES)
def test_exit_code(
    case_id: str, world: World, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    case = CASES[case_id]
    result = case.run(world, tmp_path, request)
    assert result.code == case.code, result
    assert "Traceback" not in result.err + result.out, result.err
    if case.code >= 2:  # one input, one refusal: one line saying why
        assert len(result.err.strip().splitlines()) == 1, result.err


def test_every_row_of_readmes_table_has_a_case_and_every_case_a_row() -> None:
    rows = readme_rows()
    assert rows, "README has no exit-code table"
    covered = {(case.code, case.command) for case in CASES.values()}
    documented = {(code, command) for code, commands in rows.items() for command in commands}
    assert documented - covered == set(), "README rows without a case here"
    assert {code for code, _ in covered} <= set(rows), "codes README does not list"
