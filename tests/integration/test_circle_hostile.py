"""Strangers and bad members against a circle (issue 16; docs/THREATS.md): real `meshdrop
node` processes in network namespaces of their own on a bridge, probed from another
namespace by a stranger (plain TCP, HTTP, TLS with no certificate or a self-signed one),
by members of another circle and by a member removed with `circle rekey`; a fake peer that
replays a member's token; a malicious member that serves bad chunks over the circle's
TLS; and a garbled circle file. Needs root and `ip netns` for the namespace tests
(skipped, with the reason, without them). Every wait is bounded; nothing asserts on
timing."""

from __future__ import annotations

import asyncio
import datetime
import json
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from lankit import Nodes, read_tree, wait_until
from netnskit import capturing, connected, host_ns, in_namespace, tls_records
from test_circle_capture import (
    PUBLISHER_NAME,
    circle_port,
    identifying,
    join,
    make_bundles,
    new_circle,
    secret_of,
    start_in,
)
from test_lan_hostile import (
    CASES,
    FILES,
    Case,
    HostilePeer,
    Offer,
    bad_peer,
    listed,
    prepare,
    wait_for,
)
from test_lan_netns import Lan, a_lan
from test_lan_nodes import holding, names, trusting
from zeroconf import ServiceBrowser, ServiceInfo, Zeroconf

from conftest import (
    Publisher,
    assert_clean_error,
    make_publisher,
    meshdrop_in_process,
    run_meshdrop,
)
from meshdrop.core.circles import Circle, epoch_of
from meshdrop.store.circles import CircleStore
from meshdrop.transports.lan.circlediscovery import SERVICE_TYPE
from meshdrop.transports.lan.circletls import CircleTLS
from meshdrop.transports.lan.events import Event
from meshdrop.transports.lan.node import Node, NodeConfig

pytestmark = pytest.mark.xdist_group("mdns")

READ = 3.0  # seconds a probe waits for an answer that should never come
HELLO = b"GET /peer/v1/hello HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture(name="lan")
def lan_fixture() -> Iterator[Lan]:
    yield from a_lan()


# A stranger's probes (blocking sockets, no event loop: each from a namespace)


def read_all(sock: socket.socket | ssl.SSLSocket) -> bytes:
    """What the other end sends until it closes, fails or stays silent for READ s."""
    sock.settimeout(READ)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, OSError):
        pass
    return data


def plain_probe(ns: str, host: str, port: int, send: bytes) -> bytes:
    with connected(ns, host, port) as sock:
        if send:
            sock.sendall(send)
        return read_all(sock)


@dataclass
class TlsProbe:
    certificate: x509.Certificate | None = None  # what the server showed
    answer: bytes = b""  # application data, after the handshake


def tls_probe(ns: str, host: str, port: int, context: ssl.SSLContext) -> TlsProbe:
    """A TLS client from ``ns``: the server's certificate if the handshake got that far
    (TLS 1.3 shows it before the client shows its own), and the answer to a hello."""
    seen = TlsProbe()
    sock = connected(ns, host, port)
    try:
        with context.wrap_socket(sock) as tls:
            der = tls.getpeercert(binary_form=True)
            seen.certificate = x509.load_der_x509_certificate(der) if der else None
            tls.sendall(HELLO)
            seen.answer = read_all(tls)
    except (ssl.SSLError, OSError):
        pass
    finally:
        sock.close()
    return seen


