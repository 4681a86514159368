"""A circle's TLS on real sockets (issue 16; PROTOCOL.md "Circle transport"): members of a
circle talk over mutually authenticated TLS 1.3 within ±2 days of clock skew; a stranger,
a member of another circle and a member removed by a rekey get no application data; a
probe learns nothing stable. Each listener is an asyncio server on 127.0.0.1 port 0 that
greets every client that completes the handshake, so any application data a client gets
shows up; clocks that are off are simulated by passing ``now``."""

from __future__ import annotations

import asyncio
import datetime
import re
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from meshdrop.core.circles import CircleSecret, epoch_of
from meshdrop.transports.lan.circlecerts import circle_ca
from meshdrop.transports.lan.circletls import CircleTLS

DAY = 86400.0
# Noon of a fixed day: every skew below is whole days, so epochs differ by exactly as
# many days (no epoch boundary to fall on either side of).
NOW = 1_750_000_000 // 86400 * 86400 + DAY / 2
GREETING = b"greetings, member\n"
WAIT = 20.0  # seconds: a bound on every socket operation, never reached when all is well


class Listener:
    """An asyncio server with a circle's server context, on its own thread's loop (so the
    test's blocking probes and ``openssl`` subprocesses run beside it). It greets each
    client after the handshake, then echoes one line upper-cased."""

    def __init__(self, tls: CircleTLS) -> None:
        self.tls = tls
        self.greeted = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="circle-listener")

    def __enter__(self) -> Listener:
        self._thread.start()
        assert self._ready.wait(WAIT), "the listener did not start"
        return self

    def __exit__(self, *_: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(WAIT)

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(
            self._greet, "127.0.0.1", 0, ssl=self.tls.server_context()
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        server.close()
        await server.wait_closed()

    async def _greet(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.greeted += 1
        try:
            writer.write(GREETING)
            line = await reader.readline()
            writer.write(line.upper())
            await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


def connect(port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    """A TLS client socket, handshake done (no server name is sent, as a member's)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    return context.wrap_socket(raw)


def talk(port: int, context: ssl.SSLContext) -> tuple[bytes, ssl.SSLSocket]:
    """Connect, say one line, read until the server closes: what came back."""
    sock = connect(port, context)
    sock.sendall(b"hello\n")
    answer = b""
    while piece := sock.recv(65536):
        answer += piece
    return answer, sock


def application_data_of(port: int, context: ssl.SSLContext) -> bytes:
    """All the application data a client with ``context`` gets: a refused handshake,
    an alert or a hang-up all end the reading."""
    answer = b""
    try:
        sock = connect(port, context)
        with sock:
            sock.sendall(b"hello\n")
            while piece := sock.recv(65536):
                answer += piece
    except (ssl.SSLError, ConnectionError):
        pass
    return answer


def stranger_context(shown: Path | None = None) -> ssl.SSLContext:
    """A prober: a client that trusts anything, and shows the certificate and key in the
    PEM file ``shown`` if given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if shown is not None:
        context.load_cert_chain(shown)
    return context


def self_signed(folder: Path) -> Path:
    """A stranger's own Ed25519 certificate and key, in one PEM file in ``folder``."""
    key = Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stranger")])
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3))
        .sign(key, None)
    )
    path = folder / "stranger.pem"
    path.write_bytes(
        certificate.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def seen_by_stranger(port: int) -> x509.Certificate:
    """The certificate a prober trusting anything receives from the server."""
    sock = connect(port, stranger_context())
    with sock:
        der = sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


@pytest.fixture()
def secret() -> CircleSecret:
    return CircleSecret.generate()


def test_members_exchange_bytes_over_mutual_tls13(secret: CircleSecret) -> None:
    server_side, client_side = CircleTLS(secret, NOW), CircleTLS(secret, NOW)

    async def scenario() -> tuple[bytes, str | None, bool, bool]:
        shown: list[bool] = []

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            shown.append(writer.get_extra_info("ssl_object").getpeercert(True) is not None)
            writer.write((await reader.readline()).upper())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_side.server_context())
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_side.client_context(), server_hostname=""
        )
        writer.write(b"a line from one member to another\n")
        answer = await reader.read()
        tls = writer.get_extra_info("ssl_object")
        session = tls.session
        writer.close()
        server.close()
        await server.wait_closed()
        return answer, tls.version(), shown == [True], session is None or not session.has_ticket

    answer, version, client_showed_certificate, no_ticket = asyncio.run(scenario())
    assert answer == b"A LINE FROM ONE MEMBER TO ANOTHER\n"
    assert version == "TLSv1.3"
    assert client_showed_certificate
    assert no_ticket, "the server sent a session ticket (it would link two connections)"


