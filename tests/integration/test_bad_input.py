"""Every bad input a node, a courier or a publisher can hand the installed `meshdrop`
command, as a named case with an asserted outcome: a non-zero exit, one clear line naming
the problem (no traceback), and nothing unverified made visible. The node under attack
already holds one good bundle; after each refusal it must list, serve and fsck exactly as
before. Hand-made bundles are signed with the real publisher's keys, so that it is the
parser or the trust check, not a broken signature, that has to refuse them."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import sqlite3
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import (
    FIXED_CREATED,
    Publisher,
    Result,
    assert_clean_error,
    make_publisher,
    manifest_hash,
    meshdrop_in_process,
    pack,
    run_meshdrop,
    write_tree,
)
from meshdrop.core import codec
from meshdrop.core.bundle import (
    HEADER_SIZE,
    Envelope,
    encode_header,
    encode_publisher_file,
    parse_envelope,
    parse_header,
    parse_publisher_file,
)
from meshdrop.core.keys import Domain, generate_private_key, public_bytes, sign
from meshdrop.core.manifest import CHUNK_SIZE, FileEntry, Manifest
from meshdrop.core.records import (
    MAX_TIME,
    PublisherRecord,
    SignedRecord,
    Signer,
    parse_record,
    publisher_id,
    sign_record,
)
from meshdrop.publish import keyfile
from meshdrop.publish.keyfile import load_private_key

CREATED = int(FIXED_CREATED)
DAY = 86400
VALID_UNTIL = CREATED + 30 * DAY
FAR_FUTURE = 2**40  # the year 36812, past what the format allows
TIMEOUT = 20  # seconds; every refusal is quick, and a FIFO must never block
ORDER_8_POINT = bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")
SMALL_ORDER_ZERO = bytes(32)  # y = 0: a point of order 4
NON_CANONICAL_KEY = (2**255 - 19 + 1).to_bytes(32, "little")  # y = p + 1, i.e. 1 spelled wide

KEEP_FILES = {"index.html": b"<p>kept and verified</p>", "notes.txt": b"keep me\n"}
VICTIM_FILES = {
    "index.html": b"<h1>victim</h1>",
    "media/big.bin": random.Random(42).randbytes(CHUNK_SIZE + CHUNK_SIZE // 2),
}
HAND_FILES = [("index.html", b"<p>hand-made</p>"), ("a/b.txt", b"bee")]


# --- builders -----------------------------------------------------------------------------


def publisher_records(publisher_folder: Path) -> tuple[SignedRecord, ...]:
    return parse_publisher_file((publisher_folder / "publisher.pub").read_bytes(), "pub")


def current_record(publisher_folder: Path) -> PublisherRecord:
    return parse_record(publisher_records(publisher_folder)[-1].record_bytes)


def _no_passphrase(what: str) -> bytes | None:
    return None


def private_key(publisher_folder: Path, kind: str) -> Ed25519PrivateKey:
    """The folder's one unencrypted ``kind`` ("root" or "signer") key."""
    [path] = publisher_folder.glob(f"{kind}-*.key")
    return load_private_key(path, _no_passphrase)


def chunk_hashes(data: bytes) -> tuple[bytes, ...]:
    return tuple(
        hashlib.sha256(data[i : i + CHUNK_SIZE]).digest() for i in range(0, len(data), CHUNK_SIZE)
    )


def manifest_value(
    publisher_folder: Path, files: Sequence[tuple[str, bytes]] = HAND_FILES, **fields: Any
) -> dict[str, Any]:
    """A manifest as a plain value (nothing checked), with ``fields`` replaced or added."""
    value = Manifest(
        publisher=current_record(publisher_folder).publisher,
        name="victim",
        version=1,
        created=CREATED,
        expires=None,
        title="Hand-made",
        description="",
        language="en",
        priority=0,
        files=tuple(
            FileEntry(path, len(data), "application/octet-stream", chunk_hashes(data))
            for path, data in files
        ),
    ).to_value()
    value.update(fields)
    return value


def bundle_bytes(envelope: Envelope, data: bytes) -> bytes:
    envelope_bytes = envelope.encode()
    return encode_header(len(envelope_bytes)) + envelope_bytes + data


def build_signed_bundle(
    publisher_folder: Path,
    manifest: Mapping[str, Any] | bytes,
    data: bytes,
    records: Sequence[SignedRecord] | None = None,
    signer_key: Ed25519PrivateKey | None = None,
    domain: Domain = Domain.MANIFEST,
) -> bytes:
    """header + envelope + data, the manifest (a value, or exact bytes) signed by
    ``signer_key`` (default: the publisher's own signing key)."""
    key = signer_key or private_key(publisher_folder, "signer")
    raw = manifest if isinstance(manifest, bytes) else codec.pack(dict(manifest))
    chain = tuple(records if records is not None else publisher_records(publisher_folder))
    return bundle_bytes(Envelope(raw, public_bytes(key), sign(key, domain, raw), chain), data)


def next_record(
    publisher_folder: Path,
    signers: Sequence[Signer],
    *,
    version: int = 2,
    roots: Sequence[bytes] | None = None,
    sign_with: Sequence[Ed25519PrivateKey] | None = None,
    publisher: bytes | None = None,
) -> SignedRecord:
    """A publisher record after the pinned one, signed by the real root key by default."""
    current = current_record(publisher_folder)
    record = PublisherRecord(
        publisher=publisher or current.publisher,
        name=current.name,
        version=version,
        created=CREATED,
        roots=tuple(roots or current.roots),
        threshold=1,
        signers=tuple(signers),
    )
    return sign_record(record, sign_with or [private_key(publisher_folder, "root")])


def delegated(
    publisher_folder: Path,
    key: bytes,
    not_before: int = 0,
    expires: int = VALID_UNTIL,
    **more: Any,
) -> tuple[SignedRecord, ...]:
    """The real chain plus a record 2 that delegates ``key``."""
    record = next_record(publisher_folder, [Signer(key, not_before, expires, **more)])
    return (*publisher_records(publisher_folder), record)


def replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1, f"{old!r} occurs {data.count(old)} times"
    return data.replace(old, new)


def flipped(data: bytes, offset: int, mask: int = 0xFF) -> bytes:
    return data[:offset] + bytes([data[offset] ^ mask]) + data[offset + 1 :]


@dataclass(frozen=True)
class Layout:
    """Where each region of a bundle file starts."""

    envelope: int
    manifest: int
    signer: int
    signature: int
    record_name: int
    record_signature: int
    data: int


def envelope_of(bundle: bytes) -> Envelope:
    length = parse_header(bundle[:HEADER_SIZE], "bundle")
    return parse_envelope(bundle[HEADER_SIZE : HEADER_SIZE + length], "bundle")


def layout(bundle: bytes) -> Layout:
    end = HEADER_SIZE + parse_header(bundle[:HEADER_SIZE], "bundle")
    envelope = envelope_of(bundle)

    def find(part: bytes, start: int = HEADER_SIZE, stop: int = end) -> int:
        at = bundle.find(part, start, stop)
        assert at >= 0 and bundle.find(part, at + 1, stop) < 0, f"{part!r} not found once"
        return at

    first = envelope.records[0]
    record = find(first.record_bytes)
    record_end = record + len(first.record_bytes)
    return Layout(
        envelope=HEADER_SIZE,
        manifest=find(envelope.manifest_bytes),
        signer=find(b"\xa6signer\xc4\x20" + envelope.signer) + 9,
        signature=find(b"\xa9signature\xc4\x40" + envelope.signature) + 12,
        record_name=find(b"Bad Input Tests", record, record_end),
        record_signature=find(first.signatures[0][1]),
        data=end,
    )


