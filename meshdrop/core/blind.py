"""Blind courier folders (docs/FORMAT.md section 25): the format, without any I/O.

A blind file is an open courier file (a bundle, a part, a publisher file, the want file, a
drop, or the folder's marker) encrypted for a circle::

    salt (32 random bytes)
    segment 0, segment 1, ... segment n-1: each AES-256-GCM(plaintext of SEGMENT bytes,
        the last one 1..SEGMENT bytes) with its 16-byte tag

The plaintext is the inner header, the open file's bytes from where the header says (a
big bundle's data starts on a segment), and zeros up to the size class.
Key: file key = HKDF-SHA256(ikm = blind key, salt = the file's salt, info = FILE_INFO);
blind key = core/circles.derive(secret, Purpose.BLIND, 32). Nonce of segment i: i as 11
bytes big-endian, then 1 for the last segment and 0 for the others (the STREAM construction
of Hoang, Reyhanitabar, Rogaway and Vizar, 2015): cutting, reordering, a segment of another
file and a missing last segment all fail authentication.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import struct
from dataclasses import dataclass
from enum import IntEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from meshdrop.core.circles import CircleSecret, Purpose, derive
from meshdrop.errors import BlindFileError

KEY_BYTES = 32
SALT_BYTES = 32
SEGMENT = 1024 * 1024  # plaintext bytes of every segment but the last
TAG_BYTES = 16
NONCE_COUNTER_BYTES = 11
FILE_INFO = b"meshdrop blind v1 file"
MARKER_LABEL = b"meshdrop blind v1 marker"
MIN_CLASS = 16 * 1024  # the smallest blind file
NAME_CHARS = 8
NAME_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
NAME_SUFFIX = ".dat"
NAME_PATTERN = re.compile(r"[a-z0-9]{8}\.dat")
INNER_VERSION = 1
# version, kind, name length, the open file's length, where it starts in the plaintext
INNER = struct.Struct(">BBHQI")
MAX_LOGICAL_NAME = 120
MAX_INNER = INNER.size + MAX_LOGICAL_NAME
ALIGN_FROM = 2 * SEGMENT  # open files at least this big start their data on a segment
ALIGNED_PARTS_FROM = 64 * SEGMENT  # part sizes from which parts leave room for that


class Kind(IntEnum):
    BUNDLE = 1  # <name>-<hash>.mdrop
    PART = 2  # <name>-<hash>.pNNN
    PUBLISHER = 3  # <fingerprint>.pub
    WANT = 4  # want.mdw
    DROP = 5  # drops/<id>.drop
    MARKER = 6  # "" (the folder's marker: no content)


_BUNDLE_BASE = r"[a-z0-9][a-z0-9._-]{0,100}-[0-9a-f]{12}"
_LOGICAL = {
    Kind.BUNDLE: re.compile(_BUNDLE_BASE + r"\.mdrop"),
    Kind.PART: re.compile(_BUNDLE_BASE + r"\.p[0-9]{3}"),
    Kind.PUBLISHER: re.compile(r"[0-9a-z]{16}\.pub"),
    Kind.WANT: re.compile(r"want\.mdw"),
    Kind.DROP: re.compile(r"drops/[0-9a-f]{64}\.drop"),
    Kind.MARKER: re.compile(r""),
}


def blind_key(secret: CircleSecret) -> bytes:
    return derive(secret, Purpose.BLIND, KEY_BYTES)


def file_key(key: bytes, salt: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=FILE_INFO)
    return hkdf.derive(key)


def _name_from(number: int) -> str:
    chars = []
    for _ in range(NAME_CHARS):
        number, digit = divmod(number, len(NAME_ALPHABET))
        chars.append(NAME_ALPHABET[digit])
    return "".join(chars) + NAME_SUFFIX


def marker_name(key: bytes) -> str:
    """The marker file's name in a folder blind for ``key``: how a member finds it."""
    digest = hmac.new(key, MARKER_LABEL, hashlib.sha256).digest()
    return _name_from(int.from_bytes(digest[:8], "big"))


def random_name() -> str:
    return _name_from(secrets.randbelow(len(NAME_ALPHABET) ** NAME_CHARS))


def looks_blind(name: str) -> bool:
    """Whether a file name is one a blind folder uses (FAT may show it in capitals)."""
    return NAME_PATTERN.fullmatch(name.lower()) is not None


# Sizes


