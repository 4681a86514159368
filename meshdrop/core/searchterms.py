"""How text becomes search terms, on both sides of the index. Pure.

The index is SQLite FTS5 with its ``unicode61`` tokenizer, which splits on anything
that is not a letter or digit and folds case. That suits Latin text, but Korean, Chinese
and Japanese write words without spaces (Korean glues particles on: 여권을, 여권이), so a
run of CJK characters is written into the index as its overlapping BIGRAMS instead
(임금명세서 -> 임금 금명 명세 세서): any word of two or more characters is then a phrase
of bigrams, found through the index (never a scan), wherever it sits in the run.

``match_expression`` builds the FTS5 query from what a person typed: each Latin word a
prefix query ("pay"*), each CJK run the phrase of its bigrams, a single CJK character a
prefix query, every term required. Terms are only ever quoted strings of letters and
digits, so quotes and operators typed by a user cannot change the query's meaning.
"""

from __future__ import annotations

import re

MAX_TERMS = 8
MAX_TERM_CHARS = 64

# Hangul (jamo, compatibility jamo, syllables), Han (unified, extension A, compatibility,
# the supplementary planes), Hiragana, Katakana (with its extensions and half-width forms).
_CJK = (
    "\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\ua960-\ua97f\uac00-\ud7af\ud7b0-\ud7ff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f"
)
_CJK_RUN = re.compile(f"[{_CJK}]+")
_WORD = re.compile(r"[^\W_]+")


def bigrams(run: str) -> list[str]:
    """A CJK run as its overlapping pairs; a single character stays one token."""
    if len(run) < 2:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


def index_terms(text: str) -> str:
    """``text`` as the index stores it: case folded, CJK runs as bigrams (the tokenizer
    splits the rest into words)."""
    return _CJK_RUN.sub(lambda m: " " + " ".join(bigrams(m.group())) + " ", text.casefold())


def query_words(query: str) -> list[str]:
    """What a person typed as words and CJK runs, case folded, at most MAX_TERMS."""
    spaced = _CJK_RUN.sub(lambda m: f" {m.group()} ", query.casefold())
    return [w[:MAX_TERM_CHARS] for w in _WORD.findall(spaced)][:MAX_TERMS]


def is_cjk(word: str) -> bool:
    return _CJK_RUN.fullmatch(word) is not None


def match_expression(query: str) -> str | None:
    """The FTS5 MATCH expression for ``query``; None if it has no word to look for."""
    terms = []
    for word in query_words(query):
        if is_cjk(word) and len(word) > 1:
            terms.append(_quoted(" ".join(bigrams(word))))
        else:
            terms.append(_quoted(word) + "*")
    return " AND ".join(terms) if terms else None


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'
