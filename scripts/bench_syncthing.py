"""Syncthing 1.19 (Debian's `syncthing` package) driven side by side with meshdrop: two
instances, each in a network namespace of its own, joined by one veth link (or, where
namespaces are unavailable, both on 127.0.0.1 with distinct ports).

Each instance gets a config.xml written here, nothing left at Syncthing's defaults that
talks to anyone but the other instance: static addresses (`tcp://` only), local and
global discovery, relays, NAT traversal, STUN, usage and crash reporting and upgrade
checks all off. The namespaces hold only their loopback and the veth link (no route out
of them), so no packet can leave the machine whatever Syncthing tries. The bench installs
nothing: if `syncthing` is missing, ``available()`` says so and the rows say so.

Timing: the sending instance is started first and has scanned (hashed) its folder before
the clock starts, as a meshdrop source node has imported its bundles. Then the receiving
instance is started: "from start" is from its start to the moment it holds every item
(the last `ItemFinished`, or its folder turning idle with nothing needed), "from
connection" from its `DeviceConnected` event to the same moment. Events come from the
REST API (/rest/events, long-polled by a small reader running beside the instance), each
timed by Syncthing's own timestamp: the API starts answering only after a receiver has
often connected, and then hands over what happened meanwhile in one batch.

``python scripts/bench_syncthing.py [--quick]`` runs Syncthing alone (the two transfers
and the idle cost) and prints the rows; scripts/bench_circle.py puts them beside meshdrop.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from bench_lan import MIB, REPEATS, SMALL_BYTES, LinkedPair, free_port, write_random
from benchkit import area_main, set_aside

WAIT = 900.0
FOLDER = "bench"
EVENTS = "DeviceConnected,ItemFinished,StateChanged"
DATA_PORT = 22000
GUI_PORT = 8384
ITEM_BYTES = SMALL_BYTES

# The default event mask, not an events= filter: Syncthing subscribes that one at start,
# whereas a filtered subscription begins at its first request and would miss what happened
# before the REST API answered (a receiver often connects within the same second).
EVENT_READER = """
import datetime, json, re, sys, time, urllib.request
url, key, wanted, since = sys.argv[1], sys.argv[2], set(sys.argv[3].split(",")), 0

def monotonic(stamp):  # Syncthing's own wall-clock time of the event, on our clock
    stamp = re.sub(r"(\\.\\d{6})\\d+", r"\\1", stamp).replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(stamp).timestamp() - time.time() + time.monotonic()

while True:
    query = f"{url}/rest/events?since={since}&timeout=20"
    request = urllib.request.Request(query, headers={"X-API-Key": key})
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            events = json.load(reply)
    except OSError:
        time.sleep(0.05)
        continue
    for event in events:
        since = max(since, event["id"])
        if event["type"] in wanted:
            print(json.dumps({"at": monotonic(event["time"]), **event}), flush=True)
"""


def say(message: str) -> None:
    print(f"bench_syncthing: {message}", file=sys.stderr, flush=True)


def available() -> str | None:
    """None if Syncthing can run here, else why not (the bench installs nothing)."""
    if shutil.which("syncthing") is None:
        return "syncthing is not installed (Debian: apt-get install syncthing); rows skipped"
    return None


def version() -> str:
    out = subprocess.run(["syncthing", "--version"], capture_output=True, text=True).stdout
    return " ".join(out.split()[:2]) or "syncthing"


@dataclass
class Place:
    """Where one instance runs: a namespace prefix (or none), the address others reach
    it at, its data port and the port of its REST API (on the instance's 127.0.0.1)."""

    prefix: list[str]
    address: str
    port: int
    gui_port: int


@contextlib.contextmanager
def two_places() -> Iterator[tuple[Place, Place, LinkedPair | None]]:
    """Two namespaces on a veth link (as root with `ip netns`), else 127.0.0.1 twice."""
    with LinkedPair() as link:
        if link.prefixes is not None:
            places = tuple(
                Place(list(prefix), address, DATA_PORT, GUI_PORT)
                for prefix, address in zip(link.prefixes, link.ADDRESSES, strict=True)
            )
            yield places[0], places[1], link
            return
        say("no network namespaces: both instances on 127.0.0.1, byte counts skipped")
        yield (
            Place([], "127.0.0.1", free_port(), free_port()),
            Place([], "127.0.0.1", free_port(), free_port()),
            None,
        )


def generate(home: Path) -> str:
    """Make ``home``'s key and certificate; its device ID."""
    out = subprocess.run(
        ["syncthing", "generate", f"--home={home}", "--no-default-folder", "--skip-port-probing"],
        capture_output=True,
        text=True,
        check=True,
        env=_env(home),
    )
    for line in (out.stdout + out.stderr).splitlines():
        if "Device ID:" in line:
            return line.split("Device ID:", 1)[1].strip()
    raise RuntimeError(f"syncthing generate printed no device ID:\n{out.stdout}{out.stderr}")


def _env(home: Path) -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "TZ")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(HOME=str(home), STNOUPGRADE="1", STNORESTART="1", STNODEFAULTFOLDER="1")
    return env


