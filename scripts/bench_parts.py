"""Courier part sizes: export and import of one big bundle split at each candidate part
size, into a plain folder and onto a FAT32 image, to choose the default part size.

    run(workdir, quick) -> rows of {name, value, unit, baseline, ratio, target}

A smaller part loses less when a stick is pulled mid-export (at most the part being
written); this measures what it costs in speed. The FAT32 figures are export + mcopy onto
a fresh image, and mcopy back + import (the kernel here has no FAT driver, so nothing is
mounted; mtools writes the image as a stick's driver would). The baseline of each row is
the same run at the old part size, 4 GiB - 1 (one file for this bundle): a ratio over 1
is faster than that. `python scripts/bench_parts.py [--quick] [--workdir DIR]` runs it
alone; `./scripts/bench --areas parts` runs it in the bench.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench_courier import write_random
from benchkit import area_main, md, meshdrop, set_aside

MIB = 1024 * 1024
MB = 1_000_000
OLD_PART_SIZE = 4 * 1024 * MIB - 1
PART_SIZES = (128 * MIB, 256 * MIB, 512 * MIB, OLD_PART_SIZE)


def say(message: str) -> None:
    print(f"bench_parts: {message}", file=sys.stderr, flush=True)


def timed(*argv: str | Path) -> float:
    start = time.perf_counter()
    subprocess.run(list(map(str, argv)), check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def label(part_size: int) -> str:
    return "4 GiB - 1" if part_size == OLD_PART_SIZE else f"{part_size // MIB} MiB"


def fresh_node(work: Path, name: str, publisher: Path) -> Path:
    home = work / name
    try:
        md("--home", home, "trust", "add", "--yes", publisher / "publisher.pub")
    except RuntimeError:  # a version that asks first: the bench trusts its own publisher
        md("--home", home, "trust", "add", "--yes", publisher / "publisher.pub", "--yes")
    return home


def measure(work: Path, source: Path, publisher: Path, part_size: int) -> dict[str, float]:
    """Seconds for each step at ``part_size``: export and import through a plain folder,
    and through a FAT32 image."""
    tag = part_size // MIB
    stick = work / f"stick-{tag}"
    stick.mkdir()
    export = (meshdrop(), "--home", source, "export", stick, "-q", "--part-size", str(part_size))
    took = {"export": timed(*export)}
    payload = sum(p.stat().st_size for p in (stick / "meshdrop").iterdir())
    node = fresh_node(work, f"node-{tag}", publisher)
    took["import"] = timed(meshdrop(), "--home", node, "import", stick, "-q")
    image = work / f"fat-{tag}.img"
    image_kib = str((payload + 256 * MIB) // 1024)
    mkfs = ["mkfs.vfat", "-F", "32", "-C", str(image), image_kib]
    subprocess.run(mkfs, check=True, capture_output=True)
    took["fat_in"] = timed("mcopy", "-s", "-i", image, stick / "meshdrop", "::/")
    back = work / f"back-{tag}"
    back.mkdir()
    took["fat_out"] = timed("mcopy", "-s", "-n", "-i", image, "::/meshdrop", back)
    fat_node = fresh_node(work, f"fat-node-{tag}", publisher)
    took["fat_import"] = timed(meshdrop(), "--home", fat_node, "import", back, "-q")
    took["payload"] = float(payload)
    for used in (stick, node, image, back, fat_node):
        set_aside(used)
    return took


def run(workdir: Path, quick: bool) -> list[dict[str, object]]:
    for tool in ("mkfs.vfat", "mcopy"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found: apt-get install dosfstools mtools")
    size = (512 if quick else 2048) * MIB
    work = workdir / "bench-parts"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    publisher = work / "publisher"
    md("publisher", "new", publisher, "--name", "Bench", "--unencrypted")
    say(f"making a {size // MIB} MiB bundle (not timed)")
    src = work / "src"
    src.mkdir()
    write_random(src / "big.bin", size)
    bundle = work / "big.mdrop"
    md("pack", src, "--publisher", publisher, "--name", "big", "-o", bundle, "-q")
    set_aside(src)
    source = fresh_node(work, "source", publisher)
    md("--home", source, "import", bundle, "-q")
    set_aside(bundle)
    times = {}
    for part_size in PART_SIZES:
        say(f"part size {label(part_size)}")
        times[part_size] = measure(work, source, publisher, part_size)
    old = times[OLD_PART_SIZE]
    rows = []
    steps = (
        ("export to a folder", ("export",)),
        ("import from a folder", ("import",)),
        ("export onto FAT32 (export + mcopy in)", ("export", "fat_in")),
        ("import from FAT32 (mcopy out + import)", ("fat_out", "fat_import")),
    )
    for part_size, took in times.items():
        for what, keys in steps:
            seconds = sum(took[k] for k in keys)
            base = sum(old[k] for k in keys)
            rows.append(
                {
                    "name": f"{what}, {size // MIB} MiB in parts of {label(part_size)}",
                    "value": round(took["payload"] / seconds / MB, 1),
                    "unit": "MB/s",
                    "baseline": round(old["payload"] / base / MB, 1),
                    "ratio": round(base / seconds, 3),
                    "target": "about 1 (as fast as one file)",
                }
            )
    set_aside(work)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    return area_main(run, __doc__, "a 512 MiB bundle instead of 2 GiB", argv)


if __name__ == "__main__":
    sys.exit(main())
