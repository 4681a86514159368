"""Root keys on their holders' machines: making one (`publisher keygen`), and unlocking
the several a change needs with as few passphrase prompts as possible."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshdrop.core.keys import generate_private_key, public_bytes
from meshdrop.errors import PassphraseError, UsageError
from meshdrop.fs import atomic_write
from meshdrop.publish.keyfile import (
    PUBLIC_MODE,
    KeyFileInfo,
    KeyKind,
    encode_public_key_file,
    unlock,
    write_private_key,
)

PUBKEY_SUFFIX = ".pubkey"
KEY_FOLDER_MODE = 0o700


def make_root_key(out: Path, passphrase: Callable[[], bytes | None]) -> tuple[bytes, Path]:
    """Write a new root key to ``out`` and its public key beside it (``out`` with
    .pubkey), never over an existing file, making ``out``'s folder if missing.
    ``passphrase`` is asked only once every check has passed. Returns the public key and
    the .pubkey file's path."""
    pubkey = out.with_suffix(PUBKEY_SUFFIX)
    if out.suffix == PUBKEY_SUFFIX:
        raise UsageError(f"{out}: name the private key file with .key, not .pubkey")
    for path in (out, pubkey):
        if path.exists():
            raise UsageError(
                f"{path} already exists; choose another name (a key is never overwritten)"
            )
    secret = passphrase()
    try:
        out.parent.mkdir(mode=KEY_FOLDER_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot make the folder {out.parent} ({exc.strerror})") from exc
    key = generate_private_key()
    write_private_key(out, key, KeyKind.ROOT, secret)
    public = public_bytes(key)
    atomic_write(pubkey, encode_public_key_file(public), PUBLIC_MODE)
    return public, pubkey


def unlock_all(
    infos: Sequence[KeyFileInfo], ask: Callable[[str], bytes]
) -> list[Ed25519PrivateKey]:
    """Unlock key files, trying the passphrase typed for the previous one first, so keys
    sharing a passphrase ask for it once."""
    keys = []
    typed: list[bytes] = []

    def ask_and_keep(what: str) -> bytes:
        typed.append(ask(what))
        return typed[-1]

    for info in infos:
        if typed and info.encrypted:
            last = typed[-1]
            try:
                keys.append(unlock(info, lambda _what: last))  # noqa: B023 (used at once)
                continue
            except PassphraseError:
                pass
        keys.append(unlock(info, ask_and_keep))
    return keys
