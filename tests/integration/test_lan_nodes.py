"""Real nodes on one machine: several installed `meshdrop node` processes, confined to
loopback (HTTP and mDNS), finding each other with real python-zeroconf multicast and
syncing over real HTTP. Every wait is bounded; nothing asserts on timing."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from lankit import NodeProc, Nodes, chunk_files, read_tree, wait_until
from zeroconf import ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from conftest import (
    Publisher,
    assert_clean_error,
    list_json,
    make_publisher,
    meshdrop_in_process,
    pack,
    run_meshdrop,
    write_tree,
)
from meshdrop.core.manifest import CHUNK_SIZE
from meshdrop.store.crashpoints import ENV as CRASH_ENV
from meshdrop.store.ingest import BATCH_BYTES
from meshdrop.store.store import Store

SAMPLES = Path(__file__).parents[2] / "bundles"
SERVICE = "_meshdrop._tcp.local."


# The nodes are real `meshdrop node` processes; the steps around them (trust, import, and
# the looks afterwards: get, fsck, trust show) run the same commands in process.


def trusting(home: Path, *publishers: Publisher) -> Path:
    for publisher in publishers:
        meshdrop_in_process("--home", home, "trust", "add", "--yes", publisher.pub, check=True)
    return home


def holding(home: Path, *bundles: Path) -> Path:
    meshdrop_in_process("--home", home, "import", "--quiet", *bundles, check=True)
    return home


def names(home: Path) -> dict[str, int]:
    return {str(b["name"]): int(str(b["version"])) for b in list_json(home)}


def sample_bundles(publisher: Publisher, out: Path) -> list[Path]:
    out.mkdir()
    return [
        pack(publisher, SAMPLES / folder, out / f"{folder}.mdrop", folder)
        for folder in ("welcome", "news", "audio")
    ]


def test_three_nodes_discover_each_other_converge_and_spread_a_new_bundle(
    tmp_path: Path, publisher: Publisher, nodes: Nodes
) -> None:
    samples = sample_bundles(publisher, tmp_path / "out")
    a = holding(trusting(tmp_path / "a", publisher), *samples)
    b = trusting(tmp_path / "b", publisher)
    c = trusting(tmp_path / "c", publisher)
    node_a, node_b, node_c = nodes.start(a), nodes.start(b), nodes.start(c)
    everyone = {node_a.address, node_b.address, node_c.address}
    for node in (node_a, node_b, node_c):
        others = everyone - {node.address}
        wait_until(
            functools.partial(lambda n, o: o <= n.alive_peers(), node, others),
            what=f"{node.home.name} to find the other two by mDNS",
        )
        # No node names a peer: each one it knows it found by mDNS, or was found by it over
        # mDNS and said hello first ("introduced" until the announcement is resolved too,
        # when the two become one discovered peer: PROTOCOL section 5).
        assert all(p["discovered"] or p["inbound"] for p in node.status()["peers"])
    wanted = names(a)
    assert set(wanted) == {"welcome", "news", "audio"}
    wait_until(lambda: names(b) == wanted and names(c) == wanted, what="convergence")

    extra = pack(
        publisher,
        write_tree(tmp_path / "extra", {"index.html": b"<p>extra, extra</p>"}),
        tmp_path / "extra.mdrop",
        "extra",
    )
    holding(c, extra)  # imported while the node runs, as a courier's stick would be
    wait_until(lambda: "extra" in names(a) and "extra" in names(b), what="the new bundle")
    got = node_a.wait_event(lambda e: e["event"] == "bundle" and e["name"] == "extra")
    assert got["peer"] in (node_b.address, node_c.address)
    for home in (a, b, c):
        out = tmp_path / f"get-{home.name}"
        meshdrop_in_process("--home", home, "get", "news", "-o", out, check=True)
        assert read_tree(out) == read_tree(SAMPLES / "news")

    human = run_meshdrop("--home", b, "status", check=True)
    assert "peer" in human.out and node_a.address in human.out
    assert re.search(r"^connections +\d+ open of \d+ allowed .* from peers", human.out, re.M)
    for node in (node_a, node_b, node_c):
        node.terminate()  # all three at once; each must then end cleanly
    for node in (node_a, node_b, node_c):
        assert node.stop() == 0
        assert node.events[-1] == {"event": "stopped"}
        assert not (node.home / "node.json").exists()


def test_a_newer_version_replaces_the_older_one_everywhere(
    tmp_path: Path, publisher: Publisher, nodes: Nodes
) -> None:
    v1 = pack(publisher, write_tree(tmp_path / "v1", {"a.txt": b"one"}), tmp_path / "v1.mdrop",
              "news", "--version", "1")  # fmt: skip
    v2 = pack(publisher, write_tree(tmp_path / "v2", {"a.txt": b"two"}), tmp_path / "v2.mdrop",
              "news", "--version", "2")  # fmt: skip
    homes = [holding(trusting(tmp_path / n, publisher), v1) for n in "abc"]
    started = [nodes.start(home) for home in homes]
    holding(homes[0], v2)
    wait_until(
        lambda: all(names(h) == {"news": 2} for h in homes), what="v2 to replace v1 everywhere"
    )
    replaced = started[1].wait_event(lambda e: e["event"] == "bundle")
    assert (replaced["version"], replaced["replaced"]) == (2, 1)
    out = tmp_path / "got"
    meshdrop_in_process("--home", homes[2], "get", "news", "a.txt", "-o", out, check=True)
    assert out.read_bytes() == b"two"


def test_an_untrusted_publishers_bundle_does_not_spread(
    tmp_path: Path, publisher: Publisher, nodes: Nodes
) -> None:
    stranger = make_publisher(tmp_path / "stranger", "Stranger")
    ours = pack(
        publisher, write_tree(tmp_path / "s1", {"a": b"ours"}), tmp_path / "o.mdrop", "ours"
    )
    theirs = pack(
        stranger, write_tree(tmp_path / "s2", {"a": b"theirs"}), tmp_path / "t.mdrop", "theirs"
    )
    a = holding(trusting(tmp_path / "a", publisher, stranger), ours, theirs)
    b = trusting(tmp_path / "b", publisher)
    node_a, node_b = nodes.start(a), nodes.start(b)
    wait_until(lambda: set(names(b)) == {"ours"}, what="the trusted bundle")
    wait_until(
        lambda: any(p["last_sync_seconds_ago"] is not None for p in node_b.status()["peers"])
    )
    status_b, status_a = node_b.status(), node_a.status()
    assert set(names(b)) == {"ours"}
    assert status_b["fetched"]["refused"] == 0  # it never even asked for the other one
    assert status_a["served"]["envelopes"] == 1


def killed_mid_transfer(
    tmp_path: Path,
    publisher: Publisher,
    nodes: Nodes,
    files: dict[str, bytes],
    crash: str = "lan-after-chunk-8",
) -> tuple[Path, NodeProc, NodeProc]:
    """Nodes a and c hold a bundle "big" of ``files``; node b fetches it from a and is
    killed (SIGKILL, by itself) at the crash point ``crash``: by default as soon as 8
    chunks are durably stored. Returns b's home and the running nodes a and c."""
    big = pack(publisher, write_tree(tmp_path / "src", files), tmp_path / "big.mdrop", "big")
    a = holding(trusting(tmp_path / "a", publisher), big)
    c = holding(trusting(tmp_path / "c", publisher), big)
    b = trusting(tmp_path / "b", publisher)
    node_a = nodes.start(a, "--no-discovery")
    node_c = nodes.start(c, "--no-discovery")
    crashing = nodes.start(b, "--no-discovery", "--peer", node_a.address, env={CRASH_ENV: crash})
    assert crashing.proc.wait(60) == -9
    return b, node_a, node_c