# --- the world every case runs in ---------------------------------------------------------


@dataclass(frozen=True)
class Kit:
    publisher: Publisher
    stranger: Publisher  # a real publisher the node does not trust
    locked: Publisher  # a publisher whose keys need the passphrase "right horse battery"
    victim: bytes  # a good bundle ("victim" v1) the node does not hold yet
    alpha: Path  # good bundles for the "bad among good" folders
    gamma: Path
    keep_older: Path  # "keep" v1, older than the held v2
    keep_twin: Path  # "keep" v2 again, with other content
    template: Path  # a node home that trusts publisher and holds "keep" v2
    listing: str  # `ls --json` of the template
    trust_listing: str  # `trust ls --json` of the template

    @property
    def folder(self) -> Path:
        return self.publisher.folder


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    root = tmp_path_factory.mktemp("kit")
    publisher = make_publisher(root / "publisher", "Bad Input Tests")
    stranger = make_publisher(root / "stranger", "Stranger")
    locked = root / "locked"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keyfile, "SCRYPT_N", 2**14)  # cheap sealing; strength is tested apart
        meshdrop_in_process(
            "publisher",
            "new",
            locked,
            "--name",
            "Locked",
            env={"MESHDROP_PASSPHRASE": "right horse battery"},
            check=True,
        )

    def bundle(name: str, files: Mapping[str, bytes], version: int, who: Publisher) -> Path:
        src = write_tree(root / f"src-{name}-{version}-{len(files)}", dict(files))
        out = root / f"{name}-v{version}-{len(files)}.mdrop"
        return pack(who, src, out, name, "--version", str(version))

    keep = low_hash_keep(root, publisher)
    template = root / "template-node"
    meshdrop_in_process("--home", template, "trust", "add", "--yes", publisher.pub, check=True)
    meshdrop_in_process("--home", template, "import", keep, check=True)
    listing = meshdrop_in_process("--home", template, "ls", "--json", check=True).out
    assert json.loads(listing)["name"] == "keep"
    return Kit(
        publisher=publisher,
        stranger=stranger,
        locked=Publisher(locked),
        victim=bundle("victim", VICTIM_FILES, 1, publisher).read_bytes(),
        alpha=bundle("alpha", {"a.txt": b"alpha"}, 1, publisher),
        gamma=bundle("gamma", {"g.txt": b"gamma"}, 1, publisher),
        keep_older=bundle("keep", {"index.html": b"<p>old</p>"}, 1, publisher),
        keep_twin=higher_twin(root, publisher, keep),
        template=template,
        listing=listing,
        trust_listing=meshdrop_in_process(
            "--home", template, "trust", "ls", "--json", check=True
        ).out,
    )


def low_hash_keep(root: Path, publisher: Publisher) -> Path:
    """ "keep" v2 with a manifest hash in the lower half (its description picks one), so
    that ``higher_twin`` finds a higher twin at once: with a hash near the top, as the
    hour's creation time sometimes gave, 64 tries were not enough."""
    src = write_tree(root / "src-keep-2", dict(KEEP_FILES))
    for i in range(64):
        out = root / f"keep-v2-{i}.mdrop"
        keep = pack(publisher, src, out, "keep", "--version", "2", "--description", f"copy {i}")
        if manifest_hash(keep)[0] < 0x80:
            return keep
    raise AssertionError("no copy of keep with a hash in the lower half in 64 tries")


def higher_twin(root: Path, publisher: Publisher, kept: Path) -> Path:
    """Another bundle signed as the same version as ``kept``, with a higher manifest hash:
    of two copies of one version a node keeps the lower, so this one is always refused."""
    for i in range(64):
        src = write_tree(root / f"src-keep-twin-{i}", {"index.html": b"<p>twin %d</p>" % i})
        twin = pack(publisher, src, root / f"keep-twin-{i}.mdrop", "keep", "--version", "2")
        if manifest_hash(twin) > manifest_hash(kept):
            return twin
    raise AssertionError("no twin with a higher manifest hash in 64 tries")


@pytest.fixture
def home(kit: Kit, tmp_path: Path) -> Path:
    """A private copy of the template node."""
    return Path(shutil.copytree(kit.template, tmp_path / "node"))


def assert_node_unchanged(kit: Kit, home: Path, scratch: Path, listing: str | None = None) -> None:
    """Still exactly what it held: same listing, same trust, same bytes, fsck clean. The
    same commands and output as a user's, run in process: the refusal before it was the
    real subprocess run of the case."""
    expected = kit.listing if listing is None else listing
    assert meshdrop_in_process("--home", home, "ls", "--json", check=True).out == expected
    assert meshdrop_in_process("--home", home, "trust", "ls", "--json", check=True).out == (
        kit.trust_listing
    )
    out = scratch / "kept-index.html"
    meshdrop_in_process("--home", home, "get", "keep", "index.html", "-o", out, check=True)
    assert out.read_bytes() == KEEP_FILES["index.html"]
    assert meshdrop_in_process("--home", home, "fsck", "--quiet").code == 0


def listed_names(home: Path) -> list[str]:
    out = meshdrop_in_process("--home", home, "ls", "--json", check=True).out
    return sorted(str(json.loads(line)["name"]) for line in out.splitlines())


def assert_one_line_error(result: Result, fragment: str, code: int | None = None) -> None:
    """One failing command: its exit code, and stderr exactly one line naming the problem."""
    assert_clean_error(result, fragment)
    if code is not None:
        assert result.code == code, result
    lines = result.err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr: {result!r}"
    assert fragment.lower() in lines[0].lower(), lines


ONE_FILES_OWN_CODE = range(2, 10)  # import of one file exits with its error's own code


def assert_refusals(
    result: Result, marker: str, expected: Mapping[Path, str], code: int | range = 1
) -> None:
    """Exit ``code`` (1: several inputs) and exactly one stderr line per refused file,
    naming it, ``marker`` and the fragment of its reason."""
    assert_clean_error(result, *expected.values())
    assert result.code in (code if isinstance(code, range) else [code]), result
    lines = result.err.splitlines()
    assert len(lines) == len(expected), f"expected {len(expected)} lines on stderr: {result!r}"
    for path, fragment in expected.items():
        mine = [line for line in lines if line.startswith(f"{path}: ")]
        assert len(mine) == 1, f"{path} not named by exactly one line: {lines}"
        assert marker in mine[0] and fragment.lower() in mine[0].lower(), mine[0]


# --- the bad bundle files -----------------------------------------------------------------

Maker = Callable[[Kit, Path], Path]


@dataclass(frozen=True)
class Bad:
    make: Maker  # writes the bad input into the folder given; returns the path to pass
    reason: str  # a fragment the one-line error must contain


def bad(case_id: str, make: Maker, reason: str) -> Any:
    return pytest.param(Bad(make, reason), id=case_id)


def file_of(content: Callable[[Kit], bytes]) -> Maker:
    def make(kit: Kit, folder: Path) -> Path:
        path = folder / "bad.mdrop"
        path.write_bytes(content(kit))
        return path

    return make


