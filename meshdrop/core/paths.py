"""Paths inside a bundle: checked before anything is written to a disk.

A bundle path is data, not a file-system path: text with "/" between names. It is accepted
only if it names the same single file on every system a bundle may be unpacked on (Linux,
Windows, macOS, FAT32/exFAT USB sticks) and cannot point outside the folder it is unpacked
into. Refusals raise UnsafePathError with a sentence a user can read.
"""

import re
import unicodedata
from collections.abc import Iterable
from typing import NamedTuple

from meshdrop.errors import ShortNameClashError, UnsafePathError

MAX_PATH_BYTES = 1024  # whole path, UTF-8
MAX_COMPONENT_CHARS = 255  # per name, counted in UTF-16 units like FAT32, exFAT and NTFS do
MAX_COMPONENT_BYTES = 255  # per name, UTF-8: ext4, btrfs and XFS count bytes, not characters
MAX_DEPTH = 32  # names per path

_FORBIDDEN_CHARS = '<>:"|?*'
# Invisible characters that reorder how text is displayed, so a listing could lie about a name.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_LINE_BREAK_CATEGORIES = ("Zl", "Zp")  # U+2028, U+2029
_DRIVE = re.compile(r"[A-Za-z]:")
# Windows opens a device instead of a file for these, whatever the extension ("con.txt").
_RESERVED_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {prefix + digit for prefix in ("COM", "LPT") for digit in "0123456789\u00b9\u00b2\u00b3"}
)
_SHOWN_CHARS = 120  # a hostile path may be megabytes long; a message stays one readable line

# Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt; the same from Unicode
# 14.0, which added U+180F, through 16.0): invisible characters that HFS+ and some NTFS and
# search tools skip when comparing names, so "a\u200bb" may open "ab". Unassigned code points
# in these ranges are included, as Unicode reserves them for more of the same.
IGNORABLE_RANGES: tuple[tuple[int, int], ...] = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
_IGNORABLE = re.compile(
    "["
    + "".join(f"{re.escape(chr(low))}-{re.escape(chr(high))}" for low, high in IGNORABLE_RANGES)
    + "]"
)
# FAT gives every name that is not a valid 8.3 name a generated short alias (LONGFI~1.TXT),
# and opening the alias opens that file. A valid 8.3 name gets no "~" alias: it is its own
# short name, upper-cased. Spaces and "+,;=[]" force an alias; other code pages' letters may
# not, but counting every non-ASCII name as long only errs towards a refusal.
_SHORT_CHAR = r"[A-Za-z0-9!#$%&'()@^_`{}~-]"
_VALID_8_3 = re.compile(rf"{_SHORT_CHAR}{{1,8}}(?:\.{_SHORT_CHAR}{{1,3}})?")
_ALIAS_TAIL = re.compile(r"~[0-9]+\Z")


def _show(text: str) -> str:
    # repr() escapes every unprintable character (controls, bidi, line breaks) but leaves
    # Korean and other printable text readable, unlike ascii().
    if len(text) > _SHOWN_CHARS:
        return repr(text[:_SHOWN_CHARS]) + "..."
    return repr(text)


def _refuse(path: str, problem: str) -> UnsafePathError:
    return UnsafePathError(f"The bundle path {_show(path)} {problem}.")


def _refuse_name(path: str, name: str, problem: str) -> UnsafePathError:
    return _refuse(path, f"uses the name {_show(name)}, which {problem}")


def check_bundle_path(path: str) -> str:
    """Return ``path`` unchanged if it is a safe bundle path, else raise UnsafePathError."""
    if not isinstance(path, str):
        raise UnsafePathError(f"A bundle path must be text, not a {type(path).__name__} value.")
    if not path:
        raise _refuse(path, "is empty; every file in a bundle needs a name")
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise _refuse(path, "contains a broken character (a lone surrogate)") from exc
    if size > MAX_PATH_BYTES:
        raise _refuse(path, f"is {size} bytes long; the limit is {MAX_PATH_BYTES} bytes")
    if not unicodedata.is_normalized("NFC", path):
        raise _refuse(
            path,
            "is not in standard Unicode form (NFC), so the same name could be spelled two ways",
        )
    if path.startswith("/"):
        raise _refuse(path, "starts with '/'; paths in a bundle must be relative")
    if "\\" in path:
        raise _refuse(path, "contains a backslash, which Windows treats as a folder separator")
    if _DRIVE.match(path):
        raise _refuse(path, f"starts with {path[:2]!r}, which Windows reads as a drive")
    if path.endswith("/"):
        raise _refuse(path, "ends with '/'; it must name a file, not a folder")
    names = path.split("/")
    if "" in names:
        raise _refuse(path, "contains '//', an empty folder name")
    if len(names) > MAX_DEPTH:
        raise _refuse(path, f"is {len(names)} levels deep; the limit is {MAX_DEPTH}")
    for name in names:
        _check_name(path, name)
    return path


