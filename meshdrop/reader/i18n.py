"""Choosing the reader's language (its strings are in strings.py), and dates, sizes
and language names in it.

The choice comes from the ``lang`` cookie if the reader set one (the language links),
else from the browser's Accept-Language, else English. Publisher content is shown as
published, in whatever language it is.
"""

from __future__ import annotations

from datetime import UTC, datetime

from meshdrop.reader.strings import KINDS_KO, STRINGS

LANGUAGES = ("en", "ko")
DEFAULT = "en"
COOKIE = "lang"


def kind_words(kind: str, lang: str) -> str:
    """A refused file's kind in the reader's language."""
    if lang == "ko":
        return KINDS_KO.get(kind, "이 노드가 모르는 종류의 파일")
    return kind or "a file of a kind this node does not know"


def choose(cookie: str | None, accept_language: str | None) -> str:
    """The interface language: the cookie's if valid, else the browser's best match."""
    if cookie in LANGUAGES:
        return cookie
    return from_accept_language(accept_language or "")


def from_accept_language(header: str) -> str:
    """The supported language the browser prefers most (RFC 9110 weights; ties keep the
    header's order), or English."""
    best, best_q = DEFAULT, 0.0
    for item in header.split(",")[:32]:
        tag, _, params = item.strip().partition(";")
        primary = tag.strip().split("-")[0].lower()
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                continue
        if primary in LANGUAGES and q > best_q:
            best, best_q = primary, q
    return best


def language_label(code: str, lang: str) -> str:
    """A bundle's language code for people ("ko" -> "Korean"), falling back to the code."""
    primary = code.split("-")[0].lower()
    return STRINGS[lang].get(f"lang_{primary}", code)


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_date(ts: int | None, lang: str) -> str:
    """A signing time as readers say dates ("3 Dec 2026", "2026년 12월 3일"), in UTC."""
    if ts is None:
        return "-"
    moment = datetime.fromtimestamp(min(max(ts, 0), 253_402_300_799), UTC)
    if lang == "ko":
        return f"{moment.year}년 {moment.month}월 {moment.day}일"
    return f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year}"  # not the C locale's


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")
