"""Benchmark the reader (`meshdrop read`) on loopback, with baselines from the same run.

- Requests per second for the home page and for a 1 MiB file, with 200 stored bundles,
  against `python -m http.server` serving the very same bytes from files.
- The home page's p99 latency while the node ingests a large bundle. The LAN node (sync)
  does not exist yet, so the ingest is a `meshdrop import` of a large bundle into the
  store the reader serves, repeated (import, rm, import, ...) for the whole measurement.
  Baseline: p99 with the node idle. Target: under 100 ms.

The load generator is a small aiohttp client on 127.0.0.1, bounded in request count and
time. It asks for no compression (as http.server offers none).

    python scripts/bench_reader.py [--quick] [--workdir DIR] [--json]

`run(workdir, quick)` returns the rows (name, value, unit, baseline, ratio, target) for a
harness such as scripts/bench.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

MIB = 1024 * 1024
BUNDLES = 200
CONCURRENCY = 8
P99_TARGET_MS = 100.0


def say(message: str) -> None:
    print(f"bench_reader: {message}", file=sys.stderr, flush=True)


def meshdrop_command() -> str:
    beside = Path(sys.executable).absolute().with_name("meshdrop")
    found = str(beside) if beside.exists() else shutil.which("meshdrop")
    if not found:
        raise SystemExit("bench_reader: the meshdrop command is not installed (./scripts/test)")
    return found


def md(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHDROP_")}
    return subprocess.run(
        [meshdrop_command(), *map(str, args)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def pack(publisher: Path, src: Path, out: Path, name: str, title: str, created: int) -> None:
    from meshdrop.publish.keystore import load_publisher
    from meshdrop.publish.pack import pack_folder

    folder = load_publisher(publisher)
    key, _signer = folder.load_signer(lambda _what: None, created, bundle_name=name)
    pack_folder(
        src,
        out,
        signing_key=key,
        state=folder.state,
        name=name,
        version=created,
        created=created,
        expires=None,
        title=title,
        description="Overtime pay, your passport, and a clinic day: 초과근무 수당과 여권 이야기. "
        * 2,
        language="ko" if name.endswith(("0", "2", "4", "6", "8")) else "en",
        priority=0,
    )


def write_random(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        left = size
        while left:
            step = min(left, 16 * MIB)
            handle.write(os.urandom(step))
            left -= step


def build_store(work: Path, big_mib: int) -> tuple[Path, Path, Path]:
    """A node with 200 bundles (one holds a 1 MiB file) and a big bundle to ingest."""
    publisher = work / "publisher"
    md("publisher", "new", publisher, "--name", "Bench News", "--unencrypted")
    home = work / "node"
    md("--home", home, "trust", "add", "--yes", publisher / "publisher.pub")
    out = work / "bundles"
    out.mkdir()
    now = int(time.time())
    for i in range(BUNDLES):
        src = work / "src" / str(i)
        src.mkdir(parents=True)
        (src / "index.html").write_text(f"<h1>Issue {i}</h1><p>overtime pay {i}</p>")
        if i == 0:
            write_random(src / "file.bin", MIB)
        pack(publisher, src, out / f"b{i:03}.mdrop", f"issue-{i:03}", f"Issue {i}", now - 500 + i)
    md("--home", home, "import", out, "--quiet")
    big_src = work / "big-src"
    write_random(big_src / "video.bin", big_mib * MIB)
    big = work / "big.mdrop"
    pack(publisher, big_src, big, "big-video", "A big video", now - 600)
    return home, big, work / "src" / "0" / "file.bin"


@contextmanager
def reader(home: Path) -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHDROP_")}
    proc = subprocess.Popen(
        [meshdrop_command(), "--home", str(home), "read", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    found = re.search(r"http://127\.0\.0\.1:\d+", proc.stdout.readline())
    try:
        if found is None:
            raise SystemExit("bench_reader: meshdrop read did not start")
        yield found.group(0)
    finally:
        proc.terminate()
        proc.wait(15)


@contextmanager
def http_server(folder: Path) -> Iterator[str]:
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).absolute()),
            "-u",
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "0",
        ],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    found = re.search(r"port (\d+)", proc.stdout.readline())
    try:
        if found is None:
            raise SystemExit("bench_reader: python -m http.server did not start")
        yield f"http://127.0.0.1:{found.group(1)}"
    finally:
        proc.terminate()
        proc.wait(15)


async def _load(url: str, seconds: float, limit: int, concurrency: int) -> tuple[int, int, float]:
    """(requests answered 200/206, bytes, seconds) for ``concurrency`` closed-loop workers."""
    done = 0
    received = 0
    deadline = time.perf_counter() + seconds
    headers = {"Accept-Encoding": "identity"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:

        async def worker() -> None:
            nonlocal done, received
            while time.perf_counter() < deadline and done < limit:
                async with session.get(url, headers=headers) as reply:
                    body = await reply.read()
                    if reply.status not in (200, 206):
                        raise SystemExit(f"bench_reader: {url} answered {reply.status}")
                done += 1
                received += len(body)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done, received, time.perf_counter() - start


def rate(url: str, seconds: float, limit: int) -> float:
    asyncio.run(_load(url, 0.5, 200, CONCURRENCY))  # warm up
    done, _bytes, took = asyncio.run(_load(url, seconds, limit, CONCURRENCY))
    return done / took


async def _latencies(url: str, seconds: float, limit: int) -> list[float]:
    found: list[float] = []
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession() as session:
        while time.perf_counter() < deadline and len(found) < limit:
            start = time.perf_counter()
            async with session.get(url, headers={"Accept-Encoding": "identity"}) as reply:
                await reply.read()
            found.append((time.perf_counter() - start) * 1000)
            await asyncio.sleep(0.005)  # a steady stream of readers, not a flood
    return found


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


@contextmanager
def ingesting(home: Path, big: Path, name: str) -> Iterator[list[float]]:
    """Import ``big`` into ``home`` again and again (rm in between) until the block ends;
    yields a list that receives each import's duration."""
    durations: list[float] = []
    stop = False

    def loop() -> None:
        while not stop:
            start = time.perf_counter()
            md("--home", home, "import", big, "--quiet")
            durations.append(time.perf_counter() - start)
            md("--home", home, "rm", name)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        time.sleep(0.3)
        yield durations
    finally:
        stop = True
        thread.join(600)


