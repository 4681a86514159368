"""Where things live on a stick, and what they are called.

DEST/meshdrop/                   the courier folder
    <name>-<hash>.mdrop          a bundle of at most the part size (512 MiB), whole
    <name>-<hash>.p001 ...       a bigger bundle, in parts of at most the part size
    <fingerprint>.pub            a trusted publisher's record chain (revocations travel)
    want.mdw                     what the next node already has (written by `want`)
    drops/<drop id>.drop         a drop (a sealed report) the node held (dropcarry.py)

Every name is short lower-case ASCII, so nothing depends on case, long-name support or
characters FAT forbids: <name> is the bundle name (already [a-z0-9._-]), <hash> the first
12 hex digits of the SHA-256 of the signed manifest, <fingerprint> the first 16 characters
of the publisher fingerprint without dashes, in lower case.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

COURIER_FOLDER = "meshdrop"
BUNDLE_SUFFIX = ".mdrop"
PUB_SUFFIX = ".pub"
WANT_FILE = "want.mdw"
DROPS_FOLDER = "drops"  # drops (sealed reports), each <64 hex digits of its id>.drop
DROP_SUFFIX = ".drop"
HASH_CHARS = 12
FINGERPRINT_CHARS = 16
MAX_PARTS = 999
FAT32_MAX_FILE = 4 * 1024**3 - 1  # FAT32 refuses a file of 4 GiB or more
# A stick pulled mid-export loses at most the part being written; measured (scripts/
# bench_parts.py) as fast as one big file. Parts of 4 GiB - 1 from older exports still
# import, and still count as a complete copy.
DEFAULT_PART_SIZE = 512 * 1024**2

PART_NAME = re.compile(r".*\.p(\d{3})")


def base_name(bundle_name: str, manifest_hash: bytes) -> str:
    return f"{bundle_name}-{manifest_hash.hex()[:HASH_CHARS]}"


def bundle_file_name(bundle_name: str, manifest_hash: bytes) -> str:
    return base_name(bundle_name, manifest_hash) + BUNDLE_SUFFIX


def part_file_name(bundle_name: str, manifest_hash: bytes, number: int) -> str:
    return f"{base_name(bundle_name, manifest_hash)}.p{number:03d}"


def publisher_file_name(fingerprint: str) -> str:
    return fingerprint.replace("-", "").lower()[:FINGERPRINT_CHARS] + PUB_SUFFIX


def part_number(name: str) -> int | None:
    match = PART_NAME.fullmatch(name.lower())
    return int(match.group(1)) if match else None


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def find_courier_folder(path: Path) -> Path | None:
    """The courier folder ``path`` is or holds (a stick's root, or the folder itself), or
    None. A link is never followed; a name spelled in another case (FAT shows some names
    in capitals) is found too."""
    if not _is_real_dir(path):
        return None
    exact = path / COURIER_FOLDER
    if _is_real_dir(exact):
        return exact
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.name.lower() == COURIER_FOLDER and entry.is_dir(follow_symlinks=False):
                    return Path(entry.path)
    except OSError:
        return None
    if path.name.lower() == COURIER_FOLDER:
        return path
    return None
