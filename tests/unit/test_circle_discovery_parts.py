"""The parts of circle discovery that need no network (docs/PROTOCOL.md, "Circle
discovery"): the TXT record's one key and how strictly it is read, the shape of the random
names, and when a node's announced epoch changes."""

from __future__ import annotations

import asyncio
import re
import secrets

import pytest

from meshdrop.core import circles
from meshdrop.core.circles import CircleSecret
from meshdrop.transports.lan.circlediscovery import (
    EPOCH_LAG_MAX,
    CircleDiscovery,
    CircleService,
    parse_token,
    random_label,
    token_path,
)

TOKEN = circles.make_token(CircleSecret.generate(), 20_000, secrets.token_bytes(8))
PATH = token_path(TOKEN).encode()

# (what, TXT properties as python-zeroconf decodes them): all ignored.
NOT_A_TOKEN: list[tuple[str, dict[bytes, bytes | None]]] = [
    ("an empty TXT record", {}),
    ("a printer's path", {b"path": b"/"}),
    ("a path key without a value", {b"path": None}),
    ("an empty path", {b"path": b""}),
    ("no leading slash", {b"path": PATH[1:]}),
    ("a token one digit short", {b"path": PATH[:-1]}),
    ("a token one digit long", {b"path": PATH + b"0"}),
    ("upper-case hex", {b"path": PATH.upper()}),
    ("a trailing slash", {b"path": PATH + b"/"}),
    ("a trailing newline", {b"path": PATH + b"\n"}),
    ("a query string", {b"path": PATH + b"?a=1"}),
    ("not hex", {b"path": b"/" + b"g" * 32}),
    ("binary junk", {b"path": b"/\xff\xfe" + b"0" * 30}),
    ("another key besides", {b"path": PATH, b"txtvers": b"1"}),
    ("the token under another key", {b"p": PATH}),
    ("an upper-case key", {b"PATH": PATH}),
]


@pytest.mark.parametrize(
    "properties", [case[1] for case in NOT_A_TOKEN], ids=[case[0] for case in NOT_A_TOKEN]
)
def test_a_txt_record_that_is_not_exactly_one_token_path_is_ignored(
    properties: dict[bytes, bytes | None],
) -> None:
    assert parse_token(properties) is None


def test_a_token_path_reads_back_as_the_token() -> None:
    assert token_path(TOKEN) == "/" + TOKEN.hex()
    assert len(PATH) == 1 + 2 * circles.TOKEN_BYTES
    assert parse_token({b"path": PATH}) == TOKEN


def test_random_labels_look_like_randomised_mac_addresses_and_do_not_repeat() -> None:
    labels = [random_label() for _ in range(200)]
    assert len(set(labels)) == len(labels)
    for label in labels:
        assert re.fullmatch(r"[0-9a-f]{12}", label)
        first = int(label[:2], 16)
        assert first & 0x02, "locally administered"
        assert not first & 0x01, "unicast"


def not_started(now: float, lag: float | None) -> CircleDiscovery:
    circle = circles.new_circle("c", CircleSecret.generate(), int(now))
    services = [CircleService(circle, 40000)]
    return CircleDiscovery("127.0.0.1", services, print, print, clock=lambda: now, lag=lag)


def test_the_announced_epoch_changes_a_random_lag_after_midnight() -> None:
    midnight = 20_000 * circles.EPOCH_SECONDS
    node = not_started(midnight + 3600, lag=7200)
    assert node.epoch == 19_999  # an hour past midnight, two hours of lag: still yesterday

    async def steps() -> list[int]:
        seen = []
        for now in (midnight + 7199, midnight + 7200, midnight + 86_400 + 7199):
            await node.refresh(now)
            seen.append(node.epoch)
        return seen

    assert asyncio.run(steps()) == [19_999, 20_000, 20_000]
    lags = {not_started(midnight, lag=None).lag for _ in range(50)}
    assert len(lags) > 1
    assert all(0 <= lag < EPOCH_LAG_MAX for lag in lags)
