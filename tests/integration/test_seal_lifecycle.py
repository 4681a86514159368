"""A sealed store's lifecycle through the installed command (issue 19): seal in place,
unlock and lock, the passphrase changed, a key file, the duress passphrase; and every bad
input a one-line error with its own exit code."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from pathlib import Path

import pytest
from lankit import wait_until
from sealkit import (
    FAST,
    OTHER,
    PASSPHRASE,
    SEALED,
    holds_plaintext,
    home_bytes,
    lists_minutes,
    ls,
    no_leftovers,
    one_line_error,
    sealed_home,
    stocked_home,
)

from conftest import Publisher, meshdrop_in_process, run_meshdrop
from meshdrop.core import storekeys
from meshdrop.store import keyagent, paniccode, sealing
from meshdrop.store.drops import DropStore


def junk_drop() -> bytes:
    """A drop any node accepts whose contents are noise (test_drop_store.py's)."""
    from meshdrop.core.drops import SIZE_CLASSES, find_stamp

    expiry = int(time.time()) + 30 * 86_400
    body = bytes([1]) + expiry.to_bytes(8, "big") + secrets.token_bytes(SIZE_CLASSES[0] - 17)
    nonce, _ = find_stamp(body)
    return body + nonce


NEW = {**FAST, "MESHDROP_NEW_STORE_PASSPHRASE": OTHER}
STORE_EXIT_CODE = 7
PASSPHRASE_EXIT_CODE = 8
LOCKED_EXIT_CODE = 10


@pytest.fixture
def home(tmp_path: Path, publisher: Publisher) -> Path:
    return sealed_home(tmp_path, publisher)


@pytest.fixture
def stop_agent(home: Path) -> object:
    yield None
    keyagent.stop(home)


def test_seal_converts_a_plain_store_that_then_shows_nothing_and_opens_with_the_passphrase(
    tmp_path: Path, publisher: Publisher
) -> None:
    home = stocked_home(tmp_path, publisher)
    assert holds_plaintext(home)
    result = run_meshdrop("--home", home, "seal", env=SEALED)
    assert result.code == 0, result
    assert "sealed the store" in result.out
    wait_until(lambda: no_leftovers(home), what="the plain files removed")
    assert not holds_plaintext(home)
    one_line_error(ls(home), LOCKED_EXIT_CODE, "locked")
    assert lists_minutes(home, SEALED)


def test_seal_takes_over_circles_drops_reader_key_and_panic_code_sealed(
    tmp_path: Path, publisher: Publisher
) -> None:
    home = stocked_home(tmp_path, publisher)
    meshdrop_in_process("--home", home, "circle", "new", "night shift", check=True)
    code = {"MESHDROP_PANIC_CODE": "orange kettle 42"}
    meshdrop_in_process("--home", home, "panic-code", env=code, check=True)
    drop = junk_drop()
    DropStore(home).add(drop, int(time.time()))
    reader_key = reader_key_of(home)
    circles_before = meshdrop_in_process("--home", home, "circle", "ls", check=True).out
    assert run_meshdrop("--home", home, "seal", env=SEALED).code == 0
    wait_until(lambda: no_leftovers(home), what="the plain files removed")
    blob = home_bytes(home)
    assert b"night shift" not in blob and drop[-64:] not in blob and b"salt" not in blob
    assert reader_key not in blob
    after = run_meshdrop("--home", home, "circle", "ls", env=SEALED)
    assert after.out == circles_before
    sealing.unlock_with_passphrase(home, PASSPHRASE)
    try:
        assert [d.drop_id for d in DropStore(home).held()] == [hashlib.sha256(drop).digest()]
        assert paniccode.load(home) is not None
        assert reader_key_of(home) == reader_key
    finally:
        sealing.forget(home)


def reader_key_of(home: Path) -> bytes:
    from meshdrop.reader.readerids import reader_key

    return reader_key(home)


def test_seal_of_a_new_home_makes_an_empty_sealed_store(tmp_path: Path) -> None:
    home = tmp_path / "new"
    result = run_meshdrop("seal", home, env=SEALED)
    assert result.code == 0, result
    assert sorted(os.listdir(home)) == ["slots"]
    one_line_error(ls(home), LOCKED_EXIT_CODE, "locked")
    assert ls(home, SEALED).code == 0


def test_seal_twice_is_refused(home: Path) -> None:
    one_line_error(run_meshdrop("--home", home, "seal", env=SEALED), 2, "sealed already")


def test_seal_refuses_a_weak_passphrase(tmp_path: Path, publisher: Publisher) -> None:
    home = stocked_home(tmp_path, publisher)
    weak = {**FAST, "MESHDROP_STORE_PASSPHRASE": "short"}
    one_line_error(run_meshdrop("--home", home, "seal", env=weak), 2, "too weak")
    assert lists_minutes(home)  # still the plain store, whole


def test_unlock_holds_the_keys_until_lock(home: Path, stop_agent: object) -> None:
    result = run_meshdrop("--home", home, "unlock", env=SEALED)
    assert result.code == 0, result
    assert lists_minutes(home)  # no passphrase given: the agent has the keys
    assert run_meshdrop("--home", home, "lock").code == 0
    one_line_error(ls(home), LOCKED_EXIT_CODE, "locked")


def test_unlock_with_the_wrong_passphrase_is_refused(home: Path) -> None:
    wrong = {**FAST, "MESHDROP_STORE_PASSPHRASE": "not the passphrase at all"}
    result = run_meshdrop("--home", home, "unlock", env=wrong)
    one_line_error(result, PASSPHRASE_EXIT_CODE, "wrong passphrase")
    assert not keyagent.is_running(home)
    assert lists_minutes(home, SEALED)


def test_unlock_without_a_passphrase_or_terminal_is_refused(home: Path) -> None:
    result = run_meshdrop("--home", home, "unlock", env=FAST)
    one_line_error(result, PASSPHRASE_EXIT_CODE, "MESHDROP_STORE_PASSPHRASE")


def test_unlock_of_a_plain_store_is_refused(tmp_path: Path, publisher: Publisher) -> None:
    home = stocked_home(tmp_path, publisher)
    one_line_error(run_meshdrop("--home", home, "unlock", env=SEALED), 2, "not sealed")


def test_the_agent_answers_no_other_home(home: Path, tmp_path: Path, stop_agent: object) -> None:
    assert run_meshdrop("--home", home, "unlock", env=SEALED).code == 0
    other = tmp_path / "other"
    assert run_meshdrop("seal", other, env={**FAST, "MESHDROP_STORE_PASSPHRASE": OTHER}).code == 0
    one_line_error(ls(other), LOCKED_EXIT_CODE, "locked")


def test_passphrase_change_keeps_the_data_and_drops_the_old_passphrase(home: Path) -> None:
    before = (home / "index.sqlite").read_bytes()
    result = run_meshdrop("--home", home, "passphrase", env={**SEALED, **NEW})
    assert result.code == 0, result
    assert (home / "index.sqlite").read_bytes() == before  # not re-encrypted
    assert lists_minutes(home, {"MESHDROP_STORE_PASSPHRASE": OTHER})
    one_line_error(ls(home, SEALED), PASSPHRASE_EXIT_CODE, "wrong passphrase")


def test_passphrase_change_with_the_wrong_current_passphrase_is_refused(home: Path) -> None:
    wrong = {**NEW, "MESHDROP_STORE_PASSPHRASE": "not the passphrase at all"}
    result = run_meshdrop("--home", home, "passphrase", env=wrong)
    one_line_error(result, PASSPHRASE_EXIT_CODE, "wrong passphrase")
    assert lists_minutes(home, SEALED)


def test_duress_passphrase_equal_to_the_real_one_is_refused(home: Path) -> None:
    same = {**SEALED, "MESHDROP_NEW_STORE_PASSPHRASE": PASSPHRASE}
    result = run_meshdrop("--home", home, "passphrase", "--duress", env=same)
    one_line_error(result, 2, "that is the store's passphrase")
    assert lists_minutes(home, SEALED)


def test_duress_opens_an_empty_store_and_the_real_passphrase_opens_nothing(
    home: Path, stop_agent: object
) -> None:
    result = run_meshdrop("--home", home, "passphrase", "--duress", env={**SEALED, **NEW})
    assert result.code == 0, result
    duress = {**FAST, "MESHDROP_STORE_PASSPHRASE": OTHER}
    real = run_meshdrop("--home", home, "unlock", env=SEALED)
    assert real.code == 0
    assert run_meshdrop("--home", home, "lock").code == 0
    forced = run_meshdrop("--home", home, "unlock", env=duress)
    assert (forced.code, forced.out, forced.err) == (real.code, real.out, real.err)
    result = ls(home)
    assert (result.code, result.out) == (0, f"no bundles in {home}\n")
    assert run_meshdrop("--home", home, "lock").code == 0
    wait_until(lambda: no_leftovers(home), what="the old store removed")
    assert not holds_plaintext(home)
    one_line_error(ls(home, SEALED), PASSPHRASE_EXIT_CODE, "wrong passphrase")


def test_key_file_opens_the_store_until_removed(
    home: Path, tmp_path: Path, stop_agent: object
) -> None:
    card = tmp_path / "card" / "key"
    card.parent.mkdir()
    result = run_meshdrop("--home", home, "passphrase", "--add-key-file", card, env=SEALED)
    assert result.code == 0, result
    assert card.stat().st_mode & 0o777 == 0o600
    assert len(card.read_bytes()) == storekeys.KEY_FILE_BYTES
    assert run_meshdrop("--home", home, "unlock", "--key-file", card, env=FAST).code == 0
    assert lists_minutes(home)
    assert run_meshdrop("--home", home, "lock").code == 0
    assert run_meshdrop("--home", home, "passphrase", "--remove-key-file", env=SEALED).code == 0
    result = run_meshdrop("--home", home, "unlock", "--key-file", card, env=FAST)
    one_line_error(result, PASSPHRASE_EXIT_CODE, "wrong passphrase or key file")


def test_a_key_file_is_never_written_over_an_existing_file(home: Path, tmp_path: Path) -> None:
    there = tmp_path / "there"
    there.write_bytes(b"keep me")
    result = run_meshdrop("--home", home, "passphrase", "--add-key-file", there, env=SEALED)
    one_line_error(result, 2, "exists already")
    assert there.read_bytes() == b"keep me"


# What each bad key file gives: its exit code (README's table) and a word of the line.
BAD_KEY_FILES = {
    "missing": (2, "no such file"),
    "a folder": (2, "is a directory"),
    "truncated": (STORE_EXIT_CODE, "key file"),
    "too long": (STORE_EXIT_CODE, "key file"),
    "flipped": (PASSPHRASE_EXIT_CODE, "wrong passphrase or key file"),
}


@pytest.mark.parametrize("damage", BAD_KEY_FILES)
def test_a_bad_key_file_is_refused_in_one_line(damage: str, home: Path, tmp_path: Path) -> None:
    card = tmp_path / "key"
    meshdrop_in_process(
        "--home", home, "passphrase", "--add-key-file", card, env=SEALED, check=True
    )
    data = card.read_bytes()
    if damage in ("missing", "a folder"):
        card.unlink()
        if damage == "a folder":
            card.mkdir()
    elif damage == "truncated":
        card.write_bytes(data[:-1])
    elif damage == "too long":
        card.write_bytes(data + b"\0")
    else:
        card.write_bytes(bytes([data[0] ^ 1]) + data[1:])
    result = run_meshdrop("--home", home, "unlock", "--key-file", card, env=FAST)
    one_line_error(result, *BAD_KEY_FILES[damage])
    assert not keyagent.is_running(home)
    assert lists_minutes(home, SEALED)


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_a_damaged_slots_file_is_refused_in_one_line(damage: str, home: Path) -> None:
    slots = home / "slots"
    data = bytearray(slots.read_bytes())
    if damage == "truncated":
        slots.write_bytes(bytes(data[:-1]))
        expected, fragment = STORE_EXIT_CODE, "damaged"
    else:
        data[storekeys.HEADER_BYTES + 20] ^= 1  # inside the passphrase's slot
        slots.write_bytes(bytes(data))
        expected, fragment = PASSPHRASE_EXIT_CODE, "wrong passphrase"
    one_line_error(run_meshdrop("--home", home, "unlock", env=SEALED), expected, fragment)
    one_line_error(ls(home, SEALED), expected, fragment)


@pytest.mark.parametrize("command", ["seal", "unlock", "lock", "passphrase", "panic"])
def test_help_has_an_example(command: str) -> None:
    result = run_meshdrop(command, "--help")
    assert result.code == 0
    assert "Example: meshdrop" in result.out
