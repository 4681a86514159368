"""Write docs/vectors/ed25519.json: keys and signatures that pin what meshdrop verifies
(docs/FORMAT.md sections 8.3, 8.4 and 14), for a second implementation to check itself;
and docs/vectors/drops.json through scripts/drop_vectors.py (report keys and drops).

    python scripts/make_vectors.py            # (re)write docs/vectors/*.json
    python scripts/make_vectors.py --check    # exit 1 if the committed file differs

Run once: the JSON is committed, and tests/test_vectors.py checks meshdrop against its
bytes without running this. The arithmetic here is a second, textbook Ed25519 (after
RFC 8032 section 6), apart from meshdrop/core/keys.py so that the vectors cannot share a
bug with the code they test; it signs with any scalar and any R, which crafted vectors
need. Every key and nonce is derived from a fixed label, so each run writes the same
bytes. Each vector's "openssl" outcome is asked of `cryptography` while writing, and
writing stops if OpenSSL disagrees with the model of it here.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

OUT = Path(__file__).resolve().parent.parent / "docs" / "vectors" / "ed25519.json"

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, -1, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
DOMAINS = {
    "manifest": b"meshdrop/v1/manifest\0",
    "publisher-record": b"meshdrop/v1/publisher-record\0",
}

Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z
IDENTITY: Point = (0, 1, 1, 0)


def add(p: Point, q: Point) -> Point:
    a = (p[1] - p[0]) * (q[1] - q[0]) % P
    b = (p[1] + p[0]) * (q[1] + q[0]) % P
    c = 2 * p[3] * q[3] * D % P
    d = 2 * p[2] * q[2] % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return e * f % P, g * h % P, f * g % P, e * h % P


def neg(p: Point) -> Point:
    return (P - p[0]) % P, p[1], p[2], (P - p[3]) % P


def mul(scalar: int, p: Point) -> Point:
    result = IDENTITY
    while scalar > 0:
        if scalar & 1:
            result = add(result, p)
        p = add(p, p)
        scalar >>= 1
    return result


def equal(p: Point, q: Point) -> bool:
    return (p[0] * q[2] - q[0] * p[2]) % P == 0 and (p[1] * q[2] - q[1] * p[2]) % P == 0


def recover_x(y: int, sign: int) -> int | None:
    x2 = (y * y - 1) * pow(D * y * y + 1, -1, P) % P
    if x2 == 0:
        return 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    return P - x if x & 1 != sign else x


def decode(encoded: bytes, strict: bool) -> Point | None:
    """strict: RFC 8032 with the canonical checks (y < p; no x = 0 with the sign bit).
    Not strict: y is taken mod p and the sign of x = 0 ignored (as ZIP-215 and OpenSSL)."""
    number = int.from_bytes(encoded, "little")
    sign, y = number >> 255, number & ((1 << 255) - 1)
    if y >= P:
        if strict:
            return None
        y -= P
    x = recover_x(y, sign)
    if x is None or (strict and x == 0 and sign == 1):
        return None
    return x, y, 1, x * y % P


def encode(p: Point) -> bytes:
    z_inv = pow(p[2], -1, P)
    x, y = p[0] * z_inv % P, p[1] * z_inv % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def point(encoded: bytes) -> Point:
    found = decode(encoded, strict=True)
    assert found is not None
    return found


BASE = point((4 * pow(5, -1, P) % P).to_bytes(32, "little"))
# A point of order 8; its multiples are the eight small-order points.
T8 = point(bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"))
TORSION = [mul(i, T8) for i in range(8)]  # TORSION[i] has order 8 / gcd(i, 8)


def order(p: Point) -> int:
    return next(n for n in (1, 2, 4, 8) if equal(mul(n, p), IDENTITY))


def hash_int(*parts: bytes) -> int:
    return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little")


def derived(label: str) -> bytes:
    return hashlib.sha512(b"meshdrop/vectors/" + label.encode()).digest()[:32]


def expand(seed: bytes) -> tuple[int, bytes]:
    """RFC 8032 5.1.5: the secret scalar and the nonce prefix of a 32-byte seed."""
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    a = (a & ((1 << 254) - 8)) | (1 << 254)
    return a, h[32:]


def signature(r: int, r_bytes: bytes, a: int, public: bytes, message: bytes) -> bytes:
    """R || S with S = r + k a, k = SHA-512(R || A || M) mod L: any r and any spelling of R,
    so a signer can lie about R (the honest R is the encoding of [r]B)."""
    k = hash_int(r_bytes, public, message) % L
    return r_bytes + ((r + k * a) % L).to_bytes(32, "little")


def honest(a: int, nonce_key: bytes, public: bytes, message: bytes) -> bytes:
    r = hash_int(nonce_key, message) % L
    return signature(r, encode(mul(r, BASE)), a, public, message)


def challenge(sig: bytes, public: bytes, message: bytes) -> int:
    return hash_int(sig[:32], public, message) % L


def cofactorless(public: bytes, message: bytes, sig: bytes) -> bool:
    """What OpenSSL does: S < L, A decoded leniently, [S]B - [k]A encoded and compared with
    R's bytes (so an R that is not spelled canonically never verifies)."""
    s = int.from_bytes(sig[32:], "little")
    a_point = decode(public, strict=False)
    if s >= L or a_point is None:
        return False
    k = challenge(sig, public, message)
    return encode(add(mul(s, BASE), neg(mul(k, a_point)))) == sig[:32]


