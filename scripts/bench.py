"""Measure the installed `meshdrop` command against openssl and cp baselines, in one run,
on the same bytes. Run it through ./scripts/bench (which sets up .venv); see --help."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import multiprocessing
import os
import platform
import shutil
import ssl
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

from benchkit import set_aside

MIB = 1024 * 1024
MB = 1_000_000  # rates are in MB/s: 10^6 bytes per second
PIECE = 16 * MIB  # the big source file is written (and warmed) in pieces this size
SMALL_FILE_BYTES = 8 * 1024
REPEATS = 3
RATIO_TARGET = 0.8  # pack and import should reach this share of openssl's rate
LS_TARGET_SECONDS = 1.0
PACK_BATCH = 250  # small bundles per task when packing them in worker processes

# "store" is this file's own table; the others live in scripts/bench_<area>.py, each with
# run(workdir, quick) -> rows of name, value, unit, baseline, ratio, target.
AREAS = (
    "store",
    "get",
    "courier",
    "parts",
    "lan",
    "reader",
    "circle",
    "search",
    "reports",
    "sealed",
)

EPILOG = """\
examples:
  ./scripts/bench --quick                  # 64 MiB, 200 small, 2000 listed: about a minute
  ./scripts/bench                          # 512 MiB, 1000 small, 10000 listed
  ./scripts/bench --size-mib 2048 --workdir /media/stick --json > bench.json
  ./scripts/bench --quick --areas circle   # circles vs open nodes and Syncthing: ~2 min
  ./scripts/bench --quick --areas reports  # seal, open, a drop across 10 nodes: ~2 min
  ./scripts/bench --quick --areas sealed   # sealed vs plain store, ls, reader, panic

Every figure is the best of 3 runs of the installed command, timed around the whole
process (Python start-up included). Progress goes to stderr; the table (or --json) to
stdout. The exit status is 0 when every command ran, whether or not targets were met."""


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A command failed or the machine cannot run the benchmark."""


@dataclass
class Row:
    key: str  # stable name for --json
    label: str
    value: float
    unit: str  # "MB/s", "bundles/s" or "s"
    best_seconds: float
    runs_seconds: list[float]
    vs_openssl: float | None = None
    vs_cp_sync: float | None = None
    target: str = ""
    met: bool | None = None


@dataclass
class Report:
    machine: dict[str, str]
    settings: dict[str, object]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# Facts about the machine


def _command_output(argv: Sequence[str]) -> str:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return proc.stdout.strip() or "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def source_state() -> str:
    """The git commit of the meshdrop checkout (the .venv install is editable), and
    whether its working tree has changes: a figure belongs to the code it measured."""
    root = Path(__file__).resolve().parent.parent
    git = ["git", "-C", str(root)]
    head = _command_output([*git, "rev-parse", "--short", "HEAD"])
    if head == "unknown":
        return "not a git checkout"
    status = subprocess.run(
        [*git, "status", "--porcelain", "--", "meshdrop"], capture_output=True, text=True
    )
    changed = len(status.stdout.splitlines()) if status.returncode == 0 else 0
    return f"git {head}" + (f" + {changed} changed files in meshdrop/" if changed else "")


def machine_facts(meshdrop: str, work: Path) -> dict[str, str]:
    return {
        "source": source_state(),
        "nproc": _command_output(["nproc"]),
        "python": platform.python_version(),
        "openssl": _command_output(["openssl", "version"]),
        "python_ssl": ssl.OPENSSL_VERSION,
        "meshdrop": _command_output([meshdrop, "--version"]),
        "cpu": _cpu_model(),
        "kernel": f"{platform.system()} {platform.release()}",
        "workdir": str(work),
        "workdir_fs": _command_output(["findmnt", "-n", "-o", "FSTYPE", "-T", str(work)]),
        "load_start": load_average(),
    }


def load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


# Running and timing commands


