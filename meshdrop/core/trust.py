"""What a node believes about a publisher: its verified chain of records, and the
decisions that follow from it (which signing keys count, for what, since when).

Pure and order-independent: the state reached depends only on the set of records seen,
never on the order they arrived in, because a chain only ever grows one verified step at
a time and revocations only ever accumulate.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from meshdrop.core.bundle import parse_publisher_file
from meshdrop.core.keys import key_id, parse_fingerprint
from meshdrop.core.records import (
    MAX_CHAIN,
    PublisherRecord,
    Reason,
    Revocation,
    SignedRecord,
    Signer,
    parse_record,
    peek_record,
    verify_first_record,
    verify_next_record,
)
from meshdrop.errors import FingerprintMismatchError, MeshdropError, TrustError, UsageError

FINGERPRINT_CHARS = 32  # base32 characters: 160 bits
_BASE32 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")


def describe_time(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class PublisherState:
    """A verified chain of publisher records 1..N, as received (to pass on)."""

    records: tuple[PublisherRecord, ...]
    signed: tuple[SignedRecord, ...]

    @property
    def current(self) -> PublisherRecord:
        return self.records[-1]

    @property
    def publisher(self) -> bytes:
        return self.current.publisher

    @property
    def fingerprint(self) -> str:
        return self.current.fingerprint

    @property
    def version(self) -> int:
        return self.current.version

    def revocations(self) -> dict[bytes, Revocation]:
        """Every key ever revoked in the chain. Revocations accumulate: a later record
        cannot un-revoke a key, compromised outranks retired, and the earliest
        retirement time counts."""
        found: dict[bytes, Revocation] = {}
        for record in self.records:
            for rev in record.revoked:
                old = found.get(rev.key)
                if old is None or _stronger(rev, old):
                    found[rev.key] = rev
        return found

    def compromised(self) -> frozenset[bytes]:
        return frozenset(k for k, r in self.revocations().items() if r.reason is Reason.COMPROMISED)

    def signer(self, key: bytes) -> Signer | None:
        """The key's delegation in the newest record that lists it."""
        for record in reversed(self.records):
            found = record.signer(key)
            if found is not None:
                return found
        return None

    def delegation(self, key: bytes) -> Signer:
        """The key's delegation, unless it was never delegated or was compromised: what
        can be decided before reading anything the key signed."""
        name = f"{self.current.name!r} ({self.fingerprint})"
        revocation = self.revocations().get(key)
        if revocation is not None and revocation.reason is Reason.COMPROMISED:
            raise TrustError(
                f"withdrawn: signed with key {key_id(key)}, which publisher {name} "
                "reported compromised"
            )
        signer = self.signer(key)
        if signer is None:
            raise TrustError(
                f"signed with key {key_id(key)}, which publisher {name} has not delegated"
            )
        return signer

    def check_signer(self, key: bytes, bundle_name: str, created: int) -> Signer:
        """The delegation under which ``key`` may sign ``bundle_name`` at ``created``."""
        signer = self.delegation(key)
        revocation = self.revocations().get(key)
        if revocation is not None and created > revocation.at:
            raise TrustError(
                f"signed with key {signer.id} on {describe_time(created)}, after the publisher "
                f"retired it on {describe_time(revocation.at)}"
            )
        if not signer.valid_at(created):
            raise TrustError(
                f"signed with key {signer.id}, which was not valid on {describe_time(created)} "
                f"(valid {describe_time(signer.not_before)} to {describe_time(signer.expires)})"
            )
        if not any(fnmatch.fnmatchcase(bundle_name, pattern) for pattern in signer.scope):
            raise TrustError(f"key {signer.id} may not sign bundles named {bundle_name!r}")
        return signer

    def key_state(self, key: bytes, now: int) -> str:
        """valid, expired, not yet valid, retired or compromised: for people."""
        revocation = self.revocations().get(key)
        if revocation is not None:
            return revocation.reason.value
        signer = self.signer(key)
        if signer is None:
            return "unknown"
        if signer.valid_at(now):
            return "valid"
        return "expired" if signer.expires < now else "not yet valid"


def _stronger(new: Revocation, old: Revocation) -> bool:
    if new.reason is not old.reason:
        return new.reason is Reason.COMPROMISED
    return new.at < old.at


def start_state(chain: Iterable[SignedRecord]) -> PublisherState:
    """Verify a chain from record 1, strictly (a publisher's own folder, a stored chain).
    Raises if record 1 is missing or bad, or if any later record cannot be reached."""
    state, problem = pin_chain(chain)
    if problem is not None:
        raise TrustError(problem)
    return state


