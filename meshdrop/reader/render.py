"""Turning stored content into what a reader page shows: Markdown rendered on the node,
file kinds, and the QR code of the node's address.

Markdown is rendered with markdown-it-py (CommonMark, the library the Python tooling
ecosystem maintains, pure Python) with raw HTML turned off: any HTML in a Markdown file
is shown as text, never as markup, so Markdown is displayed in the reader's own page.
Only links within the node are live; a link to anywhere else stays visible as text.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import segno
from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup

from meshdrop.core.articletext import HTML_TYPES, MARKDOWN_TYPES

if TYPE_CHECKING:  # links.py uses is_local_link from here
    from meshdrop.reader.links import BundleLinks

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
MAX_RENDERED_BYTES = 2 * 1024 * 1024  # Markdown and text shown in a page; bigger: download


def kind_of(media_type: str) -> str:
    """How the reader shows a file: html, markdown, text, image, audio, video or other."""
    if media_type in HTML_TYPES:
        return "html"
    if media_type in MARKDOWN_TYPES:
        return "markdown"
    if media_type == "text/plain":
        return "text"
    for prefix in ("image", "audio", "video"):
        if media_type.startswith(prefix + "/"):
            return prefix
    return "other"


def is_local_link(url: str) -> bool:
    """A link that stays on this node: relative, no scheme, no other host."""
    url = url.strip()
    return not _SCHEME.match(url) and not url.startswith(("//", "\\", "/\\"))


class _LocalOnly(MarkdownIt):
    def validateLink(self, url: str) -> bool:  # markdown-it's name
        return is_local_link(url)


_MARKDOWN = _LocalOnly("commonmark", {"html": False, "linkify": False, "typographer": False})
_MARKDOWN.enable(["table", "strikethrough"])


def render_markdown(source: str, file_path: str, links: BundleLinks) -> Markup:
    """HTML for a Markdown file at ``file_path`` in a bundle whose files ``links`` names:
    relative links lead to the bundle's articles, images load from its files, each by
    its opaque URL; a reference to anything else is dropped (the link text stays)."""
    tokens = _MARKDOWN.parse(source)
    for token in tokens:
        for child in token.children or ():
            if child.type == "image":
                _point(child, "src", links.resolve(_attr(child, "src"), file_path, False))
            elif child.type == "link_open":
                _point(child, "href", links.resolve(_attr(child, "href"), file_path, True))
    return Markup(_MARKDOWN.renderer.render(tokens, _MARKDOWN.options, {}))  # noqa: S704


def _attr(token: Token, name: str) -> str:
    return str(token.attrGet(name) or "")


def _point(token: Token, name: str, url: str | None) -> None:
    if url is not None:
        token.attrSet(name, url)
    elif name == "src":
        token.attrSet("src", "")  # an image of nothing
    else:
        token.attrs.pop(name, None)  # the link text stays, inert


def qr_svg(url: str) -> Markup:
    """The URL as a QR code, drawn on the node as inline SVG (no external service)."""
    code = segno.make(url, error="m", micro=False)
    return Markup(code.svg_inline(scale=6, border=2, dark="#000", light="#fff"))  # noqa: S704


def shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
