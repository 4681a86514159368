"""Benchmark the sealed store (issue 19) against the plain store, in the same run.

1. `meshdrop import` of one 512 MiB bundle (128 MiB with --quick) into a fresh plain
   home and into a fresh sealed home; best of 3 each; ratio sealed / plain rate
   (target >= 0.7).
2. `meshdrop import` of a folder of 1,000 bundles of 8 KiB (200 with --quick), the same
   way (target >= 0.7).
3. `meshdrop ls` over 10,000 sealed bundles (2,000 with --quick), best of 3 (target < 1 s).
4. The reader's home page p99 on the sealed store while that store ingests the big bundle
   again and again (import, rm, import...: the same ingest path a sync takes); baseline
   the p99 idle (target < 100 ms).
5. `meshdrop panic` on the sealed store of step 3 topped up with a 2 GiB bundle (256 MiB
   with --quick): one run (it destroys the store), timed around the command (target < 1 s).

Sealed homes are made with `meshdrop seal` and unlocked with `meshdrop unlock` (the agent)
before the timed commands, untimed: a sealed store is used that way, and each timed
command then pays no key derivation. The passphrase's scrypt is measured on its own
(`unlock`, one run).

    python scripts/bench_sealed.py [--quick] [--workdir DIR]

`run(workdir, quick)` returns the rows (name, value, unit, baseline, ratio, target) for
scripts/bench (area "sealed").
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import pack_small_bundles
from bench_lan import MIB, row
from bench_reader import _latencies, ingesting, p99, pack, reader, write_random
from benchkit import area_main, meshdrop, set_aside

REPEATS = 3
PASSPHRASE = "bench sealed store passphrase"
IMPORT_TARGET = 0.7
LS_TARGET = 1.0
P99_TARGET_MS = 100.0
PANIC_TARGET = 1.0


def say(message: str) -> None:
    print(f"bench_sealed: {message}", file=sys.stderr, flush=True)


def run_md(*args: str | Path) -> float:
    """Run ``meshdrop ARGS`` with the store passphrase at hand; its time in seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHDROP_")}
    env["MESHDROP_STORE_PASSPHRASE"] = PASSPHRASE
    start = time.perf_counter()
    proc = subprocess.run(
        [meshdrop(), *map(str, args)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"meshdrop {' '.join(map(str, args))}: {proc.stderr.strip()}")
    return took


def fresh_home(home: Path, publisher: Path, sealed: bool) -> None:
    lock(home)
    set_aside(home)
    if sealed:
        run_md("--home", home, "seal")
        run_md("--home", home, "unlock")
    run_md("--home", home, "trust", "add", "--yes", publisher / "publisher.pub")


def lock(home: Path) -> None:
    if (home / "slots").exists():
        run_md("--home", home, "lock")


def best_import(
    home: Path, publisher: Path, source: Path, sealed: bool, ready: Callable[[], None]
) -> float:
    times = []
    for _ in range(REPEATS):
        fresh_home(home, publisher, sealed)
        ready()
        os.sync()
        times.append(run_md("--home", home, "import", source, "--quiet"))
    lock(home)
    set_aside(home)
    return min(times)


def run(workdir: Path, quick: bool) -> list[dict[str, object]]:
    big_mib = 128 if quick else 512
    small = 200 if quick else 1000
    listed = 2000 if quick else 10_000
    panic_mib = 256 if quick else 2048
    work = workdir / "bench-sealed"
    work.mkdir()
    rows: list[dict[str, object]] = []
    publisher = work / "publisher"
    run_md("publisher", "new", publisher, "--name", "Bench Sealed", "--unencrypted")
    now = int(time.time())

    say(f"packing a {big_mib} MiB bundle")
    write_random(work / "big-src" / "video.bin", big_mib * MIB)
    big = work / "big.mdrop"
    pack(publisher, work / "big-src", big, "big-video", "A big video", now - 600)
    set_aside(work / "big-src")

    def warm() -> None:
        big.read_bytes()

    rates = {}
    for sealed in (False, True):
        kind = "sealed" if sealed else "plain"
        say(f"import {big_mib} MiB into a {kind} store (best of {REPEATS})")
        took = best_import(work / f"big-{kind}", publisher, big, sealed, warm)
        rates[kind] = big_mib * MIB / 1e6 / took
    rows.append(
        row(
            f"import {big_mib} MiB sealed (MB/s; baseline plain)",
            rates["sealed"],
            "MB/s",
            rates["plain"],
            rates["sealed"] / rates["plain"],
            f">= {IMPORT_TARGET} x plain",
        )
    )

    small_dir, extra_dir = work / "small", work / "extra"
    pack_small_bundles(
        publisher, [(small_dir, range(small)), (extra_dir, range(small, listed))], work, now
    )
    per_second = {}
    for sealed in (False, True):
        kind = "sealed" if sealed else "plain"
        say(f"import {small} x 8 KiB into a {kind} store (best of {REPEATS})")
        took = best_import(work / f"small-{kind}", publisher, small_dir, sealed, lambda: None)
        per_second[kind] = small / took
    rows.append(
        row(
            f"import {small} x 8 KiB sealed (bundles/s; baseline plain)",
            per_second["sealed"],
            "bundles/s",
            per_second["plain"],
            per_second["sealed"] / per_second["plain"],
            f">= {IMPORT_TARGET} x plain",
        )
    )

    home = work / "listed"
    say(f"filling a sealed store with {listed} bundles (not timed)")
    fresh_home(home, publisher, sealed=True)
    run_md("--home", home, "import", small_dir, "--quiet")
    run_md("--home", home, "import", extra_dir, "--quiet")
    ls_times = [run_md("--home", home, "ls") for _ in range(REPEATS)]
    rows.append(
        row(
            f"ls over {listed} sealed bundles",
            min(ls_times),
            "s",
            None,
            None,
            f"< {LS_TARGET:g} s",
        )
    )

    say("reader home page p99 on the sealed store, idle and while it ingests")
    with reader(home) as base:
        idle = asyncio.run(_latencies(base + "/", 3.0 if quick else 8.0, 2000))
        with ingesting(home, big, "big-video"):
            busy = asyncio.run(_latencies(base + "/", 6.0 if quick else 16.0, 4000))
    rows.append(
        row(
            "reader home p99 during ingest, sealed (baseline idle)",
            p99(busy),
            "ms",
            p99(idle),
            p99(busy) / p99(idle),
            f"< {P99_TARGET_MS:.0f} ms",
        )
    )

    say("unlocking once with the passphrase (scrypt)")
    lock(home)
    unlock = run_md("--home", home, "unlock")
    rows.append(row("unlock (scrypt 2**18 and start-up)", unlock, "s", None, None, ">= 0.5 s"))

    say(f"topping the sealed store up with a {panic_mib} MiB bundle for panic")
    write_random(work / "panic-src" / "archive.bin", panic_mib * MIB)
    panic_bundle = work / "panic.mdrop"
    pack(publisher, work / "panic-src", panic_bundle, "archive", "An archive", now - 700)
    set_aside(work / "panic-src")
    run_md("--home", home, "import", panic_bundle, "--quiet")
    os.sync()
    took = run_md("--home", home, "panic")
    rows.append(
        row(
            f"panic ({listed} bundles + {panic_mib} MiB)",
            took,
            "s",
            None,
            None,
            f"< {PANIC_TARGET:g} s",
        )
    )
    return rows


if __name__ == "__main__":
    sys.exit(area_main(run, __doc__.split("\n\n")[0] if __doc__ else None, "smaller sizes: ~2 min"))
