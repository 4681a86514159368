"""Report keys: the HPKE public keys a publisher receives sealed reports ("drops") on,
and the signed retirement of one (docs/FORMAT.md, "Report keys").

A report key is a signed object of its own (core/signedobject.py), signed by one of the
publisher's signing keys. Its private half is a 32-byte seed: for the hybrid suite the
X-Wing seed of draft-ietf-hpke-pq, expanded with SHAKE256 into the ML-KEM-768 seed and
the X25519 private key; for the X25519 fallback the X25519 private key itself.

Pure: times are passed in; only ``make_report_keypair`` without a seed draws randomness.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import Enum

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshdrop.core import codec, signedobject
from meshdrop.core.keys import Domain
from meshdrop.core.signedobject import Kind, SignerKeysAt, sequence_field, time_field
from meshdrop.errors import FormatError, ReportKeyExpiredError, ReportKeySuiteError

SEED_BYTES = 32
KEY_ID_BYTES = 16
_KEY_ID_PREFIX = b"meshdrop/v1/report-key-id\0"
_MLKEM768_PUBLIC_BYTES = 1184
_X25519_BYTES = 32

REPORT_KEY = Kind("meshdrop-report-key", Domain.REPORT_KEY, 4096)
RETIREMENT = Kind("meshdrop-report-key-retirement", Domain.REPORT_KEY_RETIREMENT, 1024)


class Suite(Enum):
    """HPKE (RFC 9180) base mode suites: (KEM, KDF, AEAD) ids. AES-256-GCM rather than
    ChaCha20-Poly1305 because a browser's WebCrypto can seal with it."""

    MLKEM768_X25519 = "mlkem768-x25519"  # preferred: drops may be stored for years
    X25519 = "x25519"  # fallback, for sealing sides without ML-KEM

    @property
    def ids(self) -> tuple[int, int, int]:
        kem = 0x647A if self is Suite.MLKEM768_X25519 else 0x0020
        return kem, 0x0001, 0x0002  # HKDF-SHA256, AES-256-GCM

    @property
    def public_key_bytes(self) -> int:
        if self is Suite.MLKEM768_X25519:
            return _MLKEM768_PUBLIC_BYTES + _X25519_BYTES
        return _X25519_BYTES

    @property
    def enc_bytes(self) -> int:
        """Nenc of the KEM (RFC 9180 registry; KEM.enc_length() is only in cryptography 49+)."""
        return 1088 + _X25519_BYTES if self is Suite.MLKEM768_X25519 else _X25519_BYTES

    @property
    def hpke_kem(self) -> hpke.KEM:
        return hpke.KEM.MLKEM768_X25519 if self is Suite.MLKEM768_X25519 else hpke.KEM.X25519

    def hpke_suite(self) -> hpke.Suite:
        return hpke.Suite(self.hpke_kem, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)


HybridPublic = hpke.MLKEM768X25519PublicKey | x25519.X25519PublicKey
HybridPrivate = hpke.MLKEM768X25519PrivateKey | x25519.X25519PrivateKey


def report_key_id(suite: Suite, public_key: bytes) -> bytes:
    """SHA-256(prefix || KEM id (2 bytes, big-endian) || public key), first 16 bytes."""
    kem = suite.ids[0].to_bytes(2, "big")
    return hashlib.sha256(_KEY_ID_PREFIX + kem + public_key).digest()[:KEY_ID_BYTES]


def load_public_key(suite: Suite, public_key: bytes) -> HybridPublic:
    """The HPKE public key, or ReportKeySuiteError if the bytes cannot be one."""
    if len(public_key) != suite.public_key_bytes:
        raise ReportKeySuiteError(
            f"a {suite.value} report key is {suite.public_key_bytes} bytes, not {len(public_key)}"
        )
    key: HybridPublic
    try:
        if suite is Suite.X25519:
            key = x25519.X25519PublicKey.from_public_bytes(public_key)
        else:
            key = hpke.MLKEM768X25519PublicKey(
                mlkem.MLKEM768PublicKey.from_public_bytes(public_key[:_MLKEM768_PUBLIC_BYTES]),
                x25519.X25519PublicKey.from_public_bytes(public_key[_MLKEM768_PUBLIC_BYTES:]),
            )
        # A trial seal refuses what parsing lets through: a low-order X25519 point.
        suite.hpke_suite().encrypt(b"", key)
        return key
    except ValueError as exc:
        raise ReportKeySuiteError(f"the {suite.value} report key is not a valid key") from exc


