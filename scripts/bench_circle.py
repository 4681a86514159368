"""Circle benchmark (issue 16): real `meshdrop node` processes in a circle (TLS 1.3 between
members, on each node's circle port) against the same nodes in the open mesh (plain HTTP),
and side by side with Syncthing 1.19, each figure's baseline measured in the same run.

    run(workdir, quick) -> rows of {name, value, unit, baseline, ratio, target}

1. one bundle of 512 MiB (64 MiB with quick) from a source node to a fresh one: circle
   members against open nodes (the source serves both: `--open`), best of 3 each, taken
   in turn; target >= 0.7 x open. Then the same with each node pinned to a core of its
   own (taskset), as two devices would run, and the CPU seconds each node spent (both
   kinds are CPU-bound here: the two nodes share the machine's 2 cores).
2. 1000 bundles of 8 KiB (200 with quick) the same way: bundles/s (target >= 500/s in
   the circle) and bytes on the namespace's loopback.
3. idle cost of two members holding the same 10,000 bundles (1,000 with quick), in two
   namespaces on a veth link, real mDNS: bytes each way per minute (frames, all headers)
   over 5 minutes (two 120 s pings; with quick, 30 s with MESHDROP_LAN_TIMERS=ping=10),
   and requests per minute; baseline Syncthing's per-direction bytes measured the same
   way over the same window (full run), else the issue's 0.5 KB/min, labelled as such.
4. side by side with Syncthing (scripts/bench_syncthing.py) in two namespaces on a veth
   link: the 512 MiB item and the 1000 small items, from the receiver's start and from its
   connection (meshdrop: its first `peer alive` event; Syncthing: `DeviceConnected`);
   ratio = meshdrop's time / Syncthing's; targets <= 0.7 (big) and <= 1.0 (small) from
   connection.
5. 10 nodes in one namespace on 127.0.0.1 with real mDNS, a circle against the open mesh:
   the time from the last node's start until the other nine hold the bundle the first
   node held at start, and then the time for a bundle imported into the first node
   while all run; target <= 1.5 x open.

Run time: quick about 2 minutes; full about 15 minutes (two 5-minute idle windows).
As root with `ip netns` (rows 3 and 4 need it; without it, row 4 runs on 127.0.0.1 and
row 3 is skipped). `python scripts/bench_circle.py [--quick] [--rows 1,2]` runs it (or
some of its rows) alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import bench_syncthing
from bench_lan import (
    MB,
    MIB,
    REPEATS,
    SMALL_BYTES,
    BenchNode,
    LinkedPair,
    Maker,
    Netns,
    row,
    running,
    scratch_folder,
    twin_homes,
    write_random,
)
from benchkit import area_main, md, set_aside

CIRCLE = "bench"
BIG_RATIO_TARGET = 0.7
SMALL_RATE_TARGET = 500.0
SPREAD_TARGET = 1.5
SYNCTHING_BIG_TARGET = 0.7
SYNCTHING_SMALL_TARGET = 1.0
ISSUE_SYNCTHING_IDLE_KB = 0.5  # per minute each way, the issue's own measurement
SIDE_PORT = 47200  # the source's circle port in its own namespace: nothing else is there
SPREAD_NODES = 10


def say(message: str) -> None:
    print(f"bench_circle: {message}", file=sys.stderr, flush=True)


def is_bundle(event: dict[str, Any]) -> bool:
    return bool(event["event"] == "bundle")


def is_alive(event: dict[str, Any]) -> bool:
    return bool(event["event"] == "peer" and event["state"] == "alive")


def new_circle(home: Path) -> str:
    return str(json.loads(md("--home", home, "circle", "new", CIRCLE, "--json"))["invite"])


def join(home: Path, invite: str) -> Path:
    md("--home", home, "circle", "join", invite, "--name", CIRCLE)
    return home


def circle_port(node: BenchNode) -> int:
    _, mode = node.wait(lambda e: e["event"] == "mode")
    return int(mode["circles"][CIRCLE])


class Sources:
    """The two source nodes' homes (the big bundle; the small ones), members of one
    circle, and the raw data Syncthing gets for the same transfers."""

    def __init__(self, maker: Maker, work: Path, size: int, count: int) -> None:
        self.maker, self.work, self.size, self.count = maker, work, size, count
        say(f"making a {size // MIB} MiB bundle and {count} of 8 KiB, their sources (untimed)")
        src = work / "big-src"
        src.mkdir()
        self.big_data = src / "data.bin"
        write_random(self.big_data, size)
        bundle = maker.pack(src, work / "big.mdrop", "big")
        self.big = maker.home(work / "big-source")
        md("--home", self.big, "import", bundle, "-q")
        set_aside(bundle)
        self.invite = new_circle(self.big)
        small = maker.pack_many(work / "small-bundles", count, SMALL_BYTES)
        self.small = join(maker.home(work / "small-source"), self.invite)
        md("--home", self.small, "import", small, "-q")
        set_aside(small)

    def sink(self, name: str, member: bool) -> Path:
        home = self.maker.home(self.work / name)
        return join(home, self.invite) if member else home


class Kinds(NamedTuple):
    """What circle_vs_open measured, per kind (True: circle members, False: open nodes)."""

    took: dict[bool, list[float]]  # seconds from each sink's start
    wire: dict[bool, list[int | None]]  # bytes on the namespace's loopback
    cpu: dict[bool, list[tuple[float, float]]]  # CPU seconds (source, sink) of each run


def cpu_seconds(pid: int) -> float:
    """User plus system time of a live process (``ip netns exec`` and ``taskset`` exec
    the node, so the pid is the node's)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def circle_vs_open(
    sources: Sources, source_home: Path, count: int, tag: str, pinned: bool = False
) -> Kinds:
    """REPEATS fresh sinks of each kind, in turn, fetching every bundle of a source that
    serves both; seconds from each sink's start (its listening line), loopback bytes and
    CPU time of both nodes. ``pinned``: the source runs on core 0 and each sink on core 1
    (taskset), as two devices would, instead of both sharing the machine's cores."""
    result = Kinds({True: [], False: []}, {True: [], False: []}, {True: [], False: []})
    took, wire = result.took, result.wire
    source_core = ["taskset", "-c", "0"] if pinned else []
    sink_core = ["taskset", "-c", "1"] if pinned else []
    with Netns() as ns:
        source = BenchNode(
            source_home, "--no-discovery", "--open", prefix=[*ns.prefix, *source_core]
        )
        with running(source):
            peers = {True: f"127.0.0.1:{circle_port(source)}", False: source.address}
            for i in range(REPEATS):
                for member in (False, True):
                    kind = "circle" if member else "open"
                    home = sources.sink(f"{tag}-{kind}-{i}", member)
                    before = ns.wire_bytes()
                    source_cpu = cpu_seconds(source.proc.pid)
                    sink = BenchNode(
                        home, "--no-discovery", "--peer", peers[member],
                        prefix=[*ns.prefix, *sink_core],
                    )  # fmt: skip
                    with running(sink):
                        done, _ = sink.wait(is_bundle, count=count)
                        after = ns.wire_bytes()
                        source_cpu = cpu_seconds(source.proc.pid) - source_cpu
                        result.cpu[member].append((source_cpu, cpu_seconds(sink.proc.pid)))
                    took[member].append(done - sink.started)
                    wire[member].append(None if before is None else (after or 0) - before)
                    say(f"  {tag} {kind} run {i + 1}/{REPEATS}: {took[member][-1]:.3f} s")
                    set_aside(home)
    return result


