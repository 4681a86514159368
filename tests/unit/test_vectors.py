"""The committed Ed25519 vectors (docs/vectors/ed25519.json) checked as bytes, and the
torsion check on public keys; then the report-key and drop vectors (docs/vectors/drops.json).

Each vector's outcome is asked of meshdrop's `verify` and `check_public_key`, and
separately of OpenSSL alone (`cryptography`'s raw verify, without meshdrop's key checks).
Several vectors verify under OpenSSL and must still be refused: only the key checks stop
them, so relaxing a check fails here rather than passing quietly."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from meshdrop.core import codec
from meshdrop.core.acks import verify_ack_list
from meshdrop.core.drops import check_drop, open_drop
from meshdrop.core.keys import (
    Domain,
    check_public_key,
    generate_private_key,
    public_bytes,
    sign,
    verify,
)
from meshdrop.core.records import PublisherRecord, Signer, parse_record, publisher_id
from meshdrop.core.reportkeys import ReportPrivateKey, Suite, verify_report_key, verify_retirement
from meshdrop.core.reports import Attachment, Report
from meshdrop.errors import SignatureError

REPO = Path(__file__).resolve().parents[2]
VECTORS_FILE = REPO / "docs" / "vectors" / "ed25519.json"
VECTORS: list[dict[str, str]] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))["vectors"]
DOMAINS = {"manifest": Domain.MANIFEST, "publisher-record": Domain.PUBLISHER_RECORD}
OUTCOMES = {"accept": True, "refuse": False}
TORSION_MESSAGE = "not in the prime-order subgroup"


def load_generator() -> ModuleType:
    """scripts/make_vectors.py: a second Ed25519, independent of meshdrop/core/keys.py."""
    spec = importlib.util.spec_from_file_location(
        "make_vectors", REPO / "scripts" / "make_vectors.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR: Any = load_generator()


def openssl_accepts(public: bytes, signature: bytes, signed: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, signed)
    except (InvalidSignature, ValueError):
        return False
    return True


def key_accepted(public: bytes) -> bool:
    try:
        check_public_key(public)
    except SignatureError:
        return False
    return True


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector(vector: dict[str, str]) -> None:
    public = bytes.fromhex(vector["public_key"])
    message = bytes.fromhex(vector["message"])
    signature = bytes.fromhex(vector["signature"])
    domain = DOMAINS[vector["domain"]]
    assert domain.value.hex() == vector["prefix"]
    assert key_accepted(public) is OUTCOMES[vector["key"]]
    assert openssl_accepts(public, signature, domain.value + message) is OUTCOMES[vector["openssl"]]
    assert verify(public, signature, domain, message) is OUTCOMES[vector["expected"]]
    # The rule of docs/FORMAT.md 8.4, stated on the vector itself.
    assert OUTCOMES[vector["expected"]] is (OUTCOMES[vector["key"]] and OUTCOMES[vector["openssl"]])


def test_vectors_cover_the_cases_that_split_verifiers() -> None:
    by_name = {v["name"]: v for v in VECTORS}
    assert len(by_name) == len(VECTORS)
    for name in [
        "valid",
        "message-bit-flipped",
        "s-plus-l",
        "r-identity-y-above-p",
        "r-mixed-order",
        "key-mixed-order-8-openssl-accepts",
        "key-mixed-order-8-openssl-refuses",
        "wrong-domain",
        *(f"key-small-order-{i}" for i in range(8)),
        "key-x-zero-sign-bit-identity",
        "key-y-above-p-1-sign-0",
    ]:
        assert name in by_name, name
    # Refused by meshdrop although OpenSSL accepts: the key checks are what refuses them.
    only_key_checks = [v for v in VECTORS if v["openssl"] == "accept" and v["key"] == "refuse"]
    assert {"key-mixed-order-8-openssl-accepts", "key-small-order-1"} <= {
        v["name"] for v in only_key_checks
    }
    # Where the cofactored equation and meshdrop's rule part ways.
    assert any(v["cofactored"] == "accept" and v["key"] == "accept" for v in VECTORS)
    assert any(v["cofactored"] != v["expected"] for v in VECTORS if v["key"] == "accept")


def test_committed_vectors_are_what_the_generator_writes() -> None:
    assert VECTORS_FILE.read_text(encoding="utf-8") == GENERATOR.document()


def mixed_keys() -> list[tuple[int, bytes]]:
    """(order of T, [a]B + T) for a fresh key [a]B and each small-order point T but O."""
    base = GENERATOR.point(public_bytes(generate_private_key()))
    return [
        (GENERATOR.order(t), GENERATOR.encode(GENERATOR.add(base, t)))
        for t in GENERATOR.TORSION[1:]
    ]


@pytest.mark.parametrize("index", range(1, 8))
def test_key_with_a_small_order_component_is_refused(index: int) -> None:
    torsion_order, mixed = mixed_keys()[index - 1]
    assert torsion_order in (2, 4, 8)
    with pytest.raises(SignatureError, match=TORSION_MESSAGE):
        check_public_key(mixed, "the key")
    assert not verify(mixed, bytes(64), Domain.MANIFEST, b"")


def test_every_order_of_small_component_is_tried() -> None:
    assert sorted(order for order, _ in mixed_keys()) == [2, 4, 4, 8, 8, 8, 8]


def test_generated_keys_are_accepted() -> None:
    for _ in range(100):
        key = generate_private_key()
        public = public_bytes(key)
        assert check_public_key(public) == public
        assert verify(public, sign(key, Domain.MANIFEST, b"m"), Domain.MANIFEST, b"m")


def test_torsion_error_is_one_sentence_naming_the_key() -> None:
    _, mixed = mixed_keys()[-1]
    with pytest.raises(SignatureError) as caught:
        check_public_key(mixed, "signing key 2 of the publisher record")
    text = str(caught.value)
    assert text.startswith("signing key 2 of the publisher record is not in the prime-order")
    assert text.count(".") == 0 and "\n" not in text


@pytest.mark.parametrize("where", ["root", "signer"])
def test_publisher_record_with_a_mixed_order_key_is_refused(where: str) -> None:
    _, mixed = mixed_keys()[-1]
    good = public_bytes(generate_private_key())
    root = mixed if where == "root" else good
    record = PublisherRecord(
        publisher=publisher_id([root], 1),
        name="Mixed",
        version=1,
        created=1_700_000_000,
        roots=(root,),
        threshold=1,
        signers=(Signer(mixed if where == "signer" else good, 0, 1_800_000_000),),
    )
    with pytest.raises(SignatureError, match=TORSION_MESSAGE):
        parse_record(codec.pack(record.to_value()))


# docs/vectors/drops.json: report keys, drops, a retirement and an ack list, written by
# scripts/drop_vectors.py from primitives alone and checked here against meshdrop.
DROPS_FILE = REPO / "docs" / "vectors" / "drops.json"
DROPS: dict[str, Any] = json.loads(DROPS_FILE.read_text(encoding="utf-8"))


def drop_vector_signers(when: int) -> set[bytes]:
    return {bytes.fromhex(DROPS["signer"])}


def vector_report() -> Report:
    expected = DROPS["report"]
    return Report(
        expected["text"],
        tuple(
            Attachment(a["name"], a["media_type"], bytes.fromhex(a["data"]))
            for a in expected["attachments"]
        ),
        expected["receipt"],
    )


@pytest.mark.parametrize("index", [0, 1], ids=["x25519", "mlkem768-x25519"])
def test_report_key_vector(index: int) -> None:
    vector = DROPS["report_keys"][index]
    publisher = bytes.fromhex(DROPS["publisher"])
    key = verify_report_key(
        bytes.fromhex(vector["signed"]), publisher, drop_vector_signers, DROPS["now"]
    )
    private = ReportPrivateKey(Suite(vector["suite"]), bytes.fromhex(vector["seed"]))
    assert key.public_key.hex() == vector["public_key"] == private.public_key.hex()
    assert key.key_id.hex() == vector["key_id"] == private.key_id.hex()


@pytest.mark.parametrize("index", [0, 1], ids=["x25519", "mlkem768-x25519"])
def test_drop_vector(index: int) -> None:
    vector = DROPS["drops"][index]
    blob = bytes.fromhex(vector["drop"])
    checked = check_drop(blob, DROPS["now"], stamp_bits=DROPS["stamp_bits"])
    assert checked.drop_id.hex() == vector["drop_id"] and checked.expiry == vector["expiry"]
    private = ReportPrivateKey(Suite(vector["suite"]), bytes.fromhex(vector["seed"]))
    assert open_drop(blob, [private]) == vector_report()
    other = DROPS["drops"][1 - index]
    stranger = ReportPrivateKey(Suite(other["suite"]), bytes.fromhex(other["seed"]))
    assert open_drop(blob, [stranger]) is None


def test_retirement_and_ack_vectors() -> None:
    publisher = bytes.fromhex(DROPS["publisher"])
    retirement = verify_retirement(
        bytes.fromhex(DROPS["retirement"]), publisher, drop_vector_signers
    )
    assert retirement.key_id.hex() == DROPS["report_keys"][0]["key_id"]
    acks = verify_ack_list(bytes.fromhex(DROPS["acks"]), publisher, drop_vector_signers)
    assert {i.hex() for i in acks.drops} == {d["drop_id"] for d in DROPS["drops"]}


def test_committed_drop_vectors_are_what_the_generator_writes() -> None:
    committed = DROPS_FILE.read_text(encoding="utf-8")
    assert GENERATOR.load_drop_vectors().document(committed) == committed
