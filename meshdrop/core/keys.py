"""Ed25519 keys, domain-separated signatures, and the checks on untrusted public keys.

Every signed kind of thing has its own prefix, so a signature over one kind can never be
presented as another (a manifest signature replayed as a publisher record, say).
"""

from __future__ import annotations

import base64
import functools
import hashlib
from enum import Enum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from meshdrop.errors import SignatureError

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


class Domain(Enum):
    MANIFEST = b"meshdrop/v1/manifest\0"
    PUBLISHER_RECORD = b"meshdrop/v1/publisher-record\0"
    REPORT_KEY = b"meshdrop/v1/report-key\0"
    REPORT_KEY_RETIREMENT = b"meshdrop/v1/report-key-retirement\0"
    DROP_ACKS = b"meshdrop/v1/drop-acks\0"


_KEY_ID_PREFIX = b"meshdrop/v1/key-id\0"

# Curve25519 in twisted Edwards form: -x^2 + y^2 = 1 + d x^2 y^2 over GF(p).
_P = 2**255 - 19
_D = (-121665 * pow(121666, -1, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
_D2 = 2 * _D % _P
# The prime order of the base point B; the whole group has order 8 L.
_L = 2**252 + 27742317777372353535851937790883648493

_Point = tuple[int, int, int, int]  # extended coordinates: x = X/Z, y = Y/Z, x y = T/Z


def _decode_point(encoded: bytes) -> tuple[int, int] | None:
    """Affine (x, y) of an encoded point, or None if the encoding is not canonical or
    not on the curve. RFC 8032 section 5.1.3, plus the canonical checks it leaves out."""
    number = int.from_bytes(encoded, "little")
    sign = number >> 255
    y = number & ((1 << 255) - 1)
    if y >= _P:
        return None
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    x = (u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P)) % _P
    if (v * x * x - u) % _P != 0:
        x = (x * _SQRT_M1) % _P
    if (v * x * x - u) % _P != 0:
        return None
    if x == 0 and sign == 1:
        return None
    if x & 1 != sign:
        x = _P - x
    return x, y


def _add(p: _Point, q: _Point) -> _Point:
    """p + q, RFC 8032 section 5.1.4 (complete: any two points, no inversion)."""
    a = (p[1] - p[0]) * (q[1] - q[0]) % _P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _P
    c = p[3] * _D2 * q[3] % _P
    d = 2 * p[2] * q[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


def _double(p: _Point) -> _Point:
    a, b = p[0] * p[0] % _P, p[1] * p[1] % _P
    c = 2 * p[2] * p[2] % _P
    h = a + b
    e, g = h - (p[0] + p[1]) ** 2, a - b
    f = c + g
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


def _multiply(scalar: int, p: _Point) -> _Point:
    """[scalar]p for scalar >= 1, doubling and adding from the top bit."""
    result = p
    for bit in bin(scalar)[3:]:
        result = _double(result)
        if bit == "1":
            result = _add(result, p)
    return result


def _is_identity(p: _Point) -> bool:
    return p[0] % _P == 0 and (p[1] - p[2]) % _P == 0


def check_public_key(key: bytes, what: str = "a public key") -> bytes:
    """Refuse anything but a canonical encoding of a point of the prime-order subgroup
    other than the identity (docs/FORMAT.md section 8.3)."""
    if not isinstance(key, bytes) or len(key) != PUBLIC_KEY_BYTES:
        raise SignatureError(f"{what} is not a {PUBLIC_KEY_BYTES}-byte Ed25519 key")
    problem = _key_problem(key)
    if problem:
        raise SignatureError(f"{what} {problem}")
    return key


@functools.lru_cache(maxsize=4096)
def _key_problem(key: bytes) -> str:
    """Why ``key`` is unacceptable, or "" (cached: the same keys come back constantly)."""
    point = _decode_point(key)
    if point is None:
        return "is not a canonical Ed25519 point"
    x, y = point
    extended = (x, y, 1, x * y % _P)
    if _is_identity(_double(_double(_double(extended)))):
        return "is a small-order Ed25519 key, which anyone can forge for"
    # With [L]P = O as well, P = [a]B. Then for any R in the prime-order subgroup (every
    # honest R = [r]B) the point [S]B - R - [k]A is in it too, where multiplying by 8 is a
    # bijection, so the cofactored and cofactorless equations agree. A signer who adds a
    # small-order part to R can still split them: FORMAT 8.4 pins the cofactorless one.
    if not _is_identity(_multiply(_L, extended)):
        return (
            "is not in the prime-order subgroup (it has a small-order component), "
            "so two verifiers could judge its signatures differently"
        )
    return ""


def key_id(public_key: bytes) -> str:
    """Short, stable name of a key for people and commands: 16 hex digits."""
    return hashlib.sha256(_KEY_ID_PREFIX + public_key).hexdigest()[:16]


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_bytes(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes_raw()


def sign(private_key: Ed25519PrivateKey, domain: Domain, message: bytes) -> bytes:
    return private_key.sign(domain.value + message)


def verify(public_key: bytes, signature: bytes, domain: Domain, message: bytes) -> bool:
    """True only if ``signature`` is ``public_key``'s over exactly ``domain + message``."""
    if len(signature) != SIGNATURE_BYTES:
        return False
    try:
        check_public_key(public_key)
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, domain.value + message)
    except (InvalidSignature, SignatureError, ValueError):
        return False
    return True


def format_fingerprint(digest: bytes) -> str:
    """Eight groups of four base32 characters (160 bits): easy to read aloud and compare,
    with no 0/O or 1/I confusion since base32 has no 0, 1, 8 or 9."""
    text = base64.b32encode(digest[:20]).decode("ascii")
    return "-".join(text[i : i + 4] for i in range(0, 32, 4))


def parse_fingerprint(text: str) -> str:
    """Normalise what a person typed (any case, with or without dashes or spaces) to the
    canonical grouped form, or to a normalised prefix if shorter."""
    compact = "".join(ch for ch in text.upper() if ch not in "- ")
    return "-".join(compact[i : i + 4] for i in range(0, len(compact), 4))