class Runner:
    def __init__(self, meshdrop: str, work: Path) -> None:
        self.meshdrop = meshdrop
        self.work = work
        # The bench's own settings, never a MESHDROP_HOME or passphrase from the caller.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MESHDROP_")}

    def run(self, argv: Sequence[str | Path]) -> subprocess.CompletedProcess[str]:
        args = [str(a) for a in argv]
        proc = subprocess.run(
            args, capture_output=True, text=True, env=self.env, stdin=subprocess.DEVNULL
        )
        if proc.returncode != 0:
            raise BenchError(
                f"{' '.join(args)} exited {proc.returncode}:\n{proc.stderr.strip() or proc.stdout}"
            )
        return proc

    def md(self, *args: str | Path) -> list[str | Path]:
        return [self.meshdrop, *args]

    def best_of(
        self,
        what: str,
        commands: Sequence[Sequence[str | Path]],
        *,
        prepare: Callable[[], None] | None = None,
        check: Callable[[subprocess.CompletedProcess[str]], None] | None = None,
        payload: int | None = None,
    ) -> list[float]:
        """Run ``commands`` (one after another, timed together) REPEATS times; returns
        the times. ``prepare`` runs untimed before each run; dirty pages are flushed
        before the clock starts so earlier writes do not bill this run."""
        times: list[float] = []
        for attempt in range(1, REPEATS + 1):
            if prepare is not None:
                prepare()
            os.sync()
            start = time.perf_counter()
            for command in commands:
                proc = self.run(command)
            elapsed = time.perf_counter() - start
            if check is not None:
                check(proc)
            times.append(elapsed)
            rate = f" ({payload / elapsed / MB:.0f} MB/s)" if payload else ""
            say(f"  {what}, run {attempt}/{REPEATS}: {elapsed:.3f} s{rate}")
        return times


# Making data


def write_random_file(path: Path, size: int) -> None:
    with path.open("wb") as handle:
        remaining = size
        while remaining:
            piece = os.urandom(min(PIECE, remaining))
            handle.write(piece)
            remaining -= len(piece)
        handle.flush()
        os.fsync(handle.fileno())


def warm(path: Path) -> None:
    """Read ``path`` once so that the runs that follow read it from the page cache."""
    with path.open("rb", buffering=0) as handle:
        while handle.read(PIECE):
            pass


def pack_small_batch(
    publisher_dir: str, out_dir: str, scratch: str, first: int, count: int, created: int
) -> int:
    """Pack bundles first..first+count-1 (one 8 KiB random file each) in this worker
    process by calling the installed command's entry point (what the `meshdrop` script
    runs) in-process: the same options as `meshdrop pack`, without a start-up each."""
    (entry,) = entry_points(group="console_scripts", name="meshdrop")
    meshdrop_main = entry.load()
    src = Path(scratch) / f"small-src-{first}"
    src.mkdir(parents=True, exist_ok=True)
    item = src / "item.bin"
    for index in range(first, first + count):
        name = small_name(index)
        item.write_bytes(os.urandom(SMALL_FILE_BYTES))
        args = [
            "pack",
            str(src),
            "--publisher",
            publisher_dir,
            "--name",
            name,
            "--title",
            f"bench bundle {index}",
            "--description",
            "8 KiB of random bytes",
            "--created",
            str(created),
            "-o",
            str(Path(out_dir) / f"{name}.mdrop"),
            "--quiet",
        ]
        errors = io.StringIO()
        sys.argv = ["meshdrop", *args]
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(errors):
                meshdrop_main()
        except SystemExit as exc:
            if exc.code not in (0, None):
                # Sent back to the parent as plain text, which always pickles.
                raise RuntimeError(
                    f"meshdrop {' '.join(args)} exited {exc.code}: {errors.getvalue().strip()}"
                ) from None
    shutil.rmtree(src)
    return count


def small_name(index: int) -> str:
    return f"small-{index:06d}"


