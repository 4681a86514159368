"""The injected-fault sweep (issue 21; docs/THREATS.md, "Injected faults"): for each
operation, a run without a fault counts its write, fsync, rename, open and SQLite calls;
then every Nth call of each kind fails with ENOSPC, EIO and EROFS in turn, and the checks
of tests/faultops.py run after each point. The harness lives in tests/faultkit.py."""

from __future__ import annotations

import argparse
import errno
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from faultcases import OPERATIONS, build
from faultkit import ERRNOS, KINDS, Fault
from faultops import Operation, Point, count_calls, fault_points, try_point

import meshdrop.cli.main  # noqa: F401  (imported once here: every fork reuses it)

EXAMPLE = """example:
  scripts/faults                                   every point of every operation
  scripts/faults --op import-file --errno ENOSPC   one operation, one errno
  scripts/faults --stride 5 --json                 every 5th point; JSON lines, then a summary"""


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/faults",
        description="Fail the Nth write, fsync, rename, open or SQLite call of each store\n"
        "operation with ENOSPC, EIO or EROFS, for every N, and check what is left after\n"
        "each (docs/THREATS.md, 'Injected faults'). Exits 1 if any point failed.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--op", action="append", help="an operation to sweep (repeatable)")
    parser.add_argument("--kind", action="append", choices=KINDS, help="a call kind (repeatable)")
    parser.add_argument(
        "--errno", action="append", choices=list(ERRNOS), help="an errno to inject (repeatable)"
    )
    parser.add_argument("--stride", type=int, default=1, help="try every Nth point only")
    parser.add_argument(
        "--json",
        action="store_true",
        help="a JSON line per failed point and per operation, instead of the table",
    )
    parser.add_argument("--list", action="store_true", help="name the operations and stop")
    parser.add_argument(
        "--point",
        action="append",
        metavar="KIND:N:ERRNO",
        help="try only this point, e.g. open:1:ENOSPC (repeatable; with one --op)",
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    kinds = tuple(args.kind or KINDS)
    errnos = tuple(ERRNOS[name] for name in (args.errno or ERRNOS))
    if args.list:
        print("\n".join(OPERATIONS))
        return 0
    unknown = set(args.op or ()) - set(OPERATIONS)
    if unknown:
        print(f"scripts/faults: no operation {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    if args.point and len(args.op or ()) != 1:
        print("scripts/faults: --point needs one --op", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="meshdrop-faults-"))
    try:
        operations = build(root, args.op or ())
        if args.point:
            return single_points(operations[args.op[0]], args.point, root)
        rows = []
        for name in args.op or list(operations):
            rows.append(sweep(operations[name], kinds, errnos, args.stride, root, args.json))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report(rows, args.json)
    return 0 if all(row["failed"] == 0 for row in rows) else 1


def single_points(op: Operation, specs: list[str], root: Path) -> int:
    """Each point given: one JSON line saying whether it held."""
    held = True
    for spec in specs:
        kind, nth, err = spec.split(":")
        point = try_point(op, Fault(kind, int(nth), ERRNOS[err]), root)
        held &= point.held
        line = {"operation": op.name, "point": spec, "held": point.held, "fired": point.fired}
        line["absorbed"] = point.absorbed
        print(json.dumps({**line, "problems": point.problems}))
    return 0 if held else 1


def sweep(
    op: Operation,
    kinds: tuple[str, ...],
    errnos: tuple[int, ...],
    stride: int,
    root: Path,
    as_json: bool,
) -> dict[str, object]:
    started = time.monotonic()
    points = fault_points(count_calls(op, root), kinds, errnos, stride)
    results: list[Point] = []
    for i, fault in enumerate(points, 1):
        point = try_point(op, fault, root)
        results.append(point)
        if not point.held:
            failure = {"operation": op.name, "point": fault.label(), "problems": point.problems}
            print(
                json.dumps(failure)
                if as_json
                else f"FAILED {op.name} {fault.label()}: {'; '.join(point.problems)}",
                flush=True,
            )
        print(f"\r{op.name}: {i}/{len(points)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return {
        "operation": op.name,
        "tried": len(results),
        "held": sum(p.held for p in results),
        "failed": sum(not p.held for p in results),
        "absorbed": sum(p.absorbed for p in results),
        "errnos": sorted(errno.errorcode[e] for e in errnos),
        "seconds": round(time.monotonic() - started, 1),
    }


def report(rows: list[dict[str, object]], as_json: bool) -> None:
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    print(f"{'operation':<16} {'tried':>6} {'held':>6} {'failed':>6} {'absorbed':>8} {'s':>7}")
    for row in rows:
        print(
            f"{row['operation']!s:<16} {row['tried']:>6} {row['held']:>6} {row['failed']:>6} "
            f"{row['absorbed']:>8} {row['seconds']:>7}"
        )
    total = {k: sum(int(str(r[k])) for r in rows) for k in ("tried", "held", "failed", "absorbed")}
    print(
        f"{'total':<16} {total['tried']:>6} {total['held']:>6} {total['failed']:>6} "
        f"{total['absorbed']:>8}"
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
