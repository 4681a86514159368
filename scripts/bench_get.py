"""`meshdrop get` of a whole bundle of many small files, against `cp -r` + `sync` of the
same files in the same run.

    run(workdir, quick) -> rows of {name, value, unit, baseline, ratio, target}

scripts/bench calls run(); `python scripts/bench_get.py [--quick] [--workdir DIR]` runs it
alone and prints the rows. The bundle holds 10,000 files of 1 KiB in 20 folders (2,000
with quick); each timed get writes a new folder from a node that holds it, durably (get
fsyncs every file and folder), so the baseline ends with a sync too. Figures are the best
of 3 runs, timed around the whole command (Python start-up included).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchkit import area_main, md, meshdrop, set_aside

FILE_BYTES = 1024
PER_FOLDER = 500
REPEATS = 3
TARGET = 0.1  # get's rate as a share of cp -r + sync's


def say(message: str) -> None:
    print(f"bench_get: {message}", file=sys.stderr, flush=True)


def timed(*commands: Sequence[str | Path]) -> float:
    """Seconds that ``commands`` took, one after another, after flushing what earlier
    steps wrote."""
    os.sync()
    start = time.perf_counter()
    for command in commands:
        subprocess.run(list(map(str, command)), check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def write_files(root: Path, count: int) -> None:
    for i in range(count):
        folder = root / f"part-{i // PER_FOLDER:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"page-{i:05d}.html").write_bytes(os.urandom(FILE_BYTES))


def run(workdir: Path, quick: bool) -> list[dict[str, object]]:
    count = 2_000 if quick else 10_000
    work = workdir / "bench-get"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    say(f"packing and importing a bundle of {count:,} files of {FILE_BYTES} bytes (not timed)")
    publisher, src, home = work / "publisher", work / "src", work / "node"
    md("publisher", "new", publisher, "--name", "Bench", "--unencrypted")
    write_files(src, count)
    md("pack", src, "--publisher", publisher, "--name", "many", "-o", work / "many.mdrop", "-q")
    md("--home", home, "trust", "add", "--yes", publisher / "publisher.pub")
    md("--home", home, "import", work / "many.mdrop", "-q")

    base_times, get_times = [], []
    for i in range(REPEATS):
        copy, out = work / f"copy-{i}", work / f"out-{i}"
        base_times.append(timed(["cp", "-r", src, copy], ["sync"]))
        get_times.append(timed([meshdrop(), "--home", home, "get", "many", "-o", out, "-q"]))
        say(f"  run {i + 1}: cp -r + sync {base_times[-1]:.2f} s, get {get_times[-1]:.2f} s")
        set_aside(copy)
        set_aside(out)
    base, took = min(base_times), min(get_times)
    set_aside(work)
    return [
        {
            "name": f"meshdrop get {count:,} small files (1 KiB)",
            "value": round(count / took),
            "unit": "files/s",
            "baseline": round(count / base),
            "ratio": round(base / took, 3),
            "target": f">= {TARGET} of cp -r + sync",
        }
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return area_main(run, __doc__, "2,000 files instead of 10,000", argv)


if __name__ == "__main__":
    sys.exit(main())
