"""The reader's own HTTPS certificate (``--https``): made on the node on first use, kept
under its home, and served with a server SSLContext (TLS 1.2 and newer).

One self-signed ECDSA P-256 certificate whose subject is a random word (never the
software's name, nor the owner's: TLS 1.2 sends the certificate in clear), with the
reader's addresses, 127.0.0.1, ::1 and localhost as subject alternative names. Readers
check it once by its fingerprint (SHA-256 of the certificate's DER bytes), shown on the
share page, in its QR code and by ``meshdrop read`` at start.

When the certificate stops covering the addresses the reader shares (another Wi-Fi),
has expired, or cannot be read, a new key and certificate replace it: the old
addresses are not carried over, so the files never list the networks the node was on.
Readers then check the new fingerprint once more.

In a sealed store both files are sealed (purposes "reader tls key" and "reader tls cert",
store/homefiles.py); a pair that does not open counts as unreadable (a new one is made).
The clear key reaches OpenSSL through an anonymous memory file (memfd), or a file on a
memory file system removed at once where there is none: never through the disk.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshdrop.errors import SealedFileError, StoreError
from meshdrop.fs import atomic_write, load_cert_chain_from_memory, os_error_message
from meshdrop.store import homefiles
from meshdrop.store.homefiles import FileCodec
from meshdrop.transports.lan.circlecerts import leaf_key_usage

FOLDER_NAME = homefiles.READER_TLS_FOLDER
KEY_NAME = "key.pem"
CERT_NAME = "cert.pem"
MAX_FILE_BYTES = 64 * 1024
VALID_DAYS = 10 * 365  # long: a reader checks the fingerprint once, not every year
BACKDATE = datetime.timedelta(days=1)  # a phone whose clock is a little behind still agrees
LOOPBACK = ("127.0.0.1", "::1")
LOCAL_NAME = "localhost"


@dataclass(frozen=True)
class ReaderCertificate:
    """The certificate in use, where its files are, and whether this start made it."""

    certificate: x509.Certificate
    folder: Path
    made: str | None  # why a new one was made this start, or None if it was kept
    # A sealed store's: the clear PEM key and certificate, handed to OpenSSL from memory.
    in_memory: tuple[bytes, bytes] | None = None

    @property
    def fingerprint(self) -> str:
        """Upper-case hex SHA-256 of the DER bytes (the form in the share link)."""
        return fingerprint_of(self.certificate)

    @property
    def key_path(self) -> Path:
        return self.folder / KEY_NAME

    @property
    def cert_path(self) -> Path:
        return self.folder / CERT_NAME


def fingerprint_of(certificate: x509.Certificate) -> str:
    der = certificate.public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest().upper()


def grouped(fingerprint: str) -> str:
    """``AB12 CD34 ...``: groups of four, easier to compare aloud."""
    return " ".join(fingerprint[i : i + 4] for i in range(0, len(fingerprint), 4))


def share_link(url: str, fingerprint: str) -> str:
    """``https://HOST:PORT/#sha256=FINGERPRINT``: the fragment never leaves the phone
    (browsers do not send it), so it costs nothing on the wire."""
    return f"{url.split('#', 1)[0]}#sha256={fingerprint}"


def reader_certificate(home: Path, hosts: list[str]) -> ReaderCertificate:
    """The stored certificate if it is whole, current and covers ``hosts`` (addresses or
    names others use to reach the reader); else a new key and certificate, stored."""
    files = CertificateFiles(home / FOLDER_NAME, FileCodec.for_home(home))
    wanted = _names(hosts)
    reason = "first use"
    try:
        stored = files.read()
    except SealedFileError:
        stored, reason = None, "the stored one could not be read"
    if stored is not None:
        certificate, reason = _usable(*stored, wanted)
        if certificate is not None:
            return files.certificate(certificate, None, stored[0])
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = _self_signed(key, wanted)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    files.write(key_pem, certificate.public_bytes(serialization.Encoding.PEM))
    return files.certificate(certificate, reason, key_pem)


def server_context(certificate: ReaderCertificate) -> ssl.SSLContext:
    """A server context for ``certificate``: TLS 1.2 or newer, Python's default ciphers."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if certificate.in_memory is None:
            context.load_cert_chain(certificate.cert_path, certificate.key_path)
        else:
            key_pem, cert_pem = certificate.in_memory
            load_cert_chain_from_memory(context, cert_pem + key_pem)
    except (OSError, ssl.SSLError) as exc:
        raise StoreError(
            f"cannot use the reader's certificate in {certificate.folder}: {exc}"
        ) from exc
    return context