def test_a_node_killed_mid_transfer_resumes_from_another_peer_without_refetching(
    tmp_path: Path, publisher: Publisher, nodes: Nodes
) -> None:
    files = {"big.bin": os.urandom(24 * CHUNK_SIZE - 100), "index.html": b"<p>big</p>"}
    b, node_a, node_c = killed_mid_transfer(tmp_path, publisher, nodes, files)
    kept = chunk_files(b)
    assert 8 <= len(kept) < 25
    assert names(b) == {}  # nothing visible: the bundle is not complete
    assert (b / "node.json").exists()  # a killed node cleans nothing up...
    assert_clean_error(run_meshdrop("--home", b, "status"), "no node answers")
    node_a.stop()

    resumed = nodes.start(b, "--no-discovery", "--peer", node_c.address)
    wait_until(lambda: "big" in names(b), what="the resumed transfer")
    served = node_c.status()["served"]["chunks"]
    assert served == 25 - len(kept)  # 24 chunks of big.bin and 1 of index.html
    after = chunk_files(b)
    assert all(after[name] == kept[name] for name in kept)  # the same files, not re-written
    out = tmp_path / "out"
    meshdrop_in_process("--home", b, "get", "big", "-o", out, check=True)
    assert read_tree(out) == files
    assert resumed.stop() == 0


