"""Counted nouns read right: "1 file", "2 files", never "1 files" or "file(s)"."""

from __future__ import annotations

from meshdrop.cli.common import plural
from meshdrop.cli.lan import describe
from meshdrop.transports.lan.events import ListeningEvent, SyncEvent


def test_plural_says_one_thing_in_the_singular_and_others_in_the_plural() -> None:
    assert [plural(n, "file") for n in (0, 1, 2)] == ["0 files", "1 file", "2 files"]
    assert plural(1, "partial import") == "1 partial import"
    assert plural(3, "entry", "entries") == "3 entries"


def test_the_node_counts_one_bundle_and_one_publisher_in_the_singular() -> None:
    listening = ListeningEvent(
        event="listening", urls=["http://a"], port=1, peer_api="x", bundles=1, publishers=1
    )
    assert (describe(listening) or "").endswith("; 1 bundle of 1 trusted publisher")
    synced = SyncEvent(
        event="sync",
        peer="p",
        bundles=1,
        publishers=1,
        refused=0,
        bytes=10,
        complete=True,
        seconds=0.1,
    )
    assert describe(synced) == "synced with p: 1 bundle, 1 publisher update, 10 B"
