"""The strict codec's caps, checked before anything is decoded: arrays and maps counted,
map keys only the document's field names, and the manifest's caps exactly what its
largest valid value needs."""

from __future__ import annotations

import hashlib
import re
import struct
from typing import Any

import pytest

from meshdrop.core import codec
from meshdrop.core.manifest import (
    _LIMITS,
    MAX_CHUNKS,
    MAX_FILES,
    FileEntry,
    Manifest,
    parse_manifest,
)
from meshdrop.errors import FormatError

HASH = hashlib.sha256(b"chunk").digest()


def count(value: Any) -> tuple[int, int]:
    """(containers, items) as the codec counts them: every array and map, and every
    array element and map entry."""
    if isinstance(value, dict):
        inner = [count(v) for v in value.values()]
        return 1 + sum(c for c, _ in inner), len(value) + sum(i for _, i in inner)
    if isinstance(value, list | tuple):
        inner = [count(v) for v in value]
        return 1 + sum(c for c, _ in inner), len(value) + sum(i for _, i in inner)
    return 0, 0


def map_keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value).union(*(map_keys(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(map_keys(v) for v in value))
    return set()


def manifest(files: tuple[FileEntry, ...], expires: int | None = 2) -> Manifest:
    return Manifest(bytes(32), "big", 1, 1, expires, "Big", "", "en", 0, files)


def test_manifest_caps_are_what_the_largest_valid_manifest_needs() -> None:
    """MAX_FILES files holding MAX_CHUNKS chunks in all, with every optional field: the
    same shape as the caps' formulas, counted on the real value."""
    per_file, extra = divmod(MAX_CHUNKS, MAX_FILES)
    files = tuple(
        FileEntry(f"{i}", 0, "a/b", (HASH,) * (per_file + (i < extra))) for i in range(MAX_FILES)
    )
    value = manifest(files).to_value()
    assert count(value) == (_LIMITS.max_containers, _LIMITS.max_items)
    assert frozenset(map_keys(value)) == _LIMITS.keys


def test_a_manifest_of_many_files_parses() -> None:
    files = tuple(FileEntry(f"d/{i:05d}.txt", 1, "text/plain", (HASH,)) for i in range(5000))
    assert parse_manifest(manifest(files).encode()).files == files


LIMITS = codec.Limits(max_bytes=1024, max_containers=3)


@pytest.mark.parametrize(
    "value", [[[], []], {"a": [], "b": 1}, [{"a": 1}, [2]]], ids=["arrays", "map", "mixed"]
)
def test_containers_up_to_the_cap_are_accepted(value: Any) -> None:
    assert codec.unpack(codec.pack(value), LIMITS, "doc") == value


@pytest.mark.parametrize(
    "data",
    [
        b"\x93\x90\x90\x90",  # [[], [], []]
        b"\x93\x80\x80\x80",  # [{}, {}, {}]
        b"\x91\x91\x91\x90",  # [[[[]]]]
        b"\xdd" + struct.pack(">I", 1_650_000) + b"\x90" * 1_650_000,
    ],
    ids=["arrays", "maps", "nested", "1650000-empty-arrays"],
)
def test_containers_over_the_cap_are_refused_before_decoding(data: bytes) -> None:
    limits = codec.Limits(max_bytes=len(data), max_items=2_000_000, max_containers=3)
    with pytest.raises(FormatError, match="more arrays and maps than the limit of 3"):
        codec.unpack(data, limits, "doc")


FIELDS = codec.Limits(max_bytes=1 << 20, keys=frozenset({"a", "bb"}))


def test_field_names_are_accepted_at_any_depth() -> None:
    value = {"a": [{"bb": 1, "a": b"x"}], "bb": {"a": "y"}}
    assert codec.unpack(codec.pack(value), FIELDS, "doc") == value


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (codec.pack({"a": 1, "c": 2}), "an unknown field: c"),
        (codec.pack({"a": [{"zz": 1}]}), "an unknown field: zz"),
        (codec.pack({"\x1b[2J": 1}), "an unknown field: \\x1b[2J"),
        # three entries but two field names: a key must repeat
        (b"\x83\xa1a\x01\xa1a\x02\xa1a\x03", "more than there are field names"),
        (b"\xde\xff\xff" + b"\xa1a\xc0" * 0xFFFF, "more than there are field names"),
        (b"\x81\xc4\x01a\x01", "not text"),
        (b"\x81\x01\x01", "not text"),
    ],
    ids=["unknown", "unknown-nested", "escaped", "repeats", "65535-entries", "bin-key", "int-key"],
)
def test_other_keys_are_refused_before_decoding(data: bytes, fragment: str) -> None:
    with pytest.raises(FormatError, match=re.escape(fragment)):
        codec.unpack(data, FIELDS, "doc")


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"\x82\xa1b\x01\xa1a\x02", "canonical order"),
        (b"\x81\xa1x\x82\xa1b\x01\xa1a\x02", "canonical order"),  # {"x": {"b", "a"}}
        (b"\x82\xa1b\x01\xa2aa\x02", None),  # "b" sorts before "aa": shorter first
        (b"\x82\xa2aa\x01\xa1b\x02", "canonical order"),
        (b"\x82\xa1a\x01\xa1a\x02", "same key twice"),
        (b"\x81\xc4\x01a\x01", "not text"),
    ],
    ids=["unsorted", "unsorted-nested", "sorted", "longer-first", "duplicate", "bin-key"],
)
def test_map_keys_are_checked_as_decoded(data: bytes, fragment: str | None) -> None:
    limits = codec.Limits(max_bytes=1024)
    if fragment is None:
        assert codec.pack(codec.unpack(data, limits, "doc")) == data
        return
    with pytest.raises(FormatError, match=fragment):
        codec.unpack(data, limits, "doc")
