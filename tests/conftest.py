"""Shared fixtures: the installed `meshdrop` command run as a subprocess, a demo publisher,
bundles packed from small folders, and node homes."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from lankit import Nodes

# Autouse guards for every test: no leaked threads, no blocking call in an event loop.
pytest_plugins = ["guards"]

# The start of this hour: fixed within a run (reproducible bundles), yet inside the
# validity window of signing keys the tests make now.
FIXED_CREATED = str(int(time.time()) // 3600 * 3600)


def meshdrop_executable() -> str:
    found = shutil.which("meshdrop") or str(Path(sys.executable).with_name("meshdrop"))
    assert Path(found).exists(), "the meshdrop command is not installed (run ./scripts/test)"
    return found


PEAK_MEMORY_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "peak_memory.py"


def peak_memory_kib(argv: list[str]) -> tuple[int, int]:
    """Run ``argv`` (output discarded); its exit code and peak resident memory in KiB
    (scripts/peak_memory.py says why a plain subprocess cannot tell)."""
    proc = subprocess.run(
        [sys.executable, "-S", str(PEAK_MEMORY_SCRIPT), *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        check=True,
    )
    code, kib = proc.stdout.split()[-2:]
    return int(code), int(kib)


# The sealed pass (scripts/test runs chosen files again with these set): every store a
# test makes is sealed, and every meshdrop the test runs knows the passphrase.
SEALED_PASS_ENV = (
    "MESHDROP_TEST_SEAL_NEW_STORES",
    "MESHDROP_TEST_FAST_KDF",
    "MESHDROP_STORE_PASSPHRASE",
)


def sealed_pass() -> bool:
    return os.environ.get("MESHDROP_TEST_SEAL_NEW_STORES") == "1"


def _sealed_pass_env() -> dict[str, str]:
    return {k: os.environ[k] for k in SEALED_PASS_ENV if k in os.environ} if sealed_pass() else {}


def command_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a meshdrop subprocess: no inherited MESHDROP_*
    variable (a developer's MESHDROP_HOME must not leak into a test) but the sealed
    pass's, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHDROP_")}
    env.update(_sealed_pass_env())
    env.update(extra or {})
    return env


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_meshdrop(
    *args: str | Path, env: dict[str, str] | None = None, check: bool = False, timeout: float = 120
) -> Result:
    full_env = command_env(env)
    proc = subprocess.run(
        [meshdrop_executable(), *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    result = Result(proc.returncode, proc.stdout, proc.stderr)
    if check:
        assert result.code == 0, f"meshdrop {args} failed: {result.err}"
    return result


def meshdrop_in_process(
    *args: str | Path, env: dict[str, str] | None = None, check: bool = False
) -> Result:
    """What ``run_meshdrop`` returns, without starting a process: the same entry point
    (``meshdrop.cli.main.main``, which turns errors into one line and an exit code) run in
    the test's own process under click's CliRunner isolation (stdin not a terminal, no
    inherited MESHDROP_* variables). For set-up steps and follow-up checks (DESIGN.md:
    one real subprocess run per CLI behaviour is enough); the behaviour a test is about
    runs with ``run_meshdrop``. Not for commands that serve, prompt or get killed; not
    inside a running event loop, where the guards refuse meshdrop's blocking calls; and
    only on the main thread, as it swaps process-wide state (sys.stdout, os.environ)."""
    import asyncio
    import threading

    from click.testing import CliRunner

    from meshdrop.cli.main import main

    assert threading.current_thread() is threading.main_thread(), "use run_meshdrop here"
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # no event loop running: the normal case
    else:
        raise AssertionError("meshdrop_in_process inside an event loop: use run_meshdrop")
    overrides: dict[str, str | None] = {k: None for k in os.environ if k.startswith("MESHDROP_")}
    overrides.update(_sealed_pass_env())
    overrides.update(env or {})
    saved_argv = sys.argv
    with CliRunner().isolation(env=overrides) as (out, err, _mixed):
        sys.argv = ["meshdrop", *map(str, args)]
        try:
            main()
            status: object = 0
        except SystemExit as exc:
            status = exc.code
        finally:
            sys.argv = saved_argv
            sys.stdout.flush()
            sys.stderr.flush()
        code = status if isinstance(status, int) else (0 if status is None else 1)
        result = Result(code, out.getvalue().decode(), err.getvalue().decode())
    if check:
        assert result.code == 0, f"meshdrop {args} (in process) failed: {result.err}"
    return result


def assert_clean_error(result: Result, *fragments: str) -> None:
    """A refusal: non-zero exit, no traceback, every fragment named in the error output."""
    assert result.code != 0, result
    assert "Traceback" not in result.err and "Traceback" not in result.out, result.err
    text = (result.err + result.out).lower()
    for fragment in fragments:
        assert fragment.lower() in text, f"{fragment!r} not in {result.err!r}"


@dataclass
class Publisher:
    folder: Path

    @property
    def pub(self) -> Path:
        return self.folder / "publisher.pub"


@pytest.fixture
def run() -> Callable[..., Result]:
    return run_meshdrop


# The set-up helpers below run their command in process (meshdrop_in_process): the same
# code as the installed command, without a process start each. The commands themselves
# get real subprocess runs in the tests about them (test_node_flow, test_publish*, ...).


def make_publisher(folder: Path, name: str = "Test Publisher") -> Publisher:
    meshdrop_in_process("publisher", "new", folder, "--name", name, "--unencrypted", check=True)
    return Publisher(folder)


@pytest.fixture
def publisher(tmp_path: Path) -> Publisher:
    return make_publisher(tmp_path / "publisher")


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def pack(publisher: Publisher, src: Path, out: Path, name: str, *extra: str) -> Path:
    meshdrop_in_process(
        "pack",
        src,
        "--publisher",
        publisher.folder,
        "--name",
        name,
        "--created",
        FIXED_CREATED,
        "-o",
        out,
        "--quiet",
        *extra,
        check=True,
    )
    return out


@pytest.fixture
def make_bundle(tmp_path: Path, publisher: Publisher) -> Callable[..., Path]:
    """make_bundle(name, files={path: bytes}, version=1, extra=[...]) -> path of .mdrop"""
    counter = iter(range(10**6))

    def factory(
        name: str = "news",
        files: dict[str, bytes] | None = None,
        version: int = 1,
        extra: tuple[str, ...] = (),
    ) -> Path:
        n = next(counter)
        src = write_tree(tmp_path / f"src-{n}", files or {"index.html": b"<p>hello</p>"})
        out = tmp_path / f"{name}-v{version}-{n}.mdrop"
        return pack(publisher, src, out, name, "--version", str(version), *extra)

    return factory


@pytest.fixture
def node(tmp_path: Path, publisher: Publisher) -> Path:
    """A node home that trusts ``publisher``."""
    home = tmp_path / "node"
    meshdrop_in_process("--home", home, "trust", "add", "--yes", publisher.pub, check=True)
    return home


def manifest_hash(bundle: Path) -> bytes:
    """A bundle file's identity: the SHA-256 of its signed manifest bytes."""
    from meshdrop.core.bundle import HEADER_SIZE, parse_envelope, parse_header

    data = bundle.read_bytes()
    length = parse_header(data[:HEADER_SIZE], bundle.name)
    envelope = parse_envelope(data[HEADER_SIZE : HEADER_SIZE + length], bundle.name)
    return hashlib.sha256(envelope.manifest_bytes).digest()


