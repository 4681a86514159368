"""Running real `meshdrop node` processes for the LAN tests: each is the installed command,
confined to loopback (``--bind 127.0.0.1``, so HTTP and mDNS never leave the machine)
unless a test runs it inside a network namespace of its own. Its --json event lines are
read on a thread; every wait is bounded."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from conftest import chunk_files, command_env, meshdrop_executable, read_tree

__all__ = ["NodeProc", "Nodes", "chunk_files", "read_tree", "wait_until"]

WAIT = 60.0  # seconds: the bound on every wait for a node to do something


def wait_until(check: Callable[[], Any], timeout: float = WAIT, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")
        time.sleep(0.1)


class NodeProc:
    """A `meshdrop node --json` subprocess and the events it printed."""

    def __init__(
        self,
        home: Path,
        *extra: str,
        bind: str | None = "127.0.0.1",  # None: no --bind (the node chooses its network)
        env: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
    ) -> None:
        self.home = home
        self.prefix = list(prefix)
        full_env = command_env(env)
        argv = [*prefix, meshdrop_executable(), "--home", str(home), "node"]
        argv += ["--bind", bind] if bind is not None else []
        self.proc = subprocess.Popen(
            [*argv, "--port", "0", "--json", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=full_env,
        )
        self.events: list[dict[str, Any]] = []
        self._terminated = False
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        listening = self.wait_event(lambda e: e["event"] == "listening", what="listening")
        self.port: int = listening["port"]
        self.urls: list[str] = listening["urls"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "unparsed", "line": line}
            with self._lock:
                self.events.append(event)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_event(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = WAIT, what: str = ""
    ) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            with self._lock:
                found = next((e for e in self.events if match(e)), None)
            if found is None and self.proc.poll() is not None:
                raise AssertionError(
                    f"node {self.home.name} exited ({self.proc.returncode}) while waiting for "
                    f"{what}: {self.stderr()}"
                )
            return found

        result: dict[str, Any] = wait_until(find, timeout, what)
        return result

    def status(self) -> dict[str, Any]:
        if self.prefix:  # inside a network namespace: ask from there
            result = subprocess.run(
                [*self.prefix, meshdrop_executable(), "--home", str(self.home), "status", "--json"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
            found: dict[str, Any] = json.loads(result.stdout)
            return found
        info = json.loads((self.home / "node.json").read_text())
        request = urllib.request.Request(
            info["url"] + "/node/status", headers={"X-Meshdrop-Token": info["token"]}
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        return data

    def alive_peers(self) -> set[str]:
        return {p["peer"] for p in self.status()["peers"] if p["alive"]}

    def stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read()

    def terminate(self) -> None:
        """Ask the node to stop (SIGTERM, once); ``stop`` waits for it to end."""
        if self.proc.poll() is None and not self._terminated:
            self.proc.send_signal(signal.SIGTERM)
            self._terminated = True

    def stop(self, timeout: float = 30) -> int:
        self.terminate()
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)


class Nodes:
    """Every node a test started, stopped at the end whatever happened."""

    def __init__(self) -> None:
        self.started: list[NodeProc] = []

    def start(self, home: Path, *extra: str, **kwargs: Any) -> NodeProc:
        node = NodeProc(home, *extra, **kwargs)
        self.started.append(node)
        return node

    def stop_all(self) -> None:
        """Stop every node (all asked at once, so that they shut down side by side); print
        what each said (pytest shows it if the test failed)."""
        for node in self.started:
            node.terminate()
        for node in self.started:
            node.stop()
            print(f"== events of {node.home.name} (exit {node.proc.returncode})")
            for event in node.events:
                print(json.dumps(event, sort_keys=True))
            print(node.stderr()[-3000:])
