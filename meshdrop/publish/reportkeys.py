"""A publisher's report keys, on the publisher's side: making and retiring them, the ack
list, and the reserved ``report-keys`` bundle that carries them to every node.

In the publisher folder:

    report-<key id>.key        the private seed of each report key (reportkeyfile.py)
    report-keys/keys.bin       every signed report key and retirement, in sequence order
    report-keys/acks.bin       the latest signed ack list (once 'reports ack' ran)
    report-keys.mdrop          the bundle of report-keys/, rebuilt after every change:
                               hand it out like any bundle (a stick, a node's import)

A retired key's seed is kept until its retirement time plus GRACE_SECONDS, so drops
sealed to it before then can still be opened; 'reports open' destroys it after that.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshdrop.core import signedobject
from meshdrop.core.acks import ACK_LIST, MAX_ACKED, make_ack_list, sign_ack_list
from meshdrop.core.bundle import HEADER_SIZE, parse_envelope, parse_header
from meshdrop.core.manifest import parse_manifest
from meshdrop.core.reportkeys import (
    ACKS_FILE,
    KEYS_FILE,
    MAX_KEYS_FILE_BYTES,
    REPORT_KEY,
    REPORT_KEYS_BUNDLE,
    RETIREMENT,
    KeyRetirement,
    ReportPrivateKey,
    Suite,
    encode_keys_file,
    make_report_keypair,
    parse_keys_file,
    sign_report_key,
    sign_retirement,
)
from meshdrop.errors import MeshdropError, SignedObjectKindError, UsageError
from meshdrop.fs import atomic_write, read_small_file
from meshdrop.publish.keyfile import PassphraseProvider
from meshdrop.publish.keystore import PublisherFolder
from meshdrop.publish.pack import pack_folder
from meshdrop.publish.reportkeyfile import (
    REPORT_PREFIX,
    destroy_key_file,
    load_report_key,
    report_key_path,
    write_report_key,
)

DAY = 86_400
DEFAULT_REPORT_KEY_DAYS = 730
GRACE_SECONDS = 30 * DAY  # a retired key's seed is kept this long after its retirement
SOURCE_FOLDER = "report-keys"
BUNDLE_FILE = "report-keys.mdrop"
_PUBLIC_MODE = 0o644


@dataclass(frozen=True)
class KeyInfo:
    """A report key as the publisher folder records it."""

    key_id: bytes
    suite: Suite
    created: int
    not_after: int
    sequence: int
    retire_at: int | None
    seed_here: bool


def _objects(folder: Path) -> list[bytes]:
    path = folder / SOURCE_FOLDER / KEYS_FILE
    if not path.exists():
        return []
    return parse_keys_file(read_small_file(path, MAX_KEYS_FILE_BYTES, "report keys file"))


def list_report_keys(folder: Path) -> list[KeyInfo]:
    """The report keys the folder's keys.bin records (its own file: parsed, not verified
    against the chain), oldest first."""
    keys: dict[bytes, KeyInfo] = {}
    retired: dict[bytes, int] = {}
    for blob in _objects(folder):
        is_key, opened = _open_any(blob)
        if not is_key:
            key_id = opened.fields.binary("key_id", 16)
            at = opened.fields.integer("retire_at", 0, 2**63)
            retired[key_id] = min(retired.get(key_id, at), at)
            continue
        f = opened.fields
        key_id = f.binary("key_id", 16)
        keys[key_id] = KeyInfo(
            key_id,
            Suite(f.text("suite", 40)),
            f.integer("created", 0, 2**63),
            f.integer("not_after", 0, 2**63),
            f.integer("sequence", 1, 2**63),
            None,
            report_key_path(folder, key_id).is_file(),
        )
    return [
        replace(k, retire_at=retired.get(k.key_id))
        for k in sorted(keys.values(), key=lambda k: k.sequence)
    ]


def _open_any(blob: bytes) -> tuple[bool, signedobject.Opened]:
    """(is it a report key, the opened object) for a report key or a retirement."""
    try:
        return True, signedobject.open_object(blob, REPORT_KEY, "a report key")
    except SignedObjectKindError:
        return False, signedobject.open_object(blob, RETIREMENT, "a report key retirement")


def _next_sequence(folder: Path) -> int:
    sequences = [_open_any(b)[1].fields.integer("sequence", 1, 2**63) for b in _objects(folder)]
    return max(sequences, default=0) + 1


def add_report_key(
    publisher: PublisherFolder,
    signing_key: Ed25519PrivateKey,
    passphrase: bytes | None,
    now: int,
    suite: Suite = Suite.MLKEM768_X25519,
    days: int = DEFAULT_REPORT_KEY_DAYS,
) -> tuple[ReportPrivateKey, Path]:
    """A new report key: its seed saved in the folder, its signed public half added to
    keys.bin (the bundle is rebuilt by ``build_bundle``)."""
    folder = publisher.folder
    private, public = make_report_keypair(
        suite, publisher.current.publisher, now, now + days * DAY, _next_sequence(folder)
    )
    path = write_report_key(folder, private, passphrase)
    _write_objects(folder, [*_objects(folder), sign_report_key(public, signing_key)])
    return private, path


def retire_report_key(
    publisher: PublisherFolder,
    signing_key: Ed25519PrivateKey,
    wanted: str,
    retire_at: int,
    now: int,
) -> KeyInfo:
    """Add a signed retirement of the report key ``wanted`` (its hex id or a unique start)."""
    folder = publisher.folder
    known = list_report_keys(folder)
    prefix = wanted.strip().lower()
    matches = [k for k in known if prefix and k.key_id.hex().startswith(prefix)]
    if not matches:
        ids = ", ".join(k.key_id.hex()[:12] for k in known) or "none"
        raise UsageError(f"this publisher has no report key {wanted!r} (its report keys: {ids})")
    if len(matches) > 1:
        raise UsageError(f"{wanted!r} matches {len(matches)} report keys; type more of it")
    key = matches[0]
    if key.retire_at is not None:
        raise UsageError(f"the report key {key.key_id.hex()[:12]} is already retired")
    retirement = KeyRetirement(
        publisher.current.publisher, key.key_id, retire_at, now, _next_sequence(folder)
    )
    _write_objects(folder, [*_objects(folder), sign_retirement(retirement, signing_key)])
    return key


def write_ack_list(
    publisher: PublisherFolder, signing_key: Ed25519PrivateKey, drop_ids: list[bytes], now: int
) -> int:
    """Sign the ack list of ``drop_ids`` (the newest MAX_ACKED of them) into acks.bin;
    returns how many it names."""
    path = publisher.folder / SOURCE_FOLDER / ACKS_FILE
    sequence = 1
    if path.exists():
        old = read_small_file(path, ACK_LIST.max_bytes + 512, "ack list")
        opened = signedobject.open_object(old, ACK_LIST, "the ack list")
        sequence = opened.fields.integer("sequence", 1, 2**63 - 2) + 1
    acks = make_ack_list(publisher.current.publisher, now, sequence, drop_ids[-MAX_ACKED:])
    (publisher.folder / SOURCE_FOLDER).mkdir(mode=0o755, exist_ok=True)
    atomic_write(path, sign_ack_list(acks, signing_key), _PUBLIC_MODE)
    return len(acks.drops)


def build_bundle(publisher: PublisherFolder, signing_key: Ed25519PrivateKey, now: int) -> Path:
    """(Re)build FOLDER/report-keys.mdrop from FOLDER/report-keys/, one version above the
    last one built (its creation time, or one more when two builds share a second)."""
    folder = publisher.folder
    out = folder / BUNDLE_FILE
    version = max(now, _built_version(out) + 1)
    pack_folder(
        folder / SOURCE_FOLDER,
        out,
        signing_key=signing_key,
        state=publisher.state,
        name=REPORT_KEYS_BUNDLE,
        version=version,
        created=now,
        expires=None,
        title=REPORT_KEYS_BUNDLE,
        description="",
        language="en",
        priority=0,
    )
    return out


def load_report_seeds(
    folder: Path, passphrase_provider: PassphraseProvider
) -> list[ReportPrivateKey]:
    """Every report private key in the folder (the passphrase asked once per file, unless
    the provider remembers it)."""
    return [load_report_key(p, passphrase_provider) for p in sorted(_seed_files(folder))]


def destroy_retired_seeds(folder: Path, now: int) -> list[bytes]:
    """Destroy the seeds of keys retired more than GRACE_SECONDS before ``now``; their ids."""
    destroyed = []
    for key in list_report_keys(folder):
        path = report_key_path(folder, key.key_id)
        if key.retire_at is not None and key.retire_at + GRACE_SECONDS < now and path.is_file():
            destroy_key_file(path)
            destroyed.append(key.key_id)
    return destroyed


def has_report_keys(folder: Path) -> bool:
    return bool(_seed_files(folder)) or bool(_objects(folder))


def _seed_files(folder: Path) -> list[Path]:
    return [p for p in folder.glob(f"{REPORT_PREFIX}*.key") if p.is_file()]


def _write_objects(folder: Path, blobs: list[bytes]) -> None:
    (folder / SOURCE_FOLDER).mkdir(mode=0o755, exist_ok=True)
    atomic_write(folder / SOURCE_FOLDER / KEYS_FILE, encode_keys_file(blobs), _PUBLIC_MODE)


def _built_version(out: Path) -> int:
    """The version of the report-keys bundle built last (0 if none, or unreadable)."""
    try:
        with out.open("rb") as handle:
            head = handle.read(HEADER_SIZE)
            length = parse_header(head, out.name)
            envelope = parse_envelope(handle.read(length), out.name)
        return parse_manifest(envelope.manifest_bytes).version
    except (OSError, MeshdropError):
        return 0
