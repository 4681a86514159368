"""A sealed store's keys at rest and in this process (docs/FORMAT.md, "Sealed store").

A home is sealed when it holds the slots file (``SLOTS_NAME``). Its keys reach a process
in one of three ways, tried in this order by ``keys_for``: already unlocked in this process
(``remember``: the CLI asked for the passphrase, or the process was handed the keys), the
unlock agent (``meshdrop unlock``), or ``MESHDROP_STORE_PASSPHRASE`` (else
``MESHDROP_PASSPHRASE``). Without any of them the
store is locked: StoreLockedError, before any file of the store is opened.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import hmac
import os
import re
import secrets
import threading
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from meshdrop.core import storekeys
from meshdrop.core.storekeys import SlotsFile, StoreKeys, Unwrapped
from meshdrop.errors import FormatError, SealedFileError, StoreError, StoreLockedError
from meshdrop.fs import TEMP_PREFIX, atomic_write, fsync_dir, os_error_message, read_small_file

SLOTS_NAME = "slots"
# A slots file being destroyed: ".tmp-" and 12 hex digits, no other temp file's shape
# (fs.temp_name_for adds "-<name>"; a panic's wipe folder has 16 hex digits).
DESTROYING = re.compile(re.escape(TEMP_PREFIX) + r"[0-9a-f]{12}")
# Tests only: new slots files use scrypt with n = 2**10, so that the suite stays fast.
TEST_FAST_KDF_ENV = "MESHDROP_TEST_FAST_KDF"
# Tests only (the suite's sealed pass, scripts/test): a store made where there is none
# yet is made sealed, under the passphrase in the environment (PASSPHRASE_ENVS).
TEST_SEAL_NEW_STORES_ENV = "MESHDROP_TEST_SEAL_NEW_STORES"
# The store passphrase from the environment: its own variable first, then the one the
# publisher commands read (a node owner who is not a publisher sets only that one).
PASSPHRASE_ENVS = ("MESHDROP_STORE_PASSPHRASE", "MESHDROP_PASSPHRASE")
NONCE_BYTES = 12
TAG_BYTES = 16
SEAL_OVERHEAD = NONCE_BYTES + TAG_BYTES

_libc = ctypes.CDLL(None, use_errno=True)
_lock = threading.Lock()
_unlocked: dict[str, StoreKeys] = {}

# Asked by keys_for when this process holds no keys: set by the agent's client module
# (store/keyagent.py) so that this module needs no socket code.
AgentLookup = Callable[[Path], "StoreKeys | None"]
_agent_lookup: list[AgentLookup] = []


def _key(home: Path) -> str:
    return os.path.realpath(home)


def slots_path(home: Path) -> Path:
    return home / SLOTS_NAME


def is_sealed(home: Path) -> bool:
    return slots_path(home).is_file()


def remember(home: Path, keys: StoreKeys) -> None:
    with _lock:
        _unlocked[_key(home)] = keys


def forget(home: Path) -> None:
    with _lock:
        _unlocked.pop(_key(home), None)


def set_agent_lookup(lookup: AgentLookup) -> None:
    _agent_lookup[:] = [lookup]


def keys_for(home: Path) -> StoreKeys | None:
    """The keys of ``home`` if it is sealed (None if it is plain); StoreLockedError if it
    is sealed and none of the ways in the module's docstring has them."""
    if not is_sealed(home):
        return None
    with _lock:
        keys = _unlocked.get(_key(home))
    if keys is not None:
        return keys
    for lookup in _agent_lookup:
        keys = lookup(home)
        if keys is not None:
            remember(home, keys)
            return keys
    passphrase = next(filter(None, map(os.environ.get, PASSPHRASE_ENVS)), None)
    if passphrase:
        return unlock_with_passphrase(home, passphrase)
    raise StoreLockedError(
        f"the store in {home} is locked: run 'meshdrop unlock', or set {PASSPHRASE_ENVS[0]}"
    )


