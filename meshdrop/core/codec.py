"""Strict, canonical msgpack: the only way meshdrop turns untrusted bytes into values.

Before any parsing a token walk checks size, depth, counts and types, so a hostile
input can never make the parser allocate or recurse much. After parsing, the value is
packed again and must give the very same bytes: one value, one encoding. That rules out
non-minimal integers and lengths, unsorted or duplicate map keys, and str/bin confusion.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from meshdrop.errors import FormatError

Value = Any  # None | bool | int | str | bytes | list[Value] | dict[str, Value]


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_depth: int = 8
    max_items: int = 1_000_000  # total array elements + map entries in the whole document
    # Arrays and maps in the whole document, the outermost included. An empty one takes
    # one byte on the wire but some 70 bytes decoded, which max_items does not see.
    max_containers: int = 65_536
    max_str: int = 64 * 1024
    max_bin: int = 64 * 1024
    # The field names a map may use (None: any text). A hostile map of a million distinct
    # keys costs a million key objects; field names are decoded once and shared.
    keys: frozenset[str] | None = None


_FIXED_SIZES = {0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
_FIXED_SIZES.update({0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8})
_FORBIDDEN = {
    0xC1: "a reserved msgpack byte",
    0xCA: "a float",
    0xCB: "a float",
    0xC7: "an extension type",
    0xC8: "an extension type",
    0xC9: "an extension type",
    0xD4: "an extension type",
    0xD5: "an extension type",
    0xD6: "an extension type",
    0xD7: "an extension type",
    0xD8: "an extension type",
}


_STR_WIDTH = {0xD9: 1, 0xDA: 2, 0xDB: 4}
_BIN_WIDTH = {0xC4: 1, 0xC5: 2, 0xC6: 4}
_ARRAY_WIDTH = {0xDC: 2, 0xDD: 4}
_MAP_WIDTH = {0xDE: 2, 0xDF: 4}


def _prescan(data: bytes, limits: Limits, what: str) -> None:
    """Walk the token stream without building anything; refuse early and cheaply."""
    n = len(data)
    pos = 0
    items = 0
    containers = 0
    keys = None if limits.keys is None else {k.encode() for k in limits.keys}
    # Each stack entry is the number of values still owed by an open array or map; in a
    # map (whose entry in ``in_map`` is True) an even number owed means a key comes next.
    pending = [1]
    in_map = [False]
    while pending:
        if pending[-1] == 0:
            pending.pop()
            in_map.pop()
            continue
        is_key = in_map[-1] and pending[-1] % 2 == 0
        pending[-1] -= 1
        if pos >= n:
            raise FormatError(f"{what} is truncated")
        b = data[pos]
        pos += 1
        if is_key and not (0xA0 <= b <= 0xBF or b in _STR_WIDTH):
            raise FormatError(f"{what} has a map key that is not text")
        if b <= 0x7F or b >= 0xE0 or b in _FIXED_SIZES:
            pos += _FIXED_SIZES.get(b, 0)
            if pos > n:
                raise FormatError(f"{what} is truncated")
            continue
        if 0xA0 <= b <= 0xBF or b in _STR_WIDTH or b in _BIN_WIDTH:
            if 0xA0 <= b <= 0xBF:
                length = b & 0x1F
            else:
                width = _STR_WIDTH.get(b) or _BIN_WIDTH[b]
                length = _read_uint(data, pos, width, what)
                pos += width
            cap = limits.max_bin if b in _BIN_WIDTH else limits.max_str
            if length > cap:
                raise FormatError(f"{what} holds a string of {length} bytes (limit {cap})")
            if length > n - pos:
                raise FormatError(f"{what} is truncated")
            if is_key and keys is not None and data[pos : pos + length] not in keys:
                name = ascii(data[pos : pos + length].decode("utf-8", "replace"))[1:-1]
                raise FormatError(f"{what} has an unknown field: {name}")
            pos += length
            continue
        if 0x90 <= b <= 0x9F or b in _ARRAY_WIDTH:
            entries = b & 0x0F if b <= 0x9F else _read_uint(data, pos, _ARRAY_WIDTH[b], what)
            pos += _ARRAY_WIDTH.get(b, 0)
            values, is_map = entries, False
        elif 0x80 <= b <= 0x8F or b in _MAP_WIDTH:
            entries = b & 0x0F if b <= 0x8F else _read_uint(data, pos, _MAP_WIDTH[b], what)
            pos += _MAP_WIDTH.get(b, 0)
            values, is_map = entries * 2, True
        else:
            raise FormatError(f"{what} contains {_FORBIDDEN.get(b, 'an unknown type')}")
        items += entries
        if items > limits.max_items:
            raise FormatError(f"{what} claims more than {limits.max_items} items")
        containers += 1
        if containers > limits.max_containers:
            raise FormatError(
                f"{what} has more arrays and maps than the limit of {limits.max_containers}"
            )
        # Every value takes at least one byte: a count beyond what is left is a lie.
        if values > n - pos:
            raise FormatError(f"{what} claims {entries} items but is too short to hold them")
        if len(pending) > limits.max_depth:
            raise FormatError(f"{what} is nested deeper than {limits.max_depth} levels")
        # More entries than field names means a key repeats: refused before decoding.
        if is_map and keys is not None and entries > len(keys):
            raise FormatError(
                f"{what} has a map of {entries} entries, more than there are field names"
            )
        pending.append(values)
        in_map.append(is_map)
    if pos != n:
        raise FormatError(f"{what} has {n - pos} unexpected bytes after its end")


def _read_uint(data: bytes, pos: int, width: int, what: str) -> int:
    if pos + width > len(data):
        raise FormatError(f"{what} is truncated")
    fmt = {1: ">B", 2: ">H", 4: ">I"}[width]
    value: int = struct.unpack_from(fmt, data, pos)[0]
    return value


def _checked_map(pairs: Sequence[tuple[Any, Any]]) -> dict[Any, Any]:
    """A decoded map, refused unless its keys are text, distinct and sorted. Checking the
    order here lets unpack re-pack the value as decoded, with no sorted copy of it."""
    if not all(isinstance(key, str) for key, _ in pairs):
        raise FormatError("a map has a key that is not text")
    result = dict(pairs)
    if len(result) != len(pairs):
        raise FormatError("a map has the same key twice")
    previous = b""
    for key in result:
        encoded = _key_order(key)
        if encoded <= previous:
            raise FormatError("a map's keys are not in canonical order")
        previous = encoded
    return result


def _canonical(value: Value) -> Value:
    if isinstance(value, Mapping):
        return {k: _canonical(value[k]) for k in sorted(value, key=_key_order)}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def _key_order(key: object) -> bytes:
    if not isinstance(key, str):
        raise TypeError("meshdrop maps have text keys only")
    return msgpack.packb(key, use_bin_type=True)


def pack(value: Value) -> bytes:
    """Canonical encoding: minimal integers and lengths, map keys sorted by their
    encoded bytes, str for text and bin for bytes."""
    if _contains_float(value):
        raise TypeError("floats have no canonical encoding in meshdrop")
    return msgpack.packb(_canonical(value), use_bin_type=True)


def _contains_float(value: Value) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, Mapping):
        return any(_contains_float(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_contains_float(v) for v in value)
    return False


def unpack(data: bytes, limits: Limits, what: str) -> Value:
    """Decode untrusted bytes. ``what`` names the thing in error messages
    ("the manifest of news.mdrop"). Raises FormatError for anything not canonical."""
    if len(data) > limits.max_bytes:
        raise FormatError(f"{what} is {len(data)} bytes, over the limit of {limits.max_bytes}")
    _prescan(data, limits, what)
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            object_pairs_hook=_checked_map,
        )
    except FormatError as exc:
        raise FormatError(f"{what} is malformed: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise FormatError(f"{what} has text that is not valid UTF-8") from exc
    except (
        ValueError,
        TypeError,
        msgpack.ExtraData,
        msgpack.FormatError,
        msgpack.StackError,
    ) as exc:
        raise FormatError(
            f"{what} is not valid msgpack (or has a map key that is not text)"
        ) from exc
    # Map keys were checked in order as decoded, so packing the value as it stands gives
    # the input back only if every integer, length and str/bin choice was canonical too.
    if msgpack.packb(value, use_bin_type=True) != data:
        raise FormatError(f"{what} is not in canonical form")
    return value