def config_xml(me: tuple[str, Place], other: tuple[str, Place], folder: Path, api_key: str) -> str:
    """A config.xml that lets the instance talk to ``other`` only, and to nobody else."""
    (my_id, mine), (other_id, theirs) = me, other
    devices = "".join(
        f'<device id="{device}" name="{name}" compression="metadata" introducer="false">'
        f"<address>tcp://{place.address}:{place.port}</address></device>"
        for device, name, place in ((my_id, "a", mine), (other_id, "b", theirs))
    )
    options = {
        "listenAddress": f"tcp://{mine.address}:{mine.port}",
        "globalAnnounceEnabled": "false",
        "localAnnounceEnabled": "false",
        "relaysEnabled": "false",
        "natEnabled": "false",
        "urAccepted": "-1",
        "urURL": "",
        "autoUpgradeIntervalH": "0",
        "releasesURL": "",
        "crashReportingEnabled": "false",
        "crashReportingURL": "",
        "startBrowser": "false",
        "stunKeepaliveStartS": "0",
        "stunServer": "",
        "globalAnnounceServer": "",
        "announceLANAddresses": "false",
        "setLowPriority": "false",  # the default renices it: an unfair handicap here
        "reconnectionIntervalS": "1",
    }
    option_xml = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in options.items())
    return (
        '<configuration version="36">'
        f'<folder id="{FOLDER}" label="{FOLDER}" path="{escape(str(folder))}" '
        'type="sendreceive" rescanIntervalS="3600" fsWatcherEnabled="false">'
        f'<device id="{my_id}"></device><device id="{other_id}"></device></folder>'
        f"{devices}"
        f'<gui enabled="true" tls="false"><address>127.0.0.1:{mine.gui_port}</address>'
        f"<apikey>{api_key}</apikey></gui>"
        f"<options>{option_xml}</options>"
        "</configuration>\n"
    )


def pulled(event: dict[str, Any]) -> bool:
    """The folder turned idle after pulling (not after its start-up scan): if it then needs
    nothing, that is when it held everything (ItemFinished events may have been dropped:
    the REST API keeps the last 1000)."""
    data = event["data"]
    return bool(
        event["type"] == "StateChanged"
        and data.get("from") == "syncing"
        and data.get("to") == "idle"
    )


@dataclass
class Transfer:
    """One transfer: seconds from the receiver's start, and from its connection."""

    from_start: float
    from_connection: float


