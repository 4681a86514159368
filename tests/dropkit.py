"""Drops for the transport tests (LAN and courier): real sealed, stamped drops (core/
drops.seal, about 0.2 s each for the stamp), and bad ones made from them."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from meshdrop.core.drops import STAMP_BITS, STAMP_BYTES, seal
from meshdrop.core.reportkeys import ReportKey, Suite, make_report_keypair
from meshdrop.core.reports import Report, make_receipt
from meshdrop.store.drops import DropStore

DAY = 86_400
PUBLISHER = bytes(range(32))


def report_key() -> ReportKey:
    now = int(time.time())
    return make_report_keypair(Suite.X25519, PUBLISHER, now - 30 * DAY, now + 365 * DAY, 1)[1]


KEY = report_key()


def make_drop(text: str = "wages unpaid for three months", lifetime: int = 30 * DAY) -> bytes:
    """A drop that every node accepts, living ``lifetime`` seconds from now."""
    now = int(time.time())
    report = Report(text, (), make_receipt(os.urandom(5)))
    return seal(report, KEY, now + lifetime, now)


def expired_drop() -> bytes:
    """A drop sealed ten days ago that lived an hour: well stamped, but past its expiry."""
    then = int(time.time()) - 10 * DAY
    return seal(Report("old news", (), make_receipt(os.urandom(5))), KEY, then + 3600, then)


def tampered(blob: bytes) -> bytes:
    """One byte of the ciphertext flipped: the stamp no longer checks."""
    middle = len(blob) // 2
    return blob[:middle] + bytes([blob[middle] ^ 1]) + blob[middle + 1 :]


def unstamped(blob: bytes) -> bytes:
    """The drop with a stamp nonce that does not stamp it."""
    body = blob[:-STAMP_BYTES]
    start = hashlib.sha256(b"meshdrop/v1/drop-stamp\0" + hashlib.sha256(body).digest())
    for counter in range(1000):
        nonce = counter.to_bytes(STAMP_BYTES, "big")
        digest = start.copy()
        digest.update(nonce)
        if int.from_bytes(digest.digest()[:8], "big") >> (64 - STAMP_BITS):
            return body + nonce
    raise AssertionError("no failing nonce in 1000 tries")


def drop_id(blob: bytes) -> bytes:
    return hashlib.sha256(blob).digest()


def held_ids(home: Path) -> set[bytes]:
    return {d.drop_id for d in DropStore(home).held()}


def add_drops(home: Path, *blobs: bytes) -> None:
    store = DropStore(home)
    for blob in blobs:
        assert store.add(blob, int(time.time())) is not None
