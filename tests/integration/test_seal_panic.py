"""`meshdrop panic` (issue 19): it says nothing, stops what holds the keys, and leaves
a home meshdrop cannot tell from a new one, in which nothing decrypts any more."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from lankit import Nodes, wait_until
from sealkit import (
    FAST,
    PASSPHRASE,
    SEALED,
    holds_plaintext,
    no_leftovers,
    sealed_home,
    stocked_home,
)

from conftest import Publisher, Result, run_meshdrop
from meshdrop.core import storekeys
from meshdrop.errors import FormatError, StorePassphraseError
from meshdrop.store import keyagent

# What a command says about a home, with the home's path put out of the way.
LOOKS = [("ls",), ("ls", "--json"), ("fsck",), ("status",), ("circle", "ls"), ("unlock",)]


def seen(home: Path, env: dict[str, str]) -> list[tuple[int, str, str]]:
    said: list[tuple[int, str, str]] = []
    for args in LOOKS:
        result: Result = run_meshdrop("--home", home, *args, env=env)
        out, err = (text.replace(str(home), "HOME") for text in (result.out, result.err))
        said.append((result.code, out, err))
    return said


def panic(home: Path, env: dict[str, str] | None = None) -> Result:
    return run_meshdrop("--home", home, "panic", "--yes", env={**FAST, **(env or {})})


@pytest.mark.parametrize("kind", ["sealed", "plain"])
def test_panic_says_nothing_and_leaves_what_meshdrop_sees_as_a_new_home(
    kind: str, tmp_path: Path, publisher: Publisher
) -> None:
    make = sealed_home if kind == "sealed" else stocked_home
    home = make(tmp_path / "store", publisher)
    result = panic(home)
    assert (result.code, result.out, result.err) == (0, "", "")
    wait_until(lambda: no_leftovers(home), what="the moved files removed")
    assert os.listdir(home) == []
    new = tmp_path / "new" / "home"
    for env in (FAST, SEALED):
        assert seen(home, env) == seen(new, env)


def test_panic_stops_the_running_node_and_the_agent(
    tmp_path: Path, publisher: Publisher, nodes: Nodes
) -> None:
    home = sealed_home(tmp_path, publisher)
    assert run_meshdrop("--home", home, "unlock", env=SEALED).code == 0
    node = nodes.start(home, "--no-discovery", "--no-watch", env=FAST)
    assert panic(home).code == 0
    assert node.proc.wait(timeout=60) == -9
    assert not keyagent.is_running(home)
    wait_until(lambda: no_leftovers(home), what="the moved files removed")
    assert not holds_plaintext(home)


def test_panic_of_a_home_that_does_not_exist_says_nothing(tmp_path: Path) -> None:
    result = panic(tmp_path / "nothing")
    assert (result.code, result.out, result.err) == (0, "", "")
    assert not (tmp_path / "nothing").exists()


def test_panic_without_a_terminal_or_yes_is_refused(tmp_path: Path, publisher: Publisher) -> None:
    home = sealed_home(tmp_path, publisher)
    result = run_meshdrop("--home", home, "panic", env=FAST)
    assert result.code == 2 and "--yes" in result.err and "Traceback" not in result.err
    assert run_meshdrop("--home", home, "ls", env=SEALED).code == 0


def test_after_panic_nothing_left_decrypts_with_the_right_passphrase(
    tmp_path: Path, publisher: Publisher
) -> None:
    home = sealed_home(tmp_path, publisher)
    slots = storekeys.decode_slots_file((home / "slots").read_bytes())
    # Killed after the renames, before the background removal: every file is left.
    result = panic(home, {"MESHDROP_TEST_CRASH_AT": "panic-moved"})
    assert result.code == -9
    left = [path for path in home.rglob("*") if path.is_file()]
    assert any(path.name == "index.sqlite" for path in left)
    assert not (home / "slots").exists()
    for path in left:
        data = path.read_bytes()
        assert not any(slot in data for slot in slots.slots), path
        assert not opens_as_slots(data), path
    assert not holds_plaintext(home)


def opens_as_slots(data: bytes) -> bool:
    try:
        found = storekeys.decode_slots_file(data)
        kek = storekeys.passphrase_kek(PASSPHRASE, found.header)
        storekeys.unwrap(found, kek, storekeys.PASSPHRASE_PLACES)
    except (FormatError, StorePassphraseError):
        return False
    return True
