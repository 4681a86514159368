"""Records anyone may add cannot stop good content (issue 12, item 1).

The publisher records in a bundle's envelope and in a publisher.pub are not covered by the
manifest's signature: a stick, a peer or a courier can append or prepend records. A record
that fails to parse or to check is skipped, whatever the reason, and the record that
applies is chosen by what the node trusts and by the manifest's signature, never by its
position. Each kind of junk below is tried on every way content arrives: `verify`,
`import` of a file, `trust add` and `import` of a publisher.pub, a courier stick and a LAN
peer. What verified is stored and passed on; the junk never is."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from test_lan_hostile import HostilePeer, listed, offer_of, wait_for
from trustkit import T0, Chain, Delegation, bundle_bytes, signed

from conftest import Publisher, make_publisher, meshdrop_in_process, pack, run_meshdrop, write_tree
from meshdrop.core import codec
from meshdrop.core.bundle import (
    HEADER_SIZE,
    Envelope,
    encode_header,
    encode_publisher_file,
    parse_envelope,
    parse_header,
    parse_publisher_file,
)
from meshdrop.core.records import (
    PublisherRecord,
    SignedRecord,
    parse_record,
    parse_signed_record,
    peek_record,
)
from meshdrop.core.trust import pin_chain, start_state
from meshdrop.core.verify import verify_envelope
from meshdrop.errors import FormatError, SignatureError, TrustError
from meshdrop.store.store import Store
from meshdrop.transports.lan.events import Event
from meshdrop.transports.lan.node import Node, NodeConfig

IDENTITY_POINT = bytes([1]) + bytes(31)  # y = 1: the neutral element, order 1
FILES = {"index.html": b"<p>the real thing</p>", "notes.txt": b"nothing else"}

Junk = Callable[[tuple[SignedRecord, ...], SignedRecord], tuple[SignedRecord, ...]]


def identity_root_record(like: SignedRecord) -> SignedRecord:
    """A well-formed record of the same publisher and a newer version whose root key is the
    identity point: it fails the key check, so it must be skipped, not fatal."""
    real = parse_record(like.record_bytes)
    record = replace(real, version=real.version + 1, roots=(IDENTITY_POINT,), threshold=1)
    return SignedRecord(codec.pack(record.to_value()), ((IDENTITY_POINT, bytes(64)),))


def short_signature_record(like: SignedRecord) -> SignedRecord:
    """A signed-record wrapper whose only signature is 63 bytes: not even a record."""
    return SignedRecord(like.record_bytes, ((like.signatures[0][0], bytes(63)),))


def flipped_publisher_copy(like: SignedRecord) -> SignedRecord:
    """A copy of a real record with one byte of its publisher id flipped: it parses, claims
    a publisher nobody trusts, and its signatures no longer verify."""
    real = parse_record(like.record_bytes)
    publisher = bytes([real.publisher[0] ^ 1]) + real.publisher[1:]
    record = replace(real, publisher=publisher)
    return SignedRecord(codec.pack(record.to_value()), like.signatures)


def appended(make: Callable[[SignedRecord], SignedRecord]) -> Junk:
    return lambda records, stranger: (*records, make(records[0]))


def prepended(make: Callable[[SignedRecord], SignedRecord]) -> Junk:
    return lambda records, stranger: (make(records[0]), *records)


def stranger_in_front(
    records: tuple[SignedRecord, ...], stranger: SignedRecord
) -> Sequence[SignedRecord]:
    """Another publisher's valid record 1 placed before the real chain."""
    return (stranger, *records)


JUNK: dict[str, Junk] = {
    "identity-point-root-appended": appended(identity_root_record),
    "identity-point-root-in-front": prepended(identity_root_record),
    "short-signature-wrapper": prepended(short_signature_record),
    "flipped-publisher-id-copy-in-front": prepended(flipped_publisher_copy),
    "other-publishers-valid-record-in-front": lambda r, s: tuple(stranger_in_front(r, s)),
}
CASES = [pytest.param(junk, id=name) for name, junk in JUNK.items()]


# Rewriting bundle files and publisher files with junk


def envelope_of(data: bytes) -> tuple[Envelope, int]:
    length = parse_header(data[:HEADER_SIZE], "a test bundle")
    return parse_envelope(data[HEADER_SIZE : HEADER_SIZE + length], "a test bundle"), length


def with_records(data: bytes, records: Sequence[SignedRecord]) -> bytes:
    """The same bundle (manifest, signature, data) carrying ``records`` instead."""
    envelope, length = envelope_of(data)
    rebuilt = Envelope(
        envelope.manifest_bytes, envelope.signer, envelope.signature, tuple(records)
    ).encode()
    return encode_header(len(rebuilt)) + rebuilt + data[HEADER_SIZE + length :]


