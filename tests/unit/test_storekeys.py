"""The sealed store's key slots (core/storekeys.py) and the sealers (store/sealing.py)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from meshdrop.core import storekeys
from meshdrop.core.storekeys import Place, StoreKeys
from meshdrop.errors import FormatError, SealedFileError, StorePassphraseError
from meshdrop.store import sealing

FAST = storekeys.new_header(fast_for_tests=True)


def kek(passphrase: str, header: storekeys.Header = FAST) -> bytes:
    return storekeys.passphrase_kek(passphrase, header)


def test_a_passphrase_opens_the_key_it_wrapped_and_no_other_passphrase_does() -> None:
    keys = storekeys.new_store_keys()
    slots = storekeys.new_slots_file(keys, kek("correct horse"), FAST)
    opened = storekeys.unwrap(slots, kek("correct horse"), storekeys.PASSPHRASE_PLACES)
    assert opened.keys == keys and opened.place is Place.PASSPHRASE and not opened.duress
    with pytest.raises(StorePassphraseError):
        storekeys.unwrap(slots, kek("correct horsf"), storekeys.PASSPHRASE_PLACES)


def test_the_slots_file_has_one_size_and_its_places_look_alike_used_or_not() -> None:
    keys = storekeys.new_store_keys()
    plain = storekeys.new_slots_file(keys, kek("one passphrase"), FAST)
    duress = plain.with_slot(Place.DURESS, storekeys.wrap_duress(kek("other words"), FAST))
    key_file = duress.with_slot(
        Place.KEY_FILE,
        storekeys.wrap(keys, storekeys.key_file_kek(bytes(32), FAST), Place.KEY_FILE, FAST),
    )
    for slots in (plain, duress, key_file):
        data = slots.encode()
        assert len(data) == storekeys.SLOTS_FILE_BYTES
        assert storekeys.decode_slots_file(data) == slots
    assert keys.root not in key_file.encode()


def test_the_duress_passphrase_opens_the_duress_mark_never_the_key() -> None:
    keys = storekeys.new_store_keys()
    slots = storekeys.new_slots_file(keys, kek("real passphrase"), FAST)
    slots = slots.with_slot(Place.DURESS, storekeys.wrap_duress(kek("duress words"), FAST))
    opened = storekeys.unwrap(slots, kek("duress words"), storekeys.PASSPHRASE_PLACES)
    assert opened.duress and opened.keys is None and opened.place is Place.DURESS


def test_a_slot_moved_to_another_place_does_not_open() -> None:
    keys = storekeys.new_store_keys()
    slots = storekeys.new_slots_file(keys, kek("real passphrase"), FAST)
    moved = slots.with_slot(Place.DURESS, slots.slots[Place.PASSPHRASE])
    moved = moved.with_slot(Place.PASSPHRASE, storekeys.random_slot())
    with pytest.raises(StorePassphraseError):
        storekeys.unwrap(moved, kek("real passphrase"), storekeys.PASSPHRASE_PLACES)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[:-1], id="truncated"),
        pytest.param(lambda b: b + b"\0", id="longer"),
        pytest.param(lambda b: b[:16] + bytes([40]) + b[17:], id="huge-scrypt-cost"),
        pytest.param(lambda b: b[:17] + bytes([9]) + b[18:], id="other-r"),
    ],
)
def test_a_damaged_slots_file_is_refused_before_any_key_derivation(damage: object) -> None:
    data = storekeys.new_slots_file(storekeys.new_store_keys(), kek("x" * 12), FAST).encode()
    assert callable(damage)
    with pytest.raises(FormatError):
        storekeys.decode_slots_file(damage(data))


def test_a_flipped_bit_in_the_passphrase_slot_stops_it_opening() -> None:
    slots = storekeys.new_slots_file(storekeys.new_store_keys(), kek("passphrase!!"), FAST)
    data = bytearray(slots.encode())
    data[storekeys.HEADER_BYTES + 20] ^= 1
    with pytest.raises(StorePassphraseError):
        storekeys.unwrap(
            storekeys.decode_slots_file(bytes(data)),
            kek("passphrase!!"),
            storekeys.PASSPHRASE_PLACES,
        )


def test_the_default_key_derivation_is_the_documented_scrypt_cost() -> None:
    header = storekeys.new_header()
    assert (header.log2_n, header.r, header.p) == (18, 8, 1)
    assert len(header.salt) == storekeys.SALT_BYTES


def test_derived_keys_differ_per_purpose_and_per_store() -> None:
    one, two = StoreKeys(bytes(32)), StoreKeys(bytes(31) + b"\1")
    parts = [one.index, one.search, one.chunk_names, one.chunks, one.files]
    assert len(set(parts)) == len(parts) and all(len(p) == 32 for p in parts)
    assert one.chunks != two.chunks


def test_chunk_names_are_keyed_and_contents_bound_to_their_chunk() -> None:
    sealer = sealing.ChunkSealer(storekeys.new_store_keys())
    other = sealing.ChunkSealer(storekeys.new_store_keys())
    digest, data = secrets.token_bytes(32), b"chunk bytes"
    assert sealer.name(digest) != digest.hex() and sealer.name(digest) != other.name(digest)
    sealed = sealer.seal(digest, data)
    assert data not in sealed and sealer.open(digest, sealed) == data
    assert sealer.open(secrets.token_bytes(32), sealed) is None  # swapped for another chunk
    assert other.open(digest, sealed) is None  # another store's key
    flipped = bytearray(sealed)
    flipped[-1] ^= 1
    assert sealer.open(digest, bytes(flipped)) is None
    assert sealer.open(digest, sealed[:10]) is None


def test_a_sealed_file_of_one_kind_does_not_open_as_another(tmp_path: Path) -> None:
    files = sealing.FileSealer(storekeys.new_store_keys())
    sealed = files.seal("circle", b"secret")
    assert files.open("circle", sealed, tmp_path) == b"secret"
    with pytest.raises(SealedFileError):
        files.open("reader key", sealed, tmp_path)


def test_destroying_the_slots_leaves_no_file_and_forgets_the_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(sealing.TEST_FAST_KDF_ENV, "1")
    for name in sealing.PASSPHRASE_ENVS:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    keys = sealing.create_sealed(home, "a long passphrase")
    assert sealing.keys_for(home) == keys
    sealing.destroy_slots(home)
    assert not (home / sealing.SLOTS_NAME).exists()
    assert sealing.keys_for(home) is None  # no slots: not a sealed store any more
