"""Issue 14, point 2: nothing disappears without a word. A bundle that carries a newer
publisher record reporting a key compromised (or retired) withdraws what that key signed;
every import path says so, after the line of the input that caused it: a file, a folder,
a stick (a real FAT32 image, through mtools) and a LAN node's event stream. Each behaviour
runs the installed command; set-up steps run in process."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from lankit import Nodes
from trustkit import (
    DAY,
    T0,
    Chain,
    Delegation,
    bundle_bytes,
    pub,
    publisher_file,
    signed,
    write,
)

from conftest import meshdrop_in_process, run_meshdrop
from meshdrop.core.keys import key_id
from meshdrop.core.records import Reason

FAT_TOOLS = ("mkfs.vfat", "mcopy")


@dataclass
class World:
    node: Path  # trusts record v1 and holds "news", signed by key s2
    small: Path  # a bundle signed by s1 that carries record v2, which revokes s2
    fingerprint: str
    revoked_key: str  # s2's key id


def build_world(root: Path, reason: Reason = Reason.COMPROMISED) -> World:
    chain = Chain(roots=["r1"], threshold=1)
    record = chain.record(1, signers=(Delegation("s1"), Delegation("s2")))
    first = signed(record, by=["r1"])
    second = signed(
        chain.record(2, signers=(Delegation("s1"),), revoked=[("s2", reason, T0 - DAY)]),
        by=["r1"],
    )
    root.mkdir(parents=True, exist_ok=True)
    pub_file = write(root / "publisher.pub", publisher_file([first]))
    news = write(root / "news.mdrop", bundle_bytes([first], chain.id, "s2", name="news"))
    small = write(root / "small.mdrop", bundle_bytes([first, second], chain.id, "s1", name="small"))
    node = root / "node"
    meshdrop_in_process("--home", node, "trust", "add", "--yes", pub_file, check=True)
    meshdrop_in_process("--home", node, "import", news, "--quiet", check=True)
    return World(node, small, record.fingerprint, key_id(pub("s2")))


@pytest.fixture
def world(tmp_path: Path) -> World:
    return build_world(tmp_path / "world")


def expected_json(world: World, reason: str = "compromised") -> list[dict[str, object]]:
    return [
        {
            "name": "news",
            "version": 1,
            "publisher": world.fingerprint,
            "signer": world.revoked_key,
            "reason": reason,
            "revoked_at": T0 - DAY,
        }
    ]


def listed_states(home: Path) -> dict[str, str]:
    out = meshdrop_in_process("--home", home, "ls", "--all", "--json", check=True).out
    return {b["name"]: b["state"] for b in map(json.loads, out.splitlines())}


def test_a_file_import_reports_the_bundle_its_record_withdrew(world: World) -> None:
    result = run_meshdrop("--home", world.node, "import", world.small, "--quiet")
    assert (result.code, result.err) == (0, "")
    assert result.out == (
        f"{world.small}: imported: small v1\n"
        f"withdrew news v1 (key {world.revoked_key} reported compromised)\n"
    )
    assert listed_states(world.node) == {"news": "withdrawn", "small": "ok"}


def test_a_file_import_reports_a_withdrawal_in_its_json_line(world: World) -> None:
    result = run_meshdrop("--home", world.node, "import", world.small, "--json")
    assert result.code == 0, result
    (line,) = [json.loads(x) for x in result.out.splitlines()]
    assert (line["name"], line["outcome"]) == ("small", "imported")
    assert line["withdrawn"] == expected_json(world)


def test_a_retired_keys_later_bundle_is_reported_with_the_retirement(tmp_path: Path) -> None:
    world = build_world(tmp_path / "world", Reason.RETIRED)
    result = run_meshdrop("--home", world.node, "import", world.small, "--quiet")
    assert result.code == 0, result
    assert result.out == (
        f"{world.small}: imported: small v1\n"
        f"withdrew news v1 (signed after key {world.revoked_key} was retired on "
        f"2026-09-20 14:13 UTC)\n"
    )


def test_a_folder_import_reports_the_withdrawal_after_the_line_that_caused_it(
    world: World, tmp_path: Path
) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    shutil.copyfile(world.small, folder / "small.mdrop")
    result = run_meshdrop("--home", world.node, "import", folder, "--quiet")
    assert (result.code, result.err) == (0, "")
    assert result.out == (
        f"{folder / 'small.mdrop'}: imported: small v1\n"
        f"withdrew news v1 (key {world.revoked_key} reported compromised)\n"
    )
    as_json = run_meshdrop("--home", build_world(tmp_path / "again").node, "import", folder)
    assert "withdrew news v1" in as_json.out  # a fresh node: reported again, once


def newer_publisher_file(folder: Path) -> Path:
    """The world's publisher file with record v2, which reports s2 compromised."""
    chain = Chain(roots=["r1"], threshold=1)
    records = [
        signed(chain.record(1, signers=(Delegation("s1"), Delegation("s2"))), by=["r1"]),
        signed(
            chain.record(
                2, signers=(Delegation("s1"),), revoked=[("s2", Reason.COMPROMISED, T0 - DAY)]
            ),
            by=["r1"],
        ),
    ]
    return write(folder / "newer.pub", publisher_file(records))


