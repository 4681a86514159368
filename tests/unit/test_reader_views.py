"""What the reader's pages say, shaped without a server: dates instead of version numbers,
freshness from the content on the shelf, language sections in the reader's order, titles
from the articles, and the text size preference."""

from __future__ import annotations

import pytest

from meshdrop.reader import i18n, views
from meshdrop.reader.library import newest_content
from meshdrop.store.models import StoredBundle

DAY = 86_400
SIGNED = 1_796_300_000  # 2026-12-03, a version number as `pack` makes them


def bundle(
    publisher: str = "AAAA-BBBB", created: int = SIGNED, language: str = "en"
) -> StoredBundle:
    return StoredBundle(
        id=1,
        publisher=publisher,
        publisher_name="News",
        name=f"n{created}",
        version=created,
        title="t",
        description="",
        language=language,
        priority=0,
        created=created,
        expires=None,
        size=1,
        file_count=1,
        imported=created,
    )


@pytest.mark.parametrize(
    ("lang", "expected"),
    [("en", "3 Dec 2026"), ("ko", "2026년 12월 3일")],
)
def test_a_version_is_shown_as_the_date_it_was_signed(lang: str, expected: str) -> None:
    assert i18n.format_date(SIGNED, lang) == expected
    info = views.bundle_info(bundle(), lang)
    assert info["date"] == expected
    assert str(SIGNED) not in " ".join(info.values())


def test_dates_out_of_range_are_clamped_not_raised() -> None:
    assert i18n.format_date(-5, "en") == "1 Jan 1970"
    assert i18n.format_date(10**15, "ko") == "9999년 12월 31일"
    assert i18n.format_date(None, "en") == "-"


def test_freshness_comes_from_the_newest_bundle_shown_per_publisher() -> None:
    shown = [
        bundle("AAAA", SIGNED - 40 * DAY),
        bundle("AAAA", SIGNED - 2 * DAY),
        bundle("CCCC", SIGNED - 90 * DAY),
    ]
    newest = newest_content(shown)
    assert newest == {"AAAA": SIGNED - 2 * DAY, "CCCC": SIGNED - 90 * DAY}
    fresh = views.freshness(newest["AAAA"], SIGNED, "en")
    assert fresh == {"text": "Newest content signed on 1 Dec 2026", "stale": ""}
    stale = views.freshness(newest["CCCC"], SIGNED, "en")
    assert stale["stale"] == "Nothing newer for 90 days: this node may be cut off."
    assert newest_content([]) == {}


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        ("ko", ["ko", "ko-KR", "mul", "und", "en", "en-GB"]),
        ("en", ["en", "en-GB", "mul", "und", "ko", "ko-KR"]),
    ],
)
def test_language_sections_come_in_the_readers_order(lang: str, expected: list[str]) -> None:
    codes = ["en", "mul", "ko", "und", "en-GB", "ko-KR"]
    assert sorted(codes, key=lambda code: views.section_order(code, lang)) == expected


def test_file_rows_are_named_by_their_articles_title_else_their_path() -> None:
    rows = [
        {"path": "payslip.ko.html", "kind": "html"},
        {"path": "clinic.md", "kind": "markdown"},
        {"path": "report.pdf", "kind": "other"},
    ]
    titled = views.with_titles(rows, {"payslip.ko.html": "임금명세서, 이렇게 확인하세요"})
    assert [r["title"] for r in titled] == [
        "임금명세서, 이렇게 확인하세요",
        "clinic.md",
        "report.pdf",
    ]
    assert views.with_titles(rows, {"clinic.md": ""})[1]["title"] == "clinic.md"
    assert [r["path"] for r in views.readable(titled)] == ["payslip.ko.html", "clinic.md"]


@pytest.mark.parametrize(
    ("cookie", "expected"),
    [
        ("large", "large"),
        ("normal", "normal"),
        (None, "normal"),
        ("huge", "normal"),
        ("", "normal"),
    ],
)
def test_text_size_from_its_cookie(cookie: str | None, expected: str) -> None:
    assert views.text_size(cookie) == expected
