"""Courier benchmark: import and export of a courier folder against plain copies measured
in the same run, the same for a blind folder (issue 20) against open ones run alternately
with it, and the peak memory of importing a big bundle from an open and a blind folder.

    run(workdir, quick) -> rows of {name, value, unit, baseline, ratio, target}

scripts/bench calls run(); `python scripts/bench_courier.py [--quick] [--workdir DIR]`
runs it alone and prints the rows. Sizes: a large bundle plus many small ones (1 GiB and
500, or 128 MiB and 100 with quick), and for memory a bundle just over 4 GiB (the big
bundle of the folder with quick), which export splits into parts that fit FAT32.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchkit import area_main, md, meshdrop, set_aside

MIB = 1024 * 1024
MB = 1_000_000
PIECE = 16 * MIB
SMALL_BYTES = 8 * 1024
REPEATS = 3
IMPORT_TARGET = 0.7  # import rate as a share of cp -r + openssl dgst -sha256
EXPORT_TARGET = 0.7  # export rate as a share of cp -r + sync
MEMORY_TARGET_MB = 200
BLIND_TARGET = 0.8  # blind import and export as a share of the open ones (issue 20)


def say(message: str) -> None:
    print(f"bench_courier: {message}", file=sys.stderr, flush=True)


def timed(argv: Sequence[str | Path], shell: bool = False) -> float:
    start = time.perf_counter()
    if shell:
        subprocess.run(str(argv[0]), shell=True, check=True, stdout=subprocess.DEVNULL)
    else:
        subprocess.run(list(map(str, argv)), check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def write_random(path: Path, size: int) -> None:
    with path.open("wb") as handle:
        left = size
        while left:
            piece = os.urandom(min(PIECE, left))
            handle.write(piece)
            left -= len(piece)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def pack_small(publisher: Path, out: Path, scratch: Path, count: int) -> None:
    """Small bundles packed in-process through meshdrop's own CLI (no start-up each)."""
    from meshdrop.cli.main import cli

    src = scratch / "small-src"
    src.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (src / "item.bin").write_bytes(os.urandom(SMALL_BYTES))
        args = ["pack", str(src), "--publisher", str(publisher), "--name", f"small-{i:05d}"]
        args += ["-o", str(out / f"small-{i:05d}.mdrop"), "--quiet", "--priority", str(i % 7)]
        with contextlib.redirect_stdout(io.StringIO()):
            cli.main(args, prog_name="meshdrop", standalone_mode=False)


def fresh_node(work: Path, name: str, publisher: Path) -> Path:
    home = work / name
    set_aside(home)
    md("--home", home, "trust", "add", "--yes", publisher / "publisher.pub")
    return home


