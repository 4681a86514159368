"""Circles: a group of nodes whose owners share one secret, handed over in person as an
invite code. Everything a member needs is derived from that secret here (docs/PROTOCOL.md,
"Circles: secrets, invites, derived keys and tokens"): the invite code, the local circle id,
the discovery token of each epoch and the seed and name of each epoch's TLS CA.

Pure: the caller passes ``now`` (Unix seconds); nothing here reads the clock."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import Enum

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from meshdrop.errors import (
    InviteCharacterError,
    InviteChecksumError,
    InviteLengthError,
    InviteVersionError,
    UsageError,
)

SECRET_BYTES = 20
INVITE_VERSION = 1
CHECKSUM_BYTES = 3
INVITE_PAYLOAD_BYTES = 1 + SECRET_BYTES + CHECKSUM_BYTES  # 24 bytes = 192 bits
INVITE_CHARS = math.ceil(INVITE_PAYLOAD_BYTES * 8 / 5)  # 39; the last has 3 zero bits
INVITE_GROUP = 4
INVITE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # RFC 4648 base32
# What people read for a letter: digits that are not in the alphabet, read as the letter.
_LOOKALIKES = {"0": "O", "1": "I", "8": "B"}
# Separators a person (or a copy from a chat or a PDF) puts between the groups.
_SEPARATORS = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2212")

EPOCH_SECONDS = 86_400
WINDOW_EPOCHS = 2  # a receiver accepts its own epoch and this many on either side
NONCE_BYTES = 8
TAG_BYTES = 8
TOKEN_BYTES = NONCE_BYTES + TAG_BYTES
KEY_BYTES = 32
CIRCLE_ID_BYTES = 8
CA_NAME_BYTES = 16

NAME_MAX_CHARS = 64
_NAME_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})

_LABEL_PREFIX = b"meshdrop circle v1 "


class Purpose(Enum):
    """What a derived value is for: each its own HKDF ``info`` label. No label is a
    prefix of another, so a label followed by an epoch never equals a different label."""

    TOKEN = b"token"
    CA_SEED = b"ca-seed"
    CA_NAME = b"ca-name"
    CIRCLE_ID = b"circle-id"
    BLIND = b"blind-files"  # blind courier folders (core/blind.py, FORMAT.md section 25)


@dataclass(frozen=True, repr=False)
class CircleSecret:
    """The 20 secret bytes of one generation of a circle. Its repr shows only the circle
    id, so that a secret never lands in a log or a traceback."""

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != SECRET_BYTES:
            raise ValueError(f"a circle secret is {SECRET_BYTES} bytes")

    def __repr__(self) -> str:
        return f"CircleSecret(id={self.id})"

    @classmethod
    def generate(cls) -> CircleSecret:
        return cls(secrets.token_bytes(SECRET_BYTES))

    @property
    def id(self) -> str:
        return circle_id(self)


def derive(secret: CircleSecret, purpose: Purpose, length: int, epoch: int | None = None) -> bytes:
    """HKDF-SHA256 of the secret (no salt), ``info`` = "meshdrop circle v1 " + the
    purpose's label, then the epoch as 8 bytes big-endian for per-epoch values."""
    info = _LABEL_PREFIX + purpose.value
    if epoch is not None:
        info += epoch_bytes(epoch)
    hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info)
    return hkdf.derive(secret.raw)


def epoch_bytes(epoch: int) -> bytes:
    if not 0 <= epoch < 2**64:
        raise ValueError(f"epoch {epoch} is out of range")
    return epoch.to_bytes(8, "big")


def circle_id(secret: CircleSecret) -> str:
    """The local name of a circle generation (16 hex digits): the same on every member's
    node, for files and `circle ls`; never sent on the wire."""
    return derive(secret, Purpose.CIRCLE_ID, CIRCLE_ID_BYTES).hex()


def token_key(secret: CircleSecret, epoch: int) -> bytes:
    return derive(secret, Purpose.TOKEN, KEY_BYTES, epoch)


def ca_seed(secret: CircleSecret, epoch: int) -> bytes:
    """The 32-byte Ed25519 private seed of the circle's CA in ``epoch``."""
    return derive(secret, Purpose.CA_SEED, KEY_BYTES, epoch)


