"""The search index (store/searchindex.py, store/searchquery.py) on a real store: one hit
per file, clean snippets, names and titles found, old versions dropped, damaged chunks
never indexed, whole texts, Korean through the FTS index, and a deleted index rebuilt."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest
from readerkit import pack_in_process

from conftest import Publisher, make_publisher, meshdrop_in_process, write_tree
from meshdrop.core.searchterms import match_expression
from meshdrop.store import db, sealing, searchindex, searchquery
from meshdrop.store.searchquery import FileHit
from meshdrop.store.store import Store

OLD_FILE_CAP = 20_000  # what the search inside the commit indexed of a file

SOURCES = {
    "ko": {
        "passport.ko.html": "<html><head><title>여권은 내 것</title><style>.x{}</style></head>"
        "<body><h1>머리글</h1><p>고용주는 <b>여권</b>을 보관할 수 없습니다.</p><p>EN</p>"
        "<script>var secretword = 1;</script></body></html>".encode(),
        "notes.md": "## 메모\n\n[초과근무](x.md) 수당과 임금명세서를 **꼭** 확인하세요.".encode(),
    },
    "en": {
        "pay.txt": b"Overtime PAY is counted per hour.",
        "overtime.html": b"<title>Overtime</title><p>Your overtime pay</p><p>EN</p>",
        "b.bin": b"binaryword",
        "clinic-notice.md": b"No heading here, clinic on Sunday.",
    },
    "long": {"long.txt": ("filler " * (OLD_FILE_CAP // 2) + "needleword").encode()},
}


def pack_and_import(
    publisher: Publisher, home: Path, folder: Path, name: str, created: int
) -> None:
    out = folder.with_suffix(".mdrop")
    pack_in_process(publisher, folder, out, name, title=f"{name} title", created=created)
    meshdrop_in_process("--home", home, "import", out, check=True)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    publisher = make_publisher(tmp_path / "publisher")
    node = tmp_path / "node"
    meshdrop_in_process("--home", node, "trust", "add", "--yes", publisher.pub, check=True)
    now = int(time.time())
    for name, files in SOURCES.items():
        src = write_tree(tmp_path / name, files)
        pack_and_import(publisher, node, src, name, created=now - 1)
    return node


def search(home: Path, query: str) -> list[FileHit]:
    with contextlib.closing(searchindex.connect(home)) as conn:
        return searchquery.search(conn, query)


def found(home: Path, query: str) -> list[str]:
    return [f"{hit.name}/{hit.path}" for hit in search(home, query)]


def test_nothing_is_indexed_inside_the_commit(home: Path) -> None:
    assert not searchindex.index_path(home).exists()
    assert searchindex.catch_up(home) == 3
    assert searchindex.catch_up(home) == 0  # nothing new


def test_one_hit_per_file_best_first(home: Path) -> None:
    searchindex.catch_up(home)
    assert found(home, "여권") == ["ko/passport.ko.html"]
    assert found(home, "임금명세서") == ["ko/notes.md"]
    assert found(home, "초과근무 수당") == ["ko/notes.md"]
    # Title beats body: overtime.html names it in its title, pay.txt only in its text.
    assert found(home, "overtime pay") == ["en/overtime.html", "en/pay.txt"]
    assert found(home, "OVERT") == ["en/overtime.html", "en/pay.txt"]  # a prefix
    assert found(home, "secretword") == []  # a script is not text
    assert found(home, "binaryword") == []  # not a text file
    assert found(home, "ko title") == ["ko/"]  # the bundle itself, path ""


def test_file_names_and_titles_are_found(home: Path) -> None:
    searchindex.catch_up(home)
    assert found(home, "clinic") == ["en/clinic-notice.md"]  # its name, and its text
    assert found(home, "notice") == ["en/clinic-notice.md"]  # its name only
    assert found(home, "내 것") == ["ko/passport.ko.html"]  # its <title> only
    with contextlib.closing(searchindex.connect(home)) as conn:
        bundle = next(b for b in Store(home).list_bundles() if b.name == "ko")
        titles = searchquery.titles(conn, bundle.publisher, "ko", bundle.version)
        assert titles == {"passport.ko.html": "여권은 내 것", "notes.md": "메모"}
        assert searchquery.titles(conn, bundle.publisher, "ko", bundle.version + 1) == {}


def test_snippet_is_clean_text_around_the_match(home: Path) -> None:
    searchindex.catch_up(home)
    [hit] = search(home, "여권")
    assert hit.title == "여권은 내 것"
    assert (hit.before, hit.match) == ("머리글 고용주는 ", "여권")
    assert hit.after.startswith("을 보관할 수 없습니다. EN")  # blocks apart: no "다.EN"
    assert "secretword" not in hit.after and "<" not in hit.after
    [pay] = search(home, "counted")
    assert (pay.before, pay.match, pay.after) == ("Overtime PAY is ", "counted", " per hour.")
    [bundle] = search(home, "ko title")
    assert bundle.match == "" and bundle.before == ""  # a bundle without a description


def test_a_file_larger_than_the_old_caps_is_found_by_its_last_word(home: Path) -> None:
    searchindex.catch_up(home)
    [hit] = search(home, "needleword")
    assert hit.path == "long.txt" and hit.match == "needleword"
    assert hit.before.startswith("…filler") and hit.after == ""
    [by_name] = search(home, "long.txt")  # its name only: the snippet is the text's start
    assert by_name.before.startswith("filler filler") and by_name.match == ""


def test_two_syllable_korean_is_found_through_the_fts_index(home: Path) -> None:
    searchindex.catch_up(home)
    with contextlib.closing(searchindex.connect(home)) as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN " + searchquery.HITS, (*searchquery.WEIGHTS, "x", 10)
        ).fetchall()
    steps = [row[-1] for row in plan]
    assert any(s.startswith("SCAN words VIRTUAL TABLE INDEX") and ":M" in s for s in steps)
    assert not any(s.startswith("SCAN f") or s.startswith("SCAN b") for s in steps), steps
    assert match_expression("여권") == '"여권"'  # a bigram token, not a LIKE


def test_old_versions_are_dropped(tmp_path: Path) -> None:
    publisher = make_publisher(tmp_path / "publisher")
    home = tmp_path / "node"
    meshdrop_in_process("--home", home, "trust", "add", "--yes", publisher.pub, check=True)
    now = int(time.time())
    src = write_tree(tmp_path / "first", {"a.txt": b"firstword"})
    pack_and_import(publisher, home, src, "news", created=now - 10)
    assert searchindex.catch_up(home) == 1
    assert found(home, "firstword") == ["news/a.txt"]
    src = write_tree(tmp_path / "second", {"a.txt": b"secondword"})
    pack_and_import(publisher, home, src, "news", created=now - 5)
    assert searchindex.catch_up(home) == 1
    assert found(home, "secondword") == ["news/a.txt"]
    assert found(home, "firstword") == []
    with contextlib.closing(searchindex.connect(home)) as conn:
        assert conn.execute("SELECT count(*) FROM bundles").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM files").fetchone()[0] == 2  # "" and a.txt
        conn.execute("INSERT INTO words(words) VALUES ('integrity-check')")  # deletes exact


def test_a_damaged_chunk_is_not_indexed(home: Path) -> None:
    with Store(home) as store:
        bundle = next(b for b in store.list_bundles() if b.name == "en")
        entry = next(f for f in store.manifest(bundle).files if f.path == "pay.txt")
        chunk = store.chunks.path(entry.chunks[0])
    chunk.write_bytes(b"Overtime PAY is counted per hour, damagedword.")
    searchindex.catch_up(home)
    assert found(home, "damagedword") == []
    assert found(home, "counted") == []  # nothing of that file's text
    assert found(home, "pay.txt") == ["en/pay.txt"]  # its name still
    assert found(home, "overtime") == ["en/overtime.html"]  # the bundle's other files
    with contextlib.closing(searchindex.connect(home)) as conn:
        [complete] = conn.execute("SELECT complete FROM bundles WHERE name = 'en'").fetchone()
    assert complete == 0  # tried again on the next catch-up
    chunk.unlink()
    assert searchindex.catch_up(home) == 1


def test_deleting_the_index_rebuilds_it(home: Path) -> None:
    searchindex.catch_up(home)
    searchindex.remove(home)
    assert search(home, "여권") == []  # an empty index, not an error
    assert searchindex.catch_up(home) == 3
    assert found(home, "여권") == ["ko/passport.ko.html"]


def test_an_index_of_another_schema_is_rebuilt(home: Path) -> None:
    searchindex.catch_up(home)
    with contextlib.closing(searchindex.connect(home)) as conn:
        conn.execute("UPDATE meta SET value = 0 WHERE key = 'schema'")
        conn.commit()
    assert search(home, "여권") == []
    assert searchindex.catch_up(home) == 3


def test_the_store_drops_the_old_search_table(home: Path) -> None:
    index = home / "index.sqlite"
    keys = sealing.keys_for(home)  # the sealed pass: the store's own key
    key = None if keys is None else keys.index
    with contextlib.closing(db.open_database(index, key)) as conn:
        conn.execute("CREATE VIRTUAL TABLE bundle_text USING fts5(title, body)")
        conn.execute("UPDATE meta SET value = 2 WHERE key = 'schema'")
        conn.commit()
    with Store(home) as store:
        tables = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master")}
        assert not any(t.startswith("bundle_text") for t in tables)
        schema = store.conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        assert schema == (db.SCHEMA_VERSION,)
    result = meshdrop_in_process("--home", home, "fsck")
    assert result.code == 0, result.out


@pytest.mark.parametrize(
    "query",
    ['"', '""', 'a"b OR *', "NEAR(a b)", "title:x", "^x", "*", "-x", "(", "a AND", "100%", "'"],
)
def test_hostile_queries_are_only_ever_words(home: Path, query: str) -> None:
    searchindex.catch_up(home)
    search(home, query)  # no FTS5 syntax error