def peak_rss_mb(argv: Sequence[str | Path]) -> float:
    proc = subprocess.run(
        [sys.executable, "-S", str(Path(__file__).with_name("peak_memory.py")), *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        check=True,
    )
    code, kib = proc.stdout.split()[-2:]
    if code != "0":
        raise RuntimeError(f"{argv} failed with status {code}")
    return int(kib) * 1024 / MB  # ru_maxrss is in KiB on Linux


def row(
    name: str, value: float, unit: str, baseline: float | None, ratio: float | None, target: str
) -> dict[str, object]:
    return {
        "name": name,
        "value": round(value, 2),
        "unit": unit,
        "baseline": None if baseline is None else round(baseline, 2),
        "ratio": None if ratio is None else round(ratio, 3),
        "target": target,
    }


def run(workdir: Path, quick: bool) -> list[dict[str, object]]:
    big_size = (128 if quick else 1024) * MIB
    small_count = 100 if quick else 500
    work = workdir / "bench-courier"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    publisher = work / "publisher"
    md("publisher", "new", publisher, "--name", "Bench", "--unencrypted")
    bundles = work / "bundles"
    bundles.mkdir()
    say(f"making a {big_size // MIB} MiB bundle and {small_count} small ones (not timed)")
    big_src = work / "big-src"
    big_src.mkdir()
    write_random(big_src / "big.bin", big_size)
    md(
        "pack",
        big_src,
        "--publisher",
        publisher,
        "--name",
        "big",
        "-o",
        bundles / "big.mdrop",
        "-q",
    )
    pack_small(publisher, bundles, work, small_count)
    source = fresh_node(work, "source", publisher)
    md("--home", source, "import", bundles, "-q")
    set_aside(big_src)
    set_aside(bundles)
    courier_root = work / "stick"
    courier_root.mkdir()
    md("--home", source, "export", courier_root, "-q")
    courier = courier_root / "meshdrop"
    payload = folder_bytes(courier)
    files = sorted(str(p) for p in courier.iterdir())
    rows = []

    say("import vs cp -r + openssl dgst -sha256")
    base_times, import_times = [], []
    for i in range(REPEATS):
        copy = work / f"copy-{i}"
        base_times.append(
            timed([f"cp -r {courier} {copy} && openssl dgst -sha256 {' '.join(files)}"], shell=True)
        )
        set_aside(copy)
        node = fresh_node(work, "dest", publisher)
        import_times.append(timed([meshdrop(), "--home", node, "import", courier_root, "-q"]))
    base, took = min(base_times), min(import_times)
    rows.append(
        row(
            f"courier import ({payload // MIB} MiB, {small_count + 1} bundles)",
            payload / took / MB,
            "MB/s",
            payload / base / MB,
            base / took,
            f">= {IMPORT_TARGET} of cp -r + openssl dgst",
        )
    )

    say("export vs cp -r + sync")
    base_times, export_times = [], []
    for i in range(REPEATS):
        copy = work / f"copy-{i}"
        base_times.append(timed([f"cp -r {courier} {copy} && sync"], shell=True))
        set_aside(copy)
        dest = work / f"export-{i}"
        dest.mkdir()
        export_times.append(timed([meshdrop(), "--home", source, "export", dest, "-q"]))
        set_aside(dest)
    base, took = min(base_times), min(export_times)
    rows.append(
        row(
            f"courier export ({payload // MIB} MiB, {small_count + 1} bundles)",
            payload / took / MB,
            "MB/s",
            payload / base / MB,
            base / took,
            f">= {EXPORT_TARGET} of cp -r + sync",
        )
    )

    invite = json.loads(md_out("--home", source, "circle", "new", "bench", "--json"))["invite"]
    rows += blind_rows(work, source, publisher, invite, courier_root, payload, small_count)

    if quick:
        big_stick = work / "big-stick"
        big_stick.mkdir()
        md("--home", source, "export", big_stick, "--name", "big", "--open", "-q")
        label = f"peak memory importing a {big_size // MIB} MiB bundle"
    else:
        say("making a bundle just over 4 GiB (not timed)")
        set_aside(work / "dest")
        huge_src = work / "huge-src"
        huge_src.mkdir()
        write_random(huge_src / "huge.bin", 4 * 1024 * MIB + 16 * MIB)
        huge = work / "huge-out"  # pack splits a bundle of 4 GiB or more into parts
        huge.mkdir()
        out = huge / "huge.mdrop"
        md("pack", huge_src, "--publisher", publisher, "--name", "huge", "-o", out, "-q")
        set_aside(huge_src)
        md("--home", source, "import", huge, "-q")
        set_aside(huge)
        big_stick = work / "big-stick"
        big_stick.mkdir()
        md("--home", source, "export", big_stick, "--name", "huge", "--open", "-q")
        parts = sorted(p.name for p in (big_stick / "meshdrop").iterdir())
        say(f"the 4 GiB bundle went onto the stick as {', '.join(parts)}")
        label = "peak memory importing a 4.02 GiB bundle (in 512 MiB parts)"
    node = fresh_node(work, "memory", publisher)
    peak = peak_rss_mb([meshdrop(), "--home", node, "import", big_stick, "-q"])
    rows.append(row(label, peak, "MB", None, None, f"< {MEMORY_TARGET_MB} MB"))
    set_aside(big_stick)
    set_aside(node)
    big_stick = work / "blind-big-stick"
    big_stick.mkdir()
    md("--home", source, "export", big_stick, "--name", "big" if quick else "huge", "-q")
    node = member_node(work, "memory", publisher, invite)
    peak = peak_rss_mb([meshdrop(), "--home", node, "import", big_stick, "-q"])
    rows.append(row("blind " + label, peak, "MB", None, None, f"< {MEMORY_TARGET_MB} MB"))
    set_aside(work)
    return rows


def md_out(*args: str | Path) -> str:
    return subprocess.run(
        [meshdrop(), *map(str, args)], capture_output=True, text=True, check=True
    ).stdout


def member_node(work: Path, name: str, publisher: Path, invite: str) -> Path:
    """A fresh node that trusts the publisher and joined the circle of ``invite``."""
    home = fresh_node(work, name, publisher)
    md("--home", home, "circle", "join", invite, "--name", "bench")
    return home


def blind_rows(
    work: Path,
    source: Path,
    publisher: Path,
    invite: str,
    open_root: Path,
    payload: int,
    small_count: int,
) -> list[dict[str, object]]:
    """Blind export and import of the same bundles (the source is in a circle now, so it
    writes blind by default) against open ones run alternately with them, so that both
    meet the same load on a shared machine."""
    what = f"({payload // MIB} MiB, {small_count + 1} bundles)"
    blind_root = work / "blind-stick"
    blind_root.mkdir()
    md("--home", source, "export", blind_root, "-q")
    say(f"blind import vs open import ({folder_bytes(blind_root) // MIB} MiB on the stick)")
    times: dict[str, list[float]] = {
        "open import": [],
        "import": [],
        "open export": [],
        "export": [],
    }
    for _ in range(REPEATS):
        node = fresh_node(work, "dest", publisher)
        times["open import"].append(timed([meshdrop(), "--home", node, "import", open_root, "-q"]))
        node = member_node(work, "dest", publisher, invite)
        times["import"].append(timed([meshdrop(), "--home", node, "import", blind_root, "-q"]))
    say("blind export vs open export")
    for i in range(REPEATS):
        for kind, extra in (("open export", ["--open"]), ("export", [])):
            dest = work / f"{kind.replace(' ', '-')}-{i}"
            dest.mkdir()
            argv: list[str | Path] = [meshdrop(), "--home", source, "export", dest, "-q", *extra]
            times[kind].append(timed(argv))
            set_aside(dest)
    set_aside(blind_root)
    rows = []
    for verb in ("import", "export"):
        took, base = min(times[verb]), min(times[f"open {verb}"])
        rows.append(
            row(
                f"blind courier {verb} {what}",
                payload / took / MB,
                "MB/s",
                payload / base / MB,
                base / took,
                f">= {BLIND_TARGET} of the open {verb}, run alternately",
            )
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    return area_main(run, __doc__, "128 MiB and 100 bundles", argv)


if __name__ == "__main__":
    sys.exit(main())
