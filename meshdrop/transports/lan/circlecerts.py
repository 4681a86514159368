"""The certificates of a circle's TLS (docs/PROTOCOL.md, "Circle transport"): the CA that
every member derives for an epoch from the circle's secret, byte for byte the same on
each, and the leaf a node issues itself under its current epoch's CA at each start."""

from __future__ import annotations

import datetime
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshdrop.core.circles import EPOCH_SECONDS, WINDOW_EPOCHS, CircleSecret, ca_name, ca_seed
from meshdrop.transports.lan.errors import CircleTLSError

CA_SERIAL = 1
LEAF_NAME_BYTES = 16

# Times X.509 and cryptography can write: from 1950 (UTCTime) to 9999 (GeneralizedTime).
_EARLIEST = int(datetime.datetime(1950, 1, 1, tzinfo=datetime.UTC).timestamp())
_LATEST = int(datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC).timestamp())


def validity(epoch: int) -> tuple[datetime.datetime, datetime.datetime]:
    """notBefore and notAfter of every certificate of ``epoch``: exactly the times of the
    epochs whose window holds ``epoch``, so that a peer checking times against its own
    clock agrees with the window rule. Raises CircleTLSError for a clock so far off that
    a certificate cannot hold its date."""
    start = epoch * EPOCH_SECONDS
    begin = start - WINDOW_EPOCHS * EPOCH_SECONDS
    end = start + (WINDOW_EPOCHS + 1) * EPOCH_SECONDS - 1
    if begin < _EARLIEST or end > _LATEST:
        raise CircleTLSError(
            "this device's clock is far off (not between the years 1950 and 9999): "
            "set the date to talk to a circle"
        )
    return (
        datetime.datetime.fromtimestamp(begin, datetime.UTC),
        datetime.datetime.fromtimestamp(end, datetime.UTC),
    )


@dataclass(frozen=True)
class CircleCA:
    """One circle's CA for one epoch."""

    epoch: int
    key: Ed25519PrivateKey
    certificate: x509.Certificate


def circle_ca(secret: CircleSecret, epoch: int) -> CircleCA:
    """The CA of the circle with ``secret`` for ``epoch``: every member builds the same
    bytes (Ed25519 signatures are deterministic, and every field is derived)."""
    not_before, not_after = validity(epoch)
    key = Ed25519PrivateKey.from_private_bytes(ca_seed(secret, epoch))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name(secret, epoch))])
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(CA_SERIAL)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, None)
    )
    return CircleCA(epoch, key, certificate)


@dataclass(frozen=True)
class Leaf:
    """A node's own certificate and key for one epoch of one circle."""

    epoch: int
    key: Ed25519PrivateKey
    certificate: x509.Certificate


def issue_leaf(ca: CircleCA) -> Leaf:
    """A fresh key and certificate under ``ca``: random serial and subject, so that two
    starts (or two epochs) of one node share nothing but the circle's CA name."""
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, secrets.token_hex(LEAF_NAME_BYTES))]
    )
    not_before, not_after = validity(ca.epoch)
    ca_public = ca.key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(leaf_key_usage(), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
        )
        .sign(ca.key, None)
    )
    return Leaf(ca.epoch, key, certificate)


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def leaf_key_usage() -> x509.KeyUsage:
    """A TLS server or client certificate's key usage: signatures only (also the reader's)."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
