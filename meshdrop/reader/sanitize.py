"""Publisher HTML rewritten as it is served, so that a page can make the browser contact
nothing beyond this node: no resource hints, no script, no forms, frames, ``<base>`` or
meta refresh, no ``<link>`` but a stylesheet of the same bundle, no URL leaving the
bundle, and every link off the node turned into inert text with its address shown for
copying (Chromium looks a host up and opens a connection as soon as such a link is
tapped, even when the navigation itself is then refused).

Every reference that stays in the bundle becomes the target file's opaque URL (links.py):
``<a href>`` its article view, src and stylesheet hrefs the file itself; CSS url() in
``<style>`` and ``style=`` likewise; a reference to a path the bundle does not hold is
dropped. The publisher's ``<title>`` is dropped too (it would name the article in the
browser's history); the reader gives the page its neutral one.

The sanitizer is nh3 (Python bindings of Ammonia, html5ever's parser): an allow-list, so
whatever it does not know is dropped. ``<style>``, ``style=`` and the viewport meta are
allowed on purpose; the publisher CSP (headers.py) keeps CSS from loading anything off
the node.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import nh3

from meshdrop.reader.links import BundleLinks, rewrite_css, stays_in_bundle
from meshdrop.reader.render import is_local_link

MAX_REWRITTEN_BYTES = 2 * 1024 * 1024  # bigger publisher HTML is sent as a download

_TAGS = (nh3.ALLOWED_TAGS | {"style", "meta", "link", "main", "section"}) - {"area", "map"}
_ATTRIBUTES: dict[str, set[str]] = {
    **{tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()},
    "*": {"class", "id", "lang", "dir", "title", "style"},
    "meta": {"name", "content"},
    "link": {"rel", "href", "media", "type"},
}
_ATTRIBUTES["a"] = {"href"}  # hreflang, ping, download, target... are gone
_DROPPED_WITH_CONTENT = (
    "script",
    "template",
    "noscript",
    "iframe",
    "object",
    "svg",
    "math",
    "title",
)
_URL_ATTRIBUTES = frozenset({"href", "src", "cite"})
_ADDRESS_LIKE = re.compile(r"url|:|//", re.IGNORECASE)
_META_NAMES = frozenset({"viewport", "description", "author", "color-scheme"})
# Scheme'd URLs must pass Ammonia's scheme check to reach the filter below, where an
# off-node link is kept (marked) to be shown as text; anything else is dropped there.
_SCHEMES = frozenset({"http", "https", "ftp", "mailto", "tel", "sms", "geo", "magnet"})
_OFF_NODE = "#\x00off-node:"  # a mark no real href has (html5ever turns NUL into U+FFFD)
_DOCUMENT_START = '<!doctype html>\n<meta charset="utf-8">\n'
_STYLE_BLOCK = re.compile(r"(<style\b[^>]*>)(.*?)(</style>)", re.IGNORECASE | re.DOTALL)
# Where a reference leads: a link is read (the article view); anything else is loaded.
_RAW_FILE_ATTRIBUTES = frozenset({"src"})


def rewrite_html(
    source: bytes, file_path: str, links: BundleLinks, top: str = "", end: str = ""
) -> bytes:
    """The publisher's HTML file at ``file_path`` (within its bundle) as served: a whole
    UTF-8 document, with only what stays within the bundle still live, pointing at the
    bundle's opaque URLs; ``top`` and ``end`` (reader markup, trusted) are put before
    and after the publisher's content."""
    text = source.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    marked = _clean(text, file_path, None, mark_off_node=True)
    cleaned = _clean(_show_off_node_links(marked), file_path, links)
    styled = _STYLE_BLOCK.sub(
        lambda m: m.group(1) + rewrite_css(m.group(2), file_path, links) + m.group(3), cleaned
    )
    return (_DOCUMENT_START + top + styled + end).encode("utf-8")


def _clean(
    text: str, file_path: str, links: BundleLinks | None, mark_off_node: bool = False
) -> str:
    """One sanitizer pass. Without ``links`` (the first pass) in-bundle references are
    kept as written; with them, each becomes its opaque URL or is dropped."""
    folder = file_path.rsplit("/", 1)[0] if "/" in file_path else ""

    def keep(tag: str, attribute: str, value: str) -> str | None:
        if attribute == "style" and links is not None:
            return rewrite_css(value, file_path, links)
        if tag == "meta" and attribute == "name":
            return value if value.strip().lower() in _META_NAMES else None
        if tag == "meta" and attribute == "content" and _ADDRESS_LIKE.search(value):
            return None  # what was a refresh or a link header: its name= is gone already
        if tag == "link" and attribute == "rel":
            return "stylesheet" if value.strip().lower() == "stylesheet" else None
        if attribute not in _URL_ATTRIBUTES:
            return value
        if stays_in_bundle(value, folder):
            if links is None:
                return value
            loaded = tag == "link" or attribute in _RAW_FILE_ATTRIBUTES
            return links.resolve(value, file_path, as_article=not loaded)
        if mark_off_node and tag == "a" and attribute == "href" and not is_local_link(value):
            return _OFF_NODE + value.strip()
        return None

    return nh3.clean(
        text,
        tags=set(_TAGS),
        clean_content_tags=set(_DROPPED_WITH_CONTENT),
        attributes=_ATTRIBUTES,
        attribute_filter=keep,
        url_schemes=set(_SCHEMES),
        strip_comments=True,
        link_rel=None,
    )


class _OffNodeLinks(HTMLParser):
    """Re-writes sanitized HTML with each marked link made inert (no href) and followed
    by its address as text. Its output goes through the sanitizer once more."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.address: str | None = None  # of the off-node link we are inside
        self.link_text: list[str] = []
        self.raw_text = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        kept = []
        for name, value in attrs:
            if tag == "a" and name == "href" and value and value.startswith(_OFF_NODE):
                self.address, self.link_text = value[len(_OFF_NODE) :], []
                continue
            kept.append(f' {name}="{html.escape(value or "")}"')
        self.out.append(f"<{tag}{''.join(kept)}>")
        self.raw_text = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self.out.append(f"</{tag}>")
        self.raw_text = False
        if tag == "a" and self.address is not None:
            if "".join(self.link_text).strip() != self.address:
                self.out.append(f' <span class="off-node">({html.escape(self.address)})</span>')
            self.address = None

    def handle_data(self, data: str) -> None:
        self.out.append(data if self.raw_text else html.escape(data, quote=False))
        if self.address is not None:
            self.link_text.append(data)


def _show_off_node_links(cleaned: str) -> str:
    parser = _OffNodeLinks()
    parser.feed(cleaned)
    parser.close()
    return "".join(parser.out)