@dataclass(frozen=True, repr=False)
class ReportPrivateKey:
    """The private half of a report key: its suite and 32-byte seed. The repr names only
    the key id, so that a seed never lands in a log or a traceback."""

    suite: Suite
    seed: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.seed, bytes) or len(self.seed) != SEED_BYTES:
            raise ValueError(f"a report private key is a {SEED_BYTES}-byte seed")

    def __repr__(self) -> str:
        return f"ReportPrivateKey({self.suite.value}, id={self.key_id.hex()})"

    def hpke_key(self) -> HybridPrivate:
        if self.suite is Suite.X25519:
            return x25519.X25519PrivateKey.from_private_bytes(self.seed)
        expanded = hashlib.shake_256(self.seed).digest(96)
        return hpke.MLKEM768X25519PrivateKey(
            mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64]),
            x25519.X25519PrivateKey.from_private_bytes(expanded[64:]),
        )

    @property
    def public_key(self) -> bytes:
        key = self.hpke_key()
        if isinstance(key, x25519.X25519PrivateKey):
            return key.public_key().public_bytes_raw()
        # The component keys are not reachable from the hybrid object: derive them again.
        expanded = hashlib.shake_256(self.seed).digest(96)
        pq = mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64]).public_key()
        classic = x25519.X25519PrivateKey.from_private_bytes(expanded[64:]).public_key()
        return pq.public_bytes_raw() + classic.public_bytes_raw()

    @property
    def key_id(self) -> bytes:
        return report_key_id(self.suite, self.public_key)


@dataclass(frozen=True)
class ReportKey:
    """A publisher's report public key, valid for sealing from ``created`` to
    ``not_after``. ``sequence`` orders all report-key objects of one publisher."""

    publisher: bytes
    suite: Suite
    public_key: bytes
    created: int
    not_after: int
    sequence: int

    @property
    def key_id(self) -> bytes:
        return report_key_id(self.suite, self.public_key)

    def hpke_public_key(self) -> HybridPublic:
        return load_public_key(self.suite, self.public_key)

    def to_value(self) -> dict[str, object]:
        return {
            "publisher": self.publisher,
            "key_id": self.key_id,
            "suite": self.suite.value,
            "public_key": self.public_key,
            "created": self.created,
            "not_after": self.not_after,
            "sequence": self.sequence,
        }


@dataclass(frozen=True)
class KeyRetirement:
    """ "Retire report key ``key_id`` from ``retire_at``": seal nothing more to it; drops
    sealed to it may still be opened until its private key is destroyed."""

    publisher: bytes
    key_id: bytes
    retire_at: int
    created: int
    sequence: int

    def to_value(self) -> dict[str, object]:
        return {
            "publisher": self.publisher,
            "key_id": self.key_id,
            "retire_at": self.retire_at,
            "created": self.created,
            "sequence": self.sequence,
        }


def make_report_keypair(
    suite: Suite,
    publisher: bytes,
    created: int,
    not_after: int,
    sequence: int,
    seed: bytes | None = None,
) -> tuple[ReportPrivateKey, ReportKey]:
    """A new report key pair (from ``seed`` if given, else from the OS's randomness);
    the public half is not yet signed (see ``sign_report_key``)."""
    if not created < not_after:
        raise ValueError("a report key must end after it starts")
    private = ReportPrivateKey(suite, secrets.token_bytes(SEED_BYTES) if seed is None else seed)
    public = ReportKey(publisher, suite, private.public_key, created, not_after, sequence)
    return private, public


def sign_report_key(key: ReportKey, signing_key: Ed25519PrivateKey) -> bytes:
    return signedobject.sign_object(REPORT_KEY, key.to_value(), signing_key)


