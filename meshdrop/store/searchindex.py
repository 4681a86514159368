"""The search index: ``<home>/search.sqlite``, built from the store, apart from it.

It is DERIVED data: deleting the file loses nothing (the next ``catch_up`` indexes every
stored bundle again). It is written only by ``catch_up``, which the reader runs in a
process of its own (HTML parsing holds the GIL), never inside an import's commit, so a
bundle becomes searchable shortly after it becomes visible; the reader shows only hits
on bundles it shows, at the same version.

One row per FILE of each committed bundle (and one for the bundle itself, path "":
its title and description), in table ``files``: its path, its article title, and its
clean text (zlib-compressed, for snippets). The FTS5 table ``words`` (contentless,
tokenizer unicode61) indexes title, path and text as ``core.searchterms.index_terms``
writes them (CJK as bigrams); bm25 ranks a title match above a path match above a body
match. A contentless table forgets what it indexed, so a row is deleted by giving the
same terms again, computed from the stored text (``_drop_bundle``).

Caps, set by measurement (scripts/bench_search.py and a one-file run, 2 shared cores,
generated Korean and English articles): indexing runs at about 5-6 MB of text a second
(1,000 bundles of 200,000 characters, 305 MB: 53 s) and the index takes about 0.5 byte
per byte of text, compressed text included; a 4,000,000-character file (6 MB) takes about
1 s and 160 MB of memory in the indexing process. So a whole article is indexed up to
FILE_TEXT_CAP characters (far beyond any article), a bundle up to BUNDLE_TEXT_CAP; a file
over the cap is indexed up to it.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import sys
import unicodedata
import zlib
from collections.abc import Iterator
from pathlib import Path

from meshdrop.core.articletext import TEXT_TYPES, Article, article
from meshdrop.core.manifest import FileEntry, Manifest
from meshdrop.core.searchterms import index_terms
from meshdrop.core.storekeys import StoreKeys
from meshdrop.errors import MeshdropError, StoreError
from meshdrop.store import sealing
from meshdrop.store.chunks import ChunkStore
from meshdrop.store.db import DATABASE_ERRORS, damaged_error, is_damage, open_database
from meshdrop.store.models import StoredBundle
from meshdrop.store.store import Store

FILE_NAME = "search.sqlite"
SCHEMA_VERSION = 1  # bump when index_terms or the tables change: the file is rebuilt
FILE_TEXT_CAP = 4_000_000  # characters of text indexed per file
BUNDLE_TEXT_CAP = 32_000_000  # characters of text indexed per bundle
# Terms are deleted by computing them again (a contentless table), so they must come out
# the same: an index made under other Unicode tables (case folding) is made again.
UNICODE_VERSION = int("".join(f"{int(n):02d}" for n in unicodedata.unidata_version.split(".")))
BYTES_PER_CHAR = 4  # UTF-8: source bytes read for a file, at most 4 x its text cap

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS bundles (
    id INTEGER PRIMARY KEY,
    publisher TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    complete INTEGER NOT NULL,  -- 0: a chunk was missing or damaged; indexed again later
    UNIQUE (publisher, name, version)
);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    bundle INTEGER NOT NULL REFERENCES bundles(id),
    path TEXT NOT NULL,
    title TEXT NOT NULL,
    text BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS files_by_bundle ON files(bundle, path);
CREATE VIRTUAL TABLE IF NOT EXISTS words
    USING fts5(title, path, body, content='', tokenize='unicode61');
"""


def index_path(home: Path) -> Path:
    return home / FILE_NAME


def connect(home: Path) -> sqlite3.Connection:
    """The search index, made if missing, made again if an older meshdrop made it. A
    sealed store's is encrypted (SQLCipher) under its own key (``StoreKeys.search``)."""
    path = index_path(home)
    keys = sealing.keys_for(home)
    key = None if keys is None else keys.search
    try:
        conn = _open(path, key)
        made = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if made != {"schema": SCHEMA_VERSION, "unicode": UNICODE_VERSION}:
            conn.close()
            remove(home)
            conn = _open(path, key)
    except DATABASE_ERRORS as exc:
        damaged = damaged_error(exc, f"the search index {path}")
        if damaged is not None:
            raise damaged from exc
        raise StoreError(f"cannot open the search index {path}: {exc}") from exc
    return conn


def _open(path: Path, key: bytes | None) -> sqlite3.Connection:
    conn = open_database(path, key)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # derived data: a lost commit is redone
    conn.executescript(_SCHEMA)
    conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
    conn.execute("INSERT OR IGNORE INTO meta VALUES ('unicode', ?)", (UNICODE_VERSION,))
    return conn


