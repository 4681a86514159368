"""The running node's file (``<home>/node.json``: process id, a local URL, the status
token) and the owner's status request through it (docs/PROTOCOL.md section 8)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from meshdrop.transports.lan.errors import NetworkError

NODE_FILE = "node.json"
STATUS_PREFIX = "/node/"
TOKEN_HEADER = "X-Meshdrop-Token"  # noqa: S105 (a header name)


def refuse_second_node(node_file: Path) -> None:
    """One node per home: a second would fight the first over node.json and the peers."""
    try:
        pid = int(json.loads(node_file.read_text(encoding="utf-8"))["pid"])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, KeyError, TypeError):
        return  # none, or a stale file left by a node that was killed
    if pid != os.getpid() and b"meshdrop" in cmdline:
        raise NetworkError(
            f"a node is already running for {node_file.parent} (process {pid}); stop it first"
        )


def read_node_file(home: Path) -> dict[str, Any]:
    path = home / NODE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise NetworkError(
            f"no node is running for {home} (start one with 'meshdrop node')"
        ) from exc
    except (OSError, ValueError) as exc:
        raise NetworkError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or not {"pid", "url", "token"} <= set(data):
        raise NetworkError(f"{path} is damaged; restart the node")
    return data


async def ask_status(home: Path, timeout: float = 5.0) -> dict[str, Any]:
    """A running node's status, through the URL and token in its node.json."""
    import aiohttp

    info = read_node_file(home)
    url = f"{info['url']}{STATUS_PREFIX}status"
    try:
        async with (
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=timeout), trust_env=False
            ) as session,
            session.get(url, headers={TOKEN_HEADER: str(info["token"])}) as resp,
        ):
            if resp.status != 200:
                raise NetworkError(f"the node at {info['url']} refused the status request")
            data = await resp.json()
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise NetworkError(
            f"no node answers at {info['url']} (it stopped without cleaning up?); "
            "start one with 'meshdrop node'"
        ) from exc
    if not isinstance(data, dict):
        raise NetworkError("the node sent a malformed status")
    return data
