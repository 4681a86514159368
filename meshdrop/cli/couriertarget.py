"""Which courier folder a courier command writes: open or blind, for which circle, and
where on the stick (docs/FORMAT.md sections 15 and 25)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from meshdrop.errors import UsageError

if TYPE_CHECKING:
    from meshdrop.store.store import Store
    from meshdrop.transports.courier.exporter import ExportOptions


def courier_folder(dest: Path, key: bytes | None = None, folder: str | None = None) -> Path:
    """The courier folder to write in DEST: the open one (or DEST/meshdrop), or with
    ``key`` the blind folder of that key (or DEST/``folder``)."""
    from meshdrop.transports.courier.blindfolder import (
        DEFAULT_FOLDER,
        BlindKey,
        find_blind_folder,
    )
    from meshdrop.transports.courier.layout import COURIER_FOLDER, find_courier_folder

    if not dest.exists():
        raise UsageError(f"{dest} does not exist; mount the stick or make the folder first")
    if not dest.is_dir() or dest.is_symlink():
        raise UsageError(f"{dest} is not a folder")
    if key is None:
        return find_courier_folder(dest) or dest / COURIER_FOLDER
    found = find_blind_folder(dest, [BlindKey(key, "", 0, True)])
    if found is not None and folder is None:
        return found[0]
    return dest / check_folder_name(folder or DEFAULT_FOLDER)


FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_folder_name(name: str) -> str:
    if not FOLDER_NAME.fullmatch(name):
        raise UsageError(
            f"--folder {name!r}: use 1 to 64 letters, digits, '.', '_' or '-' "
            "(not starting with '.'), a name every stick's file system takes"
        )
    return name


def blind_key_for(home: Path, circle: str | None, open_folder: bool) -> bytes | None:
    """The key a courier folder is sealed with: --circle NAME's current key; with
    neither option, the one circle's if the node is in exactly one; None (an open
    folder) with --open or in no circle."""
    from meshdrop.errors import CircleChoiceError
    from meshdrop.store.circles import CircleStore
    from meshdrop.transports.courier.blindfolder import blind_key_of

    if circle is not None and open_folder:
        raise UsageError("--circle and --open cannot go together")
    if open_folder:
        return None
    book = CircleStore(home).load()
    if circle is not None:
        return blind_key_of(book.find(circle).circle)
    if not book.circles:
        return None
    if len(book.circles) > 1:
        raise CircleChoiceError(
            f"this node is in {len(book.circles)} circles: say which one the stick is for "
            "with --circle NAME (or --open for a folder anyone can read)"
        )
    return blind_key_of(book.circles[0].circle)


def drive_target(
    store: Store, drive: Path, courier: Path | None, options: ExportOptions
) -> tuple[Path, ExportOptions]:
    """Where a watcher tops a stick up: its open courier folder as it is; a blind folder
    of one of this node's circles with that circle's current key; a drive with neither
    (allowed with --allow-drive) as 'export' would with no option."""
    from dataclasses import replace

    from meshdrop.store.circles import CircleStore
    from meshdrop.transports.courier.blindfolder import (
        blind_key_of,
        find_blind_folder,
        keys_of_home,
    )
    from meshdrop.transports.courier.layout import COURIER_FOLDER, find_courier_folder

    if courier is not None and find_courier_folder(courier) == courier:
        return courier, options
    found = find_blind_folder(drive, keys_of_home(store.home, int(time.time())))
    if found is not None:
        circle = CircleStore(store.home).load().find(found[1].circle).circle
        return found[0], replace(options, blind_key=blind_key_of(circle))
    key = blind_key_for(store.home, None, False)
    if key is None:
        return drive / COURIER_FOLDER, options
    return courier_folder(drive, key), replace(options, blind_key=key)
