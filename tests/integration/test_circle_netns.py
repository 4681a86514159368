"""A quiet node that follows its network (issue 16 with issue 15's chosen network): in
real network namespaces on a bridge, a member started without --bind serves its circle
on the one private address it chose; when that address changes (a laptop that joined
another network), its circle listener and its announcement move with it, and the other
member syncs from it at the new address over TLS. Every wait is bounded."""

from __future__ import annotations

import json
from pathlib import Path

from lankit import NodeProc, Nodes, wait_until
from test_lan_netns import Lan, lan, move_host  # noqa: F401 (the fixture)
from test_lan_nodes import holding, names, trusting

from conftest import Publisher, meshdrop_in_process, pack, write_tree


def _start(nodes: Nodes, ns: str, home: Path) -> NodeProc:
    return nodes.start(home, bind=None, prefix=["ip", "netns", "exec", ns])


def test_a_quiet_node_moves_its_circle_listener_with_its_address(
    lan: Lan,  # noqa: F811 (the fixture)
    nodes: Nodes,
    tmp_path: Path,
    publisher: Publisher,
) -> None:
    first = trusting(tmp_path / "first", publisher)
    second = trusting(tmp_path / "second", publisher)
    made = meshdrop_in_process("--home", first, "circle", "new", "dorm", "--json", check=True)
    invite = json.loads(made.out)["invite"]
    meshdrop_in_process("--home", second, "circle", "join", invite, "--name", "dorm", check=True)
    ns1, ns2 = lan.add_host(1), lan.add_host(2)
    node1, node2 = _start(nodes, ns1, first), _start(nodes, ns2, second)
    (port,) = node1.wait_event(lambda e: e["event"] == "mode")["circles"].values()
    assert node1.urls == [f"http://{lan.address(1)}:{node1.port}"]
    wait_until(lambda: f"{lan.address(1)}:{port}" in node2.alive_peers(), what="the member")
    moved = move_host(lan, ns1, 1, node1)
    bundle = pack(publisher, write_tree(tmp_path / "s", {"a": b"after the move"}),
                  tmp_path / "m.mdrop", "moved")  # fmt: skip
    holding(first, bundle)
    wait_until(lambda: "moved" in names(second), what="a bundle from the moved member")
    got = node2.wait_event(lambda e: e["event"] == "bundle" and e["name"] == "moved")
    assert got["peer"] == f"{moved}:{port}"  # the same circle port, at the new address
