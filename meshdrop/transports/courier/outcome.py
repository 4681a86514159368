"""What a courier import tells its caller: a report per bundle, publisher file or set of
junk files, with its status; and the progress sink the CLI draws its bar from."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from meshdrop.store.models import Withdrawal


class Status(Enum):
    IMPORTED = "imported"
    REPLACED = "imported, replacing an older version"
    ALREADY_HAD = "already had"
    OLDER = "older than what we have"
    REFUSED = "refused"
    INCOMPLETE = "incomplete"
    PUBLISHER_UPDATED = "publisher updated"
    PUBLISHER_KNOWN = "publisher already known"
    NOT_TRUSTED = "not a publisher this node trusts"
    SKIPPED = "skipped"
    CUT_SHORT = "cut short"  # a leftover of an export: never complete, so not a refusal

    @property
    def failed(self) -> bool:
        return self in (Status.REFUSED, Status.INCOMPLETE, Status.OLDER)


@dataclass
class Report:
    """What became of one bundle (all its files), one publisher file, or a set of junk."""

    files: list[str]
    status: Status
    detail: str
    name: str | None = None
    version: int | None = None
    publisher: str | None = None
    exit_code: int = 0  # of the error that refused it; 1 if it failed otherwise
    withdrawn: tuple[Withdrawal, ...] = ()  # what a newer publisher record it carried withdrew

    @property
    def code(self) -> int:
        return self.exit_code or int(self.status.failed)

    @property
    def label(self) -> str:
        if len(self.files) <= 3:
            return ", ".join(self.files)
        return f"{self.files[0]} and {len(self.files) - 1} more files"


class ProgressSink(Protocol):
    """Told about bytes read and files finished (the CLI draws a bar from it)."""

    def start(self, total_bytes: int, total_files: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def file_done(self) -> None: ...


class Silent:
    """A ProgressSink that shows nothing."""

    def start(self, total_bytes: int, total_files: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def file_done(self) -> None:
        pass
