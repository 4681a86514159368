import errno
import hashlib
import itertools
import mimetypes
import os
import random
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from meshdrop.core.bundle import HEADER_SIZE, parse_envelope, parse_header
from meshdrop.core.keys import generate_private_key, key_id
from meshdrop.core.manifest import CHUNK_SIZE, MEDIA_TYPE, Manifest
from meshdrop.core.verify import VerifiedManifest, verify_envelope
from meshdrop.errors import (
    FormatError,
    PassphraseError,
    SignatureError,
    StoreError,
    TrustError,
    UnsafePathError,
    UsageError,
)
from meshdrop.publish import keyfile, pack, scan
from meshdrop.publish.keyfile import KEY_MAGIC
from meshdrop.publish.keystore import (
    DAY,
    PUBLISHER_FILE,
    PublisherFolder,
    create_publisher,
    load_publisher,
)
from meshdrop.publish.pack import pack_folder
from meshdrop.publish.scan import media_type_for, scan_folder

NOW = 1_750_000_000
PASSPHRASE = "고양이 on the roof".encode()


def never_asked(what: str) -> bytes | None:
    raise AssertionError(f"asked for a passphrase for {what}")


def answer(passphrase: bytes | None) -> Callable[[str], bytes | None]:
    return lambda what: passphrase


@pytest.fixture
def publisher_folder(tmp_path: Path) -> PublisherFolder:
    create_publisher(tmp_path / "publisher", "뉴스 Newsroom", None, NOW)
    return load_publisher(tmp_path / "publisher")


@pytest.fixture
def src(tmp_path: Path) -> Path:
    rng = random.Random(7)
    folder = tmp_path / "src"
    files = {
        "기사.md": "# 안녕하세요\n".encode(),
        "empty.txt": b"",
        "media/exact.bin": rng.randbytes(CHUNK_SIZE),
        "media/plus-one.opus": rng.randbytes(CHUNK_SIZE + 1),
        "a/b/c/deep.html": b"<p>deep</p>",
    }
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return folder


def pack_with(
    publisher: PublisherFolder, src: Path, out: Path, created: int = NOW, **options: Any
) -> Manifest:
    key, _ = publisher.load_signer(never_asked, created)
    settings: dict[str, Any] = {
        "name": "news",
        "version": 3,
        "created": created,
        "expires": None,
        "title": "오늘의 뉴스",
        "description": "test bundle",
        "language": "ko",
        "priority": 0,
    }
    settings.update(options)
    return pack_folder(
        src,
        out,
        signing_key=key,
        state=publisher.state,
        **settings,
    )


def verify_bundle(path: Path, publisher: PublisherFolder) -> VerifiedManifest:
    """Check a bundle as a receiving node would, including every chunk of its data."""
    data = path.read_bytes()
    length = parse_header(data[:HEADER_SIZE], path.name)
    envelope = parse_envelope(data[HEADER_SIZE : HEADER_SIZE + length], path.name)
    verified = verify_envelope(envelope, {publisher.state.publisher: publisher.state}, NOW)
    offset = HEADER_SIZE + length
    for entry in verified.manifest.files:
        for expected, size in zip(entry.chunks, entry.chunk_sizes(), strict=True):
            assert hashlib.sha256(data[offset : offset + size]).digest() == expected
            offset += size
    assert offset == len(data)
    return verified


# --- the publisher folder ---------------------------------------------------------------


