"""A sealed store's chunk files, index and search index (issue 19): what is on the disk
says nothing of the chunks or bundles, what does not decrypt is never served or used,
and a damaged or foreign file is a clean one-line error that loses nothing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from conftest import (
    Publisher,
    Result,
    assert_clean_error,
    meshdrop_in_process,
    pack,
    run_meshdrop,
    write_tree,
)
from meshdrop.core.manifest import CHUNK_SIZE
from meshdrop.errors import IntegrityError, SealedFileError, StoreLockedError
from meshdrop.reader.searching import SearchService
from meshdrop.store import sealing, searchindex, searchquery
from meshdrop.store.store import Store
from meshdrop.transports.lan.node import Node, NodeConfig

PASSPHRASE = "sealed chunks test passphrase"
SEALED = {"MESHDROP_STORE_PASSPHRASE": PASSPHRASE, "MESHDROP_TEST_FAST_KDF": "1"}
TITLE_WORD = "Zanzibarquay"  # a word that is in the bundle and nowhere else
BODY_WORD = "Quixotrellis"
FILES = {
    "index.html": f"<h1>{TITLE_WORD}</h1><p>{BODY_WORD} wages</p>".encode(),
    "big.bin": os.urandom(2 * CHUNK_SIZE + 77),
}
SQLITE_MAGIC = b"SQLite format 3\0"


def chunk_digests(files: dict[str, bytes]) -> set[bytes]:
    return {
        hashlib.sha256(data[i : i + CHUNK_SIZE]).digest()
        for data in files.values()
        for i in range(0, len(data), CHUNK_SIZE)
    }


def chunk_paths(home: Path) -> list[Path]:
    return sorted(p for p in (home / "chunks").glob("*/*") if p.is_file())


def make_home(tmp_path: Path, publisher: Publisher, sealed: bool, name: str = "node") -> Path:
    home = tmp_path / name
    if sealed:
        sealing.create_sealed(home, PASSPHRASE)
        sealing.forget(home)  # every step below finds the key as a command would
    bundle = pack(
        publisher, write_tree(tmp_path / f"src-{name}", FILES), tmp_path / "n.mdrop", "news"
    )
    env = SEALED if sealed else {}
    meshdrop_in_process("--home", home, "trust", "add", "--yes", publisher.pub, env=env, check=True)
    meshdrop_in_process("--home", home, "import", "--quiet", bundle, env=env, check=True)
    return home


@pytest.fixture(autouse=True)
def sealed_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process as a command run with SEALED (the in-process steps and looks)."""
    for name, value in SEALED.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def sealed_home(tmp_path: Path, publisher: Publisher) -> Path:
    return make_home(tmp_path, publisher, sealed=True)


def one_line(result: Result, code: int, *fragments: str) -> None:
    assert_clean_error(result, *fragments)
    assert result.code == code, result
    assert result.err.count("\n") == 1, result.err


def file_bytes(home: Path) -> dict[str, bytes]:
    return {p.relative_to(home).as_posix(): p.read_bytes() for p in home.rglob("*") if p.is_file()}


# On the disk


def test_plain_stores_keep_hash_names_and_plain_sqlite(
    tmp_path: Path, publisher: Publisher
) -> None:
    home = make_home(tmp_path, publisher, sealed=False)
    assert {p.name for p in chunk_paths(home)} == {d.hex() for d in chunk_digests(FILES)}
    assert (home / "index.sqlite").read_bytes().startswith(SQLITE_MAGIC)
    assert not sealing.is_sealed(home)