def stranger_context(folder: Path | None = None) -> ssl.SSLContext:
    """A TLS client that accepts any certificate: with none of its own, or (``folder``)
    with a self-signed one."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    if folder is not None:
        cert, key = self_signed(folder)
        context.load_cert_chain(cert, key)
    return context


def self_signed(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, secrets.token_hex(8))])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, None)
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def no_application_data(answer: bytes) -> None:
    """Nothing, or a TLS alert in clear (what OpenSSL says to a client that is not TLS)."""
    assert b"HTTP" not in answer and b"peer" not in answer, answer
    if answer:
        assert all(r.type == 21 for r in tls_records(answer)), answer


def test_a_stranger_probing_the_circle_port_gets_nothing_and_no_stable_certificate(
    lan: Lan, nodes: Nodes, tmp_path: Path, publisher: Publisher
) -> None:
    home = holding(trusting(tmp_path / "member", publisher), *make_bundles(publisher, tmp_path))
    new_circle(home)
    lan.add_host(1), lan.add_host(2)
    stranger, host = host_ns(lan, 2), lan.address(1)
    shown: list[x509.Certificate] = []
    days: list[set[int]] = []  # each start's day (a start may straddle midnight UTC)
    for start in (1, 2):
        before = epoch_of(time.time())
        node = start_in(nodes, lan, 1, home)
        days.append({before, epoch_of(time.time())})
        port = circle_port(node)
        assert plain_probe(stranger, host, port, b"") == b""
        no_application_data(plain_probe(stranger, host, port, HELLO))
        no_application_data(plain_probe(stranger, host, port, b"\x16\x03\x01\x00\x05hello"))
        for context in (stranger_context(), stranger_context(tmp_path / f"self{start}")):
            probe = tls_probe(stranger, host, port, context)
            assert probe.answer == b"", probe.answer
            assert probe.certificate is not None
            shown.append(probe.certificate)
        member = CircleTLS(secret_of(home), time.time()).client_context()
        assert tls_probe(stranger, host, port, member).answer.startswith(b"HTTP/1.1 200")
        assert node.stop() == 0
    # Within one start every handshake shows the same leaf; across starts nothing but
    # the issuer (the circle's CA of the day, the same for every member) is the same.
    first, _, second, _ = shown
    assert shown[0] == shown[1] and shown[2] == shown[3]
    assert first.subject != second.subject
    assert first.serial_number != second.serial_number
    assert first.public_key() != second.public_key()
    if days[0] == days[1] and len(days[0]) == 1:  # one day: that day's circle CA
        assert first.issuer == second.issuer
    elif all(len(day) == 1 for day in days):  # two days: two CAs
        assert first.issuer != second.issuer
    for certificate in (first, second):
        text = certificate.public_bytes(serialization.Encoding.DER)
        assert b"meshdrop" not in text.lower() and PUBLISHER_NAME.encode() not in text


def test_other_circles_and_a_removed_member_get_nothing_and_sync_nothing(
    lan: Lan, nodes: Nodes, tmp_path: Path, publisher: Publisher
) -> None:
    """A rekeys; B takes the new invite, C (removed) does not; D is in another circle.
    C and D even name A's circle port with --peer: their handshakes fail and they get
    nothing, while B (the positive control) syncs."""
    bundles = make_bundles(publisher, tmp_path)
    a = holding(trusting(tmp_path / "a", publisher), *bundles)
    b, c, d = (trusting(tmp_path / who, publisher) for who in "bcd")
    invite = new_circle(a)
    join(b, invite)
    join(c, invite)
    new_circle(d, "other")
    rekeyed = meshdrop_in_process("--home", a, "circle", "rekey", "dorm", "--json", check=True)
    fresh = str(json.loads(rekeyed.out)["invite"])
    meshdrop_in_process("--home", b, "circle", "rekey", "dorm", "--code", fresh, check=True)
    for number in (1, 2, 3, 4):
        lan.add_host(number)
    node_a = start_in(nodes, lan, 1, a)
    target = f"{lan.address(1)}:{circle_port(node_a)}"
    outsiders = [start_in(nodes, lan, n, home, "--peer", target) for n, home in ((3, c), (4, d))]
    start_in(nodes, lan, 2, b)
    wait_until(lambda: {"passport-rights", "unpaid-wages"} <= set(names(b)), what="B's sync")
    for outsider in outsiders:
        outsider.wait_event(
            lambda e: e.get("peer") == target and e["event"] in ("peer", "error"),
            what="an outsider's failed attempt",
        )
    assert names(c) == {} and names(d) == {}
    strangers = {lan.address(3), lan.address(4)}
    for outsider in outsiders:
        assert not any(e["event"] in ("bundle", "sync") for e in outsider.events)
    for event in node_a.events:
        assert str(event.get("peer", "")).rsplit(":", 1)[0] not in strangers, event
    alive = {peer.rsplit(":", 1)[0] for peer in node_a.alive_peers()}
    assert alive == {lan.address(2)} and not alive & strangers


# A fake peer that replays a member's token


@dataclass
class FakeTlsPeer:
    """A TLS server with a self-signed certificate in a namespace: it records every
    ClientHello it is sent (raw) and every byte of application data."""

    ns: str
    host: str
    folder: Path
    hellos: list[bytes] = field(default_factory=list)
    received: bytes = b""
    listener: socket.socket | None = None
    port: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*self_signed(self.folder))
        self.listener = in_namespace(self.ns, lambda: socket.create_server((self.host, 0)))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, args=(context,))
        self._thread.start()

    def _serve(self, context: ssl.SSLContext) -> None:
        assert self.listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(READ)
                try:
                    self.hellos.append(conn.recv(65536, socket.MSG_PEEK))
                    with context.wrap_socket(conn, server_side=True) as tls:
                        self.received += read_all(tls)
                except (ssl.SSLError, OSError):
                    pass

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        if self.listener is not None:
            self.listener.close()


def zeroconf_in(ns: str, address: str) -> Zeroconf:
    return in_namespace(ns, lambda: Zeroconf(interfaces=[address]))


def announced_token(zc: Zeroconf, port: int) -> bytes:
    """The TXT record of the `_http._tcp` service on ``port``, as a watcher resolves it."""
    names: set[str] = set()
    browser = ServiceBrowser(zc, SERVICE_TYPE, handlers=[lambda **kw: names.add(kw["name"])])
    try:

        def lookup() -> bytes | None:
            for name in list(names):
                info = zc.get_service_info(SERVICE_TYPE, name, timeout=3000)
                if info is not None and info.port == port and info.text:
                    return info.text
            return None

        found: bytes = wait_until(lookup, what="the member's announcement")
        return found
    finally:
        browser.cancel()


def test_a_fake_peer_replaying_a_token_gets_tls_attempts_and_nothing_else(
    lan: Lan, nodes: Nodes, tmp_path: Path
) -> None:
    publisher = make_publisher(tmp_path / "publisher", PUBLISHER_NAME)
    bundles = make_bundles(publisher, tmp_path)
    a = holding(trusting(tmp_path / "a", publisher), *bundles)
    invite = new_circle(a)
    for number in (1, 2, 3):
        lan.add_host(number)
    fake_ns, fake_host = host_ns(lan, 3), lan.address(3)
    fake = FakeTlsPeer(fake_ns, fake_host, tmp_path / "fake")
    zc = zeroconf_in(fake_ns, fake_host)
    try:
        with capturing(lan.bridge, tmp_path / "fake.pcap") as dump:
            node_a = start_in(nodes, lan, 1, a)
            text = announced_token(zc, circle_port(node_a))
            fake.start()
            name = f"{secrets.token_hex(6)}.{SERVICE_TYPE}"
            info = ServiceInfo(SERVICE_TYPE, name, port=fake.port, server=f"{name[:12]}.local.",
                               parsed_addresses=[fake_host])  # fmt: skip
            info.text = text  # the member's TXT, byte for byte
            zc.register_service(info)
            wait_until(lambda: fake.hellos, what="the member to try the fake peer")
            digest = node_a.status()["inventory"]["digest"]
            assert node_a.stop() == 0
            packets = dump.stop()
    finally:
        zc.close()
        fake.stop()
    assert fake.received == b""  # the member refused the fake's certificate: no request
    for hello in fake.hellos:
        (first, *_) = tls_records(hello)
        assert first.type == 22 and first.body[0] == 1  # a ClientHello, nothing more
    seen = b"".join(fake.hellos) + b"".join(p.payload for p in packets)
    found = identifying(publisher, bundles, secret_of(a), invite, [a])
    found["the inventory digest"] = bytes.fromhex(digest)
    for what, needle in found.items():
        assert needle not in seen, f"{what} reached the fake peer or the air"


# A malicious member


class CircleHostilePeer(HostilePeer):
    """test_lan_hostile's HostilePeer, served over the circle's TLS: it holds the
    circle's secret (a member gone bad)."""

    def __init__(self, offer: Offer, tls: CircleTLS, **bad: object) -> None:
        super().__init__(offer, **bad)  # type: ignore[arg-type]
        self.tls = tls

    async def start(self) -> None:
        from aiohttp import web

        await super().start()  # a plain site the node never calls, then the TLS one
        assert self.runner is not None
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.tls.server_context())
        await site.start()
        self.port = int(self.runner.addresses[-1][1])


