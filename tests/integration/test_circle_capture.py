"""What a watcher on the Wi-Fi sees of a circle (issue 16; docs/THREATS.md, "What a node
reveals on a LAN"): real `meshdrop node` processes, each in a network namespace of its
own on a bridge, members of one circle, with real python-zeroconf and real TLS. A
tcpdump capture of the bridge over two runs of each node is read byte by byte: nothing
names the app, the publisher, the content or the people, and nothing announced repeats
from one run to the next. avahi (an mDNS implementation that is not ours) browsing from a
third namespace sees only generic web services. Needs root and `ip netns` (skipped, with
the reason, without them); tcpdump, avahi-daemon and dbus (.ci/run installs them)."""

from __future__ import annotations

import getpass
import json
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from lankit import NodeProc, Nodes, wait_until
from netnskit import (
    DER_CERTIFICATE,
    TLS_APPLICATION_DATA,
    TLS_HANDSHAKE,
    Announced,
    Avahi,
    Packet,
    announced,
    capturing,
    clear_tls,
    connected,
    hello_extensions,
    host_ns,
    mdns_payloads,
    server_ports,
    tcp_streams,
    tls_records,
)
from test_lan_netns import Lan, a_lan
from test_lan_nodes import holding, names, trusting

from conftest import Publisher, make_publisher, manifest_hash, meshdrop_in_process, pack, write_tree
from meshdrop.core.bundle import HEADER_SIZE, parse_envelope, parse_header
from meshdrop.core.circles import CircleSecret, window
from meshdrop.core.keys import key_id
from meshdrop.core.manifest import parse_manifest
from meshdrop.core.trust import pin_publisher_file
from meshdrop.store.circles import CircleStore
from meshdrop.transports.lan.circlecerts import circle_ca

pytestmark = pytest.mark.xdist_group("mdns")


@pytest.fixture(name="lan")
def lan_fixture() -> Iterator[Lan]:
    yield from a_lan()


PUBLISHER_NAME = "Dormitory Voice Weekly"
BUNDLES = {
    "passport-rights": (
        "여권 돌려받기 — Getting your passport back",
        "Your employer may not keep your passport: here is who to call.",
        "<p>여권을 빼앗겼다면 노동청에 신고하세요. Report a confiscated passport.</p>",
    ),
    "unpaid-wages": (
        "체불 임금 — Unpaid wages, step by step",
        "How to claim the wages an agency withheld.",
        "<p>임금 체불 진정서 작성법. Filing a complaint about withheld wages.</p>",
    ),
}
GENERIC_TYPES = {"_http._tcp.local.", "_services._dns-sd._udp.local."}
LABEL = re.compile(r"[0-9a-f]{12}")
TXT = re.compile(rb"\x26path=/[0-9a-f]{32}")


def new_circle(home: Path, name: str = "dorm") -> str:
    made = meshdrop_in_process("--home", home, "circle", "new", name, "--json", check=True)
    return str(json.loads(made.out)["invite"])


def join(home: Path, invite: str, name: str = "dorm") -> None:
    meshdrop_in_process("--home", home, "circle", "join", invite, "--name", name, check=True)


def secret_of(home: Path) -> CircleSecret:
    (stored,) = CircleStore(home).load().circles
    return stored.circle.current.secret


def circle_port(node: NodeProc) -> int:
    mode = node.wait_event(lambda e: e["event"] == "mode", what="the mode line")
    assert mode["mode"] == "quiet", mode
    (port,) = mode["circles"].values()
    return int(port)


def start_in(nodes: Nodes, lan: Lan, number: int, home: Path, *extra: str) -> NodeProc:
    """A node in host namespace ``number``, bound to its address there."""
    prefix = ["ip", "netns", "exec", host_ns(lan, number)]
    return nodes.start(home, *extra, bind=lan.address(number), prefix=prefix)


