"""The node's drops (store/drops.py): the one ingest path for sealed reports, its quota,
dedupe (acked ids included), expiry sweep and receipt codes; and `meshdrop import` of
.drop files, every bad drop refused with one line and nothing else lost."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import assert_clean_error, command_env, run_meshdrop
from meshdrop.core.drops import MAX_DROP_BYTES, SIZE_CLASSES, drop_id, find_stamp, seal
from meshdrop.core.reportkeys import Suite, make_report_keypair
from meshdrop.core.reports import Report
from meshdrop.errors import (
    DropExpiredError,
    DropExpiryTooFarError,
    DropOversizedError,
    DropStampError,
    DropTruncatedError,
)
from meshdrop.store.drops import FROM_FILE, FROM_STICK, HERE, DropStore, StoredDrop, from_peer

NOW = int(time.time())
DAY = 86_400
SMALL = SIZE_CLASSES[0]


def junk_drop(expiry: int = NOW + 30 * DAY, size: int = SMALL) -> bytes:
    """A drop any relaying node accepts (right size, version, expiry and stamp) whose
    contents are noise: what a flooder sends."""
    body = bytes([1]) + expiry.to_bytes(8, "big") + secrets.token_bytes(size - 17)
    nonce, _ = find_stamp(body)
    return body + nonce


def sealed_drop(expiry: int = NOW + 30 * DAY, now: int = NOW) -> bytes:
    _, key = make_report_keypair(Suite.X25519, bytes(32), now - DAY, now + 365 * DAY, 1)
    return seal(Report("보고", (), "ABCDEFGH"), key, expiry, now)


@pytest.fixture(scope="module")
def drops_made() -> list[bytes]:
    return [junk_drop() for _ in range(6)]


def test_add_stores_the_drop_under_its_id_private_to_the_owner(
    tmp_path: Path, drops_made: list[bytes]
) -> None:
    store = DropStore(tmp_path)
    blob = drops_made[0]
    stored = store.add(blob, NOW)
    assert stored == StoredDrop(drop_id(blob), SMALL, NOW + 30 * DAY, NOW)
    path = tmp_path / "drops" / drop_id(blob).hex()
    assert path.read_bytes() == blob
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "drops").stat().st_mode) == 0o700
    assert store.held() == [stored]
    assert store.read(drop_id(blob)) == blob
    assert store.read(bytes(32)) is None


def test_a_drop_held_already_is_not_stored_again(tmp_path: Path, drops_made: list[bytes]) -> None:
    store = DropStore(tmp_path)
    assert store.add(drops_made[0], NOW) is not None
    assert store.add(drops_made[0], NOW + 5) is None
    assert len(store.held()) == 1


def test_an_acknowledged_drop_is_removed_and_never_stored_again(
    tmp_path: Path, drops_made: list[bytes]
) -> None:
    store = DropStore(tmp_path)
    store.add(drops_made[0], NOW)
    store.add(drops_made[1], NOW)
    assert store.remove([drop_id(drops_made[0]), bytes(32)]) == 1
    assert [d.drop_id for d in store.held()] == [drop_id(drops_made[1])]
    assert store.add(drops_made[0], NOW + 10) is None  # replayed after its ack
    assert len(store.held()) == 1


def test_the_quota_keeps_the_newest_arrivals(tmp_path: Path, drops_made: list[bytes]) -> None:
    store = DropStore(tmp_path, quota=4 * SMALL)
    for arrival, blob in enumerate(drops_made):
        assert store.add(blob, NOW + arrival) is not None
        assert sum(d.size for d in store.held()) <= 4 * SMALL
    assert [d.drop_id for d in store.held()] == [drop_id(b) for b in reversed(drops_made[2:])]


def test_a_flooding_origin_evicts_its_own_drops_not_another_peers(
    tmp_path: Path, drops_made: list[bytes]
) -> None:
    store = DropStore(tmp_path, quota=4 * SMALL)
    honest = drops_made[0]
    store.add(honest, NOW, from_peer("10.0.0.2:8470"))
    for arrival, blob in enumerate(drops_made[1:], start=1):  # five valid drops, one source
        assert store.add(blob, NOW + arrival, from_peer("10.0.0.66:8470")) is not None
    held = {d.drop_id for d in store.held()}
    assert drop_id(honest) in held  # the oldest, yet kept: its origin holds the least
    assert held == {drop_id(honest)} | {drop_id(b) for b in drops_made[3:]}
    assert sum(d.size for d in store.held()) <= 4 * SMALL


def test_drops_sealed_on_this_node_are_evicted_last(
    tmp_path: Path, drops_made: list[bytes]
) -> None:
    store = DropStore(tmp_path, quota=3 * SMALL)
    own = drops_made[0]
    store.add(own, NOW, HERE)
    store.note_receipt("ABCDEFGH", drop_id(own))
    later = DropStore(tmp_path, quota=3 * SMALL)  # a new run: origins are not on disk
    for arrival, blob in enumerate(drops_made[1:], start=1):
        later.add(blob, NOW + arrival, FROM_STICK)
    held = {d.drop_id for d in later.held()}
    assert held == {drop_id(own)} | {drop_id(b) for b in drops_made[4:]}


def test_drops_held_before_count_as_one_origin(tmp_path: Path, drops_made: list[bytes]) -> None:
    DropStore(tmp_path).add(drops_made[0], NOW, from_peer("10.0.0.2:8470"))
    DropStore(tmp_path).add(drops_made[1], NOW + 1, FROM_FILE)
    store = DropStore(tmp_path, quota=4 * SMALL)
    for arrival, blob in enumerate(drops_made[2:], start=2):
        store.add(blob, NOW + arrival, from_peer("10.0.0.66:8470"))
    # Earlier drops (2) and the flooder's (4) over a quota of 4: the flooder gives up two.
    held = {d.drop_id for d in store.held()}
    assert held == {drop_id(b) for b in drops_made[:2]} | {drop_id(b) for b in drops_made[4:]}


def test_sweep_removes_expired_drops(tmp_path: Path) -> None:
    store = DropStore(tmp_path)
    short, long = junk_drop(NOW + DAY), junk_drop(NOW + 9 * DAY)
    store.add(short, NOW)
    store.add(long, NOW)
    assert store.sweep(NOW + 2 * DAY) == 1
    assert [d.drop_id for d in store.held()] == [drop_id(long)]


@pytest.mark.parametrize(
    ("name", "blob", "error"),
    [
        ("tampered", lambda: flip(junk_drop(), 500), DropStampError),
        ("truncated", lambda: junk_drop()[:-1], DropTruncatedError),
        ("oversized", lambda: bytes(MAX_DROP_BYTES + 1), DropOversizedError),
        ("expired", lambda: junk_drop(NOW - 1), DropExpiredError),
        ("too_far", lambda: junk_drop(NOW + 400 * DAY), DropExpiryTooFarError),
    ],
)
def test_bad_drops_are_refused_and_nothing_is_kept(
    tmp_path: Path, name: str, blob: object, error: type[Exception]
) -> None:
    store = DropStore(tmp_path)
    kept = junk_drop()
    store.add(kept, NOW)
    assert callable(blob)
    with pytest.raises(error) as raised:
        store.add(blob(), NOW)
    assert "\n" not in str(raised.value)
    assert [d.drop_id for d in store.held()] == [drop_id(kept)]
    assert sorted(p.name for p in (tmp_path / "drops").iterdir()) == sorted(
        [drop_id(kept).hex(), "drops.lock"]
    )


def test_receipts_are_kept_only_as_hmacs_and_turn_delivered_after_the_ack(
    tmp_path: Path, drops_made: list[bytes]
) -> None:
    store = DropStore(tmp_path)
    store.add(drops_made[0], NOW)
    store.note_receipt("QWERTY23", drop_id(drops_made[0]))
    assert store.receipt_state("QWERTY23") == "waiting"
    assert store.receipt_state("qwerty23") == "waiting"
    assert store.receipt_state("AAAAAAAA") == "unknown"
    for path in (tmp_path / "drops").iterdir():
        assert b"QWERTY23" not in path.read_bytes()
    key = tmp_path / "drops" / "receipts.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    store.remove([drop_id(drops_made[0])])
    assert store.receipt_state("QWERTY23") == "delivered"
    assert DropStore(tmp_path).receipt_state("QWERTY23") == "delivered"  # after a restart


def test_a_killed_add_leaves_no_drop_and_its_temp_file_is_ignored_then_swept(
    tmp_path: Path,
) -> None:
    """A writer killed between writing the temp file and renaming it: the drop is not
    held (a half-written one never is), a later add stores it, and sweep removes the
    temp file once it is stale."""
    blob = junk_drop()
    script = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        import meshdrop.fs as fs
        def killed(*args, **kwargs):
            os._exit(9)
        fs.DurableBatch.commit = killed
        from meshdrop.store.drops import DropStore
        DropStore(Path({str(tmp_path)!r})).add(sys.stdin.buffer.read(), {NOW})
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], input=blob, env=command_env(), check=False
    )
    assert proc.returncode == 9
    folder = tmp_path / "drops"
    temps = [p for p in folder.iterdir() if p.name.startswith(".tmp-")]
    assert len(temps) == 1 and temps[0].read_bytes() == blob
    store = DropStore(tmp_path)
    assert store.held() == []
    assert store.add(blob, NOW) is not None
    os.utime(temps[0], (NOW - 2 * 3600, NOW - 2 * 3600))
    assert store.sweep(NOW) == 0
    assert [p.name for p in folder.iterdir() if p.name.startswith(".tmp-")] == []
    assert [d.drop_id for d in store.held()] == [drop_id(blob)]


# `meshdrop import` of .drop files: one real subprocess run per behaviour


def flip(blob: bytes, position: int) -> bytes:
    changed = bytearray(blob)
    changed[position] ^= 0x01
    return bytes(changed)


def test_import_of_a_drop_file_stores_it_and_a_replay_is_already_had(tmp_path: Path) -> None:
    home = tmp_path / "node"
    blob = sealed_drop()
    path = tmp_path / "report.drop"
    path.write_bytes(blob)
    first = run_meshdrop("--home", home, "import", path, "--json")
    assert first.code == 0, first.err
    line = json.loads(first.out)
    assert line["outcome"] == "imported"
    assert (home / "drops" / hashlib.sha256(blob).hexdigest()).read_bytes() == blob
    again = run_meshdrop("--home", home, "import", path)
    assert again.code == 0 and "already had" in again.out


@pytest.mark.parametrize(
    ("case", "make", "message"),
    [
        ("tampered", lambda: flip(sealed_drop(), 100), "stamp does not check"),
        ("truncated", lambda: sealed_drop()[:9000], "not one of the drop sizes"),
        ("oversized", lambda: bytes(MAX_DROP_BYTES + 5), "over the limit"),
        ("expired", lambda: sealed_drop(NOW - DAY, NOW - 10 * DAY), "expired"),
    ],
)
def test_import_refuses_a_bad_drop_file_with_one_line(
    tmp_path: Path, case: str, make: object, message: str
) -> None:
    home = tmp_path / "node"
    good = tmp_path / "good.drop"
    good.write_bytes(sealed_drop())
    run_meshdrop("--home", home, "import", good, check=True)
    bad = tmp_path / f"{case}.drop"
    assert callable(make)
    bad.write_bytes(make())
    result = run_meshdrop("--home", home, "import", bad)
    assert_clean_error(result, message)
    assert result.code == 3
    assert len(result.err.strip().splitlines()) == 1
    held = [p for p in (home / "drops").iterdir() if len(p.name) == 64]
    assert [p.name for p in held] == [hashlib.sha256(good.read_bytes()).hexdigest()]
