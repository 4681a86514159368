"""Issue 3's end-to-end case: a revocation made on the publisher's laptop travels by stick
to one node and by Wi-Fi from it to the others, and the withdrawn content disappears from
every node's reader. Real parts: the installed command, real `meshdrop node` processes on
loopback with real zeroconf, the courier folder layout, HTTP to each node's reader."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path

from lankit import NodeProc, Nodes, wait_until

from conftest import make_publisher, meshdrop_in_process, pack, run_meshdrop, write_tree
from meshdrop.reader import readerids
from meshdrop.transports.courier.layout import COURIER_FOLDER, publisher_file_name

# The revocation and the stick import run as real processes, as do the nodes; the set-up
# steps and the looks (publisher show, trust show, ls) run the same commands in process.


def show(source: Path) -> dict[str, object]:
    out = meshdrop_in_process("publisher", "show", source, "--json", check=True).out
    info: dict[str, object] = json.loads(out)
    return info


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def record_version(home: Path, fingerprint: str) -> int:
    shown = meshdrop_in_process("--home", home, "trust", "show", fingerprint, "--json", check=True)
    out = shown.out
    version: int = json.loads(out)["version"]
    return version


def meets_others(node: NodeProc) -> bool:
    return len(node.alive_peers()) >= 2


def has_version(home: Path, fingerprint: str, version: int) -> bool:
    return record_version(home, fingerprint) == version


def answers(url: str, status: int) -> bool:
    return status_of(url) == status


def test_compromise_crosses_by_stick_then_wifi_and_leaves_every_reader(
    tmp_path: Path, nodes: Nodes
) -> None:
    # The publisher's laptop: two signing keys; "notice" is signed by the second.
    publisher = make_publisher(tmp_path / "laptop", "Workers' News")
    meshdrop_in_process("publisher", "add-signer", publisher.folder, "--unencrypted", check=True)
    signers = show(publisher.folder)["signers"]
    assert isinstance(signers, list) and len(signers) == 2
    first, second = (s["id"] for s in sorted(signers, key=lambda s: s["not_before"]))
    src = write_tree(tmp_path / "src", {"index.html": b"<h1>news</h1>"})
    news = pack(publisher, src, tmp_path / "news.mdrop", "news", "--signer", first)
    src2 = write_tree(tmp_path / "src2", {"index.html": b"<h1>notice</h1>"})
    notice = pack(publisher, src2, tmp_path / "notice.mdrop", "notice", "--signer", second)
    fingerprint = str(show(publisher.folder)["fingerprint"])

    def bundle_url(node: NodeProc, home: Path, name: str) -> str:
        """Where the node's reader shows ``name`` (opaque ids, by the node's reader key)."""
        key = (home / readerids.KEY_FILE).read_bytes()
        return f"http://{node.address}/b/{readerids.bundle_id(key, fingerprint, name)}/"

    # Three nodes that trust the publisher and hold both bundles, running on loopback.
    homes = [tmp_path / name for name in ("a", "b", "c")]
    for home in homes:
        meshdrop_in_process("--home", home, "trust", "add", "--yes", publisher.pub, check=True)
        meshdrop_in_process("--home", home, "import", "--quiet", news, notice, check=True)
    running = [nodes.start(home) for home in homes]
    for home, node in zip(homes, running, strict=True):
        wait_until(partial(meets_others, node), what="three nodes meeting")
        assert status_of(bundle_url(node, home, "notice")) == 200
        assert status_of(bundle_url(node, home, "news")) == 200

    # On the laptop, the second key is reported compromised; the new publisher.pub goes
    # onto a stick as a courier would carry it, and only node A ever sees the stick.
    run_meshdrop(
        "publisher",
        "revoke",
        publisher.folder,
        second,
        "--reason",
        "compromised",
        "--yes",
        check=True,
    )
    stick = tmp_path / "stick" / COURIER_FOLDER
    stick.mkdir(parents=True)
    shutil.copyfile(publisher.pub, stick / publisher_file_name(fingerprint))
    imported = run_meshdrop("--home", homes[0], "import", stick.parent)
    assert "record v3" in imported.out + imported.err, imported
    assert record_version(homes[0], fingerprint) == 3

    # Over Wi-Fi (loopback here) B and C learn it from A, and every reader drops "notice".
    for home, node in zip(homes, running, strict=True):
        wait_until(
            partial(has_version, home, fingerprint, 3), what=f"the revocation reaching {home.name}"
        )
        wait_until(
            partial(answers, bundle_url(node, home, "notice"), 404),
            what=f"{home.name}'s reader dropping the withdrawn bundle",
        )
        assert status_of(bundle_url(node, home, "news")) == 200
        listed = meshdrop_in_process("--home", home, "ls", "--json", check=True).out
        assert [json.loads(line)["name"] for line in listed.splitlines()] == ["news"]
