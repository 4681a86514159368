"""Group commit for the sync: bundles whose chunks are all stored are committed together.
While one group commits on the store's writer thread, the next gathers, so a node
fetching many small bundles pays one folder sync and one index transaction per group
instead of per bundle (``IngestSession.commit_group``: each bundle is still checked in its own
savepoint and fails alone). A lone bundle commits at once: nothing waits for company.

A small bundle's chunks come verified but under temp names, not yet durable (transfer.py):
the group names them all after one file-system sync (``publish_chunks``) just before it
commits, instead of a sync per chunk. A group whose chunks cannot be named fails as a
whole, and its temp files are removed.

A group that finds the process out of file descriptors (EMFILE: a flood of connections,
a low ``ulimit -n``) is committed again after a pause, a few times; only then does each
of its transfers hear the error, and its verified chunks stay for the next sync."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from meshdrop.core.verify import VerifiedManifest
from meshdrop.errors import MeshdropError, OutOfDescriptorsError
from meshdrop.store.ingest import COMMIT_BATCH
from meshdrop.store.models import ImportResult
from meshdrop.transports.lan.storeio import StoreIO

Waiting = tuple[VerifiedManifest, set[Path], list[Path], "asyncio.Future[ImportResult]"]
RETRY_PAUSES = (0.25, 0.5, 1.0, 2.0, 4.0)  # seconds before each new try of a starved group


class GroupCommit:
    def __init__(self, storeio: StoreIO, keep: Callable[[Any], asyncio.Task[Any]]) -> None:
        self.storeio = storeio
        self._keep = keep  # the committing task runs to its end even when the node stops
        self._waiting: list[Waiting] = []
        self._committing: asyncio.Task[None] | None = None
        self.groups = 0

    async def commit(
        self, verified: VerifiedManifest, folders: set[Path], temps: Sequence[Path] = ()
    ) -> ImportResult:
        """Make ``verified`` visible once its group commits, its staged chunks ``temps``
        named first; raises its own error (a MissingChunksError, a refusal) as
        ``Store.commit`` would."""
        done: asyncio.Future[ImportResult] = asyncio.get_running_loop().create_future()
        self._waiting.append((verified, set(folders), list(temps), done))
        if self._committing is None:
            self._committing = self._keep(self._commit_all())
        return await done

    async def _commit_all(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting[:COMMIT_BATCH], self._waiting[COMMIT_BATCH:]
                folders = set().union(*(f for _, f, _, _ in group))
                temps = [t for _, _, ts, _ in group for t in ts]
                try:
                    if temps:
                        folders |= await self._publish(temps)
                    results = await self._commit_group([v for v, _, _, _ in group], folders)
                except MeshdropError as exc:  # the group as a whole (a folder sync failed)
                    results = [exc] * len(group)
                except BaseException as exc:  # a bug: every transfer of the group hears it
                    for _, _, _, done in group:
                        if not done.done():
                            done.set_exception(exc)
                    raise
                self.groups += 1
                for (_, _, _, done), result in zip(group, results, strict=True):
                    if done.done():
                        continue  # its transfer stopped waiting (the node stops)
                    if isinstance(result, MeshdropError):
                        done.set_exception(result)
                    else:
                        done.set_result(result)
        finally:
            self._committing = None

    async def _publish(self, temps: list[Path]) -> set[Path]:
        try:
            # Left in the page cache: dropping a small chunk's pages costs an open and a
            # close of its own, for a few KiB (and the reader's indexer reads new bundles).
            return await self.storeio.publish_chunks(temps, cached=True)
        except MeshdropError:
            await asyncio.to_thread(_remove, temps)  # not named: of no use to anyone
            raise

    async def _commit_group(
        self, bundles: list[VerifiedManifest], folders: set[Path]
    ) -> list[ImportResult | MeshdropError]:
        """Commit, trying again after RETRY_PAUSES while the process has no descriptor
        to spare (nothing was committed then: the group failed as a whole)."""
        for pause in (*RETRY_PAUSES, None):
            results = await self.storeio.commit_many(bundles, folders)
            if pause is None or not any(isinstance(r, OutOfDescriptorsError) for r in results):
                return results
            await asyncio.sleep(pause)
        raise AssertionError("unreachable")


def _remove(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
