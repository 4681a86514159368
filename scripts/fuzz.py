"""Coverage-guided fuzzing (atheris, libFuzzer) of every parser of bytes from strangers.
Run it through ./scripts/fuzz (which sets up .venv); see --help. The targets are in
tests/fuzz/fuzztargets*.py, their seeds are built by tests/fuzz/fuzzseeds.py."""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
FUZZ_DIR = ROOT / "tests" / "fuzz"
# Per input: libFuzzer stops the run (and keeps the input as a finding) when one input
# takes longer than this many seconds, or the process grows past this much memory.
TIMEOUT_S = 5
RSS_LIMIT_MB = 1024
FINDING_PREFIXES = ("crash-", "timeout-", "oom-", "leak-", "slow-unit-")

EXAMPLES = f"""\
examples:
  scripts/fuzz --list
  scripts/fuzz manifest --time 60                 one target for a minute
  scripts/fuzz --campaign --time-per-target 300 --runs 1000000 --json
  scripts/fuzz --campaign --only bundle,want --time-per-target 30

Each target runs in its own process with libFuzzer's -rss_limit_mb={RSS_LIMIT_MB} and
-timeout={TIMEOUT_S}. Work folder (default $TMPDIR/meshdrop-fuzz): seeds/<target> (built
from real data when missing), corpus/<target> (what the fuzzer found worth keeping),
findings/<target> (inputs that raised anything but meshdrop's own errors, or were too
slow or too big). A finding: add it under tests/fuzz/regressions/<target>/.
"""


@dataclass
class Result:
    target: str
    executions: int
    exec_per_s: int
    findings: list[str]
    corpus: int
    coverage: int | None
    features: int | None
    seconds: float
    exit_code: int


def _import_path() -> None:
    sys.path.insert(0, str(FUZZ_DIR))


def target_modules(wanted: Collection[str] = ()) -> dict[str, str]:
    """Each target's module, so that a worker imports (and instruments) that one only.
    Modules are imported in order until every ``wanted`` target is found (all if none)."""
    _import_path()
    import fuzztargets

    found: dict[str, str] = {}
    for module_name in fuzztargets.MODULES:
        for target in importlib.import_module(module_name).HERE:
            found[target.name] = module_name
        if wanted and set(wanted) <= set(found):
            break
    return found


def ensure_seeds(work: Path, rebuild: bool) -> Path:
    seeds = work / "seeds"
    if rebuild or not seeds.is_dir():
        _import_path()
        from fuzzseeds import build

        build(seeds)
    return seeds


def worker(name: str, module: str, args: list[str]) -> None:
    """Runs in a process of its own: instrument meshdrop while importing it, then fuzz."""
    import atheris

    _import_path()
    with atheris.instrument_imports(include=["meshdrop"]):
        import fuzztargets
    if module in fuzztargets.PARTLY_INSTRUMENTED:
        loaded = importlib.import_module(module)
        for module_name in loaded.INSTRUMENT_ONLY:
            _instrument_module(atheris, sys.modules[module_name])
    else:
        with atheris.instrument_imports(include=["meshdrop"]):
            importlib.import_module(module)
    target = fuzztargets.load(name, module)

    def one_input(data: bytes) -> None:
        fuzztargets.call(target, data)

    atheris.Setup([sys.argv[0], *args], one_input)
    atheris.Fuzz()


def _instrument_module(atheris: ModuleType, module: ModuleType) -> None:
    """Every function and method defined in ``module``, instrumented in place."""
    for value in list(vars(module).values()):
        members = vars(value).values() if inspect.isclass(value) else [value]
        for member in members:
            if inspect.isfunction(member) and member.__module__ == module.__name__:
                atheris.instrument_func(member)


_STATUS = re.compile(rb"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)", re.MULTILINE)
_STAT = re.compile(rb"^stat::(\w+):\s+(\d+)", re.MULTILINE)