def make_bundles(publisher: Publisher, tmp: Path) -> list[Path]:
    made = []
    for name, (title, description, text) in BUNDLES.items():
        src = write_tree(tmp / f"src-{name}", {"index.html": text.encode()})
        out = tmp / f"{name}.mdrop"
        made.append(pack(publisher, src, out, name, "--title", title, "--description", description))
    return made


def identifying(publisher: Publisher, bundles: list[Path], secret: CircleSecret,
                invite: str, homes: list[Path]) -> dict[str, bytes]:  # fmt: skip
    """Every byte string that would tell a watcher what the app, the publisher, the
    content or the circle is: what a seized stick, a publisher.pub or an invite holds."""
    state, _ = pin_publisher_file(publisher.pub.read_bytes(), "publisher.pub")
    record = state.current
    found: dict[str, bytes] = {
        "the app's name": b"meshdrop",
        "the bundle suffix": b"mdrop",
        "the publisher's name": PUBLISHER_NAME.encode(),
        "the fingerprint": record.fingerprint.encode(),
        "the fingerprint ungrouped": record.fingerprint.replace("-", "").encode(),
        "the publisher id": record.publisher,
        "the publisher id in hex": record.publisher.hex().encode(),
        "the word 여권": "여권".encode(),
        "the invite": invite.encode(),
        "the invite ungrouped": invite.replace("-", "").encode(),
        "the circle secret": secret.raw,
        "the circle secret in hex": secret.raw.hex().encode(),
        "the circle id": secret.id.encode(),
    }
    for key in (*record.roots, *(s.key for s in record.signers)):
        found[f"key {key_id(key)}"] = key
        found[f"key id {key_id(key)}"] = key_id(key).encode()
    for bundle in bundles:
        digest = manifest_hash(bundle)
        found[f"{bundle.name}'s manifest hash"] = digest
        found[f"{bundle.name}'s manifest hash in hex"] = digest.hex().encode()
        data = bundle.read_bytes()
        length = parse_header(data[:HEADER_SIZE], bundle.name)
        envelope = parse_envelope(data[HEADER_SIZE : HEADER_SIZE + length], bundle.name)
        for ref in parse_manifest(envelope.manifest_bytes).chunk_refs():
            found[f"chunk {ref.digest.hex()[:12]}"] = ref.digest
            found[f"chunk {ref.digest.hex()[:12]} in hex"] = ref.digest.hex().encode()
        found[f"{bundle.name}'s envelope start"] = envelope.manifest_bytes[:48]
    for name, (title, description, text) in BUNDLES.items():
        found[f"the name {name}"] = name.encode()
        found[f"the title of {name}"] = title.encode()
        found[f"the description of {name}"] = description.encode()
        found[f"the text of {name}"] = text.encode()
    for home in homes:
        found[f"the folder {home.name}"] = str(home).encode()
    return found


@dataclass
class Run:
    """One run of both nodes: what the capture holds and what the nodes said."""

    packets: list[Packet]
    circle_ports: set[int]
    reader_ports: set[int]

    @property
    def announced(self) -> Announced:
        return announced(self.packets)


def one_run(lan: Lan, nodes: Nodes, homes: list[Path], wanted: str, pcap: Path) -> Run:
    """Both nodes started and stopped again under a capture, after ``wanted`` arrived at
    the second."""
    with capturing(lan.bridge, pcap) as dump:
        started = [start_in(nodes, lan, i, home) for i, home in enumerate(homes, start=1)]
        wait_until(lambda: wanted in names(homes[1]), what=f"{wanted} at the second member")
        ports = {circle_port(node) for node in started}
        readers = {node.port for node in started}
        for node in started:
            assert node.stop() == 0  # their goodbyes are in the capture too
        return Run(dump.stop(), ports, readers)


