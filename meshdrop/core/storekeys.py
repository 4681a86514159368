"""The sealed store's key and the slots that keep it wrapped (docs/FORMAT.md, "Sealed
store").

A sealed store is encrypted under one random 32-byte store key. The key is never written
in clear: the slots file keeps it wrapped (AES-256-GCM) under keys derived from what the
owner holds, a passphrase (scrypt) or a key file on separate media (HKDF). The file always
has ``SLOT_COUNT`` slots at fixed places, each of the same size, and every slot not in use
holds random bytes: the file does not show which slots are in use, whether a key file or a
duress passphrase exists, nor (without a right secret) anything at all.

Slot places: 0 the passphrase, 1 the duress passphrase (it unwraps a duress mark, never
the key), 2 the key file, 3 spare. Each slot is ``nonce (12) || AES-256-GCM(kek, nonce,
payload (48), aad = place (1 byte) || salt)``; the payload is ``kind (1) || store key (32)
|| zeros (15)``, kind 1 for the key and 2 for the duress mark (whose key bytes are random).

Pure: randomness is drawn only where new keys, salts and nonces are made.
"""

from __future__ import annotations

import secrets
import unicodedata
from dataclasses import dataclass
from enum import IntEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from meshdrop.errors import FormatError, StorePassphraseError

KEY_BYTES = 32
SALT_BYTES = 16
NONCE_BYTES = 12
KEY_FILE_BYTES = 32
SLOT_COUNT = 4
PAYLOAD_BYTES = 48
SLOT_BYTES = NONCE_BYTES + PAYLOAD_BYTES + 16
HEADER_BYTES = SALT_BYTES + 4  # salt, log2 n, r, p, a zero byte
SLOTS_FILE_BYTES = HEADER_BYTES + SLOT_COUNT * SLOT_BYTES

# scrypt with n = 2**18, r = 8: 256 MiB and about 0.8 s on the reference machine (docs/
# FORMAT.md). Tests may write new slots files with 2**10 (store/sealing.py says how).
SCRYPT_LOG2_N = 18
SCRYPT_R = 8
SCRYPT_P = 1
TEST_LOG2_N = 10
_LOG2_N_ALLOWED = range(TEST_LOG2_N, 21)  # a hostile file asks for at most 1 GiB


class Place(IntEnum):
    PASSPHRASE = 0
    DURESS = 1
    KEY_FILE = 2
    SPARE = 3


class _Kind(IntEnum):
    KEY = 1
    DURESS = 2


@dataclass(frozen=True)
class StoreKeys:
    """The keys a sealed store's parts are encrypted under, derived from the store key
    with HKDF-SHA256 (each with its own info string, so none reveals another)."""

    root: bytes

    def derive(self, purpose: str) -> bytes:
        return HKDF(
            algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=purpose.encode()
        ).derive(self.root)

    @property
    def index(self) -> bytes:
        """The SQLCipher raw key of the index (index.sqlite)."""
        return self.derive("index")

    @property
    def search(self) -> bytes:
        """The SQLCipher raw key of the search index (search.sqlite)."""
        return self.derive("search")

    @property
    def chunk_names(self) -> bytes:
        """HMAC-SHA256 key naming chunk files: a name says nothing of the chunk's hash."""
        return self.derive("chunk names")

    @property
    def chunks(self) -> bytes:
        """AES-256-GCM key of the chunk files' contents."""
        return self.derive("chunks")

    @property
    def files(self) -> bytes:
        """AES-256-GCM key of the store's other files (circles, drops, reader keys)."""
        return self.derive("files")

    @property
    def file_names(self) -> bytes:
        """HMAC-SHA256 key naming the other files whose plain name derives from their
        content (a drop's id): store/homefiles.py."""
        return self.derive("file names")


def new_store_keys() -> StoreKeys:
    return StoreKeys(secrets.token_bytes(KEY_BYTES))


@dataclass(frozen=True)
class Header:
    salt: bytes
    log2_n: int
    r: int
    p: int

    def encode(self) -> bytes:
        return self.salt + bytes([self.log2_n, self.r, self.p, 0])


def new_header(fast_for_tests: bool = False) -> Header:
    log2_n = TEST_LOG2_N if fast_for_tests else SCRYPT_LOG2_N
    return Header(secrets.token_bytes(SALT_BYTES), log2_n, SCRYPT_R, SCRYPT_P)


