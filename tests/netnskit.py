"""What a watcher on the Wi-Fi has, for the circle threat tests in network namespaces
(test_circle_capture.py, test_circle_hostile.py): a tcpdump capture of the bridge and a
small reader of what it holds (pcap, Ethernet, IPv4, UDP and TCP, mDNS through
python-zeroconf's own parser, TLS records); sockets opened inside a namespace from the
test's own process; and avahi (an mDNS implementation that is not ours) browsing from a
namespace, on a private D-Bus bus of its own. Every wait is bounded."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from test_lan_netns import Lan
from zeroconf import DNSIncoming, DNSPointer, DNSRecord, DNSService, DNSText

WAIT = 30.0
CLONE_NEWNET = 0x40000000
ETH_IPV4 = 0x0800
MDNS_PORT = 5353
TLS_RECORD_TYPES = {20, 21, 22, 23}  # change_cipher_spec, alert, handshake, application_data
TLS_APPLICATION_DATA = 23
TLS_HANDSHAKE = 22
# A DER X.509 certificate: SEQUENCE { SEQUENCE (tbsCertificate) { [0] { INTEGER 2 } ...
DER_CERTIFICATE = re.compile(
    rb"\x30(?:[\x00-\x7f]|\x81.|\x82..)\x30(?:[\x00-\x7f]|\x81.|\x82..)\xa0\x03\x02\x01\x02",
    re.DOTALL,
)


def host_ns(lan: Lan, number: int) -> str:
    """The name of host namespace ``number`` of ``lan`` (Lan.add_host's naming)."""
    return f"md{lan.tag}h{number}"


# Sockets inside a namespace


T = TypeVar("T")


def in_namespace(ns: str, make: Callable[[], T], timeout: float = WAIT) -> T:
    """``make()`` run on a thread that entered network namespace ``ns`` (a namespace is
    per thread in Linux): the sockets it opens stay in ``ns`` wherever they are used, and
    the processes it starts run in ``ns``. ``make`` must end within ``timeout`` seconds."""
    result: list[T] = []
    failure: list[BaseException] = []

    def enter_and_make() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            descriptor = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if libc.setns(descriptor, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {ns}")
            finally:
                os.close(descriptor)
            result.append(make())
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=enter_and_make)
    thread.start()
    thread.join(timeout)
    if failure:
        raise failure[0]
    assert result, f"nothing done in namespace {ns} within {timeout} s"
    return result[0]


def connected(ns: str, host: str, port: int) -> socket.socket:
    """A TCP connection from namespace ``ns`` to ``host``:``port``."""
    return in_namespace(ns, lambda: socket.create_connection((host, port), timeout=10))


# A capture of the bridge


@dataclass
class Tcpdump:
    """tcpdump on the bridge of a namespace LAN, writing every frame whole to ``path``."""

    bridge_ns: str
    path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = ["ip", "netns", "exec", self.bridge_ns, "tcpdump", "-i", "br0", "-n", "-U"]
        # Immediate mode: each packet written as it comes (by default the kernel hands
        # them over in blocks, and the block not yet handed over is lost at the stop).
        argv += ["--immediate-mode", "-s", "0", "-Z", "root", "-w", str(self.path)]
        self.proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()  # "listening on br0, ...": capturing from now
        assert b"listening on" in line, line

    def read(self) -> list[Packet]:
        """What the capture holds so far."""
        return read_pcap(self.path)

    def stop(self) -> list[Packet]:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(WAIT)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return read_pcap(self.path)


@contextmanager
def capturing(bridge_ns: str, path: Path) -> Iterator[Tcpdump]:
    dump = Tcpdump(bridge_ns, path)
    dump.start()
    try:
        yield dump
    finally:
        if dump.proc is not None and dump.proc.poll() is None:
            dump.stop()


@dataclass(frozen=True)
class Packet:
    """An IPv4 packet of a capture, as much as the tests need."""

    protocol: str  # "udp", "tcp" or "other"
    src: str
    dst: str
    sport: int = 0
    dport: int = 0
    payload: bytes = b""
    seq: int = 0
    syn: bool = False
    ack: bool = False


def read_pcap(path: Path) -> list[Packet]:
    """Every IPv4 packet of a classic pcap file of Ethernet frames (what tcpdump -w
    writes); frames of other kinds (ARP, IPv6 neighbour discovery) are left out."""
    data = path.read_bytes()
    if len(data) < 24:
        return []  # tcpdump has not written its header yet
    magic = data[:4]
    order = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">"}.get(magic)
    order = order or {b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}[magic]  # ns times
    (linktype,) = struct.unpack(order + "I", data[20:24])
    assert linktype == 1, f"not Ethernet: link type {linktype}"
    packets = []
    offset = 24
    while offset + 16 <= len(data):
        _, _, captured, _ = struct.unpack(order + "IIII", data[offset : offset + 16])
        if offset + 16 + captured > len(data):
            break  # a frame tcpdump is still writing
        frame = data[offset + 16 : offset + 16 + captured]
        offset += 16 + captured
        packet = _parse_frame(frame)
        if packet is not None:
            packets.append(packet)
    return packets