@pytest.mark.parametrize(
    ("client_clock_days", "connects"),
    [(0, True), (2, True), (-2, True), (3, False), (-3, False), (4, False), (-4, False)],
    ids=["same", "2 days ahead", "2 days behind", "3 ahead", "3 behind", "4 ahead", "4 behind"],
)
def test_clock_skew_between_members(
    secret: CircleSecret, client_clock_days: int, connects: bool
) -> None:
    client = CircleTLS(secret, NOW + client_clock_days * DAY)
    with Listener(CircleTLS(secret, NOW)) as listener:
        got = application_data_of(listener.port, client.client_context())
    if connects:
        assert got == GREETING + b"HELLO\n"
    else:
        assert got == b""
        assert listener.greeted == 0


def test_a_server_whose_clock_is_4_days_off_is_refused_by_the_client(secret: CircleSecret) -> None:
    client = CircleTLS(secret, NOW)
    with Listener(CircleTLS(secret, NOW + 4 * DAY)) as listener:
        with pytest.raises(ssl.SSLCertVerificationError):
            connect(listener.port, client.client_context())
        assert listener.greeted == 0


@pytest.mark.parametrize(
    "certificate", ["none", "self-signed"], ids=["no certificate", "a self-signed one"]
)
def test_a_stranger_gets_no_application_data(
    secret: CircleSecret, certificate: str, tmp_path: Path
) -> None:
    shown = self_signed(tmp_path) if certificate == "self-signed" else None
    with Listener(CircleTLS(secret, NOW)) as listener:
        got = application_data_of(listener.port, stranger_context(shown))
    assert got == b""
    assert listener.greeted == 0


def test_a_member_of_another_circle_fails_as_client(secret: CircleSecret) -> None:
    other = CircleTLS(CircleSecret.generate(), NOW)
    with Listener(CircleTLS(secret, NOW)) as listener:
        with pytest.raises(ssl.SSLCertVerificationError):
            connect(listener.port, other.client_context())
        assert listener.greeted == 0


def test_a_member_of_another_circle_fails_as_server(secret: CircleSecret) -> None:
    member = CircleTLS(secret, NOW)
    with Listener(CircleTLS(CircleSecret.generate(), NOW)) as impostor:
        with pytest.raises(ssl.SSLCertVerificationError):
            connect(impostor.port, member.client_context())
        # The member refused before showing its own certificate (TLS 1.3 order).
        assert impostor.greeted == 0


def test_a_member_removed_by_a_rekey_gets_nothing(secret: CircleSecret) -> None:
    rekeyed = CircleSecret.generate()
    removed = CircleTLS(secret, NOW)
    with Listener(CircleTLS(rekeyed, NOW)) as listener:
        assert application_data_of(listener.port, removed.client_context()) == b""
        with pytest.raises(ssl.SSLCertVerificationError):
            connect(listener.port, removed.client_context())
        assert listener.greeted == 0


