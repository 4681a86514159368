"""The peer API's messages and constants (docs/PROTOCOL.md sections 3 and 4): what a
hello, a list of held publishers, and an inventory request and answer are on the wire,
parsed with caps and checked against what was asked. Pure: bytes in, values or
FormatError out; no sockets and no asyncio (as python-zeroconf keeps its ``_protocol``
apart from its sockets). The inventory trie these messages carry is core/inventory.py's.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from meshdrop.core import codec
from meshdrop.core.inventory import (
    DIGEST_BYTES,
    FANOUT,
    HAVE_BYTES,
    HEX,
    MARK_BYTES,
    MAX_DEPTH,
    MAX_LEAF_ENTRIES,
    MAX_PREFIXES,
    SLOT_BYTES,
    Entry,
    Node,
)
from meshdrop.errors import FormatError

PROTOCOL_VERSION = 1
PEER_API_PREFIX = "/peer/v1/"  # every peer API path starts with this
MSGPACK_TYPE = "application/x-msgpack"  # the Content-Type of hello and inventory
MAX_SCOPE = 4096  # publishers a client may ask about in one request
MAX_VERSION = 2**63 - 1

MAX_REQUEST_BYTES = 256 * 1024
MAX_INVENTORY_RESPONSE_BYTES = 4 * 1024 * 1024
MAX_HELLO_BYTES = 1024
NONCE_BYTES = 16  # of a list of held publishers: fresh for every answer
TAG_BYTES = 16  # one held publisher, blinded under that nonce
MAX_HELD_RESPONSE_BYTES = MAX_SCOPE * TAG_BYTES + 64
_HELD_TAG = b"meshdrop/v1/held-publisher\0"

Address = tuple[str, int]


def format_address(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# Every message is canonical msgpack (core/codec.py), parsed with caps.

_HELLO_LIMITS = codec.Limits(max_bytes=MAX_HELLO_BYTES, max_depth=2, max_items=16, max_bin=64)
_REQUEST_LIMITS = codec.Limits(
    max_bytes=MAX_REQUEST_BYTES,
    max_depth=3,
    max_items=MAX_SCOPE + MAX_PREFIXES + 8,
    max_str=MAX_DEPTH,
    max_bin=SLOT_BYTES,
)
_HELD_LIMITS = codec.Limits(
    max_bytes=MAX_HELD_RESPONSE_BYTES,
    max_depth=1,
    max_items=2,
    max_str=8,
    max_bin=MAX_SCOPE * TAG_BYTES,
    keys=frozenset({"nonce", "tags"}),
)
_RESPONSE_LIMITS = codec.Limits(
    max_bytes=MAX_INVENTORY_RESPONSE_BYTES,
    max_depth=5,
    max_items=200_000,
    max_str=MAX_DEPTH,
    max_bin=FANOUT * MARK_BYTES,
)


@dataclass(frozen=True)
class Hello:
    protocol: int
    digest: bytes  # MARK_BYTES: the advertised digest (as in the mDNS TXT record)
    node: bytes  # a random id per start, so a node can recognise itself


def encode_hello(hello: Hello) -> bytes:
    return codec.pack({"protocol": hello.protocol, "digest": hello.digest, "node": hello.node})


def parse_hello(data: bytes) -> Hello:
    value = codec.unpack(data, _HELLO_LIMITS, "a peer's hello")
    if not isinstance(value, dict) or set(value) != {"protocol", "digest", "node"}:
        raise FormatError("a peer's hello does not have the fields protocol, digest, node")
    protocol, digest, node = value["protocol"], value["digest"], value["node"]
    if isinstance(protocol, bool) or not isinstance(protocol, int):
        raise FormatError("a peer's hello has a protocol that is not a number")
    if not isinstance(digest, bytes) or len(digest) != MARK_BYTES:
        raise FormatError("a peer's hello has a malformed digest")
    if not isinstance(node, bytes) or not 1 <= len(node) <= 32:
        raise FormatError("a peer's hello has a malformed node id")
    return Hello(protocol, digest, node)


def publisher_tag(nonce: bytes, publisher: bytes) -> bytes:
    """A held publisher as listed under ``nonce``: HMAC-SHA256 keyed by the nonce."""
    return hmac.new(nonce, _HELD_TAG + publisher, hashlib.sha256).digest()[:TAG_BYTES]


@dataclass(frozen=True)
class HeldPublishers:
    """The publishers a server holds (chains and bundles of), each blinded under a fresh
    nonce: a client learns which of the publishers it knows the server holds, and no one
    learns a publisher id they did not know already (PROTOCOL.md section 3.7)."""

    nonce: bytes
    tags: frozenset[bytes]

    def of(self, publishers: Iterable[bytes]) -> tuple[bytes, ...]:
        """Those of ``publishers`` the server holds, sorted."""
        return tuple(sorted(p for p in publishers if publisher_tag(self.nonce, p) in self.tags))


def encode_held_publishers(nonce: bytes, publishers: Iterable[bytes]) -> bytes:
    tags = sorted({publisher_tag(nonce, p) for p in publishers})[:MAX_SCOPE]
    return codec.pack({"nonce": nonce, "tags": b"".join(tags)})


def parse_held_publishers(data: bytes) -> HeldPublishers:
    what = "a peer's list of publishers"
    value = codec.unpack(data, _HELD_LIMITS, what)
    if not isinstance(value, dict) or set(value) != {"nonce", "tags"}:
        raise FormatError(f"{what} does not have the fields nonce, tags")
    nonce, tags = value["nonce"], value["tags"]
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_BYTES:
        raise FormatError(f"{what} has a malformed nonce")
    if not isinstance(tags, bytes) or len(tags) % TAG_BYTES:
        raise FormatError(f"{what} has malformed tags")
    split = [tags[i : i + TAG_BYTES] for i in range(0, len(tags), TAG_BYTES)]
    if split != sorted(set(split)):
        raise FormatError(f"{what} has tags out of order or repeated")
    return HeldPublishers(nonce, frozenset(split))


@dataclass(frozen=True)
class InventoryRequest:
    scope: tuple[bytes, ...]  # publisher ids the client trusts and the server holds
    prefixes: tuple[str, ...]


def _is_prefix(value: object) -> bool:
    return isinstance(value, str) and len(value) <= MAX_DEPTH and all(c in HEX for c in value)


def encode_inventory_request(request: InventoryRequest) -> bytes:
    return codec.pack({"scope": list(request.scope), "prefixes": list(request.prefixes)})


def parse_inventory_request(data: bytes) -> InventoryRequest:
    value = codec.unpack(data, _REQUEST_LIMITS, "an inventory request")
    if not isinstance(value, dict) or set(value) != {"scope", "prefixes"}:
        raise FormatError("an inventory request does not have the fields scope, prefixes")
    scope, prefixes = value["scope"], value["prefixes"]
    if not isinstance(scope, list) or not 1 <= len(scope) <= MAX_SCOPE:
        raise FormatError(f"an inventory request must name 1 to {MAX_SCOPE} publishers")
    if not all(isinstance(p, bytes) and len(p) == SLOT_BYTES for p in scope):
        raise FormatError("an inventory request names a publisher that is not 32 bytes")
    if not isinstance(prefixes, list) or not 1 <= len(prefixes) <= MAX_PREFIXES:
        raise FormatError(f"an inventory request must ask for 1 to {MAX_PREFIXES} nodes")
    if not all(_is_prefix(p) for p in prefixes):
        raise FormatError("an inventory request asks for a node that is not a hex prefix")
    return InventoryRequest(tuple(scope), tuple(prefixes))


@dataclass(frozen=True)
class InventoryResponse:
    scope: tuple[bytes, ...]  # the asked-for publishers the server holds
    nodes: tuple[Node, ...]


def encode_inventory_response(response: InventoryResponse) -> bytes:
    nodes: list[codec.Value] = []
    for node in response.nodes:
        if node.children is not None:
            nodes.append({"prefix": node.prefix, "children": node.children})
        else:
            entries: list[codec.Value] = [
                [e.slot, e.version, e.digest, e.have] if e.have else [e.slot, e.version, e.digest]
                for e in node.entries or ()
            ]
            nodes.append({"prefix": node.prefix, "entries": entries})
    return codec.pack({"scope": list(response.scope), "nodes": nodes})


def parse_inventory_response(
    data: bytes, request: InventoryRequest, max_entries: int = 100_000
) -> InventoryResponse:
    """Check a server's answer against what was asked: only asked-for nodes, each once,
    entries really under their node, nothing but asked-for publishers in scope."""
    what = "a peer's inventory"
    value = codec.unpack(data, _RESPONSE_LIMITS, what)
    if not isinstance(value, dict) or set(value) != {"scope", "nodes"}:
        raise FormatError(f"{what} does not have the fields scope, nodes")
    scope, raw_nodes = value["scope"], value["nodes"]
    asked_scope = set(request.scope)
    if not isinstance(scope, list) or not all(
        isinstance(p, bytes) and p in asked_scope for p in scope
    ):
        raise FormatError(f"{what} names publishers that were not asked about")
    if not isinstance(raw_nodes, list) or len(raw_nodes) > len(request.prefixes):
        raise FormatError(f"{what} has more nodes than were asked for")
    asked = set(request.prefixes)
    nodes: list[Node] = []
    seen: set[str] = set()
    total = 0
    for raw in raw_nodes:
        if not isinstance(raw, dict) or "prefix" not in raw or len(raw) != 2:
            raise FormatError(f"{what} has a malformed node")
        prefix = raw["prefix"]
        if not isinstance(prefix, str) or prefix not in asked or prefix in seen:
            raise FormatError(f"{what} has a node that was not asked for")
        seen.add(prefix)
        if "children" in raw:
            children = raw["children"]
            if not isinstance(children, bytes) or len(children) != FANOUT * MARK_BYTES:
                raise FormatError(f"{what} has a node with malformed child hashes")
            if len(prefix) >= MAX_DEPTH:
                raise FormatError(f"{what} goes deeper than {MAX_DEPTH} levels")
            nodes.append(Node(prefix, children=children))
            continue
        entries = _parse_entries(raw.get("entries"), prefix, what)
        total += len(entries)
        if total > max_entries:
            raise FormatError(f"{what} lists more than {max_entries} entries")
        nodes.append(Node(prefix, entries=entries))
    return InventoryResponse(tuple(scope), tuple(nodes))


def _parse_entries(raw: object, prefix: str, what: str) -> tuple[Entry, ...]:
    if not isinstance(raw, list) or len(raw) > MAX_LEAF_ENTRIES:
        raise FormatError(f"{what} has a node with a malformed or overlong entry list")
    entries = []
    for item in raw:
        # [slot, version, digest], or a partly held bundle's [slot, version, digest, have]
        if not isinstance(item, list) or len(item) not in (3, 4):
            raise FormatError(f"{what} has a malformed entry")
        slot, version, digest = item[:3]
        have = item[3] if len(item) == 4 else b""
        if not isinstance(slot, bytes) or len(slot) != SLOT_BYTES:
            raise FormatError(f"{what} has an entry with a malformed slot")
        if (
            isinstance(version, bool)
            or not isinstance(version, int)
            or not 1 <= version <= MAX_VERSION
        ):
            raise FormatError(f"{what} has an entry with a malformed version")
        if not isinstance(digest, bytes) or len(digest) != DIGEST_BYTES:
            raise FormatError(f"{what} has an entry with a malformed digest")
        if len(item) == 4 and (not isinstance(have, bytes) or len(have) != HAVE_BYTES):
            raise FormatError(f"{what} has a partial entry with a malformed chunk tag")
        if not slot.hex().startswith(prefix):
            raise FormatError(f"{what} has an entry outside the node it is listed under")
        entries.append(Entry(slot, version, digest, have=have))
    return tuple(entries)


# Batches (3.8, 3.9): many envelopes or chunks in one request, for small bundles.

MAX_BATCH_ENVELOPES = 64  # manifest hashes in one request for envelopes
MAX_BATCH_ENVELOPE_BYTES = 2 * 1024 * 1024  # envelopes in one answer, all told
MAX_BATCH_CHUNKS = 256  # chunk hashes in one request for chunks
MAX_BATCH_CHUNK_BYTES = 4 * 1024 * 1024  # chunks in one answer, all told
MAX_BATCH_REQUEST_BYTES = 16 * 1024  # either request: 256 hashes of 32 bytes, and framing


def encode_digests(digests: Iterable[bytes]) -> bytes:
    return codec.pack(list(digests))


def parse_digests(data: bytes, max_items: int, what: str) -> tuple[bytes, ...]:
    """A batch request: 1 to ``max_items`` distinct 32-byte digests."""
    limits = codec.Limits(
        max_bytes=MAX_BATCH_REQUEST_BYTES, max_depth=1, max_items=max_items, max_bin=SLOT_BYTES
    )
    value = codec.unpack(data, limits, what)
    if not isinstance(value, list) or not 1 <= len(value) <= max_items:
        raise FormatError(f"{what} must name 1 to {max_items} digests")
    if not all(isinstance(d, bytes) and len(d) == DIGEST_BYTES for d in value):
        raise FormatError(f"{what} names a digest that is not 32 bytes")
    if len(set(value)) != len(value):
        raise FormatError(f"{what} names a digest twice")
    return tuple(value)


def encode_envelope_batch(envelopes: Iterable[bytes | None]) -> bytes:
    return codec.pack(list(envelopes))


def parse_envelope_batch(data: bytes, asked: int) -> list[bytes | None]:
    """The answer to a request for ``asked`` envelopes: one item per manifest hash, in
    the order asked, each the envelope as sent (not yet checked) or None (not served
    here); fewer items than asked when the rest did not fit in one answer."""
    what = "a peer's batch of envelopes"
    limits = codec.Limits(
        max_bytes=MAX_BATCH_ENVELOPE_BYTES + 1024,
        max_depth=1,
        max_items=asked,
        max_bin=MAX_BATCH_ENVELOPE_BYTES,
    )
    value = codec.unpack(data, limits, what)
    if not isinstance(value, list) or len(value) > asked:
        raise FormatError(f"{what} has more envelopes than were asked for")
    if not all(item is None or (isinstance(item, bytes) and item) for item in value):
        raise FormatError(f"{what} has an item that is neither an envelope nor nil")
    return value
