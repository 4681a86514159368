"""Pack a folder (as listed by ``scan.py``) into one signed .mdrop bundle.

Every source byte is read once: each chunk is hashed (on all cores) and written at its
final place in a temp file beside the bundle, after room left for the header and the
envelope. Their size is known before hashing (every chunk hash, the signature and the
signer key have fixed sizes), so once all chunks are in, the signed envelope is written
in front of them and the temp file renamed over the bundle. A file that changes while
it is packed is refused, never packed with hashes that do not match it. The same folder
and options always give the same bytes.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshdrop.bulkio import pwrite_all, read_reusable, start_writeback
from meshdrop.core.bundle import HEADER_SIZE, Envelope, encode_header, parse_envelope
from meshdrop.core.keys import SIGNATURE_BYTES, Domain, public_bytes, sign
from meshdrop.core.manifest import (
    CHUNK_SIZE,
    HASH_BYTES,
    LANGUAGE,
    MAX_CHUNKS,
    MAX_DESCRIPTION,
    MAX_FILE_SIZE,
    MAX_FILES,
    MAX_PRIORITY,
    MAX_TIME,
    MAX_TITLE,
    FileEntry,
    Manifest,
    check_bundle_name,
    chunk_count,
)
from meshdrop.core.trust import PublisherState, start_state
from meshdrop.core.verify import describe_time, verify_envelope
from meshdrop.errors import FormatError, StoreError, UsageError
from meshdrop.fs import atomic_writer
from meshdrop.publish.scan import SourceFile, media_type_for, scan_folder, show_name

Progress = Callable[[int], None]

MAX_VERSION = 2**63 - 1
MAX_HASH_WORKERS = 16  # a disk rarely feeds more cores than this; each adds a chunk buffer
CHUNKS_IN_FLIGHT_PER_WORKER = 4
WRITEBACK_STEP = 16 * CHUNK_SIZE  # bytes written between hints to start writing to disk

# O_NONBLOCK: a FIFO swapped in after the scan must not hang the open.
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def pack_folder(
    src: Path,
    out: Path,
    *,
    signing_key: Ed25519PrivateKey,
    state: PublisherState,
    name: str,
    version: int,
    created: int,
    expires: int | None,
    title: str,
    description: str,
    language: str,
    priority: int,
    progress: Progress | None = None,
) -> Manifest:
    """Write every file under ``src`` into the bundle ``out`` (replacing it atomically),
    signed with ``signing_key`` for the publisher whose chain is ``state``. ``progress(n)``
    is called as bytes are hashed and written: the total size, once."""
    _check_metadata(name, version, created, expires, title, description, language, priority)
    state.check_signer(public_bytes(signing_key), name, created)
    _check_output(src, out)
    files = scan_folder(src)
    _check_size(src, files)
    signer = public_bytes(signing_key)

    def manifest_of(chunks: Sequence[tuple[bytes, ...]]) -> Manifest:
        entries = tuple(
            FileEntry(f.path, f.size, media_type_for(f.path), c)
            for f, c in zip(files, chunks, strict=True)
        )
        return Manifest(
            state.publisher,
            name,
            version,
            created,
            expires,
            title,
            description,
            language,
            priority,
            entries,
        )

    # Placeholder hashes and signature have the real ones' sizes, so the draft envelope
    # is exactly as long as the signed one will be: the data can be written first.
    draft = _check_fits(
        src, manifest_of([(bytes(HASH_BYTES),) * chunk_count(f.size) for f in files])
    )
    data_start = HEADER_SIZE + len(
        Envelope(draft, signer, bytes(SIGNATURE_BYTES), state.signed).encode()
    )
    with atomic_writer(out) as handle:
        dst = handle.fileno()
        manifest = manifest_of(_hash_and_write(files, dst, data_start, progress))
        manifest_bytes = manifest.encode()
        envelope_bytes = Envelope(
            manifest_bytes,
            signer,
            sign(signing_key, Domain.MANIFEST, manifest_bytes),
            state.signed,
        ).encode()
        head = encode_header(len(envelope_bytes)) + envelope_bytes
        if len(head) != data_start:
            raise AssertionError(
                f"the signed envelope came out {len(head) - HEADER_SIZE} bytes long, "
                f"not the {data_start - HEADER_SIZE} bytes reserved for it"
            )
        _check_verifies(envelope_bytes, state, out, created)
        pwrite_all(dst, head, 0)
        if os.fstat(dst).st_size != data_start + manifest.size:
            raise StoreError(f"writing {out} went wrong (it came out the wrong size)")
        for source in files:  # edited after it was read: the bundle would be out of date
            _check_still(source)
    return manifest


def _check_metadata(
    name: str,
    version: int,
    created: int,
    expires: int | None,
    title: str,
    description: str,
    language: str,
    priority: int,
) -> None:
    try:
        check_bundle_name(name)
    except FormatError as exc:
        raise UsageError(str(exc)) from exc
    if not 1 <= version <= MAX_VERSION:
        raise UsageError(f"the bundle version must be a whole number from 1 to {MAX_VERSION}")
    if not 0 <= created <= MAX_TIME:
        raise UsageError("the bundle's creation time is out of range")
    if expires is not None and not created < expires <= MAX_TIME:
        raise UsageError(f"the bundle must expire after it was made ({describe_time(created)})")
    if len(title) > MAX_TITLE:
        raise UsageError(f"the title is {len(title)} characters long; the limit is {MAX_TITLE}")
    if len(description) > MAX_DESCRIPTION:
        raise UsageError(
            f"the description is {len(description)} characters long; the limit is {MAX_DESCRIPTION}"
        )
    if not LANGUAGE.fullmatch(language):
        raise UsageError(f"{language!r} is not a language code such as 'ko', 'en' or 'en-US'")
    if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        raise UsageError(f"the priority must be from {-MAX_PRIORITY} to {MAX_PRIORITY}")
    for what, text in (("title", title), ("description", description)):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise UsageError(f"the {what} contains a broken character") from exc


def _check_output(src: Path, out: Path) -> None:
    source = src.resolve()
    target = out.resolve()
    if target == source or target.is_relative_to(source):
        raise UsageError(
            f"the bundle {out} would be inside the folder being packed; save it somewhere else"
        )
    if out.is_dir():
        raise UsageError(f"{out} is a folder; give a file name for the bundle")
    if not out.parent.is_dir():
        raise UsageError(f"the folder {out.parent} does not exist")


def _check_size(src: Path, files: Sequence[SourceFile]) -> None:
    if len(files) > MAX_FILES:
        raise UsageError(f"{src} holds {len(files)} files; a bundle can hold {MAX_FILES}")
    for source in files:
        if source.size > MAX_FILE_SIZE:
            raise UsageError(f"{show_name(source.path)} is larger than a bundle allows (1 TiB)")
    if sum(chunk_count(f.size) for f in files) > MAX_CHUNKS:
        raise UsageError(f"{src} holds more data than one bundle can (about 1 TiB)")


def _check_fits(src: Path, draft: Manifest) -> bytes:
    """Encode the manifest with placeholder hashes, so a folder too big for one manifest
    is refused before hours of hashing. The bytes are as long as the real manifest's."""
    try:
        return draft.encode()
    except FormatError as exc:
        raise UsageError(f"{src} does not fit in one bundle: {exc}") from exc


