"""`meshdrop seal`: a plain store converted in place into a sealed one, crash-safely
(README, "Sealing a store"; docs/FORMAT.md, "Sealed store").

1. The sealed copy is built in ``<home>/.tmp-seal/``: a new slots file, the index copied
   through SQLCipher's ``sqlcipher_export`` into an encrypted file, every intact chunk
   re-encrypted under its keyed name, the small files sealed (circles, drops and their
   records, the reader's keys: store/homeseal.py; the panic code). The search index is
   not copied: it is derived, and rebuilt on first use.
2. Everything written is flushed (syncfs), then ``.tmp-seal`` is renamed ``.seal-ready``:
   the commit point. Before it, the plain store is intact and ``.tmp-seal`` is removed at
   the next start; after it, the conversion is finished at the next start.
3. Every other entry of the home (all plain) is moved into one ``.tmp-<16 hex>`` folder,
   then ``.seal-ready`` is renamed ``.seal-swap``: from here on nothing plain is left in
   the home, and a run cut short moves only what is still in ``.seal-swap``.
4. The sealed entries are moved into place, the slots file last; ``.seal-swap`` is
   removed, and the plain files moved aside are removed in the background.

While ``.tmp-seal``, ``.seal-ready`` or ``.seal-swap`` exists its folder is locked
(flock) by the process converting; ``resume`` (called when a store is opened) leaves a
locked one alone and says that a conversion is under way.

The plain files are removed, not overwritten: on flash, blocks of them may remain on the
medium (docs/THREATS.md, "A seized node").
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from meshdrop.core import storekeys
from meshdrop.core.storekeys import StoreKeys
from meshdrop.errors import StoreError, UsageError
from meshdrop.fs import atomic_write, fsync_dir, os_error_message, read_small_file
from meshdrop.store import homefiles, homeseal, panic, paniccode, sealing
from meshdrop.store.chunks import ChunkStore, syncfs
from meshdrop.store.crashpoints import crash_point

BUILDING = ".tmp-seal"
READY = ".seal-ready"
SWAP = ".seal-swap"
INDEX = "index.sqlite"
CHUNKS = "chunks"


class ConversionUnderWayError(StoreError):
    """Another process is sealing this store right now."""


def seal(home: Path, passphrase: str) -> StoreKeys:
    """Seal the store in ``home`` under ``passphrase`` (a new sealed store if there is
    none yet); its keys, remembered in this process."""
    resume(home)
    if sealing.is_sealed(home):
        raise UsageError(f"the store in {home} is sealed already")
    if _is_empty(home):
        return sealing.create_sealed(home, passphrase)
    busy = panic.processes_using(home, own_children=False)
    if busy:
        raise StoreError(
            f"the store in {home} is in use (process {busy[0]}): stop the node, the reader "
            "and other meshdrop commands first"
        )
    keys = storekeys.new_store_keys()
    building = home / BUILDING
    shutil.rmtree(building, ignore_errors=True)
    try:
        building.mkdir(mode=0o700)
        with _locked(building):
            _build(home, building, keys, passphrase)
            crash_point("seal-built")
            syncfs(building)
            building.rename(home / READY)
            fsync_dir(home)
            crash_point("seal-ready")
            _finish(home, home / READY)
    except OSError as exc:
        raise StoreError(os_error_message(exc, f"sealing the store in {home}")) from exc
    sealing.forget(building)
    sealing.remember(home, keys)
    return keys


def resume(home: Path) -> None:
    """At a store's start: finish a conversion past its commit point, remove one cut
    short before it, finish a panic cut short (store/panic.py). ConversionUnderWayError
    while another process converts."""
    ready, swap, building = home / READY, home / SWAP, home / BUILDING
    try:
        if ready.is_dir():
            with _locked(ready, wait=False):
                _finish(home, ready)
        elif swap.is_dir():
            with _locked(swap, wait=False):
                _swap_in(home, swap)
        if building.is_dir():
            with _locked(building, wait=False):
                shutil.rmtree(building)
    except OSError as exc:
        raise StoreError(os_error_message(exc, f"opening the store in {home}")) from exc
    panic.finish_interrupted(home)


@contextlib.contextmanager
def _locked(folder: Path, wait: bool = True) -> Iterator[None]:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError as exc:
            raise ConversionUnderWayError(
                f"the store in {folder.parent} is being sealed: try again when "
                "'meshdrop seal' is done"
            ) from exc
        yield
    finally:
        os.close(fd)


def _is_empty(home: Path) -> bool:
    if not home.is_dir():
        return True
    return not any(entry.name != BUILDING for entry in home.iterdir())


def _build(home: Path, building: Path, keys: StoreKeys, passphrase: str) -> None:
    sealing.create_sealed(building, passphrase, keys)
    crash_point("seal-slots")
    if (home / INDEX).is_file():
        _export_index(home / INDEX, building / INDEX, keys.index)
    crash_point("seal-index")
    if (home / CHUNKS).is_dir():
        _copy_chunks(home / CHUNKS, building / CHUNKS, keys)
    crash_point("seal-chunks")
    homeseal.seal_home_files(home, building, keys)
    _seal_panic_code(home, building, keys)


def _export_index(plain: Path, sealed: Path, key: bytes) -> None:
    import sqlcipher3.dbapi2 as sqlcipher

    conn = sqlcipher.connect(os.fspath(plain), isolation_level=None, timeout=30)
    try:
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute(f"ATTACH DATABASE ? AS sealed KEY \"x'{key.hex()}'\"", (os.fspath(sealed),))
        conn.execute("SELECT sqlcipher_export('sealed')")
        version = int(conn.execute("PRAGMA main.user_version").fetchone()[0])
        conn.execute(f"PRAGMA sealed.user_version = {version}")
        conn.execute("DETACH DATABASE sealed")
    except sqlcipher.Error as exc:
        raise StoreError(f"cannot copy the index {plain}: {exc}") from exc
    finally:
        conn.close()


def _copy_chunks(plain_root: Path, sealed_root: Path, keys: StoreKeys) -> None:
    """Every intact chunk, encrypted under its keyed name (a damaged one is left out:
    fsck then reports its bundle, as it would have in the plain store)."""
    plain = ChunkStore(plain_root)
    sealed = ChunkStore(sealed_root, sealing.ChunkSealer(keys))
    sealed.create_root()
    for digest in plain.all_digests():
        data = plain.read(digest)
        if data is None or hashlib.sha256(data).digest() != digest:
            continue
        temp = sealed.write_temp(digest, data)
        temp.replace(sealed.path(digest))


def _seal_panic_code(home: Path, building: Path, keys: StoreKeys) -> None:
    """The panic code file (store/paniccode.py) sealed as the sealed store keeps it; the
    other small files are store/homeseal.py's."""
    source = home / paniccode.FILE_NAME
    if source.is_file():
        content = read_small_file(source, paniccode.FILE_LIMIT, "panic code file")
        sealed = homefiles.FileCodec(keys).encode(paniccode.PURPOSE, content)
        atomic_write(building / paniccode.FILE_NAME, sealed, mode=0o600)


def _finish(home: Path, ready: Path) -> None:
    """Steps 3 and 4 of the module's docstring; safe to run again after a crash."""
    aside = home / f"{panic.WIPE_PREFIX}{os.urandom(8).hex()}"
    aside.mkdir(mode=0o700)
    for entry in list(home.iterdir()):
        if entry.name not in (READY, aside.name) and not panic.is_wipe_folder(entry.name):
            _move(entry, aside / entry.name)
    fsync_dir(aside)
    crash_point("seal-aside")
    swap = home / SWAP
    ready.rename(swap)
    fsync_dir(home)
    _swap_in(home, swap)


def _swap_in(home: Path, swap: Path) -> None:
    names = sorted((e.name for e in swap.iterdir()), key=lambda name: name == sealing.SLOTS_NAME)
    for name in names:
        crash_point(f"seal-move-{name}")
        (swap / name).rename(home / name)
    fsync_dir(home)
    swap.rmdir()
    fsync_dir(home)
    panic.finish_interrupted(home)  # starts removing the plain files moved aside


def _move(source: Path, target: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        source.rename(target)
