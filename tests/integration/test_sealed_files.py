"""A sealed home's small files (issue 19): circles, drops and their records, the reader's
key and HTTPS certificate, node.json. Per kind of file: the bytes on disk hold nothing
that names the owner's circles, reports or the program and do not parse as the plain
format; a flipped byte or a file of another kind copied over one is refused, cleanly,
and the rest keeps working."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from dropkit import drop_id, make_drop
from lankit import NodeProc

from conftest import command_env, meshdrop_executable, run_meshdrop
from meshdrop.core.circles import CircleSecret
from meshdrop.errors import CircleFileError, SealedFileError
from meshdrop.reader import readerids, tlscert
from meshdrop.store import homefiles, sealing
from meshdrop.store.circles import CircleStore, encode_circle
from meshdrop.store.drops import DropStore
from meshdrop.store.homefiles import FileCodec
from meshdrop.store.homeseal import seal_home_files

PASSPHRASE = "a sealed store passphrase for tests"
SEALED_ENV = {"MESHDROP_TEST_FAST_KDF": "1", "MESHDROP_STORE_PASSPHRASE": PASSPHRASE}
CIRCLE_NAME = "Dorm Four night shift"
NOW = int(time.time())
PROGRAM_NAMES = (b"meshdrop", b"mdrop")
FINGERPRINT_LINE = re.compile(r"certificate fingerprint \(SHA-256\): ([0-9A-F ]{79})$")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A new sealed home, unlocked in this process."""
    monkeypatch.setenv("MESHDROP_TEST_FAST_KDF", "1")
    folder = tmp_path / "home"
    sealing.create_sealed(folder, PASSPHRASE)
    yield folder
    sealing.forget(folder)


def flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def assert_names_nothing(data: bytes, *needles: bytes) -> None:
    for needle in (*PROGRAM_NAMES, *needles):
        assert needle.lower() not in data.lower(), needle


def drop_files(home: Path) -> list[Path]:
    return sorted(p for p in (home / "drops").iterdir() if len(p.name) == 64)


# Circles


def test_sealed_circle_file_holds_no_name_or_secret_and_loads_back(home: Path) -> None:
    secret = CircleSecret.generate()
    circle = CircleStore(home).add(CIRCLE_NAME, secret, NOW)
    (path,) = CircleStore(home).file_names()
    data = path.read_bytes()
    assert_names_nothing(data, CIRCLE_NAME.encode(), secret.raw, secret.raw.hex().encode())
    assert b'"generations"' not in data and not data.startswith(b"{")
    assert len(data) == len(encode_circle(circle)) + homefiles.OVERHEAD
    (stored,) = CircleStore(home).load().circles
    assert stored.circle == circle


def test_sealed_circle_file_flipped_byte_is_reported_and_the_other_circles_load(
    home: Path,
) -> None:
    store = CircleStore(home)
    store.add("first", CircleSecret.generate(), NOW)
    second = store.add("second", CircleSecret.generate(), NOW)
    damaged = store.load().find("first").path
    flip(damaged, 40)
    before = damaged.read_bytes()
    book = CircleStore(home).load()
    assert [s.circle for s in book.circles] == [second]
    (error,) = book.damaged
    assert isinstance(error, CircleFileError)
    assert str(damaged) in str(error) and "\n" not in str(error)
    assert "does not open with this store's key" in str(error)
    assert damaged.read_bytes() == before  # left as it was


def test_sealed_circle_file_of_another_kind_is_refused(home: Path) -> None:
    CircleStore(home).add(CIRCLE_NAME, CircleSecret.generate(), NOW)
    (path,) = CircleStore(home).file_names()
    readerids.reader_key(home)
    path.write_bytes((home / readerids.KEY_FILE).read_bytes())  # sealed, but as the reader key
    book = CircleStore(home).load()
    assert book.circles == () and len(book.damaged) == 1


