"""Full-text search over what the node holds: titles, descriptions and article text, in an
SQLite FTS5 table inside the store's index.

The table uses FTS5's ``trigram`` tokenizer: it matches any substring of three or more
characters in any script, so Korean (where a word carries particles and has no spaces
to split on) matches as readily as English, without a language-specific word splitter.
Terms shorter than three characters (common in Korean: 여권, 임금) cannot use the trigram
index; they are matched with LIKE, which scans the (capped) text.

Indexing happens inside the commit's transaction (``Store._commit`` calls
``index_bundle``), so a bundle becomes searchable exactly when it becomes visible, and
never before. ``backfill`` indexes bundles committed before this table existed. Rows are
keyed by ``bundles.id``; a row whose bundle is gone is harmless (the reader keeps only
hits on bundles it shows) and ``backfill`` purges such rows.

Only the start of each text file is indexed (FILE_TEXT_CAP, BUNDLE_TEXT_CAP), so
indexing costs little at commit time and a huge article cannot bloat the index.
"""

from __future__ import annotations

import html
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import TYPE_CHECKING

from meshdrop.core.bundle import parse_envelope
from meshdrop.core.manifest import FileEntry, Manifest, parse_manifest
from meshdrop.store.chunks import ChunkStore

if TYPE_CHECKING:
    from meshdrop.store.db import Database

TABLE = "bundle_text"
FILE_TEXT_CAP = 20_000  # characters of text indexed per file
BUNDLE_TEXT_CAP = 200_000  # characters of text indexed per bundle
MAX_TEXT_FILES = 200  # text files read per bundle
MAX_READ_BYTES = 16 * 1024 * 1024  # chunk bytes read per bundle (inside the commit)
MAX_TERMS = 8
MAX_TERM_CHARS = 64
TRIGRAM = 3  # shortest term the trigram index can answer
SNIPPET_BEFORE = 60
SNIPPET_CHARS = 200
BACKFILL_BATCH = 20

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
MARKDOWN_TYPES = frozenset({"text/markdown", "text/x-markdown"})
PLAIN_TYPES = frozenset({"text/plain"})
TEXT_TYPES = HTML_TYPES | MARKDOWN_TYPES | PLAIN_TYPES

_CREATE = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {TABLE} "
    "USING fts5(title, description, body, tokenize='trigram')"
)


# Each hit with where the first term starts in its text, and the text around it.
_SELECT_HITS = (
    "SELECT rowid, instr(lower(body), ?), substr(body, max(1, instr(lower(body), ?) - ?), ?) "  # noqa: S608 (a constant; values are parameters)
    f"FROM {TABLE} WHERE"
)


@dataclass(frozen=True)
class Hit:
    bundle_id: int
    snippet: str  # plain text around the first match in the article text, or ""
    match_at: int  # where the first term starts in ``snippet`` (-1: not in the text)
    match_len: int


def ensure_table(conn: sqlite3.Connection) -> bool:
    """Create the search table if needed; False if this SQLite has no FTS5 (search then
    falls back to titles and descriptions in the reader)."""
    try:
        conn.execute(_CREATE)
    except sqlite3.OperationalError:
        return False
    return True


def has_table(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (TABLE,)).fetchone()
    return row is not None


def index_bundle(conn: sqlite3.Connection, chunks: ChunkStore, manifest: Manifest) -> None:
    """Index the committed bundle ``manifest`` describes, in the caller's transaction."""
    if not ensure_table(conn):
        return
    row = conn.execute(
        "SELECT id FROM bundles WHERE publisher = ? AND name = ?",
        (manifest.publisher, manifest.name),
    ).fetchone()
    if row is not None:
        _write_row(conn, row[0], manifest, bundle_text(chunks, manifest))


def _write_row(conn: sqlite3.Connection, bundle_id: int, manifest: Manifest, body: str) -> None:
    # Bundle ids can be reused after a delete: drop whatever row held this id before.
    conn.execute(f"DELETE FROM {TABLE} WHERE rowid = ?", (bundle_id,))  # noqa: S608 (constant)
    conn.execute(
        f"INSERT INTO {TABLE} (rowid, title, description, body) VALUES (?, ?, ?, ?)",  # noqa: S608
        (bundle_id, manifest.title, manifest.description, body),
    )


def backfill(db: Database, chunks: ChunkStore) -> int:
    """Index committed bundles the table does not cover yet (stored before search
    existed) and drop rows of bundles that are gone. Returns how many it indexed."""
    if not purge(db):
        return 0
    done = 0
    while True:
        count = index_some(db, chunks)
        done += count
        if count < BACKFILL_BATCH:
            return done


def purge(db: Database) -> bool:
    """Drop rows of bundles that are gone; False if this SQLite has no FTS5."""
    with db.write_lock(), db.transaction() as conn:
        if not ensure_table(conn):
            return False
        conn.execute(
            f"DELETE FROM {TABLE} WHERE rowid NOT IN (SELECT id FROM bundles)"  # noqa: S608
        )
    return True


