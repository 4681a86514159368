"""Proposals: a next publisher record travelling between root-key holders for signing.

When the root keys live on separate offline machines, one machine writes the proposed
record to a file, each holder adds their signature to a copy, and the copies are combined.
Nothing is published until the combined signatures meet both thresholds that
:func:`meshdrop.core.records.verify_next_record` demands.

    offset 0   8 bytes   magic b"\\x89MDPRP\\r\\n"
    offset 8   the rest  canonical msgpack {"record": bytes, "signatures": [{"key", "sig"}...]}

``record`` is the exact record bytes to be signed; ``signatures`` may be empty.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from meshdrop.core import codec
from meshdrop.core.keys import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, Domain, key_id, verify
from meshdrop.core.records import (
    MAX_KEYS,
    MAX_RECORD_BYTES,
    PublisherRecord,
    SignedRecord,
    parse_record,
    verify_next_record,
)
from meshdrop.core.schema import Fields
from meshdrop.core.trust import PublisherState
from meshdrop.errors import FormatError, SignatureError, TrustError

PROPOSAL_MAGIC = b"\x89MDPRP\r\n"
MAX_SIGNATURES = 2 * MAX_KEYS  # every old and every new root key
MAX_PROPOSAL_BYTES = MAX_RECORD_BYTES + MAX_SIGNATURES * 128 + 1024
_LIMITS = codec.Limits(
    max_bytes=MAX_PROPOSAL_BYTES,
    max_depth=3,
    max_items=2 + 3 * MAX_SIGNATURES,
    max_str=16,
    max_bin=MAX_RECORD_BYTES,
)


@dataclass(frozen=True)
class Proposal:
    record: PublisherRecord  # parsed from record_bytes, not verified
    record_bytes: bytes
    signatures: tuple[tuple[bytes, bytes], ...]  # (public key, signature), as received

    def encode(self) -> bytes:
        return PROPOSAL_MAGIC + codec.pack(
            {
                "record": self.record_bytes,
                "signatures": [{"key": k, "sig": s} for k, s in self.signatures],
            }
        )

    def with_signature(self, key: bytes, signature: bytes) -> Proposal:
        """This proposal plus one signature; an earlier signature by ``key`` is replaced."""
        others = tuple((k, s) for k, s in self.signatures if k != key)
        if len(others) >= MAX_SIGNATURES:
            raise FormatError(f"the proposal already holds {MAX_SIGNATURES} signatures")
        return Proposal(self.record, self.record_bytes, (*others, (key, signature)))

    def signed_by(self, key: bytes) -> bool:
        """Whether the proposal holds a good signature by ``key`` over its record."""
        return any(
            k == key and verify(k, s, Domain.PUBLISHER_RECORD, self.record_bytes)
            for k, s in self.signatures
        )


def new_proposal(record_bytes: bytes) -> Proposal:
    return Proposal(parse_record(record_bytes), record_bytes, ())


def parse_proposal(data: bytes, what: str) -> Proposal:
    """Strictly parse a proposal file (the signatures are checked only when combining)."""
    if not data.startswith(PROPOSAL_MAGIC):
        raise FormatError(f"{what} is not a meshdrop proposal file")
    fields = Fields(codec.unpack(data[len(PROPOSAL_MAGIC) :], _LIMITS, what), what)
    record_bytes = fields.binary("record", None, max_len=MAX_RECORD_BYTES)
    signatures = []
    for i, item in enumerate(fields.map_list("signatures", 0, MAX_SIGNATURES)):
        sf = Fields(item, f"signature {i + 1} of {what}")
        signatures.append((sf.binary("key", PUBLIC_KEY_BYTES), sf.binary("sig", SIGNATURE_BYTES)))
        sf.done()
    fields.done()
    try:
        record = parse_record(record_bytes)
    except FormatError as exc:
        raise FormatError(f"{what} holds a damaged record: {exc}") from exc
    return Proposal(record, record_bytes, tuple(signatures))


def merge_proposals(proposals: Sequence[tuple[str, Proposal]]) -> Proposal:
    """One proposal holding every signature of ``proposals`` (named copies of one record).
    Copies of different records are refused: one of them was changed."""
    if not proposals:
        raise ValueError("nothing to merge")
    first_name, first = proposals[0]
    signatures: list[tuple[bytes, bytes]] = []
    for name, proposal in proposals:
        if proposal.record_bytes != first.record_bytes:
            raise TrustError(
                f"{name} and {first_name} propose different records (one was changed after "
                "it was proposed); combine only copies of one proposal"
            )
        signatures += [pair for pair in proposal.signatures if pair not in signatures]
    return Proposal(first.record, first.record_bytes, tuple(signatures))


def good_signers(
    record_bytes: bytes, signatures: Iterable[tuple[bytes, bytes]], roots: Iterable[bytes]
) -> dict[bytes, bytes]:
    """The keys of ``roots`` with a valid signature over ``record_bytes``: each counts
    once, however often it signed or is listed."""
    wanted = set(roots)
    found: dict[bytes, bytes] = {}
    for key, sig in signatures:
        if (
            key in wanted
            and key not in found
            and verify(key, sig, Domain.PUBLISHER_RECORD, record_bytes)
        ):
            found[key] = sig
    return found


@dataclass(frozen=True)
class Tally:
    """How far a proposal is from publishable, against the current record."""

    old_signed: frozenset[bytes]
    new_signed: frozenset[bytes]
    old_needed: int
    new_needed: int
    ignored: int  # signatures that do not verify or are by keys that are not roots

    @property
    def complete(self) -> bool:
        return len(self.old_signed) >= self.old_needed and len(self.new_signed) >= self.new_needed


def tally(current: PublisherRecord, proposal: Proposal) -> Tally:
    old = good_signers(proposal.record_bytes, proposal.signatures, current.roots)
    new = good_signers(proposal.record_bytes, proposal.signatures, proposal.record.roots)
    counted = set(old) | set(new)
    ignored = sum(1 for key, _ in {*proposal.signatures} if key not in counted)
    return Tally(
        frozenset(old), frozenset(new), current.threshold, proposal.record.threshold, ignored
    )


def already_published(known: PublisherState, proposal: Proposal) -> bool:
    """Whether ``known``'s chain already holds the proposal's very record."""
    version = proposal.record.version
    return (
        proposal.record.publisher == known.publisher
        and 1 <= version <= known.version
        and known.signed[version - 1].record_bytes == proposal.record_bytes
    )


def check_next(known: PublisherState, proposal: Proposal, where: str) -> None:
    """Refuse a proposal that is not the next record of the publisher whose chain
    ``known`` is (read from ``where``), saying which of the two is out of date."""
    record, current = proposal.record, known.current
    name = f"{current.name!r}"
    if record.publisher != current.publisher:
        raise TrustError(
            f"the proposal is for another publisher ({record.fingerprint}), not "
            f"{name} ({current.fingerprint})"
        )
    if record.version == current.version + 1:
        return
    if record.version > current.version + 1:
        raise TrustError(
            f"{where} is out of date: it holds version {current.version} of publisher {name}, "
            f"but the proposal is for version {record.version}, so the publisher has "
            f"published since; get the current publisher.pub from the publisher and give that"
        )
    if already_published(known, proposal):
        raise TrustError(
            f"the proposal is already published: it is version {record.version} of "
            f"publisher {name} in {where}; nothing is left to do with it"
        )
    raise TrustError(
        f"the proposal can no longer be published: publisher {name} published another "
        f"version {record.version} (it is at version {current.version} in {where}); "
        "make a new proposal"
    )


def complete_record(
    known: PublisherState, proposal: Proposal, where: str
) -> tuple[PublisherRecord, SignedRecord]:
    """The signed next record, once the proposal's signatures meet the threshold of the
    current root keys and of the proposal's own; otherwise SignatureError saying how many
    valid signatures of which keys are missing."""
    check_next(known, proposal, where)
    current = known.current
    counts = tally(current, proposal)
    if not counts.complete:
        raise SignatureError(missing_message(current, proposal.record, counts))
    good = good_signers(
        proposal.record_bytes, proposal.signatures, {*current.roots, *proposal.record.roots}
    )
    signed = SignedRecord(proposal.record_bytes, tuple(sorted(good.items())))
    return verify_next_record(current, signed), signed


def missing_message(current: PublisherRecord, record: PublisherRecord, counts: Tally) -> str:
    if set(current.roots) == set(record.roots) and current.threshold == record.threshold:
        sets = [("the root keys", current.roots, counts.old_signed, counts.old_needed)]
    else:
        sets = [
            ("the current root keys", current.roots, counts.old_signed, counts.old_needed),
            ("the new root keys", record.roots, counts.new_signed, counts.new_needed),
        ]
    parts = []
    for label, roots, signed, needed in sets:
        if len(signed) < needed:
            waiting = ", ".join(key_id(k) for k in sorted(roots) if k not in signed)
            more = needed - len(signed)
            parts.append(
                f"{more} more valid {'signature' if more == 1 else 'signatures'} by {label} "
                f"(has {len(signed)} of {needed}; not yet signed by {waiting})"
            )
    return f"version {record.version} cannot be published yet: it needs " + " and ".join(parts)
