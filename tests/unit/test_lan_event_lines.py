"""What `meshdrop node` prints for peer events (cli/lan.describe)."""

from __future__ import annotations

from typing import Any, cast

from meshdrop.cli.lan import describe
from meshdrop.transports.lan.events import Event


def line(**event: Any) -> str | None:
    return describe(cast(Event, {"event": "peer", "peer": "192.168.1.31:8470", **event}))


def test_a_peer_that_introduced_itself_is_said_in_words() -> None:
    assert line(state="introduced") == (
        "peer 192.168.1.31:8470: reached us (said hello first); pulling from it too"
    )


def test_other_peer_states_are_printed_as_they_are() -> None:
    assert line(state="alive") == "peer 192.168.1.31:8470: alive"
