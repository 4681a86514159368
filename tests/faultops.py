"""The operations the injected-fault sweep runs (issue 21), each on a small store made by
the real commands, and the checks after each fault point (tests/faultkit.py injects).

After a point, whatever the fault: no traceback, and ``fsck`` clean. If the command
failed: the exit code the README's table gives a store or disk fault (7; 1 for a command
about several inputs), one line on stderr, only whole bundles listed (nothing of the
new ones but what is complete, all of the previous ones), then a rerun without the fault
exits 0. Then (or at once, if the command absorbed the fault and exited 0) the whole
result is there."""

from __future__ import annotations

import errno
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from faultkit import CHILD_FAILED, Fault, Outcome, cli, counter_for, run_forked

from meshdrop.errors import StoreError

STORE_FAULT = StoreError.exit_code
SOME_REFUSED = 1  # README "Exit codes": several inputs and some were refused
FAST_KDF = {"MESHDROP_TEST_FAST_KDF": "1"}
OLD_PASSPHRASE = "an old passphrase of this store"
NEW_PASSPHRASE = "a new passphrase of this store"
SEALED = {**FAST_KDF, "MESHDROP_STORE_PASSPHRASE": OLD_PASSPHRASE}
PUBLISHER_PASSPHRASE = {"MESHDROP_PASSPHRASE": "unused, the keys are unencrypted"}
BUNDLES = {
    "news-a": {"index.html": b"<p>the story so far</p>", "img/a.txt": b"a" * 3000},
    "news-b": {"index.html": b"<p>bee</p>", "notes.txt": b"b" * 5000},
    "news-c": {"index.html": b"<p>sea</p>"},
}


class SetupError(Exception):
    """A set-up step of the sweep failed (not a finding: the harness's own fault)."""


def step(*argv: str | Path, env: dict[str, str] | None = None) -> Outcome:
    outcome = run_forked(cli(*argv), env or {}, None)
    if outcome.code != 0:
        raise SetupError(f"meshdrop {' '.join(map(str, argv))}: {outcome.err.strip()}")
    return outcome


def listed(home: Path, env: dict[str, str]) -> set[str] | None:
    """``ls``: "name vN" of each bundle, or None if the store does not open."""
    outcome = run_forked(cli("--home", home, "ls", "--json"), env, None)
    if outcome.code != 0:
        return None
    lines = [json.loads(x) for x in outcome.out.splitlines() if x.strip()]
    return {f"{x['name']} v{x['version']}" for x in lines}


@dataclass
class Operation:
    """One command swept: ``argv`` run in a fresh copy of ``template`` (``work``)."""

    name: str
    template: Path
    argv: Callable[[Path], list[str | Path]]
    before: set[str]  # what ``ls`` lists before, and must after a failure
    after: set[str]  # what it lists after the command completed
    env: dict[str, str] = field(default_factory=dict)
    fault_codes: tuple[int, ...] = (STORE_FAULT,)
    inputs: int = 1  # a command about several inputs says one line for each it refused
    # What to check besides the store's list: problems found, in words.
    check_failed: Callable[[Operation, Path], list[str]] = lambda op, work: []
    check_done: Callable[[Operation, Path], list[str]] = lambda op, work: []
    # Whether a failed run still did all its work (past a commit point, finished when the
    # store next opens): then no rerun, which would be refused as having nothing to do.
    done_anyway: Callable[[Operation, Path], bool] = lambda op, work: False
    # What the failed command said that it must not have (problems, in words).
    check_said: Callable[[Outcome], list[str]] = lambda outcome: []
    # The environment that opens the store now (a passphrase change may have landed).
    check_env: Callable[[Operation, Path], dict[str, str]] = lambda op, work: op.env
    # What ``ls`` may list after a failure (default: the previous state, then whole
    # bundles of the new one).
    may_list: Callable[[Operation, set[str]], bool] = lambda op, shown: (
        op.before <= shown <= op.after
    )

    # Instead of a command line: what to run in the child (its exit code), given ``work``.
    runner: Callable[[Path], Callable[[], int]] | None = None

    def home(self, work: Path) -> Path:
        return work / "home"

    def target(self, work: Path) -> Callable[[], int]:
        return self.runner(work) if self.runner else cli(*self.argv(work))


