"""Write docs/vectors/drops.json: report keys, drops, ack lists and stamps as bytes, for
a second implementation to check itself (docs/FORMAT.md sections 19 to 22).

    python scripts/make_vectors.py            # writes this file too
    python scripts/make_vectors.py --check    # and checks it

Built from the format's description with primitives only (cryptography's X25519,
AES-GCM, ML-KEM, HPKE and Ed25519; msgpack; hashlib), never from meshdrop/core, so that
the vectors cannot share a bug with the code they test. The X25519 drop is sealed by a
small RFC 9180 base-mode HPKE written here, with a fixed ephemeral key, so every run
writes the same bytes. ML-KEM encapsulation draws its own randomness, so the hybrid
drop is kept from the committed file as long as it still opens to the same report;
only a missing or changed one is sealed anew.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

OUT = Path(__file__).resolve().parent.parent / "docs" / "vectors" / "drops.json"

SIZE_CLASSES = [16384, 65536, 262144, 1048576, 4194304, 16777216]
STAMP_BITS = 17
PUBLISHER = hashlib.sha256(b"meshdrop/vectors/publisher").digest()
CREATED = 1_800_000_000
NOT_AFTER = CREATED + 365 * 86_400
EXPIRY = CREATED + 30 * 86_400
SUITES = {"x25519": 0x0020, "mlkem768-x25519": 0x647A}  # KEM ids; KDF 0x0001, AEAD 0x0002
REPORT = {
    "text": "임금을 석 달째 받지 못했습니다. Unpaid for three months.",
    "attachments": [{"name": "note.txt", "media_type": "text/plain", "data": b"passport held\n"}],
    "receipt": "GEZDGNBV",
}


def seed(label: str) -> bytes:
    return hashlib.sha256(b"meshdrop/vectors/" + label.encode()).digest()


def canonical(value: Any) -> bytes:
    """Canonical msgpack (FORMAT section 3.2): map keys sorted by their encoded bytes."""

    def order(v: Any) -> Any:
        if isinstance(v, dict):
            keys = sorted(v, key=lambda k: msgpack.packb(k, use_bin_type=True))
            return {k: order(v[k]) for k in keys}
        if isinstance(v, list):
            return [order(x) for x in v]
        return v

    packed: bytes = msgpack.packb(order(value), use_bin_type=True)
    return packed


def x25519_public(private: bytes) -> bytes:
    return x25519.X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def hybrid_keys(xwing_seed: bytes) -> tuple[hpke.MLKEM768X25519PrivateKey, bytes]:
    expanded = hashlib.shake_256(xwing_seed).digest(96)
    pq = mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64])
    classic = x25519.X25519PrivateKey.from_private_bytes(expanded[64:])
    public = pq.public_key().public_bytes_raw() + classic.public_key().public_bytes_raw()
    return hpke.MLKEM768X25519PrivateKey(pq, classic), public


def report_key_id(kem: int, public: bytes) -> bytes:
    return hashlib.sha256(
        b"meshdrop/v1/report-key-id\0" + kem.to_bytes(2, "big") + public
    ).digest()[:16]


def signed(kind: str, prefix: bytes, value: dict[str, Any], signer: Ed25519PrivateKey) -> bytes:
    raw = canonical({**value, "type": kind, "format": 1})
    public = signer.public_key().public_bytes_raw()
    return canonical({"object": raw, "signer": public, "sig": signer.sign(prefix + raw)})


# RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
def _extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, b"HPKE-v1" + suite_id + label + ikm, hashlib.sha256).digest()


def _expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled = length.to_bytes(2, "big") + b"HPKE-v1" + suite_id + label + info
    out, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + labeled + bytes([counter]), hashlib.sha256).digest()
        out += block
    return out[:length]


def hpke_x25519_seal(recipient: bytes, ephemeral: bytes, info: bytes, plaintext: bytes) -> bytes:
    kem_id = b"KEM" + (0x0020).to_bytes(2, "big")
    enc = x25519_public(ephemeral)
    dh = x25519.X25519PrivateKey.from_private_bytes(ephemeral).exchange(
        x25519.X25519PublicKey.from_public_bytes(recipient)
    )
    eae_prk = _extract(kem_id, b"", b"eae_prk", dh)
    shared = _expand(kem_id, eae_prk, b"shared_secret", enc + recipient, 32)
    suite_id = b"HPKE" + bytes.fromhex("002000010002")
    context = (
        b"\x00"
        + _extract(suite_id, b"", b"psk_id_hash", b"")
        + _extract(suite_id, b"", b"info_hash", info)
    )
    secret = _extract(suite_id, shared, b"secret", b"")
    key = _expand(suite_id, secret, b"key", context, 32)
    nonce = _expand(suite_id, secret, b"base_nonce", context, 12)
    return enc + AESGCM(key).encrypt(nonce, plaintext, b"")


def stamp_nonce(body: bytes, bits: int = STAMP_BITS) -> bytes:
    start = hashlib.sha256(b"meshdrop/v1/drop-stamp\0" + hashlib.sha256(body).digest())
    counter = 0
    while True:
        nonce = counter.to_bytes(8, "big")
        attempt = start.copy()
        attempt.update(nonce)
        if int.from_bytes(attempt.digest()[:8], "big") >> (64 - bits) == 0:
            return nonce
        counter += 1


def plaintext_for(enc_bytes: int) -> bytes:
    report = canonical(REPORT)
    size = next(s for s in SIZE_CLASSES if 9 + enc_bytes + 4 + len(report) + 16 + 8 <= s)
    padded = len(report).to_bytes(4, "big") + report
    return padded + bytes(size - 9 - 8 - enc_bytes - 16 - len(padded))


def header() -> bytes:
    return b"\x01" + EXPIRY.to_bytes(8, "big")


def x25519_drop() -> bytes:
    recipient = x25519_public(seed("report key x25519"))
    body = header() + hpke_x25519_seal(
        recipient, seed("ephemeral"), b"meshdrop/v1/drop\0" + header(), plaintext_for(32)
    )
    return body + stamp_nonce(body)


def hybrid_drop(previous: dict[str, Any] | None) -> bytes:
    private, public = hybrid_keys(seed("report key mlkem768-x25519"))
    suite = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
    info = b"meshdrop/v1/drop\0" + header()
    if previous is not None:
        old = bytes.fromhex(previous["drop"])
        try:
            if old[:9] == header() and suite.decrypt(old[9:-8], private, info) == plaintext_for(
                1120
            ):
                return old
        except (InvalidTag, ValueError):  # altered or not a drop: seal a new one
            pass
    body = header() + suite.encrypt(
        plaintext_for(1120),
        hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(public[:1184]),
            x25519.X25519PublicKey.from_public_bytes(public[1184:]),
        ),
        info,
    )
    return body + stamp_nonce(body)


def document(previous_text: str | None) -> str:
    previous = json.loads(previous_text) if previous_text else {}
    old_drops = {d["suite"]: d for d in previous.get("drops", [])}
    signer = Ed25519PrivateKey.from_private_bytes(seed("signing key"))
    keys: list[dict[str, str]] = []
    drops: list[dict[str, Any]] = []
    for name, kem in SUITES.items():
        private_seed = seed(f"report key {name}")
        public = x25519_public(private_seed) if name == "x25519" else hybrid_keys(private_seed)[1]
        key_id = report_key_id(kem, public)
        value = {
            "publisher": PUBLISHER,
            "key_id": key_id,
            "suite": name,
            "public_key": public,
            "created": CREATED,
            "not_after": NOT_AFTER,
            "sequence": 1,
        }
        blob = signed("meshdrop-report-key", b"meshdrop/v1/report-key\0", value, signer)
        keys.append(
            {
                "suite": name,
                "seed": private_seed.hex(),
                "key_id": key_id.hex(),
                "public_key": public.hex(),
                "signed": blob.hex(),
            }
        )
        drop = x25519_drop() if name == "x25519" else hybrid_drop(old_drops.get(name))
        drops.append(
            {
                "suite": name,
                "seed": private_seed.hex(),
                "expiry": EXPIRY,
                "drop_id": hashlib.sha256(drop).hexdigest(),
                "drop": drop.hex(),
            }
        )
    retirement = signed(
        "meshdrop-report-key-retirement",
        b"meshdrop/v1/report-key-retirement\0",
        {
            "publisher": PUBLISHER,
            "key_id": bytes.fromhex(keys[0]["key_id"]),
            "retire_at": CREATED + 86_400,
            "created": CREATED + 3600,
            "sequence": 2,
        },
        signer,
    )
    ack_ids = sorted(bytes.fromhex(d["drop_id"]) for d in drops)
    acks = signed(
        "meshdrop-drop-acks",
        b"meshdrop/v1/drop-acks\0",
        {"publisher": PUBLISHER, "created": CREATED + 7200, "sequence": 3, "drops": ack_ids},
        signer,
    )
    body = {
        "about": (
            "Report keys, drops, retirements and ack lists (docs/FORMAT.md sections 19 "
            "to 22). Hex strings. 'signer' is the Ed25519 public key of the publisher's "
            "signing key (valid at every time used here); 'publisher' the publisher id. "
            "Each drop opens with its 'seed' (the report private key) to 'report', is "
            "checked by a node at 'now' and has id 'drop_id'. Written by "
            "scripts/drop_vectors.py."
        ),
        "publisher": PUBLISHER.hex(),
        "signer": signer.public_key().public_bytes_raw().hex(),
        "now": CREATED + 86_400,
        "stamp_bits": STAMP_BITS,
        "report": {
            "text": REPORT["text"],
            "attachments": [
                {"name": "note.txt", "media_type": "text/plain", "data": b"passport held\n".hex()}
            ],
            "receipt": REPORT["receipt"],
        },
        "report_keys": keys,
        "drops": drops,
        "retirement": retirement.hex(),
        "acks": acks.hex(),
    }
    return json.dumps(body, indent=1, ensure_ascii=False) + "\n"