def test_create_then_load_round_trip(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "publisher"
    record = create_publisher(folder, "뉴스 Newsroom", None, NOW, signer_valid_days=30)
    loaded = load_publisher(folder)
    assert loaded.current == record
    assert loaded.folder == folder
    assert len(loaded.records) == 1
    assert (record.name, record.version, record.created, record.threshold) == (
        "뉴스 Newsroom",
        1,
        NOW,
        1,
    )
    (signer,) = record.signers
    assert (signer.not_before, signer.expires, signer.scope) == (NOW - DAY, NOW + 30 * DAY, ("*",))
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(
        [PUBLISHER_FILE, f"root-{key_id(record.roots[0])}.key", f"signer-{signer.id}.key"]
    )
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for key_file in folder.glob("*.key"):
        assert stat.S_IMODE(key_file.stat().st_mode) & 0o077 == 0
    assert stat.S_IMODE((folder / PUBLISHER_FILE).stat().st_mode) & 0o444 == 0o444 & ~_umask()
    key, chosen = loaded.load_signer(never_asked, NOW)
    assert chosen == signer
    assert key.public_key().public_bytes_raw() == signer.key


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_existing_empty_folder_is_used(tmp_path: Path) -> None:
    (tmp_path / "pub").mkdir(mode=0o755)
    create_publisher(tmp_path / "pub", "NGO", None, NOW)
    assert stat.S_IMODE((tmp_path / "pub").stat().st_mode) == 0o700
    assert load_publisher(tmp_path / "pub").current.name == "NGO"


def test_refuses_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "pub").mkdir()
    (tmp_path / "pub" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty"):
        create_publisher(tmp_path / "pub", "NGO", None, NOW)
    assert [p.name for p in (tmp_path / "pub").iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    "name",
    ["", " ", "x" * 101, "line\nbreak", "tab\there", "\u202eevil", "a\u2028b", "bad\ud800"],
    ids=["empty", "blank", "too_long", "newline", "tab", "bidi", "line_sep", "surrogate"],
)
def test_refuses_bad_publisher_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(UsageError, match="publisher name"):
        create_publisher(tmp_path / "pub", name, None, NOW)
    assert not (tmp_path / "pub").exists()


def test_refuses_empty_passphrase(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="passphrase"):
        create_publisher(tmp_path / "pub", "NGO", b"", NOW)


def test_encrypted_key_needs_the_right_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyfile, "SCRYPT_N", 2**14)  # cheap sealing; strength is tested apart
    create_publisher(tmp_path / "pub", "NGO", PASSPHRASE, NOW)
    loaded = load_publisher(tmp_path / "pub")
    asked: list[str] = []

    def provider(what: str) -> bytes:
        asked.append(what)
        return PASSPHRASE

    key, signer = loaded.load_signer(provider, NOW)
    assert key.public_key().public_bytes_raw() == signer.key
    assert asked == [str(loaded.signer_path(signer))]
    with pytest.raises(PassphraseError, match=r"^wrong passphrase for .*signer-"):
        loaded.load_signer(answer(b"not it"), NOW)
    with pytest.raises(PassphraseError, match="no passphrase"):
        loaded.load_signer(answer(None), NOW)
    sealed = loaded.signer_path(signer).read_bytes()
    assert sealed.startswith(KEY_MAGIC) and key.private_bytes_raw() not in sealed


def test_unencrypted_key_loads_without_asking(publisher_folder: PublisherFolder) -> None:
    key, signer = publisher_folder.load_signer(never_asked, NOW)
    assert key.public_key().public_bytes_raw() == signer.key