def ca_name(secret: CircleSecret, epoch: int) -> str:
    """The subject common name of the circle's CA in ``epoch`` (32 hex digits)."""
    return derive(secret, Purpose.CA_NAME, CA_NAME_BYTES, epoch).hex()


def epoch_of(now: float) -> int:
    """The day number of ``now``: floor(now / 86400). A clock before 1970 (or not a
    number) counts as epoch 0: it matches no member's, like any clock far off."""
    if not math.isfinite(now) or now < 0:
        return 0
    return int(now // EPOCH_SECONDS)


def window(now: float) -> range:
    """The epochs a receiver whose clock reads ``now`` accepts: its own and two on each
    side (clocks may be two days apart), none below 0."""
    epoch = epoch_of(now)
    return range(max(0, epoch - WINDOW_EPOCHS), epoch + WINDOW_EPOCHS + 1)


def make_token(secret: CircleSecret, epoch: int, nonce: bytes) -> bytes:
    """nonce (8 bytes) || the first 8 bytes of HMAC-SHA256(token key of ``epoch``, nonce)."""
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"a token nonce is {NONCE_BYTES} bytes")
    tag = hmac.new(token_key(secret, epoch), nonce, hashlib.sha256).digest()[:TAG_BYTES]
    return nonce + tag


def new_token(secret: CircleSecret, now: float) -> bytes:
    """A token for an announcement now, with a fresh random nonce: no two repeat."""
    return make_token(secret, epoch_of(now), secrets.token_bytes(NONCE_BYTES))


@dataclass(frozen=True)
class Recognised:
    """Whose token it is, and the epoch it was made for (the sender's clock, roughly)."""

    secret: CircleSecret
    epoch: int


def recognise(circles: Iterable[CircleSecret], token: bytes, now: float) -> Recognised | None:
    """The circle (of ``circles``) whose member made ``token`` in an epoch of our window,
    or None: a token of a stranger, of another circle, from outside the window, or of the
    wrong length. Every candidate is compared in constant time."""
    if len(token) != TOKEN_BYTES:
        return None
    nonce, tag = token[:NONCE_BYTES], token[NONCE_BYTES:]
    found: Recognised | None = None
    for secret in circles:
        for epoch in window(now):
            expected = make_token(secret, epoch, nonce)[NONCE_BYTES:]
            if hmac.compare_digest(expected, tag) and found is None:
                found = Recognised(secret, epoch)
    return found


def _checksum(version_and_secret: bytes) -> bytes:
    return hashlib.sha256(version_and_secret).digest()[:CHECKSUM_BYTES]


def encode_invite(secret: CircleSecret) -> str:
    """The invite code: base32 of version || secret || checksum, unpadded, in groups of
    four letters joined by '-' (10 groups, the last of three)."""
    head = bytes([INVITE_VERSION]) + secret.raw
    compact = base64.b32encode(head + _checksum(head)).decode("ascii").rstrip("=")
    return "-".join(compact[i : i + INVITE_GROUP] for i in range(0, len(compact), INVITE_GROUP))


def decode_invite(text: str) -> CircleSecret:
    """The secret of an invite code as a person typed it: any case, spaces and dashes
    anywhere, 0/1/8 for O/I/B. Checked in this order: the characters, the length, the
    checksum (then a typo is the likely cause), the version."""
    compact = _compact(text)
    if len(compact) != INVITE_CHARS:
        raise InviteLengthError(_length_problem(len(compact)))
    padded = compact + "=" * (-len(compact) % 8)
    payload = base64.b32decode(padded)
    head, checksum = payload[:-CHECKSUM_BYTES], payload[-CHECKSUM_BYTES:]
    # The last character carries 3 bits beyond the payload: they must be 0, so each secret
    # has one code and a typo there is caught too.
    if not hmac.compare_digest(_checksum(head), checksum) or _spare_bits(compact[-1]):
        raise InviteChecksumError(
            "the invite code does not check out: a character is probably mistyped; "
            "compare each group with the invite again"
        )
    if head[0] != INVITE_VERSION:
        raise InviteVersionError(
            f"this invite code is of a newer kind (version {head[0]}) than this meshdrop "
            "reads: update meshdrop"
        )
    return CircleSecret(head[1:])


