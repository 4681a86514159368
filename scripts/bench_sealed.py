"""Benchmark the sealed store (issue 19) against the plain store, in the same run.

1. `meshdrop import` of one 512 MiB bundle (128 MiB with --quick) into a fresh plain
   home and into a fresh sealed home; best of 3 each; ratio sealed / plain rate
   (target >= 0.7).
2. `meshdrop import` of a folder of 1,000 bundles of 8 KiB (200 with --quick), the same
   way (target >= 0.7).
3. `meshdrop ls` over 10,000 sealed bundles (2,000 with --quick), best of 3 (target < 1 s).
4. The reader's home page p99 on a sealed node (its 10,000 bundles) while it syncs four
   bundles of 128 MiB (32 MiB with --quick) from a plain node on 127.0.0.1 (`meshdrop
   node --no-discovery --peer`), the page asked every 5 ms of the sync; SYNC_ROUNDS
   syncs, each into a fresh copy of the sealed home, their timings pooled (one sync gives
   about a hundred: too few for a 99th percentile); baseline the p99 of the same node
   idle (target < 100 ms).
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
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import pack_small_bundles
from bench_lan import MIB, BenchNode, row
from bench_reader import _latencies, p99, pack, write_random
from benchkit import area_main, meshdrop, set_aside

REPEATS = 3
PASSPHRASE = "bench sealed store passphrase"
IMPORT_TARGET = 0.7
LS_TARGET = 1.0
P99_TARGET_MS = 100.0
SYNC_ROUNDS = 3
PANIC_TARGET = 1.0


def say(message: str) -> None:
    print(f"bench_sealed: {message}", file=sys.stderr, flush=True)


def keep(rows: list[dict[str, object]], found: dict[str, object]) -> None:
    """Add a row, and show it at once: a later step that fails does not lose it."""
    rows.append(found)
    say(f"  {json.dumps(found)}")


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
    keep(
        rows,
        row(
            f"import {big_mib} MiB sealed (MB/s; baseline plain)",
            rates["sealed"],
            "MB/s",
            rates["plain"],
            rates["sealed"] / rates["plain"],
            f">= {IMPORT_TARGET} x plain",
        ),
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
    keep(
        rows,
        row(
            f"import {small} x 8 KiB sealed (bundles/s; baseline plain)",
            per_second["sealed"],
            "bundles/s",
            per_second["plain"],
            per_second["sealed"] / per_second["plain"],
            f">= {IMPORT_TARGET} x plain",
        ),
    )

    home = work / "listed"
    say(f"filling a sealed store with {listed} bundles (not timed)")
    fresh_home(home, publisher, sealed=True)
    run_md("--home", home, "import", small_dir, "--quiet")
    run_md("--home", home, "import", extra_dir, "--quiet")
    ls_times = [run_md("--home", home, "ls") for _ in range(REPEATS)]
    keep(
        rows,
        row(
            f"ls over {listed} sealed bundles",
            min(ls_times),
            "s",
            None,
            None,
            f"< {LS_TARGET:g} s",
        ),
    )

    keep(rows, sync_p99(work, publisher, home, quick, now))

    say("unlocking once with the passphrase (scrypt)")
    lock(home)
    unlock = run_md("--home", home, "unlock")
    keep(rows, row("unlock (scrypt 2**18 and start-up)", unlock, "s", None, None, ">= 0.5 s"))

    say(f"topping the sealed store up with a {panic_mib} MiB bundle for panic")
    write_random(work / "panic-src" / "archive.bin", panic_mib * MIB)
    panic_bundle = work / "panic.mdrop"
    pack(publisher, work / "panic-src", panic_bundle, "archive", "An archive", now - 700)
    set_aside(work / "panic-src")
    run_md("--home", home, "import", panic_bundle, "--quiet")
    os.sync()
    took = run_md("--home", home, "panic", "--yes")
    keep(
        rows,
        row(
            f"panic ({listed} bundles + {panic_mib} MiB)",
            took,
            "s",
            None,
            None,
            f"< {PANIC_TARGET:g} s",
        ),
    )
    return rows


def is_sync(event: dict[str, object]) -> bool:
    return event["event"] == "sync"


def sync_p99(work: Path, publisher: Path, home: Path, quick: bool, now: int) -> dict[str, object]:
    """The sealed node ``home``'s home page p99, idle and while it syncs new bundles."""
    size = (32 if quick else 128) * MIB
    source = work / "sync-source"
    run_md("--home", source, "trust", "add", "--yes", publisher / "publisher.pub")
    names = []
    for number in range(4):
        name = f"sync-{number}"
        write_random(work / f"{name}-src" / "video.bin", size)
        bundle = work / f"{name}.mdrop"
        pack(publisher, work / f"{name}-src", bundle, name, f"Video {number}", now - 800)
        set_aside(work / f"{name}-src")
        run_md("--home", source, "import", bundle, "--quiet")
        names.append(name)
    say("reader home page p99 on the sealed node, idle, then while it syncs 4 bundles")
    sink = BenchNode(home, "--no-discovery")
    try:
        base = f"http://127.0.0.1:{sink.port}/"
        idle = asyncio.run(_latencies(base, 3.0 if quick else 8.0, 2000))
    finally:
        sink.stop()
    busy: list[float] = []
    giver = BenchNode(source, "--no-discovery")
    try:
        for round_number in range(SYNC_ROUNDS):
            copy = work / f"sync-sink-{round_number}"
            subprocess.run(["cp", "-a", str(home), str(copy)], check=True)
            run_md("--home", copy, "unlock")
            sink = BenchNode(copy, "--no-discovery", "--peer", giver.address)
            try:
                base = f"http://127.0.0.1:{sink.port}/"
                timed = len(busy)
                start = time.perf_counter()
                while sum(e.get("bundles", 0) for _, e in sink.matching(is_sync)) < len(names):
                    busy += asyncio.run(_latencies(base, 0.5, 200))
                    if time.perf_counter() - start > 300:
                        raise RuntimeError("the sealed node did not sync the 4 bundles in 300 s")
                took = time.perf_counter() - start
            finally:
                sink.stop()
                lock(copy)
            set_aside(copy)
            say(
                f"sync {round_number + 1}/{SYNC_ROUNDS}: 4 x {size // MIB} MiB in {took:.1f} s; "
                f"{len(busy) - timed} timed requests meanwhile"
            )
    finally:
        giver.stop()
    return row(
        f"reader home p99 during a sync of 4 x {size // MIB} MiB, sealed (baseline idle)",
        p99(busy),
        "ms",
        p99(idle),
        p99(busy) / p99(idle),
        f"< {P99_TARGET_MS:.0f} ms",
    )


if __name__ == "__main__":
    sys.exit(area_main(run, __doc__.split("\n\n")[0] if __doc__ else None, "smaller sizes: ~2 min"))