def cofactored(public: bytes, message: bytes, sig: bytes) -> bool:
    """ZIP-215: S < L, A and R decoded leniently, [8]([S]B - R - [k]A) is the identity."""
    s = int.from_bytes(sig[32:], "little")
    a_point, r_point = decode(public, strict=False), decode(sig[:32], strict=False)
    if s >= L or a_point is None or r_point is None:
        return False
    k = challenge(sig, public, message)
    diff = add(add(mul(s, BASE), neg(r_point)), neg(mul(k, a_point)))
    return equal(mul(8, diff), IDENTITY)


def key_acceptable(public: bytes) -> bool:
    """docs/FORMAT.md 8.3: canonical, not small order, no small-order component."""
    p = decode(public, strict=True)
    return p is not None and not equal(mul(8, p), IDENTITY) and equal(mul(L, p), IDENTITY)


def openssl(public: bytes, message: bytes, sig: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(sig, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def word(ok: bool) -> str:
    return "accept" if ok else "refuse"


def vector(
    name: str, public: bytes, domain: str, message: bytes, sig: bytes, reason: str
) -> dict[str, str]:
    signed = DOMAINS[domain] + message
    said = openssl(public, signed, sig)
    if said != cofactorless(public, signed, sig):
        raise SystemExit(f"make_vectors: {name}: OpenSSL does not do what the model says")
    return {
        "name": name,
        "public_key": public.hex(),
        "domain": domain,
        "prefix": DOMAINS[domain].hex(),
        "message": message.hex(),
        "signature": sig.hex(),
        "key": word(key_acceptable(public)),
        "openssl": word(said),
        "cofactored": word(cofactored(public, signed, sig)),
        "expected": word(key_acceptable(public) and said),
        "reason": reason,
    }


def find_message(base: bytes, domain: str, wanted: Callable[[bytes], bool]) -> bytes:
    """The first of base, base #1, base #2, ... whose prefixed bytes satisfy ``wanted``."""
    for n in range(10_000):
        message = base if n == 0 else base + b" #%d" % n
        if wanted(DOMAINS[domain] + message):
            return message
    raise SystemExit(f"make_vectors: no message found for {base!r}")


def signature_vectors() -> list[dict[str, str]]:
    seed = derived("signer")
    a, nonce_key = expand(seed)
    public = encode(mul(a, BASE))
    private = Ed25519PrivateKey.from_private_bytes(seed)
    assert private.public_key().public_bytes_raw() == public
    message = b"meshdrop test vector: a manifest's bytes"
    m_signed, r_signed = DOMAINS["manifest"] + message, DOMAINS["publisher-record"] + message
    good = honest(a, nonce_key, public, m_signed)
    assert good == private.sign(m_signed)
    flipped = bytes([message[0] ^ 1]) + message[1:]
    s = int.from_bytes(good[32:], "little")
    identity_bytes = encode(IDENTITY)
    wide_identity = (P + 1).to_bytes(32, "little")
    signed_identity = (1 | 1 << 255).to_bytes(32, "little")
    r_mixed = hash_int(nonce_key, b"mixed R", m_signed) % L
    mixed_r = encode(add(mul(r_mixed, BASE), T8))
    by_owner = "made by the key's owner with"
    rows: list[tuple[str, str, bytes, bytes, str]] = [
        ("valid", "manifest", message, good, "an honest RFC 8032 signature"),
        (
            "valid-publisher-record",
            "publisher-record",
            message,
            honest(a, nonce_key, public, r_signed),
            "an honest signature under the publisher-record prefix",
        ),
        (
            "message-bit-flipped",
            "manifest",
            flipped,
            good,
            "the signature of 'valid', over the message with its first byte's low bit flipped",
        ),
        (
            "wrong-domain",
            "manifest",
            message,
            honest(a, nonce_key, public, r_signed),
            "signed under the publisher-record prefix, checked under the manifest prefix",
        ),
        (
            "s-plus-l",
            "manifest",
            message,
            good[:32] + (s + L).to_bytes(32, "little"),
            "S + L in place of S: the same equation holds, but S must be below L",
        ),
        (
            "r-identity",
            "manifest",
            message,
            signature(0, identity_bytes, a, public, m_signed),
            f"{by_owner} r = 0, so R is the identity, spelled canonically (and S / k gives "
            "away the secret scalar): the equation holds, and a small-order R is not refused",
        ),
        (
            "r-identity-y-above-p",
            "manifest",
            message,
            signature(0, wide_identity, a, public, m_signed),
            "as r-identity, but R spelled with y = p + 1: R is compared as encoded bytes",
        ),
        (
            "r-identity-sign-bit",
            "manifest",
            message,
            signature(0, signed_identity, a, public, m_signed),
            "as r-identity, but R spelled with x = 0 and the sign bit set",
        ),
        (
            "r-mixed-order",
            "manifest",
            message,
            signature(r_mixed, mixed_r, a, public, m_signed),
            f"{by_owner} R = [r]B + T8 (T8 of order 8): the cofactored equation holds, the "
            "cofactorless one does not",
        ),
    ]
    return [vector(name, public, domain, m, sig, why) for name, domain, m, sig, why in rows]


def mixed_key_vectors(torsion_order: int) -> list[dict[str, str]]:
    """Key [a]B + T with T of order ``torsion_order``, signed honestly by its owner (who
    knows a): [S]B - [k]A = R - [k]T, so the cofactorless equation holds iff the order of
    T divides k, while the cofactored one always holds."""
    a = int.from_bytes(derived(f"mixed {torsion_order}"), "little") % L
    nonce_key = derived(f"mixed {torsion_order} nonce")
    public = encode(add(mul(a, BASE), TORSION[8 // torsion_order]))
    base = b"meshdrop test vector: a mixed-order key"

    def divides(m: bytes) -> bool:
        return challenge(honest(a, nonce_key, public, m), public, m) % torsion_order == 0

    name = f"key-mixed-order-{torsion_order}"
    message = find_message(base, "manifest", divides)
    out = [
        vector(
            f"{name}-openssl-accepts",
            public,
            "manifest",
            message,
            honest(a, nonce_key, public, DOMAINS["manifest"] + message),
            f"key [a]B + T (T of order {torsion_order}), honestly signed with a challenge "
            f"k divisible by {torsion_order}: both equations hold, but the key has a "
            "small-order component",
        )
    ]
    if torsion_order == 8:
        message = find_message(base, "manifest", lambda m: not divides(m))
        out.append(
            vector(
                f"{name}-openssl-refuses",
                public,
                "manifest",
                message,
                honest(a, nonce_key, public, DOMAINS["manifest"] + message),
                "the same key honestly signed with k not divisible by 8: the cofactored "
                "equation holds, the cofactorless one does not",
            )
        )
    return out


def forged(public: bytes, label: str) -> tuple[bytes, bytes]:
    """A message and the signature R = identity, S = 0 over it, which verifies under the
    cofactorless equation when [k]A is the identity, that is when the order of A divides
    k (found by trying messages). Only keys of small order have such messages; the others
    get the all-zero signature."""
    a_point = decode(public, strict=False)
    base = f"meshdrop test vector: {label}".encode()
    sig = encode(IDENTITY) + bytes(32)
    if a_point is None or not equal(mul(8, a_point), IDENTITY):
        return base, bytes(64)
    n = order(a_point)
    return find_message(base, "manifest", lambda m: challenge(sig, public, m) % n == 0), sig


def key_vectors() -> list[dict[str, str]]:
    """Keys refused by meshdrop's key check; small-order ones with a forged signature."""
    keys = []  # (name, encoded key, reason)
    for i, t in enumerate(TORSION):
        why = (
            f"the canonical encoding of [{i}]T8, a point of order {order(t)}; R = identity "
            f"and S = 0 forge a signature for any message whose k is divisible by {order(t)}"
        )
        keys.append((f"key-small-order-{i}", encode(t), why))
    # Non-canonical spellings: y + p for the y below 19 that are on the curve (0 and 1 are
    # small-order points; of the rest, the first only), then x = 0 with the sign bit set.
    spellings = []
    for y in [y for y in range(19) if recover_x(y, 0) is not None][:3]:
        for sign in (0, 1):
            encoded = ((y + P) | sign << 255).to_bytes(32, "little")
            spellings.append((f"key-y-above-p-{y}-sign-{sign}", encoded, f"y = p + {y}"))
    for y, what in ((1, "identity"), (P - 1, "order-2")):
        spellings.append(
            (f"key-x-zero-sign-bit-{what}", (y | 1 << 255).to_bytes(32, "little"), "x = 0")
        )
    for name, encoded, spelled in spellings:
        p = decode(encoded, strict=False)
        assert p is not None
        if equal(p, IDENTITY):
            kind = "the identity"
        elif equal(mul(8, p), IDENTITY):
            kind = f"a point of order {order(p)}"
        else:
            kind = "a point of " + ("prime" if equal(mul(L, p), IDENTITY) else "mixed") + " order"
        why = (
            f"not canonical: {spelled} with the sign bit {encoded[31] >> 7}, spelling {kind}; "
            "OpenSSL reads y mod p and ignores the sign of x = 0"
        )
        keys.append((name, encoded, why))
    y = next(y for y in range(2, 100) if recover_x(y, 0) is None)
    keys.append(
        (
            "key-not-on-curve",
            y.to_bytes(32, "little"),
            f"y = {y}: no x satisfies the curve equation",
        )
    )
    return [
        vector(name, public, "manifest", *forged(public, name), why) for name, public, why in keys
    ]


def document() -> str:
    body = {
        "about": (
            "Ed25519 test vectors for meshdrop's signature rule (docs/FORMAT.md sections "
            "8.3, 8.4 and 14). Hex strings; the signed bytes are prefix || message. "
            "'expected' is what meshdrop's verify answers; 'key' what its public key "
            "check answers; 'openssl' what RFC 8032 cofactorless verification without "
            "meshdrop's key checks answers (OpenSSL); 'cofactored' what the cofactored "
            "equation with lenient decoding (ZIP-215) would answer. Written by "
            "scripts/make_vectors.py."
        ),
        "vectors": [
            *signature_vectors(),
            *(v for order in (2, 4, 8) for v in mixed_key_vectors(order)),
            *key_vectors(),
        ],
    }
    return json.dumps(body, indent=2) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    drop_vectors = load_drop_vectors()
    previous = drop_vectors.OUT.read_text(encoding="utf-8") if drop_vectors.OUT.exists() else None
    outputs = [(OUT, document()), (drop_vectors.OUT, drop_vectors.document(previous))]
    if args.check:
        stale = [out for out, text in outputs if out.read_text(encoding="utf-8") != text]
        for out, _ in outputs:
            print(f"make_vectors: {out} is {'out of date' if out in stale else 'up to date'}")
        return 1 if stale else 0
    for out, text in outputs:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        print(f"make_vectors: wrote {out}")
    return 0


def load_drop_vectors() -> Any:
    """scripts/drop_vectors.py (docs/vectors/drops.json), loaded by path: this script is
    also loaded by path from the tests, where scripts/ is not on sys.path."""
    path = Path(__file__).resolve().with_name("drop_vectors.py")
    spec = importlib.util.spec_from_file_location("drop_vectors", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    sys.exit(main())
