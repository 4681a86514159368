"""Publisher objects signed by one signing key: report keys, their retirements and ack
lists (docs/FORMAT.md, "Signed publisher objects").

They are kinds of their own, not fields of the publisher record: a v1 node refuses a
record with an unknown field and stops following the chain there, and must never lose
the chain (docs/adr/0001-report-keys-as-own-object.md). Each kind has its own type name
inside the object and its own signature prefix, so one kind's signature never passes
for another's. As everywhere, the exact received object bytes are verified and parsed;
nothing is re-encoded to verify.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshdrop.core import codec
from meshdrop.core.keys import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, Domain, public_bytes, sign, verify
from meshdrop.core.records import MAX_TIME
from meshdrop.core.schema import Fields
from meshdrop.errors import (
    SignedObjectKindError,
    SignedObjectPublisherError,
    SignedObjectSignerError,
)

OBJECT_FORMAT = 1
PUBLISHER_ID_BYTES = 32

SignerKeysAt = Callable[[int], Collection[bytes]]
"""The Ed25519 public keys that were signing keys of the publisher at a Unix time (the
caller answers from the publisher chain it follows)."""

_ENVELOPE_FIELDS = frozenset({"object", "signer", "sig"})


@dataclass(frozen=True)
class Kind:
    """One kind of signed object: its type name, signature prefix and size cap."""

    type_name: str
    domain: Domain
    max_bytes: int

    def limits(self) -> codec.Limits:
        return codec.Limits(max_bytes=self.max_bytes, max_depth=3, max_bin=self.max_bytes)


@dataclass(frozen=True)
class Opened:
    """A signed object's fields (checked for kind and format, not yet for anything
    else), its exact bytes and who signed them."""

    fields: Fields
    raw: bytes
    signer: bytes
    signature: bytes


def sign_object(kind: Kind, value: dict[str, Any], signing_key: Ed25519PrivateKey) -> bytes:
    """The signed blob of ``value`` (its type and format fields are added here)."""
    raw = codec.pack({**value, "type": kind.type_name, "format": OBJECT_FORMAT})
    if len(raw) > kind.max_bytes:
        raise ValueError(f"a {kind.type_name} object is over {kind.max_bytes} bytes")
    envelope = {
        "object": raw,
        "signer": public_bytes(signing_key),
        "sig": sign(signing_key, kind.domain, raw),
    }
    return codec.pack(envelope)


def open_object(blob: bytes, kind: Kind, what: str) -> Opened:
    """Parse the envelope and the object inside; refuse another kind of object."""
    envelope_limits = codec.Limits(
        max_bytes=kind.max_bytes + 256, max_depth=2, max_bin=kind.max_bytes, keys=_ENVELOPE_FIELDS
    )
    envelope = Fields(codec.unpack(blob, envelope_limits, what), what)
    raw = envelope.binary("object", None, max_len=kind.max_bytes)
    signer = envelope.binary("signer", PUBLIC_KEY_BYTES)
    signature = envelope.binary("sig", SIGNATURE_BYTES)
    envelope.done()
    fields = Fields(codec.unpack(raw, kind.limits(), what), what)
    found = fields.text("type", 64)
    if found != kind.type_name:
        raise SignedObjectKindError(f"{what} is a {found!r} object, not a {kind.type_name!r}")
    fields.integer("format", OBJECT_FORMAT, OBJECT_FORMAT)
    return Opened(fields, raw, signer, signature)


def check_signed(
    opened: Opened, kind: Kind, publisher: bytes, signed_at: int, signer_keys_at: SignerKeysAt
) -> None:
    """The object names ``publisher`` and was signed by one of its signing keys valid at
    ``signed_at`` (the object's own creation time)."""
    what = opened.fields.what
    named = opened.fields.binary("publisher", PUBLISHER_ID_BYTES)
    if named != publisher:
        raise SignedObjectPublisherError(f"{what} belongs to another publisher")
    if opened.signer not in set(signer_keys_at(signed_at)):
        raise SignedObjectSignerError(
            f"{what} is signed by a key that was not a signing key of its publisher then"
        )
    if not verify(opened.signer, opened.signature, kind.domain, opened.raw):
        raise SignedObjectSignerError(f"{what} has a signature that does not verify")


def time_field(fields: Fields, name: str) -> int:
    return fields.integer(name, 0, MAX_TIME)


def sequence_field(fields: Fields) -> int:
    return fields.integer("sequence", 1, 2**63 - 1)