def flip(region: Callable[[Layout], int], offset: int = 0, mask: int = 0xFF) -> Maker:
    return file_of(lambda k: flipped(k.victim, region(layout(k.victim)) + offset, mask))


def cut(at: Callable[[Kit], int]) -> Maker:
    return file_of(lambda k: k.victim[: at(k)])


def with_length(delta: int) -> Maker:
    def content(kit: Kit) -> bytes:
        length = parse_header(kit.victim[:HEADER_SIZE], "victim") + delta
        return kit.victim[:12] + struct.pack(">I", length) + kit.victim[HEADER_SIZE:]

    return file_of(content)


def hand_made(files: Sequence[tuple[str, bytes]] = HAND_FILES, **fields: Any) -> Maker:
    """A signed bundle whose manifest lists ``files`` (data that matches) plus ``fields``."""
    return file_of(
        lambda k: build_signed_bundle(
            k.folder, manifest_value(k.folder, files, **fields), b"".join(d for _, d in files)
        )
    )


def hand_encoded(encode: Callable[[bytes], bytes]) -> Maker:
    """A signed bundle whose manifest bytes are the canonical ones edited by ``encode``."""

    def content(kit: Kit) -> bytes:
        raw = encode(codec.pack(manifest_value(kit.folder)))
        return build_signed_bundle(kit.folder, raw, b"".join(d for _, d in HAND_FILES))

    return file_of(content)


def hand_signed(
    records: Callable[[Kit, Ed25519PrivateKey], Sequence[SignedRecord]],
    files: Sequence[tuple[str, bytes]] = HAND_FILES,
    **fields: Any,
) -> Maker:
    """A bundle signed by a fresh key, carrying the records ``records(kit, key)``."""

    def content(kit: Kit) -> bytes:
        key = generate_private_key()
        value = manifest_value(kit.folder, files, **fields)
        data = b"".join(d for _, d in files)
        return build_signed_bundle(kit.folder, value, data, records(kit, key), key)

    return file_of(content)


def raw_envelope(change: Callable[[Kit, Envelope], Envelope]) -> Maker:
    """The hand-made good bundle with its envelope changed by ``change``."""

    def content(kit: Kit) -> bytes:
        data = b"".join(d for _, d in HAND_FILES)
        good = build_signed_bundle(kit.folder, manifest_value(kit.folder), data)
        return bundle_bytes(change(kit, envelope_of(good)), data)

    return file_of(content)


def stranger_bundle(kit: Kit, folder: Path) -> Path:
    src = write_tree(folder / "stranger-src", {"index.html": b"<p>not yours</p>"})
    return pack(kit.stranger, src, folder / "bad.mdrop", "victim", "--version", "1")


def missing(kit: Kit, folder: Path) -> Path:
    return folder / "bad.mdrop"


def symlink_to_good(kit: Kit, folder: Path) -> Path:
    (folder / "good.bin").write_bytes(kit.victim)
    (folder / "bad.mdrop").symlink_to(folder / "good.bin")
    return folder / "bad.mdrop"


def fifo(kit: Kit, folder: Path) -> Path:
    os.mkfifo(folder / "bad.mdrop")
    return folder / "bad.mdrop"


def directory(kit: Kit, folder: Path) -> Path:
    (folder / "bad.mdrop").mkdir()
    return folder / "bad.mdrop"


def device(kit: Kit, folder: Path) -> Path:
    return Path("/dev/null")


def publisher_file_as_bundle(kit: Kit, folder: Path) -> Path:
    return Path(shutil.copy(kit.publisher.pub, folder / "bad.mdrop"))


def nested(depth: int) -> bytes:
    return b"\x91" * depth + b"\xc0"


def with_entry(key: bytes, value: bytes) -> Callable[[bytes], bytes]:
    """Append one more (raw msgpack) key and value to the manifest's top-level map."""

    def encode(raw: bytes) -> bytes:
        assert 0x80 <= raw[0] < 0x8F, "expected a fixmap with room for one more key"
        return bytes([raw[0] + 1]) + raw[1:] + key + value

    return encode


def unsorted(raw: bytes) -> bytes:
    value = msgpack.unpackb(raw, raw=False)
    result: bytes = msgpack.packb(dict(reversed(list(value.items()))), use_bin_type=True)
    return result


def as_description(value: bytes) -> Callable[[bytes], bytes]:
    """Put ``value`` (raw msgpack) where the empty description is."""
    return lambda raw: replace_once(raw, b"\xabdescription\xa0", b"\xabdescription" + value)


def forged_first_record(kit: Kit, key: Ed25519PrivateKey) -> Sequence[SignedRecord]:
    """An attacker's own record 1 that claims the pinned publisher's id."""
    attacker_root = generate_private_key()
    return (
        next_record(
            kit.folder,
            [Signer(public_bytes(key), 0, VALID_UNTIL)],
            version=1,
            roots=[public_bytes(attacker_root)],
            sign_with=[attacker_root],
        ),
    )


def forged_next_record(kit: Kit, key: Ed25519PrivateKey) -> Sequence[SignedRecord]:
    """Record 2 for the pinned publisher, signed only by an attacker's root."""
    attacker_root = generate_private_key()
    record = next_record(
        kit.folder,
        [Signer(public_bytes(key), 0, VALID_UNTIL)],
        roots=[public_bytes(attacker_root)],
        sign_with=[attacker_root],
    )
    return (*publisher_records(kit.folder), record)


def new_roots_not_signing(kit: Kit, key: Ed25519PrivateKey) -> Sequence[SignedRecord]:
    """Record 2 that hands the publisher to new roots, signed by the old root only."""
    record = next_record(
        kit.folder, [Signer(public_bytes(key), 0, VALID_UNTIL)], roots=[public_bytes(key)]
    )
    return (*publisher_records(kit.folder), record)


def chain_with_gap(kit: Kit, key: Ed25519PrivateKey) -> Sequence[SignedRecord]:
    record = next_record(kit.folder, [Signer(public_bytes(key), 0, VALID_UNTIL)], version=3)
    return (*publisher_records(kit.folder), record)


def real_key(kit: Kit, key: Ed25519PrivateKey) -> Sequence[SignedRecord]:
    """The real chain: ``key`` is not in it."""
    return publisher_records(kit.folder)


def delegating(**signer: Any) -> Callable[[Kit, Ed25519PrivateKey], Sequence[SignedRecord]]:
    """A correctly signed record 2 that delegates the fresh key with ``signer`` settings."""
    return lambda kit, key: delegated(kit.folder, public_bytes(key), **signer)


def delegating_key(key: bytes) -> Callable[[Kit, Ed25519PrivateKey], Sequence[SignedRecord]]:
    """Record 2 delegating the fixed public ``key`` (also delegating the fresh key)."""
    return lambda kit, fresh: (
        *publisher_records(kit.folder),
        next_record(
            kit.folder, [Signer(public_bytes(fresh), 0, VALID_UNTIL), Signer(key, 0, VALID_UNTIL)]
        ),
    )


def with_root(key: bytes) -> Callable[[Kit, Ed25519PrivateKey], Sequence[SignedRecord]]:
    """Record 2 that adds the public ``key`` as a second root (threshold 1)."""

    def records(kit: Kit, fresh: Ed25519PrivateKey) -> Sequence[SignedRecord]:
        current = current_record(kit.folder)
        roots = sorted([*current.roots, key])
        signer = Signer(public_bytes(fresh), 0, VALID_UNTIL)
        return (*publisher_records(kit.folder), next_record(kit.folder, [signer], roots=roots))

    return records


