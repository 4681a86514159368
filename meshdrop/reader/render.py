"""Turning stored content into what a reader page shows: Markdown rendered on the node,
file kinds, search snippets, and the QR code of the node's address.

Markdown is rendered with markdown-it-py (CommonMark, the library the Python tooling
ecosystem maintains, pure Python) with raw HTML turned off: any HTML in a Markdown file
is shown as text, never as markup, so Markdown is displayed in the reader's own page.
Only links within the node are live; a link to anywhere else stays visible as text.
"""

from __future__ import annotations

import posixpath
import re
from urllib.parse import quote

import segno
from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup

from meshdrop.store.search import HTML_TYPES, MARKDOWN_TYPES

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


def render_markdown(source: str, file_path: str, raw_base: str) -> Markup:
    """HTML for a Markdown file at ``file_path`` in a bundle whose files are served under
    ``raw_base`` (ending in "/"). Relative images load from the bundle's files."""
    tokens = _MARKDOWN.parse(source)
    folder = posixpath.dirname(file_path)
    for token in tokens:
        for child in token.children or ():
            if child.type == "image":
                _point_image(child, folder, raw_base)
    return Markup(_MARKDOWN.renderer.render(tokens, _MARKDOWN.options, {}))  # noqa: S704


def _point_image(token: Token, folder: str, raw_base: str) -> None:
    src = str(token.attrGet("src") or "")
    target = posixpath.normpath(posixpath.join(folder, src.split("#")[0].split("?")[0]))
    if not src or src.startswith("/") or target.startswith(".."):
        token.attrSet("src", "")
        return
    token.attrSet("src", raw_base + quote(target))


def qr_svg(url: str) -> Markup:
    """The URL as a QR code, drawn on the node as inline SVG (no external service)."""
    code = segno.make(url, error="m", micro=False)
    return Markup(code.svg_inline(scale=6, border=2, dark="#000", light="#fff"))  # noqa: S704


def snippet_parts(snippet: str, at: int, length: int) -> tuple[str, str, str]:
    """A search snippet split around the match, for <mark>: (before, match, after)."""
    if at < 0:
        return (snippet, "", "")
    before = ("…" if at > 0 else "") + snippet[:at]
    return (before, snippet[at : at + length], snippet[at + length :] + "…")


def shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