def _compact(text: str) -> str:
    out: list[str] = []
    for ch in text:
        if ch.isspace() or ch in _SEPARATORS:
            continue
        letter = _LOOKALIKES.get(ch, ch.upper() if ch.isascii() else ch)
        if letter not in INVITE_ALPHABET:
            shown = ch if ch.isprintable() else ascii(ch)[1:-1]
            group = len(out) // INVITE_GROUP + 1
            raise InviteCharacterError(
                f"the invite code has {shown!r} in group {group}, which no invite code "
                "has: they use letters A-Z and digits 2-7 only"
            )
        out.append(letter)
    return "".join(out)


def _length_problem(count: int) -> str:
    if count == 0:
        return "no invite code given"
    if count < INVITE_CHARS:
        missing = INVITE_CHARS - count
        return (
            f"the invite code is too short: {count} of its {INVITE_CHARS} letters and digits "
            f"({missing} missing)"
        )
    return (
        f"the invite code is too long: {count} letters and digits, not {INVITE_CHARS} "
        f"({count - INVITE_CHARS} extra)"
    )


def _spare_bits(last: str) -> int:
    spare = INVITE_CHARS * 5 - INVITE_PAYLOAD_BYTES * 8
    return INVITE_ALPHABET.index(last) & ((1 << spare) - 1)


@dataclass(frozen=True)
class Generation:
    """One secret of a circle: ``number`` counts locally from 1 (a member who joined
    after a rekey starts at 1 too); ``retired`` is when a rekey replaced it."""

    number: int
    secret: CircleSecret
    created: int
    retired: int | None = None


@dataclass(frozen=True)
class Circle:
    """A circle this node is in: the owner's NAME for it (never sent anywhere) and its
    generations, oldest first; the last is the current one, the only one the LAN uses.
    Retired ones are kept for sticks sealed before the rekey."""

    name: str
    generations: tuple[Generation, ...]

    def __post_init__(self) -> None:
        if not self.generations:
            raise ValueError("a circle has at least one generation")

    @property
    def current(self) -> Generation:
        return self.generations[-1]

    @property
    def id(self) -> str:
        """The id of the current generation: the same on every member's node."""
        return self.current.secret.id

    @property
    def retired(self) -> tuple[Generation, ...]:
        return self.generations[:-1]

    def holding(self, secret: CircleSecret) -> Generation | None:
        """The generation of this circle with ``secret``, if any."""
        for generation in self.generations:
            if hmac.compare_digest(generation.secret.raw, secret.raw):
                return generation
        return None

    def rekeyed(self, secret: CircleSecret, now: int) -> Circle:
        """This circle with ``secret`` as its new current generation, the old one retired."""
        old = replace(self.current, retired=now)
        new = Generation(self.current.number + 1, secret, created=now)
        return Circle(self.name, (*self.retired, old, new))


def new_circle(name: str, secret: CircleSecret, now: int) -> Circle:
    return Circle(check_circle_name(name), (Generation(1, secret, created=now),))


def check_circle_name(name: str) -> str:
    """A circle's name as stored: NFC, without surrounding spaces. Refused: empty, longer
    than 64 characters, control or invisible characters."""
    cleaned = unicodedata.normalize("NFC", name).strip()
    if not cleaned:
        raise UsageError("a circle needs a name (it stays on this node, never sent anywhere)")
    if len(cleaned) > NAME_MAX_CHARS:
        raise UsageError(f"a circle name has at most {NAME_MAX_CHARS} characters")
    if any(unicodedata.category(ch) in _NAME_REFUSED_CATEGORIES for ch in cleaned):
        raise UsageError("a circle name cannot have control or invisible characters")
    return cleaned


def same_name(a: str, b: str) -> bool:
    """Whether two circle names are the same to a person (case does not count)."""
    return _folded(a) == _folded(b)


def _folded(name: str) -> str:
    return unicodedata.normalize("NFC", name).strip().casefold()
