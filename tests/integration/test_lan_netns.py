"""Nodes on separate hosts, as far as the network is concerned: each node runs in a network
namespace of its own with its own address, the namespaces joined by a bridge (veth
pairs), and the nodes find each other over real multicast on those links with their
default binding (every interface). Needs root and `ip netns`; skipped, with the reason,
where they are unavailable. The addresses (10.231.x.0/24) exist only inside the
namespaces the test creates, and every namespace is deleted at the end."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from lankit import NodeProc, Nodes, wait_until
from test_lan_nodes import holding, names, sample_bundles, trusting

from conftest import Publisher, pack, run_meshdrop, write_tree


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


def _why_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = f"mdprobe{secrets.token_hex(3)}"
    made = _ip("netns", "add", probe)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    _ip("netns", "del", probe)
    return None


@dataclass
class Lan:
    """A bridge in a namespace of its own, and host namespaces plugged into it."""

    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    subnet: str = field(default_factory=lambda: f"10.231.{secrets.randbelow(250) + 1}")
    namespaces: list[str] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"md{self.tag}br"

    def run(self, *args: str) -> None:
        result = _ip(*args)
        assert result.returncode == 0, f"ip {' '.join(args)}: {result.stderr}"

    def create(self) -> None:
        self.run("netns", "add", self.bridge)
        self.namespaces.append(self.bridge)
        self.run("-n", self.bridge, "link", "add", "br0", "type", "bridge")
        self.run("-n", self.bridge, "link", "set", "br0", "up")

    def add_host(self, number: int) -> str:
        ns = f"md{self.tag}h{number}"
        self.run("netns", "add", ns)
        self.namespaces.append(ns)
        self.run("-n", ns, "link", "set", "lo", "up")
        port = f"md{self.tag}p{number}"
        self.run("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port,
                 "netns", self.bridge)  # fmt: skip
        self.run("-n", self.bridge, "link", "set", port, "master", "br0")
        self.run("-n", self.bridge, "link", "set", port, "up")
        self.run("-n", ns, "addr", "add", f"{self.address(number)}/24", "dev", "eth0")
        self.run("-n", ns, "link", "set", "eth0", "up")
        return ns

    def address(self, number: int) -> str:
        return f"{self.subnet}.{number}"

    def delete(self) -> None:
        for ns in reversed(self.namespaces):
            _ip("netns", "del", ns)
        self.namespaces.clear()


def a_lan() -> Iterator[Lan]:
    """The body of a ``lan`` fixture: a bridge in a namespace, deleted with every host
    namespace at the end; the test skipped, with the reason, where namespaces are
    unavailable (not root, no ``ip netns``: CI runs as root)."""
    reason = _why_unavailable()
    if reason is not None:
        pytest.skip(f"network namespaces unavailable: {reason}")
    network = Lan()
    try:
        network.create()
        yield network
    finally:
        network.delete()


@pytest.fixture
def lan() -> Iterator[Lan]:
    yield from a_lan()


def start_in(nodes: Nodes, lan: Lan, ns: str, home: Path) -> NodeProc:
    return nodes.start(home, bind="0.0.0.0", prefix=["ip", "netns", "exec", ns])


def test_nodes_in_separate_namespaces_discover_each_other_over_multicast_and_converge(
    lan: Lan, nodes: Nodes, tmp_path: Path, publisher: Publisher
) -> None:
    samples = sample_bundles(publisher, tmp_path / "out")
    homes = [trusting(tmp_path / f"host{i}", publisher) for i in (1, 2, 3)]
    holding(homes[0], *samples)
    started = [start_in(nodes, lan, lan.add_host(i), homes[i - 1]) for i in (1, 2, 3)]
    for i, node in enumerate(started, start=1):
        assert node.urls == [f"http://{lan.address(i)}:{node.port}"]
    for i, node in enumerate(started, start=1):
        others = {f"{lan.address(j)}:{started[j - 1].port}" for j in (1, 2, 3) if j != i}
        wait_until(
            lambda node=node, others=others: others <= node.alive_peers(),  # type: ignore[misc]
            what=f"host {i} to find the others over multicast",
        )
    wanted = names(homes[0])
    wait_until(lambda: all(names(h) == wanted for h in homes), what="convergence")


def move_host(lan: Lan, ns: str, number: int, node: NodeProc) -> str:
    """Host ``number`` moves to another address (a laptop that joined another network);
    returns it once ``node`` said it noticed."""
    moved = lan.address(100 + number)
    lan.run("-n", ns, "addr", "del", f"{lan.address(number)}/24", "dev", "eth0")
    lan.run("-n", ns, "addr", "add", f"{moved}/24", "dev", "eth0")
    node.wait_event(
        lambda e: e["event"] == "addresses" and f"http://{moved}:{node.port}" in e["urls"],
        what="the node noticing its move",
    )
    return moved


def test_a_node_whose_address_changes_is_found_again_at_the_new_one(
    lan: Lan, nodes: Nodes, tmp_path: Path, publisher: Publisher
) -> None:
    first = trusting(tmp_path / "first", publisher)
    second = trusting(tmp_path / "second", publisher)
    ns1, ns2 = lan.add_host(1), lan.add_host(2)
    node1, node2 = start_in(nodes, lan, ns1, first), start_in(nodes, lan, ns2, second)
    wait_until(lambda: f"{lan.address(1)}:{node1.port}" in node2.alive_peers(), what="discovery")
    moved = move_host(lan, ns1, 1, node1)
    bundle = pack(publisher, write_tree(tmp_path / "s", {"a": b"after the move"}),
                  tmp_path / "m.mdrop", "moved")  # fmt: skip
    holding(first, bundle)
    wait_until(lambda: "moved" in names(second), what="a bundle from the moved node")
    assert f"{moved}:{node1.port}" in node2.alive_peers()
    assert run_meshdrop("--home", second, "ls").code == 0
