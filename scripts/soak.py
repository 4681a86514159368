"""The churning-mesh soak (issue 21; docs/THREATS.md, "Churning mesh (soak)"): N nodes in
network namespaces on one bridge, finding each other by mDNS, while a driver publishes
bundles and new versions, updates the publisher's record, SIGKILLs and restarts nodes,
takes links down and up and carries FAT32 stick images between nodes. Every node's
``ls`` is sampled throughout (only bundles the driver finished packing may appear), and
each node's memory, descriptors and threads are kept as time series. Then the convergence
time after the last change; then a quiet phase (the same churn, nothing new published)
whose figures give the leak verdict, as what the nodes hold no longer grows; then
``fsck`` of every home."""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from soakkit import Host, Mesh, listing, must, plug_stick
from soakreport import clock, fsck_home, growth, judge, passed, peaks, table

EXAMPLE = """example:
  sudo scripts/soak                                10 nodes for 30 minutes
  sudo scripts/soak --nodes 4 --minutes 0.5 --quiet-minutes 0.4 --json
                                                   about what the test suite runs"""

ACTIONS = ("publish", "kill", "partition", "stick", "publisher-update")
WEIGHTS = (40, 15, 15, 20, 5)
QUIET_ACTIONS = ("kill", "partition", "stick")  # nothing new: what nodes hold stays
QUIET_WEIGHTS = (15, 15, 20)
PROGRESS_EVERY = 30.0  # seconds between progress lines on stderr


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/soak",
        description="Run N meshdrop nodes in network namespaces while publishing, killing,\n"
        "partitioning and carrying sticks; then check convergence, fsck and leaks\n"
        "(docs/THREATS.md, 'Churning mesh (soak)'). Needs root, ip netns, mkfs.vfat and\n"
        "mtools. Exits 1 if any check failed.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--nodes", type=int, default=10, help="how many nodes (default 10)")
    parser.add_argument("--minutes", type=float, default=30.0, help="churn time (default 30)")
    parser.add_argument(
        "--quiet-minutes",
        type=float,
        default=None,
        help="then churn without new content, the leak verdict's phase (default: a third"
        " of --minutes)",
    )
    parser.add_argument("--seed", type=int, default=None, help="the random seed (default: any)")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between changes")
    parser.add_argument("--sample-every", type=float, default=2.0, help="seconds between samples")
    parser.add_argument(
        "--ls-per-sample",
        type=int,
        default=3,
        help="nodes whose ls is checked at each sample, in turn (each ls is a process)",
    )
    parser.add_argument(
        "--converge-timeout", type=float, default=300.0, help="the bound on convergence (s)"
    )
    parser.add_argument("--workdir", type=Path, help="keep the homes here (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="one JSON object, not the table")
    return parser.parse_args(argv)


class Soak:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.seed = args.seed if args.seed is not None else random.randrange(2**32)
        self.rng = random.Random(self.seed)
        self.began = time.monotonic()
        self.publisher = work / "publisher"
        must("publisher", "new", self.publisher, "--name", "Soak Publisher", "--unencrypted")
        self.mesh = Mesh(
            work, args.nodes, self.publisher / "publisher.pub", max(1, args.nodes // 3)
        )
        self.lock = threading.Lock()
        self.finished: set[tuple[str, int]] = set()  # packed, before any node got it
        self.latest: dict[str, int] = {}
        self.record_version = 1
        self.counts = dict.fromkeys(ACTIONS, 0)
        self.restarts = 0
        self.bad_listings: list[str] = []
        self.listings = 0
        self.down_until: dict[int, float] = {}  # host number: when to restart it
        self.cut_until: dict[int, float] = {}  # host number: when to bring its link up
        self.sampling = threading.Event()

    def now(self) -> float:
        return time.monotonic() - self.began

    # The changes

    def publish(self) -> bool:
        number = self.counts["publish"]
        names = sorted(self.latest)
        again = names and self.rng.random() < 0.3  # a new version of a bundle already out
        name = self.rng.choice(names) if again else f"soak-{number:04d}"
        version = self.latest.get(name, 0) + 1
        src = self.work / "src" / f"{name}-v{version}"
        src.mkdir(parents=True)
        for index in range(self.rng.randint(1, 4)):
            size = self.rng.choice((100, 5000, 70000, 300000))
            (src / f"file{index}.bin").write_bytes(self.rng.randbytes(size))
        out = self.work / "bundles" / f"{name}-v{version}.mdrop"
        out.parent.mkdir(exist_ok=True)
        must("pack", src, "--publisher", self.publisher, "--name", name,
             "--version", str(version), "-o", out, "--quiet")  # fmt: skip
        shutil.rmtree(src)
        with self.lock:
            self.finished.add((name, version))
            self.latest[name] = version
        must("--home", self.rng.choice(self.mesh.hosts).home, "import", out, "--quiet")
        return True

    def kill(self) -> bool:
        victims = [h for h in self.mesh.hosts if not h.steady and h.node is not None]
        if not victims:
            return False
        host = self.rng.choice(victims)
        self.mesh.sigkill(host)
        self.down_until[host.number] = self.now() + self.rng.uniform(2, 12)
        return True

    def partition(self) -> bool:
        up = [h for h in self.mesh.hosts if h.link_up]
        if len(up) <= 1:
            return False
        host = self.rng.choice(up)
        self.mesh.set_link(host, up=False)
        self.cut_until[host.number] = self.now() + self.rng.uniform(4, 20)
        return True

    def stick(self) -> bool:
        source, target = self.rng.sample(self.mesh.hosts, 2)
        plug_stick(self.work, source.home, target.home, f"stick{self.counts['stick']}")
        return True

    def publisher_update(self) -> bool:
        must("publisher", "add-signer", self.publisher, "--unencrypted")
        self.record_version += 1
        home = self.rng.choice(self.mesh.hosts).home
        must("--home", home, "import", self.publisher / "publisher.pub", "--quiet")
        return True

    def act(self, action: str) -> None:
        done = {
            "publish": self.publish,
            "kill": self.kill,
            "partition": self.partition,
            "stick": self.stick,
            "publisher-update": self.publisher_update,
        }[action]()
        if done:
            self.counts[action] += 1

    def restore_due(self, everything: bool = False) -> None:
        hosts = {h.number: h for h in self.mesh.hosts}
        for number, when in list(self.down_until.items()):
            if everything or self.now() >= when:
                self.mesh.start(hosts[number])
                self.restarts += 1
                del self.down_until[number]
        for number, when in list(self.cut_until.items()):
            if everything or self.now() >= when:
                self.mesh.set_link(hosts[number], up=True)
                del self.cut_until[number]

    # Watching

    def check_listings(self, host: Host) -> set[tuple[str, int]] | None:
        found, error = listing(host.home)
        with self.lock:
            self.listings += 1
            if found is None:
                self.bad_listings.append(f"{self.now():.1f}s node{host.number:02d}: ls: {error}")
                return None
            listed = {(str(b["name"]), int(b["version"])) for b in found}
            for entry in found:
                key = (str(entry["name"]), int(entry["version"]))
                if key not in self.finished or entry["state"] != "ok":
                    self.bad_listings.append(
                        f"{self.now():.1f}s node{host.number:02d} listed {key} ({entry['state']})"
                    )
        return listed

    def sampler(self) -> None:
        turn = 0
        while self.sampling.is_set():
            started = time.monotonic()
            self.mesh.sample(self.now())
            for _ in range(min(self.args.ls_per_sample, len(self.mesh.hosts))):
                self.check_listings(self.mesh.hosts[turn % len(self.mesh.hosts)])
                turn += 1
            time.sleep(max(0.0, self.args.sample_every - (time.monotonic() - started)))

    def converged(self) -> bool:
        with self.lock:
            wanted = set(self.latest.items())
        return all(self.check_listings(h) == wanted for h in self.mesh.hosts)

    def records_converged(self) -> bool:
        for host in self.mesh.hosts:
            trusted = json.loads(must("--home", host.home, "trust", "ls", "--json"))
            if trusted["version"] != self.record_version:
                return False
        return True

    def progress(self, phase: str, seconds: float, ends: float) -> None:
        """One line on stderr: where the phase is, what the run did, how long is left."""
        running = sum(h.node is not None for h in self.mesh.hosts)
        cut = sum(not h.link_up for h in self.mesh.hosts)
        with self.lock:
            published, bad = len(self.finished), len(self.bad_listings)
        counts = self.counts
        print(
            f"soak, {phase}: {clock(seconds - (ends - self.now()))} of {clock(seconds)}: "
            f"{running} of {len(self.mesh.hosts)} nodes running, {cut} cut off; "
            f"{published} bundles published, {counts['kill']} kills, "
            f"{counts['partition']} partitions, {counts['stick']} sticks, "
            f"{counts['publisher-update']} publisher updates; {self.listings} ls samples, "
            f"{bad} bad; {clock(max(0.0, ends - self.now()))} left",
            file=sys.stderr,
            flush=True,
        )

    # The run

    def churn(
        self,
        seconds: float,
        actions: tuple[str, ...],
        weights: tuple[int, ...],
        phase: str,
        every_kind_first: bool = False,
    ) -> None:
        """Changes for ``seconds``, one every ``--every`` seconds (0.5 to 1.5 times), then
        every node running and every link up."""
        ends = self.now() + seconds
        step = 0
        next_report = self.now() + PROGRESS_EVERY
        while self.now() < ends:
            if self.now() >= next_report:
                self.progress(phase, seconds, ends)
                next_report += PROGRESS_EVERY
            self.restore_due()
            # every kind of change once first, so that a short run has each of them
            first = every_kind_first and step < len(actions)
            self.act(actions[step] if first else self.rng.choices(actions, weights)[0])
            step += 1
            time.sleep(self.rng.uniform(0.5, 1.5) * self.args.every)
        self.restore_due(everything=True)

    def converge(self, since: float) -> float | None:
        """Seconds from ``since`` until every node holds everything (None: not within
        ``--converge-timeout``)."""
        print("soak: churn over; waiting for every node to hold everything", file=sys.stderr)
        while self.now() < since + self.args.converge_timeout:
            if self.converged() and self.records_converged():
                return self.now() - since
            time.sleep(1.0)
        return None

    def run(self) -> dict[str, Any]:
        for host in self.mesh.hosts:
            self.mesh.start(host)
        self.sampling.set()
        watcher = threading.Thread(target=self.sampler, daemon=True)
        watcher.start()
        self.churn(self.args.minutes * 60, ACTIONS, WEIGHTS, "churn", every_kind_first=True)
        last_change = self.now()
        convergence = self.converge(last_change)
        # The quiet phase: the same churn without new content, so that what a node holds
        # stays the same and its memory may not grow with it: the leak verdict's phase.
        quiet_began = self.now()
        self.churn(self.args.quiet_minutes * 60, QUIET_ACTIONS, QUIET_WEIGHTS, "quiet churn")
        quiet_ended = self.now()
        quiet_convergence = self.converge(quiet_ended)
        self.sampling.clear()
        watcher.join(120)
        warmup = min(60.0, (quiet_ended - quiet_began) / 5)
        leaks = {f"node{h.number:02d}": judge(h, quiet_began + warmup, quiet_ended)
                 for h in self.mesh.hosts if h.steady}  # fmt: skip
        growing = {f"node{h.number:02d}": growth(h, min(60.0, last_change / 5), last_change)
                   for h in self.mesh.hosts if h.steady}  # fmt: skip
        node_problems = self.mesh.stop()
        fsck = {f"node{h.number:02d}": fsck_home(h) for h in self.mesh.hosts}
        return {
            "seed": self.seed,
            "duration_s": round(last_change, 1),
            "nodes": len(self.mesh.hosts),
            "kills": self.counts["kill"],
            "restarts": self.restarts,
            "partitions": self.counts["partition"],
            "sticks": self.counts["stick"],
            "bundles_published": len(self.finished),
            "bundle_names": len(self.latest),
            "publisher_updates": self.counts["publisher-update"],
            "convergence_s": None if convergence is None else round(convergence, 1),
            "quiet_s": round(quiet_ended - quiet_began, 1),
            "quiet_convergence_s": (
                None if quiet_convergence is None else round(quiet_convergence, 1)
            ),
            "bundles_held": len(self.latest),
            "ls_samples": self.listings,
            "bad_listings": self.bad_listings,
            "fsck": fsck,
            "node_exits": node_problems,
            "node_troubles": {
                f"node{h.number:02d}": h.troubles for h in self.mesh.hosts if h.troubles
            },
            "peaks": {f"node{h.number:02d}": peaks(h) for h in self.mesh.hosts},
            "leaks": leaks,
            "growing_phase": growing,
            "series": {  # [seconds, RSS KiB, descriptors, threads] per sample
                f"node{h.number:02d}": [
                    [round(s.at, 1), s.rss_kib, s.fds, s.threads] for s in h.samples
                ]
                for h in self.mesh.hosts
            },
        }


def stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so that the nodes are stopped and the namespaces deleted


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.quiet_minutes is None:
        args.quiet_minutes = args.minutes / 3
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    if args.nodes < 2:
        print("scripts/soak: --nodes must be at least 2", file=sys.stderr)
        return 2
    work = args.workdir or Path(tempfile.mkdtemp(prefix="meshdrop-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    soak: Soak | None = None
    try:
        soak = Soak(args, work)
        result = soak.run()
    finally:
        if soak is not None and soak.mesh.lan.namespaces:  # a failure mid-run
            soak.sampling.clear()
            soak.mesh.stop()
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    result["passed"] = passed(result)
    print(json.dumps(result, sort_keys=True) if args.json else table(result))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
