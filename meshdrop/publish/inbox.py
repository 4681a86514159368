"""Opening drops into the publisher's inbox folder ('meshdrop reports open').

Each drop sealed to one of the publisher's report keys becomes a sub-folder named by its
drop id (hex):

    report.txt        the report's text (UTF-8)
    <name>            each attachment, under the neutral name it was sealed with when
                      that is a safe file name, else "attachment-N"
    meta.json         drop_id, key_id, suite, receipt, expiry, arrived (when the node
                      stored it; null if unknown), opened (now), attachments

The sub-folder is written under a temp name (".tmp-<id>"), each file synced, then
renamed into place and the folder synced: a killed run leaves a temp folder (removed by
the next run) or a whole report, never half of one. A drop opened before is skipped.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from meshdrop.core.drops import drop_id, open_drop_with_key
from meshdrop.core.reportkeys import ReportPrivateKey
from meshdrop.core.reports import Report
from meshdrop.errors import DropError, StoreError
from meshdrop.fs import TEMP_PREFIX, atomic_write, fsync_dir, os_error_message

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
_RESERVED_NAMES = frozenset({"report.txt", "meta.json"})
_FILE_MODE = 0o600
_FOLDER_MODE = 0o700


@dataclass
class Tally:
    opened: int = 0
    not_for_you: int = 0
    already_opened: int = 0
    damaged: int = 0  # refused before any key was tried, or malformed inside
    folders: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "opened": self.opened,
            "not_for_you": self.not_for_you,
            "already_opened": self.already_opened,
            "damaged": self.damaged,
            "folders": self.folders,
        }

    def summary(self) -> str:
        line = f"opened {self.opened}, not for you {self.not_for_you}"
        if self.already_opened:
            line += f", already opened {self.already_opened}"
        if self.damaged:
            line += f", damaged {self.damaged}"
        return line


def safe_attachment_name(name: str, number: int, used: set[str]) -> str:
    """The attachment's own name when it is a safe plain file name (the sealer chose a
    neutral one), else "attachment-N": never a path, a hidden file or a clash."""
    safe = _SAFE_NAME.sub("_", name).lstrip(".-")[:100]
    if not safe or safe in used or safe in _RESERVED_NAMES:
        safe = f"attachment-{number}"
    used.add(safe)
    return safe


class Inbox:
    def __init__(self, out: Path, keys: Sequence[ReportPrivateKey], now: int) -> None:
        self.out = out
        self.keys = keys
        self.now = now
        self.tally = Tally()
        try:
            out.mkdir(parents=True, exist_ok=True, mode=_FOLDER_MODE)
            for leftover in out.glob(f"{TEMP_PREFIX}*"):
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError as exc:
            raise StoreError(os_error_message(exc, f"preparing {out}")) from exc

    def open_one(self, blob: bytes, arrived: int | None) -> None:
        """Try one drop with every key; count what became of it."""
        name = drop_id(blob).hex()
        if (self.out / name).is_dir():
            self.tally.already_opened += 1
            return
        try:
            opened = open_drop_with_key(blob, self.keys)
        except DropError:  # refused by its structure, or malformed inside (DropContentError)
            self.tally.damaged += 1
            return
        if opened is None:
            self.tally.not_for_you += 1
            return
        report, key = opened
        self._write(name, report, key, blob, arrived)
        self.tally.opened += 1
        self.tally.folders.append(str(self.out / name))

    def _write(
        self, name: str, report: Report, key: ReportPrivateKey, blob: bytes, arrived: int | None
    ) -> None:
        temp = self.out / f"{TEMP_PREFIX}{name}"
        try:
            shutil.rmtree(temp, ignore_errors=True)
            temp.mkdir(mode=_FOLDER_MODE)
            atomic_write(temp / "report.txt", report.text.encode("utf-8"), _FILE_MODE)
            used: set[str] = set()
            files = []
            for number, attachment in enumerate(report.attachments, start=1):
                file_name = safe_attachment_name(attachment.name, number, used)
                atomic_write(temp / file_name, attachment.data, _FILE_MODE)
                files.append(
                    {
                        "file": file_name,
                        "name": attachment.name,
                        "media_type": attachment.media_type,
                        "size": len(attachment.data),
                    }
                )
            meta = {
                "drop_id": name,
                "key_id": key.key_id.hex(),
                "suite": key.suite.value,
                "receipt": report.receipt,
                "expiry": int.from_bytes(blob[1:9], "big"),
                "size": len(blob),
                "arrived": arrived,
                "opened": self.now,
                "attachments": files,
            }
            text = json.dumps(meta, ensure_ascii=False, indent=2) + "\n"
            atomic_write(temp / "meta.json", text.encode("utf-8"), _FILE_MODE)
            temp.rename(self.out / name)
            fsync_dir(self.out)
        except OSError as exc:
            raise StoreError(os_error_message(exc, f"writing the report {name}")) from exc