def add_junk(data: bytes, junk: Junk, stranger: SignedRecord) -> bytes:
    envelope, _ = envelope_of(data)
    return with_records(data, junk(envelope.records, stranger))


def pub_with_junk(pub: Path, junk: Junk, stranger: SignedRecord, out: Path) -> Path:
    chain = parse_publisher_file(pub.read_bytes(), str(pub))
    out.write_bytes(encode_publisher_file(junk(chain, stranger)))
    return out


def first_record(pub: Path) -> SignedRecord:
    return parse_publisher_file(pub.read_bytes(), str(pub))[0]


def stored_envelopes(home: Path) -> list[Envelope]:
    """Every envelope the node's index holds (read from the database file itself)."""
    with contextlib.closing(
        sqlite3.connect(f"file:{home / 'index.sqlite'}?mode=ro", uri=True)
    ) as db:
        rows = db.execute("SELECT envelope FROM bundles ORDER BY id").fetchall()
    return [parse_envelope(row[0], "a stored envelope") for row in rows]


def assert_no_junk_stored(home: Path, real: Sequence[SignedRecord]) -> None:
    """What the node stored (and so passes on) carries only the records that verified."""
    real_bytes = {r.record_bytes for r in real}
    for envelope in stored_envelopes(home):
        assert envelope.records, "a stored envelope lost its chain"
        assert {r.record_bytes for r in envelope.records} <= real_bytes


# The rule itself, in process


def scenario_chain() -> tuple[Chain, list[SignedRecord]]:
    chain = Chain(["r1"], 1)
    return chain, [signed(chain.record(1, signers=(Delegation("s1"),)), ["r1"])]


def stranger_record(signer: str = "x-s1") -> SignedRecord:
    other = Chain(["x1"], 1, name="Another Publisher")
    return signed(other.record(1, signers=(Delegation(signer),)), ["x1"])


@pytest.mark.parametrize("junk", CASES)
def test_junk_records_do_not_change_what_verifies(junk: Junk) -> None:
    chain, records = scenario_chain()
    honest = bundle_bytes(records, chain.id, "s1")
    hostile, _ = envelope_of(add_junk(honest, junk, stranger_record()))
    pinned = start_state(records)
    verified = verify_envelope(hostile, {chain.id: pinned}, T0)
    assert verified.state.publisher == chain.id
    assert verified.relay_envelope().records == tuple(records)


def test_the_signing_key_decides_between_two_trusted_publishers_not_record_order() -> None:
    """Both publishers are trusted and the other's record comes first: the bundle is
    judged by the publisher whose chain delegates its signing key."""
    chain, records = scenario_chain()
    other = stranger_record()
    other_state = start_state([other])
    trusted = {chain.id: start_state(records), other_state.publisher: other_state}
    honest = bundle_bytes(records, chain.id, "s1")
    hostile, _ = envelope_of(with_records(honest, (other, *records)))
    assert verify_envelope(hostile, trusted, T0).state.publisher == chain.id


def test_a_signing_key_two_trusted_publishers_share_is_judged_by_the_signed_manifest() -> None:
    """A key delegated by both: the publisher the signed manifest names applies, so the
    other's record in front changes nothing, and a manifest naming neither is refused."""
    chain, records = scenario_chain()
    other = stranger_record(signer="s1")
    other_state = start_state([other])
    trusted = {chain.id: start_state(records), other_state.publisher: other_state}
    honest = bundle_bytes(records, chain.id, "s1")
    hostile, _ = envelope_of(with_records(honest, (other, *records)))
    assert verify_envelope(hostile, trusted, T0).state.publisher == chain.id
    for_other, _ = envelope_of(bundle_bytes([other], other_state.publisher, "s1"))
    assert verify_envelope(for_other, trusted, T0).state.publisher == other_state.publisher
    neither, _ = envelope_of(bundle_bytes(records, bytes(32), "s1"))
    with pytest.raises(SignatureError, match="names another publisher"):
        verify_envelope(neither, trusted, T0)


def test_a_bundle_whose_records_are_all_junk_verifies_from_the_pinned_chain() -> None:
    chain, records = scenario_chain()
    honest = bundle_bytes(records, chain.id, "s1")
    hostile, _ = envelope_of(with_records(honest, (short_signature_record(records[0]),)))
    verified = verify_envelope(hostile, {chain.id: start_state(records)}, T0)
    assert verified.relay_envelope().records == tuple(records)


def test_an_unreachable_record_beside_a_good_chain_is_reported_not_fatal_when_pinning() -> None:
    chain, records = scenario_chain()
    gap = signed(chain.record(3), ["r1"])  # version 3 with no version 2: cannot be reached
    state, problem = pin_chain([*records, gap])
    assert state.version == 1
    assert problem is not None and "gap after version 1" in problem
    with pytest.raises(TrustError, match="gap after version 1"):
        start_state([*records, gap])  # a publisher's own folder stays strict