def _check_name(path: str, name: str) -> None:
    if name in (".", ".."):
        raise _refuse_name(path, name, "means this folder or the one above it")
    for char in name:
        category = unicodedata.category(char)
        if category == "Cc":
            raise _refuse_name(path, name, f"contains the control character U+{ord(char):04X}")
        if char in _BIDI_CONTROLS:
            raise _refuse_name(
                path, name, f"contains U+{ord(char):04X}, which changes how text is displayed"
            )
        if category in _LINE_BREAK_CATEGORIES:
            raise _refuse_name(path, name, f"contains the line break U+{ord(char):04X}")
        if char in _FORBIDDEN_CHARS:
            raise _refuse_name(
                path, name, f"contains {char!r}, which Windows and USB sticks do not allow"
            )
    if name.startswith(" "):
        raise _refuse_name(path, name, "starts with a space")
    if name.endswith((".", " ")):
        raise _refuse_name(path, name, "ends with a dot or space, which Windows drops")
    if name.partition(".")[0].rstrip(" ").upper() in _RESERVED_NAMES:
        raise _refuse_name(path, name, "Windows reserves for a device (like CON, NUL or COM1)")
    units = len(name.encode("utf-16-le")) // 2
    if units > MAX_COMPONENT_CHARS:
        raise _refuse_name(
            path, name, f"is {units} characters long; the limit is {MAX_COMPONENT_CHARS}"
        )
    size = len(name.encode("utf-8"))
    if size > MAX_COMPONENT_BYTES:
        raise _refuse_name(
            path, name, f"is {size} bytes long in UTF-8; Linux allows {MAX_COMPONENT_BYTES}"
        )
    if not name.isascii():
        visible = _IGNORABLE.sub("", name)
        if not visible:
            raise _refuse_name(path, name, "is made only of characters that some systems ignore")
        if visible in (".", ".."):
            raise _refuse_name(
                path, name, "means this folder or the one above it once invisible characters go"
            )


def path_key(path: str) -> str:
    """Collision key: two paths with equal keys could be the same file somewhere.

    FAT32, exFAT and NTFS ignore letter case (by upper-casing, which alone folds the Turkish
    dotless i into I); APFS also ignores Unicode spelling, HFS+ also default-ignorable
    characters. Compatibility normalisation and full case folding go further than any of
    them, so the key errs towards seeing a clash.
    """
    if path.isascii():
        return path.lower()  # what the steps below give for ASCII, only faster
    # Ignorables go first, as one between "e" and U+0301 would block composition, and again
    # after case folding in case a mapping ever yields one (none does in Unicode 14.0).
    text = unicodedata.normalize("NFKC", _IGNORABLE.sub("", path))
    folded = _IGNORABLE.sub("", text.upper().casefold())
    return unicodedata.normalize("NFKC", folded)


