"""A circle's certificates and SSL contexts, without sockets (issue 16; PROTOCOL.md
"Circle transport"): the CA profile every member derives byte for byte, the leaf a node
issues itself, the validity that matches the epoch window, the contexts' settings, and
the errors for a clock far off and a temporary folder that cannot be used."""

from __future__ import annotations

import datetime
import errno
import hashlib
import os
import ssl
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshdrop import fs
from meshdrop.core.circles import CircleSecret, ca_name, epoch_of, window
from meshdrop.transports.lan.circlecerts import circle_ca, issue_leaf, validity
from meshdrop.transports.lan.circletls import NO_CHECK_TIME, CircleTLS
from meshdrop.transports.lan.errors import EXIT_NETWORK, CircleTLSError

DAY = 86400
NOW = 1_750_000_000.0
EPOCH = epoch_of(NOW)
SECRET = CircleSecret(bytes(range(20)))


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def common_name(name: x509.Name) -> str:
    value = name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert isinstance(value, str)
    return value


def trusted_names(context: ssl.SSLContext) -> list[str]:
    return sorted(
        common_name(x509.load_der_x509_certificate(ca).subject)
        for ca in context.get_ca_certs(binary_form=True)
    )


def test_every_member_builds_the_same_ca_bytes() -> None:
    one = circle_ca(CircleSecret(bytes(range(20))), EPOCH)
    two = circle_ca(CircleSecret(bytes(range(20))), EPOCH)
    assert der(one.certificate) == der(two.certificate)


def test_the_ca_of_the_protocol_example() -> None:
    """PROTOCOL.md section 12 gives these for the example of section 10."""
    example = CircleSecret(bytes.fromhex("8f3a2c41d09b7e65a1f0c3d2e4b59a7c6d18e2f3"))
    ca = circle_ca(example, 20254)
    assert ca.key.public_key().public_bytes_raw().hex() == (
        "a3fe2b56d780f4bf3ef54f1df5bb604c50d098b24ef9dc60761bb01a1b2cc96e"
    )
    encoded = der(ca.certificate)
    assert len(encoded) == 333
    assert hashlib.sha256(encoded).hexdigest() == (
        "8ae8db31a1745a753c199a174d5b6745bb0f73634c221e2a83f965d9adcdd624"
    )


def test_the_ca_differs_by_epoch_and_by_circle() -> None:
    today = der(circle_ca(SECRET, EPOCH).certificate)
    assert der(circle_ca(SECRET, EPOCH + 1).certificate) != today
    assert der(circle_ca(CircleSecret.generate(), EPOCH).certificate) != today


def test_the_ca_profile() -> None:
    certificate = circle_ca(SECRET, EPOCH).certificate
    assert isinstance(certificate.public_key(), Ed25519PublicKey)
    assert certificate.version == x509.Version.v3
    assert certificate.serial_number == 1
    assert certificate.subject == certificate.issuer
    assert common_name(certificate.subject) == ca_name(SECRET, EPOCH)
    assert len(certificate.subject.rdns) == 1
    certificate.verify_directly_issued_by(certificate)
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value == x509.BasicConstraints(ca=True, path_length=0)
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and not usage.value.digital_signature
    assert {ext.oid for ext in certificate.extensions} == {
        x509.BasicConstraints.oid,
        x509.KeyUsage.oid,
        x509.SubjectKeyIdentifier.oid,
    }
    assert (certificate.not_valid_before_utc, certificate.not_valid_after_utc) == validity(EPOCH)


def test_the_leaf_profile() -> None:
    ca = circle_ca(SECRET, EPOCH)
    leaf = issue_leaf(ca).certificate
    assert isinstance(leaf.public_key(), Ed25519PublicKey)
    assert leaf.issuer == ca.certificate.subject
    leaf.verify_directly_issued_by(ca.certificate)
    name = common_name(leaf.subject)
    assert len(name) == 32 and int(name, 16) >= 0
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    purposes = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(purposes) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    authority = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_key_id = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert authority.key_identifier == ca_key_id.value.digest
    assert authority.authority_cert_issuer is None
    assert (leaf.not_valid_before_utc, leaf.not_valid_after_utc) == validity(EPOCH)
    # No names beyond the subject: no alternative names, nothing about the software.
    assert not any(ext.oid == x509.SubjectAlternativeName.oid for ext in leaf.extensions)


def test_two_leaves_share_nothing_but_the_issuer() -> None:
    ca = circle_ca(SECRET, EPOCH)
    one, two = issue_leaf(ca).certificate, issue_leaf(ca).certificate
    assert one.subject != two.subject
    assert one.serial_number != two.serial_number
    assert one.public_key() != two.public_key()
    assert one.issuer == two.issuer


