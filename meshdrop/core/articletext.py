"""The readable text and the title of an article file (HTML, Markdown or plain text),
for the search index and the reader's headings. Pure: source text in, text out.

Block elements become line breaks, so that words of two paragraphs, cells or list items
never glue together ("pay" + "EN" is not "payEN"); scripts, styles and the like are not
text. The HTML ``<title>`` is the title and is kept out of the body text.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from html.parser import HTMLParser

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
MARKDOWN_TYPES = frozenset({"text/markdown", "text/x-markdown"})
PLAIN_TYPES = frozenset({"text/plain"})
TEXT_TYPES = HTML_TYPES | MARKDOWN_TYPES | PLAIN_TYPES
TITLE_CHARS = 300

_SKIPPED = frozenset({"script", "style", "template", "svg", "math", "noscript", "title"})
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "caption", "dd", "details", "div",
        "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3",
        "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section",
        "summary", "table", "td", "th", "tr", "ul",
    }
)  # fmt: skip
_HEADINGS = ("h1", "h2")


@dataclass(frozen=True)
class Article:
    title: str  # "" if the file names none
    text: str  # lines of words: one block a line, spaces squeezed


class _TextOnly(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.in_title = False
        self.title: list[str] = []
        self.heading: list[str] | None = None  # the first h1/h2, while it is read
        self.first_heading = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self.skipping += 1
            self.in_title = tag == "title" and not self.title
        elif tag in _BLOCKS:
            self.parts.append("\n")
        if tag in _HEADINGS and not self.first_heading and self.heading is None:
            self.heading = []

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED and self.skipping:
            self.skipping -= 1
            self.in_title = False
        elif tag in _BLOCKS:
            self.parts.append("\n")
        if tag in _HEADINGS and self.heading is not None:
            self.first_heading = _one_line("".join(self.heading))
            self.heading = None

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        if self.skipping:
            return
        self.parts.append(data)
        if self.heading is not None:
            self.heading.append(data)


def html_article(source: str) -> Article:
    parser = _TextOnly()
    parser.feed(source)
    parser.close()
    title = _one_line("".join(parser.title)) or parser.first_heading
    return Article(title[:TITLE_CHARS], squeeze("".join(parser.parts)))


def html_to_text(source: str) -> str:
    return html_article(source).text


_MD_IMAGE_OR_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MD_MARKS = re.compile(r"^\s{0,3}(?:#{1,6}\s+|>\s?|[-*+]\s+|\d+[.)]\s+)|[*_`~]{1,3}", re.MULTILINE)
_MD_TAGS = re.compile(r"<[^>\n]{1,200}>")
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


def markdown_to_text(source: str) -> str:
    text = _MD_IMAGE_OR_LINK.sub(r"\1", source)
    text = _MD_MARKS.sub("", text)
    text = _MD_TAGS.sub("", text)
    return squeeze(html.unescape(text))


def markdown_title(source: str) -> str:
    found = _MD_HEADING.search(source)
    return markdown_to_text(found.group(1)).replace("\n", " ")[:TITLE_CHARS] if found else ""


def plain_text(source: str) -> str:
    return squeeze(source)


def article(media_type: str, source: str) -> Article:
    """The title and text of a file of ``media_type`` (one of TEXT_TYPES)."""
    if media_type in HTML_TYPES:
        return html_article(source)
    if media_type in MARKDOWN_TYPES:
        return Article(markdown_title(source), markdown_to_text(source))
    return Article("", plain_text(source))


def article_title(media_type: str, text: str) -> str:
    """HTML: its <title>, else its first h1/h2; Markdown: its first heading; else ""."""
    if media_type in HTML_TYPES:
        return html_article(text).title
    if media_type in MARKDOWN_TYPES:
        return markdown_title(text)
    return ""


def squeeze(text: str) -> str:
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _one_line(text: str) -> str:
    return " ".join(text.split())
