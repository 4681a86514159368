"""meshdrop's own private-key files, and the public-key files key holders hand over.

A private-key file (``*.key``, mode 0600) is the magic ``b"\\x89MDKEY\\r\\n"`` followed by
one canonical msgpack map::

    format  1
    kind    "root" | "signer"
    public  the 32-byte Ed25519 public key
    kdf     "scrypt" | "none"
    check   SHA-256 of the magic and the canonical encoding of every other field

    for kdf "scrypt":
    n, r, p  scrypt cost (written as 2**17, 8, 1: 128 MiB and about half a second)
    salt     16 bytes
    nonce    12 bytes
    sealed   ChaCha20-Poly1305 with key scrypt(passphrase, salt), over the 32-byte
             Ed25519 seed, with associated data b"meshdrop/v1/private-key\\0" + public

    for kdf "none":
    seed     the 32-byte Ed25519 seed

``check`` tells a damaged file (a flipped bit on a stick: FormatError) from a wrong
passphrase (PassphraseError); it is no defence against a forger, who could recompute it.
The sealed seed is what keeps the key secret, and the loaded key must match ``public``.

A public-key file (``*.pubkey``) is one line: ``meshdrop-public-key-v1 <64 hex digits>``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from meshdrop.core import codec
from meshdrop.core.keys import PUBLIC_KEY_BYTES, check_public_key, key_id, public_bytes
from meshdrop.core.schema import Fields
from meshdrop.errors import (
    FormatError,
    MeshdropError,
    PassphraseError,
    UsageError,
    WeakPassphraseError,
)
from meshdrop.fs import atomic_write, read_small_file

KEY_MAGIC = b"\x89MDKEY\r\n"
KEY_FORMAT = 1
KEY_MODE = 0o600
PUBLIC_MODE = 0o644
MAX_KEY_FILE_BYTES = 4096
SEED_BYTES = 32
SALT_BYTES = 16
NONCE_BYTES = 12
CHECK_BYTES = 32
SEALED_BYTES = SEED_BYTES + 16  # the seed and the Poly1305 tag
SCRYPT_N = 2**17
SCRYPT_R = 8
SCRYPT_P = 1
# Files written with another cost still load, within bounds that keep a hostile file from
# asking for more than 1 GiB of memory.
_SCRYPT_N_ALLOWED = frozenset(2**i for i in range(14, 21))
_AAD_PREFIX = b"meshdrop/v1/private-key\0"
_LIMITS = codec.Limits(max_bytes=MAX_KEY_FILE_BYTES, max_depth=1, max_items=16, max_str=16)

PUBKEY_TAG = "meshdrop-public-key-v1"
MAX_PUBKEY_FILE_BYTES = 1024
_PUBKEY_LINE = re.compile(rf"\A{PUBKEY_TAG} ([0-9a-f]{{64}})\r?\n?\Z")

PassphraseProvider = Callable[[str], bytes | None]

MIN_PASSPHRASE_CHARS = 12
MIN_DISTINCT_CHARS = 5


def check_new_passphrase(passphrase: bytes) -> None:
    """Refuse a new passphrase that a seized key file would give up to an offline guessing
    attack: fewer than 12 characters, or fewer than 5 different ones ("aaaaaaaaaaaa",
    "121212121212"). ``--weak-passphrase`` skips this check."""
    text = passphrase.decode("utf-8", errors="replace")
    if len(text) < MIN_PASSPHRASE_CHARS or len(set(text)) < MIN_DISTINCT_CHARS:
        raise WeakPassphraseError(
            f"the new passphrase is too weak: use at least {MIN_PASSPHRASE_CHARS} characters, "
            f"at least {MIN_DISTINCT_CHARS} of them different (whoever takes the key file can "
            "try guesses offline without limit), or pass --weak-passphrase"
        )


class KeyKind(Enum):
    ROOT = "root"
    SIGNER = "signer"

    @property
    def label(self) -> str:
        return "root key" if self is KeyKind.ROOT else "signing key"


@dataclass(frozen=True)
class KeyFileInfo:
    """What a key file says about itself, readable without the passphrase."""

    path: Path
    kind: KeyKind
    public: bytes
    encrypted: bool
    fields: dict[str, codec.Value]

    @property
    def id(self) -> str:
        return key_id(self.public)


def _check_digest(fields: dict[str, codec.Value]) -> bytes:
    rest = {k: v for k, v in fields.items() if k != "check"}
    return hashlib.sha256(KEY_MAGIC + codec.pack(rest)).digest()


def _scrypt(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase)


def encode_key_file(key: Ed25519PrivateKey, kind: KeyKind, passphrase: bytes | None) -> bytes:
    """The bytes of a key file holding ``key``, sealed with ``passphrase`` unless None."""
    public = public_bytes(key)
    seed = key.private_bytes_raw()
    fields: dict[str, codec.Value] = {
        "format": KEY_FORMAT,
        "kind": kind.value,
        "public": public,
    }
    if passphrase is None:
        fields.update({"kdf": "none", "seed": seed})
    else:
        if not passphrase:
            raise UsageError("the passphrase must not be empty")
        salt = os.urandom(SALT_BYTES)
        nonce = os.urandom(NONCE_BYTES)
        secret = _scrypt(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        sealed = ChaCha20Poly1305(secret).encrypt(nonce, seed, _AAD_PREFIX + public)
        fields.update(
            {
                "kdf": "scrypt",
                "n": SCRYPT_N,
                "r": SCRYPT_R,
                "p": SCRYPT_P,
                "salt": salt,
                "nonce": nonce,
                "sealed": sealed,
            }
        )
    fields["check"] = _check_digest(fields)
    return KEY_MAGIC + codec.pack(fields)


def parse_key_file(data: bytes, path: Path) -> KeyFileInfo:
    """Check a key file's structure and integrity (not its passphrase)."""
    if not data.startswith(KEY_MAGIC):
        raise FormatError(f"{path} is damaged or is not a meshdrop key file")
    what = "the key file"
    try:
        value = codec.unpack(data[len(KEY_MAGIC) :], _LIMITS, what)
        fields = Fields(value, what)
        check = fields.binary("check", CHECK_BYTES)
    except FormatError as exc:
        raise FormatError(f"{path} is damaged: {exc}") from exc
    # Integrity first, so a damaged byte is never mistaken for anything it happens to spell.
    if _check_digest(value) != check:
        raise FormatError(f"{path} is damaged: its bytes were changed")
    try:
        key_format = fields.integer("format", 0, 2**16)
    except FormatError as exc:
        raise FormatError(f"{path} is damaged: {exc}") from exc
    if key_format != KEY_FORMAT:
        raise FormatError(f"{path} is a key file of a newer meshdrop; update meshdrop to use it")
    try:
        kind_text = fields.text("kind", 16)
        public = fields.binary("public", PUBLIC_KEY_BYTES)
        kdf = fields.text("kdf", 16)
        if kdf == "none":
            fields.binary("seed", SEED_BYTES)
        elif kdf == "scrypt":
            cost = (
                fields.integer("n", 1, 2**32),
                fields.integer("r", 1, 2**16),
                fields.integer("p", 1, 2**16),
            )
            fields.binary("salt", SALT_BYTES)
            fields.binary("nonce", NONCE_BYTES)
            fields.binary("sealed", SEALED_BYTES)
        else:
            raise FormatError(f"{what} uses an unknown kind of key protection")
        fields.done()
    except FormatError as exc:
        raise FormatError(f"{path} is damaged: {exc}") from exc
    if kdf == "scrypt" and (cost[0] not in _SCRYPT_N_ALLOWED or cost[1:] != (SCRYPT_R, SCRYPT_P)):
        raise FormatError(f"{path} asks for a passphrase strength this meshdrop does not allow")
    try:
        kind = KeyKind(kind_text)
        check_public_key(public)
    except (ValueError, MeshdropError) as exc:
        raise FormatError(f"{path} is damaged: it names an unknown or invalid key") from exc
    return KeyFileInfo(path, kind, public, kdf == "scrypt", value)