def bench_big(sources: Sources) -> list[dict[str, object]]:
    size = sources.size
    say(f"1. one {size // MIB} MiB bundle: circle members against open nodes")
    shared = circle_vs_open(sources, sources.big, 1, "big")
    say("1b. the same, each node on a core of its own (taskset)")
    pinned = circle_vs_open(sources, sources.big, 1, "pinned", pinned=True)
    rows = []
    for kinds, label in ((shared, "both nodes sharing 2 cores"), (pinned, "a core each")):
        rate, base = (size / min(kinds.took[kind]) / MB for kind in (True, False))
        rows.append(
            row(
                f"1. one {size // MIB} MiB bundle between circle members, {label} "
                "(baseline: open nodes)",
                rate,
                "MB/s",
                base,
                rate / base,
                f">= {BIG_RATIO_TARGET} x open",
            )
        )
    for kind, name in ((True, "circle"), (False, "open")):
        cpu = shared.cpu[kind]
        for side, who in ((0, "source"), (1, "sink, start-up included")):
            rows.append(
                row(
                    f"1. CPU seconds of the {who}, {name}, sharing 2 cores (median)",
                    statistics.median(run[side] for run in cpu),
                    "s",
                    None,
                    None,
                    "reported",
                )
            )
    return rows


def bench_small(sources: Sources) -> list[dict[str, object]]:
    count = sources.count
    say(f"2. {count} bundles of 8 KiB: circle members against open nodes")
    small = circle_vs_open(sources, sources.small, count, "small")
    circle, plain, circle_wire, plain_wire = (
        small.took[True], small.took[False], small.wire[True], small.wire[False]
    )  # fmt: skip
    rate, base = count / min(circle), count / min(plain)
    rows = [
        row(
            f"2. {count} bundles of 8 KiB between circle members (baseline: open nodes)",
            rate,
            "bundles/s",
            base,
            rate / base,
            f">= {SMALL_RATE_TARGET:.0f}/s",
        )
    ]
    if circle_wire[0] is not None and plain_wire[0] is not None:
        mine, theirs = circle_wire[0], plain_wire[0]
        rows.append(
            row(
                "2. ... bytes on the wire, both ways, first run (baseline: open)",
                mine / 1000,
                "KB",
                theirs / 1000,
                mine / theirs,
                "(reference)",
            )
        )
    return rows


