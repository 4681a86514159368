"""A node on two networks serves and announces on one (issue 15, point 6; PROTOCOL §1).

A host namespace plays a phone: ``eth0`` on a bridge with another host (the Wi-Fi, a
private 10.231.x address) and ``mob0`` to a "carrier" namespace (mobile data: a
carrier-grade NAT address, 100.64.x, and the default route, as on a phone). Started
without ``--bind``, the node must listen and announce on the Wi-Fi address only: a
zeroconf browser on the Wi-Fi sees that one address in its A records, a browser on the
carrier's side sees no node at all, and a connection to the mobile address is refused.
Needs root and ``ip netns``, like test_lan_netns.py (whose Lan it uses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lankit import Nodes
from test_lan_netns import Lan, lan  # noqa: F401 (the fixture)
from test_lan_nodes import trusting

from conftest import Publisher

CARRIER = "100.64.7"  # carrier-grade NAT (RFC 6598): never a node's network

# Browse for meshdrop services on the interface with address argv[1] for argv[2] seconds;
# print every instance resolved with the addresses of its A records, as JSON.
BROWSE = """
import asyncio, json, sys
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf
SERVICE = "_meshdrop._tcp.local."
async def main():
    zc = AsyncZeroconf(interfaces=[sys.argv[1]])
    names = set()
    browser = AsyncServiceBrowser(zc.zeroconf, SERVICE,
                                  handlers=[lambda **kw: names.add(kw["name"])])
    await asyncio.sleep(float(sys.argv[2]))
    found = {}
    for name in sorted(names):
        info = AsyncServiceInfo(SERVICE, name)
        if await info.async_request(zc.zeroconf, 3000):
            found[name] = sorted(info.parsed_addresses())
    await browser.async_cancel()
    await zc.async_close()
    print(json.dumps(found))
asyncio.run(main())
"""


def add_mobile_data(network: Lan, phone: str) -> str:
    """A carrier namespace linked to ``phone`` by ``mob0`` (100.64.7.2 on the phone's
    side, which gets its default route); returns the carrier namespace."""
    carrier = f"md{network.tag}car"
    network.run("netns", "add", carrier)
    network.namespaces.append(carrier)
    network.run("-n", carrier, "link", "set", "lo", "up")
    network.run("link", "add", "mob0", "netns", phone, "type", "veth", "peer", "name", "mob1",
            "netns", carrier)  # fmt: skip
    network.run("-n", phone, "addr", "add", f"{CARRIER}.2/24", "dev", "mob0")
    network.run("-n", carrier, "addr", "add", f"{CARRIER}.1/24", "dev", "mob1")
    network.run("-n", phone, "link", "set", "mob0", "up")
    network.run("-n", carrier, "link", "set", "mob1", "up")
    network.run("-n", phone, "route", "add", "default", "via", f"{CARRIER}.1")
    return carrier


def browse(namespace: str, address: str, seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", BROWSE, address, str(seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(browser: subprocess.Popen[str]) -> dict[str, list[str]]:
    out, err = browser.communicate(timeout=60)
    assert browser.returncode == 0, err
    found: dict[str, list[str]] = json.loads(out)
    return found


def refused(namespace: str, host: str, port: int) -> bool:
    probe = (
        "import socket, sys\n"
        "try:\n"
        f"    socket.create_connection(({host!r}, {port}), timeout=5).close()\n"
        "except ConnectionRefusedError:\n"
        "    sys.exit(3)\n"
    )
    result = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode in (0, 3), result.stderr
    return result.returncode == 3


def test_a_node_on_wifi_and_mobile_data_announces_and_serves_on_the_wifi_only(
    lan: Lan,  # noqa: F811 (the fixture imported above)
    nodes: Nodes,
    tmp_path: Path,
    publisher: Publisher,
) -> None:
    phone, neighbour = lan.add_host(1), lan.add_host(2)
    carrier = add_mobile_data(lan, phone)
    wifi = lan.address(1)
    node = nodes.start(
        trusting(tmp_path / "phone", publisher), "--no-watch", bind=None,
        prefix=["ip", "netns", "exec", phone],
    )  # fmt: skip
    assert node.urls == [f"http://{wifi}:{node.port}"]
    on_wifi = browse(neighbour, lan.address(2), 6)
    on_carrier = browse(carrier, f"{CARRIER}.1", 6)
    announced = finished(on_wifi)
    assert list(announced.values()) == [[wifi]], announced
    assert finished(on_carrier) == {}
    assert refused(carrier, f"{CARRIER}.2", node.port)
    assert refused(phone, f"{CARRIER}.2", node.port)  # not even from the phone itself
    assert not refused(neighbour, wifi, node.port)
    # Not "every interface" in any form: nothing listens on the wildcard address.
    listening = subprocess.run(
        ["ip", "netns", "exec", phone, "ss", "-Hltn", f"sport = :{node.port}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    assert f"{wifi}:{node.port}" in listening and f"0.0.0.0:{node.port}" not in listening