@dataclass
class Point:
    operation: str
    fault: Fault
    problems: list[str]
    fired: bool
    absorbed: bool  # the fault fired and the command still exited 0

    @property
    def held(self) -> bool:
        return not self.problems


def count_calls(op: Operation, scratch: Path) -> dict[str, int]:
    """How many calls of each kind the operation makes (a run without a fault)."""
    work = fresh_copy(op, scratch)
    outcome = run_forked(op.target(work), op.env, None)
    if outcome.code != 0:
        raise SetupError(f"{op.name} fails without a fault: {outcome.err.strip()}")
    shutil.rmtree(work, ignore_errors=True)
    return outcome.counts


def fault_points(
    counts: dict[str, int], kinds: tuple[str, ...], errnos: tuple[int, ...], stride: int = 1
) -> list[Fault]:
    points = []
    for err in errnos:
        for kind in kinds:
            total = counts.get(counter_for(kind, err), 0)
            points += [Fault(kind, n, err) for n in range(1, total + 1, stride)]
    return points


def fresh_copy(op: Operation, scratch: Path) -> Path:
    work = scratch / f"work-{op.name}"
    shutil.rmtree(work, ignore_errors=True)
    # Not the plain files a seal moved aside: a process of its own is removing them.
    shutil.copytree(op.template, work, symlinks=True, ignore=shutil.ignore_patterns(".tmp-*"))
    return work


def try_point(op: Operation, fault: Fault, scratch: Path) -> Point:
    work = fresh_copy(op, scratch)
    try:
        outcome = run_forked(op.target(work), op.env, fault)
        problems = judge(op, work, outcome)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    absorbed = outcome.fired and outcome.code == 0
    return Point(op.name, fault, problems, outcome.fired, absorbed)


def judge(op: Operation, work: Path, outcome: Outcome) -> list[str]:
    problems = []
    said = outcome.err + outcome.out
    if outcome.code == CHILD_FAILED or "Traceback" in said:
        return [f"a traceback (exit {outcome.code}): {said.strip()[-400:]}"]
    if outcome.code != 0:
        problems += failed_properly(op, work, outcome)
        if op.done_anyway(op, work):
            return problems + completed(op, work)
        rerun = run_forked(op.target(work), op.check_env(op, work), None)
        if rerun.code != 0:
            return [*problems, f"the rerun exits {rerun.code}: {rerun.err.strip()}"]
    return problems + completed(op, work)


def failed_properly(op: Operation, work: Path, outcome: Outcome) -> list[str]:
    problems = []
    if not outcome.fired:
        problems.append(f"exit {outcome.code} though the fault never fired")
    if outcome.code not in op.fault_codes:
        problems.append(f"exit {outcome.code}, not {op.fault_codes}: {outcome.err.strip()}")
    lines = [x for x in outcome.err.splitlines() if x.strip()]
    if not 1 <= len(lines) <= op.inputs:
        problems.append(f"{len(lines)} lines on stderr: {outcome.err.strip()[-400:]!r}")
    problems += op.check_said(outcome)
    env = op.check_env(op, work)
    problems += fsck_clean(op, work, env)
    shown = listed(op.home(work), env)
    if shown is None:
        problems.append("the store does not open after the failure")
    elif not op.may_list(op, shown):
        problems.append(f"listed {sorted(shown)}: not between {sorted(op.before)} and the result")
    return problems + op.check_failed(op, work)


def completed(op: Operation, work: Path) -> list[str]:
    env = op.check_env(op, work)
    problems = fsck_clean(op, work, env)
    shown = listed(op.home(work), env)
    if shown != op.after:
        problems.append(f"after completing, listed {sorted(shown or ())}, not {sorted(op.after)}")
    return problems + op.check_done(op, work)


def fsck_clean(op: Operation, work: Path, env: dict[str, str]) -> list[str]:
    outcome = run_forked(cli("--home", op.home(work), "fsck"), env, None)
    return [] if outcome.code == 0 else [f"fsck exits {outcome.code}: {outcome.err.strip()}"]


ALL_ERRNOS = (errno.ENOSPC, errno.EIO, errno.EROFS)
