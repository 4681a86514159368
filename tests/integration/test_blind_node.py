"""The node's stick watcher and blind sticks: a running node in a circle imports a blind
stick of its circle that appears, and tops it up blind (nothing readable added)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from courierkit import BUNDLES, listed, setup_fixture  # noqa: F401 (the `setup` fixture)
from lankit import Nodes, wait_until
from test_blind_courier import Blind, blind_fixture  # noqa: F401 (the `blind` fixture)

from conftest import meshdrop_in_process, pack, write_tree
from meshdrop.core.blind import looks_blind


def holds(home: Path, name: str) -> bool:
    return name in listed(home)


def carries(blind: Blind, stick: Path, prefix: str) -> bool:
    return any(e.name.startswith(prefix) for e in blind.scan(stick).entries)


def test_a_running_node_imports_a_blind_stick_and_tops_it_up_blind(
    blind: Blind, tmp_path: Path, nodes: Nodes
) -> None:
    home = blind.fresh_member(tmp_path / "node")
    src = write_tree(tmp_path / "g", {"a.txt": b"guide"})
    guide = pack(blind.base.publisher, src, tmp_path / "g.mdrop", "guide", "--version", "1")
    meshdrop_in_process("--home", home, "import", "-q", guide, check=True)
    media = tmp_path / "media"
    media.mkdir()
    nodes.start(home, "--watch-root", str(media), "--no-discovery")
    stick = blind.fresh_stick(tmp_path / "carried").rename(media / "stick")  # plugged in
    wait_until(partial(holds, home, "radio"), what="the node importing from the blind stick")
    wait_until(partial(carries, blind, stick, "guide-"), what="the node topping it up")
    assert set(listed(home)) == set(BUNDLES) | {"guide"}
    names = [p.name for p in (stick / "backup").iterdir()]
    assert all(looks_blind(n) for n in names if n != ".nomedia"), names
    assert sorted(p.name for p in stick.iterdir()) == ["backup"]
