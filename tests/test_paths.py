import ntpath
import posixpath
import unicodedata
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshdrop.core.paths import (
    MAX_COMPONENT_BYTES,
    MAX_COMPONENT_CHARS,
    MAX_DEPTH,
    MAX_PATH_BYTES,
    check_bundle_path,
    check_bundle_paths,
    path_key,
)
from meshdrop.errors import FormatError, UnsafePathError

LONGEST_PATH = "/".join(["y" * 254] * 4) + "/yyyy"  # exactly MAX_PATH_BYTES

# (path, a word the message must contain, so each rule is seen to give its own reason)
REFUSED = [
    pytest.param("", "empty", id="empty"),
    pytest.param("a\ud800b", "surrogate", id="lone_surrogate"),
    pytest.param("a/" * 600 + "b", "bytes long", id="path_too_long"),
    pytest.param("e\u0301.txt", "NFC", id="nfd_spelling"),
    pytest.param("\uac00\u11a8.txt", "NFC", id="nfd_korean_jamo"),
    pytest.param("/etc/passwd", "relative", id="absolute"),
    pytest.param("/", "relative", id="root"),
    pytest.param("a\\b.txt", "backslash", id="backslash"),
    pytest.param("..\\evil", "backslash", id="backslash_dotdot"),
    pytest.param("C:", "drive", id="drive"),
    pytest.param("c:foo", "drive", id="drive_relative"),
    pytest.param("C:/Windows/win.ini", "drive", id="drive_absolute"),
    pytest.param("a/", "folder", id="trailing_slash"),
    pytest.param("a//b", "empty folder", id="double_slash"),
    pytest.param("/".join(["d"] * (MAX_DEPTH + 1)), "levels deep", id="too_deep"),
    pytest.param("..", "one above", id="dotdot_alone"),
    pytest.param("../a", "one above", id="dotdot_leading"),
    pytest.param("a/../../b", "one above", id="dotdot"),
    pytest.param("a/..", "one above", id="dotdot_trailing"),
    pytest.param(".", "this folder", id="dot_alone"),
    pytest.param("./a", "this folder", id="dot"),
    pytest.param("a\x00b", "U+0000", id="nul"),
    pytest.param("a\x1b[31mb", "U+001B", id="escape"),
    pytest.param("a\nb", "U+000A", id="newline"),
    pytest.param("a\rb", "U+000D", id="carriage_return"),
    pytest.param("a\tb", "U+0009", id="tab"),
    pytest.param("a\x7fb", "U+007F", id="delete"),
    pytest.param("a\x9bb", "U+009B", id="c1_csi"),
    pytest.param("invoice\u202etxt.exe", "displayed", id="rtl_override"),
    pytest.param("a\u2066b", "displayed", id="bidi_isolate"),
    pytest.param("a\u200fb", "displayed", id="rtl_mark"),
    pytest.param("a\u2028b", "line break", id="line_separator"),
    pytest.param("a\u2029b", "line break", id="paragraph_separator"),
    pytest.param("a<b", "'<'", id="less_than"),
    pytest.param("a>b", "'>'", id="greater_than"),
    pytest.param("dir/a:b", "':'", id="colon"),
    pytest.param("file.txt:stream", "':'", id="ntfs_stream"),
    pytest.param('a"b', "'\"'", id="double_quote"),
    pytest.param("a|b", "'|'", id="pipe"),
    pytest.param("what?", "'?'", id="question_mark"),
    pytest.param("*.txt", "'*'", id="star"),
    pytest.param(" a.txt", "starts with a space", id="leading_space"),
    pytest.param("dir/ sub/a", "starts with a space", id="leading_space_folder"),
    pytest.param("a.txt ", "dot or space", id="trailing_space"),
    pytest.param("a.", "dot or space", id="trailing_dot"),
    pytest.param("...", "dot or space", id="dots_only"),
    pytest.param("folder./a", "dot or space", id="trailing_dot_folder"),
    pytest.param("CON", "reserves", id="con"),
    pytest.param("con.txt", "reserves", id="con_ext"),
    pytest.param("Aux", "reserves", id="aux_mixed_case"),
    pytest.param("prn.tar.gz", "reserves", id="prn_double_ext"),
    pytest.param("nul", "reserves", id="nul_name"),
    pytest.param("docs/com1.md", "reserves", id="com1_ext"),
    pytest.param("COM0", "reserves", id="com0"),
    pytest.param("lpt9", "reserves", id="lpt9"),
    pytest.param("LPT0.log", "reserves", id="lpt0_ext"),
    pytest.param("COM\u00b9", "reserves", id="com_superscript"),
    pytest.param("conin$", "reserves", id="conin"),
    pytest.param("CON .txt", "reserves", id="con_space_ext"),
    pytest.param("a" * (MAX_COMPONENT_CHARS + 1), "characters long", id="name_too_long"),
    # One emoji is two UTF-16 units: 128 of them exceed FAT's 255.
    pytest.param("\U0001f600" * 128, "characters long", id="name_too_long_utf16"),
    # 86 Korean syllables are 258 UTF-8 bytes: fine on FAT, too long for ext4.
    pytest.param("\uac00" * 86, "bytes long in UTF-8", id="name_too_long_utf8"),
]