def check_bundle_paths(paths: Iterable[str]) -> None:
    """Check each path, then refuse two paths that would be one file on some file system, a
    file whose name another path needs as a folder ("a" and "a/b", also "A" and "a/b"), and a
    name shaped like a FAT short alias beside a name that gets one ("longfi~1.txt" beside
    "longfilename.txt")."""
    files: dict[str, str] = {}  # key -> path
    folders: dict[str, str] = {}  # key of a folder -> a path inside it
    folder_keys: dict[str, str] = {}  # a folder as spelled in some path -> its key
    short_names = _ShortNames()
    for path in paths:
        check_bundle_path(path)
        key = path_key(path)
        if key in files:
            raise _clash(files[key], path)
        if key in folders:
            raise _folder_clash(path, folders[key])
        names = path.split("/")
        parent = ""  # the key of the folder the bundle is unpacked into
        # Folder keys come from the real "/" structure: the key of a whole path may contain a
        # "/" that NFKC made from a look-alike such as U+FF0F.
        for depth in range(1, len(names)):
            folder = "/".join(names[:depth])
            folder_key = folder_keys.get(folder)
            if folder_key is None:  # a folder is noted once per spelling, not once per path
                folder_key = folder_keys[folder] = path_key(folder)
                short_names.add(parent, folder_key, names[depth - 1], folder, is_folder=True)
            if folder_key in files:
                raise _folder_clash(files[folder_key], path)
            folders.setdefault(folder_key, path)
            parent = folder_key
        short_names.add(parent, key, names[-1], path, is_folder=False)
        files[key] = path


class _Entry(NamedTuple):
    """One name in a folder: a file, or a folder that some path needs."""

    key: str  # path_key of ``path``
    name: str
    path: str  # up to and including ``name``
    is_folder: bool

    def shown(self) -> str:
        return f"the folder {_show(self.path)}" if self.is_folder else _show(self.path)


class _ShortNames:
    """Refuses an alias-shaped name in a folder that also holds a name FAT makes an alias for.

    Which alias a driver picks (~1 to ~4, a hash after that, mount options on Linux) cannot be
    known, so any such pair is refused. Per folder it keeps the first two entries of each kind
    with different keys: whatever key comes later, one of them differs from it, so one pass
    finds a pair if there is one.
    """

    def __init__(self) -> None:
        self._shaped: dict[str, list[_Entry]] = {}  # folder key -> alias-shaped entries
        self._long: dict[str, list[_Entry]] = {}  # folder key -> entries that get an alias

    def add(self, folder: str, key: str, name: str, path: str, *, is_folder: bool) -> None:
        """Note ``name`` (``path`` up to it, whose key is ``key``) in the folder keyed
        ``folder``."""
        shaped = _alias_shaped(name) or _alias_shaped(key.rpartition("/")[2])
        gets_alias = _VALID_8_3.fullmatch(name) is None
        entry = _Entry(key, name, path, is_folder)
        if shaped:
            for long in self._long.get(folder, ()):
                if long.key != key:
                    raise _short_name_clash(entry, long)
            _keep(self._shaped.setdefault(folder, []), entry)
        if gets_alias:
            for alias in self._shaped.get(folder, ()):
                if alias.key != key:
                    raise _short_name_clash(alias, entry)
            _keep(self._long.setdefault(folder, []), entry)


def _keep(kept: list[_Entry], entry: _Entry) -> None:
    if len(kept) < 2 and all(other.key != entry.key for other in kept):
        kept.append(entry)


def _alias_shaped(name: str) -> bool:
    """Shaped like a FAT short alias: a base of at most 8 characters ending in "~" and ASCII
    digits, then at most one "." and up to 3 characters. Any characters count, as a code page
    can put its own letters into an alias."""
    if "~" not in name:
        return False
    base, _, extension = name.partition(".")
    return (
        len(base) <= 8
        and len(extension) <= 3
        and "." not in extension
        and _ALIAS_TAIL.search(base) is not None
    )


def _clash(first: str, second: str) -> UnsafePathError:
    if first == second:
        return UnsafePathError(f"The bundle lists the path {_show(first)} twice.")
    return UnsafePathError(
        f"The bundle paths {_show(first)} and {_show(second)} would be the same file on"
        " Windows, macOS or a USB stick, which ignore letter case, Unicode spelling or"
        " invisible characters."
    )


def _short_name_clash(shaped: _Entry, long: _Entry) -> ShortNameClashError:
    opening = "In this bundle, " if shaped.is_folder else "The bundle path "
    return ShortNameClashError(
        f"{opening}{shaped.shown()} could be the FAT short name of {long.shown()} in the same"
        " folder, so on a USB stick or Windows writing one could overwrite the other."
    )


def _folder_clash(file: str, inner: str) -> UnsafePathError:
    return UnsafePathError(
        f"The bundle path {_show(file)} is a file, but {_show(inner)} needs a folder of that name."
    )