MEMBER_CASES = [c for c in CASES if c.name in {
    "wrong bytes for a chunk",
    "a manifest signed by an untrusted key",
    "a malformed inventory",
}]  # fmt: skip


async def member_scenario(case: Case, tmp: Path, offer: Offer, circle: Circle) -> None:
    home, honest_home = tmp / "node", tmp / "honest"
    hostile_tls = await asyncio.to_thread(CircleTLS, circle.current.secret, time.time())
    hostile = CircleHostilePeer(offer, hostile_tls, **case.bad)
    await hostile.start()
    events: list[Event] = []
    node = Node(
        NodeConfig(
            home=home,
            bind="127.0.0.1",
            port=0,
            circles=(circle,),
            peers=(("127.0.0.1", hostile.port),),
            discovery=False,
            probe_interval=0.5,
        ),
        events.append,
    )
    honest = Node(
        NodeConfig(home=honest_home, bind="127.0.0.1", port=0, circles=(circle,),
                   discovery=False),
        lambda e: None,
    )  # fmt: skip
    await node.start()
    await honest.start()
    try:
        await wait_for(lambda: any(bad_peer(e) for e in events), f"{case.name}: a penalty")
        assert "hello" in offer.requests  # it spoke the peer API, over the circle's TLS
        assert await asyncio.to_thread(listed, home) == []
        assert node.engine is not None and honest.mesh is not None
        node.engine.book.add_manual(("127.0.0.1", honest.mesh.ports()["dorm"]))
        node.engine.wake()
        await wait_for(lambda: any(e["event"] == "bundle" for e in events), "the honest bundle")
        assert await asyncio.to_thread(listed, home) == ["news"]
    finally:
        await node.stop()
        await honest.stop()
        await hostile.stop()
        print(*events, offer.requests, sep="\n")  # shown if the test failed