def read_slots(home: Path) -> SlotsFile:
    path = slots_path(home)
    try:
        data = read_small_file(path, storekeys.SLOTS_FILE_BYTES, "store key file")
    except FormatError as exc:
        raise SealedFileError(f"the store's key file {path} is damaged: {exc}") from exc
    except OSError as exc:
        raise StoreError(os_error_message(exc, f"reading {path}")) from exc
    try:
        return storekeys.decode_slots_file(data)
    except FormatError as exc:
        raise SealedFileError(f"{exc} ({path})") from exc


def write_slots(home: Path, slots: SlotsFile) -> None:
    try:
        atomic_write(slots_path(home), slots.encode(), mode=0o600)
    except OSError as exc:
        raise StoreError(os_error_message(exc, f"writing {slots_path(home)}")) from exc


# What a duress passphrase does, set by the module that can wipe a store (store/panic.py):
# it is given the home and the duress passphrase and returns the keys of the empty store
# it made in its place.
DuressAction = Callable[[Path, str], StoreKeys]
_duress_action: list[DuressAction] = []


def set_duress_action(action: DuressAction) -> None:
    _duress_action[:] = [action]


def open_slots(home: Path, passphrase: str) -> Unwrapped:
    """Which slot ``passphrase`` opens (the slow step: scrypt); StorePassphraseError if none."""
    slots = read_slots(home)
    kek = storekeys.passphrase_kek(passphrase, slots.header)
    return storekeys.unwrap(slots, kek, storekeys.PASSPHRASE_PLACES)


def unlock_with_passphrase(home: Path, passphrase: str) -> StoreKeys:
    """The store's keys, remembered in this process. A duress passphrase wipes the store
    silently and returns the keys of the empty store made in its place."""
    opened = open_slots(home, passphrase)
    keys = opened.keys
    if keys is None:
        if not _duress_action:
            raise StoreError("cannot open the store now")  # never: panic.py sets it
        keys = _duress_action[0](home, passphrase)
    remember(home, keys)
    return keys


def unlock_with_key_file(home: Path, key_file: Path) -> StoreKeys:
    slots = read_slots(home)
    try:
        secret = read_small_file(key_file, storekeys.KEY_FILE_BYTES, "key file")
    except FormatError as exc:
        raise SealedFileError(f"the key file {key_file} is damaged: {exc}") from exc
    try:
        kek = storekeys.key_file_kek(secret, slots.header)
    except FormatError as exc:
        raise SealedFileError(f"the key file {key_file} is damaged: {exc}") from exc
    opened = storekeys.unwrap(slots, kek, storekeys.KEY_FILE_PLACES)
    assert opened.keys is not None  # the key file slot never holds the duress mark
    remember(home, opened.keys)
    return opened.keys


def create_sealed(home: Path, passphrase: str, keys: StoreKeys | None = None) -> StoreKeys:
    """Write the slots file of a new sealed store (``keys``, or new ones) under
    ``passphrase``. The caller has checked that nothing else is in ``home``'s way."""
    keys = keys or storekeys.new_store_keys()
    header = new_header()
    kek = storekeys.passphrase_kek(passphrase, header)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_slots(home, storekeys.new_slots_file(keys, kek, header))
    remember(home, keys)
    return keys


def seal_new_store_for_tests(home: Path) -> None:
    """What TEST_SEAL_NEW_STORES_ENV asks, at a store's start (store.Store)."""
    if os.environ.get(TEST_SEAL_NEW_STORES_ENV) != "1":
        return
    if is_sealed(home) or (home / "index.sqlite").exists():
        return
    passphrase = next(filter(None, map(os.environ.get, PASSPHRASE_ENVS)), None)
    if not passphrase:
        raise StoreError(f"{TEST_SEAL_NEW_STORES_ENV} needs {PASSPHRASE_ENVS[0]}")
    create_sealed(home, passphrase)


def new_header() -> storekeys.Header:
    return storekeys.new_header(fast_for_tests=os.environ.get(TEST_FAST_KDF_ENV) == "1")


