"""`meshdrop passphrase`: one slot of the slots file rewritten (docs/FORMAT.md, "Sealed
store"), never the data. The file is replaced atomically (sealing.write_slots), so a
process killed at any step leaves the old file or the new one.

The store must be unlocked in this process (sealing.keys_for) before any of these runs.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from meshdrop.core import storekeys
from meshdrop.core.storekeys import Place
from meshdrop.errors import StorePassphraseError, UsageError
from meshdrop.fs import atomic_write
from meshdrop.store import sealing
from meshdrop.store.crashpoints import crash_point


def _opens(slots: storekeys.SlotsFile, kek: bytes, place: Place) -> bool:
    try:
        storekeys.unwrap(slots, kek, (place,))
    except StorePassphraseError:
        return False
    return True


def set_passphrase(home: Path, passphrase: str, duress: bool = False) -> None:
    """Put ``passphrase`` in the passphrase slot, or (``duress``) in the duress slot.
    Refused when it is the other one of the two (a duress passphrase equal to the real
    one would make the store open, or wipe it, by chance)."""
    keys = sealing.keys_for(home)
    assert keys is not None  # the caller checked that the store is sealed
    slots = sealing.read_slots(home)
    kek = storekeys.passphrase_kek(passphrase, slots.header)
    other = Place.PASSPHRASE if duress else Place.DURESS
    if _opens(slots, kek, other):
        raise UsageError(
            "that is the store's passphrase: choose another duress passphrase"
            if duress
            else "that is the duress passphrase: choose another passphrase"
        )
    if duress:
        slot = storekeys.wrap_duress(kek, slots.header)
    else:
        slot = storekeys.wrap(keys, kek, Place.PASSPHRASE, slots.header)
    crash_point("passphrase-derived")
    sealing.write_slots(home, slots.with_slot(Place.DURESS if duress else Place.PASSPHRASE, slot))
    crash_point("passphrase-written")


def add_key_file(home: Path, path: Path) -> None:
    """Write a new key file (32 random bytes, mode 0600) at ``path``, then let it open the
    store; an older key file no longer does."""
    keys = sealing.keys_for(home)
    assert keys is not None
    if os.path.lexists(path):
        raise UsageError(f"{path} exists already: choose a new file name")
    secret = secrets.token_bytes(storekeys.KEY_FILE_BYTES)
    slots = sealing.read_slots(home)
    slot = storekeys.wrap(
        keys, storekeys.key_file_kek(secret, slots.header), Place.KEY_FILE, slots.header
    )
    atomic_write(path, secret, mode=0o600)
    crash_point("key-file-written")
    sealing.write_slots(home, slots.with_slot(Place.KEY_FILE, slot))


def remove_key_file(home: Path) -> None:
    slots = sealing.read_slots(home)
    sealing.write_slots(home, slots.with_slot(Place.KEY_FILE, storekeys.random_slot()))
