"""A home's small files at rest (docs/FORMAT.md, "Sealed store: the other files"): every
file of a home but the index, the search index and the chunks (circles, drops, receipt
records, the reader's key and certificate).

In a plain store they are kept as they are. In a sealed store each file's content is
``FileSealer(keys).seal(purpose, content)`` (AES-256-GCM under the store's files key, the
purpose as associated data: one kind of file cannot stand in for another), and a file
name that would derive from content (a drop's id) is keyed instead: HMAC-SHA256 under the
store's file names key, so that whoever holds a drop cannot tell whether this store has it.

``FileCodec.for_home`` asks ``sealing.keys_for`` (StoreLockedError on a locked store);
a conversion passes the codec it wants (``FileCodec(keys)`` or ``FileCodec(None)``).
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from meshdrop.core.storekeys import StoreKeys
from meshdrop.errors import SealedFileError
from meshdrop.store import sealing

# One purpose per kind of file: the associated data of its sealed content.
CIRCLE = "circle"
DROP_HEAD = "drop head"
DROP = "drop"
DROPS_ACKED = "drops acked"
DROPS_RECEIPTS = "drops receipts"
DROPS_RECEIPT_KEY = "drops receipt key"
READER_KEY = "reader key"
READER_TLS_KEY = "reader tls key"
READER_TLS_CERT = "reader tls cert"

# Files of a home kept whole (read and written as one piece), by path in the home: what
# a conversion seals as they are. Circles and drops have their own (store/circles.py,
# store/drops.py).
READER_KEY_FILE = "reader.key"
READER_TLS_FOLDER = "reader-tls"
READER_TLS_KEY_FILE = "reader-tls/key.pem"
READER_TLS_CERT_FILE = "reader-tls/cert.pem"
WHOLE_FILES = {
    READER_KEY_FILE: READER_KEY,
    READER_TLS_KEY_FILE: READER_TLS_KEY,
    READER_TLS_CERT_FILE: READER_TLS_CERT,
}

OVERHEAD = sealing.SEAL_OVERHEAD


class FileCodec:
    """How one home's small files are kept: as they are (``keys`` None) or sealed."""

    def __init__(self, keys: StoreKeys | None) -> None:
        self.keys = keys
        self._sealer = None if keys is None else sealing.FileSealer(keys)
        self._names = None if keys is None else keys.file_names

    @classmethod
    def for_home(cls, home: Path) -> FileCodec:
        return cls(sealing.keys_for(home))

    @property
    def sealed(self) -> bool:
        return self._sealer is not None

    @property
    def overhead(self) -> int:
        """Bytes a sealed file has beyond its content (0 in a plain store)."""
        return OVERHEAD if self.sealed else 0

    def encode(self, purpose: str, content: bytes) -> bytes:
        """What goes on disk for ``content``."""
        return content if self._sealer is None else self._sealer.seal(purpose, content)

    def decode(self, purpose: str, data: bytes, where: Path) -> bytes:
        """The content of what was on disk at ``where``; SealedFileError (one line, naming
        the file) if a sealed file is damaged, of another kind or of another store."""
        if self._sealer is None:
            return data
        if len(data) < OVERHEAD:
            raise SealedFileError(f"{where} is damaged (cut short)")
        return self._sealer.open(purpose, data, where)

    def name(self, purpose: str, value: bytes) -> str:
        """A file name for ``value`` (64 lowercase hex digits): ``value`` in hex in a plain
        store, HMAC-SHA256(file names key, purpose || 0 || value) in a sealed one."""
        if self._names is None:
            return value.hex()
        message = purpose.encode() + b"\0" + value
        return hmac.new(self._names, message, hashlib.sha256).hexdigest()


PLAIN = FileCodec(None)