def side_by_side(sources: Sources) -> list[dict[str, object]]:
    """Row 4: meshdrop circle members and Syncthing, each pair on its own veth link."""
    why = bench_syncthing.available()
    if why is not None:
        say(why)
        return [row(f"4. side by side with Syncthing: {why}", 0, "", None, None, "")]
    size, count = sources.size, sources.count
    say(f"4. side by side with Syncthing: one {size // MIB} MiB item, {count} of 8 KiB")
    work = sources.work / "side"
    big_st = bench_syncthing.best(
        bench_syncthing.transfers(
            work / "st-big", bench_syncthing.big_item(sources.big_data), REPEATS
        )
    )
    big_md = best_member_transfer(sources, sources.big, 1, "side-big")
    small_st = bench_syncthing.best(
        bench_syncthing.transfers(work / "st-small", bench_syncthing.small_items(count), REPEATS)
    )
    small_md = best_member_transfer(sources, sources.small, count, "side-small")
    name = bench_syncthing.version()
    rows = []
    for label, ours, theirs, target in (
        (f"one {size // MIB} MiB", big_md, big_st, SYNCTHING_BIG_TARGET),
        (f"{count} x 8 KiB", small_md, small_st, SYNCTHING_SMALL_TARGET),
    ):
        for how, mine, base, goal in (
            ("from start", ours.from_start, theirs.from_start, "(reported)"),
            ("from connection", ours.from_connection, theirs.from_connection, f"<= {target} x"),
        ):
            rows.append(
                row(
                    f"4. {label}, circle members, {how} (baseline: {name})",
                    mine,
                    "s",
                    base,
                    mine / base,
                    goal,
                )
            )
    return rows


