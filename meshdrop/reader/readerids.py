"""Opaque per-node ids for reader URLs: ``/b/<bundle id>/v/<file id>`` names no publisher,
bundle, file or fingerprint, so a URL seen in a phone's history, on a screen or in a
shared link tells nothing about what was read, and differs from node to node.

An id is the first 80 bits of HMAC-SHA256 under the node's reader secret
(``<home>/reader.key``: 32 random bytes, made on the first start, mode 0600), in
lowercase base32: 16 characters. Without the secret, ids cannot be computed from names,
nor names recovered from ids; deleting the file only changes every reader URL. In a
sealed store the file holds the secret sealed (purpose "reader key", store/homefiles.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from pathlib import Path

from meshdrop.errors import SealedFileError, StoreError
from meshdrop.fs import atomic_write
from meshdrop.store import homefiles
from meshdrop.store.homefiles import FileCodec

KEY_FILE = homefiles.READER_KEY_FILE
KEY_BYTES = 32
ID_CHARS = 16
ID_PATTERN = "[a-z2-7]{16}"  # for routes: what bundle_id and file_id give
_ID = re.compile(ID_PATTERN)


def reader_key(home: Path) -> bytes:
    """The node's reader secret, made on first use. All of its file access is here.
    SealedFileError if a sealed store's file is damaged or not this store's."""
    codec = FileCodec.for_home(home)
    path = home / KEY_FILE
    if not path.exists():
        # Two processes starting together may both write: the last rename wins, and the
        # key read back below is the one on disk from then on.
        secret = secrets.token_bytes(KEY_BYTES)
        atomic_write(path, codec.encode(homefiles.READER_KEY, secret), mode=0o600)
    try:
        data = path.read_bytes()
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the reader key ({exc.strerror})") from exc
    try:
        data = codec.decode(homefiles.READER_KEY, data, path)
    except SealedFileError as exc:
        raise SealedFileError(
            f"{exc}: delete it to make a new reader key (reader addresses then change)"
        ) from exc
    if len(data) != KEY_BYTES:
        raise StoreError(
            f"{path}: not a reader key ({len(data)} bytes, not {KEY_BYTES}); "
            "delete it to make a new one (reader addresses then change)"
        )
    return data


def _opaque(key: bytes, *parts: str) -> str:
    message = "\0".join(parts).encode("utf-8")
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.b32encode(digest[:10]).decode("ascii").lower()


def bundle_id(key: bytes, publisher: str, name: str) -> str:
    return _opaque(key, "bundle", publisher, name)


def file_id(key: bytes, publisher: str, name: str, path: str) -> str:
    return _opaque(key, "file", publisher, name, path)


def publisher_id(key: bytes, fingerprint: str) -> str:
    """The id of the page that writes to the publisher ``fingerprint`` (writing.py)."""
    return _opaque(key, "write", fingerprint)


def looks_like_id(text: str) -> bool:
    return _ID.fullmatch(text) is not None
