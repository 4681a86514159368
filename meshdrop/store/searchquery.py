"""Questions to the search index (store/searchindex.py builds it): the files that match
what a person typed, best first, each with a clean snippet around its first match; and
the article titles of one bundle."""

from __future__ import annotations

import codecs
import re
import sqlite3
import zlib
from dataclasses import dataclass

from meshdrop.core.searchterms import MAX_TERM_CHARS, is_cjk, match_expression, query_words

SNIPPET_CHARS = 200
SNIPPET_BEFORE = 60
READ_STEP = 4096  # bytes of text decompressed at a time for a snippet
WEIGHTS = (10.0, 5.0, 1.0)  # bm25 weights of title, path, body

HITS = """
WITH hits AS (
    SELECT rowid AS id, bm25(words, ?, ?, ?) AS score FROM words
    WHERE words MATCH ? ORDER BY score LIMIT ?
)
SELECT b.publisher, b.name, b.version, f.path, f.title, f.text
FROM hits JOIN files f ON f.id = hits.id JOIN bundles b ON b.id = f.bundle
ORDER BY hits.score
"""


@dataclass(frozen=True)
class FileHit:
    publisher: str  # fingerprint
    name: str  # bundle name
    version: int
    path: str  # "" for the bundle itself (its title or description matched)
    title: str  # the article's title, "" if it names none
    before: str  # the snippet: text before the match ("…" where it was cut)
    match: str  # the first match in the text ("" if only the title or path matched)
    after: str

    @property
    def snippet(self) -> tuple[str, str, str]:
        return (self.before, self.match, self.after)


def search(conn: sqlite3.Connection, query: str, limit: int = 100) -> list[FileHit]:
    """Files whose title, path or text hold every term of ``query``, best first."""
    expression = match_expression(query)
    if expression is None:
        return []
    finder = Finder(query)
    rows = conn.execute(HITS, (*WEIGHTS, expression, limit)).fetchall()
    return [
        FileHit(publisher, name, version, path, title, *snippet(*_text(blob, finder)))
        for publisher, name, version, path, title, blob in rows
    ]


def titles(conn: sqlite3.Connection, publisher: str, name: str, version: int) -> dict[str, str]:
    """path -> article title for the bundle's files that name one ({} if not indexed)."""
    rows = conn.execute(
        "SELECT f.path, f.title FROM files f JOIN bundles b ON b.id = f.bundle "
        "WHERE b.publisher = ? AND b.name = ? AND b.version = ? AND f.path != '' "
        "AND f.title != ''",
        (publisher, name, version),
    )
    return dict(rows.fetchall())


def _text(blob: bytes, finder: Finder) -> tuple[str, bool, tuple[int, int] | None]:
    """The part of the stored text the snippet needs, whether text before it was left
    out, and where the first match is in it. Decompressed a piece at a time until
    SNIPPET_CHARS past the first match: most matches come early, and one at the end of
    a huge text is not copied around."""
    inflate = zlib.decompressobj()
    decode = codecs.getincrementaldecoder("utf-8")()
    previous = ""  # the piece before, kept for the text before a match
    first = ""  # the text's start: the snippet if no word is in the text
    left_out = 0
    found: tuple[int, int] | None = None
    pending = blob
    while True:
        piece = inflate.decompress(pending, READ_STEP)
        pending = inflate.unconsumed_tail
        done = not pending and (inflate.eof or not piece)
        window = previous + decode.decode(piece, final=done)
        first = first or window
        if found is None and finder.words:
            # A match across the two pieces starts within the last term's length.
            found = finder.search(window, max(0, len(previous) - MAX_TERM_CHARS))
        needed = SNIPPET_CHARS if found is None else found[1] + SNIPPET_CHARS
        if done and found is None:
            return first, False, None
        if done or (len(window) >= needed and (found is not None or not finder.words)):
            return window, left_out > 0, found
        if found is None:
            left_out += len(previous)
            window = window[len(previous) :]
        previous = window


class Finder:
    """Where the first of a query's words is in a text: a Latin word at the start of a
    word (the index's prefix query), a CJK run anywhere; case does not matter."""

    def __init__(self, query: str) -> None:
        self.words = [(w.lower(), is_cjk(w)) for w in query_words(query)]
        # For the rare text whose lower case changes its length (then str.find's offsets
        # would not be the text's).
        latin = [re.escape(w) if cjk else r"(?<![^\W_])" + re.escape(w) for w, cjk in self.words]
        self.pattern = re.compile("|".join(latin), re.IGNORECASE)

    def search(self, text: str, pos: int = 0) -> tuple[int, int] | None:
        if not self.words:
            return None
        lowered = text.lower()
        if len(lowered) != len(text):
            found = self.pattern.search(text, pos)
            return (found.start(), found.end()) if found else None
        best: tuple[int, int] | None = None
        for word, cjk in self.words:
            at = lowered.find(word, pos)
            while at > 0 and not cjk and (lowered[at - 1].isalnum() or lowered[at - 1] == "_"):
                at = lowered.find(word, at + 1)
            if at >= 0 and (best is None or at < best[0]):
                best = (at, at + len(word))
        return best


def snippet(text: str, left_out: bool, found: tuple[int, int] | None) -> tuple[str, str, str]:
    """About SNIPPET_CHARS of ``text`` around the match ``found`` (start, end): (before,
    match, after), on one line, cut at spaces where it can be (``left_out``: some text
    came before ``text``)."""
    if found is None:
        start, at, end = 0, min(len(text), SNIPPET_CHARS), min(len(text), SNIPPET_CHARS)
    else:
        at, end = found
        start = max(0, at - SNIPPET_BEFORE)
        if start > 0:
            space = text.find(" ", start, at)
            start = space + 1 if space >= 0 else start
    stop = max(end, start + SNIPPET_CHARS)
    if stop < len(text):
        space = text.rfind(" ", end, stop)
        stop = space if space > end else stop
    before = ("…" if start > 0 or left_out else "") + _one_line(text[start:at])
    after = _one_line(text[end:stop]) + ("…" if stop < len(text) else "")
    if found is None:
        return before + after, "", ""
    return before, _one_line(text[at:end]), after


def _one_line(text: str) -> str:
    # Keep the spaces at the ends: they separate the snippet's parts from the match.
    return text.replace("\n", " ")