@pytest.mark.parametrize("case", MEMBER_CASES, ids=lambda c: c.name.replace(" ", "-"))
def test_a_malicious_member_is_refused_and_penalised(
    case: Case, tmp_path: Path, publisher: Publisher
) -> None:
    offer = prepare(case, tmp_path, publisher)
    invite = new_circle(tmp_path / "node")
    join(tmp_path / "honest", invite)
    (stored,) = CircleStore(tmp_path / "node").load().circles
    asyncio.run(member_scenario(case, tmp_path, offer, stored.circle))
    out = tmp_path / "out"
    meshdrop_in_process("--home", tmp_path / "node", "get", "news", "-o", out, check=True)
    assert read_tree(out) == FILES


# Bad input


def test_a_garbled_circle_file_stops_the_node_instead_of_opening_it(
    tmp_path: Path, publisher: Publisher
) -> None:
    home = trusting(tmp_path / "node", publisher)
    new_circle(home)
    new_circle(home, "work")
    stored = {s.circle.name: s.path for s in CircleStore(home).load().circles}
    garbled = stored["dorm"].read_bytes()[:40]  # cut short, as by a pulled plug
    stored["dorm"].write_bytes(garbled)
    kept = stored["work"].read_bytes()
    result = run_meshdrop("--home", home, "node", "--bind", "127.0.0.1", "--port", "0",
                          "--no-discovery", "--json", timeout=60)  # fmt: skip
    assert_clean_error(result, str(stored["dorm"]), "damaged")
    assert result.code == 7, result
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert '"listening"' not in result.out and not (home / "node.json").exists()
    assert stored["dorm"].read_bytes() == garbled and stored["work"].read_bytes() == kept