def test_a_node_killed_mid_transfer_of_a_big_bundle_resumes_from_the_batches_it_published(
    tmp_path: Path, publisher: Publisher, nodes: Nodes
) -> None:
    # Big enough to be stored a batch at a time (staged under temp names, then one sync
    # and the names for each BATCH_BYTES). "after-chunk" kills the node inside the store's
    # publishing thread as soon as its first batch is durable under its names, before a
    # later batch can be published. (A crash point counted on the event loop raced with
    # that thread: by the time it ran, the last batch could be published too.)
    per_batch = BATCH_BYTES // CHUNK_SIZE
    total = per_batch + 8
    files = {"big.bin": os.urandom(total * CHUNK_SIZE - 100)}
    b, node_a, node_c = killed_mid_transfer(tmp_path, publisher, nodes, files, "after-chunk")
    kept = chunk_files(b)
    assert per_batch <= len(kept) <= per_batch + 1 < total  # +1: the short last chunk
    assert names(b) == {}  # nothing visible; chunks staged but not published are temp files
    node_a.stop()

    resumed = nodes.start(b, "--no-discovery", "--peer", node_c.address)
    wait_until(lambda: "big" in names(b), what="the resumed transfer")
    assert node_c.status()["served"]["chunks"] == total - len(kept)  # none of them again
    after = chunk_files(b)
    assert all(after[name] == kept[name] for name in kept)  # the same files, not re-written
    assert not temp_files(b)  # what the kill left staged was removed at the restart
    assert resumed.stop() == 0
    out = tmp_path / "out"
    meshdrop_in_process("--home", b, "get", "big", "-o", out, check=True)
    assert read_tree(out) == files
    fsck = meshdrop_in_process("--home", b, "fsck", "--repair", "--json", check=True)
    report = json.loads(fsck.out)
    assert report["damaged_chunks"] == report["orphans_removed"] == 0, report


def temp_files(home: Path) -> list[Path]:
    return list((home / "chunks").rglob(".tmp-*"))


def test_a_node_removes_leftover_temp_files_at_start_but_never_while_an_import_writes(
    tmp_path: Path, nodes: Nodes
) -> None:
    home = tmp_path / "node"
    with Store(home) as store:
        folder = home / "chunks" / "ab"
        folder.mkdir(exist_ok=True)  # a new store makes all 256 folders
        leftover = folder / f".tmp-0123456789ab-ab{'0' * 62}"
        leftover.write_bytes(b"half a chunk")  # what a killed writer left
        with store.ingesting() as held:  # an import writing chunks meanwhile
            assert held
            nodes.start(home, "--no-discovery").stop()
            assert leftover.exists()  # maybe that import's own work in progress: kept
    nodes.start(home, "--no-discovery").stop()
    assert not leftover.exists() and folder.is_dir()


def test_status_without_a_running_node_is_a_clean_error(tmp_path: Path) -> None:
    result = run_meshdrop("--home", tmp_path / "nothing", "status")
    assert_clean_error(result, "no node is running")
    assert result.code == 9


def test_node_refuses_a_peer_that_is_not_an_ip_and_port(tmp_path: Path) -> None:
    result = run_meshdrop("--home", tmp_path / "h", "node", "--peer", "example.org:80")
    assert_clean_error(result, "not an IP address")
    assert result.code == 2


def test_a_taken_port_is_a_clean_error(tmp_path: Path, nodes: Nodes) -> None:
    first = nodes.start(tmp_path / "a", "--no-discovery")
    result = run_meshdrop(
        "--home", tmp_path / "b", "node", "--bind", "127.0.0.1", "--port", str(first.port)
    )
    assert_clean_error(result, "cannot listen on 127.0.0.1:")
    assert result.code == 9