def read_key_file_info(path: Path) -> KeyFileInfo:
    return parse_key_file(read_small_file(path, MAX_KEY_FILE_BYTES, "key file"), path)


def unlock(info: KeyFileInfo, passphrase_provider: PassphraseProvider) -> Ed25519PrivateKey:
    """The private key, asking ``passphrase_provider`` only if the file is sealed."""
    fields = info.fields
    if info.encrypted:
        passphrase = passphrase_provider(str(info.path))
        if not passphrase:
            raise PassphraseError(f"no passphrase was given for {info.path}")
        secret = _scrypt(passphrase, fields["salt"], fields["n"], fields["r"], fields["p"])
        try:
            seed = ChaCha20Poly1305(secret).decrypt(
                fields["nonce"], fields["sealed"], _AAD_PREFIX + info.public
            )
        except InvalidTag as exc:
            # The check digest matched, so the bytes are as written: the passphrase is wrong.
            raise PassphraseError(f"wrong passphrase for {info.path}") from exc
    else:
        seed = fields["seed"]
    key = Ed25519PrivateKey.from_private_bytes(seed)
    if public_bytes(key) != info.public:
        raise FormatError(f"{info.path} is damaged: its private key does not match its public key")
    return key


def load_private_key(
    path: Path, passphrase_provider: PassphraseProvider, kind: KeyKind | None = None
) -> Ed25519PrivateKey:
    """Read, check and unlock a key file; ``kind``, if given, is the kind it must hold."""
    info = read_key_file_info(path)
    if kind is not None and info.kind is not kind:
        raise UsageError(f"{path} holds a {info.kind.label}, not a {kind.label}")
    return unlock(info, passphrase_provider)