def small_order_signer(kit: Kit, envelope: Envelope) -> Envelope:
    return Envelope(envelope.manifest_bytes, ORDER_8_POINT, bytes(64), envelope.records)


def no_records(kit: Kit, envelope: Envelope) -> Envelope:
    return Envelope(envelope.manifest_bytes, envelope.signer, envelope.signature, ())


def other_publisher_manifest(kit: Kit) -> bytes:
    stranger_id = current_record(kit.stranger.folder).publisher
    value = manifest_value(kit.folder, publisher=stranger_id)
    return build_signed_bundle(kit.folder, value, b"".join(d for _, d in HAND_FILES))


def wrong_domain(kit: Kit) -> bytes:
    value = manifest_value(kit.folder)
    data = b"".join(d for _, d in HAND_FILES)
    return build_signed_bundle(kit.folder, value, data, domain=Domain.PUBLISHER_RECORD)


def sized(size: int, hashed: bytes, data: bytes) -> Maker:
    """One file declared as ``size`` bytes with the chunk hash of ``hashed``, then ``data``."""

    def content(kit: Kit) -> bytes:
        value = manifest_value(kit.folder, [("f.bin", hashed)])
        value["files"][0]["size"] = size
        return build_signed_bundle(kit.folder, value, data)

    return file_of(content)


NFC_E = "\u00e9.txt"
NFD_E = "e\u0301.txt"

