"""Fuzz targets: each feeds bytes from a stranger to the real parser, the way the product
does, and lets only the project's error family (MeshdropError) escape; the few other
exceptions a caller turns into an answer (the reader's 416 and 404) are caught inside
their targets. Anything else is a finding. The targets of the peer API and couriers are
in fuzztargets_net, blind files' in fuzztargets_blind, the reader's in fuzztargets_reader;
all_targets() gathers them. Driven by scripts/fuzz.py (atheris) and
tests/integration/test_fuzz_short.py."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from meshdrop.core import acks, circles, codec, drops, reportkeys, storekeys
from meshdrop.core.bundle import (
    HEADER_SIZE,
    parse_envelope,
    parse_header,
    parse_publisher_file,
)
from meshdrop.core.keys import Domain, verify
from meshdrop.core.manifest import parse_manifest, verify_chunk
from meshdrop.core.proposal import parse_proposal, tally
from meshdrop.core.records import parse_record, parse_signed_records, peek_record
from meshdrop.core.reports import decode_report
from meshdrop.core.trust import pin_chain, pin_publisher_file
from meshdrop.core.verify import verify_envelope
from meshdrop.errors import FormatError, MeshdropError

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "docs" / "vectors" / "drops.json"
# A fixed "now" inside every vector's and seed's lifetime (drops.json's own "now").
NOW = 1_800_086_400


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    about: str


def call(target: Target, data: bytes) -> None:
    """Run one input; only a finding escapes."""
    with contextlib.suppress(MeshdropError):
        target.run(data)


@cache
def vectors() -> dict[str, object]:
    loaded: dict[str, object] = json.loads(VECTORS.read_text())
    return loaded


def _hex(name: str) -> bytes:
    value = vectors()[name]
    assert isinstance(value, str)
    return bytes.fromhex(value)


def _signer_keys_at(_: int) -> Sequence[bytes]:
    return [_hex("signer")]


# --- Containers and formats (core/) -------------------------------------------------


def fuzz_codec(data: bytes) -> None:
    limits = codec.Limits(max_bytes=1 << 20, max_depth=8, max_items=4096, max_bin=1 << 20)
    value = codec.unpack(data, limits, "fuzz input")
    # What unpack accepts is canonical: packing it again gives the input back.
    if codec.pack(value) != data:
        raise AssertionError("codec.unpack accepted bytes that do not pack back to themselves")


def fuzz_bundle(data: bytes) -> None:
    """A whole .mdrop as open_bundle_file, verify_envelope and the chunk checks read it
    (the trusted publisher is the one the bundle's own records prove, so a mutated seed
    still reaches the manifest and data checks)."""
    length = parse_header(data[:HEADER_SIZE], "fuzz.mdrop")
    raw = data[HEADER_SIZE : HEADER_SIZE + length]
    if len(raw) != length:
        raise FormatError("truncated inside its envelope")
    envelope = parse_envelope(raw, "fuzz.mdrop")
    for signed in envelope.records:
        peek_record(signed)
    state, _problem = pin_chain(envelope.records)
    verified = verify_envelope(envelope, {state.publisher: state}, NOW)
    body = memoryview(data)[HEADER_SIZE + length :]
    if len(body) != verified.manifest.size:
        raise FormatError("data section of the wrong size")
    for ref in verified.manifest.chunk_refs():
        verify_chunk(ref, body[ref.offset : ref.offset + ref.size])


def fuzz_self_signed(data: bytes) -> None:
    """`inspect` of a bundle with no pinned publisher (store/bundlefile.read_self_signed)."""
    length = parse_header(data[:HEADER_SIZE], "fuzz.mdrop")
    envelope = parse_envelope(data[HEADER_SIZE : HEADER_SIZE + length], "fuzz.mdrop")
    if verify(envelope.signer, envelope.signature, Domain.MANIFEST, envelope.manifest_bytes):
        parse_manifest(envelope.manifest_bytes)


def fuzz_manifest(data: bytes) -> None:
    manifest = parse_manifest(data)
    manifest.chunk_refs()
    if manifest.encode() != data:
        raise AssertionError("a parsed manifest does not encode back to its bytes")


def fuzz_record(data: bytes) -> None:
    record = parse_record(data)
    for signer in record.signers:
        record.signer(signer.key)


def fuzz_publisher_file(data: bytes) -> None:
    """publisher.pub as `trust add` and `verify --trust` read it."""
    parse_publisher_file(data, "publisher.pub")
    pin_publisher_file(data, "publisher.pub")


def fuzz_records_chain(data: bytes) -> None:
    """A list of signed records as envelopes and peers carry them."""
    limits = codec.Limits(max_bytes=1 << 20, max_depth=5, max_items=65536, max_bin=64 * 1024)
    items = codec.unpack(data, limits, "records")
    if not isinstance(items, list):
        raise FormatError("not a list")
    chain = parse_signed_records(items, "records")
    pin_chain(chain)


def fuzz_proposal(data: bytes) -> None:
    proposal = parse_proposal(data, "proposal.mdprop")
    tally(proposal.record, proposal)


def fuzz_signed_object(data: bytes) -> None:
    """Report keys, retirements and ack lists: core/signedobject.open_object and each
    kind's checks, against the vectors' publisher and signing key."""
    publisher = _hex("publisher")
    for verify_kind in (
        lambda: reportkeys.verify_report_key(data, publisher, _signer_keys_at, NOW),
        lambda: reportkeys.verify_retirement(data, publisher, _signer_keys_at),
        lambda: acks.verify_ack_list(data, publisher, _signer_keys_at),
    ):
        with contextlib.suppress(MeshdropError):
            verify_kind()


def fuzz_keys_file(data: bytes) -> None:
    """keys.bin of the report-keys bundle, and each object in it."""
    for blob in reportkeys.parse_keys_file(data):
        fuzz_signed_object(blob)


def fuzz_drop(data: bytes) -> None:
    """A drop as a node checks it (no key) and as the publisher opens it."""
    drops.check_drop(data, NOW, stamp_bits=0)
    drops.open_drop(data, [report_private_key()], stamp_bits=0)


@cache
def report_private_key() -> reportkeys.ReportPrivateKey:
    entries = vectors()["report_keys"]
    assert isinstance(entries, list)
    first = entries[0]
    return reportkeys.ReportPrivateKey(
        reportkeys.Suite(first["suite"]), bytes.fromhex(first["seed"])
    )


def fuzz_report(data: bytes) -> None:
    """The plaintext inside a drop (anyone can seal one to a public report key)."""
    decode_report(data)


def fuzz_invite(data: bytes) -> None:
    circles.decode_invite(data.decode("utf-8", "replace"))


def fuzz_circle_token(data: bytes) -> None:
    secret = circles.CircleSecret(bytes(range(circles.SECRET_BYTES)))
    circles.recognise([secret], data, float(NOW))


def fuzz_slots(data: bytes) -> None:
    """The sealed store's slots file, then an unwrap attempt with a fixed key."""
    slots = storekeys.decode_slots_file(data)
    storekeys.unwrap(slots, bytes(32), tuple(storekeys.Place))