def pack_small_bundles(
    publisher_dir: Path, targets: list[tuple[Path, range]], scratch: Path, created: int
) -> None:
    """Pack every index in each (folder, range) into that folder, in worker processes."""
    workers = max(1, min(os.cpu_count() or 1, 4))
    total = sum(len(r) for _, r in targets)
    say(f"packing {total} small bundles in {workers} worker processes (not timed)")
    start = time.perf_counter()
    done = 0
    next_report = 0.1
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = []
        for folder, indices in targets:
            folder.mkdir(parents=True, exist_ok=True)
            for first in range(indices.start, indices.stop, PACK_BATCH):
                count = min(PACK_BATCH, indices.stop - first)
                futures.append(
                    pool.submit(
                        pack_small_batch,
                        str(publisher_dir),
                        str(folder),
                        str(scratch),
                        first,
                        count,
                        created,
                    )
                )
        for future in as_completed(futures):
            try:
                done += future.result()
            except RuntimeError as exc:
                raise BenchError(str(exc)) from None
            if done >= next_report * total or done == total:
                say(f"  packed {done}/{total} ({time.perf_counter() - start:.1f} s)")
                next_report += 0.1


# The measurements


def expect_imported(count: int) -> Callable[[subprocess.CompletedProcess[str]], None]:
    def check(proc: subprocess.CompletedProcess[str]) -> None:
        lines = proc.stdout.splitlines()
        imported = sum(": imported: " in line for line in lines)
        if imported != count:
            raise BenchError(f"import reported {imported} imported bundles, expected {count}")

    return check


def expect_lines(count: int, exact: bool) -> Callable[[subprocess.CompletedProcess[str]], None]:
    """ls prints a line per bundle (--json: exactly one object per bundle)."""

    def check(proc: subprocess.CompletedProcess[str]) -> None:
        lines = len(proc.stdout.splitlines())
        if lines < count or (exact and lines != count):
            raise BenchError(f"ls printed {lines} lines for {count} stored bundles")

    return check


def rate_row(key: str, label: str, payload: int, times: list[float]) -> Row:
    best = min(times)
    return Row(key, label, payload / best / MB, "MB/s", best, times)


