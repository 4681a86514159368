"""A peer cut off from the network and back (issue 15): two nodes in network namespaces
of their own on a bridge (test_lan_netns.py's Lan), finding each other over real mDNS;
one host's bridge port goes down (no goodbye, as when a phone walks out of range) and
comes back. Needs root and `ip netns`, as test_lan_netns.py does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lankit import NodeProc, Nodes, wait_until
from test_lan_netns import Lan, lan  # noqa: F401 (the fixture)
from test_lan_nodes import holding, names, trusting

from conftest import Publisher, pack, write_tree

# Shortened for the test (MESHDROP_LAN_TIMERS exists for tests and benchmarks): a live
# peer is pinged every 2 s, a hello fails after 0.5 s, and the backoff between probes of
# an unreachable peer is capped at 0.25 s instead of 30 s. So failed probes pile up fast,
# far past the 5 after which a peer used to be forgotten; the real 90 s and 10 minute
# outages are scripts/bench_lan.py's.
TIMERS = {"MESHDROP_LAN_TIMERS": "ping=2,probe_timeout=0.5,backoff_max=0.25"}
OLD_FORGET_POINT = 5  # failed probes after which a discovered peer used to be forgotten


def peer_entry(node: NodeProc, label: str) -> dict[str, Any] | None:
    return next((p for p in node.status()["peers"] if p["peer"] == label), None)


def test_a_peer_cut_off_past_the_old_forget_point_resyncs_when_its_link_returns(
    lan: Lan,  # noqa: F811 (the fixture imported above)
    nodes: Nodes,
    tmp_path: Path,
    publisher: Publisher,
) -> None:
    """Two outages, the second twice as long: each time one side gets a new bundle
    while the link is down, the other keeps probing (never forgetting the peer), and the
    bundle arrives once the link is back."""
    a, b = trusting(tmp_path / "a", publisher), trusting(tmp_path / "b", publisher)
    ns_a, ns_b = lan.add_host(1), lan.add_host(2)
    node_a = nodes.start(a, bind="0.0.0.0", prefix=["ip", "netns", "exec", ns_a], env=TIMERS)
    node_b = nodes.start(b, bind="0.0.0.0", prefix=["ip", "netns", "exec", ns_b], env=TIMERS)
    label_a, label_b = f"{lan.address(1)}:{node_a.port}", f"{lan.address(2)}:{node_b.port}"
    wait_until(lambda: label_b in node_a.alive_peers(), what="A to find B")
    wait_until(lambda: label_a in node_b.alive_peers(), what="B to find A")
    port_b = f"md{lan.tag}p2"  # B's port on the bridge
    for outage, (failures, home, other) in enumerate(
        [(OLD_FORGET_POINT + 2, b, a), (3 * OLD_FORGET_POINT, a, b)], start=1
    ):
        lan.run("-n", lan.bridge, "link", "set", port_b, "down")
        wait_until(
            lambda: (peer_entry(node_a, label_b) or {}).get("probe_failures", 0) >= failures,  # noqa: B023
            what=f"outage {outage}: {failures} failed probes of B",
        )
        wait_until(
            lambda: (peer_entry(node_b, label_a) or {}).get("probe_failures", 0) >= failures,  # noqa: B023
            what=f"outage {outage}: {failures} failed probes of A",
        )
        name = f"during-outage-{outage}"
        src = write_tree(tmp_path / name, {"index.html": name.encode()})
        holding(home, pack(publisher, src, tmp_path / f"{name}.mdrop", name))
        assert peer_entry(node_a, label_b) is not None and peer_entry(node_b, label_a) is not None
        lan.run("-n", lan.bridge, "link", "set", port_b, "up")
        wait_until(lambda: name in names(other), what=f"the bundle after outage {outage}")  # noqa: B023
    for node in (node_a, node_b):
        assert not any(e["event"] == "peer" and e["state"] == "forgotten" for e in node.events)
