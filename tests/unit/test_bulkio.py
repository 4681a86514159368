"""The big-transfer helpers of meshdrop/bulkio.py: reads into reused buffers and the
sequential writer (O_DIRECT where the file system takes it) must move bytes exactly,
whatever their sizes and alignment."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshdrop.bulkio import (
    BUFFER_SIZE,
    WRITEBACK_STEP,
    SequentialWriter,
    new_buffer,
    read_file_into,
    read_reusable,
)
from meshdrop.store.chunks import ChunkStore


@pytest.fixture
def source(tmp_path: Path) -> Iterator[tuple[int, bytes]]:
    data = os.urandom(2 * BUFFER_SIZE + 777)
    path = tmp_path / "source.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    yield fd, data
    os.close(fd)


@pytest.mark.parametrize(
    "offset, size",
    [(0, BUFFER_SIZE), (BUFFER_SIZE, 3 * 4096), (5, 1000), (2 * BUFFER_SIZE, 777)],
    ids=["whole-buffer", "aligned-size", "unaligned", "last-short-chunk"],
)
def test_chunks_read_into_the_reused_buffer_are_stored_byte_for_byte(
    tmp_path: Path, source: tuple[int, bytes], offset: int, size: int
) -> None:
    fd, data = source
    expected = data[offset : offset + size]
    view = read_reusable(fd, offset, size)
    assert bytes(view) == expected
    store = ChunkStore(tmp_path / "chunks")
    store.create_root()
    digest = hashlib.sha256(expected).digest()
    store.publish([store.write_temp(digest, view)])
    assert store.read(digest) == expected
    assert bytes(store.read_into(digest, size, new_buffer()) or b"") == expected


def test_reads_past_the_end_come_back_short(source: tuple[int, bytes]) -> None:
    fd, data = source
    assert bytes(read_reusable(fd, len(data) - 10, 4096)) == data[-10:]


def test_a_chunk_file_of_the_wrong_size_or_content_is_not_read_back(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "chunks")
    store.create_root()
    data = os.urandom(5000)
    digest = hashlib.sha256(data).digest()
    store.publish([store.write_temp(digest, data)])
    assert read_file_into(store.path(digest), new_buffer(), 4999) is None  # size differs
    store.path(digest).write_bytes(b"x" * 5000)  # same size, other bytes
    assert store.read_into(digest, 5000, new_buffer()) is None
    assert store.read_into(b"\0" * 32, 5000, new_buffer()) is None  # absent


@pytest.mark.parametrize("tail", [0, 1, 4000], ids=lambda n: f"tail-{n}")
def test_sequential_writer_writes_every_byte_in_order(tmp_path: Path, tail: int) -> None:
    # An envelope, then whole chunks past a writeback step, then a short last chunk:
    # the file must be exactly their concatenation.
    chunks = WRITEBACK_STEP // BUFFER_SIZE + 2
    pieces = [os.urandom(93)] + [os.urandom(BUFFER_SIZE) for _ in range(chunks)]
    pieces.append(os.urandom(tail))
    target = tmp_path / "out.mdrop"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        writer = SequentialWriter(fd)
        for piece in pieces:
            writer.write(memoryview(piece))
        os.fsync(fd)
    finally:
        os.close(fd)
    assert target.read_bytes() == b"".join(pieces)


def test_a_new_store_has_all_256_chunk_folders(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "chunks")
    store.create_root()
    folders = sorted(p.name for p in store.root.iterdir())
    assert folders == [f"{i:02x}" for i in range(256)]
    assert not list(tmp_path.glob(".tmp-*"))