def run_target(name: str, module: str, work: Path, seeds: Path, seconds: int, runs: int) -> Result:
    corpus = work / "corpus" / name
    findings = work / "findings" / name
    corpus.mkdir(parents=True, exist_ok=True)
    findings.mkdir(parents=True, exist_ok=True)
    before = set(findings.iterdir())
    libfuzzer = [
        str(corpus),
        str(seeds / name),
        f"-max_total_time={seconds}",
        f"-runs={runs}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-timeout={TIMEOUT_S}",
        f"-artifact_prefix={findings}/",
        "-print_final_stats=1",
    ]
    log = work / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("wb") as out:
        done = subprocess.run(
            [sys.executable, __file__, "--worker", name, module, "--", *libfuzzer],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=seconds + 120,
        )
    elapsed = time.monotonic() - started
    text = log.read_bytes()
    stats = {k.decode(): int(v) for k, v in _STAT.findall(text)}
    status = _STATUS.findall(text)
    executions = stats.get("number_of_executed_units", int(status[-1][0]) if status else 0)
    new = sorted(
        str(p) for p in set(findings.iterdir()) - before if p.name.startswith(FINDING_PREFIXES)
    )
    if done.returncode != 0 and not new:
        new = [f"{log} (exit {done.returncode}, no input saved)"]
    return Result(
        target=name,
        executions=executions,
        # Over the whole run, start-up included (libFuzzer's own figure is 0 for runs
        # shorter than a second).
        exec_per_s=round(executions / elapsed) if elapsed else 0,
        findings=new,
        corpus=sum(1 for _ in corpus.iterdir()),
        coverage=int(status[-1][1]) if status else None,
        features=int(status[-1][2]) if status else None,
        seconds=round(elapsed, 1),
        exit_code=done.returncode,
    )


def table(results: list[Result]) -> str:
    head = "| target | executions | exec/s | findings | corpus | coverage (edges) | seconds |"
    rows = [head, "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        cov = "" if r.coverage is None else str(r.coverage)
        rows.append(
            f"| {r.target} | {r.executions:,} | {r.exec_per_s:,} | {len(r.findings)} "
            f"| {r.corpus} | {cov} | {r.seconds} |"
        )
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--worker"]:
        worker(argv[1], argv[2], argv[4:])
        return 0
    parser = argparse.ArgumentParser(
        prog="scripts/fuzz",
        description="Fuzz meshdrop's parsers of untrusted bytes with atheris (libFuzzer).",
        epilog=textwrap.dedent(EXAMPLES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", nargs="?", help="one target (see --list)")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument("--campaign", action="store_true", help="run every target in turn")
    parser.add_argument("--only", help="with --campaign: comma-separated targets")
    parser.add_argument("--time", type=int, default=60, help="seconds for one target")
    parser.add_argument("--time-per-target", type=int, default=300, help="with --campaign")
    parser.add_argument(
        "--runs", type=int, default=1_000_000, help="executions per target, at most"
    )
    parser.add_argument("--work", type=Path, help="work folder (default $TMPDIR/meshdrop-fuzz)")
    parser.add_argument("--seeds", type=Path, help="seed folder to use instead of building one")
    parser.add_argument("--rebuild-seeds", action="store_true", help="build the seeds again")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    single = args.target is not None and not (args.list or args.campaign)
    modules = target_modules([args.target] if single else ())
    names = list(modules)
    if args.list:
        _import_path()
        from fuzztargets import all_targets

        for name, target in all_targets().items():
            print(f"{name:20} {target.about}")
        return 0
    if args.campaign:
        chosen = args.only.split(",") if args.only else names
        seconds = args.time_per_target
    elif args.target:
        chosen, seconds = [args.target], args.time
    else:
        parser.error("name a target, or use --list or --campaign")
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        parser.error(f"unknown target(s): {', '.join(unknown)} (see --list)")
    work = args.work or Path(os.environ.get("TMPDIR", "/tmp")) / "meshdrop-fuzz"
    seeds = args.seeds or ensure_seeds(work, args.rebuild_seeds)
    results = []
    for name in chosen:
        if not args.json:
            print(f"fuzz: {name} for up to {seconds} s or {args.runs:,} runs", file=sys.stderr)
        result = run_target(name, modules[name], work, seeds, seconds, args.runs)
        results.append(result)
        for finding in result.findings:
            print(f"fuzz: FINDING in {name}: {finding}", file=sys.stderr)
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print(table(results))
    return 1 if any(r.findings for r in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
