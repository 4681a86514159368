"""fs.DurableBatch: many files made crash-safely together, their fsyncs issued at once."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from meshdrop import fs
from meshdrop.errors import StoreError
from meshdrop.fs import DurableBatch


def write_batch(folder: Path, count: int) -> tuple[DurableBatch, dict[int, Path]]:
    batch = DurableBatch()
    fds = {}
    for i in range(count):
        target = folder / f"file-{i}"
        target.write_bytes(b"old")
        fd = batch.create(target)
        os.write(fd, f"new {i}".encode())
        fds[fd] = target
    return batch, fds


def test_every_file_of_a_batch_is_fsynced_once_before_any_is_renamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch, fds = write_batch(tmp_path, 20)
    synced: list[str] = []
    lock = threading.Lock()
    real_fsync = os.fsync

    def recording(fd: int) -> None:
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if path.name.startswith(fs.TEMP_PREFIX):  # a file of the batch, not its folder
            target = path.with_name(path.name.split("-", 2)[2])
            assert target.read_bytes() == b"old"  # nothing renamed before every fsync
            with lock:
                synced.append(target.name)
        real_fsync(fd)

    monkeypatch.setattr(fs.os, "fsync", recording)
    batch.commit()
    assert sorted(synced) == sorted(t.name for t in fds.values())
    assert [fds[fd].read_bytes() for fd in fds] == [f"new {i}".encode() for i in range(20)]
    assert not list(tmp_path.glob(f"{fs.TEMP_PREFIX}*"))


def test_a_failed_fsync_names_its_file_and_no_target_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch, fds = write_batch(tmp_path, 12)
    failing = list(fds)[7]
    real_fsync = os.fsync

    def flaky(fd: int) -> None:
        if fd == failing:
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(fs.os, "fsync", flaky)
    with pytest.raises(StoreError, match=f"{fds[failing].name}"):
        batch.commit()
    assert {t.read_bytes() for t in fds.values()} == {b"old"}
    assert not list(tmp_path.glob(f"{fs.TEMP_PREFIX}*"))