def test_sealed_circle_of_another_store_is_refused(home: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    sealing.create_sealed(other, PASSPHRASE)
    CircleStore(other).add(CIRCLE_NAME, CircleSecret.generate(), NOW)
    (foreign,) = CircleStore(other).file_names()
    (home / "circles").mkdir()
    (home / "circles" / foreign.name).write_bytes(foreign.read_bytes())
    book = CircleStore(home).load()
    assert book.circles == () and len(book.damaged) == 1
    sealing.forget(other)


def test_circle_commands_on_a_sealed_store_need_its_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    made = run_meshdrop("--home", home, "seal", env=SEALED_ENV)
    assert made.code == 0, made.err
    new = run_meshdrop("--home", home, "circle", "new", CIRCLE_NAME, env=SEALED_ENV)
    assert new.code == 0, new.err
    listed = run_meshdrop("--home", home, "circle", "ls", env=SEALED_ENV)
    assert listed.code == 0 and CIRCLE_NAME in listed.out, listed.err
    locked = run_meshdrop("--home", home, "circle", "ls", env={"MESHDROP_TEST_FAST_KDF": "1"})
    assert locked.code == 10, locked
    assert "locked" in locked.err and len(locked.err.strip().splitlines()) == 1
    assert "Traceback" not in locked.err and CIRCLE_NAME not in locked.out + locked.err
    for path in (home / "circles").iterdir():
        assert_names_nothing(path.read_bytes(), CIRCLE_NAME.encode())


# Drops and their records


def test_sealed_drops_are_named_by_a_keyed_id_and_hold_no_drop_bytes(home: Path) -> None:
    blob = make_drop()
    ident = drop_id(blob)
    stored = DropStore(home).add(blob, NOW)
    assert stored is not None and stored.size == len(blob)
    (path,) = drop_files(home)
    assert path.name != ident.hex()
    data = path.read_bytes()
    assert_names_nothing(data, ident, ident.hex().encode(), blob[:9], blob[100:132], blob[-32:])
    store = DropStore(home)
    assert store.held() == [stored]
    assert store.read(ident) == blob


def test_one_drop_has_different_file_names_in_two_sealed_stores(home: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    sealing.create_sealed(other, PASSPHRASE)
    blob = make_drop()
    DropStore(home).add(blob, NOW)
    DropStore(other).add(blob, NOW)
    assert drop_files(home)[0].name != drop_files(other)[0].name
    sealing.forget(other)


@pytest.mark.parametrize("where", ["head", "body"])
def test_sealed_drop_flipped_byte_is_never_served_and_the_other_drops_are(
    home: Path, where: str
) -> None:
    damaged, intact = make_drop("first"), make_drop("second")
    store = DropStore(home)
    store.add(damaged, NOW)
    store.add(intact, NOW)
    path = store._path(drop_id(damaged))
    flip(path, 20 if where == "head" else path.stat().st_size // 2)
    again = DropStore(home)
    assert again.read(drop_id(damaged)) is None
    assert again.read(drop_id(intact)) == intact
    held = {d.drop_id for d in again.held()}
    assert drop_id(intact) in held
    assert (drop_id(damaged) in held) == (where == "body")  # a damaged head is not listed
    assert path.exists()  # left as it is


def test_sealed_drop_copied_over_another_is_refused(home: Path) -> None:
    first, second = make_drop("first"), make_drop("second")
    store = DropStore(home)
    store.add(first, NOW)
    store.add(second, NOW)
    first_path = store._path(drop_id(first))
    second_path = store._path(drop_id(second))
    second_path.write_bytes(first_path.read_bytes())
    again = DropStore(home)
    assert [d.drop_id for d in again.held()] == [drop_id(first)]
    assert again.read(drop_id(second)) is None
    assert again.read(drop_id(first)) == first


def test_sealed_drop_records_hold_no_ids_or_codes_and_still_answer(home: Path) -> None:
    acked, waiting = make_drop("acked"), make_drop("waiting")
    store = DropStore(home)
    store.add(acked, NOW)
    store.add(waiting, NOW)
    store.note_receipt("ACKED234", drop_id(acked))
    store.note_receipt("WAITING2", drop_id(waiting))
    assert store.remove([drop_id(acked)]) == 1
    again = DropStore(home)
    assert again.receipt_state("ACKED234") == "delivered"
    assert again.receipt_state("WAITING2") == "waiting"
    assert again.receipt_state("NEVERSEEN") == "unknown"
    assert again.add(acked, NOW) is None  # acknowledged: never stored again
    folder = home / "drops"
    for name in ("acked", "receipts", "receipts.key"):
        data = (folder / name).read_bytes()
        assert_names_nothing(
            data, drop_id(acked), drop_id(waiting), b"ACKED234", drop_id(acked).hex().encode()
        )
    assert len((folder / "acked").read_bytes()) == 32 + homefiles.OVERHEAD
    assert len((folder / "receipts.key").read_bytes()) == 32 + homefiles.OVERHEAD


def test_sealed_drop_record_of_another_kind_or_flipped_counts_as_empty(home: Path) -> None:
    blob = make_drop()
    store = DropStore(home)
    store.add(blob, NOW)
    store.note_receipt("CODE2345", drop_id(blob))
    store.remove([drop_id(blob)])
    folder = home / "drops"
    assert DropStore(home).receipt_state("CODE2345") == "delivered"
    (folder / "receipts").write_bytes((folder / "acked").read_bytes())  # acked as receipts
    assert DropStore(home).receipt_state("CODE2345") == "unknown"
    assert DropStore(home).add(blob, NOW) is None  # the acked list itself still holds
    flip(folder / "acked", 30)
    stored = DropStore(home).add(blob, NOW)  # its record is gone: the drop is held again
    assert stored is not None and DropStore(home).read(drop_id(blob)) == blob


def test_report_written_into_a_sealed_store_leaves_no_plain_drop_or_receipt(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    publisher = tmp_path / "pub"
    made = run_meshdrop(
        "publisher", "new", publisher, "--name", "Inbox News", "--unencrypted", "--json"
    )
    fingerprint = json.loads(made.out)["fingerprint"]
    run_meshdrop("--home", home, "seal", env=SEALED_ENV, check=True)
    trust = ("--home", home, "trust", "add", "--yes", publisher / "publisher.pub")
    run_meshdrop(*trust, env=SEALED_ENV, check=True)
    run_meshdrop(
        "--home", home, "import", publisher / "report-keys.mdrop", env=SEALED_ENV, check=True
    )
    written = run_meshdrop(
        "--home", home, "report", "write", "--to", fingerprint, "--text", "wages unpaid",
        "--json", env=SEALED_ENV,
    )  # fmt: skip
    assert written.code == 0, written.err
    result = json.loads(written.out)
    ident = bytes.fromhex(result["drop_id"])
    (path,) = drop_files(home)
    assert path.name != ident.hex()
    for file in (home / "drops").iterdir():
        assert_names_nothing(
            file.read_bytes(), ident, result["receipt"].encode(), b"Inbox News",
            fingerprint.encode(), fingerprint.replace("-", "").encode(),
        )  # fmt: skip


# The reader's key


def test_sealed_reader_key_is_sealed_and_stays_the_same(home: Path) -> None:
    key = readerids.reader_key(home)
    data = (home / readerids.KEY_FILE).read_bytes()
    assert len(data) == readerids.KEY_BYTES + homefiles.OVERHEAD and key not in data
    assert readerids.reader_key(home) == key


@pytest.mark.parametrize("damage", ["flipped", "a circle file", "cut short"])
def test_sealed_reader_key_damaged_is_a_clean_error(home: Path, damage: str) -> None:
    readerids.reader_key(home)
    path = home / readerids.KEY_FILE
    if damage == "flipped":
        flip(path, 30)
    elif damage == "a circle file":
        CircleStore(home).add(CIRCLE_NAME, CircleSecret.generate(), NOW)
        path.write_bytes(CircleStore(home).file_names()[0].read_bytes())
    else:
        path.write_bytes(path.read_bytes()[:20])
    before = path.read_bytes()
    with pytest.raises(SealedFileError) as raised:
        readerids.reader_key(home)
    message = str(raised.value)
    assert str(path) in message and "\n" not in message and "delete it" in message
    assert path.read_bytes() == before


# The reader's HTTPS certificate


@contextlib.contextmanager
def https_reader(home: Path) -> Iterator[tuple[list[str], str]]:
    """`meshdrop read --https` on a sealed home: (its lines, the fingerprint printed)."""
    proc = subprocess.Popen(
        [meshdrop_executable(), "--home", str(home), "read", "--https", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=command_env(SEALED_ENV),
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    try:
        while not lines or not FINGERPRINT_LINE.search(lines[-1]):
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"meshdrop read did not start: {lines} {proc.stderr.read()}")
            lines.append(line.rstrip("\n"))
        found = FINGERPRINT_LINE.search(lines[-1])
        assert found is not None
        yield lines, found.group(1).replace(" ", "")
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, proc.stderr.read()


def test_sealed_https_reader_keeps_its_key_and_certificate_sealed(tmp_path: Path) -> None:
    import ssl

    home = tmp_path / "home"
    run_meshdrop("--home", home, "seal", env=SEALED_ENV, check=True)
    shm_before = set(os.listdir("/dev/shm")) if Path("/dev/shm").is_dir() else set()
    with https_reader(home) as (lines, fingerprint):
        url = next(x for x in lines if "https://" in x)
        port = re.search(r"https://127\.0\.0\.1:(\d+)/", url)
        assert port is not None, lines
        pem = ssl.get_server_certificate(("127.0.0.1", int(port.group(1))))
    served = x509.load_pem_x509_certificate(pem.encode())
    assert tlscert.fingerprint_of(served) == fingerprint
    names = served.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    words = [served.subject.rfc4514_string(), served.issuer.rfc4514_string()]
    assert names and not any(n in w.lower() for w in words for n in ("meshdrop", "mdrop"))
    folder = home / tlscert.FOLDER_NAME
    key_bytes = (folder / tlscert.KEY_NAME).read_bytes()
    cert_bytes = (folder / tlscert.CERT_NAME).read_bytes()
    for data in (key_bytes, cert_bytes):
        assert b"-----BEGIN" not in data and b"PRIVATE KEY" not in data
    assert served.public_bytes(serialization.Encoding.DER) not in cert_bytes
    if shm_before or Path("/dev/shm").is_dir():
        assert set(os.listdir("/dev/shm")) <= shm_before  # the clear key went through memory
    with https_reader(home) as (again, same):
        assert same == fingerprint  # the sealed pair was read back and kept
        assert not any("made a new certificate" in line for line in again)


@pytest.mark.parametrize("damage", ["flipped key", "flipped certificate", "swapped"])
def test_sealed_certificate_damaged_is_replaced_by_a_new_one(home: Path, damage: str) -> None:
    first = tlscert.reader_certificate(home, ["192.0.2.7"])
    folder = home / tlscert.FOLDER_NAME
    key, cert = folder / tlscert.KEY_NAME, folder / tlscert.CERT_NAME
    if damage == "flipped key":
        flip(key, 50)
    elif damage == "flipped certificate":
        flip(cert, 50)
    else:
        key_data = key.read_bytes()
        key.write_bytes(cert.read_bytes())
        cert.write_bytes(key_data)
    second = tlscert.reader_certificate(home, ["192.0.2.7"])
    assert second.made == "the stored one could not be read"
    assert second.fingerprint != first.fingerprint
    assert tlscert.server_context(second) is not None
    third = tlscert.reader_certificate(home, ["192.0.2.7"])
    assert third.made is None and third.fingerprint == second.fingerprint


def test_sealed_certificate_context_loads_the_key_from_memory(home: Path) -> None:
    certificate = tlscert.reader_certificate(home, [])
    assert certificate.in_memory is not None
    context = tlscert.server_context(certificate)
    assert context.minimum_version.name == "TLSv1_2"
    plain = tlscert.reader_certificate(home.parent / "plain", [])
    assert plain.in_memory is None and plain.key_path.read_bytes().startswith(b"-----BEGIN")


# node.json


def test_node_json_of_a_sealed_node_names_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run_meshdrop("--home", home, "seal", env=SEALED_ENV, check=True)
    node = NodeProc(home, "--no-discovery", env=SEALED_ENV)
    try:
        data = (home / "node.json").read_bytes()
        about = json.loads(data)
        assert set(about) == {"pid", "url", "token"}
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", about["url"])
        assert_names_nothing(data)
        assert node.status()["drops"] is not None
    finally:
        node.stop()


# Sealing a plain home's small files (for meshdrop seal)


def test_seal_home_files_writes_sealed_copies_that_read_back(tmp_path: Path) -> None:
    source, target = tmp_path / "plain", tmp_path / "work"
    circle = CircleStore(source).add(CIRCLE_NAME, CircleSecret.generate(), NOW)
    blob = make_drop()
    drops = DropStore(source)
    drops.add(blob, NOW)
    drops.note_receipt("CODE2345", drop_id(blob))
    reader_key = readerids.reader_key(source)
    tlscert.reader_certificate(source, [])
    keys = sealing.storekeys.new_store_keys()
    written = seal_home_files(source, target, keys)
    assert sorted(written) == ["circles", "drops", "reader-tls", "reader.key"]
    codec = FileCodec(keys)
    (stored,) = CircleStore(target, codec).load().circles
    assert stored.circle == circle
    sealed_drops = DropStore(target, codec=codec)
    assert [d.drop_id for d in sealed_drops.held()] == [drop_id(blob)]
    assert sealed_drops.held()[0].arrived == NOW
    assert sealed_drops.read(drop_id(blob)) == blob
    assert sealed_drops.receipt_state("CODE2345") == "waiting"
    key_file = target / readerids.KEY_FILE
    opened = codec.decode(homefiles.READER_KEY, key_file.read_bytes(), key_file)
    assert opened == reader_key
    pair = tlscert.CertificateFiles(target / tlscert.FOLDER_NAME, codec).read()
    assert pair is not None and pair[0].startswith(b"-----BEGIN PRIVATE KEY")
    for path in target.rglob("*"):
        if path.is_file() and path.stat().st_size:
            assert_names_nothing(path.read_bytes(), CIRCLE_NAME.encode(), drop_id(blob), b"BEGIN")
