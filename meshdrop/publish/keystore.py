"""A publisher folder: the publisher's private keys and its chain of signed records.

    root-<keyid>.key     a root key (PEM PKCS8, mode 0600); belongs offline after setup
    signer-<keyid>.key   a delegated signing key (PEM PKCS8, mode 0600)
    publisher.pub        the signed record chain that node owners pin (mode 0644)

publisher.pub is written last, so a folder without it is an unfinished setup.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    KeySerializationEncryption,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from meshdrop.core.bundle import encode_publisher_file, parse_publisher_file
from meshdrop.core.keys import generate_private_key, key_id, public_bytes
from meshdrop.core.records import (
    MAX_NAME_CHARS,
    MAX_TIME,
    PublisherRecord,
    SignedRecord,
    Signer,
    publisher_id,
    sign_record,
    verify_first_record,
)
from meshdrop.core.trust import PublisherState, describe_time, start_state
from meshdrop.errors import FormatError, PassphraseError, TrustError, UsageError
from meshdrop.fs import atomic_write

PUBLISHER_FILE = "publisher.pub"
ROOT_PREFIX = "root-"
SIGNER_PREFIX = "signer-"
KEY_SUFFIX = ".key"
DAY = 86400
FOLDER_MODE = 0o700
KEY_MODE = 0o600
PUBLIC_MODE = 0o644
MAX_KEY_FILE_BYTES = 64 * 1024
MAX_PUBLISHER_FILE_BYTES = 16 * 1024 * 1024

PassphraseProvider = Callable[[str], bytes | None]

# Invisible characters that reorder displayed text, so a name could be shown as another.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_UNSAFE_CATEGORIES = ("Cc", "Cs", "Zl", "Zp")
_PEM = re.compile(
    rb"\A\s*-----BEGIN (ENCRYPTED )?PRIVATE KEY-----\r?\n"
    rb"([A-Za-z0-9+/=\r\n]+)"
    rb"-----END (ENCRYPTED )?PRIVATE KEY-----\s*\Z"
)


def key_file_name(prefix: str, public_key: bytes) -> str:
    return f"{prefix}{key_id(public_key)}{KEY_SUFFIX}"


def check_publisher_name(name: str) -> str:
    if not 1 <= len(name) <= MAX_NAME_CHARS or not name.strip():
        raise UsageError(f"the publisher name must be 1 to {MAX_NAME_CHARS} characters")
    for char in name:
        if unicodedata.category(char) in _UNSAFE_CATEGORIES or char in _BIDI_CONTROLS:
            raise UsageError(
                f"the publisher name must not contain control characters (found U+{ord(char):04X})"
            )
    return name


def create_publisher(
    folder: Path,
    name: str,
    passphrase: bytes | None,
    now: int,
    signer_valid_days: int = 730,
) -> PublisherRecord:
    """Make a new publisher in the empty (or new) ``folder``: one root key, one signing
    key valid for ``signer_valid_days``, and record 1 delegating it."""
    check_publisher_name(name)
    encryption = _encryption(passphrase)
    if signer_valid_days < 1:
        raise UsageError("the signing key must be valid for at least one day")
    expires = now + signer_valid_days * DAY
    if not 0 <= now <= expires <= MAX_TIME:
        raise UsageError("the current time or the signing key's lifetime is out of range")
    _prepare_folder(folder)
    root_key = generate_private_key()
    signing_key = generate_private_key()
    root_pub = public_bytes(root_key)
    signer_pub = public_bytes(signing_key)
    record = PublisherRecord(
        publisher=publisher_id([root_pub], 1),
        name=name,
        version=1,
        created=now,
        roots=(root_pub,),
        threshold=1,
        # A day early, so a node whose clock runs behind still accepts fresh bundles.
        signers=(Signer(signer_pub, not_before=max(0, now - DAY), expires=expires, scope=("*",)),),
    )
    signed = sign_record(record, [root_key])
    _write_private_key(folder / key_file_name(ROOT_PREFIX, root_pub), root_key, encryption)
    _write_private_key(folder / key_file_name(SIGNER_PREFIX, signer_pub), signing_key, encryption)
    atomic_write(folder / PUBLISHER_FILE, encode_publisher_file([signed]), PUBLIC_MODE)
    return verify_first_record(signed)


def _encryption(passphrase: bytes | None) -> KeySerializationEncryption:
    if passphrase is None:
        return NoEncryption()
    if not passphrase:
        raise UsageError("the passphrase must not be empty")
    return BestAvailableEncryption(passphrase)


def _prepare_folder(folder: Path) -> None:
    try:
        if folder.exists():
            if not folder.is_dir():
                raise UsageError(f"{folder} is a file; choose a new folder for the publisher")
            if any(folder.iterdir()):
                raise UsageError(f"{folder} is not empty; choose a new folder for the publisher")
        else:
            folder.mkdir(mode=FOLDER_MODE, parents=True)
        folder.chmod(FOLDER_MODE)
    except OSError as exc:
        raise UsageError(f"cannot create the folder {folder} ({exc.strerror})") from None


def _write_private_key(
    path: Path, key: Ed25519PrivateKey, encryption: KeySerializationEncryption
) -> None:
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, encryption)
    atomic_write(path, pem, KEY_MODE)


@dataclass(frozen=True)
class PublisherFolder:
    """A verified publisher folder: its record chain and the newest record."""

    folder: Path
    state: PublisherState

    @property
    def records(self) -> tuple[SignedRecord, ...]:
        return self.state.signed

    @property
    def current(self) -> PublisherRecord:
        return self.state.current

    def signer_path(self, signer: Signer) -> Path:
        return self.folder / key_file_name(SIGNER_PREFIX, signer.key)

    def load_signer(
        self, passphrase_provider: PassphraseProvider, now: int, key_id: str | None = None
    ) -> tuple[Ed25519PrivateKey, Signer]:
        """The signing key to sign with at ``now``: the one named by ``key_id`` (a unique
        prefix is enough), else the present one that stays valid longest.
        ``passphrase_provider`` is asked only if that key file is encrypted."""
        signer = self._best_signer(now) if key_id is None else self._named_signer(key_id, now)
        path = self.signer_path(signer)
        key = load_private_key(path, passphrase_provider)
        if public_bytes(key) != signer.key:
            raise FormatError(f"{path} holds another key than its name says")
        return key, signer

    def _best_signer(self, now: int) -> Signer:
        present = [s for s in self.current.signers if self.signer_path(s).is_file()]
        if not present:
            raise TrustError(
                f"{self.folder} holds no signing key of publisher {self.current.name!r}"
                f" (no {SIGNER_PREFIX}<key id>{KEY_SUFFIX} file)"
            )
        valid = [s for s in present if s.valid_at(now)]
        if valid:
            return max(valid, key=lambda s: (s.expires, s.id))
        if all(s.expires < now for s in present):
            newest = max(s.expires for s in present)
            raise TrustError(
                f"every signing key in {self.folder} has expired; the newest expired on "
                f"{describe_time(newest)}"
            )
        earliest = min(s.not_before for s in present if s.not_before > now)
        raise TrustError(
            f"no signing key in {self.folder} is valid yet; the first becomes valid on "
            f"{describe_time(earliest)} (is this computer's clock right?)"
        )

    def _named_signer(self, wanted: str, now: int) -> Signer:
        prefix = wanted.strip().lower()
        matches = [s for s in self.current.signers if prefix and s.id.startswith(prefix)]
        if not matches:
            raise UsageError(
                f"publisher {self.current.name!r} has no signing key {wanted!r}"
                f" (its keys: {', '.join(s.id for s in self.current.signers)})"
            )
        if len(matches) > 1:
            raise UsageError(f"{wanted!r} matches {len(matches)} signing keys; type more of it")
        signer = matches[0]
        if not self.signer_path(signer).is_file():
            raise UsageError(f"the signing key {signer.id} is not in {self.folder}")
        if not signer.valid_at(now):
            raise TrustError(
                f"the signing key {signer.id} is valid only from {describe_time(signer.not_before)}"
                f" to {describe_time(signer.expires)}"
            )
        return signer


def load_publisher(folder: Path) -> PublisherFolder:
    """Read and verify ``folder``/publisher.pub (keys are loaded later, on demand)."""
    if not folder.exists():
        raise UsageError(f"there is no publisher folder at {folder}")
    if not folder.is_dir():
        raise UsageError(f"{folder} is a file, not a publisher folder")
    path = folder / PUBLISHER_FILE
    if not path.is_file():
        raise UsageError(f"{folder} is not a publisher folder (it has no {PUBLISHER_FILE})")
    data = _read_small(path, MAX_PUBLISHER_FILE_BYTES)
    records = parse_publisher_file(data, str(path))
    return PublisherFolder(folder, start_state(records))


def _read_small(path: Path, limit: int) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {path} ({exc.strerror})") from None
    if len(data) > limit:
        raise FormatError(f"{path} is too large to be what its name says")
    return data


def load_private_key(path: Path, passphrase_provider: PassphraseProvider) -> Ed25519PrivateKey:
    """Load an Ed25519 PEM key file, asking for a passphrase only if it is encrypted."""
    data = _read_small(path, MAX_KEY_FILE_BYTES)
    encrypted = _is_encrypted_pem(data, path)
    password = None
    if encrypted:
        password = passphrase_provider(str(path))
        if not password:
            raise PassphraseError(f"no passphrase was given for {path}")
    try:
        key = load_pem_private_key(data, password)
    except ValueError:
        # The container was checked well-formed above, so a failure here is a bad decrypt.
        if encrypted:
            raise PassphraseError(f"wrong passphrase for {path}") from None
        raise FormatError(f"{path} is damaged: it is not a readable private key") from None
    except (TypeError, UnsupportedAlgorithm):
        raise FormatError(f"{path} is damaged: it is not a readable private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise FormatError(f"{path} holds a key of another kind than Ed25519")
    return key


def _is_encrypted_pem(data: bytes, path: Path) -> bool:
    """Whether ``data`` is an encrypted PKCS8 PEM; FormatError if it is no PEM key at all
    or its structure is broken (so a damaged file is not blamed on the passphrase)."""
    match = _PEM.match(data)
    if match is None or match[1] != match[3]:
        raise FormatError(f"{path} is damaged: it is not a PEM private key file")
    try:
        der = base64.b64decode(b"".join(match[2].split()), validate=True)
    except binascii.Error:
        raise FormatError(f"{path} is damaged: its text is not valid base64") from None
    if match[1] is None:
        return False
    outer = _der_items(der)
    inner = _der_items(outer[0][1]) if outer and len(outer) == 1 and outer[0][0] == 0x30 else None
    if inner is None or [tag for tag, _ in inner] != [0x30, 0x04]:
        raise FormatError(f"{path} is damaged: it is not a readable encrypted private key")
    return True


def _der_items(data: bytes) -> list[tuple[int, bytes]] | None:
    """Split DER into (tag, content) pairs, or None if the lengths do not add up."""
    items = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            return None
        tag, first = data[pos], data[pos + 1]
        pos += 2
        length = first
        if first >= 0x80:
            width = first & 0x7F
            if not 1 <= width <= 4 or pos + width > len(data):
                return None
            length = int.from_bytes(data[pos : pos + width], "big")
            pos += width
        if pos + length > len(data):
            return None
        items.append((tag, data[pos : pos + length]))
        pos += length
    return items
