"""A node under a descriptor limit and a flood of idle connections (issue 15, point 3):
it keeps syncing, its reader keeps answering, and it does not fill its stderr.

The node runs under ``prlimit --nofile=1024:1024`` (soft and hard limit 1,024, so raising
the soft limit at start cannot help) while this test holds 1,100 idle TCP connections to
it, opening a new one for each the node closes. Both nodes hello each other every second
(``MESHDROP_LAN_TIMERS=ping=1``, the timers' knob for tests and benchmarks, in
meshdrop/transports/lan/liveness.py) so that the new bundle is noticed within seconds."""

from __future__ import annotations

import contextlib
import resource
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from lankit import Nodes, wait_until
from test_lan_nodes import holding, names, trusting

from conftest import Publisher, pack, write_tree

FLOOD = 1100
DESCRIPTORS = 1024


@pytest.fixture
def many_descriptors() -> Iterator[None]:
    """This test process needs more than 1,100 sockets of its own."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = FLOOD + 512
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), max(hard, wanted)))
    except (ValueError, OSError):  # not root: use what the hard limit allows
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


STRANGER = "127.0.0.2"  # the flood's own address: the reader and the peer use 127.0.0.1


def idle_connection(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    with contextlib.suppress(BlockingIOError, OSError):
        sock.bind((STRANGER, 0))
        sock.connect(("127.0.0.1", port))
    return sock


def closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class Flood:
    """``count`` connections that never send a byte, each one the node closes (or
    refuses) opened again, until ``stop``."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.held = [idle_connection(port) for _ in range(count)]
        self.reopened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep, daemon=True)
        self._thread.start()

    def _keep(self) -> None:
        while not self._stop.wait(0.5):
            for index, sock in enumerate(self.held):
                if closed(sock):
                    sock.close()
                    self.held[index] = idle_connection(self.port)
                    self.reopened += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        for sock in self.held:
            sock.close()


def test_a_node_limited_to_1024_descriptors_under_1100_idle_connections_keeps_working(
    tmp_path: Path, publisher: Publisher, nodes: Nodes, many_descriptors: None
) -> None:
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < FLOOD + 64:
        raise AssertionError("this test needs a descriptor limit above 1,164 (run as root)")
    source = trusting(tmp_path / "source", publisher)
    target = trusting(tmp_path / "target", publisher)
    fast = {"MESHDROP_LAN_TIMERS": "ping=1"}
    peer = nodes.start(source, "--no-discovery", "--no-watch", env=fast)
    limited = nodes.start(
        target,
        "--no-discovery",
        "--no-watch",
        "--peer",
        peer.address,
        env=fast,
        prefix=["prlimit", f"--nofile={DESCRIPTORS}:{DESCRIPTORS}", "--"],
    )
    flood = Flood(limited.port, FLOOD)
    try:
        bundle = pack(publisher, write_tree(tmp_path / "s", {"a.txt": b"during the flood"}),
                      tmp_path / "f.mdrop", "flood")  # fmt: skip
        holding(source, bundle)
        for probe in range(11):
            with urllib.request.urlopen(f"http://{limited.address}/", timeout=30) as answer:
                assert answer.status == 200, f"probe {probe}"
                answer.read()
        wait_until(lambda: "flood" in names(target), timeout=90, what="the bundle, under flood")
        connections = limited.status()["connections"]
        assert connections["open"] <= connections["limit"] < DESCRIPTORS
        # The node closed idle connections to make room (the flood, checking every 0.5 s,
        # opens each one again): waited for, as a fast run can end before the first check.
        wait_until(lambda: flood.reopened > 0, what="idle connections closed for room")
    finally:
        flood.stop()
    assert limited.stop() == 0
    lines = limited.stderr().splitlines()
    assert len(lines) < 100, "\n".join(lines[:40])