ACCEPTED = [
    pytest.param("a", id="single"),
    pytest.param("index.html", id="file"),
    pytest.param("기사/노동권.html", id="korean"),
    pytest.param("사진/2024년 5월/회의 사진 01.jpg", id="korean_spaces"),
    pytest.param("my notes/to do list.txt", id="spaces_inside"),
    pytest.param("archive.tar.gz", id="dots_inside"),
    pytest.param(".hidden", id="leading_dot"),
    pytest.param("..foo", id="leading_dotdot_name"),
    pytest.param("a..b", id="dotdot_inside_name"),
    pytest.param("a/b/c/d/e/f/g.txt", id="nested"),
    pytest.param("/".join(["d"] * MAX_DEPTH), id="max_depth"),
    pytest.param("a" * MAX_COMPONENT_CHARS, id="max_name_ascii"),
    pytest.param("\uac00" * 85, id="max_name_korean"),
    pytest.param("/".join(["x" * 200] * 5), id="long_path_under_limit"),
    pytest.param(LONGEST_PATH, id="max_path_bytes"),
    pytest.param("Café.txt", id="nfc_accent"),
    pytest.param("Straße.md", id="eszett"),
    pytest.param("なぜ？.txt", id="fullwidth_question_mark"),
    pytest.param("console.log", id="con_prefix"),
    pytest.param("auxiliary/com10.txt", id="reserved_lookalikes"),
    pytest.param("lpt", id="lpt_without_digit"),
    pytest.param("nul_report.pdf", id="nul_prefix"),
    pytest.param("emoji 😀.txt", id="emoji"),
    pytest.param("a-b_c~d(e)[f]{g}!@#$%^&+=,;'`.txt", id="punctuation"),
    pytest.param("\u00a0nbsp", id="leading_nbsp"),
    pytest.param("persian \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", id="zwnj"),
]


@pytest.mark.parametrize(("path", "reason"), REFUSED)
def test_refused(path: str, reason: str) -> None:
    with pytest.raises(UnsafePathError) as caught:
        check_bundle_path(path)
    message = str(caught.value)
    assert reason in message
    assert "\n" not in message
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize("path", ACCEPTED)
def test_accepted(path: str) -> None:
    assert check_bundle_path(path) is path


def test_max_path_bytes_is_the_limit() -> None:
    exact = LONGEST_PATH
    assert len(exact.encode("utf-8")) == MAX_PATH_BYTES
    check_bundle_path(exact)
    with pytest.raises(UnsafePathError, match="bytes long"):
        check_bundle_path(exact + "y")


