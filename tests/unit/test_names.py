"""Folding publisher display names (core/names.py) so that names a reader could take for
one another collide, and the fingerprint a node owner was told (core/trust.py)."""

from __future__ import annotations

import pytest

from meshdrop.core.names import check_new_name, fold_keys, prototypes_from_graph, same_name
from meshdrop.core.trust import check_fingerprint
from meshdrop.errors import FingerprintMismatchError, SameNameError, UsageError
from meshdrop.store.lookalikes import prototypes

REAL = "Workers' News"
FINGERPRINT = "ASLU-HMNE-CURD-DX4C-3U5P-NDIM-PCS6-CGVD"
OTHER = "DGK4-HNSI-EUBS-OSPG-AA3S-ECEW-QK4H-GELN"


@pytest.mark.parametrize(
    "look_alike",
    [
        pytest.param("workers\u2019 news", id="lower case and a typographic apostrophe"),
        pytest.param("W\u043erkers' News", id="a Cyrillic o"),
        pytest.param("Workers' News ", id="a trailing space"),
        pytest.param("Workers'  News", id="two spaces"),
        pytest.param("WORKERS' NEWS", id="capitals"),
        pytest.param("W0rkers' News", id="a zero for an o"),
        pytest.param("Wor\u200bkers' News", id="a zero-width space"),
        pytest.param("\uff37orkers' News", id="a full-width W"),
    ],
)
def test_look_alike_names_collide(look_alike: str) -> None:
    assert same_name(REAL, look_alike, prototypes())


@pytest.mark.parametrize(
    "different", ["Workers' Views", "Workers News Daily", "Farmers' News", "노동자 뉴스"]
)
def test_different_names_do_not_collide(different: str) -> None:
    assert not same_name(REAL, different, prototypes())


def test_capital_i_and_small_l_collide_both_ways() -> None:
    # "I" is the capital of "i" but looks like "l": both foldings are kept.
    assert same_name("Ill News", "III News", prototypes())
    assert same_name("Ill News", "lll News", prototypes())


def test_folding_is_stable() -> None:
    table = prototypes()
    assert fold_keys(REAL, table) == fold_keys(REAL, table)
    assert "workers' news" in fold_keys(REAL, table)


def test_prototypes_from_a_star_graph() -> None:
    graph = {
        "o": ["\u043e", "\u03bf"],
        "\u043e": ["o"],
        "\u03bf": ["o"],
        "m": ["rn"],
        "rn": ["m"],
        "\u200e\u05d5\u200e": ["l"],  # written between direction marks in the data
        "l": ["\u05d5"],
    }
    assert prototypes_from_graph(graph) == {"\u043e": "o", "\u03bf": "o", "m": "rn", "\u05d5": "l"}


def test_a_clash_names_both_publishers_and_the_risk() -> None:
    with pytest.raises(SameNameError) as caught:
        check_new_name("W\u043erkers' News", OTHER, [(REAL, FINGERPRINT)], prototypes())
    assert caught.value.exit_code == 4


def test_the_same_publisher_under_its_own_name_is_no_clash() -> None:
    check_new_name(REAL, FINGERPRINT, [(REAL, FINGERPRINT)], prototypes())


@pytest.mark.parametrize(
    "told",
    [FINGERPRINT, FINGERPRINT.lower(), FINGERPRINT.replace("-", ""), FINGERPRINT.replace("-", " ")],
)
def test_the_whole_fingerprint_matches_whatever_its_case_and_separators(told: str) -> None:
    check_fingerprint(told, FINGERPRINT)


def test_another_fingerprint_is_a_mismatch() -> None:
    with pytest.raises(FingerprintMismatchError):
        check_fingerprint(OTHER, FINGERPRINT)


@pytest.mark.parametrize(
    "told",
    [
        pytest.param(FINGERPRINT[:9], id="a start of it"),
        pytest.param(FINGERPRINT[:-1], id="all but one character"),
        pytest.param("not a fingerprint!", id="not base32"),
        pytest.param("", id="empty"),
    ],
)
def test_a_start_of_the_fingerprint_or_junk_is_a_usage_error(told: str) -> None:
    with pytest.raises(UsageError):
        check_fingerprint(told, FINGERPRINT)


def test_a_fingerprint_with_an_extra_group_is_a_mismatch() -> None:
    with pytest.raises(FingerprintMismatchError):
        check_fingerprint(FINGERPRINT + "-AAAA", FINGERPRINT)
