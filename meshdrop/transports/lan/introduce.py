"""A hello that introduces the caller (docs/PROTOCOL.md section 3.1): the query of
``GET /peer/v1/hello?node=...&digest=...&port=...``. Pure: values in, text out, and
back, with FormatError for anything malformed.

With it the called node learns who asked (its node id), where that node serves (the
caller's address as seen on the connection, and the port given here) and what it holds
(its inventory digest). So a node that names no peers (a hotspot whose clients cannot
see each other) pulls from the nodes that reach it, and a hello sent as soon as a node's
inventory changed tells its peers to sync now. A server that ignores the query (an
older or simpler peer) still answers a plain hello.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from meshdrop.core.inventory import MARK_BYTES
from meshdrop.errors import FormatError

_NODE = re.compile(r"(?:[0-9a-f]{2}){1,32}")
_DIGEST = re.compile(rf"[0-9a-f]{{{2 * MARK_BYTES}}}")
_PORT = re.compile(r"[1-9][0-9]{0,4}")
KEYS = frozenset({"node", "digest", "port"})


@dataclass(frozen=True)
class Introduction:
    node: bytes  # the caller's node id (1 to 32 bytes, random per start)
    digest: bytes  # the caller's inventory digest (MARK_BYTES)
    port: int  # the TCP port the caller serves the peer API on


def encode_query(intro: Introduction) -> str:
    """The query string, with its leading ``?``."""
    return f"?node={intro.node.hex()}&digest={intro.digest.hex()}&port={intro.port}"


def parse_query(query: Mapping[str, str], keys: int | None = None) -> Introduction | None:
    """The introduction in a hello's query parameters, None if there is none. ``keys`` is
    how many parameters the query had in all (repeats counted), when the caller's
    mapping folds repeats. FormatError if any parameter is missing, unknown, repeated or
    malformed."""
    if not query:
        return None
    if set(query) != KEYS or (keys is not None and keys != len(KEYS)):
        raise FormatError("a hello's query must have exactly node, digest and port")
    node, digest, port = query["node"], query["digest"], query["port"]
    if not _NODE.fullmatch(node):
        raise FormatError("a hello's query has a malformed node id")
    if not _DIGEST.fullmatch(digest):
        raise FormatError("a hello's query has a malformed digest")
    if not _PORT.fullmatch(port) or int(port) > 65535:
        raise FormatError("a hello's query has a malformed port")
    return Introduction(bytes.fromhex(node), bytes.fromhex(digest), int(port))