def test_name_limits_are_the_limits() -> None:
    assert MAX_COMPONENT_BYTES == MAX_COMPONENT_CHARS == 255
    check_bundle_path("\U0001f600" * 63 + "abc")  # 255 UTF-16 units, 255 UTF-8 bytes
    with pytest.raises(UnsafePathError):
        check_bundle_path("\U0001f600" * 63 + "abcd")


@pytest.mark.parametrize("value", [b"a.txt", None, 1, ["a.txt"]], ids=repr)
def test_non_text_refused(value: object) -> None:
    with pytest.raises(UnsafePathError, match="must be text"):
        check_bundle_path(cast(str, value))


def test_unsafe_path_error_is_a_format_error() -> None:
    with pytest.raises(FormatError):
        check_bundle_path("../x")


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("a/../b", id="plain"),
        pytest.param("기사/../노동권.html", id="korean_stays_readable"),
    ],
)
def test_message_names_path(path: str) -> None:
    with pytest.raises(UnsafePathError) as caught:
        check_bundle_path(path)
    assert repr(path) in str(caught.value)


def test_message_escapes_terminal_controls() -> None:
    path = "x\x1b]0;pwned\x07/\u202eexe.txt\u2028y"
    with pytest.raises(UnsafePathError) as caught:
        check_bundle_path(path)
    message = str(caught.value)
    assert message.isprintable()
    assert "\\x1b" in message


def test_message_for_huge_path_is_short() -> None:
    with pytest.raises(UnsafePathError) as caught:
        check_bundle_path("a" * 10_000_000)
    assert len(str(caught.value)) < 300


# --- path_key and check_bundle_paths ---


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param("A.txt", "a.txt", id="case"),
        pytest.param("Docs/Readme.MD", "docs/README.md", id="case_in_folder"),
        pytest.param("caf\u00e9", "cafe\u0301", id="nfc_nfd"),
        pytest.param("\uac00", "\u1100\u1161", id="korean_nfc_nfd"),
        pytest.param("Straße", "STRASSE", id="eszett"),
        pytest.param("\u01c5", "\u01c6", id="titlecase_digraph"),
        pytest.param("\u01c4", "\u01c6", id="uppercase_digraph"),
        pytest.param("\ufb01le", "file", id="ligature"),
        pytest.param("\uff21.txt", "a.txt", id="fullwidth"),
        pytest.param("\u0131.txt", "I.txt", id="dotless_i"),
        pytest.param("\u212a", "k", id="kelvin_sign"),
        pytest.param("\u03c3", "\u03c2", id="final_sigma"),
    ],
)
def test_path_key_twins(first: str, second: str) -> None:
    assert path_key(first) == path_key(second)


def test_path_key_keeps_different_names_apart() -> None:
    assert path_key("a.txt") != path_key("b.txt")
    assert path_key("기사") != path_key("노동")
    assert path_key("a/b") != path_key("ab")


def test_check_bundle_paths_accepts_distinct() -> None:
    check_bundle_paths(["a/b.txt", "a/c.txt", "a/d/e.txt", "기사/노동권.html", "A2", "readme"])
    check_bundle_paths([])
    check_bundle_paths(iter(["x", "y/z"]))


@pytest.mark.parametrize(
    ("paths", "named"),
    [
        pytest.param(["a.txt", "a.txt"], ["a.txt"], id="exact_twice"),
        pytest.param(["A.txt", "a.txt"], ["A.txt", "a.txt"], id="case_twins"),
        pytest.param(["d/X", "D/x"], ["d/X", "D/x"], id="case_twins_folder"),
        pytest.param(["Straße", "STRASSE"], ["Straße", "STRASSE"], id="casefold_eszett"),
        pytest.param(["\u01c5", "d\u017e"], ["\u01c5", "d\u017e"], id="digraph_vs_letters"),
        pytest.param(["\u01c5", "\u01c6"], ["\u01c5", "\u01c6"], id="digraph_case"),
        pytest.param(["a", "a/b"], ["'a'", "'a/b'"], id="file_then_folder"),
        pytest.param(["a/b", "a"], ["'a'", "'a/b'"], id="folder_then_file"),
        pytest.param(["A", "a/b"], ["'A'", "'a/b'"], id="file_folder_case"),
        pytest.param(["x/y/z", "X/Y"], ["'X/Y'", "'x/y/z'"], id="deep_folder_case"),
        pytest.param(["x/Y", "x/y/z/w"], ["'x/Y'", "'x/y/z/w'"], id="deep_file_folder"),
    ],
)
def test_check_bundle_paths_refuses(paths: list[str], named: list[str]) -> None:
    with pytest.raises(UnsafePathError) as caught:
        check_bundle_paths(paths)
    message = str(caught.value)
    for path in named:
        assert path in message
    assert "\n" not in message