BAD_FILES = [
    # the header
    bad("header-magic", flip(lambda r: 0), "wrong magic bytes"),
    bad("header-format-version", flip(lambda r: 9), "bundle format"),
    bad("header-flags", flip(lambda r: 11), "unknown header flags"),
    bad("header-envelope-length-high-byte", flip(lambda r: 12), "over the limit"),
    bad("header-envelope-length-one-short", with_length(-1), "truncated"),
    bad("header-envelope-length-one-long", with_length(+1), "unexpected bytes after its end"),
    # the envelope
    bad("envelope-map-header", flip(lambda r: r.envelope), "unexpected bytes after its end"),
    bad("envelope-field-name", flip(lambda r: r.signer, -3, 0x20), "lacks the field 'signer'"),
    bad("envelope-signer-key", flip(lambda r: r.signer, 5), "has not delegated"),
    # the manifest, the signature, the data
    bad("manifest-byte", flip(lambda r: r.manifest, 100), "signature does not verify"),
    bad("manifest-first-byte", flip(lambda r: r.manifest), "signature does not verify"),
    bad("signature-byte", flip(lambda r: r.signature, 10), "signature does not verify"),
    bad("data-first-byte", flip(lambda r: r.data), "does not match its signed hash"),
    bad(
        "data-last-byte",
        flip(lambda r: r.data + sum(map(len, VICTIM_FILES.values())) - 1),
        "does not match its signed hash",
    ),
    # truncated and lengthened files
    bad("empty-file", cut(lambda k: 0), "too short"),
    bad("truncated-in-header", cut(lambda k: 8), "too short"),
    bad("truncated-after-header", cut(lambda k: HEADER_SIZE), "truncated inside its envelope"),
    bad(
        "truncated-in-envelope",
        cut(lambda k: layout(k.victim).manifest + 50),
        "truncated inside its envelope",
    ),
    bad("truncated-in-data", cut(lambda k: layout(k.victim).data + CHUNK_SIZE), "truncated"),
    bad("truncated-one-byte-short", cut(lambda k: len(k.victim) - 1), "1 bytes of data missing"),
    bad("extra-trailing-byte", file_of(lambda k: k.victim + b"\0"), "1 unexpected bytes"),
    bad(
        "extra-trailing-chunk", file_of(lambda k: k.victim + bytes(CHUNK_SIZE)), "unexpected bytes"
    ),
    bad("garbage", file_of(lambda k: random.Random(1).randbytes(5000)), "not a meshdrop bundle"),
    bad("publisher-file-as-bundle", publisher_file_as_bundle, "not a meshdrop bundle"),
    # who signed it
    bad("untrusted-publisher", stranger_bundle, "does not trust"),
    bad("signer-not-delegated", hand_signed(real_key), "has not delegated"),
    bad("forged-record-1-for-pinned-id", hand_signed(forged_first_record), "has not delegated"),
    bad("forged-record-2-other-root", hand_signed(forged_next_record), "previous root keys"),
    bad("record-2-new-roots-unsigned", hand_signed(new_roots_not_signing), "its own root keys"),
    bad("record-chain-gap", hand_signed(chain_with_gap), "gap after version 1"),
    bad("no-records", raw_envelope(no_records), "'records'"),
    bad(
        "manifest-names-other-publisher",
        file_of(other_publisher_manifest),
        "names another publisher",
    ),
    bad("signature-wrong-domain", file_of(wrong_domain), "signature does not verify"),
    bad("signer-expired", hand_signed(delegating(expires=CREATED - 1)), "not valid on"),
    bad("bundle-expires-year-36812", hand_made(expires=FAR_FUTURE), "'expires'"),
    bad("bundle-created-year-36812", hand_made(created=FAR_FUTURE), "'created'"),
    bad("signer-not-yet-valid", hand_signed(delegating(not_before=CREATED + 1)), "not valid on"),
    bad(
        "signer-valid-until-year-36812",
        hand_signed(delegating(expires=FAR_FUTURE)),
        "has not delegated",
    ),
    bad(
        "signer-out-of-scope",
        hand_signed(delegating(scope=("other-*",))),
        "may not sign bundles named",
    ),
    bad(
        "bundle-expired",
        hand_signed(delegating(), created=1_000_000_000, expires=1_000_000_001),
        "expired on",
    ),
    bad(
        "small-order-signer-undelegated",
        raw_envelope(small_order_signer),
        "has not delegated",
    ),
    bad("small-order-signer-delegated", hand_signed(delegating_key(ORDER_8_POINT)), "small-order"),
    bad("small-order-root", hand_signed(with_root(SMALL_ORDER_ZERO)), "small-order"),
    bad(
        "non-canonical-signer-key",
        hand_signed(delegating_key(NON_CANONICAL_KEY)),
        "not a canonical ed25519 point",
    ),
    # the manifest's encoding, signed by the real signing key
    bad(
        "manifest-duplicate-key",
        hand_encoded(with_entry(codec.pack("title"), codec.pack("again"))),
        "same key twice",
    ),
    bad(
        "manifest-wide-integer",
        hand_encoded(
            lambda raw: replace_once(
                raw, b"\xa7version\x01", b"\xa7version\xcf" + (1).to_bytes(8, "big")
            )
        ),
        "canonical",
    ),
    bad("manifest-keys-unsorted", hand_encoded(unsorted), "canonical"),
    bad(
        "manifest-signed-form-integer",
        hand_encoded(lambda raw: replace_once(raw, b"\xa8priority\x00", b"\xa8priority\xd0\x00")),
        "canonical",
    ),
    bad("manifest-binary-map-key", hand_encoded(with_entry(b"\xc4\x01x", b"\x01")), "not text"),
    bad("manifest-integer-map-key", hand_encoded(with_entry(b"\x01", b"\x01")), "not text"),
    bad("manifest-text-as-bytes", hand_encoded(as_description(b"\xc4\x01x")), "'description'"),
    bad("manifest-bytes-as-text", hand_made(publisher="x" * 32), "'publisher'"),
    bad("manifest-string-over-cap", hand_made(description="x" * 100_000), "holds a string of"),
    bad("manifest-nested-2000-deep", hand_encoded(as_description(nested(2000))), "nested deeper"),
    bad("manifest-whole-nested-2000", hand_encoded(lambda raw: nested(2000)), "nested deeper"),
    bad(
        "manifest-array32-2pow32",
        hand_encoded(as_description(b"\xdd\xff\xff\xff\xff")),
        "claims more than",
    ),
    bad(
        "manifest-map32-2pow32",
        hand_encoded(as_description(b"\xdf\xff\xff\xff\xff")),
        "claims more than",
    ),
    bad(
        "manifest-count-beyond-data",
        hand_encoded(as_description(b"\xdc\x10\x00\xc0")),
        "too short to hold them",
    ),
    bad(
        "manifest-float", hand_encoded(as_description(b"\xcb" + struct.pack(">d", 1.5))), "a float"
    ),
    bad("manifest-ext-type", hand_encoded(as_description(b"\xd4\x01\x00")), "extension type"),
    bad("manifest-bad-utf8", hand_encoded(as_description(b"\xa2\xc3\x28")), "utf-8"),
    bad("manifest-trailing-byte", hand_encoded(lambda raw: raw + b"\xc0"), "unexpected bytes"),
    bad("manifest-not-a-map", hand_encoded(lambda raw: codec.pack([1, 2])), "not a map"),
    bad("manifest-unknown-field", hand_made(extra=1), "an unknown field: extra"),
    bad("manifest-bad-name", hand_made(name="News/x"), "invalid bundle name"),
    bad("manifest-chunk-count", sized(CHUNK_SIZE + 1, b"x", b"x"), "chunk hashes"),
    bad(
        "manifest-1650000-empty-arrays",
        hand_encoded(lambda raw: b"\xdd" + struct.pack(">I", 1_650_000) + b"\x90" * 1_650_000),
        "claims more than 950013 items",
    ),
    bad(
        "manifest-250000-empty-arrays",
        hand_encoded(as_description(b"\xdd" + struct.pack(">I", 250_000) + b"\x90" * 250_000)),
        "more arrays and maps than the limit of 200002",
    ),
    bad(
        "manifest-map-of-1000-keys",
        hand_encoded(as_description(b"\xde\x03\xe8" + b"\xa1a\xc0" * 1000)),
        "more than there are field names",
    ),
    # paths inside the bundle
    bad("path-dotdot", hand_made([("../x", b"x")]), "the one above it"),
    bad("path-absolute", hand_made([("/abs", b"x")]), "must be relative"),
    bad("path-drive", hand_made([("C:x", b"x")]), "as a drive"),
    bad("path-backslash", hand_made([("a\\b", b"x")]), "backslash"),
    bad("path-dot-component", hand_made([("a/./b", b"x")]), "means this folder"),
    bad("path-double-slash", hand_made([("a//b", b"x")]), "'//'"),
    bad("path-trailing-slash", hand_made([("a/", b"x")]), "ends with '/'"),
    bad("path-nul", hand_made([("a\0b", b"x")]), "U+0000"),
    bad("path-control-char", hand_made([("a\x1bb", b"x")]), "U+001B"),
    bad("path-bidi-override", hand_made([("a\u202etxt.exe", b"x")]), "U+202E"),
    bad("path-device-name", hand_made([("con.txt", b"x")]), "reserves for a device"),
    bad("path-colon-drive-like", hand_made([("a:b", b"x")]), "as a drive"),
    bad("path-colon", hand_made([("ab:c", b"x")]), "':'"),
    bad("path-trailing-dot", hand_made([("a.", b"x")]), "ends with a dot or space"),
    bad("path-trailing-space", hand_made([("a ", b"x")]), "ends with a dot or space"),
    bad("path-empty", hand_made([("", b"x")]), "'path'"),
    bad("path-twice", hand_made([("a.txt", b"x"), ("a.txt", b"y")]), "twice"),
    bad("path-case-twins", hand_made([("A.txt", b"x"), ("a.txt", b"y")]), "same file"),
    bad("path-nfc-nfd-twins", hand_made([(NFC_E, b"x"), (NFD_E, b"y")]), "NFC"),
    bad(
        "path-compatibility-twins", hand_made([("\ufb01.txt", b"x"), ("fi.txt", b"y")]), "same file"
    ),
    bad("path-file-and-folder", hand_made([("a", b"x"), ("a/b", b"y")]), "needs a folder"),
    bad("path-not-nfc", hand_made([(NFD_E, b"x")]), "NFC"),
    bad("path-invisible-twins", hand_made([("ab.txt", b"x"), ("a\u200cb.txt", b"y")]), "same file"),
    bad("path-bom-twins", hand_made([("ab.txt", b"x"), ("a\ufeffb.txt", b"y")]), "same file"),
    bad("path-invisible-name", hand_made([("\u200b", b"x")]), "some systems ignore"),
    bad(
        "path-fat-short-name",
        hand_made([("longfilename.txt", b"x"), ("longfi~1.txt", b"y")]),
        "could be the FAT short name of 'longfilename.txt'",
    ),
    # declared sizes against the data
    bad(
        "size-10-hash-of-9-data-10",
        sized(10, b"123456789", b"1234567890"),
        "does not match its signed hash",
    ),
    bad(
        "size-10-hash-of-9-data-9", sized(10, b"123456789", b"123456789"), "1 bytes of data missing"
    ),
    bad(
        "data-shorter-than-declared",
        sized(10, b"1234567890", b"123456789"),
        "1 bytes of data missing",
    ),
    bad(
        "data-longer-than-declared",
        sized(9, b"123456789", b"1234567890"),
        "1 unexpected bytes after its data",
    ),
    # what is not a bundle file at all
    bad("missing-file", missing, "no such file"),
    bad("symlink-to-good-bundle", symlink_to_good, "symbolic link"),
    bad("fifo", fifo, "FIFO"),
    bad("device", device, "device"),
]


def test_hand_made_bundles_are_good_when_nothing_is_wrong(
    kit: Kit, home: Path, tmp_path: Path
) -> None:
    """The builders themselves make bundles that import: every refusal below is due to the
    one fault each case adds."""
    data = b"".join(d for _, d in HAND_FILES)
    plain = build_signed_bundle(kit.folder, manifest_value(kit.folder), data)
    raw = codec.pack(manifest_value(kit.folder, name="raw"))
    encoded = build_signed_bundle(kit.folder, raw, data)
    key = generate_private_key()
    rotated = build_signed_bundle(
        kit.folder,
        manifest_value(kit.folder, name="rotated"),
        data,
        delegated(kit.folder, public_bytes(key)),
        key,
    )
    for name, content in (("plain", plain), ("encoded", encoded), ("rotated", rotated)):
        (tmp_path / f"{name}.mdrop").write_bytes(content)
        result = run_meshdrop("--home", home, "import", tmp_path / f"{name}.mdrop", check=True)
        assert ": imported" in result.out
    assert listed_names(home) == ["keep", "raw", "rotated", "victim"]
    assert layout(kit.victim).data == len(kit.victim) - sum(map(len, VICTIM_FILES.values()))


