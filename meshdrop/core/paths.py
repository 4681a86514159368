"""Paths inside a bundle: checked before anything is written to a disk.

A bundle path is data, not a file-system path: text with "/" between names. It is accepted
only if it names the same single file on every system a bundle may be unpacked on (Linux,
Windows, macOS, FAT32/exFAT USB sticks) and cannot point outside the folder it is unpacked
into. Refusals raise UnsafePathError with a sentence a user can read.
"""

import re
import unicodedata
from collections.abc import Iterable

from meshdrop.errors import UnsafePathError

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
    except UnicodeEncodeError:
        raise _refuse(path, "contains a broken character (a lone surrogate)") from None
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


def path_key(path: str) -> str:
    """Collision key: two paths with equal keys could be the same file somewhere.

    FAT32, exFAT and NTFS ignore letter case (by upper-casing, which alone folds the Turkish
    dotless i into I); APFS also ignores Unicode spelling. Compatibility normalisation and full
    case folding go further than any of them, so the key errs towards seeing a clash.
    """
    folded = unicodedata.normalize("NFKC", path).upper().casefold()
    return unicodedata.normalize("NFKC", folded)


def check_bundle_paths(paths: Iterable[str]) -> None:
    """Check each path, then refuse two paths that would be one file on some file system, and
    a file whose name another path needs as a folder ("a" and "a/b", also "A" and "a/b")."""
    files: dict[str, str] = {}  # key -> path
    folders: dict[str, str] = {}  # key of a folder -> a path inside it
    for path in paths:
        check_bundle_path(path)
        key = path_key(path)
        if key in files:
            raise _clash(files[key], path)
        if key in folders:
            raise _folder_clash(path, folders[key])
        names = path.split("/")
        # Folder keys come from the real "/" structure: the key of a whole path may contain a
        # "/" that NFKC made from a look-alike such as U+FF0F.
        for depth in range(1, len(names)):
            folder_key = path_key("/".join(names[:depth]))
            if folder_key in files:
                raise _folder_clash(files[folder_key], path)
            folders.setdefault(folder_key, path)
        files[key] = path


def _clash(first: str, second: str) -> UnsafePathError:
    if first == second:
        return UnsafePathError(f"The bundle lists the path {_show(first)} twice.")
    return UnsafePathError(
        f"The bundle paths {_show(first)} and {_show(second)} would be the same file on"
        " Windows, macOS or a USB stick, which ignore letter case and Unicode spelling."
    )


def _folder_clash(file: str, inner: str) -> UnsafePathError:
    return UnsafePathError(
        f"The bundle path {_show(file)} is a file, but {_show(inner)} needs a folder of that name."
    )