async def _browse_for(port: int, seconds: float) -> tuple[str, AsyncServiceInfo] | None:
    """What the network says about the meshdrop node listening on ``port``: its instance
    name and records. Browses for up to ``seconds``, resolving each instance as it is
    seen, and stops at the first that advertises ``port``."""
    zc = AsyncZeroconf(interfaces=["127.0.0.1"])
    loop = asyncio.get_running_loop()
    names: asyncio.Queue[str] = asyncio.Queue()

    def seen(zeroconf: Any, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if state_change is not ServiceStateChange.Removed:
            loop.call_soon_threadsafe(names.put_nowait, name)

    browser = AsyncServiceBrowser(zc.zeroconf, SERVICE, handlers=[seen])
    try:
        async with asyncio.timeout(seconds):
            while True:
                name = await names.get()
                info = AsyncServiceInfo(SERVICE, name)
                if await info.async_request(zc.zeroconf, 3000) and info.port == port:
                    return name, info
    except TimeoutError:
        return None
    finally:
        await browser.async_cancel()
        await zc.async_close()


def _advertised(node: NodeProc) -> tuple[str, AsyncServiceInfo]:
    def lookup() -> tuple[str, AsyncServiceInfo] | None:
        return asyncio.run(_browse_for(node.port, 5.0))

    found: tuple[str, AsyncServiceInfo] = wait_until(lookup, what="the node's advertisement")
    return found


def test_the_advertisement_says_only_version_and_digest_under_random_names(
    tmp_path: Path, publisher: Publisher, nodes: Nodes
) -> None:
    home = trusting(tmp_path / "a", publisher)
    node = nodes.start(home)
    name, info = _advertised(node)
    assert set(info.properties) == {b"v", b"d"}
    assert info.properties[b"v"] == b"1"
    digest = info.properties[b"d"]
    assert digest is not None and re.fullmatch(rb"[0-9a-f]{16}", digest)
    assert digest != node.status()["inventory"]["digest"].encode()  # salted (test_lan_quiet)
    assert re.fullmatch(r"[0-9a-f]{16}\._meshdrop\._tcp\.local\.", name)
    machine = socket.gethostname().split(".")[0].lower()
    assert info.server is not None and machine not in info.server.lower()
    assert re.fullmatch(r"md-[0-9a-f]{16}\.local\.", info.server)
    assert info.parsed_addresses() == ["127.0.0.1"]
    node.stop()
    again = nodes.start(home)
    name2, info2 = _advertised(again)
    assert (name2, info2.server) != (name, info.server)  # random on every start


def test_a_publishers_new_record_spreads_like_a_bundle(
    tmp_path: Path, publisher: Publisher, nodes: Nodes
) -> None:
    a = trusting(tmp_path / "a", publisher)
    b = trusting(tmp_path / "b", publisher)
    meshdrop_in_process("publisher", "add-signer", publisher.folder, "--unencrypted", check=True)
    meshdrop_in_process("--home", a, "import", publisher.pub, check=True)  # a learns record 2
    node_a, node_b = nodes.start(a), nodes.start(b)
    got = node_b.wait_event(lambda e: e["event"] == "publisher", what="the new record")
    assert got["version"] == 2 and got["peer"] == node_a.address
    shown = meshdrop_in_process(
        "--home", b, "trust", "show", got["publisher"], "--json", check=True
    )
    assert json.loads(shown.out)["version"] == 2


def test_a_second_node_for_the_same_home_is_refused(tmp_path: Path, nodes: Nodes) -> None:
    first = nodes.start(tmp_path / "a", "--no-discovery")
    result = run_meshdrop("--home", tmp_path / "a", "node", "--bind", "127.0.0.1", "--port", "0")
    assert_clean_error(result, "already running")
    assert result.code == 9
    assert first.status()["pid"] == first.proc.pid


def test_the_node_serves_the_reader_on_the_same_port(
    tmp_path: Path, publisher: Publisher, nodes: Nodes
) -> None:
    home = holding(trusting(tmp_path / "a", publisher), *sample_bundles(publisher, tmp_path / "o"))
    node = nodes.start(home, "--no-discovery")
    listening = node.events[0]
    assert listening["reader"] == [f"http://127.0.0.1:{node.port}/"]
    with urllib.request.urlopen(listening["reader"][0], timeout=10) as page:
        assert "Server" not in page.headers
        assert b"news" in page.read()
    peers_only = nodes.start(tmp_path / "b", "--no-discovery", "--no-reader")
    assert "reader" not in peers_only.events[0]
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"http://{peers_only.address}/", timeout=10)
    assert missing.value.code == 404


def test_a_node_without_room_refuses_before_fetching_anything(
    tmp_path: Path, publisher: Publisher, nodes: Nodes
) -> None:
    bundle = pack(publisher, write_tree(tmp_path / "s", {"a": b"x" * 5000}), tmp_path / "b.mdrop",
                  "news")  # fmt: skip
    source = nodes.start(holding(trusting(tmp_path / "a", publisher), bundle), "--no-discovery")
    full = nodes.start(
        trusting(tmp_path / "b", publisher),
        "--no-discovery",
        "--peer",
        source.address,
        env={"MESHDROP_MIN_FREE": str(10**18)},  # as if the disk were full
    )
    refused = full.wait_event(lambda e: e["event"] == "refused", what="the refusal")
    assert "free disk space" in refused["reason"]
    assert names(tmp_path / "b") == {}
    assert source.status()["served"]["chunks"] == 0
