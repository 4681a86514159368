"""Fuzz target for blind courier files (core/blind.py, FORMAT.md section 25): the inner
header a circle member finds after the first segment opened. Anyone holding the circle's
secret can write one, so it is parsed as a stranger's bytes."""

from __future__ import annotations

from fuzztargets import Target

from meshdrop.core import blind

SEEDS = [
    blind.InnerHeader(blind.Kind.BUNDLE, "news-0123456789ab.mdrop", 100).encode(),
    blind.InnerHeader(blind.Kind.PART, "news-0123456789ab.p002", 100).encode(),
    blind.InnerHeader(blind.Kind.PUBLISHER, "0123456789abcdef.pub", 100).encode(),
    blind.InnerHeader(blind.Kind.WANT, "want.mdw", 100).encode(),
    blind.InnerHeader(blind.Kind.DROP, "drops/" + "ab" * 32 + ".drop", 100).encode(),
    blind.InnerHeader(blind.Kind.MARKER, "", 0).encode(),
]


def fuzz_blind_inner(data: bytes) -> None:
    """The first segment's plaintext, in a file of room for it and 255 x 16 bytes more
    (the last input byte says how much)."""
    room = len(data) + 16 * (data[-1] if data else 0)
    header = blind.parse_inner(data, room, "x.dat")
    if header.size + header.length > room:
        raise AssertionError(f"an inner header claims more than its file holds: {header}")
    blind.plaintext_size(blind.file_size_for(room))


HERE = [Target("blind_inner", fuzz_blind_inner, "core/blind.parse_inner (blind couriers)")]
