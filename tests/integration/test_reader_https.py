"""The reader over HTTPS (``meshdrop read --https``, issue 17): the installed command on
127.0.0.1 with real TLS sockets. A client pinned to the fingerprint the command prints
gets the pages; plain HTTP on that port gets no page; the certificate (ECDSA P-256,
self-signed, naming nothing) is made once, kept under the home and reused; the share
page shows the fingerprint and its QR code carries it; headless Chromium told to accept
that one key loads the home page."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import http.client
import ipaddress
import re
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lankit import Nodes
from readerkit import Reply, stop_reader
from test_reader_browser import chromium, chromium_path, navigate, open_page

from conftest import command_env, meshdrop_executable, run_meshdrop
from meshdrop.errors import NetworkError
from meshdrop.reader.render import qr_svg
from meshdrop.reader.tlscert import CERT_NAME, FOLDER_NAME, KEY_NAME, reader_certificate

FINGERPRINT_LINE = re.compile(r"certificate fingerprint \(SHA-256\): ([0-9A-F ]{79})$")


@dataclass
class HttpsReader:
    base: str  # https://127.0.0.1:PORT/
    port: int
    fingerprint: str  # 64 upper-case hex digits, no spaces
    lines: list[str]  # what the command printed before serving


@contextlib.contextmanager
def https_reader(home: Path, *extra: str) -> Iterator[HttpsReader]:
    """`meshdrop --home HOME read --https --port 0` running, until its fingerprint line."""
    proc = subprocess.Popen(
        [meshdrop_executable(), "--home", str(home), "read", "--https", "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=command_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    found = None
    while found is None:
        line = proc.stdout.readline()
        if not line:
            proc.kill()
            raise AssertionError(f"meshdrop read did not start: {lines} {proc.stderr.read()!r}")
        lines.append(line.rstrip("\n"))
        found = FINGERPRINT_LINE.search(lines[-1])
    url = next(re.search(r"https://127\.0\.0\.1:(\d+)/", x) for x in lines if "reader on" in x)
    assert url is not None, lines
    try:
        yield HttpsReader(url.group(0), int(url.group(1)), found.group(1).replace(" ", ""), lines)
    finally:
        stop_reader(proc)


def pinned_get(reader: HttpsReader, path: str, **headers: str) -> Reply:
    """One HTTPS request that goes ahead only if the server's certificate is the one whose
    fingerprint the command printed (as a person checks it once in the browser)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # self-signed: pinned by fingerprint below
    conn = http.client.HTTPSConnection("127.0.0.1", reader.port, timeout=20, context=context)
    try:
        conn.connect()
        assert isinstance(conn.sock, ssl.SSLSocket)
        der = conn.sock.getpeercert(binary_form=True)
        assert der is not None
        assert hashlib.sha256(der).hexdigest().upper() == reader.fingerprint
        conn.request("GET", path, headers={k.replace("_", "-"): v for k, v in headers.items()})
        response = conn.getresponse()
        return Reply(response.status, response.getheaders(), response.read())
    finally:
        conn.close()


