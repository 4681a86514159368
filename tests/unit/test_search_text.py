"""Article text and titles (core/articletext.py) and search terms (core/searchterms.py):
bigrams for CJK, prefixes for words, hostile queries that stay words, checked against a
real FTS5 table."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshdrop.core.articletext import article, article_title, html_to_text, markdown_to_text
from meshdrop.core.searchterms import MAX_TERMS, bigrams, index_terms, match_expression


def test_html_blocks_become_lines_and_scripts_are_not_text() -> None:
    source = (
        "<title>T</title><p>a<b>b</b></p><p>c &amp; d</p><script>x</script>"
        "<table><tr><td>pay</td><td>EN</td></tr></table><ul><li>one</li><li>two</li></ul>"
    )
    assert html_to_text(source) == "ab\nc & d\npay\nEN\none\ntwo"


def test_markdown_to_text() -> None:
    assert markdown_to_text("# Title\n\n* **bold** [link](u.md) `code`") == (
        "Title\nbold link code"
    )


@pytest.mark.parametrize(
    ("media_type", "source", "title"),
    [
        (
            "text/html",
            "<html><head><title> 여권은\n내 것 </title></head><h1>H</h1>",
            "여권은 내 것",
        ),
        ("text/html", "<p>x</p><h2>Second <i>level</i></h2><h1>first</h1>", "Second level"),
        ("text/html", "<h3>not this</h3><p>text</p>", ""),
        ("text/html", "<h1></h1><h1>after an empty one</h1>", "after an empty one"),
        ("application/xhtml+xml", "<title>X</title>", "X"),
        ("text/markdown", "intro\n\n## 메모 **굵게** ##\n\n# later", "메모 굵게"),
        ("text/markdown", "no heading\n#nospace", ""),
        ("text/plain", "# looks like a heading", ""),
    ],
)
def test_article_titles(media_type: str, source: str, title: str) -> None:
    assert article_title(media_type, source) == title
    assert article(media_type, source).title == title


def test_the_html_title_is_not_body_text() -> None:
    found = article("text/html", "<title>Only the title</title><p>body</p>")
    assert (found.title, found.text) == ("Only the title", "body")


def test_bigrams() -> None:
    assert bigrams("임금명세서") == ["임금", "금명", "명세", "세서"]
    assert bigrams("여") == ["여"]
    assert index_terms("임금명세서를 Overtime PAY 東京タワー") == (
        " 임금 금명 명세 세서 서를  overtime pay  東京 京タ タワ ワー "
    )


@pytest.mark.parametrize(
    ("query", "expression"),
    [
        ("pay", '"pay"*'),
        ("Overtime PAY", '"overtime"* AND "pay"*'),
        ("임금명세서", '"임금 금명 명세 세서"'),
        ("여권", '"여권"'),
        ("여", '"여"*'),
        ("여권을pay", '"여권 권을" AND "pay"*'),
        ('a"b OR *', '"a"* AND "b"* AND "or"*'),
        ("NEAR(x y)", '"near"* AND "x"* AND "y"*'),
        ("title:x", '"title"* AND "x"*'),
        ("", None),
        ('" * ( ) ^ - :', None),
    ],
)
def test_match_expression(query: str, expression: str | None) -> None:
    assert match_expression(query) == expression


def test_at_most_a_few_terms() -> None:
    expression = match_expression(" ".join(f"w{i}" for i in range(50))) or ""
    assert expression.count(" AND ") == MAX_TERMS - 1


def fts() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(body, content='', tokenize='unicode61')")
    return conn


def matches(conn: sqlite3.Connection, query: str) -> bool:
    expression = match_expression(query)
    if expression is None:
        return False
    return conn.execute("SELECT 1 FROM t WHERE t MATCH ?", (expression,)).fetchone() is not None


def test_korean_words_inside_runs_and_english_prefixes_match() -> None:
    conn = fts()
    text = "회사가 여권을 가져갔습니다. 임금명세서를 확인하세요. Overtime payslip"
    conn.execute("INSERT INTO t (rowid, body) VALUES (1, ?)", (index_terms(text),))
    for query in ("여권", "임금명세서", "명세서", "가져", "여", "overtime pay", "PAYSLIP"):
        assert matches(conn, query), query
    for query in ("여권은", "세서확", "overtimes", "payslips", "다"):  # 다: only a run's end
        assert not matches(conn, query), query


@given(st.text(max_size=40))
def test_any_query_is_valid_fts5(query: str) -> None:
    matches(fts(), query)  # never an FTS5 syntax error


@given(st.text(alphabet="abcXYZ019여권임금명세서 \"'*()^:-+.,", max_size=40))
def test_a_text_finds_itself(query: str) -> None:
    conn = fts()
    conn.execute("INSERT INTO t (rowid, body) VALUES (1, ?)", (index_terms(query),))
    assert matches(conn, query) == (match_expression(query) is not None)