def run_benchmark(args: argparse.Namespace, runner: Runner, report: Report) -> None:
    work = runner.work
    size = args.size_mib * MIB
    small, listed = args.small, args.ls_bundles
    md = runner.md
    created = int(time.time())
    created_arg = str(created)

    say("[1/8] making a publisher (unencrypted keys) and the source data")
    pub = work / "publisher"
    pub_file = pub / "publisher.pub"
    runner.run(md("publisher", "new", pub, "--name", "meshdrop bench", "--unencrypted"))
    src = work / "big-src"
    src.mkdir()
    source = src / "random.bin"
    say(f"  writing {args.size_mib} MiB of os.urandom data in 16 MiB pieces to {source}")
    write_random_file(source, size)
    warm(source)

    say("[2/8] baselines on the same file")
    openssl = rate_row(
        "openssl_sha256",
        "openssl dgst -sha256 (baseline)",
        size,
        runner.best_of(
            "openssl dgst -sha256", [["openssl", "dgst", "-sha256", source]], payload=size
        ),
    )
    copy = work / "copy.bin"
    cp = rate_row(
        "cp_sync",
        "cp + sync (baseline)",
        size,
        runner.best_of(
            "cp + sync",
            [["cp", source, copy], ["sync"]],
            prepare=lambda: copy.unlink(missing_ok=True),
            payload=size,
        ),
    )
    copy.unlink()
    openssl.vs_openssl = 1.0
    cp.vs_openssl = cp.value / openssl.value
    cp.vs_cp_sync = 1.0
    report.rows += [openssl, cp]

    say(f"[3/8] meshdrop pack of one {args.size_mib} MiB file")
    bundle = work / "big.mdrop"
    pack_cmd = md("pack", src, "--publisher", pub, "--name", "big", "--created", created_arg)
    pack = rate_row(
        "pack",
        f"meshdrop pack {args.size_mib} MiB",
        size,
        runner.best_of(
            "meshdrop pack",
            [[*pack_cmd, "-o", bundle, "--quiet"]],
            prepare=lambda: bundle.unlink(missing_ok=True),
            payload=size,
        ),
    )
    pack.vs_openssl = pack.value / openssl.value
    pack.target = f">= {RATIO_TARGET} x openssl"
    pack.met = pack.vs_openssl >= RATIO_TARGET
    report.rows.append(pack)
    warm(bundle)

    say("[4/8] meshdrop import of that bundle into a fresh node (trust added untimed)")
    big_home = work / "node-big"

    def fresh_big_home() -> None:
        set_aside(big_home)
        runner.run(md("--home", big_home, "trust", "add", "--yes", pub_file))

    imp = rate_row(
        "import",
        f"meshdrop import {args.size_mib} MiB",
        size,
        runner.best_of(
            "meshdrop import",
            [md("--home", big_home, "import", bundle, "--quiet")],
            prepare=fresh_big_home,
            check=expect_imported(1),
            payload=size,
        ),
    )
    imp.vs_openssl = imp.value / openssl.value
    imp.vs_cp_sync = imp.value / cp.value
    imp.target = f">= {RATIO_TARGET} x openssl"
    imp.met = imp.vs_openssl >= RATIO_TARGET
    report.rows.append(imp)
    if not args.keep:
        set_aside(big_home)

    say("[5/8] meshdrop verify of that bundle")
    ver = rate_row(
        "verify",
        f"meshdrop verify {args.size_mib} MiB",
        size,
        runner.best_of(
            "meshdrop verify",
            [md("verify", bundle, "--trust", pub_file)],
            payload=size,
        ),
    )
    ver.vs_openssl = ver.value / openssl.value
    report.rows.append(ver)

    say("[6/8] small bundles")
    small_dir = work / "small"
    extra_dir = work / "small-extra"
    targets = [(small_dir, range(small))]
    if listed > small:
        targets.append((extra_dir, range(small, listed)))
    pack_small_bundles(pub, targets, work, created)
    small_home = work / "node-small"

    def fresh_small_home() -> None:
        set_aside(small_home)
        runner.run(md("--home", small_home, "trust", "add", "--yes", pub_file))

    say(f"  meshdrop import of a folder of {small} small bundles")
    times = runner.best_of(
        f"meshdrop import {small} small",
        [md("--home", small_home, "import", small_dir, "--quiet")],
        prepare=fresh_small_home,
        check=expect_imported(small),
    )
    best = min(times)
    report.rows.append(
        Row(
            "import_small",
            f"meshdrop import {small} x 8 KiB",
            small / best,
            "bundles/s",
            best,
            times,
        )
    )

    say("[7/8] filling a store for ls")
    if listed > small:
        say(f"  meshdrop import of {listed - small} more bundles into that node (not timed)")
        start = time.perf_counter()
        runner.run(md("--home", small_home, "import", extra_dir, "--quiet"))
        say(f"  done ({time.perf_counter() - start:.1f} s)")
    stored = max(small, listed)
    os.sync()

    say(f"[8/8] meshdrop ls with {stored} stored bundles")
    for key, extra in (("ls", []), ("ls_json", ["--json"])):
        label = " ".join(["meshdrop ls", *extra])
        times = runner.best_of(
            label,
            [md("--home", small_home, "ls", *extra)],
            check=expect_lines(stored, exact=bool(extra)),
        )
        best = min(times)
        report.rows.append(
            Row(
                key,
                f"{label} ({stored} bundles)",
                best,
                "s",
                best,
                times,
                target=f"< {LS_TARGET_SECONDS:g} s",
                met=best < LS_TARGET_SECONDS,
            )
        )
    times = runner.best_of("meshdrop --version", [md("--version")])
    best = min(times)
    report.rows.append(Row("startup", "meshdrop --version (start-up)", best, "s", best, times))

    report.notes += [
        f"Each figure is the best of {REPEATS} runs, timed around the whole command "
        "(Python start-up included).",
        "Page cache: not dropped (that cannot be done reliably); the source file and the "
        "bundle were read once before measuring, so every run reads warm data. "
        "Dirty pages are flushed (sync) before each timed run.",
        f"MB/s = 10^6 bytes/s of payload ({args.size_mib} MiB). Ratios are rate / baseline "
        "rate. openssl and verify only read; pack, import and cp + sync end durably written "
        "(fsync or sync).",
        "Small bundles were packed untimed (the meshdrop command's entry point called "
        "in-process, in worker processes); each timed import runs into a fresh node home "
        "with the publisher trusted beforehand. The ls store is the last small-import node "
        "topped up by an untimed import.",
        "Finished runs are emptied and set aside, not deleted, until the bench ends: ext4 "
        "without a journal skips inodes freed in the last 60-300 s, which would bill one "
        "run's clean-up to the next run's file creations (scripts/benchkit.py).",
    ]


