"""The README's search examples on the sample bundles (bundles/, packed as scripts/demo
packs them), through `meshdrop read` run as a real process: each finds its article first,
by the article's own title, linking to the article."""

from __future__ import annotations

import re
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from readerkit import fetch, links, pack_in_process, pack_samples, reader_server, search

from conftest import make_publisher, meshdrop_in_process

# README (the "search" example) -> the article each must find first.
EXAMPLES = {
    "여권": "여권은 내 것입니다",  # news/passport.ko.html
    "임금명세서": "임금명세서, 이렇게 확인하세요",  # news/payslip.ko.html
    "overtime pay": "How to count your overtime pay",  # news/overtime.html
}


@pytest.fixture(scope="module")
def sample_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("samples")
    publisher = make_publisher(folder / "publisher")
    home = folder / "node"
    meshdrop_in_process("--home", home, "trust", "add", "--yes", publisher.pub, check=True)
    now = int(time.time())
    for bundle, _title in pack_samples(publisher, folder, now - 1):
        meshdrop_in_process("--home", home, "import", bundle, check=True)
    return home


def hits(base: str, query: str) -> list[tuple[str, str]]:
    found = re.search(r'<ul class="list results">(.*?)</ul>', search(base, query).text, re.S)
    return links(found.group(1)) if found else []


def test_readme_examples_find_their_articles(sample_home: Path) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    assert all(f"`{query}`" in readme for query in EXAMPLES)
    with reader_server(sample_home) as base:
        deadline = time.monotonic() + 60  # the index is built by its own process
        while not hits(base, "여권") and time.monotonic() < deadline:
            time.sleep(0.2)
        for query, title in EXAMPLES.items():
            found = hits(base, query)
            assert found and found[0][1] == title, (query, found)
            article = fetch(base, found[0][0])
            assert article.status == 200 and title in article.text


def test_a_bundle_imported_while_nobody_reads_is_indexed(sample_home: Path, tmp_path: Path) -> None:
    """The reader looks at the store on its own (Library.watch): what an import or a sync
    brings is indexed before anyone opens a page. Nothing is asked of the reader here."""
    publisher = make_publisher(tmp_path / "publisher")
    home = tmp_path / "node"
    shutil.copytree(sample_home, home)
    trust = ("trust", "add", "--yes", "--allow-same-name", publisher.pub)
    meshdrop_in_process("--home", home, *trust, check=True)
    folder = tmp_path / "late"
    folder.mkdir()
    (folder / "late.html").write_text("<title>A late notice</title><p>latecomer</p>", "utf-8")
    out = tmp_path / "late.mdrop"
    pack_in_process(
        publisher, folder, out, "late-notice", title="Late", created=int(time.time()) - 1
    )

    def indexed_names() -> set[str]:
        path = home / "search.sqlite"
        if not path.exists():
            return set()
        conn = sqlite3.connect(path, timeout=30)
        try:
            return {name for (name,) in conn.execute("SELECT name FROM bundles")}
        except sqlite3.OperationalError:  # the indexer has not made its tables yet
            return set()
        finally:
            conn.close()

    with reader_server(home):
        deadline = time.monotonic() + 60
        while "news" not in indexed_names() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "news" in indexed_names()  # the start's own catch-up
        meshdrop_in_process("--home", home, "import", out, check=True)
        while "late-notice" not in indexed_names() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "late-notice" in indexed_names()