def index_some(db: Database, chunks: ChunkStore, limit: int = BACKFILL_BATCH) -> int:
    """Index up to ``limit`` bundles the table does not cover yet, in one transaction."""
    with db.write_lock(), db.transaction() as conn:
        rows = conn.execute(
            f"SELECT id, name, envelope FROM bundles WHERE id NOT IN "  # noqa: S608
            f"(SELECT rowid FROM {TABLE}) ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        for bundle_id, name, envelope in rows:
            manifest = parse_manifest(parse_envelope(envelope, name).manifest_bytes)
            _write_row(conn, bundle_id, manifest, bundle_text(chunks, manifest))
    return len(rows)


def bundle_text(chunks: ChunkStore, manifest: Manifest) -> str:
    """The searchable text of a bundle's articles: each text file's start, tags and
    Markdown syntax removed, within the caps."""
    parts: list[str] = []
    total = 0
    read = 0
    for entry in _text_files(manifest):
        read += entry.chunk_sizes()[0]
        if read > MAX_READ_BYTES:
            break
        text = file_text(chunks, entry)
        if not text:
            continue
        text = text[: min(FILE_TEXT_CAP, BUNDLE_TEXT_CAP - total)]
        parts.append(text)
        total += len(text) + 1
        if total >= BUNDLE_TEXT_CAP:
            break
    return "\n".join(parts)


def _text_files(manifest: Manifest) -> Iterator[FileEntry]:
    found = (f for f in manifest.files if f.media_type in TEXT_TYPES and f.size > 0)
    for count, entry in enumerate(found):
        if count >= MAX_TEXT_FILES:
            return
        yield entry


def file_text(chunks: ChunkStore, entry: FileEntry) -> str:
    """The text of one file, from its first chunk only (more than the cap holds);
    "" if that chunk is missing or damaged."""
    data = chunks.read(entry.chunks[0])
    if data is None:
        return ""
    raw = data[: FILE_TEXT_CAP * 4].decode("utf-8", errors="ignore")  # 4 bytes a character
    try:
        return _to_text(entry.media_type, raw)
    except Exception:  # a parser's surprise must never refuse a verified bundle
        return _squeeze(raw)


def _to_text(media_type: str, raw: str) -> str:
    if media_type in HTML_TYPES:
        return html_to_text(raw)
    if media_type in MARKDOWN_TYPES:
        return markdown_to_text(raw)
    return _squeeze(raw)


class _TextOnly(HTMLParser):
    SKIPPED = frozenset({"script", "style", "template", "svg", "math"})
    BREAKS = frozenset(
        {"p", "br", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIPPED:
            self.skipping += 1
        elif tag in self.BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIPPED and self.skipping:
            self.skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def html_to_text(source: str) -> str:
    parser = _TextOnly()
    parser.feed(source)
    parser.close()
    return _squeeze("".join(parser.parts))


_MD_IMAGE_OR_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MD_MARKS = re.compile(r"^\s{0,3}(?:#{1,6}\s+|>\s?|[-*+]\s+|\d+[.)]\s+)|[*_`~]{1,3}", re.MULTILINE)
_MD_TAGS = re.compile(r"<[^>\n]{1,200}>")


def markdown_to_text(source: str) -> str:
    text = _MD_IMAGE_OR_LINK.sub(r"\1", source)
    text = _MD_MARKS.sub("", text)
    text = _MD_TAGS.sub("", text)
    return _squeeze(html.unescape(text))


def _squeeze(text: str) -> str:
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def search(conn: sqlite3.Connection, query: str, limit: int = 100) -> list[Hit] | None:
    """Bundles whose title, description or text contain every term of ``query`` (case
    does not matter for Latin letters), best first; None if there is no search table."""
    if not has_table(conn):
        return None
    terms = query_terms(query)
    if not terms:
        return []
    long_terms = [t for t in terms if len(t) >= TRIGRAM]
    short_terms = [t for t in terms if len(t) < TRIGRAM]
    where: list[str] = []
    params: list[object] = []
    if long_terms:
        where.append(f"{TABLE} MATCH ?")
        params.append(" ".join('"' + t.replace('"', '""') + '"' for t in long_terms))
    for term in short_terms:
        pattern = "%" + re.sub(r"([\\%_])", r"\\\1", term) + "%"
        where.append(
            "(title LIKE ? ESCAPE '\\' OR description LIKE ? ESCAPE '\\' "
            "OR body LIKE ? ESCAPE '\\')"
        )
        params += [pattern, pattern, pattern]
    first = terms[0].lower()
    order = "rank" if long_terms else "rowid DESC"
    sql = " ".join((_SELECT_HITS, " AND ".join(where), "ORDER BY", order, "LIMIT ?"))
    rows = conn.execute(sql, [first, first, SNIPPET_BEFORE, SNIPPET_CHARS, *params, limit])
    return [_hit(bundle_id, pos, text or "", first) for bundle_id, pos, text in rows]


def query_terms(query: str) -> list[str]:
    return [t[:MAX_TERM_CHARS] for t in query.split()][:MAX_TERMS]


def _hit(bundle_id: int, pos: int, text: str, term: str) -> Hit:
    if not pos:
        return Hit(bundle_id, "", -1, 0)
    snippet = " ".join(text.split())
    at = snippet.lower().find(term)
    return Hit(bundle_id, snippet, at, len(term) if at >= 0 else 0)