def destroy_slots(home: Path, keep_marker: bool = False) -> None:
    """Rename the slots file to a temp name (``DESTROYING``; the store is then no longer
    sealed-and-whole to anyone who looks), overwrite it in place with random bytes, sync,
    give its blocks back (discard where the file system passes it on) and, unless
    ``keep_marker``, remove it. A marker kept says that a wipe is under way: panic moves
    it aside with everything else last, and a store whose wipe was cut short is finished
    at its next start (store/panic.py). Flash and journals may still keep old copies:
    docs/THREATS.md, "A seized node"."""
    path = slots_path(home)
    if path.is_file():
        path.rename(home / f"{TEMP_PREFIX}{secrets.token_hex(6)}")
        fsync_dir(home)
    for marker in destroying_markers(home):
        _shred(marker)
        if not keep_marker:
            marker.unlink(missing_ok=True)
    fsync_dir(home)
    forget(home)


def destroying_markers(home: Path) -> list[Path]:
    """The slots files being destroyed in ``home`` (regular files named ``DESTROYING``)."""
    try:
        entries = list(os.scandir(home))
    except FileNotFoundError:
        return []
    return [
        Path(entry.path)
        for entry in entries
        if DESTROYING.fullmatch(entry.name) and entry.is_file(follow_symlinks=False)
    ]


def _shred(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            size = max(os.fstat(fd).st_size, storekeys.SLOTS_FILE_BYTES)
            os.pwrite(fd, secrets.token_bytes(size), 0)
            os.fsync(fd)
            _punch_hole(fd, size)
        finally:
            os.close(fd)


def _punch_hole(fd: int, size: int) -> None:
    """fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE): where the file system
    supports it, the blocks go back to it and, mounted with discard, to the device."""
    with contextlib.suppress(OSError, AttributeError):
        _libc.fallocate(fd, 0x01 | 0x02, ctypes.c_long(0), ctypes.c_long(size))


class FileSealer:
    """AES-256-GCM for a sealed store's small files: ``nonce || ciphertext || tag``, the
    purpose (which file it is) as associated data, so that one file cannot stand in for
    another."""

    def __init__(self, keys: StoreKeys) -> None:
        self._aead = AESGCM(keys.files)

    def seal(self, purpose: str, data: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data, purpose.encode())

    def open(self, purpose: str, data: bytes, where: Path) -> bytes:
        try:
            return self._aead.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], purpose.encode())
        except (InvalidTag, ValueError) as exc:
            raise SealedFileError(f"{where} is damaged or not this store's") from exc


class ChunkSealer:
    """How a sealed store names and encrypts chunk files: the name is HMAC-SHA256(chunk
    names key, chunk hash) in hex (who holds a bundle cannot tell whether this store has
    it), the content ``nonce || AES-256-GCM(chunks key, nonce, chunk, aad = chunk hash)``."""

    def __init__(self, keys: StoreKeys) -> None:
        self._names = keys.chunk_names
        self._aead = AESGCM(keys.chunks)

    def name(self, digest: bytes) -> str:
        return hmac.new(self._names, digest, hashlib.sha256).hexdigest()

    def seal(self, digest: bytes, data: bytes | memoryview) -> bytearray:
        # Encrypted straight into the file's buffer: copying a 1 MiB chunk and joining
        # nonce and ciphertext cost far more than AES-GCM itself (fresh pages each time).
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = bytearray(NONCE_BYTES + len(data) + TAG_BYTES)
        sealed[:NONCE_BYTES] = nonce
        self._aead.encrypt_into(nonce, data, digest, memoryview(sealed)[NONCE_BYTES:])
        return sealed

    def open(self, digest: bytes, sealed: bytes | bytearray | memoryview) -> bytes | None:
        """The chunk's bytes, or None if ``sealed`` does not decrypt (damaged)."""
        if len(sealed) < SEAL_OVERHEAD:
            return None
        view = memoryview(sealed)
        try:
            return self._aead.decrypt(view[:NONCE_BYTES], view[NONCE_BYTES:], digest)
        except InvalidTag:
            return None
