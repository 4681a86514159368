"""Report private-key files (``report-<key id>.key``, mode 0600, in the publisher folder):
the 32-byte seed of a report key, sealed with a passphrase as signing keys are
(publish/keyfile.py), or in the clear with ``--unencrypted``. docs/FORMAT.md, section
16.1, "Report private-key files".

The file is the key-file magic followed by one canonical msgpack map: ``format`` 1,
``kind`` "report", ``suite``, ``key_id`` (16 bytes), ``kdf`` and its fields (``seed`` for
"none"; ``n r p salt nonce sealed`` for "scrypt", the seed sealed with associated data
``b"meshdrop/v1/report-private-key\\0" || key_id``) and ``check``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from meshdrop.core import codec
from meshdrop.core.reportkeys import KEY_ID_BYTES, SEED_BYTES, ReportPrivateKey, Suite
from meshdrop.core.schema import Fields
from meshdrop.errors import FormatError, PassphraseError, StoreError
from meshdrop.fs import atomic_write, fsync_dir, os_error_message, read_small_file
from meshdrop.publish.keyfile import (
    KEY_FORMAT,
    KEY_MAGIC,
    KEY_MODE,
    MAX_KEY_FILE_BYTES,
    PassphraseProvider,
    key_file_check,
    open_secret,
    seal_secret,
)

REPORT_PREFIX = "report-"
REPORT_KIND = "report"
_AAD_PREFIX = b"meshdrop/v1/report-private-key\0"
_LIMITS = codec.Limits(max_bytes=MAX_KEY_FILE_BYTES, max_depth=1, max_items=16, max_str=32)


def report_key_path(folder: Path, key_id: bytes) -> Path:
    return folder / f"{REPORT_PREFIX}{key_id.hex()}.key"


def write_report_key(folder: Path, key: ReportPrivateKey, passphrase: bytes | None) -> Path:
    fields: dict[str, codec.Value] = {
        "format": KEY_FORMAT,
        "kind": REPORT_KIND,
        "suite": key.suite.value,
        "key_id": key.key_id,
    }
    if passphrase is None:
        fields.update({"kdf": "none", "seed": key.seed})
    else:
        fields.update(seal_secret(key.seed, passphrase, _AAD_PREFIX + key.key_id))
    fields["check"] = key_file_check(fields)
    path = report_key_path(folder, key.key_id)
    atomic_write(path, KEY_MAGIC + codec.pack(fields), KEY_MODE)
    return path


def load_report_key(path: Path, passphrase_provider: PassphraseProvider) -> ReportPrivateKey:
    """The report private key in ``path``, asking for the passphrase if it is sealed."""
    data = read_small_file(path, MAX_KEY_FILE_BYTES, "report key file")
    if not data.startswith(KEY_MAGIC):
        raise FormatError(f"{path} is damaged or is not a meshdrop key file")
    try:
        value = codec.unpack(data[len(KEY_MAGIC) :], _LIMITS, "the report key file")
        fields = Fields(value, "the report key file")
        if key_file_check(value) != fields.binary("check", 32):
            raise FormatError("its bytes were changed")
        fields.integer("format", KEY_FORMAT, KEY_FORMAT)
        if fields.text("kind", 16) != REPORT_KIND:
            raise FormatError("it is not a report key")
        suite = Suite(fields.text("suite", 32))
        key_id = fields.binary("key_id", KEY_ID_BYTES)
        kdf = fields.text("kdf", 16)
    except (FormatError, ValueError) as exc:
        raise FormatError(f"{path} is damaged: {exc}") from exc
    aad = _AAD_PREFIX + key_id
    if kdf == "none":
        seed = fields.binary("seed", SEED_BYTES)
    elif kdf == "scrypt":
        passphrase = passphrase_provider(str(path))
        if not passphrase:
            raise PassphraseError(f"no passphrase was given for {path}")
        seed = open_secret(fields, passphrase, aad, path)
    else:
        raise FormatError(f"{path} uses an unknown kind of key protection")
    key = ReportPrivateKey(suite, seed)
    if key.key_id != key_id:
        raise FormatError(f"{path} is damaged: its seed is not that of key {key_id.hex()}")
    return key


def destroy_key_file(path: Path) -> None:
    """Overwrite the file's bytes with zeros, sync, then unlink it. On flash storage (SSDs,
    SD cards, phones) the old blocks may survive elsewhere: docs say so."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            os.pwrite(fd, bytes(size), 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        path.unlink()
        with contextlib.suppress(OSError):
            fsync_dir(path.parent)
    except OSError as exc:
        raise StoreError(os_error_message(exc, f"destroying {path}")) from exc