def test_validity_covers_the_epochs_whose_window_holds_it() -> None:
    not_before, not_after = validity(EPOCH)
    start = datetime.datetime.fromtimestamp(EPOCH * DAY, datetime.UTC)
    assert not_before == start - datetime.timedelta(days=2)
    assert not_after == start + datetime.timedelta(days=3, seconds=-1)
    for days in range(-2, 3):  # receivers in these epochs hold EPOCH in their window
        receiver = NOW + days * DAY
        assert EPOCH in window(receiver)
        moment = datetime.datetime.fromtimestamp(receiver, datetime.UTC)
        assert not_before <= moment <= not_after
    for days in (-3, 3):
        assert EPOCH not in window(NOW + days * DAY)


def test_the_contexts_are_tls13_only_mutual_and_trust_the_window_only() -> None:
    tls = CircleTLS(SECRET, NOW)
    expected = sorted(ca_name(SECRET, epoch) for epoch in window(NOW))
    for context in (tls.server_context(), tls.client_context()):
        assert context.minimum_version == ssl.TLSVersion.TLSv1_3
        assert context.maximum_version == ssl.TLSVersion.TLSv1_3
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname is False
        assert context.verify_flags & NO_CHECK_TIME
        assert context.verify_flags & ssl.VERIFY_X509_STRICT
        assert context.options & ssl.OP_NO_TICKET
        trusted = trusted_names(context)
        assert trusted == expected
    assert tls.server_context().num_tickets == 0
    assert tls.server_context().sni_callback is not None
    assert tls.epoch == EPOCH


def test_refresh_within_an_epoch_changes_nothing() -> None:
    tls = CircleTLS(SECRET, NOW)
    server, client = tls.server_context(), tls.client_context()
    assert tls.refresh(NOW + 1) is False
    assert tls.server_context() is server and tls.client_context() is client


def test_refresh_in_a_new_epoch_keeps_the_listening_context() -> None:
    tls = CircleTLS(SECRET, NOW)
    server, client = tls.server_context(), tls.client_context()
    assert tls.refresh(NOW + DAY) is True
    assert tls.epoch == EPOCH + 1
    assert tls.server_context() is server
    assert tls.client_context() is not client
    trusted = trusted_names(tls.client_context())
    assert trusted == sorted(ca_name(SECRET, epoch) for epoch in window(NOW + DAY))


def test_a_clock_at_1970_still_makes_contexts() -> None:
    """A Raspberry Pi without a real-time clock boots in 1970: it matches no member, yet
    starts (the circle's discovery and the owner's status say the rest)."""
    tls = CircleTLS(SECRET, 0.0)
    assert tls.epoch == 0


@pytest.mark.parametrize("now", [1e15, 253402300800.0 - 2 * DAY], ids=["year 31 million", "9999"])
def test_a_clock_far_off_is_a_one_line_error(now: float) -> None:
    with pytest.raises(CircleTLSError) as caught:
        CircleTLS(SECRET, now)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("this device's clock is far off")
    assert caught.value.exit_code == EXIT_NETWORK


def test_a_clock_gone_far_off_while_running_is_the_same_error() -> None:
    tls = CircleTLS(SECRET, NOW)
    server = tls.server_context()
    with pytest.raises(CircleTLSError, match="clock is far off"):
        tls.refresh(1e15)
    # Nothing was replaced: the node keeps serving with what it had.
    assert tls.epoch == EPOCH and tls.server_context() is server


def no_memfd(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(name: str, flags: int = 0) -> int:
        raise OSError(errno.ENOSYS, "memfd_create is not there")

    monkeypatch.setattr(os, "memfd_create", refuse)


def test_the_key_reaches_openssl_through_a_memory_file_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    made: list[str] = []
    memfd_create = os.memfd_create

    def spy(name: str, flags: int = 0) -> int:
        made.append(name)
        return memfd_create(name, flags)

    monkeypatch.setattr(os, "memfd_create", spy)
    CircleTLS(SECRET, NOW).server_context()
    assert made == ["k", "k"]  # server and client contexts; nothing in a folder
    assert list(tmp_path.iterdir()) == []


def test_without_memfd_the_key_goes_through_a_memory_folder_and_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_memfd(monkeypatch)
    shm = tmp_path / "shm"
    shm.mkdir()
    monkeypatch.setattr(fs, "MEMORY_FOLDER", shm)
    tls = CircleTLS(SECRET, NOW)
    assert tls.server_context().minimum_version == ssl.TLSVersion.TLSv1_3
    assert list(shm.iterdir()) == []


def test_no_memory_file_and_no_memory_folder_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_memfd(monkeypatch)
    monkeypatch.setattr(fs, "MEMORY_FOLDER", tmp_path / "absent")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(CircleTLSError) as caught:
        CircleTLS(SECRET, NOW)
    message = str(caught.value)
    assert "\n" not in message
    assert message == (
        "cannot hand the circle's TLS key to TLS in memory: function not implemented"
    )
    assert caught.value.exit_code == EXIT_NETWORK
    assert list(tmp_path.iterdir()) == []  # and never a key file on the disk instead