# Every way content arrives, through the installed command


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("junk")
    publisher = make_publisher(root / "publisher", "Workers' News")
    stranger = make_publisher(root / "stranger", "Another Publisher")
    bundle = pack(publisher, write_tree(root / "src", FILES), root / "news.mdrop", "news")
    return {
        "root": root,
        "publisher": publisher.folder,
        "stranger": stranger.folder,
        "bundle": bundle,
    }


# The command a test is about runs as a real process (run_meshdrop); set-up steps and the
# looks afterwards run the same commands in process.
step = meshdrop_in_process


def junk_bundle(world: dict[str, Path], junk: Junk, out: Path) -> Path:
    stranger = first_record(Publisher(world["stranger"]).pub)
    out.write_bytes(add_junk(world["bundle"].read_bytes(), junk, stranger))
    return out


def real_chain(world: dict[str, Path]) -> tuple[SignedRecord, ...]:
    pub = Publisher(world["publisher"]).pub
    return parse_publisher_file(pub.read_bytes(), str(pub))


@pytest.mark.parametrize("junk", CASES)
def test_verify_accepts_a_good_bundle_carrying_junk_records(
    junk: Junk, world: dict[str, Path], tmp_path: Path
) -> None:
    path = junk_bundle(world, junk, tmp_path / "news.mdrop")
    pub = Publisher(world["publisher"]).pub
    result = run_meshdrop("verify", path, "--trust", pub, "--json", check=True)
    assert json.loads(result.out)["ok"] is True


@pytest.mark.parametrize("junk", CASES)
def test_import_stores_a_good_bundle_carrying_junk_records_without_the_junk(
    junk: Junk, world: dict[str, Path], tmp_path: Path
) -> None:
    path = junk_bundle(world, junk, tmp_path / "news.mdrop")
    home = tmp_path / "node"
    step("--home", home, "trust", "add", "--yes", Publisher(world["publisher"]).pub, check=True)
    result = run_meshdrop("--home", home, "import", path, check=True)
    assert ": imported" in result.out
    assert [e.manifest_bytes for e in stored_envelopes(home)] == [
        envelope_of(world["bundle"].read_bytes())[0].manifest_bytes
    ]
    assert_no_junk_stored(home, real_chain(world))


PUB_JUNK = [p for p in CASES if p.id != "other-publishers-valid-record-in-front"]


@pytest.mark.parametrize("junk", PUB_JUNK)
def test_trust_add_takes_the_valid_chain_of_a_publisher_file_carrying_junk(
    junk: Junk, world: dict[str, Path], tmp_path: Path
) -> None:
    stranger = first_record(Publisher(world["stranger"]).pub)
    pub = pub_with_junk(Publisher(world["publisher"]).pub, junk, stranger, tmp_path / "x.pub")
    home = tmp_path / "node"
    result = run_meshdrop("--home", home, "trust", "add", "--yes", pub, check=True)
    assert "now trusting Workers' News" in result.out
    trusted = step("--home", home, "trust", "ls", "--json", check=True)
    assert [json.loads(line)["name"] for line in trusted.out.splitlines()] == ["Workers' News"]
    step("--home", home, "import", world["bundle"], check=True)
    with Store(home) as store:
        [state] = store.trusted().values()
        assert state.signed == real_chain(world)


def test_trust_add_refuses_a_file_holding_two_publishers_and_names_both(
    world: dict[str, Path], tmp_path: Path
) -> None:
    """Which of two valid publishers a person meant to trust cannot be guessed: refused,
    naming both fingerprints, and nothing is trusted."""
    stranger = first_record(Publisher(world["stranger"]).pub)
    pub = pub_with_junk(
        Publisher(world["publisher"]).pub,
        JUNK["other-publishers-valid-record-in-front"],
        stranger,
        tmp_path / "two.pub",
    )
    home = tmp_path / "node"
    result = run_meshdrop("--home", home, "trust", "add", "--yes", pub)
    assert result.code == 4 and "Traceback" not in result.err
    assert "several publishers" in result.err
    for folder in (world["publisher"], world["stranger"]):
        fingerprint = start_state(
            parse_publisher_file(Publisher(folder).pub.read_bytes(), "pub")
        ).fingerprint
        assert fingerprint in result.err
    assert step("--home", home, "trust", "ls", "--json", check=True).out == ""


