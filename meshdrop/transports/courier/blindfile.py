"""Reading and writing one blind file (core/blind.py has the format). Nothing of its
plaintext ever touches a disk: the reader decrypts the segments a read needs, in memory,
and keeps the last few (the importer's chunk reads are nearly sequential, from several
threads); the writer encrypts as it goes into a descriptor the caller made durable."""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from meshdrop.bulkio import BUFFER_SIZE, SequentialWriter, new_buffer
from meshdrop.core.blind import (
    SALT_BYTES,
    SEGMENT,
    TAG_BYTES,
    InnerHeader,
    file_key,
    nonce,
    open_segment,
    parse_inner,
    plaintext_size,
    segment_count,
)
from meshdrop.errors import BlindFileError
from meshdrop.fs import open_regular_file

# Segments kept decrypted: the importer's worker threads read nearby chunks at once
# (importer.WORKERS, 8 to 16), each chunk across two segments.
CACHED_SEGMENTS = 24
_local = threading.local()


def _segment_buffers() -> tuple[memoryview, memoryview]:
    """This thread's buffers for one sealed segment and its plaintext."""
    buffers = getattr(_local, "segment", None)
    if buffers is None:
        buffers = _local.segment = (
            memoryview(bytearray(SEGMENT + TAG_BYTES)),
            memoryview(bytearray(SEGMENT)),
        )
    return buffers


def _assembly(size: int) -> memoryview:
    """This thread's buffer for a read across segments (bulkio's size, else a new one)."""
    if size > BUFFER_SIZE:
        return memoryview(bytearray(size))
    buffer = getattr(_local, "buffer", None)
    if buffer is None:
        buffer = _local.buffer = new_buffer()
    return memoryview(buffer)


class BlindReader:
    """The open file inside a blind file, as a ``ReadAt`` (store/bundlefile.py). Opening
    it authenticates its first and last segments: a file cut short or of another key is
    refused at once; a changed byte elsewhere fails the read that reaches it."""

    def __init__(self, fd: int, key: bytes, what: str) -> None:
        self.fd = fd
        self.what = what
        file_size = os.fstat(fd).st_size
        plaintext = plaintext_size(file_size)
        if plaintext is None:
            raise BlindFileError(f"{what} has a size no blind file has")
        self.plaintext = plaintext
        self.segments = segment_count(plaintext)
        salt = os.pread(fd, SALT_BYTES, 0)
        if len(salt) != SALT_BYTES:
            raise BlindFileError(f"{what} is too short for a blind file")
        self._aead = AESGCM(file_key(key, salt))
        self._cache: OrderedDict[int, Future[bytes]] = OrderedDict()
        self._lock = threading.Lock()
        first = self._segment(0)
        self._segment(self.segments - 1)  # both authenticated before anything is parsed
        self.header = parse_inner(first, plaintext, what)
        self.base = self.header.begin
        self._size = self.header.length

    @property
    def size(self) -> int:
        return self._size

    def _segment(self, index: int) -> bytes:
        """Segment ``index``'s plaintext. Several threads read at once: each segment is
        read and decrypted once (by the first thread to ask), outside the lock."""
        with self._lock:
            entry = self._cache.get(index)
            mine = entry is None
            if entry is None:
                entry = self._cache[index] = Future()
                if len(self._cache) > CACHED_SEGMENTS:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(index)
        if mine:
            try:
                entry.set_result(self._decrypt(index))
            except BaseException as exc:
                with self._lock:
                    if self._cache.get(index) is entry:
                        del self._cache[index]
                entry.set_exception(exc)
        return entry.result()

    def _segment_here(self, index: int, size: int) -> memoryview:
        """The first ``size`` bytes of segment ``index``, read and decrypted in this
        thread's reused buffers (no allocation, no other thread waited for): the read of
        one chunk of a file whose data starts on a segment."""
        sealed, plain = _segment_buffers()
        where = SALT_BYTES + index * (SEGMENT + TAG_BYTES)
        got = os.preadv(self.fd, [sealed], where)
        try:
            self._aead.decrypt_into(nonce(index, False), sealed[:got], None, plain)
        except (InvalidTag, ValueError) as exc:
            raise BlindFileError(
                f"{self.what} does not open with the circle's key (damaged, cut short, or "
                "sealed for another circle)"
            ) from exc
        return plain[:size]

    def _decrypt(self, index: int) -> bytes:
        last = index == self.segments - 1
        length = self.plaintext - index * SEGMENT if last else SEGMENT
        where = SALT_BYTES + index * (SEGMENT + TAG_BYTES)
        return open_segment(
            self._aead, index, last, os.pread(self.fd, length + TAG_BYTES, where), self.what
        )

    def read_at(self, offset: int, size: int) -> memoryview:
        """As ReadAt says: a read within one segment is a view of it; one across segments
        is put together in this thread's reused buffer (valid until its next read)."""
        size = min(size, self._size - offset)
        if size <= 0 or offset < 0:
            return memoryview(b"")
        start = self.base + offset
        index, within = divmod(start, SEGMENT)
        if within == 0 and size <= SEGMENT and 0 < index < self.segments - 1:
            return self._segment_here(index, size)
        plain = self._segment(index)
        if within + size <= len(plain):
            return memoryview(plain)[within : within + size]
        out = _assembly(size)
        done = 0
        while done < size:
            take = min(size - done, len(plain) - within)
            out[done : done + take] = memoryview(plain)[within : within + take]
            done += take
            index, within = index + 1, 0
            if done < size:
                plain = self._segment(index)
        return out[:size]

    def __enter__(self) -> BlindReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def read_all(self) -> bytes:
        return b"".join(
            bytes(self.read_at(start, min(SEGMENT, self._size - start)))
            for start in range(0, self._size, SEGMENT)
        )

    def close(self) -> None:
        os.close(self.fd)


