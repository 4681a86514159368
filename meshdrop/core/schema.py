"""Typed field access on decoded maps: each getter checks type and bounds and names the
field in its error, and ``done()`` refuses any field nobody asked for."""

from __future__ import annotations

from typing import Any

from meshdrop.errors import FormatError


class Fields:
    def __init__(self, value: Any, what: str) -> None:
        if not isinstance(value, dict):
            raise FormatError(f"{what} is not a map")
        self._value: dict[str, Any] = value
        self._seen: set[str] = set()
        self.what = what

    def has(self, name: str) -> bool:
        return name in self._value

    def _get(self, name: str) -> Any:
        self._seen.add(name)
        if name not in self._value:
            raise FormatError(f"{self.what} lacks the field '{name}'")
        return self._value[name]

    def _bad(self, name: str, expected: str) -> FormatError:
        return FormatError(f"{self.what} has a field '{name}' that is not {expected}")

    def integer(self, name: str, low: int, high: int) -> int:
        value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self._bad(name, f"a whole number from {low} to {high}")
        return value

    def text(self, name: str, max_chars: int, min_chars: int = 0) -> str:
        value = self._get(name)
        if not isinstance(value, str) or not min_chars <= len(value) <= max_chars:
            raise self._bad(name, f"text of {min_chars} to {max_chars} characters")
        return value

    def binary(self, name: str, length: int | None, max_len: int = 0) -> bytes:
        value = self._get(name)
        if not isinstance(value, bytes):
            raise self._bad(name, "bytes")
        if length is not None and len(value) != length:
            raise self._bad(name, f"exactly {length} bytes")
        if length is None and len(value) > max_len:
            raise self._bad(name, f"at most {max_len} bytes")
        return value

    def _list(self, name: str, min_items: int, max_items: int) -> list[Any]:
        value = self._get(name)
        if not isinstance(value, list) or not min_items <= len(value) <= max_items:
            raise self._bad(name, f"a list of {min_items} to {max_items} items")
        return value

    def bytes_list(self, name: str, length: int, min_items: int, max_items: int) -> list[bytes]:
        items = self._list(name, min_items, max_items)
        if not all(isinstance(v, bytes) and len(v) == length for v in items):
            raise self._bad(name, f"a list of {length}-byte values")
        return items

    def text_list(self, name: str, min_items: int, max_items: int, max_chars: int) -> list[str]:
        items = self._list(name, min_items, max_items)
        if not all(isinstance(v, str) and 0 < len(v) <= max_chars for v in items):
            raise self._bad(name, "a list of short texts")
        return items

    def map_list(self, name: str, min_items: int, max_items: int) -> list[Any]:
        return self._list(name, min_items, max_items)

    def done(self) -> None:
        unknown = sorted(set(self._value) - self._seen)
        if unknown:
            fields = "an unknown field" if len(unknown) == 1 else "unknown fields"
            raise FormatError(f"{self.what} has {fields}: {', '.join(unknown[:5])}")