def best_member_transfer(
    sources: Sources, source_home: Path, count: int, tag: str
) -> bench_syncthing.Transfer:
    """Circle members on a veth link, as Syncthing's pair is: a source at a fixed circle
    port, REPEATS fresh members naming it with --peer (no mDNS, as Syncthing's static
    addresses); from the sink's start (its process), and from its first live peer."""
    results = []
    with bench_syncthing.two_places() as (source_place, sink_place, _):
        fixed = bool(source_place.prefix)  # a namespace of its own: the port is free
        port_args: tuple[str, ...] = ("--circle-port", str(SIDE_PORT)) if fixed else ()
        source = BenchNode(
            source_home, "--no-discovery", *port_args,
            prefix=source_place.prefix, bind=source_place.address,
        )  # fmt: skip
        with running(source):
            peer = f"{source_place.address}:{circle_port(source)}"
            for i in range(REPEATS):
                home = sources.sink(f"{tag}-{i}", member=True)
                started = time.monotonic()
                sink = BenchNode(
                    home, "--no-discovery", "--peer", peer,
                    prefix=sink_place.prefix, bind=sink_place.address,
                )  # fmt: skip
                with running(sink):
                    done, _ = sink.wait(is_bundle, count=count)
                    connected, _ = sink.wait(is_alive)
                results.append(bench_syncthing.Transfer(done - started, done - connected))
                say(f"  meshdrop member {i + 1}/{REPEATS}: {results[-1]}")
                set_aside(home)
    return bench_syncthing.best(results)


def bench_idle(maker: Maker, work: Path, quick: bool) -> list[dict[str, object]]:
    count, seconds = (1000, 30.0) if quick else (10_000, 300.0)
    timers = ("env", "MESHDROP_LAN_TIMERS=ping=10") if quick else ()
    say(f"3. idle: two members of the same {count} bundles, {seconds:.0f} s (making is untimed)")
    scratch = scratch_folder(work, "bench-circle-")
    try:
        first, second = twin_homes(maker, scratch, count)
        join(second, new_circle(first))
        with LinkedPair() as link:
            if link.prefixes is None:
                return [row("3. idle: skipped (needs root and ip netns)", 0, "", None, None, "")]
            nodes = [
                BenchNode(home, prefix=[*prefix, *timers], bind=address)
                for home, prefix, address in zip(
                    (first, second), link.prefixes, link.ADDRESSES, strict=True
                )
            ]
            with running(*nodes):
                for node in nodes:
                    node.wait(is_alive)
                    node.wait(lambda e: e["event"] == "sync")
                time.sleep(5)
                start = [node.status() for node in nodes]
                sent_start = link.sent_by_each()
                time.sleep(seconds)
                sent_end = link.sent_by_each()
                end = [node.status() for node in nodes]
    finally:
        set_aside(scratch)
    per_minute = 60.0 / seconds
    each_way = [(e - s) * per_minute / 1000 for s, e in zip(sent_start, sent_end, strict=True)]
    requests = sum(
        e["served"]["requests"] - s["served"]["requests"] for s, e in zip(start, end, strict=True)
    )
    if quick:
        base, base_how = ISSUE_SYNCTHING_IDLE_KB, "Syncthing 0.5 KB/min, the issue's figure"
    else:
        missing = bench_syncthing.available()
        measured = None if missing else bench_syncthing.idle_bytes(work / "st-idle", 1000, seconds)
        if measured is None:
            base, base_how = ISSUE_SYNCTHING_IDLE_KB, "Syncthing 0.5 KB/min, the issue's figure"
        else:
            base = max(measured) / 1000
            base_how = f"Syncthing measured, busier direction, {seconds:.0f} s, 1000 items"
    window = f"{seconds:.0f} s" + (", MESHDROP_LAN_TIMERS=ping=10" if quick else ", pings 120 s")
    label = f"3. idle, two members of the same {count} bundles ({window})"
    return [
        row(
            f"{label}: KB/min, busier direction (baseline: {base_how})",
            max(each_way),
            "KB/min",
            base,
            max(each_way) / base,
            "<= 1.0 x Syncthing",
        ),
        row(f"{label}: KB/min, other direction", min(each_way), "KB/min", None, None, ""),
        row(f"{label}: requests", requests * per_minute, "per minute", None, None, ""),
    ]


