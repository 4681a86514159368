"""Benchmark reports (issue 18): sealing on the node, opening at the publisher, and a drop
spreading across a LAN against a bundle of the same size.

1. sealing an 8 MiB report as the node does for a form (reader/writing.py): a 12 MP JPEG
   of about 8 MiB (made with Pillow) cleaned (imageclean.clean), sealed with a Korean
   text to the publisher's report key (HPKE, padded to its size class), stamped (the
   proof of work) and stored (DropStore.add, fsync); median and p90 over the runs
   (target < 0.5 s). The stamp alone is also measured on its own, many times: its time
   is geometric (2**17 tries on average), so its p90 is about 2.3 x its mean.
2. `meshdrop reports open` of 1,000 drops (100 with --quick) from a folder of .drop
   files, the publisher's key passphrase-protected (the one scrypt is in the time); the
   drops are sealed beforehand in a process pool (not timed). Best of 3 (target < 10 s).
3. 10 real `meshdrop node` processes on 127.0.0.1 in a network namespace of their own
   (real mDNS, as bench_lan's spread): the time from importing a drop of 1 MiB into the
   first node until the nine others hold it, against a bundle of the same size imported
   the same way in the same run (ratio drop / bundle; target <= 1.0).

    python scripts/bench_reports.py [--quick] [--workdir DIR]

`run(workdir, quick)` returns the rows (name, value, unit, baseline, ratio, target) for
scripts/bench (area "reports"). Run time: quick about a minute and a half; full about
five minutes (the 1,000 stamps take most of it).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench_lan import MIB, BenchNode, Maker, Netns, row, write_random
from benchkit import area_main, md, meshdrop, set_aside

from meshdrop.core.reportkeys import ReportKey
from meshdrop.core.reports import Attachment, Report, make_receipt

SEAL_RUNS, QUICK_SEAL_RUNS = 20, 5
STAMP_RUNS, QUICK_STAMP_RUNS = 200, 40
OPEN_DROPS, QUICK_OPEN_DROPS = 1000, 100
OPEN_REPEATS = 3
SPREAD_NODES = 10
SPREAD_RUNS, QUICK_SPREAD_RUNS = 3, 1
SPREAD_BYTES = 900 * 1024  # the attachment: its drop is of the 1 MiB size class
SEAL_TARGET = 0.5
OPEN_TARGET = 10.0
PASSPHRASE = "bench reports passphrase"
PHOTO_PIXELS = (4000, 3000)
FORM_FILES = 8 * MIB  # the reader's cap on a form's files
LIFETIME = 90 * 86_400
KOREAN = "여권을 빼앗겼습니다. 임금이 석 달째 밀렸어요. 기숙사 관리인이 돈을 요구합니다. " * 20
WAIT = 120.0


def say(message: str) -> None:
    print(f"bench_reports: {message}", file=sys.stderr, flush=True)


def with_passphrase(*args: str | Path) -> str:
    proc = subprocess.run(
        [meshdrop(), *map(str, args)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "MESHDROP_PASSPHRASE": PASSPHRASE},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"meshdrop {' '.join(map(str, args))}: {proc.stderr.strip()}")
    return proc.stdout


def inbox(work: Path) -> tuple[Path, ReportKey]:
    """A publisher with a passphrase-protected report key, and that key as a node that
    trusts the publisher and imported its report-keys bundle learns it."""
    from meshdrop.store.reportkeys import report_keys
    from meshdrop.store.store import Store

    publisher, home = work / "inbox-publisher", work / "inbox-node"
    with_passphrase("publisher", "new", publisher, "--name", "Bench Reports")
    md("--home", home, "trust", "add", "--yes", publisher / "publisher.pub")
    md("--home", home, "import", publisher / "report-keys.mdrop", "-q")
    with Store(home) as store:
        keys = report_keys(store, int(time.time()))
    [found] = keys.values()
    return publisher, found[0]


def photo() -> bytes:
    """A 12 MP JPEG of noise (which compresses as badly as a busy photo), at most 8 MiB."""
    from PIL import Image

    width, height = PHOTO_PIXELS
    image = Image.merge("RGB", [Image.effect_noise((width, height), s) for s in (40, 50, 60)])
    for quality in (90, 88, 85, 80, 75):
        out = io.BytesIO()
        image.save(out, "JPEG", quality=quality)
        if out.tell() <= FORM_FILES - len(KOREAN.encode()):
            return out.getvalue()
    raise RuntimeError("the bench photo does not fit the form's cap")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


# 1. Sealing on the node


def bench_seal(work: Path, key: ReportKey, runs: int, stamps: int) -> list[dict[str, object]]:
    from meshdrop.core.drops import STAMP_BITS, find_stamp, seal
    from meshdrop.reader import imageclean
    from meshdrop.store.drops import DropStore

    say(f"1. sealing an 8 MiB report, {runs} runs; the stamp alone, {stamps} runs")
    jpeg = photo()
    say(f"   the photo: {len(jpeg) / MIB:.2f} MiB, {PHOTO_PIXELS[0]}x{PHOTO_PIXELS[1]}")
    home = work / "seal-node"
    drops = DropStore(home)
    whole, cleaning, sealing, storing, sizes = [], [], [], [], set()
    for _ in range(runs):
        started = time.perf_counter()
        cleaned = imageclean.clean(jpeg)
        attachment = Attachment(
            imageclean.attachment_name(1, cleaned), cleaned.media_type, cleaned.data
        )
        report = Report(KOREAN, (attachment,), make_receipt(os.urandom(5)))
        was_cleaned = time.perf_counter()
        now = int(time.time())
        blob = seal(report, key, now + LIFETIME, now)
        was_sealed = time.perf_counter()
        if drops.add(blob, now) is None:
            raise RuntimeError("a sealed drop was not stored")
        done = time.perf_counter()
        whole.append(done - started)
        cleaning.append(was_cleaned - started)
        sealing.append(was_sealed - was_cleaned)
        storing.append(done - was_sealed)
        sizes.add(len(blob))
    stamp_times = []
    for _ in range(stamps):
        body = os.urandom(64)
        started = time.perf_counter()
        find_stamp(body, STAMP_BITS)
        stamp_times.append(time.perf_counter() - started)
    set_aside(home)
    stamp_mean = statistics.mean(stamp_times)
    missed = sum(1 for t in whole if t >= SEAL_TARGET)
    say(f"   drop sizes {sorted(sizes)}; {missed} of {runs} runs at or over {SEAL_TARGET} s")
    goal = f"< {SEAL_TARGET} s"
    return [
        row(
            "1. seal an 8 MiB report on the node: median",
            statistics.median(whole),
            "s",
            None,
            None,
            goal,
        ),
        row(
            "1. seal an 8 MiB report on the node: p90",
            percentile(whole, 0.9),
            "s",
            None,
            None,
            goal,
        ),
        row(f"1. runs at or over {SEAL_TARGET} s", missed, f"of {runs}", None, None, ""),
        row(
            "1a. of which cleaning the photo: median",
            statistics.median(cleaning),
            "s",
            None,
            None,
            "",
        ),
        row(
            "1b. of which sealing and stamping: median",
            statistics.median(sealing),
            "s",
            None,
            None,
            "",
        ),
        row(
            "1c. of which storing (fsync): median", statistics.median(storing), "s", None, None, ""
        ),
        row("1d. the stamp alone: mean", stamp_mean, "s", None, None, ""),
        row(
            "1d. the stamp alone: p90",
            percentile(stamp_times, 0.9),
            "s",
            stamp_mean,
            percentile(stamp_times, 0.9) / stamp_mean,
            "~2.3 x mean (geometric)",
        ),
    ]


# 2. Opening at the publisher


def seal_batch(key: ReportKey, out: str, first: int, count: int) -> int:
    """Seal drops first..first+count-1 into ``out`` (in a worker process)."""
    from meshdrop.core.drops import drop_id, seal

    now = int(time.time())
    for number in range(first, first + count):
        text = f"report {number}: " + KOREAN[: 40 + number % 400]
        blob = seal(Report(text, (), make_receipt(os.urandom(5))), key, now + LIFETIME, now)
        Path(out, drop_id(blob).hex() + ".drop").write_bytes(blob)
    return count


def bench_open(work: Path, publisher: Path, key: ReportKey, count: int) -> list[dict[str, object]]:
    say(f"2. reports open of {count} drops: sealing them in a process pool (not timed)")
    folder = work / "open-drops"
    folder.mkdir()
    workers = os.cpu_count() or 1
    step = -(-count // (workers * 4))
    with ProcessPoolExecutor(workers) as pool:
        jobs = [
            pool.submit(seal_batch, key, str(folder), first, min(step, count - first))
            for first in range(0, count, step)
        ]
        made = sum(job.result() for job in jobs)
    assert made == count
    times = []
    for attempt in range(OPEN_REPEATS):
        out = work / f"open-out-{attempt}"
        started = time.perf_counter()
        answer = with_passphrase(
            "reports", "open", "--publisher", publisher, "--from", folder, "--out", out, "--json"
        )
        times.append(time.perf_counter() - started)
        opened = json.loads(answer).get("opened")
        if opened != count:
            raise RuntimeError(f"reports open opened {opened} of {count} drops: {answer}")
        set_aside(out)
        say(f"   run {attempt + 1}: {times[-1]:.2f} s")
    set_aside(folder)
    best = min(times)
    return [
        row(
            f"2. reports open of {count} drops (best of {OPEN_REPEATS})",
            best,
            "s",
            None,
            None,
            f"< {OPEN_TARGET} s",
        ),
        row("2. reports open: per drop", 1000 * best / count, "ms", None, None, ""),
    ]


# 3. A drop across 10 LAN nodes, against a bundle of the same size


def spread_drop(key: ReportKey, out: Path) -> Path:
    from meshdrop.core.drops import seal

    now = int(time.time())
    attachment = Attachment("file-1.bin", "application/octet-stream", os.urandom(SPREAD_BYTES))
    report = Report("spread", (attachment,), make_receipt(os.urandom(5)))
    out.write_bytes(seal(report, key, now + LIFETIME, now))
    return out


def bench_spread(work: Path, key: ReportKey, runs: int) -> list[dict[str, object]]:
    from meshdrop.core.drops import drop_id

    say(f"3. a drop and a bundle of the same size to all of {SPREAD_NODES} nodes, {runs} runs")
    maker = Maker(work / "spread-maker")
    homes = [maker.home(work / f"spread-{i}") for i in range(SPREAD_NODES)]
    drop_times: list[float] = []
    bundle_times: list[float] = []
    with Netns() as ns:
        nodes: list[BenchNode] = []
        try:
            for home in homes:
                nodes.append(BenchNode(home, prefix=ns.prefix))
            for node in nodes:  # everyone knows everyone before the clock starts
                node.wait(
                    lambda e: e["event"] == "peer" and e["state"] == "alive", count=SPREAD_NODES - 1
                )
            for attempt in range(runs):
                drop = spread_drop(key, work / f"spread-{attempt}.drop")
                size = drop.stat().st_size
                src = work / f"spread-src-{attempt}"
                src.mkdir()
                write_random(src / "news.bin", size)
                name = f"spread-{attempt}"
                bundle = maker.pack(src, work / f"{name}.mdrop", name)

                def is_bundle(event: dict[str, Any], name: str = name) -> bool:
                    return bool(event["event"] == "bundle" and event["name"] == name)

                wanted = drop_id(drop.read_bytes()).hex()
                started = time.monotonic()
                md("--home", homes[0], "import", drop, "-q")
                drop_times.append(
                    wait_for_files([h / "drops" / wanted for h in homes[1:]]) - started
                )
                started = time.monotonic()
                md("--home", homes[0], "import", bundle, "-q")
                bundle_times.append(max(node.wait(is_bundle)[0] for node in nodes[1:]) - started)
                say(
                    f"   run {attempt + 1}: drop {drop_times[-1]:.2f} s, "
                    f"bundle {bundle_times[-1]:.2f} s ({size // 1024} KiB each)"
                )
        finally:
            for node in nodes:
                node.stop()
    for home in homes:
        set_aside(home)
    drop_took, bundle_took = statistics.median(drop_times), statistics.median(bundle_times)
    return [
        row(
            f"3. a 1 MiB drop to all of {SPREAD_NODES} nodes (baseline: a bundle as big)",
            drop_took,
            "s",
            bundle_took,
            drop_took / bundle_took,
            "<= 1.0 x bundle",
        ),
    ]


def wait_for_files(paths: list[Path]) -> float:
    """When the last of ``paths`` appeared (each drop file is renamed into place whole)."""
    seen: dict[Path, float] = {}
    deadline = time.monotonic() + WAIT
    while len(seen) < len(paths):
        for path in paths:
            if path not in seen and path.exists():
                seen[path] = time.monotonic()
        if time.monotonic() > deadline:
            raise RuntimeError(f"the drop reached {len(seen)} of {len(paths)} nodes")
        time.sleep(0.01)
    return max(seen.values())


def run(workdir: Path, quick: bool) -> list[dict[str, object]]:
    work = workdir / "bench-reports"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    say(f"load average at the start: {os.getloadavg()[0]:.2f}")
    publisher, key = inbox(work)
    rows = bench_seal(
        work, key, *(QUICK_SEAL_RUNS, QUICK_STAMP_RUNS) if quick else (SEAL_RUNS, STAMP_RUNS)
    )
    rows += bench_open(work, publisher, key, QUICK_OPEN_DROPS if quick else OPEN_DROPS)
    rows += bench_spread(work, key, QUICK_SPREAD_RUNS if quick else SPREAD_RUNS)
    say(f"load average at the end: {os.getloadavg()[0]:.2f}")
    set_aside(work)
    return rows


def main(argv: list[str] | None = None) -> int:
    return area_main(run, __doc__, "fewer runs and 100 drops to open: about a minute", argv)


if __name__ == "__main__":
    sys.exit(main())
