"""Folding display names so that names which read alike compare equal.

An impostor copies a trusted publisher's name with look-alike characters ("Workers' News"
spelt with a Cyrillic o, U+043E), another apostrophe, other case or an extra space.
``fold_keys`` maps all of these to one key: NFKC, case folding, whitespace collapsed,
invisible format characters dropped, and each character replaced by its prototype from
Unicode's confusables data (the "skeleton" of UTS #39).

Pure: the confusables table is passed in (``meshdrop.store.lookalikes`` loads it).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence

from meshdrop.errors import SameNameError

# The confusables data writes right-to-left characters between these marks.
_DIRECTION_MARKS = "\u200e\u200f"


def prototypes_from_graph(graph: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Each source character's prototype, from an undirected look-alike graph in which
    every prototype is linked to each character that maps to it (and back).

    Each connected part is a star: a prototype in the middle, single characters around
    it. A character is a source when its only neighbour is the middle of a star (it has
    other neighbours), or a sequence (sequences are only ever prototypes), or, in a star
    of two single characters, the lower code point (either choice folds both to one)."""
    clean = {
        key.strip(_DIRECTION_MARKS): [v.strip(_DIRECTION_MARKS) for v in values]
        for key, values in graph.items()
    }
    prototypes = {}
    for char, neighbours in clean.items():
        if len(char) != 1 or len(neighbours) != 1:
            continue
        [other] = neighbours
        if other == char or not other:
            continue
        if len(other) > 1 or len(clean.get(other, ())) > 1 or other < char:
            prototypes[char] = other
    return prototypes


def skeleton(text: str, prototypes: Mapping[str, str]) -> str:
    """UTS #39's skeleton: NFD, every character replaced by its prototype, NFD again."""
    decomposed = unicodedata.normalize("NFD", text)
    mapped = "".join(prototypes.get(char, char) for char in decomposed)
    return unicodedata.normalize("NFD", mapped)


def fold_keys(name: str, prototypes: Mapping[str, str]) -> frozenset[str]:
    """The keys a display name folds to; two names a reader could take for one another
    share at least one. Case folding and look-alike folding disagree on a few letters
    ("I" is the capital of "i" but looks like "l"), so both orders are kept."""
    text = unicodedata.normalize("NFKC", name)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    text = " ".join(text.split())
    # Each order twice: a prototype can be a capital ("0" -> "O") that folding then lowers.
    case_first = skeleton(skeleton(text.casefold(), prototypes).casefold(), prototypes)
    looks_first = skeleton(skeleton(text, prototypes).casefold(), prototypes)
    return frozenset((case_first, looks_first))


def same_name(a: str, b: str, prototypes: Mapping[str, str]) -> bool:
    """Whether display names ``a`` and ``b`` read alike (see ``fold_keys``)."""
    return not fold_keys(a, prototypes).isdisjoint(fold_keys(b, prototypes))


def check_new_name(
    name: str,
    fingerprint: str,
    trusted: Iterable[tuple[str, str]],
    prototypes: Mapping[str, str],
) -> None:
    """SameNameError if another trusted publisher (``trusted``: name, fingerprint pairs)
    has a name that reads like ``name``. The same fingerprint is the same publisher (an
    update), never a clash."""
    for other_name, other_fingerprint in trusted:
        if other_fingerprint != fingerprint and same_name(name, other_name, prototypes):
            raise SameNameError(
                f"refused: {name!r} ({fingerprint}) reads like {other_name!r} "
                f"({other_fingerprint}), a publisher this node already trusts; an impostor "
                "takes a trusted name, so compare the whole fingerprint with the publisher, "
                "and if it is a different publisher add it with --allow-same-name"
            )