def row(
    name: str, value: float, unit: str, baseline: float | None, target: str | None
) -> dict[str, object]:
    ratio = None if not baseline else round(value / baseline, 3)
    return {
        "name": name,
        "value": round(value, 2),
        "unit": unit,
        "baseline": None if baseline is None else round(baseline, 2),
        "ratio": ratio,
        "target": target,
    }


def run(workdir: Path, quick: bool) -> list[dict[str, object]]:
    seconds = 3.0 if quick else 8.0
    limit = 20_000 if quick else 100_000
    big_mib = 128 if quick else 512
    work = Path(tempfile.mkdtemp(prefix="bench-reader-", dir=workdir))
    try:
        say(f"packing {BUNDLES} bundles and a {big_mib} MiB one in {work}")
        home, big, file_source = build_store(work, big_mib)
        rows = []
        with reader(home) as base:
            say(f"reader at {base}")
            page = asyncio.run(_fetch(base + "/"))
            file_url = base + _file_url(asyncio.run(_fetch(base + _first_bundle(base))))
            static = work / "static"
            static.mkdir()
            (static / "index.html").write_bytes(page)
            shutil.copy(file_source, static / "file.bin")
            with http_server(static) as plain:
                say("home page: requests per second")
                home_rps = rate(base + "/", seconds, limit)
                home_base = rate(plain + "/index.html", seconds, limit)
                say("1 MiB file: requests per second")
                file_rps = rate(file_url, seconds, limit // 10)
                file_base = rate(plain + "/file.bin", seconds, limit // 10)
            rows.append(row("reader_home_rps", home_rps, "req/s", home_base, None))
            rows.append(row("reader_file_1mib_rps", file_rps, "req/s", file_base, None))
            say("home page p99, idle")
            idle = asyncio.run(_latencies(base + "/", seconds, 2000))
            say(f"home page p99 while importing {big_mib} MiB again and again")
            with ingesting(home, big, "big-video") as imports:
                busy = asyncio.run(_latencies(base + "/", seconds * 2, 4000))
            rows.append(
                row(
                    "reader_home_p99_during_import",
                    p99(busy),
                    "ms",
                    p99(idle),
                    f"< {P99_TARGET_MS:.0f} ms",
                )
            )
            if imports:
                mb_s = big_mib * MIB / 1e6 / (sum(imports) / len(imports))
                say(f"{len(imports)} imports meanwhile, {mb_s:.0f} MB/s each")
            say(f"home page size {len(page)} bytes; {len(busy)} timed requests during import")
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def _fetch(url: str) -> bytes:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers={"Accept-Encoding": "identity"}) as reply,
    ):
        return await reply.read()


def _first_bundle(base: str) -> str:
    """The bundle with the 1 MiB file ("Issue 0", the oldest), found by following the
    home pages: reader URLs name nothing (opaque ids)."""
    for number in range(1, 20):
        page = asyncio.run(_fetch(f"{base}/?page={number}"))
        found = re.search(rb'href="(/b/[a-z2-7]{16}/)"[^>]*>(?:<[^>]+>|\s)*Issue 0<', page)
        if found is not None:
            return found.group(1).decode()
    raise SystemExit("bench_reader: the first bundle is not on the home pages")


def _file_url(bundle_page: bytes) -> str:
    found = re.search(
        rb'href="(/b/[a-z2-7]{16}/f/[a-z2-7]{16})\?download"[^>]*>(?:<[^>]+>|\s)*file\.bin<',
        bundle_page,
    )
    if found is None:
        raise SystemExit("bench_reader: the 1 MiB file is not listed")
    return found.group(1).decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs, 128 MiB ingest")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--json", action="store_true", help="rows as JSON")
    args = parser.parse_args()
    rows = run(args.workdir, args.quick)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'name':<32} {'value':>10} {'unit':<6} {'baseline':>10} {'ratio':>7}  target")
    for r in rows:
        print(
            f"{r['name']!s:<32} {r['value']!s:>10} {r['unit']!s:<6} {r['baseline']!s:>10} "
            f"{r['ratio']!s:>7}  {r['target'] or ''}"
        )


if __name__ == "__main__":
    main()