def stored_certificate(home: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((home / FOLDER_NAME / CERT_NAME).read_bytes())


def test_https_reader_serves_pinned_client(tmp_path: Path) -> None:
    home = tmp_path / "node"
    with https_reader(home) as reader:
        reply = pinned_get(reader, "/", Accept_Language="en")
    assert reply.status == 200
    assert "<html" in reply.text and "Library" in reply.text
    assert reader.lines[0] == "made a new certificate for the reader (first use)"
    folder = home / FOLDER_NAME
    assert (folder / KEY_NAME).stat().st_mode & 0o777 == 0o600
    assert (folder / CERT_NAME).stat().st_mode & 0o777 == 0o644
    assert folder.stat().st_mode & 0o777 == 0o700
    der = stored_certificate(home).public_bytes(serialization.Encoding.DER)
    assert hashlib.sha256(der).hexdigest().upper() == reader.fingerprint


def test_https_plain_http_gets_no_page(tmp_path: Path) -> None:
    with https_reader(tmp_path / "node") as reader:
        with socket.create_connection(("127.0.0.1", reader.port), timeout=20) as plain:
            plain.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            answer = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := plain.recv(65536):
                    answer += chunk
        assert pinned_get(reader, "/").status == 200  # the reader still serves after it
    assert b"HTTP/" not in answer and b"<" not in answer, answer


def test_https_same_certificate_across_restarts(tmp_path: Path) -> None:
    home = tmp_path / "node"
    with https_reader(home) as first:
        pass
    key = (home / FOLDER_NAME / KEY_NAME).read_bytes()
    with https_reader(home) as second:
        assert pinned_get(second, "/").status == 200
    assert second.fingerprint == first.fingerprint
    assert not any(line.startswith("made a new") for line in second.lines), second.lines
    assert (home / FOLDER_NAME / KEY_NAME).read_bytes() == key


def test_https_certificate_names_nothing(tmp_path: Path) -> None:
    home = tmp_path / "node"
    with https_reader(home, "--name", "Dorm 3 library"):
        pass
    certificate = stored_certificate(home)
    der = certificate.public_bytes(serialization.Encoding.DER)
    for word in (b"meshdrop", b"mesh", b"drop", b"dorm", b"library", b"reader"):
        assert word not in der.lower(), word
    assert certificate.subject == certificate.issuer  # self-signed
    (cn,) = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert re.fullmatch(r"[0-9a-f]{16}", str(cn.value))
    key = certificate.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.IPAddress)) >= {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert lifetime.days >= 3650


def test_https_share_page_shows_fingerprint_and_qr(tmp_path: Path) -> None:
    with https_reader(tmp_path / "node") as reader:
        # The address a phone on the Wi-Fi would have used (here in the Host header).
        host = f"192.0.2.7:{reader.port}"
        reply = pinned_get(reader, "/share", Accept_Language="en", Host=host)
    assert reply.status == 200
    grouped = " ".join(reader.fingerprint[i : i + 4] for i in range(0, 64, 4))
    assert grouped in reply.text
    assert f"https://{host}/" in reply.text
    expected = qr_svg(f"https://{host}/#sha256={reader.fingerprint}")
    assert str(expected) in reply.text  # the very SVG segno draws for that link


def test_https_new_address_makes_new_certificate(tmp_path: Path) -> None:
    home = tmp_path / "node"
    first = reader_certificate(home, ["192.0.2.7"])
    assert first.made == "first use"
    again = reader_certificate(home, ["192.0.2.7"])
    assert again.made is None and again.fingerprint == first.fingerprint
    moved = reader_certificate(home, ["198.51.100.4"])
    assert moved.made == "the address changed"
    assert moved.fingerprint != first.fingerprint
    addresses = stored_certificate(home).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    listed = set(addresses.value.get_values_for_type(x509.IPAddress))
    assert ipaddress.ip_address("198.51.100.4") in listed
    assert ipaddress.ip_address("192.0.2.7") not in listed  # no trail of old networks


def test_https_damaged_certificate_is_replaced(tmp_path: Path) -> None:
    home = tmp_path / "node"
    reader_certificate(home, [])
    (home / FOLDER_NAME / CERT_NAME).write_bytes(b"-----BEGIN CERTIFICATE-----\nnot one\n")
    with https_reader(home) as reader:
        assert pinned_get(reader, "/").status == 200
    assert reader.lines[0] == (
        "made a new certificate for the reader (the stored one could not be read)"
    )
    assert (home / FOLDER_NAME / KEY_NAME).stat().st_mode & 0o777 == 0o600


def test_https_busy_port_one_line_error(tmp_path: Path) -> None:
    home = tmp_path / "node"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_meshdrop("--home", home, "read", "--https", "--port", str(port))
    assert result.code == NetworkError.exit_code
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert result.err.startswith(f"meshdrop: cannot listen on 127.0.0.1:{port}"), result.err
    assert "choose another --port" in result.err
    assert (home / FOLDER_NAME / KEY_NAME).exists()  # the certificate made is kept


def test_https_in_headless_chromium(tmp_path: Path) -> None:
    chromium_path()
    with https_reader(tmp_path / "node") as reader:
        spki = (
            stored_certificate(tmp_path / "node")
            .public_key()
            .public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        pin = base64.b64encode(hashlib.sha256(spki).digest()).decode()
        with chromium(extra=[f"--ignore-certificate-errors-spki-list={pin}"]) as port:
            page = asyncio.run(_load_home(port, reader.base))
    assert page["protocol"] == "https:" and page["title"] == "Library", page
    assert "Share this node" in page["text"], page


async def _load_home(port: int, url: str) -> dict[str, Any]:
    session, cdp = await open_page(port)
    try:
        await cdp.send("Network.setExtraHTTPHeaders", {"headers": {"Accept-Language": "en"}})
        await navigate(cdp, url)
        page: dict[str, Any] = await cdp.evaluate(
            "({protocol: location.protocol, title: document.title, text: document.body.innerText})"
        )
        return page
    finally:
        await cdp.close()
        await session.close()


# The node's reader (`meshdrop node --https`)


def test_node_https_serves_reader_only_over_tls(tmp_path: Path, nodes: Nodes) -> None:
    home = tmp_path / "home"
    node = nodes.start(home, "--no-discovery", "--no-watch", "--https", "--https-port", "0")
    event = node.wait_event(lambda e: e["event"] == "reader", what="the reader's event")
    assert event["new"] == "first use"
    found = re.fullmatch(r"https://127\.0\.0\.1:(\d+)/", event["urls"][0])
    assert found is not None, event
    reader = HttpsReader(found.group(0), int(found.group(1)), event["fingerprint"], [])
    assert int(found.group(1)) != node.port  # a listener of its own
    page = pinned_get(reader, "/", Accept_Language="en")
    assert page.status == 200 and "<html" in page.text
    share = pinned_get(reader, "/share", Accept_Language="en", Host=f"192.0.2.9:{reader.port}")
    assert str(qr_svg(f"https://192.0.2.9:{reader.port}/#sha256={reader.fingerprint}")) in (
        share.text
    )
    # The node's own (plain) port serves its peers and status, and no reader page.
    plain = http.client.HTTPConnection("127.0.0.1", node.port, timeout=20)
    try:
        plain.request("GET", "/", headers={"Accept-Language": "en"})
        answer = plain.getresponse()
        body = answer.read()
    finally:
        plain.close()
    assert answer.status == 404 and b"<html" not in body, body
    assert node.status()["urls"]  # `meshdrop status` still reaches the node
    der = stored_certificate(home).public_bytes(serialization.Encoding.DER)
    assert hashlib.sha256(der).hexdigest().upper() == reader.fingerprint


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--https", "--no-reader"], "--https has no use with --no-reader"),
        (["--https-port", "8443"], "--https-port has no use without --https"),
    ],
    ids=["https-without-reader", "https-port-without-https"],
)
def test_node_https_bad_options(tmp_path: Path, argv: list[str], message: str) -> None:
    home = tmp_path / "home"
    result = run_meshdrop("--home", home, "node", "--bind", "127.0.0.1", "--port", "0", *argv)
    assert result.code == 2
    assert result.err == f"meshdrop: {message} (it is for the reader's pages)\n" or (
        result.err == f"meshdrop: {message}\n"
    ), result.err
    assert not (home / FOLDER_NAME).exists()


def test_node_https_busy_port_one_line_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_meshdrop(
            "--home", home, "node", "--bind", "127.0.0.1", "--port", "0", "--no-discovery",
            "--no-watch", "--https", "--https-port", str(port),
        )  # fmt: skip
    assert result.code == NetworkError.exit_code
    assert result.err == (
        f"meshdrop: cannot listen on 127.0.0.1:{port}: address already in use; "
        "choose another --https-port\n"
    ), result.err
    assert not (home / "node.json").exists()  # the node stopped cleanly