def pin_chain(chain: Iterable[SignedRecord]) -> tuple[PublisherState, str | None]:
    """The chain a publisher file proves, from its record 1 (a file being pinned). Records
    that fail to parse or to check are skipped; later records that cannot be reached are
    reported as the problem, not fatal, so junk beside a good chain cannot stop it. Raises
    only if no single verified record 1 is found."""
    chain = tuple(chain)
    firsts = []
    unreadable: MeshdropError | None = None
    for signed in chain:
        try:
            record = parse_record(signed.record_bytes)
        except MeshdropError as exc:
            unreadable = unreadable or exc
            continue
        if record.version == 1:
            firsts.append(signed)
    if not firsts:
        if unreadable is not None:
            raise type(unreadable)(
                f"the publisher file holds no readable first record ({unreadable})"
            )
        raise TrustError("the publisher file does not hold the publisher's first record")
    verified: dict[bytes, tuple[PublisherRecord, SignedRecord]] = {}
    failure: MeshdropError | None = None
    for signed in sorted(firsts, key=lambda s: s.record_bytes):
        try:
            record = verify_first_record(signed)
        except MeshdropError as exc:
            failure = failure or exc
            continue
        verified.setdefault(record.publisher, (record, signed))
    if not verified:
        assert failure is not None
        raise failure
    if len(verified) > 1:
        names = ", ".join(sorted(r.fingerprint for r, _ in verified.values()))
        raise TrustError(
            f"the publisher file holds the first records of several publishers: {names}"
        )
    [(first, first_signed)] = verified.values()
    return advance_state(PublisherState((first,), (first_signed,)), chain)


def advance_state(
    state: PublisherState, candidates: Iterable[SignedRecord]
) -> tuple[PublisherState, str | None]:
    """Follow newer records of this publisher one verified step at a time. Records that
    do not verify, are older, or belong to others are ignored; a record that cannot be
    reached (a gap, a bad step) stops the walk there. Returns the new state and, if
    something newer could not be reached, why."""
    by_version: dict[int, list[SignedRecord]] = {}
    for signed in candidates:
        record = peek_record(signed)
        if record is None or record.publisher != state.publisher:
            continue
        if record.version > state.version:
            options = by_version.setdefault(record.version, [])
            if signed not in options:
                options.append(signed)
    if len(by_version) > MAX_CHAIN:
        return state, f"the publisher's record chain has more than {MAX_CHAIN} new steps"
    records, signed_chain = list(state.records), list(state.signed)
    problem: str | None = None
    while by_version:
        step = records[-1].version + 1
        options = by_version.pop(step, [])
        if not options:
            problem = f"the publisher's record chain has a gap after version {step - 1}"
            break
        verified = _first_verified(records[-1], options)
        if isinstance(verified, str):
            problem = verified
            break
        records.append(verified[0])
        signed_chain.append(verified[1])
    return PublisherState(tuple(records), tuple(signed_chain)), problem


def _first_verified(
    current: PublisherRecord, options: list[SignedRecord]
) -> tuple[PublisherRecord, SignedRecord] | str:
    reason = ""
    # Two valid records of one version mean the root keys signed both (a root compromise);
    # trying them in byte order at least makes the choice the same on every node.
    for signed in sorted(options, key=lambda s: s.record_bytes):
        try:
            return verify_next_record(current, signed), signed
        except MeshdropError as exc:
            reason = str(exc)
    return reason


def pin_publisher_file(data: bytes, what: str) -> tuple[PublisherState, str | None]:
    """The chain a publisher.pub proves (``pin_chain``), read from its bytes."""
    return pin_chain(parse_publisher_file(data, what))


def check_fingerprint(told: str, actual: str) -> None:
    """Refuse unless ``told`` (what the node owner was told, any case, with or without
    dashes or spaces) is the whole of ``actual``. A start of it is not enough: an attacker
    can search for a key whose fingerprint starts the same."""
    wanted = parse_fingerprint(told)
    compact = wanted.replace("-", "")
    if not compact or not set(compact) <= _BASE32:
        raise UsageError(
            f"{told!r} is not a fingerprint: it has {FINGERPRINT_CHARS} characters of A-Z and "
            "2-7, in groups such as ABCD-EFGH-..."
        )
    if len(compact) < FINGERPRINT_CHARS:
        raise UsageError(
            f"--fingerprint needs the whole fingerprint ({FINGERPRINT_CHARS} characters, you gave "
            f"{len(compact)}): a start of it can be matched by an attacker's key"
        )
    if wanted != actual:
        raise FingerprintMismatchError(
            f"refused: this publisher file's fingerprint is {actual}, not {wanted}; it is not "
            "the publisher you were told about (do not trust it)"
        )
