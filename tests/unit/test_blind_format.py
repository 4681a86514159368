"""The blind file format (core/blind.py) and its reader and writer (blindfile.py): a file
round-trips; every changed, cut, moved or foreign byte fails authentication; inner headers
that are hostile are refused; sizes are the documented classes."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshdrop.core import blind
from meshdrop.core.blind import (
    INNER,
    MIN_CLASS,
    SALT_BYTES,
    SEGMENT,
    TAG_BYTES,
    InnerHeader,
    Kind,
    capacity,
    class_for,
    file_size_for,
    marker_name,
    parse_inner,
    plaintext_size,
    random_name,
    size_classes,
)
from meshdrop.core.circles import CircleSecret, Purpose
from meshdrop.errors import BlindFileError
from meshdrop.transports.courier.blindfile import BlindWriter, open_blind
from meshdrop.transports.courier.blindfolder import GRACE_SECONDS, circle_keys
from meshdrop.transports.courier.layout import DEFAULT_PART_SIZE, FAT32_MAX_FILE

KEY = bytes(range(32))
OTHER_KEY = bytes(32)
NAME = "news-0123456789ab.mdrop"


def write(
    path: Path,
    data: bytes,
    key: bytes = KEY,
    header: InnerHeader | None = None,
    step: int = 300_000,  # writes that do not fall on segments
) -> Path:
    header = header or InnerHeader(Kind.BUNDLE, NAME, len(data))
    size = class_for(header.begin + header.length, DEFAULT_PART_SIZE)
    assert size is not None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        out = BlindWriter(fd, key, header, size)
        for start in range(0, len(data), step):
            out.write(data[start : start + step])
        out.finish()
    finally:
        os.close(fd)
    return path


def read(path: Path, key: bytes = KEY) -> bytes:
    with open_blind(path, key) as reader:
        return reader.read_all()


DATA = os.urandom(2 * SEGMENT + 12345)  # three segments, the last one partly padding


@pytest.mark.parametrize("step", [300_000, len(DATA)], ids=["pieces", "whole-segments-at-once"])
def test_a_blind_file_round_trips_and_reads_at_any_offset(tmp_path: Path, step: int) -> None:
    path = write(tmp_path / "a.dat", DATA, step=step)
    assert path.stat().st_size == 4 * 1024 * 1024  # the class above 2 MiB + 12345
    assert read(path) == DATA
    with open_blind(path, KEY) as reader:
        assert reader.header == InnerHeader(Kind.BUNDLE, NAME, len(DATA), INNER.size + len(NAME))
        for offset, size in [(0, 10), (SEGMENT - 50, 100), (len(DATA) - 5, 100), (3, SEGMENT * 2)]:
            assert bytes(reader.read_at(offset, size)) == DATA[offset : offset + size]
        assert bytes(reader.read_at(len(DATA), 10)) == b""
        assert bytes(reader.read_at(len(DATA) + 10, 10)) == b""


def test_the_same_content_twice_gives_different_bytes(tmp_path: Path) -> None:
    one = write(tmp_path / "1.dat", DATA).read_bytes()
    two = write(tmp_path / "2.dat", DATA).read_bytes()
    assert len(one) == len(two) and one[:32] != two[:32]
    assert sum(a == b for a, b in zip(one[:4096], two[:4096], strict=True)) < 100


def segment_offset(index: int) -> int:
    return SALT_BYTES + index * (SEGMENT + TAG_BYTES)


@pytest.mark.parametrize(
    "where",
    [
        pytest.param(0, id="salt"),
        pytest.param(SALT_BYTES + 3, id="inner-header"),
        pytest.param(segment_offset(1) + 77, id="middle-segment"),
        pytest.param(segment_offset(2) + 5, id="last-segment"),
        pytest.param(segment_offset(1) - 1, id="a-tag"),
    ],
)
def test_a_flipped_byte_anywhere_fails_authentication(tmp_path: Path, where: int) -> None:
    path = write(tmp_path / "a.dat", DATA)
    raw = bytearray(path.read_bytes())
    raw[where] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(BlindFileError, match="does not open with the circle's key"):
        read(path)


def test_a_cut_file_a_wrong_key_and_a_segment_from_elsewhere_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "a.dat", DATA)
    raw = path.read_bytes()
    (tmp_path / "cut.dat").write_bytes(raw[: segment_offset(3)])
    with pytest.raises(BlindFileError):
        read(tmp_path / "cut.dat")  # the new last segment is not flagged last
    (tmp_path / "short.dat").write_bytes(raw[:-1])
    with pytest.raises(BlindFileError):
        read(tmp_path / "short.dat")
    with pytest.raises(BlindFileError):
        read(path, OTHER_KEY)
    other = write(tmp_path / "b.dat", DATA).read_bytes()
    spliced = raw[: segment_offset(1)] + other[segment_offset(1) : segment_offset(2)]
    (tmp_path / "spliced.dat").write_bytes(spliced + raw[segment_offset(2) :])
    with pytest.raises(BlindFileError):
        read(tmp_path / "spliced.dat")
    swapped = raw[: segment_offset(1)] + raw[segment_offset(2) : segment_offset(3)]
    (tmp_path / "swapped.dat").write_bytes(
        swapped + raw[segment_offset(1) : segment_offset(2)] + raw[segment_offset(3) :]
    )
    with pytest.raises(BlindFileError):
        read(tmp_path / "swapped.dat")


def inner(kind: int, name: bytes, length: int, start: int | None = None) -> bytes:
    begin = INNER.size + len(name) if start is None else start
    return INNER.pack(1, kind, len(name), length, begin) + name + bytes(64)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(inner(1, b"../../etc/passwd.mdrop", 1), "not allowed", id="traversal"),
        pytest.param(inner(5, b"drops/../x.drop", 1), "not allowed", id="drop-traversal"),
        pytest.param(inner(1, b"/abs-0123456789ab.mdrop", 1), "not allowed", id="absolute"),
        pytest.param(inner(1, b"a" * 200 + b".mdrop", 1), "over the limit", id="over-long"),
        pytest.param(inner(9, NAME.encode(), 1), "unknown kind", id="unknown-kind"),
        pytest.param(inner(3, NAME.encode(), 1), "not allowed", id="kind-and-name-differ"),
        pytest.param(inner(1, "ä-0123456789ab.mdrop".encode(), 1), "not allowed", id="utf8"),
        pytest.param(inner(1, NAME.encode(), 10**9), "more than it can hold", id="length"),
        pytest.param(INNER.pack(2, 1, 0, 0, 0), "blind format 2", id="version"),
        pytest.param(inner(1, NAME.encode(), 1, 3), "where no file starts", id="start-inside"),
        pytest.param(inner(1, NAME.encode(), 1, SEGMENT * 2), "where no", id="start-far"),
        pytest.param(b"\x01\x01", "too short", id="short"),
    ],
)
def test_hostile_inner_headers_are_refused(raw: bytes, message: str) -> None:
    with pytest.raises(BlindFileError, match=message):
        parse_inner(raw, 4096, "x.dat")


@given(st.binary(max_size=300))
def test_parse_inner_takes_any_bytes_without_crashing(raw: bytes) -> None:
    try:
        header = parse_inner(raw, 1 << 20, "x.dat")
    except BlindFileError:
        return
    assert header.size + header.length <= 1 << 20 and ".." not in header.name


def test_size_classes_double_from_16_kib_up_to_the_part_size() -> None:
    classes = size_classes(DEFAULT_PART_SIZE)
    assert classes[0] == MIN_CLASS and classes[-1] == DEFAULT_PART_SIZE
    assert all(b == 2 * a for a, b in itertools.pairwise(classes))
    assert len(classes) == 16 and max(classes) < FAT32_MAX_FILE
    for size in classes:
        plaintext = plaintext_size(size)
        assert plaintext is not None and file_size_for(plaintext) == size
    assert class_for(1, DEFAULT_PART_SIZE) == MIN_CLASS
    top = capacity(DEFAULT_PART_SIZE) + blind.MAX_INNER + SEGMENT  # name and alignment
    assert capacity(1200 * 1024) > SEGMENT  # small part sizes keep no room for it
    assert class_for(top, DEFAULT_PART_SIZE) == DEFAULT_PART_SIZE
    assert class_for(DEFAULT_PART_SIZE, DEFAULT_PART_SIZE) is None


def test_names_are_8_3_lower_case_and_the_marker_is_the_keys_own() -> None:
    names = {random_name() for _ in range(200)}
    assert len(names) == 200 and all(blind.looks_blind(n) for n in names)
    assert marker_name(KEY) == marker_name(KEY) != marker_name(OTHER_KEY)
    assert blind.looks_blind(marker_name(KEY))
    assert Purpose.BLIND.value == b"blind-files"
    labels = [p.value for p in Purpose]
    assert not any(a != b and b.startswith(a) for a in labels for b in labels)


def test_retired_keys_open_sticks_for_the_grace_period_only() -> None:
    from meshdrop.core.circles import new_circle
    from meshdrop.store.circles import CircleBook, StoredCircle

    circle = new_circle("dorm", CircleSecret.generate(), 1000)
    circle = circle.rekeyed(CircleSecret.generate(), 2000)
    book = CircleBook((StoredCircle(circle, Path("x")),), ())
    assert [k.generation for k in circle_keys(book, 2000 + GRACE_SECONDS)] == [1, 2]
    assert [k.generation for k in circle_keys(book, 2001 + GRACE_SECONDS)] == [2]


def test_a_big_file_starts_its_data_on_a_segment_and_reads_chunk_by_chunk(
    tmp_path: Path,
) -> None:
    head = 1234  # what comes before the data: a bundle's header and envelope
    start = blind.aligned_start(INNER.size + len(NAME), head)
    assert (start + head) % SEGMENT == 0
    data = os.urandom(head + 3 * SEGMENT + 99)
    header = InnerHeader(Kind.BUNDLE, NAME, len(data), start)
    path = write(tmp_path / "a.dat", data, header=header)
    with open_blind(path, KEY) as reader:
        assert reader.header.begin == start
        for chunk in range(4):  # each a segment of its own, read in this thread's buffer
            offset = head + chunk * SEGMENT
            assert bytes(reader.read_at(offset, SEGMENT)) == data[offset : offset + SEGMENT]
    raw = bytearray(path.read_bytes())
    raw[segment_offset(2) + 7] ^= 1
    path.write_bytes(bytes(raw))
    with open_blind(path, KEY) as reader, pytest.raises(BlindFileError):
        reader.read_at(head + SEGMENT, SEGMENT)
