"""Importing many bundle files in one run (``meshdrop import FOLDER``), through one
ingest session.

A small bundle's own commit costs more than copying it: a sync for its chunks, one for
their folder and one for the index transaction. So small bundles are verified and their
chunks staged as each file is read, and the complete ones are committed together by the
session every COMMIT_BATCH bundles or BATCH_BYTES of them: one sync and one transaction
per group, each bundle still checked and committed on its own. A bundle of BATCH_BYTES
or more is imported on its own, after the waiting ones. Results come out in the order the
files went in, as soon as they are final: a refused file is reported at once unless a
bundle before it is still waiting for its group, and nothing of it is kept, so a folder of
any number of refused files runs in bounded memory. A crash loses at most the waiting
group's commits; its chunks, once named, are not copied again by the next run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from meshdrop.errors import MeshdropError, MissingChunksError
from meshdrop.store.bundlefile import open_bundle_file
from meshdrop.store.ingest import (
    BATCH_BYTES,
    Committed,
    IngestSession,
    Progress,
    copy_chunks,
    import_bundle_file,
)
from meshdrop.store.models import ImportResult
from meshdrop.store.store import Store


@dataclass
class FileResult:
    path: Path
    outcome: ImportResult | MeshdropError | None = None  # None: waiting for its group


def _without_traceback(exc: MeshdropError) -> MeshdropError:
    # A kept traceback keeps its frames, and with them the chunk buffers they read: about
    # 1 MiB per refused file until the results are printed. The causes it wraps too.
    link: BaseException | None = exc
    while link is not None:
        link.with_traceback(None)
        link = link.__cause__ or link.__context__
    return exc


class BatchImport:
    """Use as a context manager around every ``add``; ``finish`` before reading the
    store, or before anything that must see the waiting bundles (a publisher update)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.session = IngestSession(store)
        self._results: list[FileResult] = []  # not yet returned, in order
        self._waiting: dict[int, FileResult] = {}  # id(verified) -> its file's result

    def __enter__(self) -> BatchImport:
        self.session.__enter__()  # the ingest lock: fsck --repair waits for us
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.session.__exit__(kind, exc, traceback)

    def add(self, path: Path, progress: Progress | None = None) -> list[FileResult]:
        """Import one bundle file; returns the results now final (maybe none yet)."""
        result = FileResult(path)
        self._results.append(result)
        big = False
        try:
            with open_bundle_file(path) as source:
                verified = self.session.accept(source.envelope)
                if isinstance(verified, ImportResult):
                    result.outcome = verified
                else:
                    source.check_size(verified)
                    missing = self.session.needed(verified)
                    size = sum(ref.size for ref in missing)
                    big = size >= BATCH_BYTES
                    if not big:
                        if progress:
                            progress(verified.manifest.size - size)  # already held
                        copy_chunks(source, missing, self.session.put, progress)
                        self._waiting[id(verified)] = result
                        self._settle(self.session.complete(verified))
        except MeshdropError as exc:
            result.outcome = _without_traceback(exc)
        if big:
            result.outcome = self._import_alone(path, progress)
        return self._final()

    def finish(self) -> list[FileResult]:
        """Name the staged chunks, commit the waiting bundles; every result so far."""
        self._settle(self.session.flush())
        return self._final()

    def _settle(self, done: list[Committed]) -> None:
        for item in done:
            result = self._waiting.pop(id(item.verified))
            outcome = item.outcome
            if isinstance(outcome, MissingChunksError):  # another writer's clean-up
                outcome = self._import_alone(result.path, None)
            elif isinstance(outcome, MeshdropError):
                outcome = _without_traceback(outcome)
            result.outcome = outcome

    def _final(self) -> list[FileResult]:
        """The results at the front that are final (results stay in order)."""
        count = 0
        for result in self._results:
            if result.outcome is None:
                break
            count += 1
        final, self._results = self._results[:count], self._results[count:]
        return final

    def _import_alone(self, path: Path, progress: Progress | None) -> ImportResult | MeshdropError:
        try:
            self._settle(self.session.flush())
            return import_bundle_file(self.session, path, progress)
        except MeshdropError as exc:
            return _without_traceback(exc)
