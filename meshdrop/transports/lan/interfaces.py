"""Which network a node serves when the owner did not say (docs/PROTOCOL.md section 1).

A phone is on two networks at once: the Wi-Fi, where its readers and peers are, and the
carrier's mobile data, where nobody should learn that it runs a node. A laptop may also
sit on a VPN or a docker bridge. Without ``--bind``, a node serves and announces on ONE
address of ONE interface, chosen here:

- the interface is up, can send multicast (mDNS needs it) and is neither loopback nor
  point-to-point (carriers' and VPNs' links are; an Ethernet or Wi-Fi link is not);
- the address is private: RFC 1918 (10/8, 172.16/12, 192.168/16) or link-local
  (169.254/16) for IPv4, a unique local address (fc00::/7) for IPv6. Carrier-grade NAT
  (100.64/10) and public addresses never qualify;
- of those, the one the kernel would send mDNS (224.0.0.251) from, if it qualifies;
  else IPv4 before IPv6, RFC 1918 before link-local, then by interface name.

``choose_address`` is the pure decision; ``read_interfaces`` and ``multicast_source`` read
the machine (Linux: interface flags through SIOCGIFFLAGS).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import ifaddr

from meshdrop.errors import UsageError
from meshdrop.transports.lan.protocol import Address

MDNS_GROUP = "224.0.0.251"
_RFC1918 = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
_LINK_LOCAL4 = ipaddress.ip_network("169.254.0.0/16")
_ULA = ipaddress.ip_network("fc00::/7")
# Linux <net/if.h>
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_POINTOPOINT = 0x10
IFF_MULTICAST = 0x1000
SIOCGIFFLAGS = 0x8913


@dataclass(frozen=True)
class Interface:
    name: str
    addresses: tuple[str, ...]
    flags: int | None  # None: unknown (not Linux); judged by its addresses alone

    @property
    def suitable(self) -> bool:
        if self.flags is None:
            return True
        wanted = IFF_UP | IFF_MULTICAST
        return self.flags & wanted == wanted and not self.flags & (IFF_LOOPBACK | IFF_POINTOPOINT)


def address_rank(text: str) -> int | None:
    """0 for RFC 1918, 1 for IPv4 link-local, 2 for an IPv6 unique local address; None
    for any other address (public, carrier-grade NAT, loopback, IPv6 link-local)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv4Address):
        if any(address in network for network in _RFC1918):
            return 0
        return 1 if address in _LINK_LOCAL4 else None
    return 2 if address in _ULA else None


def choose_address(interfaces: Sequence[Interface], multicast_from: str | None) -> str | None:
    """The one address to serve and announce on, or None if no interface qualifies."""
    candidates: list[tuple[int, str, str]] = []
    for interface in interfaces:
        if not interface.suitable:
            continue
        for address in interface.addresses:
            rank = address_rank(address)
            if rank is not None:
                candidates.append((rank, interface.name, address))
    if not candidates:
        return None
    if multicast_from is not None and any(a == multicast_from for _, _, a in candidates):
        return multicast_from
    return min(candidates)[2]


def interface_flags(name: str) -> int | None:
    """The interface's flags (SIOCGIFFLAGS), or None where they cannot be read."""
    try:
        import fcntl
    except ImportError:
        return None
    request = struct.pack("16sH14x", name.encode("utf-8", "replace")[:15], 0)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            answer = fcntl.ioctl(probe.fileno(), SIOCGIFFLAGS, request)
    except OSError:
        return None
    flags: int = struct.unpack("16sH14x", answer)[1]
    return flags


def read_interfaces() -> list[Interface]:
    found = []
    for adapter in ifaddr.get_adapters():
        addresses = []
        for ip in adapter.ips:
            text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            addresses.append(text.split("%")[0])
        found.append(Interface(adapter.name, tuple(addresses), interface_flags(adapter.name)))
    return found


def multicast_source() -> str | None:
    """The local address the kernel would send mDNS from (connect() on a UDP socket sends
    nothing), or None if there is no route for it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe, contextlib.suppress(OSError):
        probe.connect((MDNS_GROUP, 5353))
        return str(probe.getsockname()[0])
    return None


def chosen_address() -> str | None:
    """This machine's address for the node now (see the module docstring)."""
    return choose_address(read_interfaces(), multicast_source())


def parse_peer(text: str) -> Address:
    """HOST:PORT or [IPv6]:PORT, HOST an IP address (never a name: no DNS lookups)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError as exc:
        raise UsageError(
            f"--peer {text!r} is not an IP address and port (like 192.168.1.20:8470)"
        ) from exc
    if not sep or not 0 < number < 65536:
        raise UsageError(f"--peer {text!r} has no valid port")
    return host, number