@pytest.mark.parametrize("case", BAD_FILES)
def test_import_refuses_and_exposes_nothing(
    case: Bad, kit: Kit, home: Path, tmp_path: Path
) -> None:
    path = case.make(kit, tmp_path)
    result = run_meshdrop("--home", home, "import", path, timeout=TIMEOUT)
    assert result.code != 0, f"accepted: {result!r}"
    assert "Traceback" not in result.err + result.out, result.err
    assert_node_unchanged(kit, home, tmp_path)
    assert_refusals(result, "refused", {path: case.reason}, ONE_FILES_OWN_CODE)


@pytest.mark.parametrize("case", BAD_FILES)
def test_verify_fails_the_bad_file_only(case: Bad, kit: Kit, tmp_path: Path) -> None:
    good = tmp_path / "good.mdrop"
    good.write_bytes(kit.victim)
    path = case.make(kit, tmp_path)
    result = run_meshdrop("verify", good, path, "--trust", kit.publisher.pub, timeout=TIMEOUT)
    assert f"{good}: OK" in result.out, result
    assert_refusals(result, "FAILED", {path: case.reason})


def test_latest_allowed_expiry_is_shown_not_crashed(kit: Kit, home: Path, tmp_path: Path) -> None:
    """A correctly signed bundle that expires at the latest time the format allows: every
    command that shows it must work, not fail with an internal error."""
    value = manifest_value(kit.folder, name="far", expires=MAX_TIME)
    path = tmp_path / "far.mdrop"
    path.write_bytes(build_signed_bundle(kit.folder, value, b"".join(d for _, d in HAND_FILES)))
    pub = kit.publisher.pub
    commands: list[list[str | Path]] = [
        ["--home", home, "import", path],
        ["--home", home, "ls"],
        ["--home", home, "ls", "--json"],
        ["verify", path, "--trust", pub],
        ["inspect", path],
        ["inspect", path, "--trust", pub],
    ]
    for args in commands:
        result = run_meshdrop(*args, timeout=TIMEOUT)
        assert result.code == 0, result


def stored_blobs(home: Path) -> list[bytes]:
    """Every bytes value in the node's index, whatever its tables."""
    with contextlib.closing(sqlite3.connect(home / "index.sqlite")) as conn:
        query = "SELECT name FROM sqlite_master WHERE type = 'table'"
        tables = [row[0] for row in conn.execute(query)]
        return [
            value
            for table in tables
            for row in conn.execute(f'SELECT * FROM "{table}"')
            for value in row
            if isinstance(value, bytes)
        ]


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(flip(lambda r: r.record_name, 0, 0x20), id="record-name"),
        pytest.param(flip(lambda r: r.record_signature, 7), id="record-signature"),
    ],
)
def test_damaged_copy_of_pinned_record_is_never_stored(
    make: Maker, kit: Kit, home: Path, tmp_path: Path
) -> None:
    """A flipped byte in the bundle's copy of record 1, which the node pinned already: the
    pinned record decides, so the bundle may be refused or accepted, but the damaged,
    unverifiable record must never be stored (and so never passed on)."""
    path = make(kit, tmp_path)
    [damaged] = envelope_of(path.read_bytes()).records
    [pinned] = publisher_records(kit.folder)
    parts = [
        (damaged.record_bytes, pinned.record_bytes),
        (damaged.signatures[0][1], pinned.signatures[0][1]),
    ]
    [unverified] = [new for new, old in parts if new != old]
    result = run_meshdrop("--home", home, "import", path, timeout=TIMEOUT)
    assert "Traceback" not in result.err + result.out, result.err
    if result.code != 0:
        assert_node_unchanged(kit, home, tmp_path)
        assert_refusals(result, "refused", {path: "record"}, ONE_FILES_OWN_CODE)
    blobs = stored_blobs(home)
    assert any(pinned.record_bytes in blob for blob in blobs)  # the search does see records
    assert not [blob for blob in blobs if unverified in blob]


# --- rollback: bad only because of what the node already holds ----------------------------


@pytest.mark.parametrize(
    ("which", "reason"),
    [
        pytest.param("keep_older", "older than version 2", id="older-version-after-newer"),
        pytest.param("keep_twin", "differs from the copy", id="same-version-other-content"),
    ],
)
def test_import_refuses_rollback(
    which: str, reason: str, kit: Kit, home: Path, tmp_path: Path
) -> None:
    path: Path = getattr(kit, which)
    result = run_meshdrop("--home", home, "import", path, timeout=TIMEOUT)
    assert result.code != 0, f"accepted: {result!r}"
    listing = kit.listing
    if which == "keep_twin":  # the same content, now marked as one of two signed copies
        listing = listing.replace('"equivocated": false', '"equivocated": true')
        assert listing != kit.listing
    assert_node_unchanged(kit, home, tmp_path, listing)
    assert_refusals(result, "refused", {path: reason}, 6)  # RollbackError's code