class CertificateFiles:
    """Every read and write of the key and certificate files, as ``codec`` keeps them."""

    def __init__(self, folder: Path, codec: FileCodec = homefiles.PLAIN) -> None:
        self.folder = folder
        self.codec = codec

    def read(self) -> tuple[bytes, bytes] | None:
        """(key PEM, certificate PEM), or None if either is missing; SealedFileError if a
        sealed one does not open."""
        key_path, cert_path = self.folder / KEY_NAME, self.folder / CERT_NAME
        limit = MAX_FILE_BYTES + self.codec.overhead
        try:
            with key_path.open("rb") as key, cert_path.open("rb") as cert:
                key_pem, cert_pem = key.read(limit), cert.read(limit)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(os_error_message(exc, f"reading {self.folder}")) from exc
        return (
            self.codec.decode(homefiles.READER_TLS_KEY, key_pem, key_path),
            self.codec.decode(homefiles.READER_TLS_CERT, cert_pem, cert_path),
        )

    def certificate(
        self, certificate: x509.Certificate, made: str | None, key_pem: bytes
    ) -> ReaderCertificate:
        if not self.codec.sealed:
            return ReaderCertificate(certificate, self.folder, made)
        cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
        return ReaderCertificate(certificate, self.folder, made, (key_pem, cert_pem))

    def write(self, key_pem: bytes, cert_pem: bytes) -> None:
        """The key (0600) first, then the certificate: a crash between them leaves a
        pair that does not match, which the next start replaces."""
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(os_error_message(exc, f"making {self.folder}")) from exc
        atomic_write(
            self.folder / KEY_NAME, self.codec.encode(homefiles.READER_TLS_KEY, key_pem), 0o600
        )
        atomic_write(
            self.folder / CERT_NAME, self.codec.encode(homefiles.READER_TLS_CERT, cert_pem), 0o644
        )


Names = tuple[frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address], frozenset[str]]


def _names(hosts: list[str]) -> Names:
    addresses: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = {
        ipaddress.ip_address(a) for a in LOOPBACK
    }
    names = {LOCAL_NAME}
    for host in hosts:
        try:
            addresses.add(ipaddress.ip_address(host.strip("[]")))
        except ValueError:
            names.add(host.lower())
    return frozenset(addresses), frozenset(names)


def _usable(key_pem: bytes, cert_pem: bytes, wanted: Names) -> tuple[x509.Certificate | None, str]:
    """The stored certificate if it can serve ``wanted``, else (None, why not)."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
        certificate = x509.load_pem_x509_certificate(cert_pem)
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.ExtensionNotFound):
        return None, "the stored one could not be read"
    if key.public_key() != certificate.public_key():
        return None, "the stored key and certificate do not match"
    now = datetime.datetime.now(datetime.UTC)
    if not certificate.not_valid_before_utc <= now < certificate.not_valid_after_utc:
        return None, "the stored one is outside its dates"
    addresses = set(san.value.get_values_for_type(x509.IPAddress))
    names = set(san.value.get_values_for_type(x509.DNSName))
    if not (wanted[0] <= addresses and wanted[1] <= names):
        return None, "the address changed"
    return certificate, ""


def _self_signed(key: ec.EllipticCurvePrivateKey, wanted: Names) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, secrets.token_hex(8))])
    now = datetime.datetime.now(datetime.UTC)
    addresses, names = wanted
    alternatives: list[x509.GeneralName] = [x509.DNSName(n) for n in sorted(names)]
    alternatives += [x509.IPAddress(a) for a in sorted(addresses, key=str)]
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(leaf_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