def busy_note(report: Report) -> None:
    """Warn, in the report itself, when other processes competed for the CPUs."""
    try:
        cpus = int(report.machine["nproc"])
        load = float(report.machine["load_start"])
    except ValueError:
        return
    if load > cpus / 2:
        report.notes.append(
            f"Other processes were busy before the bench started (load {load:.2f} on {cpus} "
            "CPUs): figures are lower and noisier than on an idle machine. The baselines ran "
            "in the same conditions, so the ratios say more than the absolute figures."
        )


# Output


def _fmt_value(row: Row) -> str:
    if row.unit == "s":
        return f"{row.value:.3f} s"
    return f"{row.value:,.0f} {row.unit}" if row.value >= 100 else f"{row.value:.1f} {row.unit}"


def _fmt_ratio(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f} x"


def format_table(report: Report) -> str:
    m = report.machine
    s = report.settings
    lines = [
        f"meshdrop bench: {s['size_mib']} MiB bundle, {s['small']} small bundles, "
        f"ls over {s['ls_bundles_stored']} bundles",
        f"machine: nproc {m['nproc']}, Python {m['python']}, {m['openssl']}",
        f"         {m['meshdrop']} ({m['source']})",
        f"         Python's hashlib on {m['python_ssl']}",
        f"         {m['cpu']}, {m['kernel']}, workdir {m['workdir']} ({m['workdir_fs']})",
        f"         load average (1 min) {m['load_start']} at the start, {m['load_end']} at the end",
        "",
    ]
    header = ["measurement", "result", "best s", "vs openssl", "vs cp+sync", "target", "met?"]
    body = [
        [
            r.label,
            _fmt_value(r),
            f"{r.best_seconds:.3f}",
            _fmt_ratio(r.vs_openssl),
            _fmt_ratio(r.vs_cp_sync),
            r.target or "-",
            "-" if r.met is None else ("yes" if r.met else "NO"),
        ]
        for r in report.rows
    ]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    left = {0, 5, 6}

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    lines.append(line(header))
    lines.append(line(["-" * w for w in widths]))
    lines += [line(cells) for cells in body]
    lines.append("")
    lines += [
        textwrap.fill(note, 100, initial_indent="* ", subsequent_indent="  ")
        for note in report.notes
    ]
    return "\n".join(lines)