# --- one bad file among good ones ---------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        bad("flipped-data", flip(lambda r: r.data), "does not match its signed hash"),
        bad("truncated", cut(lambda k: 100), "truncated"),
        bad("untrusted", stranger_bundle, "does not trust"),
        bad("fifo", fifo, "FIFO"),
        bad("symlink", symlink_to_good, "symbolic link"),
    ],
)
def test_import_folder_one_bad_among_good(case: Bad, kit: Kit, home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "stick"
    folder.mkdir()
    shutil.copy(kit.alpha, folder / "a-alpha.mdrop")
    built = case.make(kit, tmp_path)
    path = folder / "b-bad.mdrop"
    if built.is_symlink() or not built.is_file():
        built.rename(path)
    else:
        shutil.copy(built, path)
    shutil.copy(kit.gamma, folder / "c-gamma.mdrop")
    result = run_meshdrop("--home", home, "import", folder, timeout=TIMEOUT)
    assert "Traceback" not in result.err + result.out, result.err
    assert f"{folder / 'a-alpha.mdrop'}: imported" in result.out, result
    assert f"{folder / 'c-gamma.mdrop'}: imported" in result.out, result
    assert listed_names(home) == ["alpha", "gamma", "keep"]
    assert meshdrop_in_process("--home", home, "fsck", "--quiet").code == 0
    assert_refusals(result, "refused", {path: case.reason})


def test_import_of_folder_without_bundles(kit: Kit, home: Path, tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "stick", {"readme.txt": b"no bundles", "x/y.pdf": b"%PDF"})
    result = run_meshdrop("--home", home, "import", folder, timeout=TIMEOUT)
    assert_one_line_error(result, "no .mdrop files found", 2)
    assert_node_unchanged(kit, home, tmp_path)


def test_verify_mixed_good_and_bad_files(kit: Kit, tmp_path: Path) -> None:
    good = tmp_path / "1-good.mdrop"
    good.write_bytes(kit.victim)
    expected: dict[Path, str] = {}
    for i, case in enumerate(
        [
            Bad(flip(lambda r: r.data), "does not match its signed hash"),
            Bad(cut(lambda k: len(k.victim) - 1), "truncated"),
            Bad(stranger_bundle, "does not trust"),
            Bad(flip(lambda r: r.signature, 3), "signature does not verify"),
        ]
    ):
        scratch = tmp_path / f"case-{i}"
        scratch.mkdir()
        path = case.make(kit, scratch)
        expected[path.rename(tmp_path / f"{i + 2}-bad.mdrop")] = case.reason
    result = run_meshdrop("verify", good, *expected, "--trust", kit.publisher.pub)
    assert result.out.splitlines() == [f"{good}: OK (victim v1)"], result
    assert_refusals(result, "FAILED", expected)


# --- trust add (and verify --trust) of what is not a good publisher.pub -------------------


def pub_of(content: Callable[[Kit], bytes]) -> Maker:
    def make(kit: Kit, folder: Path) -> Path:
        path = folder / "publisher.pub"
        path.write_bytes(content(kit))
        return path

    return make


def pub_flip(find: Callable[[bytes, Kit], int]) -> Maker:
    def content(kit: Kit) -> bytes:
        data = kit.publisher.pub.read_bytes()
        return flipped(data, find(data, kit), 0x20)

    return pub_of(content)


def small_order_root_pub(kit: Kit) -> bytes:
    signer = current_record(kit.folder).signers[0]
    record = PublisherRecord(
        publisher=publisher_id([SMALL_ORDER_ZERO], 1),
        name="Small",
        version=1,
        created=CREATED,
        roots=(SMALL_ORDER_ZERO,),
        threshold=1,
        signers=(signer,),
    )
    raw = codec.pack(record.to_value())
    return encode_publisher_file([SignedRecord(raw, ((SMALL_ORDER_ZERO, bytes(64)),))])


def borrowed_identity_pub(kit: Kit) -> bytes:
    """Record 1 signed by the real root, but claiming the stranger's publisher id."""
    stranger_id = current_record(kit.stranger.folder).publisher
    record = next_record(
        kit.folder, current_record(kit.folder).signers, version=1, publisher=stranger_id
    )
    return encode_publisher_file([record])


def record_2_only_pub(kit: Kit) -> bytes:
    record = next_record(kit.folder, current_record(kit.folder).signers)
    return encode_publisher_file([record])


BAD_PUBS = [
    bad("garbage", pub_of(lambda k: random.Random(2).randbytes(3000)), "not a meshdrop publisher"),
    bad("empty", pub_of(lambda k: b""), "not a meshdrop publisher"),
    bad("bundle-instead", pub_of(lambda k: k.victim), "not a meshdrop publisher"),
    bad("flipped-magic", pub_flip(lambda d, k: 2), "not a meshdrop publisher"),
    bad("flipped-name", pub_flip(lambda d, k: d.index(b"Bad Input Tests")), "root signatures"),
    bad("flipped-root-signature", pub_flip(lambda d, k: len(d) - 5), "root signatures"),
    bad("truncated", pub_of(lambda k: k.publisher.pub.read_bytes()[:-10]), "truncated"),
    bad("extra-byte", pub_of(lambda k: k.publisher.pub.read_bytes() + b"\0"), "unexpected bytes"),
    bad("small-order-root", pub_of(small_order_root_pub), "small-order"),
    bad("borrowed-identity", pub_of(borrowed_identity_pub), "does not match its root keys"),
    bad("chain-starts-at-2", pub_of(record_2_only_pub), "first record"),
    bad("missing", missing, "no such file"),
    bad("folder", directory, "folder"),
    bad("fifo", fifo, "FIFO"),
]
PUB_EXIT_CODES = {"no such file": 2, "folder": 2, "FIFO": 2, "not a meshdrop publisher": 3}


@pytest.mark.parametrize("case", BAD_PUBS)
def test_trust_add_refuses(case: Bad, kit: Kit, home: Path, tmp_path: Path) -> None:
    path = case.make(kit, tmp_path)
    result = run_meshdrop("--home", home, "trust", "add", "--yes", path, timeout=TIMEOUT)
    assert result.code != 0, f"accepted: {result!r}"
    assert_node_unchanged(kit, home, tmp_path)
    assert_one_line_error(result, case.reason, PUB_EXIT_CODES.get(case.reason))


@pytest.mark.parametrize("case", BAD_PUBS)
def test_verify_refuses_bad_trust_file(case: Bad, kit: Kit, tmp_path: Path) -> None:
    good = tmp_path / "good.mdrop"
    good.write_bytes(kit.victim)
    path = case.make(kit, tmp_path)
    result = run_meshdrop("verify", good, "--trust", path, timeout=TIMEOUT)
    assert_one_line_error(result, case.reason, PUB_EXIT_CODES.get(case.reason))


# --- inspect and get ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "code"),
    [
        pytest.param(Bad(flip(lambda r: 0), "wrong magic bytes"), 3, id="flipped"),
        pytest.param(
            Bad(file_of(lambda k: b"PK\x03\x04" + bytes(100)), "not a meshdrop bundle"),
            3,
            id="garbage",
        ),
        pytest.param(Bad(cut(lambda k: 0), "too short"), 3, id="empty"),
        pytest.param(Bad(cut(lambda k: 200), "truncated"), 3, id="truncated"),
        pytest.param(Bad(missing, "no such file"), 2, id="missing"),
        pytest.param(Bad(directory, "folder"), 2, id="folder"),
        pytest.param(Bad(fifo, "FIFO"), 2, id="fifo"),
        pytest.param(Bad(hand_made([("../x", b"x")]), "the one above it"), 3, id="path"),
        pytest.param(
            Bad(hand_made([("ab.txt", b"x"), ("a\u200cb.txt", b"y")]), "same file"),
            3,
            id="path-invisible-twins",
        ),
        pytest.param(Bad(hand_encoded(unsorted), "canonical"), 3, id="non-canonical"),
        pytest.param(
            Bad(flip(lambda r: r.manifest, 100), "signature does not verify"), 4, id="altered"
        ),
        pytest.param(
            Bad(cut(lambda k: len(k.victim) - 1), "1 bytes of data missing"), 3, id="short"
        ),
        pytest.param(Bad(file_of(lambda k: k.victim + b"\0"), "1 unexpected bytes"), 3, id="long"),
        pytest.param(
            Bad(
                file_of(
                    lambda k: build_signed_bundle(
                        k.folder,
                        b"\xdd" + struct.pack(">I", 1_650_000) + b"\x90" * 1_650_000,
                        b"",
                        signer_key=generate_private_key(),
                    )
                ),
                "claims more than 950013 items",
            ),
            3,
            id="own-key-signed-1650000-empty-arrays",
        ),
    ],
)
def test_inspect_refuses(case: Bad, code: int, kit: Kit, tmp_path: Path) -> None:
    path = case.make(kit, tmp_path)
    result = run_meshdrop("inspect", path, timeout=TIMEOUT)
    assert_one_line_error(result, case.reason, code)


def test_inspect_with_trust_refuses_altered_data(kit: Kit, tmp_path: Path) -> None:
    path = flip(lambda r: r.data)(kit, tmp_path)
    result = run_meshdrop("inspect", path, "--trust", kit.publisher.pub, timeout=TIMEOUT)
    assert_one_line_error(result, "does not match its signed hash", 5)
    assert "verified" not in result.out