def _parse_frame(frame: bytes) -> Packet | None:
    if len(frame) < 34 or struct.unpack("!H", frame[12:14])[0] != ETH_IPV4:
        return None
    ip = frame[14:]
    header = (ip[0] & 0x0F) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    proto = ip[9]
    src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
    body = ip[header:total]
    if proto == 17:
        sport, dport = struct.unpack("!HH", body[:4])
        return Packet("udp", src, dst, sport, dport, body[8:])
    if proto == 6:
        sport, dport, seq = struct.unpack("!HHI", body[:8])
        flags = body[13]
        offset = (body[12] >> 4) * 4
        return Packet("tcp", src, dst, sport, dport, body[offset:], seq, bool(flags & 2),
                      bool(flags & 16))  # fmt: skip
    return Packet("other", src, dst, payload=body)


# What is in it


Flow = tuple[str, int, str, int]  # source address and port, destination address and port


def tcp_streams(packets: list[Packet]) -> dict[Flow, bytes]:
    """Each TCP direction's bytes in order (retransmitted segments counted once)."""
    segments: dict[Flow, dict[int, bytes]] = {}
    starts: dict[Flow, int] = {}
    for p in packets:
        if p.protocol != "tcp":
            continue
        flow = (p.src, p.sport, p.dst, p.dport)
        if p.syn:
            starts[flow] = (p.seq + 1) % 2**32
        if p.payload:
            segments.setdefault(flow, {})[p.seq] = p.payload
    streams = {}
    for flow, parts in segments.items():
        start = starts.get(flow, min(parts))
        ordered = sorted(parts.items(), key=lambda item: (item[0] - start) % 2**32)
        data = bytearray()
        for seq, payload in ordered:
            skip = len(data) - (seq - start) % 2**32
            data += payload[skip:] if skip >= 0 else payload
        streams[flow] = bytes(data)
    return streams


def server_ports(packets: list[Packet]) -> set[tuple[str, int]]:
    """The address and port every TCP connection of the capture was opened to."""
    return {(p.dst, p.dport) for p in packets if p.protocol == "tcp" and p.syn and not p.ack}


@dataclass(frozen=True)
class TlsRecord:
    type: int
    body: bytes


def tls_records(stream: bytes) -> list[TlsRecord]:
    """A TCP stream read as TLS records; AssertionError if it is anything else (a byte
    of plain HTTP, a truncated record that is not the capture's last)."""
    records = []
    offset = 0
    while offset < len(stream):
        kind, major, _minor, length = struct.unpack("!BBBH", stream[offset : offset + 5])
        assert kind in TLS_RECORD_TYPES and major == 3, f"not TLS at {offset}: {stream[:40]!r}"
        assert offset + 5 + length <= len(stream), "a TLS record cut short"
        records.append(TlsRecord(kind, stream[offset + 5 : offset + 5 + length]))
        offset += 5 + length
    return records


def clear_tls(stream: bytes) -> bytes:
    """What a watcher can read of a TLS 1.3 stream: record headers and every record but
    the encrypted ones (application_data, under which TLS 1.3 hides all but the hellos)."""
    return b"".join(
        bytes([r.type]) + r.body for r in tls_records(stream) if r.type != TLS_APPLICATION_DATA
    )


def hello_extensions(record: TlsRecord) -> dict[int, bytes]:
    """The extensions of a ClientHello (handshake type 1) or ServerHello (2) record."""
    body = record.body
    assert record.type == TLS_HANDSHAKE and body[0] in (1, 2), body[:8]
    at = 4 + 2 + 32  # handshake header, legacy_version, random
    at += 1 + body[at]  # legacy_session_id
    if body[0] == 1:
        at += 2 + struct.unpack("!H", body[at : at + 2])[0]  # cipher_suites
        at += 1 + body[at]  # legacy_compression_methods
    else:
        at += 2 + 1  # cipher_suite, legacy_compression_method
    end = at + 2 + struct.unpack("!H", body[at : at + 2])[0]
    at += 2
    found = {}
    while at < end:
        kind, length = struct.unpack("!HH", body[at : at + 4])
        found[kind] = body[at + 4 : at + 4 + length]
        at += 4 + length
    return found


