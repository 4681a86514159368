"""THE BYTES TEST (issue 20): a blind export on a real FAT32 image (mkfs.vfat + mtools, as
test_courier_fat.py) holds none of the strings that would tell a searcher what it is or
carries: titles, publisher name, fingerprints, bundle names, chunk hashes (hex and raw),
manifest hashes, the app's name and magic bytes; its files are of the documented size
classes only; a member imports it from the image, a stranger does not."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from courierkit import (
    BUNDLES,
    PART_SIZE,
    Setup,
    import_json,
    listed,
    outcomes,
    setup_fixture,  # noqa: F401 (the `setup` fixture)
)
from test_blind_courier import (
    Blind,
    blind_fixture,  # noqa: F401 (the `blind` fixture)
    export,
)
from test_courier_fat import image_files, make_fat32, need_tools, sh

from conftest import meshdrop_in_process
from meshdrop.cli.courier import parse_size
from meshdrop.core.blind import looks_blind, size_classes
from meshdrop.core.bundle import MAGIC, PUB_MAGIC
from meshdrop.core.manifest import parse_manifest
from meshdrop.transports.courier.parts import PART_MAGIC
from meshdrop.transports.courier.reader import open_courier_file
from meshdrop.transports.courier.want import WANT_MAGIC


def secrets_of(setup: Setup) -> set[bytes]:
    """Every string that would name what the stick carries, read from the open export of
    the same bundles (setup.stick): each in the forms a searcher would try."""
    found: set[bytes] = {b"meshdrop", b"mdrop", b"MDRP", b"MDROP", b"Test Publisher"}
    found |= {MAGIC, PUB_MAGIC, PART_MAGIC, WANT_MAGIC, b"MDPRT", b"MDWANT", b"MDPUB"}
    for path in sorted((setup.stick / "meshdrop").iterdir()):
        if path.suffix == ".pub":
            found.add(path.stem.encode())  # the fingerprint's start, as the open file's name
            continue
        with open_courier_file(path) as source:
            raw = source.envelope.manifest_bytes
            manifest = parse_manifest(raw)
        digest = hashlib.sha256(raw).digest()
        found |= {digest, digest.hex().encode(), path.name.encode(), manifest.name.encode()}
        found |= {manifest.publisher, manifest.publisher.hex().encode()}
        if manifest.title:
            found.add(manifest.title.encode())
        for ref in manifest.chunk_refs():
            found |= {ref.digest, ref.digest.hex().encode(), ref.path.encode()}
    fingerprint = fingerprint_of(setup)
    found |= {fingerprint.encode(), fingerprint.replace("-", "").encode()}
    found |= {fingerprint.replace("-", "").lower().encode()}
    return found


def fingerprint_of(setup: Setup) -> str:
    out = meshdrop_in_process("--home", setup.source, "trust", "ls", "--json", check=True).out
    return str(json.loads(out.splitlines()[0])["fingerprint"])


def test_a_blind_stick_on_fat32_reveals_nothing_and_members_alone_import_it(
    blind: Blind, tmp_path: Path
) -> None:
    need_tools()
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    export(blind.source, one)
    export(blind.source, two)
    image = make_fat32(tmp_path / "stick.img")
    sh("mcopy", "-s", "-i", image, one / "backup", "::/")
    names = sorted(p.name for p in (one / "backup").iterdir())
    assert image_files(image, "::/backup") == names, "mcopy dropped or renamed a file"
    back = tmp_path / "back"
    back.mkdir()
    sh("mcopy", "-s", "-n", "-i", image, "::/backup", back)
    files = sorted((back / "backup").iterdir())
    blobs = [image.read_bytes()] + [p.read_bytes() for p in files]
    needles = secrets_of(blind.base)
    # Bytes of random-looking content hold any given 4-byte string by chance (7 MB:
    # a 0.2% chance each): shorter needles ("big", "news") are looked for in the names,
    # and in the content only inside their longer forms (file names, hashes, titles).
    leaks = sorted(
        s.decode(errors="replace") for s in needles for blob in blobs if len(s) >= 5 and s in blob
    )
    assert not leaks, leaks
    # Names carry nothing: the folder, .nomedia, and 8 random characters + ".dat".
    listed_names = sh("mdir", "-/", "-b", "-i", image, "::/").split()
    assert len(listed_names) == len(names) + 1, listed_names
    for entry in listed_names:
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        assert name in ("backup", ".nomedia") or looks_blind(name), entry
    assert all(b"meshdrop" not in blob.lower() for blob in blobs)
    classes = set(size_classes(parse_size(PART_SIZE, "--part-size")))
    sizes = {p.stat().st_size for p in files if p.name != ".nomedia"}
    assert sizes <= classes, sizes - classes
    # Two exports of the same content: other names (but the marker's) and other bytes.
    again = {p.name: p.read_bytes() for p in (two / "backup").iterdir()}
    shared = set(again) & set(names)
    assert shared <= {".nomedia"} | {n for n in shared if n.endswith(".dat")} and len(shared) == 2
    assert not {p.read_bytes() for p in files if p.stat().st_size} & set(again.values())
    # A member imports from what came off the image; a stranger finds nothing.
    node = blind.fresh_member(tmp_path / "node")
    result, lines = import_json(node, back)
    assert result.code == 0, lines
    assert set(outcomes(lines)) >= set(BUNDLES)
    assert listed(node) == dict.fromkeys(BUNDLES, 1)
    stranger = blind.base.fresh_node(tmp_path / "stranger")
    result, _ = import_json(stranger, back)
    assert result.code == 2 and listed(stranger) == {}