@pytest.mark.parametrize("junk", CASES)
def test_import_of_a_publisher_file_carrying_junk_is_not_refused(
    junk: Junk, world: dict[str, Path], tmp_path: Path
) -> None:
    stranger = first_record(Publisher(world["stranger"]).pub)
    pub = pub_with_junk(Publisher(world["publisher"]).pub, junk, stranger, tmp_path / "x.pub")
    home = tmp_path / "node"
    step("--home", home, "trust", "add", "--yes", Publisher(world["publisher"]).pub, check=True)
    result = run_meshdrop("--home", home, "import", pub, "--json", check=True)
    assert json.loads(result.out)["outcome"] == "already had"


def test_a_courier_stick_with_junk_records_still_delivers(
    world: dict[str, Path], tmp_path: Path
) -> None:
    """Every bundle file and the publisher file on an exported stick get junk records in
    front; a fresh node imports the stick whole, and stores none of the junk."""
    source = tmp_path / "source"
    pub = Publisher(world["publisher"]).pub
    step("--home", source, "trust", "add", "--yes", pub, check=True)
    step("--home", source, "import", world["bundle"], check=True)
    stick = tmp_path / "stick"
    stick.mkdir()
    step("--home", source, "export", stick, "-q", check=True)
    stranger = first_record(Publisher(world["stranger"]).pub)
    bundles = sorted((stick / "meshdrop").rglob("*.mdrop"))
    pubs = sorted((stick / "meshdrop").rglob("*.pub"))
    assert bundles and pubs
    for path in bundles:
        path.write_bytes(add_junk(path.read_bytes(), prepended(identity_root_record), stranger))
        path.write_bytes(
            add_junk(path.read_bytes(), JUNK["other-publishers-valid-record-in-front"], stranger)
        )
    for path in pubs:
        pub_with_junk(path, prepended(identity_root_record), stranger, path)
    home = tmp_path / "node"
    step("--home", home, "trust", "add", "--yes", pub, check=True)
    result = run_meshdrop("--home", home, "import", stick, "--json", "-q")
    assert result.code == 0, result
    assert [e.manifest_bytes for e in stored_envelopes(home)] == [
        envelope_of(world["bundle"].read_bytes())[0].manifest_bytes
    ]
    assert_no_junk_stored(home, real_chain(world))


async def lan_scenario(world: dict[str, Path], tmp: Path) -> None:
    pub = Publisher(world["publisher"]).pub
    source = tmp / "source"
    run_meshdrop("--home", source, "trust", "add", "--yes", pub, check=True)
    run_meshdrop("--home", source, "import", world["bundle"], check=True)
    offer = offer_of(source)
    stranger = first_record(Publisher(world["stranger"]).pub)
    for digest, envelope_bytes in offer.envelopes.items():
        envelope = parse_envelope(envelope_bytes, "test")
        records = JUNK["other-publishers-valid-record-in-front"](envelope.records, stranger)
        records = (identity_root_record(envelope.records[0]), *records)
        offer.envelopes[digest] = replace(envelope, records=tuple(records)).encode()
    peer = HostilePeer(offer)
    await peer.start()
    home = tmp / "node"
    run_meshdrop("--home", home, "trust", "add", "--yes", pub, check=True)
    events: list[Event] = []
    node = Node(
        NodeConfig(
            home=home,
            bind="127.0.0.1",
            port=0,
            peers=(("127.0.0.1", peer.port),),
            discovery=False,
        ),
        events.append,
    )
    await node.start()
    try:
        await wait_for(lambda: any(e["event"] == "bundle" for e in events), "the bundle")
        assert await asyncio.to_thread(listed, tmp / "node") == ["news"]
        assert not [e for e in events if e["event"] == "bad-peer"], events
    finally:
        await node.stop()
        await peer.stop()


def test_a_peer_sending_junk_records_beside_a_good_bundle_still_delivers_it(
    world: dict[str, Path], tmp_path: Path
) -> None:
    """The only peer (an in-test aiohttp server on 127.0.0.1) serves the real bundle with
    an identity-point record and another publisher's record in front of the chain."""
    asyncio.run(lan_scenario(world, tmp_path))
    assert_no_junk_stored(tmp_path / "node", real_chain(world))


def test_junk_helpers_make_what_they_say() -> None:
    """The builders above: each junk record really fails, or belongs to someone else."""
    _, records = scenario_chain()
    with pytest.raises(SignatureError, match="small-order"):
        parse_record(identity_root_record(records[0]).record_bytes)
    flipped = peek_record(flipped_publisher_copy(records[0]))
    assert flipped is not None
    assert flipped.publisher != parse_record(records[0].record_bytes).publisher
    with pytest.raises(FormatError, match="exactly 64 bytes"):
        parse_signed_record(short_signature_record(records[0]).to_value())
    other = parse_record(stranger_record().record_bytes)
    assert isinstance(other, PublisherRecord) and other.publisher != flipped.publisher
