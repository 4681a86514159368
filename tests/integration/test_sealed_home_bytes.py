"""A seized sealed home (issue 19): every byte of it, WAL included, searched for what
would name its owner's reading. Nothing found is the claim; this test looks at the bytes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from readerkit import pack_in_process, pack_samples, reader_server, results, search_until_indexed

from conftest import Publisher, make_publisher, run_meshdrop, write_tree
from meshdrop.core.keys import key_id
from meshdrop.store.bundlefile import read_self_signed

PASSPHRASE = "a long sealed-store passphrase"
SEALED_ENV = {"MESHDROP_STORE_PASSPHRASE": PASSPHRASE, "MESHDROP_TEST_FAST_KDF": "1"}
PUBLISHER_NAME = "Workers Voice Collective"


def sealed(*args: str | Path) -> None:
    run_meshdrop(*args, env=SEALED_ENV, check=True)


def sample_bundles(folder: Path, publisher: Publisher) -> list[Path]:
    return [bundle for bundle, _title in pack_samples(publisher, folder, int(time.time()) - 5)]


def stick_with_a_bundle(tmp_path: Path, publisher: Publisher) -> tuple[Path, Path]:
    """A courier folder exported by another (plain) node, holding one more bundle."""
    src = write_tree(
        tmp_path / "stick-src",
        {"leaflet.md": b"# Union meeting on Sunday\n\nBring your payslips.\n"},
    )
    bundle = pack_in_process(
        publisher, src, tmp_path / "leaflet.mdrop", "union-leaflet", title="Union leaflet"
    )
    other = tmp_path / "courier-node"
    run_meshdrop("--home", other, "trust", "add", "--yes", publisher.pub, check=True)
    run_meshdrop("--home", other, "import", bundle, check=True)
    stick = tmp_path / "stick"
    stick.mkdir()
    run_meshdrop("--home", other, "export", stick, check=True)
    return stick, bundle


def forbidden_strings(bundles: list[Path], publisher: Publisher) -> dict[str, bytes]:
    """What must not be found, by what it is: every title, description, bundle name, file
    path and chunk hash (hex and raw) of the bundles, the publisher's name, fingerprint
    and key ids, and the program's own names."""
    found: dict[str, bytes] = {"meshdrop": b"meshdrop", "mdrop": b"mdrop"}
    for bundle in bundles:
        checked = read_self_signed(bundle)
        m = checked.manifest
        found[f"title of {m.name}"] = m.title.encode()
        found[f"description of {m.name}"] = m.description.encode()
        found[f"name {m.name}"] = m.name.encode()
        found[f"publisher key id of {m.name}"] = key_id(m.publisher).encode()
        found[f"publisher key of {m.name}"] = m.publisher
        found[f"signer key id of {m.name}"] = key_id(checked.signer).encode()
        found[f"signer key of {m.name}"] = checked.signer
        for entry in m.files:
            found[f"path {entry.path}"] = entry.path.encode()
            for digest in entry.chunks:
                found[f"chunk {digest.hex()}"] = digest
                found[f"chunk hex {digest.hex()}"] = digest.hex().encode()
    found["publisher name"] = PUBLISHER_NAME.encode()
    shown = json.loads(
        run_meshdrop("publisher", "show", publisher.folder, "--json", check=True).out
    )
    found["fingerprint"] = str(shown["fingerprint"]).encode()
    found["fingerprint (compact)"] = str(shown["fingerprint"]).replace(" ", "").encode()
    return {what: needle for what, needle in found.items() if needle}  # "" is in every file


def home_bytes(home: Path) -> dict[str, bytes]:
    """Every regular file under ``home`` (as a tar of it would hold them), by name."""
    return {
        str(path.relative_to(home)): path.read_bytes()
        for path in sorted(home.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


def assert_nothing_named(files: dict[str, bytes], forbidden: dict[str, bytes]) -> None:
    names = "\n".join(files).encode()
    leaks = [
        f"{what} in {name}"
        for name, data in {**files, "(the file names)": names}.items()
        for what, needle in forbidden.items()
        if needle.lower() in data.lower() or needle in data
    ]
    assert not leaks, leaks[:20]


@pytest.mark.slow
def test_a_sealed_home_holds_no_title_name_path_hash_or_program_name(tmp_path: Path) -> None:
    publisher = make_publisher(tmp_path / "publisher", PUBLISHER_NAME)
    bundles = sample_bundles(tmp_path, publisher)
    stick, leaflet = stick_with_a_bundle(tmp_path, publisher)
    home = tmp_path / "home"
    sealed("--home", home, "seal")
    sealed("--home", home, "trust", "add", "--yes", publisher.pub)
    for bundle in bundles:
        sealed("--home", home, "import", bundle)
    sealed("--home", home, "import", stick)
    out = run_meshdrop("--home", home, "ls", "--json", env=SEALED_ENV, check=True).out
    listed = {json.loads(line)["name"] for line in out.splitlines() if line.strip()}
    assert listed >= {"news", "welcome", "audio-notice", "union-leaflet"}
    forbidden = forbidden_strings([*bundles, leaflet], publisher)

    with reader_server(home, env=SEALED_ENV) as base:
        assert results(search_until_indexed(base, "overtime"))  # the search index is built
        while_running = home_bytes(home)  # the WALs of the open databases included
    assert any(name.endswith("-wal") for name in while_running), sorted(while_running)
    assert_nothing_named(while_running, forbidden)
    assert_nothing_named(home_bytes(home), forbidden)


def test_a_search_index_that_does_not_decrypt_is_built_again_from_the_store(
    tmp_path: Path,
) -> None:
    publisher = make_publisher(tmp_path / "publisher", PUBLISHER_NAME)
    home = tmp_path / "home"
    sealed("--home", home, "seal")
    sealed("--home", home, "trust", "add", "--yes", publisher.pub)
    for bundle in sample_bundles(tmp_path, publisher):
        sealed("--home", home, "import", bundle)
    with reader_server(home, env=SEALED_ENV) as base:
        found = results(search_until_indexed(base, "overtime"))
    assert found
    index = home / "search.sqlite"
    damaged = bytearray(index.read_bytes())
    damaged[100] ^= 0x01  # in its first page: no page of it decrypts past this
    index.write_bytes(bytes(damaged))
    with reader_server(home, env=SEALED_ENV) as base:
        assert results(search_until_indexed(base, "overtime")) == found
    assert index.read_bytes()[:200] != bytes(damaged[:200])  # made again, not patched
    out = run_meshdrop("--home", home, "ls", "--json", env=SEALED_ENV, check=True).out
    assert len(out.splitlines()) == 3  # the store itself untouched