class Instance:
    """A running `syncthing serve` and the events its REST API reports, each with the
    (monotonic) time it was read."""

    def __init__(self, home: Path, folder: Path, place: Place, api_key: str) -> None:
        self.home, self.folder, self.place, self.api_key = home, folder, place, api_key
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [*place.prefix, "syncthing", "serve", f"--home={home}", "--no-browser",
             "--no-restart", "--no-upgrade", f"--logfile={home / 'log.txt'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL, env=_env(home),
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{place.gui_port}"
        self.reader = subprocess.Popen(
            [*place.prefix, sys.executable, "-c", EVENT_READER, self.url, api_key, EVENTS],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.reader.stdout is not None
        for line in self.reader.stdout:
            with contextlib.suppress(ValueError), self._lock:
                self.events.append(json.loads(line))

    def matching(self, match: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if match(e)]

    def get(self, path: str) -> Any:
        """GET a REST path, through curl in the instance's namespace."""
        out = subprocess.run(
            [*self.place.prefix, "curl", "-sf", "-m", "30", "-H", f"X-API-Key: {self.api_key}",
             f"{self.url}{path}"],
            capture_output=True, text=True,
        )  # fmt: skip
        if out.returncode != 0:
            raise OSError(f"GET {path}: curl exited {out.returncode}")
        return json.loads(out.stdout)

    def folder_status(self) -> dict[str, Any]:
        found: dict[str, Any] = self.get(f"/rest/db/status?folder={FOLDER}")
        return found

    def wait_scanned(self, files: int) -> None:
        """Until the folder is idle and holds ``files`` files (its scan is done)."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(OSError, ValueError):
                status = self.folder_status()
                if status["state"] == "idle" and status["localFiles"] == files:
                    return
            time.sleep(0.5)
        raise RuntimeError(f"syncthing in {self.home.name} did not scan its folder")

    def wait_holding(self, files: int) -> tuple[float, float]:
        """Until the folder holds ``files`` items: (when that was, when it connected)."""
        deadline = time.monotonic() + WAIT
        checked_idle: set[int] = set()
        while time.monotonic() < deadline:
            self._check_alive()
            finished = self.matching(
                lambda e: e["type"] == "ItemFinished" and e["data"].get("error") is None
            )
            names = {e["data"]["item"] for e in finished}
            done: float | None = max(e["at"] for e in finished) if len(names) >= files else None
            for idle in self.matching(pulled):
                if done is None and idle["id"] not in checked_idle:
                    checked_idle.add(idle["id"])
                    with contextlib.suppress(OSError, ValueError):
                        status = self.folder_status()
                        if status["needTotalItems"] == 0 and status["localFiles"] == files:
                            done = idle["at"]
            connected = self.matching(lambda e: e["type"] == "DeviceConnected")
            if done is not None and connected:
                return done, connected[0]["at"]
            time.sleep(0.05)
        raise RuntimeError(f"syncthing in {self.home.name}: timed out waiting for {files} items")

    def _check_alive(self) -> None:
        if self.proc.poll() is not None:
            log = self.home / "log.txt"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"syncthing in {self.home.name} exited:\n{tail}")

    def stop(self) -> None:
        for proc in (self.proc, self.reader):
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(60)


class Pair:
    """A configured sending home and a receiving identity that share one folder. Each
    receiving run gets a fresh home and folder with the same key and certificate (so the
    sender's config still names it) and so starts from nothing, as a new device does."""

    def __init__(self, work: Path, sender: Place, receiver: Place) -> None:
        self.work = work
        self.places = (sender, receiver)
        self.sender_home = work / "st-sender"
        self.sender_folder = work / "st-sender-folder"
        self.identity = work / "st-receiver-identity"
        self.keys = (secrets.token_urlsafe(24), secrets.token_urlsafe(24))
        self.ids = (generate(self.sender_home), generate(self.identity))
        self._write_config(0, self.sender_home, self.sender_folder)

    def _write_config(self, which: int, home: Path, folder: Path) -> None:
        (folder / ".stfolder").mkdir(parents=True, exist_ok=True)
        me = (self.ids[which], self.places[which])
        other = (self.ids[1 - which], self.places[1 - which])
        (home / "config.xml").write_text(config_xml(me, other, folder, self.keys[which]))

    def start_sender(self) -> Instance:
        return Instance(self.sender_home, self.sender_folder, self.places[0], self.keys[0])

    def start_receiver(self, run: int) -> Instance:
        home, folder = self.work / f"st-receiver-{run}", self.work / f"st-receiver-folder-{run}"
        home.mkdir()
        for name in ("cert.pem", "key.pem"):
            shutil.copyfile(self.identity / name, home / name)
        self._write_config(1, home, folder)
        return Instance(home, folder, self.places[1], self.keys[1])


def transfers(work: Path, fill: Callable[[Path], int], repeats: int) -> list[Transfer]:
    """Fill a sender's folder (``fill`` returns how many files it wrote), let it scan,
    then time ``repeats`` fresh receivers, one after another, until each holds them all."""
    work.mkdir(parents=True)
    results = []
    with two_places() as (sender_place, receiver_place, _):
        pair = Pair(work, sender_place, receiver_place)
        files = fill(pair.sender_folder)
        sender = pair.start_sender()
        try:
            sender.wait_scanned(files)
            for run in range(repeats):
                receiver = pair.start_receiver(run)
                try:
                    done, connected = receiver.wait_holding(files)
                finally:
                    receiver.stop()
                results.append(Transfer(done - receiver.started, done - connected))
                say(f"  Syncthing receiver {run + 1}/{repeats}: {results[-1]}")
                set_aside(receiver.home)
                set_aside(receiver.folder)
        finally:
            sender.stop()
    set_aside(pair.sender_folder)
    return results


def best(results: list[Transfer]) -> Transfer:
    return Transfer(min(r.from_start for r in results), min(r.from_connection for r in results))


def big_item(source: Path) -> Callable[[Path], int]:
    """A folder filler: ``source`` hard-linked (else copied) in as the one item."""

    def fill(folder: Path) -> int:
        target = folder / source.name
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
        return 1

    return fill


def small_items(count: int) -> Callable[[Path], int]:
    def fill(folder: Path) -> int:
        for i in range(count):
            (folder / f"item-{i:05d}.bin").write_bytes(os.urandom(ITEM_BYTES))
        return count

    return fill


def idle_bytes(work: Path, items: int, seconds: float) -> tuple[float, float] | None:
    """Two instances in sync on ``items`` small items, left alone for ``seconds``: the
    bytes each sent over the link per minute (frames: all headers included), or None
    without namespaces."""
    with two_places() as (sender_place, receiver_place, link):
        if link is None:
            return None
        (work / "idle").mkdir(parents=True)
        pair = Pair(work / "idle", sender_place, receiver_place)
        small_items(items)(pair.sender_folder)
        sender = pair.start_sender()
        receiver: Instance | None = None
        try:
            sender.wait_scanned(items)
            receiver = pair.start_receiver(0)
            receiver.wait_holding(items)
            time.sleep(5)  # the index exchange and completion messages settle
            first = link.sent_by_each()
            time.sleep(seconds)
            last = link.sent_by_each()
        finally:
            if receiver is not None:
                receiver.stop()
            sender.stop()
    per_minute = 60.0 / seconds
    return (last[0] - first[0]) * per_minute, (last[1] - first[1]) * per_minute


def row(name: str, value: float, unit: str) -> dict[str, object]:
    return {
        "name": name,
        "value": round(value, 3),
        "unit": unit,
        "baseline": None,
        "ratio": None,
        "target": "",
    }


def run(workdir: Path, quick: bool) -> list[dict[str, object]]:
    why = available()
    if why is not None:
        say(why)
        return [row(f"Syncthing: {why}", 0, "")]
    work = workdir / "bench-syncthing"
    work.mkdir(parents=True)
    size, count = (64 if quick else 512) * MIB, 200 if quick else 1000
    source = work / "big.bin"
    write_random(source, size)
    rows = []
    big = best(transfers(work / "big", big_item(source), REPEATS))
    small = best(transfers(work / "small", small_items(count), REPEATS))
    name = version()
    for label, result in ((f"one {size // MIB} MiB item", big), (f"{count} items of 8 KiB", small)):
        rows.append(row(f"{name}: {label}, from start", result.from_start, "s"))
        rows.append(row(f"{name}: {label}, from connection", result.from_connection, "s"))
    idle = idle_bytes(work, count, 60.0 if quick else 300.0)
    if idle is not None:
        rows.append(
            row(f"{name}: idle, bytes sent by each of two in sync", max(idle) / 1000, "KB/min")
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    return area_main(run, __doc__, "64 MiB, 200 items, a 60 s idle window", argv)


if __name__ == "__main__":
    sys.exit(main())