def test_a_publisher_file_import_reports_what_its_record_withdrew(
    world: World, tmp_path: Path
) -> None:
    newer = newer_publisher_file(tmp_path)
    result = run_meshdrop("--home", world.node, "import", newer, "--json")
    assert result.code == 0, result
    (line,) = [json.loads(x) for x in result.out.splitlines()]
    assert line["outcome"] == "publisher updated"
    assert line["withdrawn"] == expected_json(world)


def test_trust_add_of_a_newer_publisher_file_reports_what_it_withdrew(
    world: World, tmp_path: Path
) -> None:
    newer = newer_publisher_file(tmp_path)
    result = run_meshdrop("--home", world.node, "trust", "add", newer, "--yes")
    assert result.code == 0, result
    assert f"withdrew news v1 (key {world.revoked_key} reported compromised)\n" in result.out
    assert listed_states(world.node) == {"news": "withdrawn"}


def need_fat_tools() -> None:
    missing = [tool for tool in FAT_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: install dosfstools and mtools")


def mtools(*args: str | Path) -> None:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{args}: {proc.stderr}"


def test_a_stick_import_reports_the_withdrawal(world: World, tmp_path: Path) -> None:
    """The stick is filled by another node's export, carried on a real FAT32 image, and
    read back as a courier folder."""
    need_fat_tools()
    source = build_world(tmp_path / "source").node
    meshdrop_in_process("--home", source, "import", world.small, "--quiet", check=True)
    exported = tmp_path / "exported"
    exported.mkdir()
    meshdrop_in_process("--home", source, "export", exported, "--name", "small", "-q", check=True)
    image = tmp_path / "stick.img"
    mtools("mkfs.vfat", "-F", "32", "-C", image, "65536")
    mtools("mcopy", "-s", "-i", image, exported / "meshdrop", "::/")
    stick = tmp_path / "stick"
    stick.mkdir()
    mtools("mcopy", "-s", "-n", "-i", image, "::/meshdrop", stick)
    courier = stick / "meshdrop"
    names = sorted(p.name for p in courier.iterdir())
    pub_name = next(n for n in names if n.endswith(".pub"))
    bundle_name = next(n for n in names if n.startswith("small"))

    result = run_meshdrop("--home", world.node, "import", stick, "--quiet")
    assert (result.code, result.err) == (0, "")
    assert result.out == (
        f"{courier / pub_name}: publisher updated: Scenario News record v2 (was v1)\n"
        f"withdrew news v1 (key {world.revoked_key} reported compromised)\n"
        f"{courier / bundle_name}: imported: small v1\n"
    )
    assert listed_states(world.node) == {"news": "withdrawn", "small": "ok"}


def test_a_stick_import_reports_the_withdrawal_in_json(world: World, tmp_path: Path) -> None:
    stick = tmp_path / "stick" / "meshdrop"
    stick.mkdir(parents=True)
    shutil.copyfile(world.small, stick / "small.mdrop")
    result = run_meshdrop("--home", world.node, "import", stick.parent, "--json")
    assert result.code == 0, result
    lines = [json.loads(x) for x in result.out.splitlines()]
    assert [(x["name"], x["withdrawn"]) for x in lines] == [("small", expected_json(world))]


def test_a_lan_sync_reports_the_withdrawal_as_an_event(
    world: World, tmp_path: Path, nodes: Nodes
) -> None:
    """Node A got the small bundle (and with it record v2); node B, which holds news,
    syncs with A and says what the record withdrew, in its --json event stream."""
    a = build_world(tmp_path / "a").node
    meshdrop_in_process("--home", a, "import", world.small, "--quiet", check=True)
    node_a = nodes.start(a, "--no-discovery", "--no-reader", "--no-watch")
    node_b = nodes.start(
        world.node, "--no-discovery", "--no-reader", "--no-watch", "--peer", node_a.address
    )
    event = node_b.wait_event(lambda e: e["event"] == "withdrawn", what="a withdrawn event")
    assert event == {
        "event": "withdrawn",
        **expected_json(world)[0],
        "peer": event["peer"],
    }
    assert node_a.address in event["peer"]
    node_b.wait_event(lambda e: e["event"] == "bundle" and e["name"] == "small", what="small")
    withdrawn = [e for e in node_b.events if e["event"] == "withdrawn"]
    assert withdrawn == [event]  # once, whichever update brought the record


def test_the_node_prints_a_withdrawn_event_as_a_line() -> None:
    from meshdrop.cli.lan import describe
    from meshdrop.transports.lan.events import WithdrawnEvent

    event = WithdrawnEvent(
        event="withdrawn",
        name="news",
        version=3,
        publisher="AAAA",
        signer="3f2a9c0011223344",
        reason="compromised",
        revoked_at=T0,
        peer="127.0.0.1:8470",
    )
    assert describe(event) == (
        "withdrew news v3 (key 3f2a9c0011223344 reported compromised), from 127.0.0.1:8470"
    )
