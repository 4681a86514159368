"""LAN benchmark: real `meshdrop node` processes syncing over loopback, against baselines
measured in the same run on the same bytes.

    run(workdir, quick) -> rows of {name, value, unit, baseline, ratio, target}

- one big bundle node to node (512 MiB; 64 MiB with quick), MB/s, against `curl` from
  `python -m http.server` and against a bare aiohttp client that downloads and hashes
  the same bytes (target: at least 0.8 of the latter), and, for reference, against
  `meshdrop import` of the same bundle from a local file (the store's own ingest);
- 1,000 small bundles of 8 KiB (200 with quick) node to node: bundles/s, bytes on the wire;
- idle cost of two nodes holding the same 10,000 bundles (1,000 with quick): requests and
  bytes per minute, mDNS included;
- then 10 new bundles on one of those two nodes: the bytes each way until the other holds
  them (two namespaces joined by a veth link, so each direction is counted; as root);
- spread: time until all of 10 nodes hold a bundle added to one of them;
- re-sync after a 90 s outage: two nodes on one link (as root), one cut off without a
  goodbye gets a new bundle; the time from the link's return until the other holds it
  (and after a 10 minute outage with BENCH_LAN_LONG_OUTAGE=1);
- peak memory of a node syncing a 2 GiB bundle (256 MiB with quick), target < 200 MB.

Every node is bound to 127.0.0.1 (HTTP and mDNS stay on this machine). As root with
`ip netns`, nodes run in a network namespace of their own so that its loopback counters
give exact bytes on the wire; elsewhere those figures are payload bytes plus an estimate
for headers (the row says so). scripts/bench calls run(); `python scripts/bench_lan.py
[--quick] [--workdir DIR]` runs it alone and prints the rows.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from benchkit import area_main, md, meshdrop, set_aside

MIB = 1024 * 1024
REPEATS = 3  # each timed figure is the best of this many runs
MB = 1_000_000
SMALL_BYTES = 8 * 1024
RATIO_TARGET = 0.8
MEMORY_TARGET_MB = 200
PYTHON = os.path.abspath(sys.executable)
HEADER_ESTIMATE = 300  # bytes of HTTP request and response headers, when not measured
WAIT = 600.0


def say(message: str) -> None:
    print(f"bench_lan: {message}", file=sys.stderr, flush=True)


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


def write_random(path: Path, size: int) -> None:
    with path.open("wb") as out:
        left = size
        while left:
            piece = min(left, 16 * MIB)
            out.write(os.urandom(piece))
            left -= piece


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# A network namespace of our own (loopback only): exact byte counts, no neighbours.


class Netns:
    def __init__(self) -> None:
        self.name = f"mdbench{secrets.token_hex(3)}"
        self.prefix: list[str] = []

    def __enter__(self) -> Netns:
        if os.geteuid() == 0 and shutil.which("ip"):
            made = subprocess.run(["ip", "netns", "add", self.name], capture_output=True)
            if made.returncode == 0:
                subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
                self.prefix = ["ip", "netns", "exec", self.name]
        if not self.prefix:
            say("no network namespace (not root, or no ip netns): byte counts are estimates")
        return self

    def __exit__(self, *_: object) -> None:
        if self.prefix:
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    def wire_bytes(self) -> int | None:
        """Bytes sent on the namespace's loopback (each byte crosses it once)."""
        if not self.prefix:
            return None
        out = subprocess.run(
            [*self.prefix, "cat", "/sys/class/net/lo/statistics/tx_bytes"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return int(out)


class LinkedPair:
    """Two network namespaces joined by one veth link, an address each: the link's
    counters on one side give the bytes each way (frames, so headers included)."""

    ADDRESSES = ("10.77.0.1", "10.77.0.2")

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.names = (f"mdbench{tag}a", f"mdbench{tag}b")
        self.prefixes: tuple[list[str], list[str]] | None = None

    def __enter__(self) -> LinkedPair:
        if os.geteuid() != 0 or not shutil.which("ip"):
            return self
        made = []
        try:
            for name in self.names:
                subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
                made.append(name)
            a, b = self.names
            veth = ["link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b]
            subprocess.run(["ip", "-n", a, *veth], check=True, capture_output=True)
            for name, address in zip(self.names, self.ADDRESSES, strict=True):
                for args in (
                    ["addr", "add", f"{address}/24", "dev", "eth0"],
                    ["link", "set", "eth0", "up"],
                    ["link", "set", "lo", "up"],
                ):
                    subprocess.run(["ip", "-n", name, *args], check=True, capture_output=True)
        except subprocess.CalledProcessError:
            for name in made:
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
            say("no linked network namespaces: the per-direction figures are skipped")
            return self
        self.prefixes = (["ip", "netns", "exec", a], ["ip", "netns", "exec", b])
        return self

    def __exit__(self, *_: object) -> None:
        if self.prefixes:
            for name in self.names:
                subprocess.run(["ip", "netns", "del", name], capture_output=True)

    def sent_by_each(self) -> tuple[int, int]:
        """Bytes sent so far by the first namespace and by the second, over the link."""
        assert self.prefixes is not None
        counters = []
        for which in ("tx_bytes", "rx_bytes"):
            out = subprocess.run(
                [*self.prefixes[0], "cat", f"/sys/class/net/eth0/statistics/{which}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            counters.append(int(out))
        return counters[0], counters[1]


class BenchNode:
    """A `meshdrop node --json` process; its events, with the time each arrived."""

    def __init__(
        self,
        home: Path,
        *extra: str,
        prefix: Sequence[str] = (),
        bind: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.home = home
        self.prefix = list(prefix)
        self.bind = bind
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESHDROP_")}
        argv = [*self.prefix, meshdrop(), "--home", str(home), "node", "--bind", bind]
        self.proc = subprocess.Popen(
            [*argv, "--port", str(port), "--json", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.events: list[tuple[float, dict[str, Any]]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        when, event = self.wait(lambda e: e["event"] == "listening")
        self.started = when
        self.port: int = event["port"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError), self._lock:
                self.events.append((time.monotonic(), json.loads(line)))

    @property
    def address(self) -> str:
        return f"{self.bind}:{self.port}"

    def matching(
        self, match: Callable[[dict[str, Any]], bool]
    ) -> list[tuple[float, dict[str, Any]]]:
        with self._lock:
            return [(t, e) for t, e in self.events if match(e)]

    def wait(
        self, match: Callable[[dict[str, Any]], bool], count: int = 1, timeout: float = WAIT
    ) -> tuple[float, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.matching(match)
            if len(found) >= count:
                return found[count - 1]
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.home.name} exited ({self.proc.returncode})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"node {self.home.name}: timed out")
            time.sleep(0.02)

    def status(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(
            md("--home", self.home, "status", "--json", prefix=self.prefix)
        )
        return found

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / MB
        raise RuntimeError("no VmHWM in /proc")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(60)


@contextlib.contextmanager
def running(*nodes: BenchNode) -> Iterator[None]:
    try:
        yield
    finally:
        for node in nodes:
            node.stop()


# Making publishers, bundles and stores (not timed)


class Maker:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.publisher = work / "publisher"
        md("publisher", "new", self.publisher, "--name", "Bench", "--unencrypted")
        self.made = 0

    def home(self, path: Path) -> Path:
        md("--home", path, "trust", "add", "--yes", self.publisher / "publisher.pub")
        return path

    def pack(self, src: Path, out: Path, name: str) -> Path:
        md("pack", src, "--publisher", self.publisher, "--name", name, "-o", out, "-q")
        return out

    def pack_many(self, out: Path, count: int, size: int) -> Path:
        """``count`` bundles of one ``size``-byte file each, packed in this process."""
        from meshdrop.publish.keystore import load_publisher
        from meshdrop.publish.pack import pack_folder

        folder = load_publisher(self.publisher)
        now = int(time.time())
        key, _ = folder.load_signer(lambda _what: b"", now)
        out.mkdir(parents=True, exist_ok=True)
        src = self.work / "small-src"
        src.mkdir(exist_ok=True)
        for i in range(count):
            (src / "index.html").write_bytes(os.urandom(size))  # same file: no inode freed
            pack_folder(
                src,
                out / f"small-{self.made}.mdrop",
                signing_key=key,
                state=folder.state,
                name=f"small-{self.made}",
                version=1,
                created=now,
                expires=None,
                title=f"small {i}",
                description="",
                language="en",
                priority=0,
            )
            self.made += 1
        set_aside(src)
        return out


# The benchmarks


def bench_big(maker: Maker, work: Path, size: int) -> list[dict[str, object]]:
    say(f"one {size // MIB} MiB bundle: making it and its source node (not timed)")
    src = work / "big-src"
    src.mkdir()
    write_random(src / "data.bin", size)
    bundle = maker.pack(src, work / "big.mdrop", "big")
    source_home = maker.home(work / "big-source")
    md("--home", source_home, "import", bundle, "-q")
    say("reference: the store's own import of the same bundle from a local file")
    imports = []
    for i in range(2):
        home = maker.home(work / f"big-import-{i}")
        imports.append(_timed([meshdrop(), "--home", str(home), "import", str(bundle), "-q"]))
        set_aside(home)
    set_aside(bundle)

    say("baselines: curl and a bare aiohttp download + sha256 from python -m http.server")
    port = free_port()
    server = subprocess.Popen(
        [PYTHON, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=src,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/data.bin"
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(["curl", "-sf", "-o", "/dev/null", "-r", "0-0", url]).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError("python -m http.server did not start")
            time.sleep(0.1)
        curl = min(_timed(["curl", "-sf", "-o", "/dev/null", url]) for _ in range(REPEATS))
        bare = min(_timed([PYTHON, "-c", BARE_CLIENT, url]) for _ in range(REPEATS))
    finally:
        server.terminate()
        server.wait()
    set_aside(src)

    say("node to node")
    took = []
    source = BenchNode(source_home, "--no-discovery")
    with running(source):
        for i in range(REPEATS):  # as many as the baselines get
            sink_home = maker.home(work / f"big-sink-{i}")
            sink = BenchNode(sink_home, "--no-discovery", "--peer", source.address)
            with running(sink):
                done, _ = sink.wait(lambda e: e["event"] == "bundle")
                took.append(done - sink.started)
            set_aside(sink_home)
    best = min(took)
    rate, curl_rate, bare_rate = size / best / MB, size / curl / MB, size / bare / MB
    label = f"one {size // MIB} MiB bundle node to node"
    return [
        row(f"{label} (vs curl)", rate, "MB/s", curl_rate, curl / best, "(reference)"),
        row(
            f"{label} (vs bare aiohttp + sha256)",
            rate,
            "MB/s",
            bare_rate,
            bare / best,
            f">= {RATIO_TARGET} of bare aiohttp + sha256",
        ),
        row(
            f"{label} (vs meshdrop import of the file, start-up included)",
            rate,
            "MB/s",
            size / min(imports) / MB,
            min(imports) / best,
            "(reference: the store's verified, fsynced ingest)",
        ),
    ]


BARE_CLIENT = """
import asyncio, hashlib, sys, aiohttp
async def main(url):
    h = hashlib.sha256()
    async with aiohttp.ClientSession(auto_decompress=False) as s, s.get(url) as r:
        async for piece in r.content.iter_chunked(1 << 20):
            h.update(piece)
    print(h.hexdigest())
asyncio.run(main(sys.argv[1]))
"""


def _timed(argv: Sequence[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def bench_small(maker: Maker, work: Path, count: int) -> list[dict[str, object]]:
    say(f"{count} bundles of 8 KiB: making them and their source node (not timed)")
    bundles = maker.pack_many(work / "small-bundles", count, SMALL_BYTES)
    source_home = maker.home(work / "small-source")
    md("--home", source_home, "import", bundles, "-q")
    set_aside(bundles)
    sink_home = maker.home(work / "small-sink")
    say("node to node")
    with Netns() as ns:
        source = BenchNode(source_home, "--no-discovery", prefix=ns.prefix)
        sink = None
        with running(source):
            before = ns.wire_bytes()
            sink = BenchNode(
                sink_home, "--no-discovery", "--peer", source.address, prefix=ns.prefix
            )
            with running(sink):
                done, _ = sink.wait(lambda e: e["event"] == "bundle", count=count)
                wire = ns.wire_bytes()
                status = sink.status()
        took = done - sink.started
    if wire is not None and before is not None:
        on_wire, how = wire - before, "measured on loopback"
    else:
        requests = status["client"]["requests"]
        on_wire, how = status["client"]["bytes"] + requests * HEADER_ESTIMATE, "estimated"
    return [
        row(f"{count} bundles of 8 KiB node to node", count / took, "bundles/s", None, None, ""),
        row(
            f"{count} bundles of 8 KiB: bytes on the wire, both ways ({how})",
            on_wire / 1000,
            "KB",
            count * SMALL_BYTES / 1000,
            on_wire / (count * SMALL_BYTES),
            "(baseline: the payload itself)",
        ),
    ]


def scratch_folder(work: Path, prefix: str) -> Path:
    """A new folder for many small files: in memory (/dev/shm) where there is one."""
    shm = Path("/dev/shm")
    return Path(tempfile.mkdtemp(dir=shm if shm.is_dir() else work, prefix=prefix))


def twin_homes(maker: Maker, scratch: Path, count: int) -> tuple[Path, Path]:
    """Two homes under ``scratch`` holding the same ``count`` bundles of 64 bytes (the
    second a copy of the first: making them is not timed)."""
    bundles = maker.pack_many(scratch / "bundles", count, 64)
    first = maker.home(scratch / "idle-a")
    md("--home", first, "import", bundles, "-q")
    set_aside(bundles)
    second = scratch / "idle-b"
    shutil.copytree(first, second)
    return first, second


def bench_idle(maker: Maker, work: Path, count: int, seconds: float) -> list[dict[str, object]]:
    say(f"idle: two nodes holding the same {count} bundles (making them is not timed)")
    scratch = scratch_folder(work, "bench-lan-")
    try:
        first, second = twin_homes(maker, scratch, count)
        with Netns() as ns:
            a = BenchNode(first, prefix=ns.prefix)
            b = BenchNode(second, prefix=ns.prefix)
            with running(a, b):
                a.wait(lambda e: e["event"] == "peer" and e["state"] == "alive")
                b.wait(lambda e: e["event"] == "peer" and e["state"] == "alive")
                time.sleep(2)
                start = [a.status(), b.status()]
                wire_start = ns.wire_bytes()
                time.sleep(seconds)
                wire_end = ns.wire_bytes()
                end = [a.status(), b.status()]
                syncs = len(a.matching(lambda e: e["event"] == "sync")) + len(
                    b.matching(lambda e: e["event"] == "sync")
                )
        differ = bench_differ(maker, scratch, first, second, count)
    finally:
        set_aside(scratch)
    per_minute = 60.0 / seconds
    pairs = list(zip(start, end, strict=True))
    requests = sum(e["served"]["requests"] - s["served"]["requests"] for s, e in pairs)
    payload = sum(e["client"]["bytes"] - s["client"]["bytes"] for s, e in pairs)
    if wire_start is not None and wire_end is not None:
        on_wire, how = wire_end - wire_start, "measured on loopback, mDNS included"
    else:
        on_wire, how = payload + requests * HEADER_ESTIMATE, "estimated, HTTP only"
    label = f"idle, two nodes of the same {count} bundles"
    return [
        row(
            f"{label}: requests", requests * per_minute, "per minute", None, None, f"{syncs} syncs"
        ),
        row(
            f"{label}: bytes ({how})", on_wire * per_minute / 1000, "KB per minute", None, None, ""
        ),
        *differ,
    ]


DIFFER = 10


def bench_differ(
    maker: Maker, scratch: Path, first: Path, second: Path, count: int
) -> list[dict[str, object]]:
    """Two nodes holding the same bundles, in two namespaces joined by a veth link; ten
    new small bundles are imported into the first: the bytes each way until the second
    holds them, HTTP and TCP/IP/Ethernet headers included (manual peers: no mDNS)."""
    say(f"{DIFFER} new bundles between two nodes of the same bundles, bytes each way")
    new = maker.pack_many(scratch / "differ", DIFFER, 64)
    with LinkedPair() as link:
        if link.prefixes is None:
            return []
        (address_a, address_b), (prefix_a, prefix_b) = link.ADDRESSES, link.prefixes
        port_a, port_b = 47110, 47111  # fixed: each namespace is empty but for its node
        a = BenchNode(
            first, "--no-discovery", "--peer", f"{address_b}:{port_b}",
            prefix=prefix_a, bind=address_a, port=port_a,
        )  # fmt: skip
        b = BenchNode(
            second, "--no-discovery", "--peer", f"{address_a}:{port_a}",
            prefix=prefix_b, bind=address_b, port=port_b,
        )  # fmt: skip
        with running(a, b):
            for node in (a, b):
                node.wait(lambda e: e["event"] == "peer" and e["state"] == "alive")
            time.sleep(2)
            sent_a, sent_b = link.sent_by_each()
            md("--home", first, "import", new, "-q")
            b.wait(lambda e: e["event"] == "bundle", count=DIFFER)
            time.sleep(2)  # and whatever follows: the first node checking back
            end_a, end_b = link.sent_by_each()
    bundle_bytes = sum(f.stat().st_size for f in new.glob("*.mdrop"))
    down = end_a - sent_a
    label = f"{DIFFER} new bundles between two nodes of the same {count}: bytes"
    return [
        row(
            f"{label} up (requests, acks, all headers)",
            (end_b - sent_b) / 1000,
            "KB",
            None,
            None,
            "< 20 KB each way",
        ),
        row(
            f"{label} down, the bundles' own bytes not counted",
            (down - bundle_bytes) / 1000,
            "KB",
            None,
            None,
            "< 20 KB each way",
        ),
        row(
            f"{label} down, all (baseline: the bundle files)",
            down / 1000,
            "KB",
            bundle_bytes / 1000,
            down / bundle_bytes,
            "",
        ),
    ]


def bench_spread(maker: Maker, work: Path, count: int) -> list[dict[str, object]]:
    say(f"spread: {count} nodes, a bundle added to one of them")
    homes = [maker.home(work / f"spread-{i}") for i in range(count)]
    src = work / "spread-src"
    src.mkdir()
    write_random(src / "news.bin", MIB)
    bundle = maker.pack(src, work / "spread.mdrop", "spread")
    with Netns() as ns:
        nodes: list[BenchNode] = []
        try:
            for home in homes:
                nodes.append(BenchNode(home, prefix=ns.prefix))
            for node in nodes:  # everyone knows everyone before the clock starts
                node.wait(lambda e: e["event"] == "peer" and e["state"] == "alive", count=count - 1)
            start = time.monotonic()
            md("--home", homes[0], "import", bundle, "-q")
            arrived = [
                node.wait(lambda e: e["event"] == "bundle" and e["name"] == "spread")[0]
                for node in nodes[1:]
            ]
        finally:
            for node in nodes:
                node.stop()
    took = max(arrived) - start
    return [row(f"spread to all of {count} nodes (1 MiB bundle)", took, "s", None, None, "")]


def bench_partial(maker: Maker, work: Path, size: int) -> list[dict[str, object]]:
    """Two nodes each holding a different half of a bundle whose source has left (each
    half imported from a courier part: made and imported untimed) complete each other."""
    say(f"two half-filled nodes of a {size // MIB} MiB bundle complete each other")
    src = work / "partial-src"
    src.mkdir()
    write_random(src / "half.bin", size)
    out = work / "partial.mdrop"
    half = f"{size // MIB // 2 + 1}M"  # a part holds half the chunks and the envelope
    md("pack", src, "--publisher", maker.publisher, "--name", "partial", "-o", out,
       "--part-size", half, "-q")  # fmt: skip
    set_aside(src)
    parts = sorted(work.glob("partial.p0*"))
    homes = [maker.home(work / f"partial-{i}") for i in (1, 2)]
    for home, part in zip(homes, parts, strict=True):
        with contextlib.suppress(RuntimeError):  # "incomplete": exit code 1
            md("--home", home, "import", part, "-q")
    with Netns() as ns:
        nodes: list[BenchNode] = []
        try:
            for home in homes:
                nodes.append(BenchNode(home, prefix=ns.prefix))
            start = max(node.started for node in nodes)
            done = [node.wait(lambda e: e["event"] == "bundle")[0] for node in nodes]
            fetched = [node.status()["fetched"]["bytes"] for node in nodes]
        finally:
            for node in nodes:
                node.stop()
    took = max(done) - start
    assert all(f == size // 2 for f in fetched), f"fetched {fetched}, not half each"
    name = f"two half-filled nodes complete each other ({size // MIB} MiB, source gone)"
    target = "no stall; each fetches only its missing half"
    return [
        row(name, took, "s", None, None, target),
        row("  ... throughput of that exchange", size / MB / took, "MB/s", None, None, ""),
    ]


def bench_outage(maker: Maker, work: Path, outage: float) -> list[dict[str, object]]:
    """Two nodes on one link (their own namespaces, real mDNS, default timers); one's link
    goes down for ``outage`` seconds without a goodbye, and gets a new bundle meanwhile:
    the time from the link's return until the other node holds it."""
    say(f"re-sync after a {outage:.0f} s outage (the outage itself is not counted)")
    homes = [maker.home(work / f"outage-{int(outage)}-{side}") for side in "ab"]
    src = work / f"outage-{int(outage)}-src"
    src.mkdir()
    (src / "index.html").write_bytes(os.urandom(4096))
    bundle = maker.pack(src, work / f"outage-{int(outage)}.mdrop", f"outage-{int(outage)}")
    with LinkedPair() as pair:
        if pair.prefixes is None:
            return []
        a, b = (
            BenchNode(home, prefix=prefix, bind=address)
            for home, prefix, address in zip(homes, pair.prefixes, pair.ADDRESSES, strict=True)
        )
        with running(a, b):
            for node in (a, b):
                node.wait(lambda e: e["event"] == "peer" and e["state"] == "alive")
            down = ["ip", "-n", pair.names[1], "link", "set", "eth0"]
            subprocess.run([*down, "down"], check=True)
            time.sleep(outage / 2)
            md("--home", homes[1], "import", bundle, "-q")  # on the cut-off node
            time.sleep(outage / 2)
            subprocess.run([*down, "up"], check=True)
            back = time.monotonic()
            arrived, _ = a.wait(lambda e: e["event"] == "bundle")
    took = arrived - back
    return [row(f"re-sync after a {outage:.0f} s outage", took, "s", None, None, "< 30 s")]


def bench_memory(maker: Maker, work: Path, size: int) -> list[dict[str, object]]:
    say(f"peak memory syncing a {size // MIB} MiB bundle (making it is not timed)")
    src = work / "mem-src"
    src.mkdir()
    write_random(src / "huge.bin", size)
    bundle = maker.pack(src, work / "huge.mdrop", "huge")
    set_aside(src)
    source_home = maker.home(work / "mem-source")
    md("--home", source_home, "import", bundle, "-q")
    set_aside(bundle)
    sink_home = maker.home(work / "mem-sink")
    source = BenchNode(source_home, "--no-discovery")
    with running(source):
        sink = BenchNode(sink_home, "--no-discovery", "--peer", source.address)
        with running(sink):
            # Meanwhile a phone reads the syncing node's home page, again and again.
            during = HomePageTimer(f"http://{sink.address}/")
            with during:
                sink.wait(lambda e: e["event"] == "bundle")
            peak, served_peak = sink.peak_rss_mb(), source.peak_rss_mb()
            idle = HomePageTimer(f"http://{sink.address}/")
            with idle:
                time.sleep(3)
    set_aside(source_home)
    set_aside(sink_home)
    label = f"peak memory of a node syncing a {size // MIB} MiB bundle"
    p99_sync, p99_idle = during.p99(), idle.p99()
    return [
        row(label, peak, "MB", None, None, f"< {MEMORY_TARGET_MB} MB"),
        row(f"{label} (the node serving it)", served_peak, "MB", None, None, ""),
        row(
            f"reader home page p99 on the node while it syncs ({len(during.times)} requests)",
            p99_sync,
            "ms",
            p99_idle,
            p99_sync / p99_idle if p99_idle else None,
            "< 100 ms (baseline: p99 idle)",
        ),
    ]


class HomePageTimer:
    """Times GETs of a page, one after another with a short pause, on a thread, for as
    long as the with-block lasts (bounded: at most MAX_READS requests)."""

    MAX_READS = 20_000

    def __init__(self, url: str) -> None:
        self.url = url
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set() and len(self.times) < self.MAX_READS:
            start = time.perf_counter()
            with urllib.request.urlopen(self.url, timeout=30) as reply:
                reply.read()
            self.times.append((time.perf_counter() - start) * 1000)
            time.sleep(0.005)

    def __enter__(self) -> HomePageTimer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def p99(self) -> float:
        ordered = sorted(self.times) or [0.0]
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def run(workdir: Path, quick: bool) -> list[dict[str, object]]:
    work = workdir / "bench-lan"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    maker = Maker(work)
    rows: list[dict[str, object]] = []
    rows += bench_big(maker, work, (64 if quick else 512) * MIB)
    rows += bench_small(maker, work, 200 if quick else 1000)
    rows += bench_idle(maker, work, 1000 if quick else 10_000, 20.0 if quick else 60.0)
    rows += bench_spread(maker, work, 10)
    rows += bench_partial(maker, work, (32 if quick else 200) * MIB)
    rows += bench_outage(maker, work, 90.0)
    if os.environ.get("BENCH_LAN_LONG_OUTAGE"):  # ten more minutes: only when asked
        rows += bench_outage(maker, work, 600.0)
    rows += bench_memory(maker, work, (256 if quick else 2048) * MIB)
    set_aside(work)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    return area_main(run, __doc__, "smaller sizes (a few minutes)", argv)


if __name__ == "__main__":
    sys.exit(main())