def _worker_count() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_HASH_WORKERS))


def _chunk_sizes(size: int) -> Iterator[int]:
    full, rest = divmod(size, CHUNK_SIZE)
    yield from [CHUNK_SIZE] * full
    if rest:
        yield rest


def _pack_chunk(
    fd: int, source: SourceFile, offset: int, size: int, dst: int, dst_offset: int
) -> bytes:
    """Read one chunk of ``source``, write it into the bundle, and return its hash."""
    data = _read_chunk(fd, size, offset, source)
    digest = hashlib.sha256(data).digest()
    pwrite_all(dst, data, dst_offset)
    return digest


def _hash_and_write(
    files: Sequence[SourceFile], dst: int, data_start: int, progress: Progress | None
) -> list[tuple[bytes, ...]]:
    """Chunk hashes of every file, in order, each chunk read once and written into
    ``dst`` at its place after ``data_start``. The main thread opens files and hands out
    chunks; the pool reads, hashes and writes them (all release the GIL), at most a few
    chunks per worker at a time. A file is checked unchanged and closed once its last
    chunk is done. Every pool task has ended by the time this returns or raises, so none
    touches ``dst`` or a source fd after."""
    workers = _worker_count()
    # Each: a chunk's future, its size, and the file it ends (to check and close), if any.
    in_flight: deque[tuple[Future[bytes], int, tuple[int, SourceFile] | None]] = deque()
    per_file: list[list[Future[bytes]]] = []
    open_fds: set[int] = set()
    dst_offset = data_start
    written = hinted = data_start  # every byte of the bundle before ``written`` is in

    def finish(fd: int, source: SourceFile) -> None:
        try:
            _check_unchanged(fd, source)
        finally:
            open_fds.discard(fd)
            os.close(fd)

    def settle_oldest() -> None:
        nonlocal written, hinted
        future, size, ends = in_flight.popleft()
        future.result()
        written += size
        if written - hinted >= WRITEBACK_STEP:
            start_writeback(dst, hinted, written - hinted)
            hinted = written
        if ends is not None:
            finish(*ends)
        if progress is not None:
            progress(size)

    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="meshdrop-pack") as pool:
            try:
                for source in files:
                    fd = _open_source(source)
                    open_fds.add(fd)
                    futures: list[Future[bytes]] = []
                    last = chunk_count(source.size) - 1
                    offset = 0
                    for i, size in enumerate(_chunk_sizes(source.size)):
                        while len(in_flight) >= workers * CHUNKS_IN_FLIGHT_PER_WORKER:
                            settle_oldest()
                        futures.append(
                            pool.submit(_pack_chunk, fd, source, offset, size, dst, dst_offset)
                        )
                        in_flight.append((futures[-1], size, (fd, source) if i == last else None))
                        offset += size
                        dst_offset += size
                    if last < 0:  # an empty file
                        finish(fd, source)
                    per_file.append(futures)
                while in_flight:
                    settle_oldest()
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
    finally:
        for fd in open_fds:
            os.close(fd)
    return [tuple(f.result() for f in futures) for futures in per_file]


