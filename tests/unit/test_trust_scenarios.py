"""Trust decisions as data tables, in the style of TUF's conformance suite: each row names
the keys, threshold, who signed, record versions and clock, and the outcome expected."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from trustkit import DAY, T0, YEAR, Chain, Delegation, bundle_bytes, signed

from meshdrop.core.bundle import HEADER_SIZE, parse_envelope
from meshdrop.core.keys import Domain
from meshdrop.core.records import MAX_CHAIN, Reason, SignedRecord
from meshdrop.core.trust import PublisherState, advance_state, start_state
from meshdrop.core.verify import verify_envelope
from meshdrop.errors import MeshdropError


# Records: (row id, how to build the chain, expected version reached, expected problem)
@dataclass
class ChainCase:
    build: Callable[[], list[SignedRecord]]
    reached: int | None  # None: record 1 itself is refused
    problem: str | None = None


def one_of(roots: list[str], threshold: int, by: list[str]) -> Callable[[], list[SignedRecord]]:
    def build() -> list[SignedRecord]:
        c = Chain(roots, threshold)
        return [signed(c.record(1), by)]

    return build


def rotation(
    steps: list[tuple[list[str], int, list[str]]], start: tuple[list[str], int] = (["r1"], 1)
) -> Callable[[], list[SignedRecord]]:
    """steps: (new roots, new threshold, signed by) for versions 2, 3, ..."""

    def build() -> list[SignedRecord]:
        c = Chain(*start)
        chain = [signed(c.record(1), c.roots)]
        for version, (roots, threshold, by) in enumerate(steps, start=2):
            chain.append(signed(c.record(version, roots, threshold), by))
        return chain

    return build


def without(
    build: Callable[[], list[SignedRecord]], index: int
) -> Callable[[], list[SignedRecord]]:
    return lambda: [r for i, r in enumerate(build()) if i != index]


ROT3 = rotation([(["r2"], 1, ["r1", "r2"]), (["r3"], 1, ["r2", "r3"])])

CHAIN_CASES = [
    pytest.param(ChainCase(one_of(["r1", "r2", "r3"], 2, ["r1", "r2"]), 1), id="threshold-met"),
    pytest.param(
        ChainCase(one_of(["r1", "r2", "r3"], 3, ["r1", "r2", "r3"]), 1), id="threshold-all-of-three"
    ),
    pytest.param(
        ChainCase(one_of(["r1", "r2", "r3"], 2, ["r1"]), None, "valid root signatures"),
        id="threshold-unmet",
    ),
    pytest.param(
        ChainCase(one_of(["r1", "r2", "r3"], 2, ["r1", "r1"]), None, "valid root signatures"),
        id="duplicate-signature-counts-once",
    ),
    pytest.param(
        ChainCase(one_of(["r1", "r2"], 2, ["r1", "x9"]), None, "valid root signatures"),
        id="signature-by-non-root-ignored",
    ),
    pytest.param(ChainCase(ROT3, 3), id="rotation-1-2-3"),
    pytest.param(ChainCase(without(ROT3, 1), 1, "gap after version 1"), id="rotation-missing-step"),
    pytest.param(
        ChainCase(rotation([(["r2"], 1, ["r2"])]), 1, "previous root keys"),
        id="rotation-signed-only-by-new-keys",
    ),
    pytest.param(
        ChainCase(rotation([(["r2"], 1, ["r1"])]), 1, "its own root keys"),
        id="rotation-signed-only-by-old-keys",
    ),
    pytest.param(
        ChainCase(rotation([(["r4"], 1, ["r1", "r2", "r4"])], start=(["r1", "r2", "r3"], 2)), 2),
        id="rotation-to-smaller-threshold",
    ),
    pytest.param(
        ChainCase(
            rotation([(["r4"], 1, ["r1", "r4"])], start=(["r1", "r2", "r3"], 2)),
            1,
            "previous root keys",
        ),
        id="rotation-below-old-threshold",
    ),
    pytest.param(
        ChainCase(rotation([(["r1"], 1, ["r1"])] * (MAX_CHAIN + 1)), 1, f"more than {MAX_CHAIN}"),
        id="chain-longer-than-cap",
    ),
]


@pytest.mark.parametrize("case", CHAIN_CASES)
def test_publisher_chain(case: ChainCase) -> None:
    chain = case.build()
    if case.reached is None:
        with pytest.raises(MeshdropError, match=case.problem):
            start_state(chain)
        return
    first = start_state(chain[:1])
    state, problem = advance_state(first, chain[1:])
    assert state.version == case.reached
    if case.problem is None:
        assert problem is None
        assert start_state(chain).version == case.reached
    else:
        assert problem is not None and case.problem in problem


def test_record_signature_replayed_as_manifest_signature_counts_nothing() -> None:
    c = Chain(["r1"], 1)
    forged = signed(c.record(1), ["r1"], domain=Domain.MANIFEST)
    with pytest.raises(MeshdropError, match="valid root signatures"):
        start_state([forged])


def test_records_in_any_order_reach_the_same_version() -> None:
    chain = ROT3()
    first = start_state(chain[:1])
    for order in ([2, 1], [1, 2], [2, 2, 1, 0]):
        state, problem = advance_state(first, [chain[i] for i in order])
        assert (state.version, problem) == (3, None)


# Bundles: the signer, its delegation and revocation, the bundle's times and the clock.
@dataclass
class BundleCase:
    signer: str = "s1"
    delegations: tuple[Delegation, ...] = (Delegation("s1"),)
    revoked: tuple[tuple[str, Reason, int], ...] = ()
    name: str = "news"
    created: int = T0
    expires: int | None = None
    now: int = T0
    domain: Domain = Domain.MANIFEST
    error: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


BUNDLE_CASES = [
    pytest.param(BundleCase(), id="delegated-key-in-window"),
    pytest.param(BundleCase(created=T0 + 2 * YEAR, error="was not valid on"), id="expired-signer"),
    pytest.param(
        BundleCase(created=T0 - 2 * YEAR, error="was not valid on"), id="signer-not-yet-valid"
    ),
    pytest.param(BundleCase(signer="s9", error="has not delegated"), id="undelegated-key"),
    pytest.param(
        BundleCase(delegations=(Delegation("s1", scope=("sports-*",)),), error="may not sign"),
        id="out-of-scope",
    ),
    pytest.param(
        BundleCase(delegations=(Delegation("s1", scope=("news*",)),), name="news-ko"),
        id="in-scope-glob",
    ),
    pytest.param(
        BundleCase(delegations=(Delegation("s2"),), revoked=(("s1", Reason.RETIRED, T0 + DAY),)),
        id="retired-key-signed-before-retirement",
    ),
    pytest.param(
        BundleCase(
            delegations=(Delegation("s2"),),
            created=T0 + 2 * DAY,
            revoked=(("s1", Reason.RETIRED, T0 + DAY),),
            now=T0 + 2 * DAY,
            error="after the publisher retired",
        ),
        id="retired-key-signed-after-retirement",
    ),
    pytest.param(
        BundleCase(
            delegations=(Delegation("s2"),),
            revoked=(("s1", Reason.COMPROMISED, T0 + DAY),),
            error="withdrawn",
        ),
        id="compromised-key-withdraws-even-older-bundles",
    ),
    pytest.param(
        BundleCase(expires=T0 + DAY, now=T0 + 2 * DAY, error="expired"), id="bundle-expired"
    ),
    pytest.param(BundleCase(expires=T0 + YEAR, now=T0 + DAY), id="bundle-not-yet-expired"),
    pytest.param(
        BundleCase(domain=Domain.PUBLISHER_RECORD, error="does not verify"),
        id="record-signature-presented-as-manifest",
    ),
]


def state_for(case: BundleCase) -> tuple[PublisherState, list[SignedRecord]]:
    c = Chain(["r1"], 1)
    chain = [signed(c.record(1, signers=(Delegation("s1"),)), ["r1"])]
    if case.delegations != (Delegation("s1"),) or case.revoked:
        chain.append(signed(c.record(2, signers=case.delegations, revoked=case.revoked), ["r1"]))
    return start_state(chain[:1]), chain


@pytest.mark.parametrize("case", BUNDLE_CASES)
def test_bundle_verdict(case: BundleCase) -> None:
    first, chain = state_for(case)
    data = bundle_bytes(
        chain,
        first.publisher,
        case.signer,
        name=case.name,
        created=case.created,
        expires=case.expires,
        domain=case.domain,
    )
    envelope = parse_envelope(
        data[HEADER_SIZE : HEADER_SIZE + int.from_bytes(data[12:16], "big")], "case"
    )
    trusted = {first.publisher: first}
    if case.error is None:
        verified = verify_envelope(envelope, trusted, case.now)
        assert verified.manifest.name == case.name
        assert verified.state.version == len(chain)
    else:
        with pytest.raises(MeshdropError, match=case.error):
            verify_envelope(envelope, trusted, case.now)


def test_revocation_cannot_be_undone_by_a_later_record() -> None:
    c = Chain(["r1"], 1)
    chain = [
        signed(c.record(1, signers=(Delegation("s1"),)), ["r1"]),
        signed(c.record(2, signers=(), revoked=(("s1", Reason.COMPROMISED, T0),)), ["r1"]),
        signed(c.record(3, signers=(Delegation("s1"),)), ["r1"]),
    ]
    state = start_state(chain)
    assert state.version == 3
    s1 = state.records[0].signers[0].key
    assert state.key_state(s1, T0) == "compromised"
    with pytest.raises(MeshdropError, match="withdrawn"):
        state.check_signer(s1, "news", T0)