def segment_count(plaintext: int) -> int:
    return max(1, -(-plaintext // SEGMENT))


def file_size_for(plaintext: int) -> int:
    return SALT_BYTES + plaintext + TAG_BYTES * segment_count(plaintext)


def plaintext_size(file_size: int) -> int | None:
    """The plaintext a blind file of ``file_size`` bytes holds, or None if no blind file
    has that size."""
    body = file_size - SALT_BYTES
    if body <= TAG_BYTES:
        return None
    count = -(-body // (SEGMENT + TAG_BYTES))
    last = body - (count - 1) * (SEGMENT + TAG_BYTES)
    if last <= TAG_BYTES:
        return None
    return body - count * TAG_BYTES


def size_classes(top: int) -> list[int]:
    """MIN_CLASS doubled while under ``top`` (the part size), then ``top`` itself."""
    classes = []
    size = MIN_CLASS
    while size < top:
        classes.append(size)
        size *= 2
    return [*classes, top]


def class_for(plaintext: int, top: int) -> int | None:
    """The smallest size class whose file holds ``plaintext`` bytes, or None."""
    need = file_size_for(plaintext)
    for size in size_classes(top):
        if size >= need and plaintext_size(size) is not None:
            return size
    return None


def capacity(top: int) -> int:
    """The largest open file that fits a blind file of ``top`` bytes, whatever its name."""
    plaintext = plaintext_size(top)
    if plaintext is None:
        return 0
    # Room to start the data on a segment (aligned_start), where it costs little.
    return plaintext - MAX_INNER - (SEGMENT if top >= ALIGNED_PARTS_FROM else 0)


def aligned_start(header_size: int, head: int) -> int:
    """Where an open file whose data follows ``head`` bytes (its header and envelope)
    starts, so that its data starts on a segment: each of its 1 MiB chunks is then one
    segment, read with one decryption."""
    return header_size + (-(header_size + head)) % SEGMENT


# The inner header


@dataclass(frozen=True)
class InnerHeader:
    kind: Kind
    name: str  # the open file's name in the courier folder ("" for the marker)
    length: int  # the open file's true length
    start: int = 0  # where it starts in the plaintext; 0: right after the header

    @property
    def size(self) -> int:
        return INNER.size + len(self.name)

    @property
    def begin(self) -> int:
        """Where the open file starts in the plaintext (zeros between the header and it)."""
        return self.start or self.size

    def encode(self) -> bytes:
        raw = self.name.encode("ascii")
        fields = (INNER_VERSION, int(self.kind), len(raw), self.length, self.begin)
        return INNER.pack(*fields) + raw


def check_logical(kind: Kind, name: str) -> None:
    if len(name) > MAX_LOGICAL_NAME or _LOGICAL[kind].fullmatch(name) is None or ".." in name:
        raise BlindFileError(f"a blind file's inner name {name[:40]!r} is not allowed")


def parse_inner(plaintext: bytes, room: int, what: str) -> InnerHeader:
    """The inner header at the start of ``plaintext`` (the first segment); ``room`` is the
    file's whole plaintext size: the header and the open file must fit in it."""
    if len(plaintext) < INNER.size:
        raise BlindFileError(f"{what} is too short for a blind file")
    version, kind_number, name_length, length, start = INNER.unpack_from(plaintext)
    if version != INNER_VERSION:
        raise BlindFileError(f"{what} uses blind format {version}, which this node cannot read")
    try:
        kind = Kind(kind_number)
    except ValueError as exc:
        raise BlindFileError(f"{what} holds a file of an unknown kind ({kind_number})") from exc
    if name_length > MAX_LOGICAL_NAME or INNER.size + name_length > len(plaintext):
        raise BlindFileError(f"{what} names its file with {name_length} bytes, over the limit")
    raw = plaintext[INNER.size : INNER.size + name_length]
    try:
        name = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise BlindFileError(f"{what} names its file with bytes that are not allowed") from exc
    check_logical(kind, name)
    size = INNER.size + name_length
    if not size <= start < size + SEGMENT:
        raise BlindFileError(f"{what} puts its file at {start}, where no file starts")
    if length > room - start:
        raise BlindFileError(f"{what} claims {length} bytes, more than it can hold")
    return InnerHeader(kind, name, length, start)


# Segments


def nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(NONCE_COUNTER_BYTES, "big") + (b"\x01" if last else b"\x00")


def open_segment(aead: AESGCM, index: int, last: bool, sealed: bytes, what: str) -> bytes:
    try:
        return aead.decrypt(nonce(index, last), sealed, None)
    except InvalidTag as exc:
        raise BlindFileError(
            f"{what} does not open with the circle's key (damaged, cut short, or sealed "
            "for another circle)"
        ) from exc
