"""A short fuzzing run of every target (scripts/fuzz, atheris): a thousand executions
each, seeded from real bundles, publisher files, vectors and peer messages. Any exception
other than meshdrop's own errors fails the test, naming the saved input. The full
campaign is `./scripts/fuzz --campaign` (docs/THREATS.md, "Fuzzing")."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "fuzz"))
from fuzzseeds import build  # noqa: E402
from fuzztargets import all_targets, call, load  # noqa: E402
from fuzztargets_net import INVENTORY_REQUEST  # noqa: E402

from meshdrop.errors import FormatError  # noqa: E402
from meshdrop.transports.lan.protocol import parse_inventory_response  # noqa: E402

FUZZ = ROOT / "scripts" / "fuzz.py"
REGRESSIONS = ROOT / "tests" / "fuzz" / "regressions"
RUNS = 1000


def fuzz(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(FUZZ), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@pytest.fixture(scope="session")
def seeds(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """Built once per session: under pytest-xdist the workers share the session's base
    folder, and the first to take the lock builds them."""
    if worker_id == "master":
        folder = tmp_path_factory.mktemp("fuzz-seeds")
        build(folder)
        return folder
    shared = tmp_path_factory.getbasetemp().parent
    folder = shared / "fuzz-seeds"
    with (shared / "fuzz-seeds.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "fuzz-seeds.built").exists():
            build(folder)
            (shared / "fuzz-seeds.built").touch()
    return folder


@pytest.mark.parametrize("name", sorted(all_targets()))
def test_fuzz_target_short_run_finds_nothing(name: str, seeds: Path, tmp_path: Path) -> None:
    assert any((seeds / name).iterdir()), f"no seeds for {name}"
    args = ("--runs", str(RUNS), "--time", "30", "--work", str(tmp_path), "--seeds", str(seeds))
    done = fuzz(name, *args)
    [result] = json.loads(done.stdout)
    assert result["findings"] == [], (
        f"fuzz target {name} raised something other than meshdrop's errors; input saved at "
        f"{result['findings']}; log {tmp_path / 'logs' / (name + '.log')}"
    )
    assert done.returncode == 0, done.stderr
    assert result["executions"] >= RUNS


def test_fuzz_reports_a_planted_bug_with_its_input(tmp_path: Path) -> None:
    """The harness can fail: a target that raises ValueError on its seed is a finding,
    saved as a file that raises again, and the run exits 1."""
    seeds = tmp_path / "seeds"
    (seeds / "canary").mkdir(parents=True)
    (seeds / "canary" / "seed").write_bytes(b"FUZZ")
    env = {**os.environ, "MESHDROP_FUZZ_CANARY": "1"}
    done = fuzz("canary", "--runs", "100", "--work", str(tmp_path), "--seeds", str(seeds), env=env)
    assert done.returncode == 1
    [result] = json.loads(done.stdout)
    [finding] = result["findings"]
    assert Path(finding).name.startswith("crash-")
    assert Path(finding).read_bytes().startswith(b"FU")


def test_fuzz_unknown_target_is_one_line_usage_error(tmp_path: Path) -> None:
    done = fuzz("no-such-target", "--work", str(tmp_path))
    assert done.returncode == 2
    assert "unknown target(s): no-such-target" in done.stderr
    assert "Traceback" not in done.stderr


def test_inventory_answer_whose_node_prefix_is_a_map_is_malformed() -> None:
    """Found by the campaign: a node's prefix that is not text (here a map, which cannot
    be looked up in a set) raised TypeError; the client turned it into a penalty with
    Python's words ("unhashable type") instead of the protocol's."""
    data = (REGRESSIONS / "inventory_response" / "node-prefix-is-a-map").read_bytes()
    with pytest.raises(FormatError, match="has a node that was not asked for"):
        parse_inventory_response(data, INVENTORY_REQUEST)


# Inputs a campaign found (tests/fuzz/regressions/<target>/<name>), each a test of its
# own; the test exists only once there is one (an empty parameter set would be a skip).
REGRESSION_INPUTS = sorted(p for p in REGRESSIONS.glob("*/*") if p.is_file())

if REGRESSION_INPUTS:

    @pytest.mark.parametrize(
        "path", REGRESSION_INPUTS, ids=[f"{p.parent.name}/{p.name}" for p in REGRESSION_INPUTS]
    )
    def test_fuzz_regression_input_is_refused_cleanly(path: Path) -> None:
        """Now only meshdrop's own errors, or nothing, come out of its target."""
        call(load(path.parent.name), path.read_bytes())
