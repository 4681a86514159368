"""The node runs the stick watcher: a stick with a courier folder that appears while the
node runs is imported from, then topped up with what the node has and the stick lacks."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from lankit import Nodes, wait_until

from conftest import Publisher, list_json, meshdrop_in_process, pack, run_meshdrop, write_tree
from meshdrop.transports.courier.layout import COURIER_FOLDER


def listed_names(home: Path) -> set[str]:
    return {str(b["name"]) for b in list_json(home)}


def stick_files(stick: Path) -> set[str]:
    return {p.name for p in (stick / COURIER_FOLDER).iterdir()} if stick.exists() else set()


def has_name(home: Path, name: str) -> bool:
    return name in listed_names(home)


def stick_holds(stick: Path, prefix: str) -> bool:
    return any(name.startswith(prefix) for name in stick_files(stick))


def test_node_imports_from_and_tops_up_a_stick_that_appears(
    tmp_path: Path, publisher: Publisher, nodes: Nodes
) -> None:
    news = pack(
        publisher, write_tree(tmp_path / "n", {"a.txt": b"news"}), tmp_path / "n.mdrop", "news"
    )
    guide = pack(
        publisher, write_tree(tmp_path / "g", {"a.txt": b"guide"}), tmp_path / "g.mdrop", "guide"
    )
    # Elsewhere, a node that holds "news" fills a stick.
    other = tmp_path / "other"
    # (The set-up steps run in process; the nodes under test are real processes.)
    meshdrop_in_process("--home", other, "trust", "add", "--yes", publisher.pub, check=True)
    meshdrop_in_process("--home", other, "import", "--quiet", news, check=True)
    carried = tmp_path / "carried"
    carried.mkdir()
    meshdrop_in_process("--home", other, "export", carried, "--quiet", check=True)
    # Here, a running node that holds "guide" watches a folder where sticks appear.
    home = tmp_path / "node"
    meshdrop_in_process("--home", home, "trust", "add", "--yes", publisher.pub, check=True)
    meshdrop_in_process("--home", home, "import", "--quiet", guide, check=True)
    media = tmp_path / "media"
    media.mkdir()
    nodes.start(home, "--watch-root", str(media), "--no-discovery")
    stick = media / "stick"
    carried.rename(stick)  # the stick is plugged in
    wait_until(partial(has_name, home, "news"), what="the node importing from the stick")
    wait_until(partial(stick_holds, stick, "guide-"), what="the node topping the stick up")
    assert listed_names(home) == {"news", "guide"}
    # The stick, carried on, brings both to a third node.
    third = tmp_path / "third"
    meshdrop_in_process("--home", third, "trust", "add", "--yes", publisher.pub, check=True)
    result = run_meshdrop("--home", third, "import", stick, "--json", check=True)
    outcomes = [json.loads(line) for line in result.out.splitlines()]
    assert listed_names(third) == {"news", "guide"}, outcomes


def test_node_leaves_a_drive_without_a_courier_folder_alone(
    tmp_path: Path, publisher: Publisher, nodes: Nodes
) -> None:
    home = tmp_path / "node"
    meshdrop_in_process("--home", home, "trust", "add", "--yes", publisher.pub, check=True)
    guide = pack(
        publisher, write_tree(tmp_path / "g", {"a.txt": b"guide"}), tmp_path / "g.mdrop", "guide"
    )
    meshdrop_in_process("--home", home, "import", "--quiet", guide, check=True)
    media = tmp_path / "media"
    (media / "camera-card" / "DCIM").mkdir(parents=True)
    # A marker stick with a courier folder, plugged in after the camera card: once it is
    # topped up, a stick watcher pass that saw both has happened. (Both are there when the
    # node starts, so its first pass does it, not one STICK_INTERVAL later.)
    marker = media / "marker" / COURIER_FOLDER
    marker.mkdir(parents=True)
    node = nodes.start(home, "--watch-root", str(media), "--no-discovery")
    wait_until(partial(stick_holds, marker.parent, "guide-"), what="a watcher pass")
    assert sorted(p.name for p in (media / "camera-card").iterdir()) == ["DCIM"]
    assert node.proc.poll() is None
