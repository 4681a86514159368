"""kill -9 at each step of `seal`, `passphrase` and `panic` (issue 19): afterwards the
store is whole (plain as before, or sealed and locked), or gone; never half-converted,
never readable without the key. The next command that opens the store finishes or undoes
what was cut short (sealconvert.resume, called when a store is opened)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lankit import wait_until
from sealkit import (
    FAST,
    OTHER,
    SEALED,
    holds_plaintext,
    lists_minutes,
    ls,
    no_leftovers,
    one_line_error,
    sealed_home,
    stocked_home,
)

from conftest import Publisher, run_meshdrop

KILLED = -9
SEAL_STEPS_BEFORE_COMMIT = ["seal-slots", "seal-index", "seal-chunks", "seal-built"]
SEAL_STEPS_AFTER_COMMIT = ["seal-ready", "seal-aside", "seal-move-chunks",
                           "seal-move-index.sqlite", "seal-move-slots"]  # fmt: skip


def crash(at: str) -> dict[str, str]:
    return {"MESHDROP_TEST_CRASH_AT": at}


@pytest.mark.parametrize("step", SEAL_STEPS_BEFORE_COMMIT)
def test_seal_killed_before_its_commit_point_leaves_the_plain_store(
    step: str, tmp_path: Path, publisher: Publisher
) -> None:
    home = stocked_home(tmp_path, publisher)
    assert run_meshdrop("--home", home, "seal", env={**SEALED, **crash(step)}).code == KILLED
    assert lists_minutes(home)  # plain, whole, no passphrase asked
    assert not (home / ".tmp-seal").exists()
    assert run_meshdrop("--home", home, "seal", env=SEALED).code == 0
    one_line_error(ls(home), 10, "locked")
    assert lists_minutes(home, SEALED)


@pytest.mark.parametrize("step", SEAL_STEPS_AFTER_COMMIT)
def test_seal_killed_after_its_commit_point_is_finished_at_the_next_start(
    step: str, tmp_path: Path, publisher: Publisher
) -> None:
    home = stocked_home(tmp_path, publisher)
    assert run_meshdrop("--home", home, "seal", env={**SEALED, **crash(step)}).code == KILLED
    one_line_error(ls(home), 10, "locked")
    assert lists_minutes(home, SEALED)
    wait_until(lambda: no_leftovers(home), what="the plain files removed")
    assert not holds_plaintext(home)


@pytest.mark.parametrize("step", ["passphrase-derived", "passphrase-written"])
def test_passphrase_killed_leaves_the_old_or_the_new_passphrase(
    step: str, tmp_path: Path, publisher: Publisher
) -> None:
    home = sealed_home(tmp_path, publisher)
    env = {**SEALED, **crash(step), "MESHDROP_NEW_STORE_PASSPHRASE": OTHER}
    assert run_meshdrop("--home", home, "passphrase", env=env).code == KILLED
    new = {"MESHDROP_STORE_PASSPHRASE": OTHER}
    opens = [ls(home, env).code == 0 for env in (SEALED, new)]
    assert opens == ([True, False] if step == "passphrase-derived" else [False, True])
    assert lists_minutes(home, SEALED if opens[0] else new)
    one_line_error(ls(home), 10, "locked")


def test_adding_a_key_file_killed_leaves_the_passphrase_working(
    tmp_path: Path, publisher: Publisher
) -> None:
    home = sealed_home(tmp_path, publisher)
    card = tmp_path / "key"
    env = {**SEALED, **crash("key-file-written")}
    assert (
        run_meshdrop("--home", home, "passphrase", "--add-key-file", card, env=env).code == KILLED
    )
    assert lists_minutes(home, SEALED)
    result = run_meshdrop("--home", home, "unlock", "--key-file", card, env=FAST)
    one_line_error(result, 8, "wrong passphrase or key file")


# "panic-moving-index": cut short while moving the home aside (issue 21's fault sweep
# found a panic whose rename failed there leaving a store that neither opened nor was
# finished: the marker had been moved before the index).
PANIC_STEPS = ["panic-slots", "panic-stopped", "panic-moving-index", "panic-moved"]


@pytest.mark.parametrize("step", PANIC_STEPS)
def test_panic_killed_at_any_step_leaves_a_new_home(
    step: str, tmp_path: Path, publisher: Publisher
) -> None:
    home = sealed_home(tmp_path / "store", publisher)
    env = {**FAST, **crash(step)}
    assert run_meshdrop("--home", home, "panic", "--yes", env=env).code == KILLED
    new = tmp_path / "new"
    for env in (FAST, SEALED):
        after, fresh = ls(home, env), ls(new, env)
        assert (after.code, after.out.replace(str(home), "HOME")) == (
            fresh.code,
            fresh.out.replace(str(new), "HOME"),
        )
    wait_until(lambda: no_leftovers(home), what="the old store removed")
    assert not holds_plaintext(home)
