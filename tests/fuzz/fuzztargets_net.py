"""Fuzz targets for what arrives from the LAN (peer-API messages, the client's HTTP head
parser, mDNS TXT records, a hello's query) and on a courier's stick (part headers, want
files)."""

from __future__ import annotations

import contextlib

import atheris
from fuzztargets import NOW, Target
from yarl import URL

from meshdrop.core.bundle import parse_envelope
from meshdrop.core.holdings import decode_bitmap, held_digests
from meshdrop.core.trust import PublisherState, pin_chain
from meshdrop.core.verify import verify_envelope
from meshdrop.errors import MeshdropError
from meshdrop.transports.courier.parts import parse_part_header
from meshdrop.transports.courier.want import parse_want
from meshdrop.transports.lan import dropsync, protocol, wire
from meshdrop.transports.lan.circlediscovery import parse_token
from meshdrop.transports.lan.discovery import parse_txt
from meshdrop.transports.lan.dropsync import ListedDrop
from meshdrop.transports.lan.introduce import parse_query
from meshdrop.transports.lan.offers import forged

# The request the inventory-response seeds answer (fuzzseeds.py makes them against it).
INVENTORY_REQUEST = protocol.InventoryRequest(
    scope=(bytes(32), bytes([1]) * 32), prefixes=("", "0", "1", "a", "ff")
)
ASKED_DROPS = tuple(ListedDrop(bytes([i]) * 32, 4096, 1_800_000_000) for i in range(4))


def fuzz_peer_message(data: bytes) -> None:
    """Each message a peer answers or asks with, parsed as the client and server do."""
    parsers = (
        protocol.parse_hello,
        protocol.parse_held_publishers,
        protocol.parse_inventory_request,
        lambda d: protocol.parse_inventory_response(d, INVENTORY_REQUEST),
        lambda d: protocol.parse_digests(d, 64, "a request for envelopes"),
        lambda d: protocol.parse_envelope_batch(d, 16),
        dropsync.parse_held,
        dropsync.parse_wanted,
        lambda d: dropsync.parse_batch(d, ASKED_DROPS),
    )
    for parse in parsers:
        with contextlib.suppress(MeshdropError):
            parse(data)


def fuzz_peer_envelope(data: bytes) -> None:
    """An envelope a peer sends for an entry it listed (storeio.check_offers parses it,
    offers.forged judges a refused one), checked against the publisher its own records
    prove, so that a mutated seed still reaches the signature and manifest."""
    envelope = parse_envelope(data, "an envelope from a peer")
    states: dict[bytes, PublisherState] = {}
    with contextlib.suppress(MeshdropError):
        state, _problem = pin_chain(envelope.records)
        states[state.publisher] = state
    forged(envelope, states)
    if states:
        verify_envelope(envelope, states, NOW)


def fuzz_inventory_response(data: bytes) -> None:
    protocol.parse_inventory_response(data, INVENTORY_REQUEST)


def fuzz_http_head(data: bytes) -> None:
    """The peer client's own HTTP/1.1 head parser (transports/lan/wire.py), as
    Connection hands it the bytes before the blank line."""
    head = wire.parse_head(data.split(b"\r\n\r\n", 1)[0], "fuzz")
    _ = head.content_length


def fuzz_discovery(data: bytes) -> None:
    """TXT records of other devices: ours (v, d) and a circle's (path)."""
    provider = atheris.FuzzedDataProvider(data)
    properties: dict[bytes, bytes | None] = {}
    for _ in range(provider.ConsumeIntInRange(0, 4)):
        key = provider.ConsumeBytes(provider.ConsumeIntInRange(0, 8))
        properties[key] = None if provider.ConsumeBool() else provider.ConsumeBytes(40)
    parse_txt(properties)
    parse_token(properties)


def fuzz_hello_query(data: bytes) -> None:
    """A hello's query string, folded as peerapi.py folds aiohttp's MultiDict."""
    query = URL("/hello?" + data.decode("utf-8", "replace")).query
    parse_query({k: query[k] for k in query}, len(query))


def fuzz_bitmap(data: bytes) -> None:
    """A peer's chunk bitmap of a partly held bundle."""
    if not data:
        return
    count = data[0] * 7 + 1
    held_digests(data[1:], [bytes([i % 256]) * 32 for i in range(count)])
    decode_bitmap(data[1:], count)


def fuzz_part_header(data: bytes) -> None:
    parse_part_header(data, "fuzz.part")


def fuzz_want(data: bytes) -> None:
    want = parse_want(data)
    if parse_want(want.encode()) != want:
        raise AssertionError("a parsed want file does not survive encode and parse")


HERE = [
    Target("peer_message", fuzz_peer_message, "every peer-API message parser, both sides"),
    Target("peer_envelope", fuzz_peer_envelope, "an envelope a peer offers (lan/offers)"),
    Target("inventory_response", fuzz_inventory_response, "lan/protocol inventory answers"),
    Target("http_head", fuzz_http_head, "lan/wire.parse_head"),
    Target("discovery", fuzz_discovery, "mDNS TXT records: parse_txt, parse_token"),
    Target("hello_query", fuzz_hello_query, "lan/introduce.parse_query"),
    Target("bitmap", fuzz_bitmap, "core/holdings.decode_bitmap, held_digests"),
    Target("part_header", fuzz_part_header, "courier/parts.parse_part_header"),
    Target("want", fuzz_want, "courier/want.parse_want"),
]
