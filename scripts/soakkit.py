"""The parts of the churning-mesh soak (scripts/soak.py; docs/THREATS.md, "Churning mesh"):
nodes in network namespaces on one bridge (tests/integration/test_lan_netns.py's ``Lan``,
tests/lankit.py's ``NodeProc``), SIGKILL and restart, links down and up, FAT32 stick
images, and the per-process figures read from /proc. The kernel here has no FAT driver:
"plugging" a stick is mcopy out of the image into a folder, then ``meshdrop import``."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path[:0] = [str(TESTS), str(TESTS / "integration")]

from lankit import NodeProc  # noqa: E402
from test_lan_netns import Lan  # noqa: E402

from conftest import command_env, meshdrop_executable  # noqa: E402

STICK_KIB = 65536  # mkfs.vfat makes FAT32 from about 33 MiB up; the file is sparse
COMMAND_TIMEOUT = 120.0
TROUBLE_EVENTS = ("error", "bad-peer")


@dataclass
class Ran:
    code: int
    out: str
    err: str


def meshdrop(*args: str | Path, timeout: float = COMMAND_TIMEOUT) -> Ran:
    """The installed ``meshdrop`` command, run in the driver's (root) namespace: every
    command the soak runs besides the nodes works on files only."""
    proc = subprocess.run(
        [meshdrop_executable(), *map(str, args)],
        capture_output=True,
        text=True,
        env=command_env(),
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return Ran(proc.returncode, proc.stdout, proc.stderr)


def must(*args: str | Path) -> str:
    ran = meshdrop(*args)
    if ran.code != 0:
        raise RuntimeError(f"meshdrop {' '.join(map(str, args))}: exit {ran.code}: {ran.err}")
    return ran.out


def tool(*args: str | Path) -> str:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))}: {proc.stderr.strip()}")
    return proc.stdout


class SoakNode(NodeProc):
    """A NodeProc whose stderr is read as it comes (a node that runs for half an hour
    must not block on a full pipe); the last lines are kept for the report."""

    def __init__(self, home: Path, ns: str) -> None:
        super().__init__(home, bind="0.0.0.0", prefix=["ip", "netns", "exec", ns])
        self._tail: collections.deque[str] = collections.deque(maxlen=50)
        self.tracebacks = 0
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._tail.append(line)
            self.tracebacks += line.startswith("Traceback")

    def stderr(self) -> str:
        return "".join(self._tail)

    def troubles(self) -> list[str]:
        """What went wrong inside the node: its "error" events (an exception a sync did not
        expect), "bad-peer" events (an honest peer penalised) and tracebacks on stderr."""
        with self._lock:
            found = [
                f"{e['event']}: {e.get('reason', '')}"
                for e in self.events
                if e.get("event") in TROUBLE_EVENTS
            ]
        return found + ["a traceback on stderr"] * self.tracebacks


@dataclass
class Sample:
    at: float  # seconds since the soak began
    rss_kib: int
    fds: int
    threads: int


def process_figures(pid: int, at: float) -> Sample | None:
    """Resident memory, open descriptors and threads of process ``pid`` (None if gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if "VmRSS" not in fields:  # a zombie: exited, not yet reaped
        return None
    return Sample(at, int(fields["VmRSS"].split()[0]), fds, int(fields["Threads"]))


@dataclass
class Host:
    """One node of the mesh: its namespace, home, process and history."""

    number: int
    ns: str
    home: Path
    steady: bool  # never killed: its figures judge leaks over the whole run
    node: SoakNode | None = None
    link_up: bool = True
    starts: int = 0
    samples: list[Sample] = field(default_factory=list)
    troubles: list[str] = field(default_factory=list)  # of the node's runs so far


class Mesh:
    """``count`` hosts on one bridge, each trusting the soak's publisher."""

    def __init__(self, work: Path, count: int, publisher_pub: Path, steady: int) -> None:
        self.work = work
        self.lan = Lan()
        self.lan.create()
        self.hosts: list[Host] = []
        try:
            for number in range(1, count + 1):
                ns = self.lan.add_host(number)
                home = work / f"node{number:02d}"
                must("--home", home, "trust", "add", "--yes", publisher_pub)
                self.hosts.append(Host(number, ns, home, steady=number <= steady))
        except BaseException:
            self.lan.delete()
            raise

    def start(self, host: Host) -> None:
        host.node = SoakNode(host.home, host.ns)
        host.starts += 1

    def sigkill(self, host: Host) -> None:
        assert host.node is not None
        host.node.kill()
        host.troubles += host.node.troubles()
        host.node = None

    def set_link(self, host: Host, up: bool) -> None:
        self.lan.run("-n", host.ns, "link", "set", "eth0", "up" if up else "down")
        host.link_up = up

    def sample(self, at: float) -> None:
        for host in self.hosts:
            node = host.node
            if node is not None and node.proc.poll() is None:
                figures = process_figures(node.proc.pid, at)
                if figures is not None:
                    host.samples.append(figures)

    def stop(self) -> list[str]:
        """Stop every node (SIGTERM, all at once) and delete the namespaces; the exit
        codes other than 0, as lines for the report."""
        running = [h for h in self.hosts if h.node is not None]
        for host in running:
            assert host.node is not None
            host.node.terminate()
        problems = []
        for host in running:
            assert host.node is not None
            code = host.node.stop()
            host.troubles += host.node.troubles()
            if code != 0:
                problems.append(f"node{host.number:02d} exited {code}: {host.node.stderr()[-500:]}")
            host.node = None
        self.lan.delete()
        return problems


def plug_stick(work: Path, source: Path, target: Path, label: str) -> dict[str, int]:
    """Export ``source``'s bundles onto a fresh FAT32 image, copy them off the image into
    a folder and import that into ``target``; the outcomes of the import, counted."""
    exported, unplugged = work / f"{label}-out", work / f"{label}-in"
    exported.mkdir()
    unplugged.mkdir()
    image = work / f"{label}.img"
    must("--home", source, "export", exported, "--open", "--quiet")
    tool("mkfs.vfat", "-F", "32", "-C", image, str(STICK_KIB))
    tool("mcopy", "-s", "-i", image, exported / "meshdrop", "::/")
    tool("mcopy", "-s", "-n", "-i", image, "::/meshdrop", unplugged)
    ran = meshdrop("--home", target, "import", unplugged, "--json", "--quiet")
    if ran.code not in (0, 1):  # 1: some file refused (say, signed by a key not yet known)
        raise RuntimeError(f"stick import into {target.name}: exit {ran.code}: {ran.err}")
    outcomes: collections.Counter[str] = collections.Counter()
    for line in ran.out.splitlines():
        if line.strip():
            outcomes[json.loads(line)["outcome"]] += 1
    for path in (exported, unplugged):
        subprocess.run(["rm", "-rf", str(path)], check=True)
    image.unlink()
    return dict(outcomes)


def listing(home: Path) -> tuple[list[dict[str, Any]] | None, str]:
    """What ``meshdrop ls --json`` lists for ``home`` (None and the error if it failed)."""
    ran = meshdrop("--home", home, "ls", "--json")
    if ran.code != 0:
        return None, ran.err.strip()
    return [json.loads(line) for line in ran.out.splitlines() if line.strip()], ""
