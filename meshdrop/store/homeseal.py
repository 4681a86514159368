"""Sealed copies of a plain store's small files, for ``meshdrop seal`` (store/
sealconvert.py): circles, drops with their records, the reader's key and certificate.

Each copy is written crash-safely into another folder (the conversion's work folder), as
a sealed store keeps it (store/homefiles.py); the plain files are left as they are, for
the caller to remove once its conversion is committed.
"""

from __future__ import annotations

from pathlib import Path

from meshdrop.core.storekeys import StoreKeys
from meshdrop.errors import StoreError
from meshdrop.fs import atomic_write, os_error_message
from meshdrop.store import circles, drops, homefiles
from meshdrop.store.homefiles import PLAIN, FileCodec

FOLDER_MODE = 0o700


def seal_home_files(source: Path, target: Path, keys: StoreKeys) -> list[str]:
    """Write into ``target`` the sealed copies of the small files of the plain store in
    ``source``. Returns the names of what it wrote at the top of ``target`` (files and
    folders), for the caller to move into place."""
    codec = FileCodec(keys)
    written = []
    if _seal_circles(source, target, codec):
        written.append(circles.FOLDER_NAME)
    if (source / drops.DROPS_FOLDER).is_dir():
        drops.DropStore(target, codec=codec).copy_from(drops.DropStore(source, codec=PLAIN))
        written.append(drops.DROPS_FOLDER)
    for name, purpose in homefiles.WHOLE_FILES.items():
        if _seal_whole(source / name, target / name, purpose, codec):
            top = name.split("/", 1)[0]
            if top not in written:
                written.append(top)
    return written


def _seal_circles(source: Path, target: Path, codec: FileCodec) -> bool:
    """Every circle file as it is (a damaged one stays damaged, and is kept), sealed."""
    paths = circles.CircleStore(source, PLAIN).file_names()
    for path in paths:
        _seal_whole(path, target / circles.FOLDER_NAME / path.name, homefiles.CIRCLE, codec)
    return bool(paths)


def _seal_whole(source: Path, target: Path, purpose: str, codec: FileCodec) -> bool:
    try:
        data = source.read_bytes()
        mode = source.stat().st_mode & 0o777
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StoreError(os_error_message(exc, f"reading {source}")) from exc
    try:
        target.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(os_error_message(exc, f"making {target.parent}")) from exc
    atomic_write(target, codec.encode(purpose, data), mode)
    return True
