import ntpath
import posixpath
import re
import unicodedata
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshdrop.core.paths import (
    IGNORABLE_RANGES,
    MAX_COMPONENT_BYTES,
    MAX_COMPONENT_CHARS,
    MAX_DEPTH,
    MAX_PATH_BYTES,
    check_bundle_path,
    check_bundle_paths,
    path_key,
)
from meshdrop.errors import FormatError, ShortNameClashError, UnsafePathError

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
    # Names that vanish where default-ignorable characters are skipped.
    pytest.param("\u200b", "ignore", id="zero_width_space_alone"),
    pytest.param("a/\ufeff\u00ad/b", "ignore", id="invisible_folder"),
    pytest.param("\u3164", "ignore", id="hangul_filler_alone"),
    pytest.param("\U000e0041\U000e007f", "ignore", id="tags_alone"),
    pytest.param("..\u200b", "one above", id="dotdot_invisible"),
    pytest.param("a/.\u200c/b", "one above", id="dot_invisible"),
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
    pytest.param("a\u200bb", id="zero_width_space_inside"),
    pytest.param("\u2764\ufe0f.txt", id="variation_selector"),
    pytest.param("\u00ad.hidden", id="soft_hyphen_dot"),
    pytest.param("longfi~1.txt", id="fat_alias_shape"),
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
        pytest.param("ab.txt", "a\u200cb.txt", id="zero_width_non_joiner"),
        pytest.param("ab.txt", "a\ufeffb.txt", id="byte_order_mark"),
        pytest.param("ab.txt", "\u00ada\u200bb\u2060.txt", id="soft_hyphen_and_more"),
        pytest.param("\u2764.txt", "\u2764\ufe0f.txt", id="variation_selector"),
        pytest.param("a.txt", "a\U000e0041.txt", id="tag_letter"),
        pytest.param("\u00e9", "e\u034f\u0301", id="grapheme_joiner_blocks_nfc"),
        pytest.param("\uac00", "\u1100\u200b\u1161", id="invisible_between_jamo"),
        pytest.param("ab", "a\u3164b", id="hangul_filler"),
        pytest.param("ab", "a\uffa0b", id="halfwidth_hangul_filler"),
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
        pytest.param(["ab.txt", "a\u200cb.txt"], ["'ab.txt'", "\\u200c"], id="zwnj_twins"),
        pytest.param(["ab.txt", "a\ufeffb.txt"], ["'ab.txt'", "\\ufeff"], id="bom_twins"),
        pytest.param(["a\u200b/x", "a/x"], ["'a/x'", "\\u200b/x"], id="invisible_in_folder"),
        pytest.param(["a/x", "a\u200b"], ["'a/x'", "'a\\u200b'"], id="invisible_file_folder"),
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


def test_ignorable_ranges_are_unicodes() -> None:
    ranges = sorted(IGNORABLE_RANGES)
    assert all(low <= high < ranges[i + 1][0] for i, (low, high) in enumerate(ranges[:-1]))
    assert sum(high - low + 1 for low, high in ranges) == 4174  # as in Unicode 14.0 to 16.0
    for char in "\u00ad\u180f\u200b\u2065\ufeff\U000e0001\U000e0fff":
        assert any(low <= ord(char) <= high for low, high in ranges), ascii(char)


# --- FAT short names (8.3 aliases) ---

LONG_NAME_ALIAS = "The bundle path 'longfi~1.txt' could be the FAT short name of 'longfilename.txt'"


@pytest.mark.parametrize(
    ("paths", "named"),
    [
        pytest.param(["longfilename.txt", "longfi~1.txt"], ["longfi~1.txt"], id="long_first"),
        pytest.param(["longfi~1.txt", "longfilename.txt"], ["longfi~1.txt"], id="alias_first"),
        pytest.param(["LONGFI~1.TXT", "longfilename.txt"], ["LONGFI~1.TXT"], id="upper_case"),
        pytest.param(["d/Long Name.txt", "D/LONGNA~2.TXT"], ["D/LONGNA~2.TXT"], id="folder_case"),
        pytest.param(["lo1a2b~1.txt", "longfilename.txt"], ["lo1a2b~1.txt"], id="hashed_alias"),
        pytest.param(["x y", "A~12.B"], ["A~12.B", "x y"], id="short_base_long_digits"),
        pytest.param(["~1", "a b"], ["'~1'"], id="tilde_digit_alone"),
        pytest.param(["longfo~1/a", "longfoldername/b"], ["folder 'longfo~1'"], id="folders"),
        pytest.param(["longfo~1", "longfoldername/b"], ["folder 'longfoldername'"], id="file_dir"),
        pytest.param(["longfo~1/a", "longfoldername"], ["folder 'longfo~1'"], id="dir_file"),
        pytest.param(["\uac00\uac01\uac02~1.txt", "\uac00" * 9], ["~1.txt"], id="code_page"),
        pytest.param(["\uff4c\uff4f~\uff11", "long name"], ["long name"], id="fullwidth"),
        pytest.param(["abcdef\u200b~1", "long name"], ["long name"], id="invisible_ninth"),
        pytest.param(["a b~1.txt", "c d~1.txt"], ["'a b~1.txt'", "'c d~1.txt'"], id="both"),
        # Two spellings of one folder key, one alias-shaped, one long: still seen.
        pytest.param(["ab~1/x", "cd~1", "\uff21\uff22~1/y"], ["'cd~1'"], id="two_spellings"),
    ],
)
def test_fat_alias_beside_long_name_refused(paths: list[str], named: list[str]) -> None:
    with pytest.raises(UnsafePathError) as caught:
        check_bundle_paths(paths)
    message = str(caught.value)
    assert "could be the FAT short name of" in message
    assert "in the same folder" in message
    for fragment in named:
        assert fragment in message
    assert "\n" not in message


