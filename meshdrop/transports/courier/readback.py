"""Reading back what an export wrote, to catch a stick that lies (docs/THREATS.md,
"Hostile and broken media"). A fake-capacity card takes every write, then stores
the blocks past its real capacity over earlier ones: a file written first reads back as
pieces of later ones.

Each file the export commits gets a few 4 KiB sample blocks: its first and last, and
some chosen at random for it. Their hash is taken as soon as the file's batch is committed (from
the page cache, which holds the bytes just written; a block evicted that soon is read
from where it was just written, which a wrapping card still holds). After the export's
final sync, every sample is read again with its cached pages dropped (posix_fadvise
DONTNEED on the sampled blocks, and RANDOM against read-ahead: portable, where O_DIRECT
needs aligned buffers and some file systems refuse it), so the stick itself answers. A
wrap overwrites a run of earlier blocks, whole files of it: their first blocks differ.
Samples cost a few reads per file instead of reading the whole stick again."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
from dataclasses import dataclass
from pathlib import Path

from meshdrop.errors import StoreError
from meshdrop.fs import DurableBatch, os_error_message

BLOCK = 4096
RANDOM_BLOCKS = 4  # besides the first and the last


@dataclass(frozen=True)
class Sampled:
    path: Path
    size: int
    blocks: tuple[int, ...]
    digest: bytes


def _digest(fd: int, blocks: tuple[int, ...]) -> bytes:
    """The hash of ``blocks`` (sorted), read a run of adjacent ones at a time."""
    runs: list[list[int]] = []  # [first block, count]
    for block in blocks:
        if runs and sum(runs[-1]) == block:
            runs[-1][1] += 1
        else:
            runs.append([block, 1])
    sha = hashlib.sha256()
    for first, count in runs:
        sha.update(os.pread(fd, count * BLOCK, first * BLOCK))
    return sha.digest()


class ReadBack:
    """The samples of every file an export committed; ``check`` reads them back."""

    def __init__(self) -> None:
        self._random = random.SystemRandom()
        self.files: list[Sampled] = []

    def _blocks(self, size: int) -> tuple[int, ...]:
        count = max(1, (size + BLOCK - 1) // BLOCK)
        chosen = {0, count - 1}
        chosen.update(self._random.randrange(count) for _ in range(RANDOM_BLOCKS))
        return tuple(sorted(chosen))

    def add(self, path: Path) -> None:
        """Sample the file just committed as ``path``."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                size = os.fstat(fd).st_size
                blocks = self._blocks(size)
                self.files.append(Sampled(path, size, blocks, _digest(fd, blocks)))
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreError(os_error_message(exc, f"reading back {path}")) from exc

    def check(self) -> list[Path]:
        """The files whose samples the stick no longer returns as written."""
        return [s.path for s in self.files if not _reads_back(s)]


def _reads_back(sampled: Sampled) -> bool:
    try:
        fd = os.open(sampled.path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return True  # removed since (a later copy replaced it): nothing to import
    except OSError as exc:
        raise StoreError(os_error_message(exc, f"reading back {sampled.path}")) from exc
    try:
        if os.fstat(fd).st_size != sampled.size:
            return False
        _drop_cached(fd, sampled.blocks)
        return _digest(fd, sampled.blocks) == sampled.digest
    except OSError as exc:
        raise StoreError(os_error_message(exc, f"reading back {sampled.path}")) from exc
    finally:
        os.close(fd)


def _drop_cached(fd: int, blocks: tuple[int, ...]) -> None:
    """Drop the cached pages of the sampled blocks only (dropping a whole part's half a
    gigabyte of pages cost more than reading the samples), and read without read-ahead,
    so that each sample is one read of the stick."""
    with contextlib.suppress(OSError, AttributeError):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        for block in blocks:
            os.posix_fadvise(fd, block * BLOCK, BLOCK, os.POSIX_FADV_DONTNEED)


class SampledBatch(DurableBatch):
    """A DurableBatch that samples each file it commits into ``readback``."""

    def __init__(self, readback: ReadBack) -> None:
        super().__init__()
        self.readback = readback
        self._targets: dict[int, Path] = {}

    def create(self, target: Path, mode: int = 0o644) -> int:
        fd = super().create(target, mode)
        self._targets[fd] = target
        return fd

    def discard(self, fd: int) -> None:
        self._targets.pop(fd, None)
        super().discard(fd)

    def commit(self) -> None:
        super().commit()
        targets = list(self._targets.values())
        self._targets.clear()
        for target in targets:
            self.readback.add(target)


def fake_capacity_error(bad: list[Path], removed: int) -> StoreError:
    names = ", ".join(p.name for p in bad[:3]) + (", ..." if len(bad) > 3 else "")
    return StoreError(
        "the stick returned different bytes than were written: it may be a fake-capacity "
        f"card ({len(bad)} {'file' if len(bad) == 1 else 'files'} did not read back: {names}; "
        f"removed {removed}). Test it with a tool such as f3 or H2testw before using it"
    )