def test_a_capture_of_two_runs_names_nothing_and_links_nothing(
    lan: Lan,
    nodes: Nodes,
    tmp_path: Path,
) -> None:
    publisher = make_publisher(tmp_path / "publisher", PUBLISHER_NAME)
    first, second = make_bundles(publisher, tmp_path)
    homes = [trusting(tmp_path / "member-a", publisher), trusting(tmp_path / "member-b", publisher)]
    holding(homes[0], first)
    invite = new_circle(homes[0])
    join(homes[1], invite)
    lan.add_host(1), lan.add_host(2)
    runs = [one_run(lan, nodes, homes, "passport-rights", tmp_path / "run1.pcap")]
    holding(homes[0], second)  # something new for the second run to carry
    runs.append(one_run(lan, nodes, homes, "unpaid-wages", tmp_path / "run2.pcap"))
    secret = secret_of(homes[0])
    raw = b"".join(p.read_bytes() for p in (tmp_path / "run1.pcap", tmp_path / "run2.pcap"))

    # The bytes: nothing identifying anywhere, in clear or not.
    found = identifying(publisher, [first, second], secret, invite, homes)
    lowered = raw.lower()
    for what, needle in found.items():
        assert needle not in raw and needle.lower() not in lowered, f"{what} is in the capture"
    assert not DER_CERTIFICATE.search(raw), "a certificate crossed the air in clear"
    for run in runs:
        clear = _clear_bytes(run)
        # Short words could match encrypted bytes by chance: they are looked for in what
        # a watcher can read (mDNS, TLS record headers and hellos).
        for word in (socket.gethostname(), getpass.getuser(), "dorm"):
            assert word.encode() not in clear, f"{word!r} is readable in the capture"
        # The whole bundle crossed (so the capture holds every byte), encrypted.
        assert _only_tls_between_circle_ports(run) > max(
            first.stat().st_size, second.stat().st_size
        )
        _only_generic_announcements(run)
    for epoch in window(time.time()):  # the CA certificates are never sent
        assert circle_ca(secret, epoch).certificate.public_bytes(Encoding.DER) not in raw

    # Two runs: nothing announced or listened on repeats.
    one, other = runs[0].announced, runs[1].announced
    for what in ("instances", "hosts", "ports", "texts"):
        repeated = getattr(one, what) & getattr(other, what)
        assert not repeated, f"{what} repeated across the two runs: {repeated}"
    assert not runs[0].circle_ports & runs[1].circle_ports
    served = [{port for _, port in server_ports(run.packets)} for run in runs]
    assert not served[0] & served[1]


def _clear_bytes(run: Run) -> bytes:
    streams = tcp_streams(run.packets)
    return b"".join(mdns_payloads(run.packets)) + b"".join(map(clear_tls, streams.values()))


def _only_tls_between_circle_ports(run: Run) -> int:
    """Every TCP connection of the run went to a circle port and carried TLS 1.3 only:
    no server name, and no handshake message in clear after the two hellos (the
    certificates travel encrypted)."""
    assert {port for _, port in server_ports(run.packets)} <= run.circle_ports
    streams = tcp_streams(run.packets)
    assert streams, "no TCP traffic captured"
    encrypted = 0
    for (_, sport, _, dport), stream in streams.items():
        records = tls_records(stream)
        encrypted += sum(len(r.body) for r in records if r.type == TLS_APPLICATION_DATA)
        handshakes = [r for r in records if r.type == TLS_HANDSHAKE]
        assert len(handshakes) <= 1, "a handshake message in clear besides the hello"
        if not handshakes:
            continue
        extensions = hello_extensions(handshakes[0])
        if dport in run.circle_ports:  # the client's hello
            assert 0 not in extensions, "a server name in a ClientHello"
        else:  # the server's: TLS 1.3 chosen
            assert sport in run.circle_ports
            assert extensions[43] == b"\x03\x04", extensions
    return encrypted


def _only_generic_announcements(run: Run) -> None:
    """mDNS carried only `_http._tcp` services, each named by 12 random hex digits, on a
    circle port, with one TXT value: a token."""
    seen = run.announced
    assert seen.instances, "no announcement captured"
    assert seen.service_types <= GENERIC_TYPES, seen.service_types
    for instance in seen.instances:
        label, _, rest = instance.partition(".")
        assert LABEL.fullmatch(label) and rest == "_http._tcp.local.", instance
    for host in seen.hosts:
        label, _, rest = host.partition(".")
        assert LABEL.fullmatch(label) and rest == "local.", host
    assert seen.ports == run.circle_ports, (seen.ports, run.circle_ports)
    assert not seen.ports & run.reader_ports  # the reader's port is never announced
    for text in seen.texts:
        assert TXT.fullmatch(text), text


