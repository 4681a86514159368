"""Ack lists: a publisher's signed list of the drops it has received, so that nodes can
delete them and readers can show "delivered" (docs/FORMAT.md, "Acks")."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshdrop.core import signedobject
from meshdrop.core.keys import Domain
from meshdrop.core.signedobject import Kind, SignerKeysAt, sequence_field, time_field
from meshdrop.errors import FormatError

DROP_ID_BYTES = 32
MAX_ACKED = 4096  # drop ids in one list: 4096 x 34 bytes, some 136 KiB
ACK_LIST = Kind("meshdrop-drop-acks", Domain.DROP_ACKS, MAX_ACKED * 34 + 1024)


@dataclass(frozen=True)
class AckList:
    """Drops ``publisher`` received. ``sequence`` orders the lists of one publisher."""

    publisher: bytes
    created: int
    sequence: int
    drops: tuple[bytes, ...]  # drop ids, sorted ascending, no repeats

    def to_value(self) -> dict[str, object]:
        return {
            "publisher": self.publisher,
            "created": self.created,
            "sequence": self.sequence,
            "drops": list(self.drops),
        }


def make_ack_list(publisher: bytes, created: int, sequence: int, drops: Iterable[bytes]) -> AckList:
    ids = tuple(sorted(set(drops)))
    if not 1 <= len(ids) <= MAX_ACKED or any(len(i) != DROP_ID_BYTES for i in ids):
        raise ValueError(f"an ack list holds 1 to {MAX_ACKED} drop ids of {DROP_ID_BYTES} bytes")
    return AckList(publisher, created, sequence, ids)


def sign_ack_list(acks: AckList, signing_key: Ed25519PrivateKey) -> bytes:
    return signedobject.sign_object(ACK_LIST, acks.to_value(), signing_key)


def verify_ack_list(
    blob: bytes, publisher: bytes, signer_public_keys_valid_at: SignerKeysAt
) -> AckList:
    """The ack list in ``blob``, if ``publisher`` signed it with a signing key valid at
    its creation."""
    what = "the ack list"
    opened = signedobject.open_object(blob, ACK_LIST, what)
    fields = opened.fields
    drops = tuple(fields.bytes_list("drops", DROP_ID_BYTES, 1, MAX_ACKED))
    acks = AckList(
        publisher=fields.binary("publisher", signedobject.PUBLISHER_ID_BYTES),
        created=time_field(fields, "created"),
        sequence=sequence_field(fields),
        drops=drops,
    )
    fields.done()
    if list(drops) != sorted(set(drops)):
        raise FormatError(f"{what} lists its drop ids out of order or twice")
    signedobject.check_signed(
        opened, ACK_LIST, publisher, acks.created, signer_public_keys_valid_at
    )
    return acks
