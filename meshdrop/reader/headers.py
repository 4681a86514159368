"""The headers that keep readers safe: Content-Security-Policy for the reader's own pages
and for publisher content, and the rest of what every answer carries.

Reader pages (templates the node renders) run no script at all, frame nothing and load
only from the node itself. Every publisher file (the article view of an HTML file, which
is the publisher's page itself, and every raw file) is served with a per-bundle CSP
(``publisher_csp``): ``sandbox`` makes it a document of a unique, opaque origin that
cannot run script, submit forms, open windows or navigate other frames; images, media,
styles and fonts load only from this bundle's own file URLs (``/b/<bid>/f/``), so a page
cannot load another bundle's files, even by an address it learned; nothing may frame it.
Its HTML is rewritten first (sanitize.py), so no link, hint or address in it leads off
the node.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from urllib.parse import quote

READER_CSP = (
    "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-src 'none'; frame-ancestors 'none'"
)


def write_page_csp(origin: str | None, script_url: str) -> str:
    """The write page's CSP: the reader's, except that it may run the one sealing script
    (static/seal.js at its hashed URL); every other reader page runs none. A source with a
    path needs a host, hence the origin; without one, ``'self'``."""
    script = f"{origin}{script_url}" if origin else "'self'"
    return READER_CSP.replace("script-src 'none'", f"script-src {script}")


def publisher_csp(origin: str | None, bid: str) -> str:
    """The CSP of every answer with a publisher's content, for the bundle ``bid`` on the
    node reached at ``origin`` (``scheme://host[:port]``). CSP source expressions with a
    path need a host, hence the origin; without one (``None``), ``'self'`` (any file of
    this node) is the fallback."""
    files = f"{origin}/b/{bid}/f/" if origin else "'self'"
    return (
        f"sandbox; default-src 'none'; img-src {files}; media-src {files}; "
        f"style-src {files} 'unsafe-inline'; font-src {files}; form-action 'none'; "
        "base-uri 'none'; frame-ancestors 'none'"
    )


COMMON: Mapping[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # What was read must not linger in the browser's disk cache of a phone that may be
    # searched (the static assets, which say nothing about reading, are the exception).
    "Cache-Control": "no-store",
    # No speculative DNS look-ups for host names a page mentions (sanitize.py removes
    # off-node links from publisher HTML; this covers whatever a browser still guesses).
    "X-DNS-Prefetch-Control": "off",
}
PAGE: Mapping[str, str] = {
    **COMMON,
    "Content-Security-Policy": READER_CSP,
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Vary": "Accept-Language, Cookie",
}
PUBLISHER: Mapping[str, str] = {  # with publisher_csp() beside it
    **COMMON,
    "X-Frame-Options": "DENY",
    "Accept-Ranges": "bytes",
}
# Kept by no browser either: a cached stylesheet would tell whoever searches a phone that
# it visited this node (a few KB fetched again per page is nothing on a LAN).
STATIC: Mapping[str, str] = {
    **COMMON,
    "Content-Security-Policy": "default-src 'none'",
}

# Media types a browser shows in place; anything else is sent as a download, so that a
# publisher file never opens in a plug-in or a viewer with its own rules (PDF viewers).
_INLINE_PREFIXES = ("image/", "audio/", "video/")
_INLINE_TYPES = frozenset(
    {"text/html", "application/xhtml+xml", "text/plain", "text/markdown", "text/css"}
)


# SVG is a document with links of its own: opened at its raw address it could take a tap
# off the node, so it is only ever a download there (an <img> still shows it).
_NEVER_INLINE = frozenset({"image/svg+xml"})


def shows_inline(media_type: str) -> bool:
    if media_type in _NEVER_INLINE:
        return False
    return media_type in _INLINE_TYPES or media_type.startswith(_INLINE_PREFIXES)


def content_type(media_type: str) -> str:
    """The Content-Type for a publisher file: its signed media type; text is UTF-8."""
    if media_type.startswith("text/"):
        return f"{media_type}; charset=utf-8"
    return media_type


def content_disposition(path: str, attachment: bool) -> str:
    """``inline`` or ``attachment`` with the file's own name: an ASCII fallback and the
    exact name as RFC 5987 / RFC 6266 ``filename*``."""
    name = path.rsplit("/", 1)[-1]
    fallback = "".join(_ascii_for(ch) for ch in name)
    kind = "attachment" if attachment else "inline"
    return f"{kind}; filename=\"{fallback or 'download'}\"; filename*=UTF-8''{quote(name, safe='')}"


def _ascii_for(ch: str) -> str:
    """An ASCII stand-in for one character of a file name: é -> e, 안 -> _."""
    plain = "".join(
        c for c in unicodedata.normalize("NFKD", ch) if c.isascii() and not unicodedata.combining(c)
    )
    if plain and all(0x20 < ord(c) < 0x7F and c not in '"\\%;' for c in plain):
        return plain
    return "_"