def test_sealed_chunk_files_hide_their_hashes_and_bytes(sealed_home: Path) -> None:
    paths = chunk_paths(sealed_home)
    digests = chunk_digests(FILES)
    assert len(paths) == len(digests)
    hexes = {d.hex() for d in digests}
    assert not {p.name for p in paths} & hexes
    for path in paths:
        assert path.parent.name == path.name[:2] and len(path.name) == 64
        data = path.read_bytes()
        assert TITLE_WORD.encode() not in data and FILES["big.bin"][:64] not in data
        assert not any(d in data or d.hex().encode() in data for d in digests)
    # Each file is nonce || ciphertext || tag: 28 bytes over the chunk.
    sizes = sorted(p.stat().st_size - 28 for p in paths)
    expected = sorted(
        len(data[i : i + CHUNK_SIZE])
        for data in FILES.values()
        for i in range(0, len(data), CHUNK_SIZE)
    )
    assert sizes == expected
    # ... and the store reads them back exactly.
    out = sealed_home.parent / "out"
    meshdrop_in_process("--home", sealed_home, "get", "news", "-o", out, env=SEALED, check=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == FILES


def test_sealed_index_and_search_index_hold_no_plaintext(sealed_home: Path) -> None:
    assert searchindex.catch_up(sealed_home) == 1
    conn = searchindex.connect(sealed_home)
    try:
        hits = searchquery.search(conn, BODY_WORD)
    finally:
        conn.close()
    assert [(h.name, h.path) for h in hits] == [("news", "index.html")]
    for name in ("index.sqlite", "search.sqlite"):
        data = b"".join(p.read_bytes() for p in sealed_home.glob(name + "*"))
        assert not data.startswith(SQLITE_MAGIC)
        for word in (TITLE_WORD, BODY_WORD, "news", "index.html", "SQLite", "meshdrop"):
            assert word.encode() not in data, (name, word)
            assert word.lower().encode() not in data, (name, word)


# Damage and foreign keys


def test_a_flipped_byte_in_a_chunk_is_never_used_and_fsck_reports_it(sealed_home: Path) -> None:
    victim = chunk_paths(sealed_home)[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(data)
    before = file_bytes(sealed_home)

    got = run_meshdrop(
        "--home", sealed_home, "get", "news", "-o", sealed_home.parent / "out", env=SEALED
    )
    one_line(got, IntegrityError.exit_code, "damaged")
    checked = run_meshdrop("--home", sealed_home, "fsck", "--json", "--quiet", env=SEALED)
    assert "Traceback" not in checked.err
    report = json.loads(checked.out)
    assert report["damaged_chunks"] == 1
    assert [name.split(" ")[0] for name in report["damaged_bundles"]] == ["news"]
    assert file_bytes(sealed_home) == before  # looking changed nothing

    repaired = run_meshdrop(
        "--home", sealed_home, "fsck", "--repair", "--json", "--quiet", env=SEALED
    )
    assert json.loads(repaired.out)["dropped_bundles"] == 1
    assert not victim.exists()


@asynccontextmanager
async def peer_api(home: Path) -> AsyncIterator[str]:
    node = Node(NodeConfig(home=home, bind="127.0.0.1", port=0, discovery=False), lambda e: None)
    await node.start()
    try:
        yield f"http://127.0.0.1:{node.port}/peer/v1"
    finally:
        await node.stop()


def test_a_peer_gets_only_chunks_that_decrypt_and_verify(sealed_home: Path) -> None:
    digests = sorted(chunk_digests(FILES))
    with Store(sealed_home) as store:
        damaged = digests[0]
        path = store.chunks.path(damaged)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x80  # the tag
    path.write_bytes(data)

    async def scenario() -> dict[bytes, tuple[int, bytes]]:
        answers = {}
        async with peer_api(sealed_home) as base, aiohttp.ClientSession() as session:
            for digest in digests:
                async with session.get(f"{base}/chunk/{digest.hex()}") as resp:
                    answers[digest] = (resp.status, await resp.read())
        return answers

    answers = asyncio.run(scenario())
    assert answers.pop(damaged)[0] == 404
    for digest, (status, body) in answers.items():
        assert status == 200 and hashlib.sha256(body).digest() == digest


@pytest.mark.parametrize("where", ["first page", "last page"])
def test_a_flipped_byte_in_the_index_is_a_one_line_error(sealed_home: Path, where: str) -> None:
    index = sealed_home / "index.sqlite"
    data = bytearray(index.read_bytes())
    data[200 if where == "first page" else len(data) - 200] ^= 0x01
    index.write_bytes(data)
    before = file_bytes(sealed_home)
    for args in (("ls",), ("fsck",), ("get", "news", "-o", str(sealed_home.parent / "out"))):
        result = run_meshdrop("--home", sealed_home, *args, env=SEALED)
        one_line(result, SealedFileError.exit_code, "index", "damaged")
    assert file_bytes(sealed_home) == before
    assert not (sealed_home.parent / "out").exists()


def test_an_index_under_another_key_is_a_one_line_error(
    tmp_path: Path, publisher: Publisher, sealed_home: Path
) -> None:
    # The same passphrase opens another store's slots: their key is not this index's.
    other = make_home(tmp_path, publisher, sealed=True, name="other")
    shutil.copyfile(other / sealing.SLOTS_NAME, sealed_home / sealing.SLOTS_NAME)
    result = run_meshdrop("--home", sealed_home, "ls", env=SEALED)
    one_line(result, SealedFileError.exit_code, "index", "does not decrypt")
    sealing.forget(sealed_home)  # the right key, remembered by the set-up steps
    with pytest.raises(SealedFileError):
        Store(sealed_home)


# Keys reach the search indexer's process through its arguments


def test_the_search_indexer_gets_the_key_through_its_arguments(
    sealed_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sealing.unlock_with_passphrase(sealed_home, PASSPHRASE)  # as `meshdrop read` does
    for name in sealing.PASSPHRASE_ENVS:
        monkeypatch.delenv(name, raising=False)  # the child could not unlock by itself
    service = SearchService(sealed_home)
    try:
        assert service._run_child_once() == 0
        hits = searchquery.search(service._connection(), TITLE_WORD)
    finally:
        service._drop_connection()
        service._thread.shutdown()
    assert [(h.name, h.path) for h in hits] == [("news", "index.html")]
    sealing.forget(sealed_home)
    with pytest.raises(StoreLockedError):
        searchindex.catch_up(sealed_home)  # no key in this process, none in the environment
