"""Panic: make a store noise at once (README, "Panic"; docs/THREATS.md, "A seized node").

The steps, each a crash point for the kill tests:

1. destroy the slots file (sealing.destroy_slots: renamed to a marker name, overwritten,
   synced, its blocks punched out; the marker stays until step 3 moves it, last): from here on
   nothing of a sealed store decrypts, whatever else is left;
2. stop every process that could still hold its keys: the unlock agent, and each process
   of this user running meshdrop with a file of this home open (the node, the reader, a
   command in progress), by SIGKILL;
3. move every entry of the home into one new folder ``.tmp-<16 hex>`` (renames only: the
   same time whatever the store's size), the index last;
4. remove that folder in a background process.

A run cut short after step 1 began is finished at the next start (``finish_interrupted``):
the marker says so (a damaged index alone never starts a wipe). A plain store (no slots)
loses what step 3 moves, but its files are not made noise.

Nothing here writes to standard output or standard error: what the panic command says is
the same whatever it found.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from meshdrop.core.storekeys import StoreKeys
from meshdrop.fs import TEMP_PREFIX, fsync_dir
from meshdrop.store import keyagent, sealing
from meshdrop.store.crashpoints import crash_point

INDEX_NAME = "index.sqlite"
WIPE_PREFIX = TEMP_PREFIX
_WIPE_FOLDER = re.compile(re.escape(WIPE_PREFIX) + r"[0-9a-f]{16}")
_PROGRAM = b"meshdrop"
_PROC = Path("/proc")


def panic(home: Path, own_children: bool = True) -> None:
    """Wipe the store in ``home`` (sealed or plain) as the module's docstring says;
    ``own_children``: this process's children are stopped too (processes_using)."""
    if not home.is_dir():
        return
    sealing.destroy_slots(home, keep_marker=True)
    crash_point("panic-slots")
    stop_processes(home, own_children)
    crash_point("panic-stopped")
    wipe_folder = move_aside(home)
    crash_point("panic-moved")
    if wipe_folder is not None:
        remove_in_background(wipe_folder)


def stop_processes(home: Path, own_children: bool = True) -> None:
    keyagent.stop(home)
    for pid in processes_using(home, own_children):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def processes_using(home: Path, own_children: bool = True) -> list[int]:
    """This user's meshdrop processes and their descendants (a search indexer is a
    spawned Python child whose command line does not say meshdrop) with a file in
    ``home`` open or their working folder in it, and all the children of those and of
    this process (unless not ``own_children``)."""
    real = os.path.realpath(home)
    inside = real.rstrip("/") + "/"
    me = os.getpid()
    parents = _own_processes()
    ours = {pid for pid in parents if _is_meshdrop(pid)}
    using = {
        pid
        for pid in parents
        if pid != me and _descends(pid, ours, parents) and _uses(pid, real, inside)
    }
    # Their children, and this process's, go too: a child that has no file open at this
    # moment may open the store a moment later, and would make a new one.
    roots = using | {me} if own_children else using
    using |= {pid for pid in parents if _descends(pid, roots, parents)}
    using.discard(me)
    return sorted(using)


def _own_processes() -> dict[int, int]:
    """{pid: parent pid} of this user's processes."""
    uid = os.getuid()
    parents: dict[int, int] = {}
    try:
        entries = list(_PROC.iterdir())
    except OSError:
        return parents
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses.
        parents[int(entry.name)] = int(stat[stat.rindex(b")") + 2 :].split()[1])
    return parents


def _is_meshdrop(pid: int) -> bool:
    try:
        return _PROGRAM in (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return False


def _descends(pid: int, ours: set[int], parents: dict[int, int]) -> bool:
    seen: set[int] = set()
    while pid not in seen:
        if pid in ours:
            return True
        seen.add(pid)
        pid = parents.get(pid, 0)
    return False


def _uses(pid: int, real: str, inside: str) -> bool:
    proc = _PROC / str(pid)
    links = [proc / "cwd"]
    with contextlib.suppress(OSError):
        links += list((proc / "fd").iterdir())
    for link in links:
        try:
            target = str(link.readlink())
        except OSError:
            continue
        if target == real or target.startswith(inside):
            return True
    return False


def is_wipe_folder(name: str) -> bool:
    return _WIPE_FOLDER.fullmatch(name) is not None


def move_aside(home: Path) -> Path | None:
    """Every entry of ``home`` renamed into one new ``.tmp-<16 hex>`` folder, then the
    index, then the slots file being destroyed: a move cut short leaves that marker in
    ``home``, so that the next start finishes the wipe. The folder, or None if the home
    held nothing."""
    names = [entry.name for entry in home.iterdir() if not _WIPE_FOLDER.fullmatch(entry.name)]
    if not names:
        return None
    folder = home / f"{WIPE_PREFIX}{secrets.token_hex(8)}"
    folder.mkdir(mode=0o700)
    names.sort(
        key=lambda name: (sealing.DESTROYING.fullmatch(name) is not None, name == INDEX_NAME)
    )
    for name in names:
        if name == INDEX_NAME:
            crash_point("panic-moving-index")
        with contextlib.suppress(FileNotFoundError):
            (home / name).rename(folder / name)
    fsync_dir(home)
    return folder


def remove_in_background(folder: Path) -> None:
    """Remove ``folder`` in a detached process: panic returns without waiting for it."""
    subprocess.Popen(
        [sys.executable, "-c", "import shutil,sys; shutil.rmtree(sys.argv[1], True)", folder],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
        cwd="/",
    )


def finish_interrupted(home: Path) -> None:
    """At a store's start: finish a panic cut short, and start removing the folders
    finished panics left (their removal may have been cut short too). One look at the
    folder when there is nothing to do: this runs at every store's start."""
    names = _names(home)
    if any(sealing.DESTROYING.fullmatch(name) for name in names) and sealing.destroying_markers(
        home
    ):  # the wipe's first step was done: finish it
        sealing.destroy_slots(home, keep_marker=True)  # (it may have been cut short)
        move_aside(home)
        names = _names(home)
    for name in names:
        if _WIPE_FOLDER.fullmatch(name):
            remove_in_background(home / name)


def _names(home: Path) -> list[str]:
    try:
        with os.scandir(home) as entries:
            return [entry.name for entry in entries]
    except (FileNotFoundError, NotADirectoryError):
        return []


def duress(home: Path, passphrase: str) -> StoreKeys:
    """What a duress passphrase does (sealing.set_duress_action): the same wipe as panic,
    without stopping this process (nor its children: a duress passphrase is given when
    a command starts, before it has any), then a new empty sealed store under
    ``passphrase``."""
    panic(home, own_children=False)
    return sealing.create_sealed(home, passphrase)


sealing.set_duress_action(duress)
