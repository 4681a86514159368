"""Sizes as people read them: one format for the command line and every message."""

from __future__ import annotations


def human_size(size: float) -> str:
    """1.2 GiB, 300.0 KiB, 12 B."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