def test_fat_alias_message() -> None:
    for paths in (["longfilename.txt", "longfi~1.txt"], ["longfi~1.txt", "longfilename.txt"]):
        with pytest.raises(UnsafePathError) as caught:
            check_bundle_paths(paths)
        assert str(caught.value).startswith(LONG_NAME_ALIAS + " in the same folder")


@pytest.mark.parametrize(
    "paths",
    [
        pytest.param(["longfi~1.txt"], id="alone"),
        pytest.param(["longfi~1.txt", "docs/longfilename.txt"], id="long_name_deeper"),
        pytest.param(["a/longfilename.txt", "b/longfi~1.txt"], id="other_folders"),
        pytest.param(["longfoldername/x", "a/longfo~1"], id="folder_name_elsewhere"),
        pytest.param(["longfi~1.txt", "longfi~2.txt", "longfi~3.txt"], id="aliases_only"),
        pytest.param(["longfilename.txt", "longfi~1x.txt"], id="not_a_tail"),
        pytest.param(["longfilename.txt", "longfile~1.txt"], id="base_of_10"),
        pytest.param(["longfilename.txt", "a~1.html"], id="extension_of_4"),
        pytest.param(["longfilename.txt", "a~1.b.c"], id="two_dots"),
        pytest.param(["longfilename.txt", "a~.txt", "a~b.txt"], id="no_digits"),
    ],
)
def test_fat_alias_accepted(paths: list[str]) -> None:
    check_bundle_paths(paths)


# What a valid 8.3 name is: it gets no generated "~" alias, so an alias-shaped name beside it
# is fine; any other name gets one, so the alias-shaped name beside it is refused.
VALID_8_3 = ["A.TXT", "readme.txt", "ReadMe.Txt", "12345678.123", "a", "$%'()@^_.`{}", "~-!#&.x"]
NOT_8_3 = [
    "readme.html",
    "123456789.txt",
    "a b.txt",
    "a+b.txt",
    "a,b",
    "a;b",
    "a=b",
    "a[b]",
    ".hidden",
    "a.b.c",
    "caf\u00e9.txt",
    "\uae30\uc0ac",
    "\uff21.txt",
    "a\u200bb",
]


@pytest.mark.parametrize("name", VALID_8_3)
def test_alias_beside_valid_8_3_name_accepted(name: str) -> None:
    check_bundle_paths([name, "zz~1.txt"])
    check_bundle_paths(["zz~1.txt", f"d/{name}", "D/ZZ~2.TXT", f"{name}/x"])


@pytest.mark.parametrize("name", NOT_8_3)
def test_alias_beside_name_that_gets_one_refused(name: str) -> None:
    for paths in ([name, "zz~1.txt"], ["d/ZZ~9.TXT", f"D/{name}"], [f"{name}/x", "zz~1"]):
        with pytest.raises(UnsafePathError, match="FAT short name"):
            check_bundle_paths(paths)


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


ignorables = st.one_of([st.integers(low, high) for low, high in IGNORABLE_RANGES]).map(chr)


@given(paths, ignorables, st.integers(min_value=0))
def test_inserted_ignorable_clashes(path: str, char: str, where: int) -> None:
    if not _accepted(path):
        return
    at = where % (len(path) + 1)
    twin = path[:at] + char + path[at:]
    assert path_key(twin) == path_key(path)
    with pytest.raises(UnsafePathError):
        check_bundle_paths([path, twin])


@given(paths)
def test_path_key_has_no_ignorable(path: str) -> None:
    assert not any(
        low <= ord(char) <= high for char in path_key(path) for low, high in IGNORABLE_RANGES
    )


# A second, slow statement of the FAT short-name rule, to check the one-pass code against.
SHAPED = re.compile(r"(?=[^.]{1,8}(?:\.|\Z))[^.]*~[0-9]+(?:\.[^.]{0,3})?")
SHORT = re.compile(r"[A-Za-z0-9!#$%&'()@^_`{}~-]{1,8}(?:\.[A-Za-z0-9!#$%&'()@^_`{}~-]{1,3})?")
fat_names = st.sampled_from(
    [
        *("longfilename.txt", "LONGFI~1.TXT", "a~1", "A~12.B", "readme.txt", "Read Me", "ab~1"),
        *("\uff21\uff22~1", "x", "long folder", "\uae30\uc0ac", "lo\u200b~2"),
    ]
)
fat_paths = st.lists(fat_names, min_size=1, max_size=3).map("/".join)


def _has_fat_pair(candidates: list[str]) -> bool:
    entries = set()  # (key of the parent folder, key, name)
    for path in candidates:
        names = path.split("/")
        for depth in range(1, len(names) + 1):
            parent = path_key("/".join(names[: depth - 1]))
            entries.add((parent, path_key("/".join(names[:depth])), names[depth - 1]))
    return any(
        parent == other_parent
        and key != other_key
        and (SHAPED.fullmatch(name) or SHAPED.fullmatch(key.rsplit("/", 1)[-1]))
        and not SHORT.fullmatch(other_name)
        for parent, key, name in entries
        for other_parent, other_key, other_name in entries
    )


@settings(max_examples=300)
@given(st.lists(fat_paths, max_size=6))
def test_fat_rule_matches_its_statement(candidates: list[str]) -> None:
    try:
        check_bundle_paths(candidates)
    except ShortNameClashError:
        assert _has_fat_pair(candidates)
        return
    except UnsafePathError:
        return
    assert not _has_fat_pair(candidates)