def list_json(home: Path) -> list[dict[str, object]]:
    """The node's ``ls --json`` lines, run in process (a check after the step under test)."""
    import json

    result = meshdrop_in_process("--home", home, "ls", "--json", check=True)
    return [json.loads(line) for line in result.out.splitlines() if line.strip()]


# Looking at a store from outside

CHUNK_NAME = re.compile(r"[0-9a-f]{64}")


def chunk_folders(home: Path) -> list[Path]:
    """The chunks/xx folders that exist (made with the store, or when a chunk needs one)."""
    root = home / "chunks"
    return [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []


def chunk_files(home: Path) -> dict[str, tuple[int, int]]:
    """Every complete chunk file in the store: hex digest -> (inode, mtime in ns)."""
    found: dict[str, tuple[int, int]] = {}
    for folder in chunk_folders(home):
        with os.scandir(folder) as entries:
            for entry in entries:
                if CHUNK_NAME.fullmatch(entry.name):
                    info = entry.stat(follow_symlinks=False)
                    found[entry.name] = (info.st_ino, info.st_mtime_ns)
    return found


def chunk_name(home: Path, hexdigest: str) -> str:
    """The file name the store in ``home`` gives the chunk ``hexdigest``: the digest itself
    in a plain store, its keyed name in a sealed one (the sealed pass)."""
    from meshdrop.store import sealing

    keys = sealing.keys_for(home)
    return hexdigest if keys is None else sealing.ChunkSealer(keys).name(bytes.fromhex(hexdigest))


def chunk_names(home: Path, hexdigests: Iterable[str]) -> set[str]:
    return {chunk_name(home, digest) for digest in hexdigests}


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def count_commit_batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the size of every group the store commits from now on (the list fills as
    the test goes)."""
    from meshdrop.store.store import Store

    sizes: list[int] = []
    real = Store._commit_group

    def counting(self: Store, bundles: Any, folders: Any = ()) -> Any:
        sizes.append(len(bundles))
        return real(self, bundles, folders)

    monkeypatch.setattr(Store, "_commit_group", counting)
    return sizes


@pytest.fixture
def nodes() -> Iterator[Nodes]:
    """`meshdrop node` processes started by a test (tests/lankit.py), all stopped after it.
    Tests that take this fixture share one pytest-xdist group (below)."""
    from lankit import Nodes

    started = Nodes()
    try:
        yield started
    finally:
        started.stop_all()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`./scripts/test` runs two workers, `--dist loadgroup`), the tests
    that run `meshdrop node` with mDNS on loopback (they use a ``nodes`` fixture) share one
    group, so one worker runs them one at a time: two at once would discover each other's
    nodes. The network-namespace tests join them (one bridge set-up at a time)."""
    for item in items:
        if {"nodes", "lan"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("mdns"))