# Command line


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Measure the installed meshdrop command (pack, import, verify, ls)\n"
        "against openssl dgst -sha256 and cp + sync baselines run on the same bytes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--size-mib",
        type=positive,
        metavar="N",
        help="size of the big bundle (default 512)",
    )
    parser.add_argument(
        "--small",
        type=positive,
        metavar="N",
        help="small bundles to import (default 1000)",
    )
    parser.add_argument(
        "--ls-bundles",
        type=positive,
        metavar="N",
        help="bundles in the store that ls lists (default 10000)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a fast sanity run: 64 MiB, 200 small, 2000 ls"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        metavar="DIR",
        help="make the temporary folder inside this folder (default: the system temp, /tmp)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder and its big files"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object, no table")
    parser.add_argument(
        "--areas",
        default=",".join(AREAS),
        metavar="LIST",
        help=f"which benchmarks to run, comma-separated (default all: {','.join(AREAS)})",
    )
    args = parser.parse_args(argv)
    args.areas = [a.strip() for a in args.areas.split(",") if a.strip()]
    unknown = sorted(set(args.areas) - set(AREAS))
    if unknown:
        parser.error(f"unknown area(s) {', '.join(unknown)}; choose from {', '.join(AREAS)}")
    # --quick changes the defaults; a size given explicitly still wins.
    defaults = (64, 200, 2000) if args.quick else (512, 1000, 10000)
    for name, default in zip(("size_mib", "small", "ls_bundles"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
    return args


def find_meshdrop() -> str:
    found = shutil.which("meshdrop") or str(Path(sys.executable).with_name("meshdrop"))
    if not Path(found).exists():
        raise BenchError("the meshdrop command is not installed; run ./scripts/bench")
    return found


def check_space(work: Path, args: argparse.Namespace) -> None:
    size = args.size_mib * MIB
    # source + bundle + (cp copy or one node home) at once, small bundles and one store.
    need = 3 * size + max(args.small, args.ls_bundles) * 40 * 1024 + 64 * MIB
    free = shutil.disk_usage(work).free
    if free < need:
        raise BenchError(
            f"{work} has {free // MIB} MiB free; this run needs about {need // MIB} MiB "
            "(use a smaller --size-mib or another --workdir)"
        )
    try:
        meminfo = Path("/proc/meminfo").read_text()
        available = next(
            int(line.split()[1]) * 1024
            for line in meminfo.splitlines()
            if line.startswith("MemAvailable:")
        )
    except (OSError, StopIteration, ValueError):
        return
    if available < 3 * size:
        say(
            f"warning: only {available // MIB} MiB of memory is available; the page cache "
            "may not hold the data, so figures may include disk reads"
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        meshdrop = find_meshdrop()
        parent = args.workdir or Path(tempfile.gettempdir())
        parent.mkdir(parents=True, exist_ok=True)
        check_space(parent, args)
    except BenchError as exc:
        say(str(exc))
        return 1
    work = Path(tempfile.mkdtemp(prefix="meshdrop-bench-", dir=parent))
    say(f"working in {work}")
    report = Report(
        machine_facts(meshdrop, work),
        {
            "size_mib": args.size_mib,
            "small": args.small,
            "ls_bundles": args.ls_bundles,
            "ls_bundles_stored": max(args.small, args.ls_bundles),
            "repeats": REPEATS,
            "quick": args.quick,
        },
    )
    area_rows: dict[str, list[dict[str, object]]] = {}
    try:
        if "store" in args.areas:
            run_benchmark(args, Runner(meshdrop, work), report)
        for area in args.areas:
            if area != "store":
                say(f"== {area} benchmark")
                module = importlib.import_module(f"bench_{area}")
                area_rows[area] = module.run(work, args.quick)
        report.machine["load_end"] = load_average()
        busy_note(report)
    except BenchError as exc:
        say(f"failed: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
            say(f"removed {work}")
    if args.json:
        print(
            json.dumps(
                {
                    "machine": report.machine,
                    "settings": report.settings,
                    "results": [asdict(r) for r in report.rows],
                    "areas": area_rows,
                    "notes": report.notes,
                },
                indent=2,
            )
        )
    else:
        if report.rows:
            print(format_table(report))
        for area, rows in area_rows.items():
            print(f"\n{area}:\n{format_area_table(rows)}")
    return 0


def _fmt_area_ratio(ratio: object) -> str:
    """Three decimals always (".3g" printed 1.0 as "1")."""
    return "-" if not isinstance(ratio, (int, float)) else f"{ratio:.3f} x"


def format_area_table(rows: list[dict[str, object]]) -> str:
    """An area's rows as an aligned table: value, baseline, ratio and target."""

    def cell(value: object) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
        return str(value)

    header = ["measurement", "result", "baseline", "ratio", "target"]
    table = [header] + [
        [
            cell(r.get("name")),
            f"{cell(r.get('value'))} {cell(r.get('unit'))}",
            cell(r.get("baseline")),
            _fmt_area_ratio(r.get("ratio")),
            cell(r.get("target")),
        ]
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


if __name__ == "__main__":
    sys.exit(main())