def open_blind(path: Path, key: bytes, what: str | None = None) -> BlindReader:
    """Open the blind file at ``path`` (a regular file only, never through a link)."""
    fd = open_regular_file(path)
    try:
        return BlindReader(fd, key, what or path.name)
    except BaseException:
        os.close(fd)
        raise


_ZEROS = bytes(SEGMENT)
# A big blind file is written on a thread of its own, so that sealing the next segment
# overlaps writing the last one (the write releases the GIL; each write waits for the one
# before, so the segments stay in order).
OVERLAP_SEGMENTS = 4  # files of more segments than this write in the background


class BlindWriter:
    """Writes one blind file of ``file_size`` bytes (a size class) into ``fd``, a new file:
    the salt, then segments sealed as the plaintext arrives. ``finish`` pads with zeros,
    seals the last segment, waits for the writes and checks that exactly
    ``header.length`` bytes came. The plaintext goes through a reused segment buffer and
    is sealed into one of two others (one copy per byte besides the encryption; none for
    a whole segment given at once, as a big file's aligned chunks are)."""

    def __init__(self, fd: int, key: bytes, header: InnerHeader, file_size: int) -> None:
        plaintext = plaintext_size(file_size)
        if plaintext is None or plaintext < header.begin + header.length:
            raise ValueError(f"a blind file of {file_size} bytes cannot hold {header}")
        self.header = header
        self.plaintext = plaintext
        self.segments = segment_count(plaintext)
        self._out = SequentialWriter(fd)
        salt = os.urandom(SALT_BYTES)
        self._aead = AESGCM(file_key(key, salt))
        self._out.write(salt)
        largest = min(SEGMENT, plaintext)  # a small file gets small buffers (zeroed: costly)
        self._plain = bytearray(largest)
        self._sealed = [bytearray(largest + TAG_BYTES) for _ in range(2)]
        self._writes: ThreadPoolExecutor | None = None
        if self.segments > OVERLAP_SEGMENTS:
            self._writes = ThreadPoolExecutor(1, thread_name_prefix="blind-write")
        self._pending: Future[None] | None = None
        self._fill = 0
        self._index = 0
        self._content = -header.begin  # counts the header and zeros too, then the file
        self.write(header.encode() + bytes(header.begin - header.size))

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        self._content += len(view)
        if self._content > self.header.length:
            raise ValueError("more bytes than the blind file's inner header says")
        while view:
            if self._fill == len(self._plain):
                self._seal()
            whole = len(self._plain)
            if self._fill == 0 and len(view) >= whole and self._index < self.segments - 1:
                # A whole segment (not the last) sealed straight from the caller's bytes:
                # the aligned data of a big file comes so, a chunk a segment.
                self._fill = whole
                self._seal(view[:whole])
                view = view[whole:]
                continue
            take = min(len(view), len(self._plain) - self._fill)
            self._plain[self._fill : self._fill + take] = view[:take]
            self._fill += take
            view = view[take:]

    def _seal(self, source: memoryview | None = None) -> None:
        last = self._index == self.segments - 1
        plain = memoryview(self._plain)[: self._fill] if source is None else source
        sealed = memoryview(self._sealed[self._index % 2])[: self._fill + TAG_BYTES]
        self._aead.encrypt_into(nonce(self._index, last), plain, None, sealed)
        self._wait()
        if self._writes is not None:
            self._pending = self._writes.submit(self._out.write, sealed)
        else:
            self._out.write(sealed)
        self._index += 1
        self._fill = 0

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()  # raises the write's OSError here

    def finish(self) -> None:
        if self._content != self.header.length:
            raise ValueError("fewer bytes than the blind file's inner header says")
        left = self.plaintext - self._index * SEGMENT - self._fill  # zeros still to come
        while self._index < self.segments:
            room = min(SEGMENT, self.plaintext - self._index * SEGMENT) - self._fill
            pad = min(left, room)
            self._plain[self._fill : self._fill + pad] = _ZEROS[:pad]
            self._fill += pad
            left -= pad
            self._seal()
        self._stop()

    def _stop(self) -> None:
        try:
            self._wait()
        finally:
            if self._writes is not None:
                self._writes.shutdown(wait=True)

    def abandon(self) -> None:
        """Wait for a write still going (before the caller discards the file)."""
        with contextlib.suppress(OSError):
            self._stop()
