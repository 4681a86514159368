"""Fuzz targets for what a phone's browser sends the reader: Range headers, query
strings, search words."""

from __future__ import annotations

import contextlib
import sqlite3
import zlib
from functools import cache
from urllib.parse import quote

from aiohttp.test_utils import make_mocked_request
from fuzztargets import Target

from meshdrop.core.searchterms import index_terms
from meshdrop.reader import imageclean, ranges, requestinfo
from meshdrop.store import searchindex, searchquery

# What the worker instruments (fuzztargets.PARTLY_INSTRUMENTED).
INSTRUMENT_ONLY = (
    "meshdrop.core.searchterms",
    "meshdrop.reader.imageclean",
    "meshdrop.reader.links",
    "meshdrop.reader.ranges",
    "meshdrop.reader.requestinfo",
    "meshdrop.store.searchquery",
)


def fuzz_range(data: bytes) -> None:
    """The reader's Range and If-Range headers against a file's size and ETag. Input:
    4 bytes of file size (big-endian: up to 4 GiB, so that chunk_pieces lists at most
    4,096 chunks), then the Range header; a tab splits off an If-Range after it."""
    size = int.from_bytes(data[:4], "big")
    etag = '"abc"'
    header, tab, if_range = data[4:].decode("latin-1").partition("\t")
    try:
        found = ranges.parse_range(header, size, if_range if tab else None, etag)
    except ranges.Unsatisfiable:
        return
    if found is not None:
        if not 0 <= found.start <= found.end < size:
            raise AssertionError(f"range {found} outside a {size}-byte file")
        ranges.chunk_pieces(found)


def fuzz_reader_query(data: bytes) -> None:
    """The reader's query parameters as its handlers read them: the page number and the
    ``next`` of a preference (requestinfo.py). Raw bytes are percent-escaped except the
    query's own separators and escapes, as aiohttp's HTTP parser would have them."""
    query = quote(data, safe="&=%+/;")
    request = make_mocked_request("GET", "/search?" + query)
    with contextlib.suppress(requestinfo.NotFound):
        requestinfo.page_number(request)
    answer = requestinfo.back_with_cookie(request, "lang", "en")
    if not str(answer.location).startswith("/"):
        raise AssertionError(f"a preference sends the browser off the reader: {answer.location}")


@cache
def _search_db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    conn.executescript(searchindex._SCHEMA)
    conn.execute("INSERT INTO bundles VALUES (1, 'p', 'news', 1, 1)")
    text = "Clinic hours: Monday 9-5. 진료 시간은 월요일입니다. Überstunden, naïve café."
    conn.execute(
        "INSERT INTO files VALUES (1, 1, 'a.html', 'Clinic', ?)", (zlib.compress(text.encode()),)
    )
    conn.execute(
        "INSERT INTO words (rowid, title, path, body) VALUES (1, ?, ?, ?)",
        (index_terms("Clinic"), index_terms("a.html"), index_terms(text)),
    )
    return conn


def fuzz_search(data: bytes) -> None:
    """What a phone types into the reader's search box, run against a real FTS5 index."""
    searchquery.search(_search_db(), data.decode("utf-8", "replace"), 10)


def fuzz_image_clean(data: bytes) -> None:
    """A file a phone attaches to a report: recognised by its bytes, a picture decoded
    and encoded again by Pillow (reader/imageclean.py)."""
    imageclean.clean(data)


HERE = [
    Target("image_clean", fuzz_image_clean, "reader/imageclean.clean (report attachments)"),
    Target("range", fuzz_range, "reader/ranges.parse_range"),
    Target("reader_query", fuzz_reader_query, "the reader's page and next parameters"),
    Target("search", fuzz_search, "store/searchquery.search on FTS5"),
]
