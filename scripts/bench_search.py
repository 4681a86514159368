"""Benchmark the reader's search (`meshdrop read`) on loopback.

- 1,000 bundles of 200,000 characters of article text each (10 HTML articles of mixed
  Korean and English paragraphs, generated), imported with one `meshdrop import`.
- The index, built by the reader's own indexing process from its start: how long it
  takes, MB of text per second, and its size per MB of text.
- Then 20 clients sending 20 searches a second IN ALL, open loop (each request starts on
  its schedule whatever the replies), a mix of two-syllable Korean words and English
  words, while 4 others load the home page: search and home p50/p99 (targets < 100 ms).

    python scripts/bench_search.py [--quick] [--workdir DIR]

`run(workdir, quick)` returns the rows (name, value, unit, baseline, ratio, target) for
scripts/bench (area "search").
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import random
import re
import sqlite3
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import aiohttp
from bench_reader import reader
from benchkit import area_main, md

BUNDLES, QUICK_BUNDLES = 1000, 100
FILES = 10  # articles per bundle
CHARS = 200_000  # characters of article text per bundle
SEARCHES_PER_SECOND = 20
CLIENTS = 20
HOME_CLIENTS = 4
TARGET_MS = 100.0
KOREAN_WORDS = (
    "여권 임금 수당 노동 계약 회사 병원 휴일 근무 시간 월급 통장 서류 보관 신고 상담 "
    "동료 가족 기숙사 식당 공장 농장 고용 허가 체류 비자 보험 퇴직 사고 치료"
)
KOREAN = KOREAN_WORDS.split()
ENGLISH_WORDS = (
    "passport wages overtime payslip contract clinic holiday employer worker union "
    "dormitory visa insurance accident doctor embassy permit safety shift factory"
)
ENGLISH = ENGLISH_WORDS.split()
PARTICLES = ("을", "를", "이", "가", "은", "는", "에서", "으로", "도", "")
QUERIES = [*KOREAN[:12], *ENGLISH[:12]]


def say(message: str) -> None:
    print(f"bench_search: {message}", file=sys.stderr, flush=True)


def paragraphs(seed: int, count: int) -> list[str]:
    """Sentences of Korean words with particles, or of English words (half each)."""
    rng = random.Random(seed)
    found = []
    for i in range(count):
        if i % 2:
            words = [rng.choice(KOREAN) + rng.choice(PARTICLES) for _ in range(60)]
        else:
            words = [rng.choice(ENGLISH) for _ in range(60)]
        found.append(" ".join(words) + ".")
    return found


def pack_batch(publisher: str, out: str, scratch: str, first: int, count: int, now: int) -> int:
    """Write and pack bundles first..first+count-1 (in a worker process)."""
    from meshdrop.publish.keystore import load_publisher
    from meshdrop.publish.pack import pack_folder

    folder = load_publisher(Path(publisher))
    pool = paragraphs(first, 400)
    rng = random.Random(first)
    src = Path(scratch) / f"src-{first}"
    for index in range(first, first + count):
        src.mkdir(parents=True, exist_ok=True)
        for article in range(FILES):
            text: list[str] = []
            size = 0
            while size < CHARS // FILES:
                text.append(rng.choice(pool))
                size += len(text[-1])
            body = "</p>\n<p>".join(text)
            page = f"<title>Article {index}-{article}</title><h1>기사 {index}</h1><p>{body}</p>"
            (src / f"a{article}.html").write_text(page, encoding="utf-8")
        name = f"news-{index:05d}"
        key, _signer = folder.load_signer(lambda _what: None, now, bundle_name=name)
        pack_folder(
            src,
            Path(out) / f"{name}.mdrop",
            signing_key=key,
            state=folder.state,
            name=name,
            version=now,
            created=now,
            expires=None,
            title=f"News {index}",
            description="Generated articles",
            language="ko",
            priority=0,
        )
    return count


def build(work: Path, bundles: int) -> tuple[Path, int]:
    """A node holding ``bundles`` generated bundles; (home, bytes of article text)."""
    publisher = work / "publisher"
    md("publisher", "new", publisher, "--name", "Bench News", "--unencrypted")
    home = work / "node"
    md("--home", home, "trust", "add", "--yes", publisher / "publisher.pub")
    out = work / "bundles"
    out.mkdir()
    now = int(time.time()) - 60
    batch = 25
    say(f"packing {bundles} bundles of {CHARS:,} characters (not timed)")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(4, os.cpu_count() or 1), mp_context=context) as pool:
        jobs = [
            pool.submit(pack_batch, str(publisher), str(out), str(work), first, batch, now)
            for first in range(0, bundles, batch)
        ]
        packed = sum(job.result() for job in jobs)
    say(f"importing {packed} bundles with one meshdrop import")
    md("--home", home, "import", out, "--quiet")
    text_bytes = len(" ".join(paragraphs(0, 400)).encode()) / len(" ".join(paragraphs(0, 400)))
    return home, int(bundles * CHARS * text_bytes)


def indexed_bundles(home: Path) -> int:
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{home}/search.sqlite?mode=ro", uri=True)
        ) as c:
            return int(c.execute("SELECT count(*) FROM bundles WHERE complete = 1").fetchone()[0])
    except sqlite3.Error:
        return 0


def index_size(home: Path) -> int:
    return sum(p.stat().st_size for p in home.glob("search.sqlite*"))


async def _timed(session: aiohttp.ClientSession, method: str, url: str, **kw: object) -> float:
    start = time.perf_counter()
    async with session.request(method, url, **kw) as reply:  # type: ignore[arg-type]
        await reply.read()
        if reply.status != 200:
            raise RuntimeError(f"{method} {url} answered {reply.status}")
    return (time.perf_counter() - start) * 1000


async def _load(base: str, seconds: float) -> tuple[list[float], list[float], int]:
    """(search latencies, home latencies, searches that found nothing)."""
    searches: list[float] = []
    homes: list[float] = []
    empty = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=CLIENTS + HOME_CLIENTS)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one_search(query: str) -> None:
            nonlocal empty
            start = time.perf_counter()
            async with session.post(base + "/search", data={"q": query}) as reply:
                page = await reply.text()
            searches.append((time.perf_counter() - start) * 1000)
            found = re.search(r'<ul class="list results">(.*?)</ul>', page, re.S)
            empty += found is None or "<li" not in found.group(1)

        async def home_client() -> None:
            while time.perf_counter() < deadline:
                homes.append(await _timed(session, "GET", base + "/"))
                await asyncio.sleep(0.05)

        async def schedule() -> None:
            # Open loop: the i-th search starts at start + i/rate, whatever came back.
            start = time.perf_counter()
            tasks = []
            rng = random.Random(1)
            for i in range(int(seconds * SEARCHES_PER_SECOND)):
                await asyncio.sleep(max(0.0, start + i / SEARCHES_PER_SECOND - time.perf_counter()))
                tasks.append(asyncio.create_task(one_search(rng.choice(QUERIES))))
            await asyncio.gather(*tasks)

        await asyncio.gather(schedule(), *(home_client() for _ in range(HOME_CLIENTS)))
    return searches, homes, empty


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else 0.0


def row(name: str, value: float, unit: str, target: str | None = None) -> dict[str, object]:
    return {"name": name, "value": round(value, 2), "unit": unit, "baseline": None,
            "ratio": None, "target": target}  # fmt: skip


def run(workdir: Path, quick: bool) -> list[dict[str, object]]:
    bundles = QUICK_BUNDLES if quick else BUNDLES
    seconds = 10.0 if quick else 30.0
    home, text_bytes = build(workdir, bundles)
    mb = text_bytes / 1e6
    with reader(home) as base:
        say(f"reader at {base}; waiting for the index of {mb:.0f} MB of text")
        start = time.perf_counter()
        while indexed_bundles(home) < bundles:
            time.sleep(0.25)
        took = time.perf_counter() - start
        say(f"indexed in {took:.1f} s; {SEARCHES_PER_SECOND} searches/s for {seconds:.0f} s")
        searches, homes, empty = asyncio.run(_load(base, seconds))
    say(f"{len(searches)} searches ({empty} found nothing), {len(homes)} home pages")
    target = f"< {TARGET_MS:.0f} ms"
    return [
        row("search_index_seconds", took, "s"),
        row("search_index_mb_per_s", mb / took, "MB/s"),
        row("search_index_bytes_per_text_byte", index_size(home) / text_bytes, "x"),
        row("search_p50", percentile(searches, 0.5), "ms", target),
        row("search_p99", percentile(searches, 0.99), "ms", target),
        row("search_home_p50", percentile(homes, 0.5), "ms", target),
        row("search_home_p99", percentile(homes, 0.99), "ms", target),
    ]


if __name__ == "__main__":
    sys.exit(area_main(run, __doc__.split("\n\n")[0], f"{QUICK_BUNDLES} bundles, a 10 s load"))
