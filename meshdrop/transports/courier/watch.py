"""Noticing sticks: poll the mount roots for drives, and tell which ones are new.

A drive is a folder one or two levels below a root (/media/LABEL, /media/USER/LABEL,
/run/media/USER/LABEL, /mnt/LABEL). It is meshdrop's business only if it holds a courier
folder, or if the owner allowed it by label or path. Polling (every POLL_SECONDS) needs no
udev, D-Bus or root, and works the same under Termux on Android.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from meshdrop.transports.courier.blindfolder import BlindKey, find_blind_folder
from meshdrop.transports.courier.layout import COURIER_FOLDER, find_courier_folder

POLL_SECONDS = 5.0
DEFAULT_ROOTS = (Path("/media"), Path("/run/media"), Path("/mnt"))
MAX_DRIVES_PER_ROOT = 256


def default_roots() -> list[Path]:
    roots = list(DEFAULT_ROOTS)
    if "com.termux" in os.environ.get("PREFIX", ""):
        # Termux: SD cards and USB drives appear under /storage/XXXX-XXXX, and
        # `termux-setup-storage` links them under ~/storage.
        roots += [Path("/storage"), Path.home() / "storage"]
    return roots


@dataclass(frozen=True)
class Drive:
    path: Path
    courier: Path | None  # its courier folder, if it has one
    identity: tuple[int, int]  # (device, inode) of the drive's root: a new stick is new

    @property
    def label(self) -> str:
        return self.path.name


def _subfolders(folder: Path) -> list[Path]:
    found: list[Path] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if len(found) >= MAX_DRIVES_PER_ROOT:
                    break
                if entry.name.startswith(".") or entry.name.lower() == COURIER_FOLDER:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    found.append(Path(entry.path))
    except OSError:
        pass
    return sorted(found)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISDIR(info.st_mode) else None


def is_allowed(path: Path, allowed: Sequence[str]) -> bool:
    for item in allowed:
        if item == path.name:
            return True
        if os.sep in item and Path(item).absolute() == path.absolute():
            return True
    return False


def find_drives(
    roots: Sequence[Path], allowed: Sequence[str], keys: Sequence[BlindKey] = ()
) -> list[Drive]:
    """Every drive below ``roots`` that has a courier folder (open, or blind for one of
    ``keys``) or that the owner allowed (the roots themselves count too when allowed, or
    when they hold a courier folder)."""
    drives: list[Drive] = []

    def consider(path: Path) -> bool:
        ident = _identity(path)
        if ident is None:
            return False
        courier = find_courier_folder(path)
        if courier is None:
            blind = find_blind_folder(path, keys)
            courier = blind[0] if blind is not None else None
        if (courier is not None and courier != path) or is_allowed(path, allowed):
            drives.append(Drive(path, courier if courier != path else None, ident))
            return True
        return False

    for root in roots:
        if consider(root):
            continue
        for first in _subfolders(root):
            if consider(first):
                continue
            for second in _subfolders(first):
                consider(second)
    return drives


class Watcher:
    """Remembers the drives of the last poll; ``poll`` returns those that appeared."""

    def __init__(
        self, roots: Sequence[Path], allowed: Sequence[str], keys: Sequence[BlindKey] = ()
    ) -> None:
        self.roots = list(roots)
        self.allowed = list(allowed)
        self.keys = list(keys)
        self.present: dict[Path, tuple[int, int]] = {}

    def poll(self) -> list[Drive]:
        drives = find_drives(self.roots, self.allowed, self.keys)
        new = [d for d in drives if self.present.get(d.path) != d.identity]
        self.present = {d.path: d.identity for d in drives}
        return new
