"""Building publisher records and bundles in-process for the trust scenario tables.

Keys are derived from their names, so a table row can say "signed by r1, r2" and every
run builds the very same bytes."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshdrop.core.bundle import Envelope, encode_header, encode_publisher_file
from meshdrop.core.keys import Domain, public_bytes, sign
from meshdrop.core.manifest import CHUNK_SIZE, FileEntry, Manifest
from meshdrop.core.records import (
    PublisherRecord,
    Reason,
    Revocation,
    SignedRecord,
    Signer,
    publisher_id,
)

DAY = 86_400
YEAR = 365 * DAY
T0 = 1_790_000_000  # a fixed "now" for the tables (2026-09-21)


def key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(name.encode()).digest())


def pub(name: str) -> bytes:
    return public_bytes(key(name))


@dataclass
class Delegation:
    name: str
    not_before: int = T0 - YEAR
    expires: int = T0 + YEAR
    scope: tuple[str, ...] = ("*",)


@dataclass
class Chain:
    """A publisher whose record 1 has ``roots`` and ``threshold``."""

    roots: Sequence[str]
    threshold: int
    name: str = "Scenario News"
    records: list[PublisherRecord] = field(default_factory=list)

    @property
    def id(self) -> bytes:
        return publisher_id([pub(r) for r in self.roots], self.threshold)

    def record(
        self,
        version: int,
        roots: Sequence[str] | None = None,
        threshold: int | None = None,
        signers: Sequence[Delegation] = (Delegation("s1"),),
        revoked: Sequence[tuple[str, Reason, int]] = (),
        created: int = T0,
    ) -> PublisherRecord:
        return PublisherRecord(
            publisher=self.id,
            name=self.name,
            version=version,
            created=created,
            roots=tuple(sorted(pub(r) for r in (roots or self.roots))),
            threshold=threshold or self.threshold,
            signers=tuple(Signer(pub(d.name), d.not_before, d.expires, d.scope) for d in signers),
            revoked=tuple(Revocation(pub(n), reason, at) for n, reason, at in revoked),
        )


def signed(
    record: PublisherRecord, by: Sequence[str], domain: Domain = Domain.PUBLISHER_RECORD
) -> SignedRecord:
    from meshdrop.core import codec

    raw = codec.pack(record.to_value())
    return SignedRecord(raw, tuple((pub(k), sign(key(k), domain, raw)) for k in by))


def bundle_bytes(
    chain: Sequence[SignedRecord],
    publisher: bytes,
    signer: str,
    name: str = "news",
    version: int = 1,
    created: int = T0,
    expires: int | None = None,
    data: bytes = b"<p>hello</p>",
    domain: Domain = Domain.MANIFEST,
) -> bytes:
    chunks = tuple(
        hashlib.sha256(data[i : i + CHUNK_SIZE]).digest() for i in range(0, len(data), CHUNK_SIZE)
    )
    manifest = Manifest(
        publisher,
        name,
        version,
        created,
        expires,
        f"{name} v{version}",
        "",
        "en",
        0,
        (FileEntry("index.html", len(data), "text/html", chunks),),
    )
    manifest_bytes = manifest.encode()
    envelope = Envelope(
        manifest_bytes, pub(signer), sign(key(signer), domain, manifest_bytes), tuple(chain)
    ).encode()
    return encode_header(len(envelope)) + envelope + data


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def publisher_file(chain: Sequence[SignedRecord]) -> bytes:
    return encode_publisher_file(chain)