def bench_spread(maker: Maker, work: Path) -> list[dict[str, object]]:
    say(f"5. spread across {SPREAD_NODES} nodes: a circle against the open mesh")
    src = work / "spread-src"
    for name in ("early", "late"):
        (src / name).mkdir(parents=True)
        write_random(src / name / "news.bin", MIB)
    early = maker.pack(src / "early", work / "early.mdrop", "early")
    late = maker.pack(src / "late", work / "late.mdrop", "late")
    results = {member: spread(maker, work, early, late, member) for member in (False, True)}
    (open_start, open_new), (circle_start, circle_new) = results[False], results[True]
    label = f"5. spread to all of {SPREAD_NODES} circle members (baseline: open nodes)"
    goal = f"<= {SPREAD_TARGET} x open"
    return [
        row(f"{label}: from start", circle_start, "s", open_start, circle_start / open_start, goal),
        row(f"{label}: a new bundle", circle_new, "s", open_new, circle_new / open_new, goal),
    ]


def spread(maker: Maker, work: Path, early: Path, late: Path, member: bool) -> tuple[float, float]:
    kind = "circle" if member else "open"
    homes = [maker.home(work / f"spread-{kind}-{i}") for i in range(SPREAD_NODES)]
    md("--home", homes[0], "import", early, "-q")
    if member:
        invite = new_circle(homes[0])
        for home in homes[1:]:
            join(home, invite)
    with Netns() as ns:
        nodes: list[BenchNode] = []
        try:
            for home in homes:
                nodes.append(BenchNode(home, prefix=ns.prefix))
            started = max(node.started for node in nodes)
            first = max(
                node.wait(lambda e: is_bundle(e) and e["name"] == "early")[0] for node in nodes[1:]
            )
            for node in nodes:
                node.wait(is_alive, count=SPREAD_NODES - 1)
            imported = time.monotonic()
            md("--home", homes[0], "import", late, "-q")
            second = max(
                node.wait(lambda e: is_bundle(e) and e["name"] == "late")[0] for node in nodes[1:]
            )
        finally:
            for node in nodes:
                node.stop()
    say(f"  {kind}: {first - started:.2f} s from start, {second - imported:.2f} s new bundle")
    for home in homes:
        set_aside(home)
    return first - started, second - imported


ROWS = (1, 2, 3, 4, 5)


def run(workdir: Path, quick: bool, only: tuple[int, ...] = ROWS) -> list[dict[str, object]]:
    work = workdir / "bench-circle"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    maker = Maker(work)
    sources = Sources(maker, work, (64 if quick else 512) * MIB, 200 if quick else 1000)
    benches: dict[int, Callable[[], list[dict[str, object]]]] = {
        1: lambda: bench_big(sources),
        2: lambda: bench_small(sources),
        3: lambda: bench_idle(maker, work, quick),
        4: lambda: side_by_side(sources),
        5: lambda: bench_spread(maker, work),
    }
    rows: list[dict[str, object]] = []
    for number in only:
        rows += benches[number]()
    os.sync()
    set_aside(work)
    return rows


def main(argv: list[str] | None = None) -> int:
    rows = argparse.ArgumentParser(add_help=False)
    rows.add_argument("--rows", type=row_numbers, default=ROWS)
    chosen, rest = rows.parse_known_args(argv)  # --help: the docstring says --rows
    return area_main(
        lambda workdir, quick: run(workdir, quick, chosen.rows),
        __doc__,
        "64 MiB, 200 small, 1000 idle over 30 s (a few minutes)",
        rest,
    )


def row_numbers(text: str) -> tuple[int, ...]:
    try:
        numbers = tuple(sorted({int(part) for part in text.split(",")}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not row numbers: {text!r} (say e.g. 1,2)") from None
    if not numbers or not set(numbers) <= set(ROWS):
        raise argparse.ArgumentTypeError(f"rows are {ROWS[0]} to {ROWS[-1]}, not {text!r}")
    return numbers


if __name__ == "__main__":
    sys.exit(main())