def test_inspect_without_trust_shows_a_self_consistent_signature(kit: Kit, tmp_path: Path) -> None:
    path = hand_signed(real_key)(kit, tmp_path)  # signed by a key nobody delegated
    result = run_meshdrop("inspect", path, timeout=TIMEOUT)
    assert result.code == 0, result
    assert "UNVERIFIED" in result.out and "self-consistent" in result.out, result.out


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        pytest.param(["nope", "-o", "{tmp}/out"], "no stored bundle is named", id="no-bundle"),
        pytest.param(
            ["nope", "index.html", "-o", "{tmp}/o.html"], "no stored bundle", id="no-bundle-file"
        ),
        pytest.param(["keep", "nope.html", "-o", "{tmp}/o.html"], "has no file", id="no-file"),
        pytest.param(
            ["keep", "../index.html", "-o", "{tmp}/o.html"], "has no file", id="dotdot-file"
        ),
        pytest.param(["keep", "INDEX.HTML", "-o", "{tmp}/o.html"], "has no file", id="case-file"),
        pytest.param(["keep", "-o", "{tmp}/full"], "already exists", id="into-non-empty-folder"),
    ],
)
def test_get_refuses(args: list[str], reason: str, kit: Kit, home: Path, tmp_path: Path) -> None:
    write_tree(tmp_path / "full", {"mine.txt": b"do not touch"})
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = run_meshdrop("--home", home, "get", *argv, timeout=TIMEOUT)
    assert_one_line_error(result, reason, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (tmp_path / "full" / "mine.txt").read_bytes() == b"do not touch"
    assert_node_unchanged(kit, home, tmp_path)


# --- pack ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackCase:
    args: Callable[[Kit, Path], list[str | Path]]
    reason: str
    code: int | None = 2
    env: dict[str, str] = field(default_factory=dict)


def pack_args(
    kit: Kit,
    tmp: Path,
    *,
    src: Path | None = None,
    name: str = "news",
    extra: Sequence[str] = (),
    publisher: Path | None = None,
) -> list[str | Path]:
    if src is None:
        src = write_tree(tmp / "src", {"index.html": b"<p>fine</p>"})
    folder = publisher or kit.folder
    return [src, "--publisher", folder, "--name", name, "-o", tmp / "out.mdrop", *extra]


def src_with(files: Mapping[str, bytes]) -> Callable[[Kit, Path], list[str | Path]]:
    return lambda k, t: pack_args(k, t, src=write_tree(t / "src", dict(files)))


def src_with_special(kind: str) -> Callable[[Kit, Path], list[str | Path]]:
    def args(kit: Kit, tmp: Path) -> list[str | Path]:
        src = write_tree(tmp / "src", {"index.html": b"<p>fine</p>"})
        if kind == "symlink":
            (src / "link.html").symlink_to(src / "index.html")
        else:
            os.mkfifo(src / "pipe.html")
        return pack_args(kit, tmp, src=src)

    return args


def empty_src(kit: Kit, tmp: Path) -> list[str | Path]:
    (tmp / "src" / "sub").mkdir(parents=True)
    return pack_args(kit, tmp, src=tmp / "src")


def file_as_src(kit: Kit, tmp: Path) -> list[str | Path]:
    (tmp / "src.txt").write_bytes(b"a file")
    return pack_args(kit, tmp, src=tmp / "src.txt")


def output_inside_src(kit: Kit, tmp: Path) -> list[str | Path]:
    args = pack_args(kit, tmp)
    return [*args[:-1], tmp / "src" / "out.mdrop"]


PACK_CASES = [
    pytest.param(
        PackCase(lambda k, t: pack_args(k, t, name="News"), "bundle name 'News'"),
        id="name-upper-case",
    ),
    pytest.param(
        PackCase(lambda k, t: pack_args(k, t, name="news/x"), "bundle name 'news/x'"),
        id="name-slash",
    ),
    pytest.param(
        PackCase(lambda k, t: pack_args(k, t, name=""), "bundle name ''"), id="name-empty"
    ),
    pytest.param(
        PackCase(lambda k, t: pack_args(k, t, extra=["--expires", "next week"]), "is not a date"),
        id="expires-not-a-date",
    ),
    pytest.param(
        PackCase(lambda k, t: pack_args(k, t, extra=["--expires", "2001-02-30"]), "is not a date"),
        id="expires-impossible-date",
    ),
    pytest.param(
        PackCase(lambda k, t: pack_args(k, t, extra=["--expires", "2001-01-01"]), "must be after"),
        id="expires-before-created",
    ),
    pytest.param(
        PackCase(
            lambda k, t: pack_args(k, t, extra=["--language", "Korean!"]), "not a language code"
        ),
        id="bad-language",
    ),
    pytest.param(
        PackCase(lambda k, t: pack_args(k, t, src=t / "nowhere"), "does not exist"),
        id="missing-source",
    ),
    pytest.param(PackCase(file_as_src, "is not a folder"), id="source-is-a-file"),
    pytest.param(PackCase(empty_src, "nothing to pack"), id="empty-source"),
    pytest.param(
        PackCase(src_with({"con.txt": b"x"}), "reserves for a device", None),
        id="source-device-name",
    ),
    pytest.param(PackCase(src_with({"a:b": b"x"}), "drive", None), id="source-colon-drive-like"),
    pytest.param(PackCase(src_with({"ab:c": b"x"}), "':'", None), id="source-colon"),
    pytest.param(
        PackCase(src_with({"A.txt": b"x", "a.txt": b"y"}), "same file", None),
        id="source-case-twins",
    ),
    pytest.param(
        PackCase(src_with({"a.": b"x"}), "ends with a dot", None), id="source-trailing-dot"
    ),
    pytest.param(PackCase(src_with_special("symlink"), "symlink"), id="source-symlink"),
    pytest.param(PackCase(src_with_special("fifo"), "named pipe"), id="source-fifo"),
    pytest.param(
        PackCase(output_inside_src, "inside the folder being packed"), id="output-inside-source"
    ),
    pytest.param(
        PackCase(lambda k, t: pack_args(k, t, publisher=t / "nobody"), "no publisher folder"),
        id="publisher-missing",
    ),
    pytest.param(
        PackCase(
            lambda k, t: pack_args(k, t, publisher=k.locked.folder),
            "wrong passphrase",
            8,
            {"MESHDROP_PASSPHRASE": "wrong"},
        ),
        id="wrong-passphrase",
    ),
    pytest.param(
        PackCase(
            lambda k, t: pack_args(k, t, publisher=k.locked.folder), "passphrase is needed", 8
        ),
        id="no-passphrase",
    ),
]


@pytest.mark.parametrize("case", PACK_CASES)
def test_pack_refuses(case: PackCase, kit: Kit, tmp_path: Path) -> None:
    args = case.args(kit, tmp_path)
    result = run_meshdrop("pack", *args, "--quiet", env=case.env, timeout=TIMEOUT)
    assert_one_line_error(result, case.reason, case.code)
    output = Path(args[args.index("-o") + 1])
    assert not output.exists()
    assert not [p for p in output.parent.iterdir() if p.name.startswith(".tmp-")]


def test_pack_works_with_the_right_passphrase(kit: Kit, tmp_path: Path) -> None:
    """The control for the passphrase cases: the locked publisher does pack."""
    args = pack_args(kit, tmp_path, publisher=kit.locked.folder)
    result = run_meshdrop(
        "pack", *args, "--quiet", env={"MESHDROP_PASSPHRASE": "right horse battery"}
    )
    assert result.code == 0, result
