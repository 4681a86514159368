"""The headers that keep readers safe: Content-Security-Policy for the reader's own pages
and for publisher content, and the rest of what every answer carries.

Reader pages (templates the node renders) run no script at all and load only from the
node itself. Publisher files are served with a CSP ``sandbox`` policy: even opened
directly, a publisher page is a document of a unique, opaque origin that cannot run
script, submit forms, open windows or navigate the top page, and may load only images,
media and styles from this node; its HTML is rewritten first (sanitize.py), so no link,
hint or address in it leads off the node. In the reader they are shown in an ``<iframe sandbox>``
(no allow-* tokens), and the reader page's ``frame-src 'self'`` stops the frame from being
navigated to any other host, even by a click on a link the publisher wrote.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from urllib.parse import quote

READER_CSP = (
    "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-src 'self'; frame-ancestors 'none'"
)
PUBLISHER_CSP = (
    "sandbox; default-src 'none'; img-src 'self'; media-src 'self'; "
    "style-src 'self' 'unsafe-inline'; form-action 'none'; base-uri 'none'; "
    "frame-ancestors 'self'"
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
PUBLISHER: Mapping[str, str] = {
    **COMMON,
    "Content-Security-Policy": PUBLISHER_CSP,
    "X-Frame-Options": "SAMEORIGIN",
    "Accept-Ranges": "bytes",
}
STATIC: Mapping[str, str] = {
    **COMMON,
    "Content-Security-Policy": "default-src 'none'",
    "Cache-Control": "public, max-age=31536000, immutable",
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