def raw_exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` (maybe nothing), half-close, read until the server hangs up."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while piece := sock.recv(65536):
                answer += piece
        except ConnectionResetError:
            pass
    return answer


def is_at_most_a_tls_alert(answer: bytes) -> bool:
    """Nothing, or one TLS alert record (content type 21, 2-byte alert): no text."""
    return answer == b"" or (answer[:1] == b"\x15" and len(answer) == 7)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /peer/v1/hello HTTP/1.0\r\n\r\n",
        b"\x00" * 64,
    ],
    ids=["a plain TCP connect", "an HTTP request", "a peer API request", "zeros"],
)
def test_a_plain_probe_gets_nothing_readable(secret: CircleSecret, request_bytes: bytes) -> None:
    with Listener(CircleTLS(secret, NOW)) as listener:
        answer = raw_exchange(listener.port, request_bytes)
    assert is_at_most_a_tls_alert(answer), answer
    assert b"HTTP" not in answer
    assert listener.greeted == 0


def test_the_certificate_a_prober_sees_has_no_stable_identifier(secret: CircleSecret) -> None:
    with Listener(CircleTLS(secret, NOW)) as first:
        one = seen_by_stranger(first.port)
    with Listener(CircleTLS(secret, NOW)) as second:
        two = seen_by_stranger(second.port)
    with Listener(CircleTLS(secret, NOW + DAY)) as next_day:
        later = seen_by_stranger(next_day.port)
    assert one.subject != two.subject
    assert one.serial_number != two.serial_number
    assert one.public_key() != two.public_key()
    # What does link them (THREATS.md): the issuer, the circle's CA of that epoch.
    assert one.issuer == two.issuer
    assert later.issuer != one.issuer
    for certificate in (one, two, later):
        der = certificate.public_bytes(serialization.Encoding.DER).lower()
        assert b"meshdrop" not in der
        assert b"mdrop" not in der


PEM_BLOCK = r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n"


def openssl_handshake(port: int) -> str:
    """What `openssl s_client -showcerts` prints about a handshake, as a prober."""
    proc = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_3", "-showcerts"],
        input=b"",
        capture_output=True,
        timeout=WAIT,
    )
    return (proc.stdout + proc.stderr).decode(errors="replace")


def test_the_server_sends_its_leaf_and_its_epochs_ca_only(secret: CircleSecret) -> None:
    """OpenSSL completes the chain from the trust store, and Python 3.11's ssl cannot turn
    that off (SSL_MODE_NO_AUTO_CHAIN): the CA of the server's epoch follows its leaf
    (PROTOCOL.md says so; it shows a prober nothing the leaf's issuer does not)."""
    with Listener(CircleTLS(secret, NOW)) as listener:
        printed = openssl_handshake(listener.port)
    sent = x509.load_pem_x509_certificates(
        "".join(re.findall(PEM_BLOCK, printed, flags=re.DOTALL)).encode()
    )
    assert len(sent) == 2, printed
    leaf, authority = sent
    assert authority == circle_ca(secret, epoch_of(NOW)).certificate
    assert leaf.issuer == authority.subject
    assert "TLSv1.3" in printed
    # The request for the client's certificate names no CA.
    assert "No client certificate CA names sent" in printed, printed
    assert listener.greeted == 0


def test_refresh_moves_the_listening_socket_to_the_next_epoch(secret: CircleSecret) -> None:
    tls = CircleTLS(secret, NOW)
    three_days_on = CircleTLS(secret, NOW + 3 * DAY).client_context()
    with Listener(tls) as listener:
        before = seen_by_stranger(listener.port)
        assert application_data_of(listener.port, three_days_on) == b""

        assert tls.refresh(NOW + DAY)

        after = seen_by_stranger(listener.port)
        # The same socket, a new leaf under the next epoch's CA and the next window's
        # trust: a member three days on (inside the new window only) now gets in.
        assert after.serial_number != before.serial_number
        assert after.issuer != before.issuer
        answer, sock = talk(listener.port, three_days_on)
        sock.close()
        assert answer == GREETING + b"HELLO\n"
        # And a member still on the old day, inside both windows.
        yesterday = CircleTLS(secret, NOW).client_context()
        assert application_data_of(listener.port, yesterday) == GREETING + b"HELLO\n"


def test_a_replayed_handshake_gets_no_application_data(secret: CircleSecret) -> None:
    """Everything a member's client sent on one connection (its ClientHello, its
    certificate and Finished, its request), captured by a relay and sent again on a new
    connection, gets no line back: TLS 1.3 binds the handshake to the server's fresh
    random, so the replayed Finished cannot verify and nothing is decrypted."""
    server_side, client_side = CircleTLS(secret, NOW), CircleTLS(secret, NOW)

    async def scenario() -> tuple[bytes, bytes, list[bytes]]:
        received: list[bytes] = []  # what the server's application read, connection by connection

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                line = await reader.readline()
                received.append(line)
                writer.write(line.upper())
                await writer.drain()
            except (OSError, ssl.SSLError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_side.server_context())
        port = server.sockets[0].getsockname()[1]
        sent = bytearray()

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, keep: bool) -> None:
            while data := await src.read(65536):
                if keep:
                    sent.extend(data)
                dst.write(data)
                await dst.drain()
            dst.close()

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            await asyncio.gather(
                pipe(reader, up_writer, keep=True),
                pipe(up_reader, writer, keep=False),
                return_exceptions=True,
            )

        relay_server = await asyncio.start_server(relay, "127.0.0.1", 0)
        relay_port = relay_server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", relay_port, ssl=client_side.client_context(), server_hostname=""
        )
        writer.write(b"the member's request\n")
        answer = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        await asyncio.sleep(0.2)
        raw_reader, raw_writer = await asyncio.open_connection("127.0.0.1", port)
        raw_writer.write(bytes(sent))
        try:
            replayed = await asyncio.wait_for(raw_reader.read(), 10)
        except (OSError, TimeoutError):
            replayed = b""
        raw_writer.close()
        for s in (server, relay_server):
            s.close()
            await s.wait_closed()
        await asyncio.sleep(0.2)
        return answer, replayed, received

    answer, replayed, received = asyncio.run(scenario())
    assert answer == b"THE MEMBER'S REQUEST\n"
    # The server's application read the request once, from the member; the replay never
    # reached it (its handshake failed: the server answered its own hello, then nothing).
    assert received == [b"the member's request\n"]
    assert b"THE MEMBER'S REQUEST" not in replayed