def mdns_payloads(packets: list[Packet]) -> list[bytes]:
    return [p.payload for p in packets if p.protocol == "udp" and MDNS_PORT in (p.sport, p.dport)]


def mdns_records(packets: list[Packet]) -> list[DNSRecord]:
    """Every record answered in the capture's mDNS packets (zeroconf's parser)."""
    found: list[DNSRecord] = []
    for payload in mdns_payloads(packets):
        incoming = DNSIncoming(payload)
        assert incoming.valid, payload
        found.extend(incoming.answers())
    return found


@dataclass
class Announced:
    """What the mDNS of a capture announced: names, ports, TXT values."""

    service_types: set[str] = field(default_factory=set)
    instances: set[str] = field(default_factory=set)
    hosts: set[str] = field(default_factory=set)
    ports: set[int] = field(default_factory=set)
    texts: set[bytes] = field(default_factory=set)


def announced(packets: list[Packet]) -> Announced:
    seen = Announced()
    for record in mdns_records(packets):
        if isinstance(record, DNSPointer):
            seen.service_types.add(record.name)
            if not record.alias.startswith("_"):
                seen.instances.add(record.alias)
        elif isinstance(record, DNSService):
            seen.instances.add(record.name)
            seen.hosts.add(record.server)
            seen.ports.add(record.port)
        elif isinstance(record, DNSText):
            seen.instances.add(record.name)
            seen.texts.add(record.text)
    return seen


# avahi, on a bus of its own

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""

# Only the namespace's interface, IPv4 as the nodes, and nothing published of its own
# (avahi would announce the machine's host name).
AVAHI_CONFIG = """[server]
use-ipv4=yes
use-ipv6=no
allow-interfaces=eth0
enable-dbus=yes
[wide-area]
enable-wide-area=no
[publish]
disable-publishing=yes
"""


class Avahi:
    """avahi-daemon in namespace ``ns``, on a private D-Bus system bus: the machine's own
    bus (if any) and its /run/avahi-daemon are left alone (the daemon gets a private
    /run, in a mount namespace of its own)."""

    def __init__(self, ns: str, folder: Path) -> None:
        self.ns = ns
        self.folder = folder
        self.socket = folder / "bus"
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={self.socket}"}

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        bus_config = self.folder / "bus.conf"
        bus_config.write_text(BUS_CONFIG.format(socket=self.socket))
        daemon_config = self.folder / "avahi-daemon.conf"
        daemon_config.write_text(AVAHI_CONFIG)
        self._spawn(["dbus-daemon", "--config-file", str(bus_config), "--nofork"])
        self._wait(lambda: self.socket.exists(), "the private D-Bus socket")
        daemon = "avahi-daemon --no-drop-root --no-chroot --no-rlimits --no-proc-title -f"
        script = f"mount -t tmpfs tmpfs /run && exec {daemon} {daemon_config}"
        self._spawn(["ip", "netns", "exec", self.ns, "unshare", "-m", "sh", "-c", script])
        self._wait(self._running, "avahi-daemon on the private bus")

    def _spawn(self, argv: list[str]) -> None:
        log = (self.folder / f"{Path(argv[0]).name}-{len(self.procs)}.log").open("wb")
        with log:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env
            )
        self.procs.append(proc)

    def _running(self) -> bool:
        for proc in self.procs:
            assert proc.poll() is None, f"{proc.args!r} ended: {self.logs()}"
        probe = subprocess.run(
            ["avahi-browse", "-a", "-t", "-p"], capture_output=True, env=self.env, timeout=WAIT
        )
        return probe.returncode == 0

    def _wait(self, check: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not check():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.logs()}"
            time.sleep(0.1)

    def browse(self) -> list[list[str]]:
        """``avahi-browse -a -r -t -p`` from the namespace: every service avahi knows of,
        resolved, one list of fields per line."""
        argv = ["ip", "netns", "exec", self.ns, "avahi-browse", "-a", "-r", "-t", "-p"]
        result = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=WAIT)
        assert result.returncode == 0, result.stderr
        return [line.split(";") for line in result.stdout.splitlines() if line]

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.folder.glob("*.log"))

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(WAIT)
        self.procs.clear()