HERE = [
    Target("codec", fuzz_codec, "canonical msgpack (core/codec.unpack)"),
    Target("bundle", fuzz_bundle, ".mdrop header, envelope, verify_envelope, chunks"),
    Target("self_signed", fuzz_self_signed, ".mdrop as inspect reads it unpinned"),
    Target("manifest", fuzz_manifest, "core/manifest.parse_manifest"),
    Target("record", fuzz_record, "core/records.parse_record"),
    Target("publisher_file", fuzz_publisher_file, "publisher.pub, pinned"),
    Target("records_chain", fuzz_records_chain, "signed record lists, pin_chain"),
    Target("proposal", fuzz_proposal, "core/proposal.parse_proposal"),
    Target("signed_object", fuzz_signed_object, "report keys, retirements, ack lists"),
    Target("keys_file", fuzz_keys_file, "keys.bin of the report-keys bundle"),
    Target("drop", fuzz_drop, "core/drops.check_drop and open_drop"),
    Target("report", fuzz_report, "core/reports.decode_report"),
    Target("invite", fuzz_invite, "core/circles.decode_invite"),
    Target("circle_token", fuzz_circle_token, "core/circles.recognise"),
    Target("slots", fuzz_slots, "core/storekeys.decode_slots_file and unwrap"),
]


def fuzz_canary(data: bytes) -> None:
    """Only with MESHDROP_FUZZ_CANARY=1 (tests/integration/test_fuzz_short.py): proves
    that a finding is caught, saved and reported."""
    if data.startswith(b"FU"):
        raise ValueError("the canary sang")


if os.environ.get("MESHDROP_FUZZ_CANARY") == "1":
    HERE.append(Target("canary", fuzz_canary, "a planted bug (tests only)"))

# The modules holding targets, cheapest to import first: scripts/fuzz imports only as far
# as it must to find a target, and its worker imports (and instruments) that one only.
MODULES = ("fuzztargets", "fuzztargets_blind", "fuzztargets_net", "fuzztargets_reader")
# Modules whose targets name the modules to instrument (INSTRUMENT_ONLY) rather than all
# of meshdrop: the reader's package pulls in the whole web app, whose instrumenting costs
# seconds a run and which its targets never run.
PARTLY_INSTRUMENTED = frozenset({"fuzztargets_reader"})


def load(name: str, module: str | None = None) -> Target:
    """The target ``name``, from ``module`` if given (then nothing more is imported)."""
    for module_name in [module] if module else MODULES:
        for target in importlib.import_module(module_name).HERE:
            if target.name == name:
                return target
    raise KeyError(name)


def all_targets() -> dict[str, Target]:
    return {t.name: t for m in MODULES for t in importlib.import_module(m).HERE}