@dataclass(frozen=True)
class SlotsFile:
    header: Header
    slots: tuple[bytes, ...]

    def encode(self) -> bytes:
        return self.header.encode() + b"".join(self.slots)

    def with_slot(self, place: Place, slot: bytes) -> SlotsFile:
        slots = list(self.slots)
        slots[place] = slot
        return SlotsFile(self.header, tuple(slots))


def decode_slots_file(data: bytes) -> SlotsFile:
    if len(data) != SLOTS_FILE_BYTES:
        raise FormatError("the store's key file is damaged (wrong size)")
    salt = data[:SALT_BYTES]
    log2_n, r, p, zero = data[SALT_BYTES:HEADER_BYTES]
    if log2_n not in _LOG2_N_ALLOWED or r != SCRYPT_R or p != SCRYPT_P or zero != 0:
        raise FormatError("the store's key file is damaged (unknown key derivation)")
    slots = tuple(
        data[HEADER_BYTES + i * SLOT_BYTES : HEADER_BYTES + (i + 1) * SLOT_BYTES]
        for i in range(SLOT_COUNT)
    )
    return SlotsFile(Header(salt, log2_n, r, p), slots)


def new_slots_file(keys: StoreKeys, passphrase_kek: bytes, header: Header) -> SlotsFile:
    """A slots file with ``keys`` under the passphrase and random bytes everywhere else."""
    slots = tuple(secrets.token_bytes(SLOT_BYTES) for _ in range(SLOT_COUNT))
    empty = SlotsFile(header, slots)
    return empty.with_slot(Place.PASSPHRASE, wrap(keys, passphrase_kek, Place.PASSPHRASE, header))


def normalized(passphrase: str) -> bytes:
    return unicodedata.normalize("NFC", passphrase).encode()


def passphrase_kek(passphrase: str, header: Header) -> bytes:
    """The key-encryption key of a passphrase: the slow step (scrypt)."""
    return Scrypt(
        salt=header.salt, length=KEY_BYTES, n=2**header.log2_n, r=header.r, p=header.p
    ).derive(normalized(passphrase))


def key_file_kek(secret: bytes, header: Header) -> bytes:
    if len(secret) != KEY_FILE_BYTES:
        raise FormatError("the key file is damaged (wrong size)")
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=header.salt, info=b"key file"
    ).derive(secret)


def wrap(keys: StoreKeys, kek: bytes, place: Place, header: Header) -> bytes:
    return _seal(bytes([_Kind.KEY]) + keys.root, kek, place, header)


def wrap_duress(kek: bytes, header: Header) -> bytes:
    return _seal(bytes([_Kind.DURESS]) + secrets.token_bytes(KEY_BYTES), kek, Place.DURESS, header)


def random_slot() -> bytes:
    return secrets.token_bytes(SLOT_BYTES)


def _seal(body: bytes, kek: bytes, place: Place, header: Header) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    payload = body + bytes(PAYLOAD_BYTES - len(body))
    return nonce + AESGCM(kek).encrypt(nonce, payload, bytes([place]) + header.salt)


@dataclass(frozen=True)
class Unwrapped:
    """What a secret opened: the store's keys at ``place``, or (``duress``) the duress mark."""

    place: Place
    keys: StoreKeys | None

    @property
    def duress(self) -> bool:
        return self.keys is None


def unwrap(slots: SlotsFile, kek: bytes, places: tuple[Place, ...]) -> Unwrapped:
    """Try ``kek`` on the slots at ``places``; StorePassphraseError if none opens."""
    for place in places:
        slot = slots.slots[place]
        try:
            payload = AESGCM(kek).decrypt(
                slot[:NONCE_BYTES], slot[NONCE_BYTES:], bytes([place]) + slots.header.salt
            )
        except InvalidTag:
            continue
        if payload[0] == _Kind.DURESS:
            return Unwrapped(place, None)
        if payload[0] == _Kind.KEY:
            return Unwrapped(place, StoreKeys(payload[1 : 1 + KEY_BYTES]))
    raise StorePassphraseError("wrong passphrase or key file: the store stays locked")


PASSPHRASE_PLACES = (Place.PASSPHRASE, Place.DURESS)
KEY_FILE_PLACES = (Place.KEY_FILE,)
