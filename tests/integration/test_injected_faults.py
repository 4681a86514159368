"""Injected I/O faults (issue 21; docs/THREATS.md, "Injected faults"): a representative
part of the sweep ``scripts/faults`` runs in full. Each test runs scripts/faults.py as a
real process (it forks a child per point: a fork from pytest's worker, which runs threads,
would not be safe), which checks after every point: exit code and one line, fsck clean,
nothing partial listed, the previous state intact, a rerun completes.

Every point of the smallest operations for ENOSPC; every 3rd point of a file import for
ENOSPC; a stride through the others for EIO and EROFS. The regression tests below are the
points that failed when the sweep first ran, each fixed in the product."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "faults.py"


def faults(*args: str) -> tuple[int, list[dict[str, object]], str]:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--json", *args],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    return proc.returncode, lines, proc.stderr


SWEEPS = [
    pytest.param("trust-update", "ENOSPC", 1, id="trust-update-every-point-enospc"),
    pytest.param("passphrase", "ENOSPC", 1, id="passphrase-every-point-enospc"),
    pytest.param("import-file", "ENOSPC", 3, id="import-file-every-3rd-enospc"),
    pytest.param("import-folder", "EIO", 9, id="import-folder-strided-eio"),
    pytest.param("courier-import", "EROFS", 9, id="courier-import-strided-erofs"),
    pytest.param("courier-export", "EIO", 8, id="courier-export-strided-eio"),
    pytest.param("seal", "EROFS", 12, id="seal-strided-erofs"),
    pytest.param("panic", "EIO", 15, id="panic-strided-eio"),
    pytest.param("lan-commit", "EIO", 9, id="lan-commit-strided-eio"),
]


@pytest.mark.parametrize(("operation", "err", "stride"), SWEEPS)
def test_fault_points_hold(operation: str, err: str, stride: int) -> None:
    code, lines, stderr = faults("--op", operation, "--errno", err, "--stride", str(stride))
    failed = [x for x in lines if "problems" in x]
    summary = [x for x in lines if x.get("operation") == operation and "tried" in x]
    assert not failed, failed
    assert code == 0, stderr
    assert len(summary) == 1 and summary[0]["tried"] == summary[0]["held"]
    assert int(str(summary[0]["tried"])) >= 3  # the sweep reached the operation's calls


# The points that failed when the sweep first ran (each the fix named).
REGRESSIONS = [
    # A full disk refusing the store's lock file: a raw OSError, exit 1 (store/db.py open_lock).
    pytest.param("import-file", "open:1:ENOSPC", id="lock-file-disk-full-exit-7"),
    # SQLite failing outside a commit (the trust state read while accepting): exit 70, an
    # "internal error" (cli/main.py maps SQLite's disk errors: store/db.py disk_error).
    pytest.param("import-file", "sqlite:8:ENOSPC", id="index-read-disk-full-exit-7"),
    # The same after the commit (the chunks the commit made unreferenced).
    pytest.param("import-file", "sqlite:29:EIO", id="pending-deletes-io-error-exit-7"),
    # A courier import whose commit failed said "incomplete: 0 chunks still needed"
    # instead of why (transports/courier/importer.py).
    pytest.param("courier-import", "sqlite:21:ENOSPC", id="courier-commit-failure-named"),
    # An I/O error reading the publisher file: exit 2, a usage error (fs.reading_error).
    pytest.param("trust-update", "open:1:EIO", id="publisher-file-io-error-exit-7"),
    # An I/O error reading the sealed store's slots file: exit 2 (fs.reading_error).
    pytest.param("passphrase", "open:1:EIO", id="slots-file-io-error-exit-7"),
    # The LAN receiver: the ingest lock's raw OSError, and SQLite errors of the offer
    # checks, escaped as other exceptions than StoreError (storeio.check_offers).
    pytest.param("lan-commit", "open:1:EIO", id="lan-ingest-lock-io-error"),
    pytest.param("lan-commit", "sqlite:13:EIO", id="lan-offer-check-io-error"),
]


@pytest.mark.parametrize(("operation", "point"), REGRESSIONS)
def test_fault_point_regression(operation: str, point: str) -> None:
    code, lines, stderr = faults("--op", operation, "--point", point)
    assert len(lines) == 1, stderr
    assert lines[0]["fired"], lines[0]
    assert lines[0]["held"], lines[0]["problems"]
    assert code == 0


def test_an_export_whose_sync_fails_says_so_and_exits_7() -> None:
    """Every fsync of an export failing with EIO, the final sync of the stick included,
    is the export's failure (exit 7, one line, the stick still imports what it held),
    never absorbed: an export that exited 0 without "safe to remove" left a courier's
    script believing the stick was ready."""
    code, lines, stderr = faults("--op", "courier-export", "--kind", "fsync", "--errno", "EIO")
    summary = [x for x in lines if "tried" in x]
    assert code == 0 and len(summary) == 1, stderr
    assert summary[0]["tried"] == summary[0]["held"], lines
    assert int(str(summary[0]["tried"])) >= 3  # the batch's fsyncs, the folder's, os.sync
    assert summary[0]["absorbed"] == 0, summary


def test_faults_help_has_an_example() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=True
    )
    assert "example:" in proc.stdout and "--op import-file" in proc.stdout
