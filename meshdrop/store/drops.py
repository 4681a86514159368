"""The node's drops: sealed reports it holds to pass on (docs/FORMAT.md, "The drops folder").

Every drop enters through ``DropStore.add`` (a file, a stick, a peer, the reader's form):
``check_drop`` first (structure, size class, stamp, expiry), then a crash-safe write as
``<home>/drops/<drop id in hex>``. The folder stays within a quota. Beyond it, drops are
evicted fairly between where they came from (``origin``: a peer's address, a stick, a
file, this node's own reader), the oldest of the origin holding the most bytes first, so
one source flooding valid drops evicts its own and not everybody's; drops sealed on this
node (those with a receipt record) go last. Origins are known for the drops added through
this DropStore object (a node's run) and not kept on disk (where a drop came from would be
one more thing a seized node tells); earlier drops count as one origin. Drops a publisher
acknowledged are deleted and their ids remembered (a bounded list), so a copy that comes
back later is not stored again.

Receipt codes are kept only as HMAC-SHA256 under a key of this node (``receipts.key``),
each with the id of its drop: knowing a code, the node can say whether its drop was
delivered; reading the folder, nobody learns the codes.

In a sealed store (store/homefiles.py) a drop's file is named by the keyed name of its id
and holds a sealed head (its id and the drop's header, for listing without opening the
whole) followed by the sealed drop; ``acked``, ``receipts`` and ``receipts.key`` are each
sealed whole. A sealed file that does not open is left alone and not used: a drop is not
listed, the acked list and the receipt records count as empty (as a damaged tail is
dropped in a plain store), and a new receipt key is made.

All file access of drops lives in this module.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from meshdrop.core.drops import HEADER_BYTES, MAX_DROP_BYTES, check_drop
from meshdrop.errors import (
    DropOversizedError,
    FormatError,
    SealedFileError,
    StoreError,
    UsageError,
)
from meshdrop.fs import TEMP_PREFIX, atomic_write, os_error_message, read_small_file
from meshdrop.store import homefiles
from meshdrop.store.homefiles import FileCodec

DROPS_QUOTA = 64 * 1024 * 1024  # per node; eviction: the module's docstring
# Origins (where a drop came from, for fair eviction; never written to disk)
EARLIER = "earlier"  # drops held before this DropStore object was made
HERE = "here"  # sealed on this node (its reader's form, `reports write`)
FROM_STICK = "stick"
FROM_FILE = "file"


def from_peer(address: str) -> str:
    """A peer's origin: the address it was fetched from ("host:port"). A flooder can take
    more addresses (THREATS.md says so); each is then one share, not the whole quota."""
    return f"peer {address}"


DROPS_FOLDER = "drops"
FOLDER_MODE = 0o700
FILE_MODE = 0o600
ACKED_FILE = "acked"  # 32-byte drop ids, oldest first
ACKED_MAX = 65_536  # ids remembered (2 MiB); the oldest are forgotten first
RECEIPTS_FILE = "receipts"  # records of HMAC (32) || drop id (32), oldest first
RECEIPTS_MAX = 16_384
RECEIPT_KEY_FILE = "receipts.key"
LOCK_FILE = "drops.lock"
ID_BYTES = 32
_HEX_NAME_CHARS = 2 * ID_BYTES
_STALE_TEMP_SECONDS = 3600  # a temp file this old is a killed writer's
_PURPOSES = {
    ACKED_FILE: homefiles.DROPS_ACKED,
    RECEIPTS_FILE: homefiles.DROPS_RECEIPTS,
    RECEIPT_KEY_FILE: homefiles.DROPS_RECEIPT_KEY,
}
SEALED_HEAD_BYTES = homefiles.OVERHEAD + ID_BYTES + HEADER_BYTES


@dataclass(frozen=True)
class StoredDrop:
    drop_id: bytes
    size: int
    expiry: int
    arrived: int


def read_drop_file(path: Path) -> bytes:
    """The bytes of a drop file to import (a regular file, at most the largest drop)."""
    try:
        return read_small_file(path, MAX_DROP_BYTES, "drop")
    except OSError as exc:  # opening it
        raise UsageError(f"cannot read {path} ({exc.strerror})") from exc
    except FormatError:  # read_small_file's one: over the limit
        raise DropOversizedError(f"the drop is over the limit of {MAX_DROP_BYTES} bytes") from None


class DropStore:
    """``codec``: how the files are kept (by default as the home's store is: plain or
    sealed; StoreLockedError if it is sealed and locked)."""

    def __init__(
        self, home: Path, quota: int = DROPS_QUOTA, codec: FileCodec | None = None
    ) -> None:
        self.folder = home / DROPS_FOLDER
        self.quota = quota
        self.codec = FileCodec.for_home(home) if codec is None else codec
        self._origins: dict[bytes, str] = {}  # drop id -> origin, for drops added here
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
        except OSError as exc:
            raise StoreError(os_error_message(exc, f"creating {self.folder}")) from exc

    # The one way in

    def add(self, blob: bytes, now: int, origin: str = EARLIER) -> StoredDrop | None:
        """Check and store a drop; None if it is held already or was acknowledged.
        ``origin`` names where it came from, for fair eviction (e.g. "peer 10.0.0.7",
        "stick", "reader"). Raises a DropError subclass saying what is wrong with a bad one."""
        checked = check_drop(blob, now)
        if checked.size > self.quota:
            raise StoreError(
                f"the drop is {checked.size} bytes, more than this node keeps for drops"
            )
        with self._locked():
            path = self._path(checked.drop_id)
            if path.exists() or checked.drop_id in self._acked():
                return None
            self._store(path, checked.drop_id, blob, now)
            stored = StoredDrop(checked.drop_id, checked.size, checked.expiry, now)
            self._origins[checked.drop_id] = origin
            self._evict_beyond_quota(keep=checked.drop_id)
        return stored

    # Reading

    def held(self) -> list[StoredDrop]:
        """Every drop held, newest arrival first."""
        found = []
        for path in self._drop_paths():
            stored = self._describe(path)
            if stored is not None:
                found.append(stored)
        found.sort(key=lambda d: (d.arrived, d.drop_id), reverse=True)
        return found

    def folder_stamp(self) -> int:
        """The drops folder's modification time (ns): it changes whenever a drop is added
        or removed (each is a rename or an unlink in the folder)."""
        try:
            return self.folder.stat().st_mtime_ns
        except OSError as exc:
            raise StoreError(os_error_message(exc, f"reading {self.folder}")) from exc

    def read(self, drop_id: bytes) -> bytes | None:
        """The drop's bytes, or None if it is not held or its file is damaged."""
        try:
            path = self._path(drop_id)
            data = path.read_bytes()
        except (FileNotFoundError, ValueError):
            return None
        except OSError as exc:
            raise StoreError(os_error_message(exc, "reading a drop")) from exc
        if self.codec.sealed:
            try:  # the head too: a drop is served only whole, as it is listed
                self.codec.decode(homefiles.DROP_HEAD, data[:SEALED_HEAD_BYTES], path)
                data = self.codec.decode(homefiles.DROP, data[SEALED_HEAD_BYTES:], path)
            except SealedFileError:
                return None
        return data if hashlib.sha256(data).digest() == drop_id else None

    def copy_from(self, source: DropStore) -> int:
        """Keep here, as this store keeps them, every intact drop of ``source`` (with its
        arrival time), its acked list, receipt records and receipt key: for sealing a
        store (store/homeseal.py). Returns how many drops."""
        copied = 0
        with self._locked():
            for held in source.held():
                blob = source.read(held.drop_id)
                if blob is not None:
                    self._store(self._path(held.drop_id), held.drop_id, blob, held.arrived)
                    copied += 1
            for name in _PURPOSES:
                content = source._read_file(name)
                if content:
                    self._write(name, content)
        return copied

    # Removing

    def remove(self, drop_ids: Iterable[bytes]) -> int:
        """Delete the drops acknowledged in ``drop_ids`` and remember every id, so that
        none of them is stored again. Returns how many were deleted."""
        wanted = [i for i in dict.fromkeys(drop_ids) if len(i) == ID_BYTES]
        with self._locked():
            removed = sum(self._unlink(self._path(i)) for i in wanted)
            acked = self._acked_list()
            known = set(acked)
            fresh = [i for i in wanted if i not in known]
            if fresh:
                kept = (acked + fresh)[-ACKED_MAX:]
                self._write(ACKED_FILE, b"".join(kept))
        return removed

    def sweep(self, now: int) -> int:
        """Delete the drops past their expiry, and temp files killed writers left."""
        removed = 0
        with self._locked():
            for path in self._drop_paths():
                stored = self._describe(path)
                if stored is not None and now >= stored.expiry:
                    removed += self._unlink(path)
            self._remove_stale_temps()
        return removed

    # Receipt codes

    def note_receipt(self, receipt: str, drop_id: bytes) -> None:
        """Remember that the drop ``drop_id`` was sealed with ``receipt`` (only its HMAC)."""
        tag = self._receipt_tag(receipt)  # before the lock: it may take it to make the key
        with self._locked():
            records = [r for r in self._receipt_records() if r[:ID_BYTES] != tag]
            records.append(tag + drop_id)
            self._write(RECEIPTS_FILE, b"".join(records[-RECEIPTS_MAX:]))

    def receipt_state(self, receipt: str) -> str:
        """ "delivered" once the receipt's drop was acknowledged, "waiting" before,
        "unknown" for a code this node never issued (or has forgotten)."""
        tag = self._receipt_tag(receipt)
        for record in self._receipt_records():
            if hmac.compare_digest(record[:ID_BYTES], tag):
                return "delivered" if record[ID_BYTES:] in self._acked() else "waiting"
        return "unknown"

    # Inside

    def _path(self, drop_id: bytes) -> Path:
        if len(drop_id) != ID_BYTES:
            raise ValueError("a drop id is 32 bytes")
        return self.folder / self.codec.name(homefiles.DROP, drop_id)

    def _store(self, path: Path, drop_id: bytes, blob: bytes, arrived: int) -> None:
        if self.codec.sealed:
            head = self.codec.encode(homefiles.DROP_HEAD, drop_id + blob[:HEADER_BYTES])
            data = head + self.codec.encode(homefiles.DROP, blob)
        else:
            data = blob
        try:
            atomic_write(path, data, FILE_MODE)
            os.utime(path, (arrived, arrived))
        except OSError as exc:
            raise StoreError(os_error_message(exc, "storing a drop")) from exc

    def _drop_paths(self) -> Iterator[Path]:
        try:
            names = [p.name for p in self.folder.iterdir()]
        except OSError as exc:
            raise StoreError(os_error_message(exc, f"reading {self.folder}")) from exc
        for name in sorted(names):
            if len(name) == _HEX_NAME_CHARS and all(c in "0123456789abcdef" for c in name):
                yield self.folder / name

    def _describe(self, path: Path) -> StoredDrop | None:
        head_bytes = SEALED_HEAD_BYTES if self.codec.sealed else HEADER_BYTES
        try:
            with path.open("rb") as handle:
                head = handle.read(head_bytes)
                info = os.fstat(handle.fileno())
        except FileNotFoundError:
            return None  # removed meanwhile
        except OSError as exc:
            raise StoreError(os_error_message(exc, f"reading {path}")) from exc
        if len(head) < head_bytes:
            return None
        size = info.st_size
        if self.codec.sealed:
            try:
                opened = self.codec.decode(homefiles.DROP_HEAD, head, path)
            except SealedFileError:
                return None  # damaged, or not this store's: never listed nor served
            drop_id, header = opened[:ID_BYTES], opened[ID_BYTES:]
            if self._path(drop_id).name != path.name:
                return None  # the head of another drop's file
            size -= SEALED_HEAD_BYTES + homefiles.OVERHEAD
        else:
            drop_id, header = bytes.fromhex(path.name), head
        expiry = int.from_bytes(header[1:HEADER_BYTES], "big")
        return StoredDrop(drop_id, size, expiry, int(info.st_mtime))

    def _evict_beyond_quota(self, keep: bytes) -> None:
        held = self.held()
        total = sum(d.size for d in held)
        if total <= self.quota:
            return
        sealed_here = {record[ID_BYTES:] for record in self._receipt_records()}
        relayed: dict[str, list[StoredDrop]] = {}
        own: list[StoredDrop] = []
        for drop in sorted(held, key=lambda d: (d.arrived, d.drop_id)):
            if drop.drop_id == keep:
                continue
            if drop.drop_id in sealed_here:
                own.append(drop)
            else:
                relayed.setdefault(self._origins.get(drop.drop_id, EARLIER), []).append(drop)
        while total > self.quota and (relayed or own):
            if relayed:  # the origin holding the most bytes gives up its oldest drop
                origin = max(relayed, key=lambda o: (sum(d.size for d in relayed[o]), o))
                drop = relayed[origin].pop(0)
                if not relayed[origin]:
                    del relayed[origin]
            else:
                drop = own.pop(0)
            self._unlink(self._path(drop.drop_id))
            self._origins.pop(drop.drop_id, None)
            total -= drop.size

    def _unlink(self, path: Path) -> int:
        try:
            path.unlink()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise StoreError(os_error_message(exc, f"deleting {path}")) from exc
        return 1

    def _remove_stale_temps(self) -> None:
        cutoff = time.time() - _STALE_TEMP_SECONDS
        for path in self.folder.iterdir():
            with contextlib.suppress(OSError):
                if path.name.startswith(TEMP_PREFIX) and path.stat().st_mtime < cutoff:
                    path.unlink()

    def _read_file(self, name: str) -> bytes:
        """The content of ``name``; empty if it is missing or is sealed and does not open."""
        path = self.folder / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise StoreError(os_error_message(exc, f"reading {path}")) from exc
        try:
            return self.codec.decode(_PURPOSES[name], data, path)
        except SealedFileError:
            return b""

    def _read_records(self, name: str, size: int) -> list[bytes]:
        data = self._read_file(name)
        usable = len(data) - len(data) % size  # a damaged tail is dropped, not trusted
        return [data[i : i + size] for i in range(0, usable, size)]

    def _acked_list(self) -> list[bytes]:
        return self._read_records(ACKED_FILE, ID_BYTES)

    def _acked(self) -> set[bytes]:
        return set(self._acked_list())

    def _receipt_records(self) -> list[bytes]:
        return self._read_records(RECEIPTS_FILE, 2 * ID_BYTES)

    def _receipt_tag(self, receipt: str) -> bytes:
        key = self._receipt_key()
        return hmac.new(key, receipt.strip().upper().encode("utf-8"), hashlib.sha256).digest()

    def _receipt_key(self) -> bytes:
        key = self._read_file(RECEIPT_KEY_FILE)
        if len(key) == ID_BYTES:
            return key
        with self._locked():
            key = self._read_file(RECEIPT_KEY_FILE)
            if len(key) != ID_BYTES:  # none yet (or damaged: codes issued under it are lost)
                key = secrets.token_bytes(ID_BYTES)
                self._write(RECEIPT_KEY_FILE, key)
        return key

    def _write(self, name: str, data: bytes) -> None:
        try:
            atomic_write(self.folder / name, self.codec.encode(_PURPOSES[name], data), FILE_MODE)
        except OSError as exc:
            raise StoreError(os_error_message(exc, f"writing {self.folder / name}")) from exc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time across processes (a node, an import, the reader's form).
        Not reentrant (flock on a second descriptor waits for the first): no locked
        section takes it again."""
        try:
            fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(os_error_message(exc, "locking the drops folder")) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