def write_private_key(
    path: Path, key: Ed25519PrivateKey, kind: KeyKind, passphrase: bytes | None
) -> None:
    atomic_write(path, encode_key_file(key, kind, passphrase), KEY_MODE)


def encode_public_key_file(public: bytes) -> bytes:
    return f"{PUBKEY_TAG} {public.hex()}\n".encode("ascii")


def read_public_key_file(path: Path) -> bytes:
    """The public key in a ``.pubkey`` file made by ``meshdrop publisher keygen``."""
    data = read_small_file(path, MAX_PUBKEY_FILE_BYTES, "public key file")
    if data.startswith(KEY_MAGIC):
        raise UsageError(f"{path} is a private key file; give its .pubkey file instead")
    match = _PUBKEY_LINE.match(data.decode("ascii", errors="replace"))
    if match is None:
        raise FormatError(f"{path} is not a meshdrop public key file (.pubkey)")
    public = bytes.fromhex(match[1])
    try:
        return check_public_key(public, f"the key in {path}")
    except MeshdropError as exc:
        raise FormatError(str(exc)) from exc


def seal_secret(secret: bytes, passphrase: bytes, aad: bytes) -> dict[str, codec.Value]:
    """The fields of a key file that hold ``secret`` sealed with ``passphrase`` (kdf
    "scrypt", as for signing keys): for other kinds of private key file (report keys)."""
    if not passphrase:
        raise UsageError("the passphrase must not be empty")
    salt = os.urandom(SALT_BYTES)
    nonce = os.urandom(NONCE_BYTES)
    key = _scrypt(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return {
        "kdf": "scrypt",
        "n": SCRYPT_N,
        "r": SCRYPT_R,
        "p": SCRYPT_P,
        "salt": salt,
        "nonce": nonce,
        "sealed": ChaCha20Poly1305(key).encrypt(nonce, secret, aad),
    }


def open_secret(fields: Fields, passphrase: bytes, aad: bytes, path: Path) -> bytes:
    """The secret that ``seal_secret`` sealed (its fields read from ``fields``, which must
    be checked already for integrity): PassphraseError if the passphrase is wrong."""
    n = fields.integer("n", 1, 2**32)
    r = fields.integer("r", 1, 2**16)
    p = fields.integer("p", 1, 2**16)
    if n not in _SCRYPT_N_ALLOWED or (r, p) != (SCRYPT_R, SCRYPT_P):
        raise FormatError(f"{path} asks for a passphrase strength this meshdrop does not allow")
    salt = fields.binary("salt", SALT_BYTES)
    nonce = fields.binary("nonce", NONCE_BYTES)
    sealed = fields.binary("sealed", None, max_len=SEED_BYTES + 16)
    try:
        return ChaCha20Poly1305(_scrypt(passphrase, salt, n, r, p)).decrypt(nonce, sealed, aad)
    except InvalidTag as exc:
        raise PassphraseError(f"wrong passphrase for {path}") from exc


def key_file_check(fields: dict[str, codec.Value]) -> bytes:
    """The ``check`` digest of a key file's other fields (tells damage from a wrong
    passphrase)."""
    return _check_digest(fields)