def test_load_refuses_what_is_not_a_publisher_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no publisher folder"):
        load_publisher(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(UsageError, match="not a publisher folder"):
        load_publisher(tmp_path / "plain")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a publisher folder"):
        load_publisher(tmp_path / "file")


def test_load_refuses_damaged_publisher_file(publisher_folder: PublisherFolder) -> None:
    path = publisher_folder.folder / PUBLISHER_FILE
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(SignatureError, match="root signature"):
        load_publisher(publisher_folder.folder)


@pytest.mark.parametrize("passphrase", [None, PASSPHRASE], ids=["plain", "encrypted"])
@pytest.mark.parametrize(
    "damage",
    [
        lambda data: b"",
        lambda data: b"-----BEGIN PRIVATE KEY-----\n" + data[8:],
        lambda data: data[:-1],
        lambda data: data[:40] + bytes([data[40] ^ 1]) + data[41:],
        lambda data: data[:-5] + bytes([data[-5] ^ 0x10]) + data[-4:],
        lambda data: data + b"\n",
    ],
    ids=["empty", "magic", "truncated", "header_byte", "sealed_byte", "trailing"],
)
def test_damaged_key_file_is_a_format_error(
    tmp_path: Path,
    passphrase: bytes | None,
    damage: Callable[[bytes], bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(keyfile, "SCRYPT_N", 2**14)  # cheap sealing; strength is tested apart
    create_publisher(tmp_path / "pub", "NGO", passphrase, NOW)
    loaded = load_publisher(tmp_path / "pub")
    path = loaded.signer_path(loaded.current.signers[0])
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(FormatError, match="damaged"):
        loaded.load_signer(answer(passphrase), NOW)


def test_key_file_holding_another_key_is_refused(publisher_folder: PublisherFolder) -> None:
    signer_path = publisher_folder.signer_path(publisher_folder.current.signers[0])
    (root_file,) = publisher_folder.folder.glob("root-*.key")
    signer_path.write_bytes(root_file.read_bytes())
    with pytest.raises(FormatError, match="another key"):
        publisher_folder.load_signer(never_asked, NOW)


def test_signer_chosen_by_key_id_prefix(publisher_folder: PublisherFolder) -> None:
    signer = publisher_folder.current.signers[0]
    _, chosen = publisher_folder.load_signer(never_asked, NOW, key_id=signer.id[:6].upper())
    assert chosen == signer
    with pytest.raises(UsageError, match="no signing key"):
        publisher_folder.load_signer(never_asked, NOW, key_id="zz")


def test_expired_signing_key_is_a_trust_error(tmp_path: Path) -> None:
    create_publisher(tmp_path / "pub", "NGO", None, NOW, signer_valid_days=10)
    loaded = load_publisher(tmp_path / "pub")
    later = NOW + 11 * DAY
    with pytest.raises(TrustError, match="expired on 2025-06-25"):
        loaded.load_signer(never_asked, later)
    with pytest.raises(TrustError, match="valid only from"):
        loaded.load_signer(never_asked, later, key_id=loaded.current.signers[0].id)
    with pytest.raises(TrustError, match="valid yet"):
        loaded.load_signer(never_asked, NOW - 2 * DAY)


def test_missing_signing_key_file_is_a_trust_error(publisher_folder: PublisherFolder) -> None:
    publisher_folder.signer_path(publisher_folder.current.signers[0]).unlink()
    with pytest.raises(TrustError, match="no signing key"):
        publisher_folder.load_signer(never_asked, NOW)


# --- packing ----------------------------------------------------------------------------


def test_pack_verifies_with_every_chunk(
    publisher_folder: PublisherFolder, src: Path, tmp_path: Path
) -> None:
    out = tmp_path / "news.mdrop"
    seen: list[int] = []
    manifest = pack_with(publisher_folder, src, out, progress=seen.append)
    verified = verify_bundle(out, publisher_folder)
    assert verified.manifest == manifest
    assert [(f.path, f.size, f.media_type, len(f.chunks)) for f in manifest.files] == [
        ("a/b/c/deep.html", 11, "text/html", 1),
        ("empty.txt", 0, "text/plain", 0),
        ("media/exact.bin", CHUNK_SIZE, "application/octet-stream", 1),
        ("media/plus-one.opus", CHUNK_SIZE + 1, "audio/opus", 2),
        ("기사.md", len("# 안녕하세요\n".encode()), "text/markdown", 1),
    ]
    assert (manifest.name, manifest.version, manifest.title, manifest.language) == (
        "news",
        3,
        "오늘의 뉴스",
        "ko",
    )
    assert sum(seen) == manifest.size
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_same_inputs_give_identical_bytes(
    publisher_folder: PublisherFolder, src: Path, tmp_path: Path
) -> None:
    pack_with(publisher_folder, src, tmp_path / "one.mdrop", expires=NOW + 30 * DAY)
    pack_with(publisher_folder, src, tmp_path / "two.mdrop", expires=NOW + 30 * DAY)
    assert (tmp_path / "one.mdrop").read_bytes() == (tmp_path / "two.mdrop").read_bytes()
    pack_with(
        publisher_folder, src, tmp_path / "three.mdrop", created=NOW + 1, expires=NOW + 30 * DAY
    )
    assert (tmp_path / "one.mdrop").read_bytes() != (tmp_path / "three.mdrop").read_bytes()


def test_worker_count_does_not_change_the_bytes(
    publisher_folder: PublisherFolder, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pack_with(publisher_folder, src, tmp_path / "many.mdrop")
    monkeypatch.setattr(pack, "_worker_count", lambda: 1)
    pack_with(publisher_folder, src, tmp_path / "one.mdrop")
    assert (tmp_path / "many.mdrop").read_bytes() == (tmp_path / "one.mdrop").read_bytes()


def test_pack_replaces_an_existing_bundle(
    publisher_folder: PublisherFolder, src: Path, tmp_path: Path
) -> None:
    out = tmp_path / "news.mdrop"
    out.write_bytes(b"old")
    pack_with(publisher_folder, src, out)
    verify_bundle(out, publisher_folder)


def test_decomposed_names_are_packed_in_nfc(
    publisher_folder: PublisherFolder, tmp_path: Path
) -> None:
    src = tmp_path / "mac"
    src.mkdir()
    (src / "\u1100\u1161.txt").write_bytes(b"ga")  # how macOS spells "가.txt"
    manifest = pack_with(publisher_folder, src, tmp_path / "mac.mdrop")
    assert [f.path for f in manifest.files] == ["\uac00.txt"]
    verify_bundle(tmp_path / "mac.mdrop", publisher_folder)


def test_scan_refuses_symlink(src: Path) -> None:
    (src / "media" / "link.txt").symlink_to(src / "empty.txt")
    with pytest.raises(UsageError, match=r"^refusing to pack a symlink: media/link\.txt$"):
        scan_folder(src)


def test_scan_refuses_symlink_to_folder(src: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "secret.txt").write_text("x")
    (src / "outside").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UsageError, match=r"symlink: outside$"):
        scan_folder(src)


def test_scan_refuses_fifo(src: Path) -> None:
    os.mkfifo(src / "a" / "pipe")
    with pytest.raises(UsageError, match=r"^refusing to pack a named pipe \(FIFO\): a/pipe$"):
        scan_folder(src)


@pytest.mark.parametrize("name", ["con.txt", "a:b", "trailing.", "Empty.TXT"])
def test_pack_refuses_unsafe_names(
    publisher_folder: PublisherFolder, src: Path, tmp_path: Path, name: str
) -> None:
    (src / name).write_bytes(b"x")
    with pytest.raises(UnsafePathError):
        pack_with(publisher_folder, src, tmp_path / "news.mdrop")
    assert not (tmp_path / "news.mdrop").exists()


@pytest.mark.parametrize("where", ["news.mdrop", "a/b/news.mdrop", "."])
def test_pack_refuses_output_inside_source(
    publisher_folder: PublisherFolder, src: Path, where: str
) -> None:
    with pytest.raises(UsageError, match="inside the folder being packed"):
        pack_with(publisher_folder, src, src / where)
    assert not (src / "news.mdrop").exists()


def test_pack_refuses_missing_or_empty_source(
    publisher_folder: PublisherFolder, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        pack_with(publisher_folder, tmp_path / "nowhere", tmp_path / "x.mdrop")
    (tmp_path / "hollow" / "sub").mkdir(parents=True)
    with pytest.raises(UsageError, match=r"^nothing to pack: .*hollow has no files$"):
        pack_with(publisher_folder, tmp_path / "hollow", tmp_path / "x.mdrop")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("name", "News!", "bundle name"),
        ("version", 0, "version"),
        ("expires", NOW, "expire after"),
        ("title", "t" * 201, "title"),
        ("language", "korean!", "language code"),
        ("priority", 5000, "priority"),
    ],
)
def test_pack_refuses_bad_options(
    publisher_folder: PublisherFolder,
    src: Path,
    tmp_path: Path,
    option: str,
    value: Any,
    message: str,
) -> None:
    with pytest.raises(UsageError, match=message):
        pack_with(publisher_folder, src, tmp_path / "x.mdrop", **{option: value})


def test_pack_refuses_key_the_publisher_did_not_delegate(
    publisher_folder: PublisherFolder, src: Path, tmp_path: Path
) -> None:
    with pytest.raises(TrustError, match="has not delegated"):
        pack_folder(
            src,
            tmp_path / "x.mdrop",
            signing_key=generate_private_key(),
            state=publisher_folder.state,
            name="news",
            version=1,
            created=NOW,
            expires=None,
            title="",
            description="",
            language="en",
            priority=0,
        )


def test_pack_refuses_key_expired_when_created(
    publisher_folder: PublisherFolder, src: Path, tmp_path: Path
) -> None:
    key, signer = publisher_folder.load_signer(never_asked, NOW)
    with pytest.raises(TrustError, match="was not valid on"):
        pack_folder(
            src,
            tmp_path / "x.mdrop",
            signing_key=key,
            state=publisher_folder.state,
            name="news",
            version=1,
            created=signer.expires + 1,
            expires=None,
            title="",
            description="",
            language="en",
            priority=0,
        )


@pytest.mark.parametrize("during", ["reading", "after-reading"])
def test_file_changed_while_packing_is_refused(
    publisher_folder: PublisherFolder,
    src: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    during: str,
) -> None:
    # One worker holds at most 4 chunks, so progress starts before the last file is read.
    monkeypatch.setattr(pack, "_worker_count", lambda: 1)
    total = sum(f.size for f in scan_folder(src))
    done = 0
    victim = src / "기사.md"  # last in bundle order, so touched before it is read

    def progress(n: int) -> None:
        nonlocal done
        done += n
        if (during == "reading" or done == total) and victim.stat().st_size < 100:
            with victim.open("ab") as handle:
                handle.write(b"late edit")

    out = tmp_path / "news.mdrop"
    with pytest.raises(UsageError, match=r"^기사\.md changed while packing; try again$"):
        pack_with(publisher_folder, src, out, progress=progress)
    assert (done < total) == (during == "reading")
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_file_replaced_after_reading_is_refused(
    publisher_folder: PublisherFolder, src: Path, tmp_path: Path
) -> None:
    total = sum(f.size for f in scan_folder(src))
    done = 0
    victim = src / "media" / "exact.bin"

    def progress(n: int) -> None:
        nonlocal done
        done += n
        if done == total:  # every byte read and written; the envelope is not yet
            victim.unlink()
            victim.symlink_to(src / "empty.txt")

    with pytest.raises(UsageError, match=r"^media/exact\.bin changed while packing"):
        pack_with(publisher_folder, src, tmp_path / "news.mdrop", progress=progress)
    assert list(tmp_path.glob("*.mdrop")) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_every_source_byte_is_read_once(
    publisher_folder: PublisherFolder, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[tuple[str, int, int]] = []  # appended to from the pool's threads
    real_read, real_read_chunk = pack._read, pack._read_chunk

    def counting_read(fd: int, size: int, offset: int, source: scan.SourceFile) -> bytes:
        data = real_read(fd, size, offset, source)
        read.append((source.path, offset, len(data)))
        return data

    def counting_read_chunk(fd: int, size: int, offset: int, source: scan.SourceFile) -> memoryview:
        data = real_read_chunk(fd, size, offset, source)
        read.append((source.path, offset, len(data)))
        return data

    monkeypatch.setattr(pack, "_read", counting_read)
    monkeypatch.setattr(pack, "_read_chunk", counting_read_chunk)
    manifest = pack_with(publisher_folder, src, tmp_path / "news.mdrop")
    assert sum(n for _, _, n in read) == manifest.size
    places = [(path, offset) for path, offset, n in read if n]
    assert len(set(places)) == len(places)
    verify_bundle(tmp_path / "news.mdrop", publisher_folder)


def test_written_data_is_handed_to_the_disk_as_packing_goes(
    publisher_folder: PublisherFolder, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pack_with(publisher_folder, src, tmp_path / "plain.mdrop")
    hints: list[tuple[int, int]] = []
    monkeypatch.setattr(pack, "WRITEBACK_STEP", CHUNK_SIZE)
    monkeypatch.setattr(pack, "start_writeback", lambda fd, at, n: hints.append((at, n)))
    pack_with(publisher_folder, src, tmp_path / "hinted.mdrop")
    data = (tmp_path / "hinted.mdrop").read_bytes()
    assert data == (tmp_path / "plain.mdrop").read_bytes()
    data_start = HEADER_SIZE + parse_header(data[:HEADER_SIZE], "hinted")
    assert hints and hints[0][0] == data_start
    for (at, n), (next_at, _) in itertools.pairwise(hints):
        assert n >= CHUNK_SIZE and at + n == next_at  # in order, no gap, no overlap
    assert hints[-1][0] + hints[-1][1] <= len(data)


def test_pack_of_empty_files_only(publisher_folder: PublisherFolder, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_bytes(b"")
    (tmp_path / "src" / "b.txt").write_bytes(b"")
    manifest = pack_with(publisher_folder, tmp_path / "src", tmp_path / "news.mdrop")
    assert [(f.path, f.size, f.chunks) for f in manifest.files] == [
        ("a.txt", 0, ()),
        ("b.txt", 0, ()),
    ]
    verify_bundle(tmp_path / "news.mdrop", publisher_folder)


def test_write_error_removes_the_temp_file(
    publisher_folder: PublisherFolder, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "news.mdrop"
    out.write_bytes(b"old")
    writes = 0
    real_pwrite = os.pwrite

    def full_disk(fd: int, data: Any, offset: int) -> int:
        nonlocal writes
        writes += 1
        if writes == 3:  # a data chunk, in a worker thread, while others are in flight
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(pack.os, "pwrite", full_disk)
    with pytest.raises(StoreError, match="disk is full"):
        pack_with(publisher_folder, src, out)
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_envelope_of_unexpected_length_is_an_internal_error(
    publisher_folder: PublisherFolder, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pack, "sign", lambda key, domain, message: bytes(63))
    with pytest.raises(AssertionError, match=r"bytes long, not the \d+ bytes reserved"):
        pack_with(publisher_folder, src, tmp_path / "news.mdrop")
    assert [p.name for p in tmp_path.iterdir() if p.name != "publisher"] == ["src"]


# --- media types ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("notes.md", "text/markdown"),
        ("a/B.MARKDOWN", "text/markdown"),
        ("talk.opus", "audio/opus"),
        ("talk.ogg", "audio/ogg"),
        ("talk.oga", "audio/ogg"),
        ("clip.webm", "video/webm"),
        ("pic.webp", "image/webp"),
        ("song.m4a", "audio/mp4"),
        ("film.MP4", "video/mp4"),
        ("book.epub", "application/epub+zip"),
        ("data.json", "application/json"),
        ("read.txt", "text/plain"),
        ("index.html", "text/html"),
        ("index.htm", "text/html"),
        ("logo.svg", "image/svg+xml"),
        ("font.woff2", "font/woff2"),
        ("photo.jpg", "image/jpeg"),
        ("doc.pdf", "application/pdf"),
        ("archive.tar.gz", "application/gzip"),
        ("README", "application/octet-stream"),
        (".profile", "application/octet-stream"),
        ("dir.d/file", "application/octet-stream"),
        ("x.unknownext", "application/octet-stream"),
    ],
)
def test_media_type_for(path: str, expected: str) -> None:
    assert media_type_for(path) == expected
    assert MEDIA_TYPE.fullmatch(media_type_for(path))


def test_media_types_ignore_the_machines_mime_files(tmp_path: Path) -> None:
    extra = tmp_path / "mime.types"
    extra.write_text("application/x-meshdrop-test mdtest\ntext/x-not-json json\n")
    scan._builtin_media_types.cache_clear()
    try:
        mimetypes.init([str(extra)])
        assert mimetypes.guess_type("a.mdtest")[0] == "application/x-meshdrop-test"
        assert media_type_for("a.mdtest") == "application/octet-stream"
        assert media_type_for("a.json") == "application/json"
    finally:
        mimetypes.init()
        scan._builtin_media_types.cache_clear()