def _changed(source: SourceFile) -> UsageError:
    return UsageError(f"{show_name(source.path)} changed while packing; try again")


def _open_source(source: SourceFile) -> int:
    """An fd for ``source``, refused if it is no longer the file the scan saw."""
    try:
        fd = os.open(source.fs_path, _OPEN_FLAGS)
    except FileNotFoundError as exc:
        raise _changed(source) from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # it became a symlink
            raise _changed(source) from exc
        raise UsageError(f"cannot read {show_name(source.path)} ({exc.strerror})") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or _stamp(info) != (source.size, source.mtime_ns):
            raise _changed(source)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _stamp(info: os.stat_result) -> tuple[int, int]:
    return info.st_size, info.st_mtime_ns


def _read(fd: int, size: int, offset: int, source: SourceFile) -> bytes:
    try:
        return os.pread(fd, size, offset)
    except OSError as exc:
        raise UsageError(f"cannot read {show_name(source.path)} ({exc.strerror})") from exc


def _read_chunk(fd: int, size: int, offset: int, source: SourceFile) -> memoryview:
    """``size`` bytes of ``source`` at ``offset``, in this thread's reused buffer (a new
    1 MiB object per chunk costs an allocation and fresh memory to touch)."""
    try:
        data = read_reusable(fd, offset, size)
    except OSError as exc:
        raise UsageError(f"cannot read {show_name(source.path)} ({exc.strerror})") from exc
    if len(data) < size:
        raise _changed(source)
    return data


def _check_unchanged(fd: int, source: SourceFile) -> None:
    """After reading ``source.size`` bytes: the file must end there and be unmodified."""
    expected = (source.size, source.mtime_ns)
    if _read(fd, 1, source.size, source) or _stamp(os.fstat(fd)) != expected:
        raise _changed(source)


def _check_still(source: SourceFile) -> None:
    """After the whole bundle is written: ``source`` must still be the file that was read."""
    try:
        info = source.fs_path.lstat()
    except FileNotFoundError as exc:
        raise _changed(source) from exc
    except OSError as exc:
        raise UsageError(f"cannot read {show_name(source.path)} ({exc.strerror})") from exc
    if not stat.S_ISREG(info.st_mode) or _stamp(info) != (source.size, source.mtime_ns):
        raise _changed(source)


def _check_verifies(envelope_bytes: bytes, state: PublisherState, out: Path, created: int) -> None:
    """Parse and verify the envelope exactly as a receiving node that knows only the
    publisher's first record will."""
    envelope = parse_envelope(envelope_bytes, str(out))
    first = start_state(state.signed[:1])
    verify_envelope(envelope, {first.publisher: first}, created)