def sign_retirement(retirement: KeyRetirement, signing_key: Ed25519PrivateKey) -> bytes:
    return signedobject.sign_object(RETIREMENT, retirement.to_value(), signing_key)


def verify_report_key(
    blob: bytes, publisher: bytes, signer_public_keys_valid_at: SignerKeysAt, now: int
) -> ReportKey:
    """The report key in ``blob``, if ``publisher`` signed it with a signing key valid at
    its creation, its key id matches its key, and ``now`` is not past its not-after."""
    what = "the report key"
    opened = signedobject.open_object(blob, REPORT_KEY, what)
    fields = opened.fields
    suite_name = fields.text("suite", 40)
    try:
        suite = Suite(suite_name)
    except ValueError as exc:
        raise ReportKeySuiteError(f"{what} is of an unknown suite {suite_name!r}") from exc
    key = ReportKey(
        publisher=fields.binary("publisher", signedobject.PUBLISHER_ID_BYTES),
        suite=suite,
        public_key=fields.binary("public_key", suite.public_key_bytes),
        created=time_field(fields, "created"),
        not_after=time_field(fields, "not_after"),
        sequence=sequence_field(fields),
    )
    stated_id = fields.binary("key_id", KEY_ID_BYTES)
    fields.done()
    signedobject.check_signed(
        opened, REPORT_KEY, publisher, key.created, signer_public_keys_valid_at
    )
    if stated_id != key.key_id:
        raise FormatError(f"{what} states a key id that is not its key's")
    if key.not_after <= key.created:
        raise FormatError(f"{what} ends before it starts")
    load_public_key(suite, key.public_key)
    if now > key.not_after:
        raise ReportKeyExpiredError(
            f"{what} {key.key_id.hex()} expired; nothing may be sealed to it"
        )
    return key


def verify_retirement(
    blob: bytes, publisher: bytes, signer_public_keys_valid_at: SignerKeysAt
) -> KeyRetirement:
    """The retirement in ``blob``, if ``publisher`` signed it with a signing key valid at
    its creation. A retirement does not expire."""
    what = "the report key retirement"
    opened = signedobject.open_object(blob, RETIREMENT, what)
    fields = opened.fields
    retirement = KeyRetirement(
        publisher=fields.binary("publisher", signedobject.PUBLISHER_ID_BYTES),
        key_id=fields.binary("key_id", KEY_ID_BYTES),
        retire_at=time_field(fields, "retire_at"),
        created=time_field(fields, "created"),
        sequence=sequence_field(fields),
    )
    fields.done()
    signedobject.check_signed(
        opened, RETIREMENT, publisher, retirement.created, signer_public_keys_valid_at
    )
    return retirement


# The reserved bundle that carries a publisher's report keys, retirements and latest ack
# list to every node (docs/FORMAT.md, "The report-keys bundle").
REPORT_KEYS_BUNDLE = "report-keys"
KEYS_FILE = "keys.bin"
ACKS_FILE = "acks.bin"
MAX_KEY_OBJECTS = 256
MAX_KEYS_FILE_BYTES = MAX_KEY_OBJECTS * (REPORT_KEY.max_bytes + 256)


def encode_keys_file(blobs: list[bytes]) -> bytes:
    """``keys.bin``: the canonical msgpack array of signed report-key and retirement
    objects, in sequence order."""
    if len(blobs) > MAX_KEY_OBJECTS:
        raise ValueError(f"a keys file holds at most {MAX_KEY_OBJECTS} objects")
    return codec.pack(list(blobs))


def parse_keys_file(data: bytes) -> list[bytes]:
    """The signed objects in a ``keys.bin`` (each still to be verified)."""
    what = "the report keys file"
    limits = codec.Limits(
        max_bytes=MAX_KEYS_FILE_BYTES,
        max_depth=1,
        max_items=MAX_KEY_OBJECTS,
        max_containers=1,
        max_bin=REPORT_KEY.max_bytes + 256,
    )
    value = codec.unpack(data, limits, what)
    if not isinstance(value, list) or not all(isinstance(b, bytes) for b in value):
        raise FormatError(f"{what} is not a list of signed objects")
    return list(value)
