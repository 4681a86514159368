"""The manifest: everything a bundle is, committed to by one signature.

Each file's data is cut into fixed-size chunks and the manifest lists every chunk's
SHA-256, so any transport can verify as it goes, resume, and reuse unchanged chunks.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from meshdrop.core import codec
from meshdrop.core.paths import check_bundle_paths
from meshdrop.core.records import MAX_TIME
from meshdrop.core.schema import Fields
from meshdrop.errors import FormatError, IntegrityError

MANIFEST_TYPE = "meshdrop-manifest"
MANIFEST_FORMAT = 1
CHUNK_SIZE = 1024 * 1024  # fixed in format 1; docs/FORMAT.md says why
HASH_BYTES = 32
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_FILES = 100_000
MAX_CHUNKS = 450_000  # ~440 GiB: what fits in MAX_MANIFEST_BYTES at 34 bytes a hash
MAX_FILE_SIZE = 2**40
MAX_TITLE = 200
MAX_DESCRIPTION = 4000
MAX_MEDIA_TYPE = 127
MAX_PRIORITY = 1000

BUNDLE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,4}|mul|und")
MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")

# Every field name, and what the largest valid manifest holds: the top map and its files
# list; per file, one map and its chunks list.
_TOP_FIELDS = frozenset(
    [
        "type",
        "format",
        "chunk_size",
        "publisher",
        "name",
        "version",
        "created",
        "expires",
        "title",
        "description",
        "language",
        "priority",
        "files",
    ]
)
_FILE_FIELDS = frozenset({"path", "size", "type", "chunks"})
_LIMITS = codec.Limits(
    max_bytes=MAX_MANIFEST_BYTES,
    max_depth=5,
    max_items=len(_TOP_FIELDS) + (1 + len(_FILE_FIELDS)) * MAX_FILES + MAX_CHUNKS,
    max_containers=2 + 2 * MAX_FILES,
    keys=_TOP_FIELDS | _FILE_FIELDS,
    max_str=4 * MAX_DESCRIPTION,  # 4 bytes per character at most in UTF-8
    max_bin=HASH_BYTES,
)


def check_bundle_name(name: str) -> str:
    if not BUNDLE_NAME.fullmatch(name):
        raise FormatError(
            f"bundle name {name!r} must be 1-64 characters: lower-case letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    return name


def chunk_count(size: int) -> int:
    return -(-size // CHUNK_SIZE)


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    media_type: str
    chunks: tuple[bytes, ...]

    def chunk_sizes(self) -> list[int]:
        full, rest = divmod(self.size, CHUNK_SIZE)
        return [CHUNK_SIZE] * full + ([rest] if rest else [])


@dataclass(frozen=True)
class ChunkRef:
    """One chunk of a bundle: where it lies in the data section and what it must hash to."""

    path: str
    offset: int  # from the start of the data section
    size: int
    digest: bytes


@dataclass(frozen=True)
class Manifest:
    publisher: bytes
    name: str
    version: int
    created: int
    expires: int | None
    title: str
    description: str
    language: str
    priority: int
    files: tuple[FileEntry, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def chunk_refs(self) -> list[ChunkRef]:
        """Every chunk in data order (a chunk shared by two files appears twice)."""
        refs = []
        offset = 0
        for entry in self.files:
            for size, digest in zip(entry.chunk_sizes(), entry.chunks, strict=True):
                refs.append(ChunkRef(entry.path, offset, size, digest))
                offset += size
        return refs

    def to_value(self) -> dict[str, codec.Value]:
        value: dict[str, codec.Value] = {
            "type": MANIFEST_TYPE,
            "format": MANIFEST_FORMAT,
            "publisher": self.publisher,
            "name": self.name,
            "version": self.version,
            "created": self.created,
            "title": self.title,
            "description": self.description,
            "language": self.language,
            "priority": self.priority,
            "chunk_size": CHUNK_SIZE,
            "files": [
                {"path": f.path, "size": f.size, "type": f.media_type, "chunks": list(f.chunks)}
                for f in self.files
            ],
        }
        if self.expires is not None:
            value["expires"] = self.expires
        return value

    def encode(self) -> bytes:
        """Canonical bytes, after checking that parsing them gives this manifest back."""
        data = codec.pack(self.to_value())
        parse_manifest(data)
        return data


def verify_chunk(ref: ChunkRef, data: bytes | memoryview) -> None:
    """Raise IntegrityError unless ``data`` is exactly the chunk ``ref`` describes."""
    if len(data) != ref.size or hashlib.sha256(data).digest() != ref.digest:
        raise IntegrityError(
            f"the data of {ref.path!r} does not match its signed hash (damaged or altered)"
        )


def parse_manifest(data: bytes, what: str = "the manifest") -> Manifest:
    fields = Fields(codec.unpack(data, _LIMITS, what), what)
    if fields.text("type", 40) != MANIFEST_TYPE:
        raise FormatError(f"{what} is not a meshdrop manifest")
    if fields.integer("format", 0, 2**16) != MANIFEST_FORMAT:
        raise FormatError(f"{what} uses a manifest format this meshdrop does not know")
    if fields.integer("chunk_size", 1, 2**32) != CHUNK_SIZE:
        raise FormatError(f"{what} uses a chunk size other than {CHUNK_SIZE}")
    name = fields.text("name", 64)
    try:
        check_bundle_name(name)
    except FormatError as exc:
        raise FormatError(f"{what} has an invalid {exc}") from exc
    language = fields.text("language", 35)
    if not LANGUAGE.fullmatch(language):
        raise FormatError(f"{what} has an invalid language code {language!r}")
    created = fields.integer("created", 0, MAX_TIME)
    expires = fields.integer("expires", 0, MAX_TIME) if fields.has("expires") else None
    if expires is not None and expires <= created:
        raise FormatError(f"{what} expires before it was created")
    files = _parse_files(fields.map_list("files", 0, MAX_FILES), what)
    manifest = Manifest(
        publisher=fields.binary("publisher", 32),
        name=name,
        version=fields.integer("version", 1, 2**63 - 1),
        created=created,
        expires=expires,
        title=fields.text("title", MAX_TITLE),
        description=fields.text("description", MAX_DESCRIPTION),
        language=language,
        priority=fields.integer("priority", -MAX_PRIORITY, MAX_PRIORITY),
        files=files,
    )
    fields.done()
    return manifest


def _parse_files(items: Sequence[object], what: str) -> tuple[FileEntry, ...]:
    files = []
    total_chunks = 0
    for i, item in enumerate(items):
        ff = Fields(item, f"file entry {i + 1} of {what}")
        path = ff.text("path", 1024, min_chars=1)
        size = ff.integer("size", 0, MAX_FILE_SIZE)
        media_type = ff.text("type", MAX_MEDIA_TYPE)
        if not MEDIA_TYPE.fullmatch(media_type):
            raise FormatError(f"{what} gives {path!r} an invalid media type")
        chunks = tuple(ff.bytes_list("chunks", HASH_BYTES, 0, MAX_CHUNKS))
        if len(chunks) != chunk_count(size):
            raise FormatError(
                f"{what} declares {size} bytes for {path!r} but {len(chunks)} chunk hashes"
            )
        total_chunks += len(chunks)
        if total_chunks > MAX_CHUNKS:
            raise FormatError(f"{what} lists more than {MAX_CHUNKS} chunks")
        ff.done()
        files.append(FileEntry(path, size, media_type, chunks))
    check_bundle_paths(f.path for f in files)
    return tuple(files)