def test_avahi_sees_only_generic_web_services(
    lan: Lan,
    nodes: Nodes,
    tmp_path: Path,
    publisher: Publisher,
) -> None:
    homes = [trusting(tmp_path / "member-a", publisher), trusting(tmp_path / "member-b", publisher)]
    join(homes[1], new_circle(homes[0]))
    for number in (1, 2, 3):
        lan.add_host(number)
    avahi = Avahi(host_ns(lan, 3), tmp_path / "avahi")
    try:
        avahi.start()
        started = [start_in(nodes, lan, i, home) for i, home in enumerate(homes, start=1)]
        ports = {str(circle_port(node)) for node in started}

        def resolved() -> list[list[str]]:
            lines = avahi.browse()
            return lines if {line[8] for line in lines if line[0] == "="} >= ports else []

        lines = wait_until(resolved, what="avahi to resolve both members")
    finally:
        avahi.stop()
    listing = "\n".join(";".join(line) for line in lines)
    assert not re.search("meshdrop|mdrop", listing, re.IGNORECASE), listing
    for line in lines:
        assert line[0] in "+=" and line[4] == "Web Site", line  # avahi's name for _http._tcp
        assert LABEL.fullmatch(line[3]), line
        if line[0] == "=":
            host, address, port, txt = line[6:10]
            assert LABEL.fullmatch(host.removesuffix(".local")), line
            assert port in ports and address.startswith(lan.subnet + "."), line
            assert re.fullmatch(r'"path=/[0-9a-f]{32}"', txt), line
    assert {line[8] for line in lines if line[0] == "="} == ports


def http_get(ns: str, host: str, port: int, path: str) -> bytes:
    """A phone's browser, in namespace ``ns``: one plain GET, the whole answer."""
    with connected(ns, host, port) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_what_a_watcher_sees_of_an_open_node_and_of_the_reader(
    lan: Lan, nodes: Nodes, tmp_path: Path
) -> None:
    """The other side of THREATS.md, asserted so that the page stays true: an open node
    names the app in its announcement, and the reader (which phones reach over plain
    HTTP, circle or not) carries titles and text in clear; the quiet node's reader port
    is not announced."""
    publisher = make_publisher(tmp_path / "publisher", PUBLISHER_NAME)
    first, _ = make_bundles(publisher, tmp_path)
    quiet = holding(trusting(tmp_path / "quiet", publisher), first)
    new_circle(quiet)
    open_home = holding(trusting(tmp_path / "open", publisher), first)
    for number in (1, 2, 3):
        lan.add_host(number)
    with capturing(lan.bridge, tmp_path / "open.pcap") as dump:
        quiet_node = start_in(nodes, lan, 1, quiet)
        circle_port(quiet_node)
        open_node = start_in(nodes, lan, 2, open_home)
        assert open_node.wait_event(lambda e: e["event"] == "mode")["mode"] == "open"
        wait_until(lambda: "_meshdrop._tcp.local." in announced(dump.read()).service_types,
                   what="the open node's announcement")  # fmt: skip
        title = BUNDLES["passport-rights"][0].encode()

        def home_page() -> bytes | None:
            page = http_get(host_ns(lan, 3), lan.address(1), quiet_node.port, "/")
            assert page.startswith(b"HTTP/1.1 200"), page[:200]
            return page if title in page else None  # the reader may still be indexing

        wait_until(home_page, what="the reader's home page to list the bundle")
        packets = dump.stop()
    streams = tcp_streams(packets)
    assert any(title in stream for stream in streams.values())  # the page, in clear
    seen = announced(packets)
    assert "_meshdrop._tcp.local." in seen.service_types  # the open node names the app
    assert quiet_node.port not in seen.ports