def test_check_bundle_paths_checks_each_path() -> None:
    with pytest.raises(UnsafePathError, match="one above"):
        check_bundle_paths(["ok.txt", "../bad"])


def test_lookalike_slash_is_not_a_folder() -> None:
    # U+FF0F folds to "/" in the key, but "a／b" is one file name, not "b" inside "a".
    check_bundle_paths(["a", "a\uff0fb"])


# --- properties ---

any_names = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12)
# Plausible names, so that enough paths are accepted for the properties below to bite.
fair_names = st.text(
    st.characters(exclude_categories=["Cs", "Cc"], exclude_characters='/\\<>:"|?*'),
    min_size=1,
    max_size=12,
)
some_names = st.sampled_from(["기사", "노동권.html", "a b", "x.txt", "A", "..", "Con", "\u202e"])
paths = st.one_of(
    st.text(),
    st.lists(st.one_of(fair_names, some_names), min_size=1, max_size=6).map("/".join),
    st.lists(st.one_of(any_names, some_names), max_size=6).map("/".join),
).map(lambda path: unicodedata.normalize("NFC", path))


def _accepted(path: str) -> bool:
    try:
        check_bundle_path(path)
    except UnsafePathError as exc:
        message = str(exc)
        assert len(message.splitlines()) == 1
        assert "\n" not in message
        return False
    return True


@given(st.text())
def test_only_unsafe_path_error_for_any_text(path: str) -> None:
    _accepted(path)


@settings(max_examples=300)
@given(paths)
def test_accepted_paths_are_safe(path: str) -> None:
    if not _accepted(path):
        return
    names = path.split("/")
    assert ".." not in names
    assert "." not in names
    assert "" not in names
    assert not path.startswith("/")
    assert "\\" not in path
    assert ":" not in path
    assert not any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in path)
    assert len(names) <= MAX_DEPTH
    assert len(path.encode("utf-8")) <= MAX_PATH_BYTES


@settings(max_examples=300)
@given(paths)
def test_accepted_paths_stay_under_base(path: str) -> None:
    if not _accepted(path):
        return
    posix = posixpath.normpath(posixpath.join("/srv/base", path))
    assert posix.startswith("/srv/base/")
    assert posix == "/srv/base/" + path  # normpath finds nothing to resolve
    windows = ntpath.normpath(ntpath.join("C:\\base", path))
    assert windows == "C:\\base\\" + path.replace("/", "\\")


@given(paths)
def test_path_key_ignores_case_and_spelling(path: str) -> None:
    key = path_key(path)
    assert path_key(key) == key
    assert path_key(unicodedata.normalize("NFD", path)) == key
    assert path_key(path.upper()) == key
    assert path_key(path.lower()) == key


@given(st.lists(paths, max_size=8))
def test_check_bundle_paths_accepts_only_distinct_keys(candidates: list[str]) -> None:
    try:
        check_bundle_paths(candidates)
    except UnsafePathError as exc:
        assert "\n" not in str(exc)
        return
    keys = [path_key(path) for path in candidates]
    assert len(set(keys)) == len(keys)
    folders = {
        path_key(path.rsplit("/", depth)[0])
        for path in candidates
        for depth in range(1, path.count("/") + 1)
    }
    assert not folders & set(keys)
