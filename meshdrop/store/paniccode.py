"""The panic code (`meshdrop panic-code`): a code that, sent to the reader's panic page,
wipes the store as `meshdrop panic` does (README, "Panic"; docs/THREATS.md).

It is kept only as a slow hash, scrypt (n = 2**15, r = 8, p = 1, a random 16-byte salt),
in the home's file ``code``: ``{"salt": hex, "hash": hex}`` as JSON, sealed like the
store's other small files (homefiles.FileCodec, purpose "panic code") when the store is.
"""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from meshdrop.core.storekeys import normalized
from meshdrop.errors import FormatError, SealedFileError, StoreError, UsageError
from meshdrop.fs import atomic_write, os_error_message, read_small_file
from meshdrop.store import homefiles

FILE_NAME = "code"
PURPOSE = "panic code"
MIN_CHARS = 8
SALT_BYTES = 16
HASH_BYTES = 32
LOG2_N = 15
FILE_LIMIT = 4096


def _hash(code: str, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=HASH_BYTES, n=2**LOG2_N, r=8, p=1).derive(normalized(code))


@dataclass(frozen=True)
class PanicCode:
    salt: bytes
    digest: bytes

    def matches(self, code: str) -> bool:
        """Whether ``code`` is the panic code (the slow step; compared in constant time)."""
        return hmac.compare_digest(_hash(code, self.salt), self.digest)


def set_code(home: Path, code: str) -> None:
    if len(code) < MIN_CHARS:
        raise UsageError(f"the panic code is too short: use at least {MIN_CHARS} characters")
    codec = homefiles.FileCodec.for_home(home)
    salt = secrets.token_bytes(SALT_BYTES)
    document = {"salt": salt.hex(), "hash": _hash(code, salt).hex()}
    path = home / FILE_NAME
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, codec.encode(PURPOSE, json.dumps(document).encode()), mode=0o600)
    except OSError as exc:
        raise StoreError(os_error_message(exc, f"writing {path}")) from exc


def clear_code(home: Path) -> bool:
    """Forget the panic code; whether there was one."""
    try:
        (home / FILE_NAME).unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StoreError(os_error_message(exc, f"removing {home / FILE_NAME}")) from exc
    return True


def load(home: Path) -> PanicCode | None:
    """The panic code set for ``home``, or None (off, the default)."""
    path = home / FILE_NAME
    if not path.is_file():
        return None
    codec = homefiles.FileCodec.for_home(home)
    try:
        data = codec.decode(PURPOSE, read_small_file(path, FILE_LIMIT, "panic code file"), path)
        document = json.loads(data)
        code = PanicCode(bytes.fromhex(document["salt"]), bytes.fromhex(document["hash"]))
    except (FormatError, SealedFileError, ValueError, KeyError, TypeError) as exc:
        raise SealedFileError(f"{path} is damaged: set the panic code again") from exc
    if len(code.salt) != SALT_BYTES or len(code.digest) != HASH_BYTES:
        raise SealedFileError(f"{path} is damaged: set the panic code again")
    return code