def remove(home: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            (home / (FILE_NAME + suffix)).unlink()


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


_DAMAGE_CANDIDATES: tuple[type[Exception], ...] = (*DATABASE_ERRORS, MeshdropError)


def catch_up(home: Path) -> int:
    """Index every committed bundle not indexed yet (newest first) and drop the rows of
    bundles no longer stored (older versions too), one bundle per transaction. Returns
    how many bundles it indexed. A damaged index (or, sealed, one that does not decrypt)
    is removed and built again: it is derived from the store, which is left as it is."""
    try:
        return _catch_up(home)
    except _DAMAGE_CANDIDATES as exc:
        if not is_damage(exc):
            raise
        remove(home)
        return _catch_up(home)


def _catch_up(home: Path) -> int:
    with Store(home) as store, contextlib.closing(connect(home)) as conn:
        wanted = {(b.publisher, b.name, b.version): b for b in store.list_bundles(True)}
        held = {
            (publisher, name, version): (row_id, complete)
            for row_id, publisher, name, version, complete in conn.execute(
                "SELECT id, publisher, name, version, complete FROM bundles"
            )
        }
        for key, (row_id, complete) in held.items():
            if key not in wanted or not complete:
                with _transaction(conn):
                    _drop_bundle(conn, row_id)
        done = 0
        for key, bundle in wanted.items():
            if held.get(key, (0, False))[1]:
                continue
            try:
                manifest = store.manifest(bundle)
            except MeshdropError:
                continue  # gone since the listing: the next catch-up drops it
            if manifest.version == bundle.version:
                _index_bundle(conn, store.chunks, bundle, manifest)
                done += 1
        return done


def catch_up_in_child(home: Path, store_key: bytes | None = None) -> None:
    """``catch_up`` as a child process's whole work: a failure is its exit code, told
    in one line by the parent (no traceback naming what was being indexed). A sealed
    store's key comes as ``store_key`` (``StoreKeys.root``), through the process's
    arguments: never a file or the environment."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the reader's, which stops us
    try:
        if store_key is not None:
            sealing.remember(home, StoreKeys(store_key))
        catch_up(home)
    except Exception:
        sys.exit(1)


def _index_bundle(
    conn: sqlite3.Connection, chunks: ChunkStore, bundle: StoredBundle, manifest: Manifest
) -> None:
    # Kept compressed until written: a bundle's text may be tens of MB.
    rows = [("", bundle.title, zlib.compress(bundle.description.encode(), 6))]
    complete = True
    budget = BUNDLE_TEXT_CAP
    for entry in manifest.files:
        found = Article("", "")
        if entry.media_type in TEXT_TYPES and entry.size > 0 and budget > 0:
            read = file_article(chunks, entry, min(FILE_TEXT_CAP, budget))
            complete = complete and read is not None
            found = read or found
            budget -= len(found.text)
        rows.append((entry.path, found.title, zlib.compress(found.text.encode(), 6)))
    with _transaction(conn):
        key = (bundle.publisher, bundle.name, bundle.version)
        if conn.execute(
            "SELECT 1 FROM bundles WHERE publisher = ? AND name = ? AND version = ?", key
        ).fetchone():
            return  # another reader's indexer (two readers of one home) was faster
        cursor = conn.execute(
            "INSERT INTO bundles (publisher, name, version, complete) VALUES (?, ?, ?, ?)",
            (bundle.publisher, bundle.name, bundle.version, int(complete)),
        )
        bundle_row = cursor.lastrowid
        for path, title, packed in rows:
            cursor = conn.execute(
                "INSERT INTO files (bundle, path, title, text) VALUES (?, ?, ?, ?)",
                (bundle_row, path, title, packed),
            )
            conn.execute(
                "INSERT INTO words (rowid, title, path, body) VALUES (?, ?, ?, ?)",
                (cursor.lastrowid, *_terms(path, title, zlib.decompress(packed).decode())),
            )


def file_article(chunks: ChunkStore, entry: FileEntry, cap: int) -> Article | None:
    """The title and text of a text file, up to ``cap`` characters of text; None if one
    of its chunks is missing or fails its hash (nothing of it is indexed then)."""
    parts: list[bytes] = []
    size = 0
    for digest in entry.chunks:
        if size >= cap * BYTES_PER_CHAR:
            break
        data = chunks.read(digest)  # re-hashed: None if missing or damaged
        if data is None:
            return None
        parts.append(data)
        size += len(data)
    source = b"".join(parts)[: cap * BYTES_PER_CHAR].decode("utf-8", errors="ignore")
    try:
        found = article(entry.media_type, source)
    except Exception:  # a parser's surprise must not stop the index: plain text then
        found = article("text/plain", source)
    return Article(found.title, found.text[:cap])


def _terms(path: str, title: str, text: str) -> tuple[str, str, str]:
    return index_terms(title), index_terms(path), index_terms(text)


def _drop_bundle(conn: sqlite3.Connection, bundle_row: int) -> None:
    rows = conn.execute(
        "SELECT id, path, title, text FROM files WHERE bundle = ?", (bundle_row,)
    ).fetchall()
    for row_id, path, title, text in rows:
        conn.execute(
            "INSERT INTO words (words, rowid, title, path, body) VALUES ('delete', ?, ?, ?, ?)",
            (row_id, *_terms(path, title, zlib.decompress(text).decode())),
        )
    conn.execute("DELETE FROM files WHERE bundle = ?", (bundle_row,))
    conn.execute("DELETE FROM bundles WHERE id = ?", (bundle_row,))
