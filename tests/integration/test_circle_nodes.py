"""Nodes in a circle (issue 16; docs/PROTOCOL.md sections 10-12): real `meshdrop node`
processes on 127.0.0.1 with real python-zeroconf and real TLS. Members find each other
by their tokens and sync over mutually authenticated TLS 1.3; a quiet node serves no
open peer API and announces nothing of the open mesh; a stranger, a member of another
circle and a member removed by a rekey get nothing. Every wait is bounded; nothing
asserts on timing."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from lankit import NodeProc, Nodes, wait_until
from test_lan_nodes import holding, names, trusting

from conftest import (
    Publisher,
    command_env,
    meshdrop_executable,
    meshdrop_in_process,
    pack,
    write_tree,
)
from meshdrop.core.circles import CircleSecret
from meshdrop.store.circles import CircleStore
from meshdrop.transports.lan.circletls import CircleTLS


def new_circle(home: Path, name: str = "dorm") -> str:
    made = meshdrop_in_process("--home", home, "circle", "new", name, "--json", check=True)
    return str(json.loads(made.out)["invite"])


def join(home: Path, invite: str, name: str = "dorm") -> None:
    meshdrop_in_process("--home", home, "circle", "join", invite, "--name", name, check=True)


def bundle(publisher: Publisher, tmp: Path, name: str) -> Path:
    src = write_tree(tmp / f"src-{name}", {"index.html": f"<p>{name}</p>".encode()})
    return pack(publisher, src, tmp / f"{name}.mdrop", name)


def circle_port(node: NodeProc) -> int:
    mode = node.wait_event(lambda e: e["event"] == "mode", what="the mode line")
    (port,) = mode["circles"].values()
    return int(port)


def peer_api_answers(node: NodeProc) -> bool:
    url = f"http://127.0.0.1:{node.port}/peer/v1/hello"
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return bool(answer.status == 200)
    except urllib.error.HTTPError:
        return False


async def tls_probe(port: int, context: ssl.SSLContext) -> bytes:
    """Connect with ``context``, ask for the peer API's hello, return what came back."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=""), 10
        )
    except (OSError, ssl.SSLError, TimeoutError):
        return b""
    try:
        writer.write(b"GET /peer/v1/hello HTTP/1.1\r\nHost: x\r\n\r\n")
        return await asyncio.wait_for(reader.read(4096), 10)
    except (OSError, ssl.SSLError, TimeoutError):
        return b""
    finally:
        writer.close()


def test_members_of_a_circle_find_each_other_and_sync_quietly(
    tmp_path: Path, publisher: Publisher, nodes: Nodes
) -> None:
    a = holding(trusting(tmp_path / "a", publisher), bundle(publisher, tmp_path, "news"))
    b = trusting(tmp_path / "b", publisher)
    join(b, new_circle(a))
    node_a, node_b = nodes.start(a), nodes.start(b)
    wait_until(lambda: "news" in names(b), what="the bundle at the other member")
    for node in (node_a, node_b):
        mode = node.wait_event(lambda e: e["event"] == "mode")
        assert mode["mode"] == "quiet" and list(mode["circles"]) == ["dorm"]
        assert not peer_api_answers(node)  # no open peer API on the reader's port
        status = node.status()
        assert status["mode"] == "quiet" and status["circles"]["dorm"] != node.port
    got = node_b.wait_event(lambda e: e["event"] == "bundle" and e["name"] == "news")
    assert got["peer"].endswith(f":{circle_port(node_a)}")


def test_strangers_other_circles_and_removed_members_get_nothing(
    tmp_path: Path, publisher: Publisher, nodes: Nodes
) -> None:
    """The circle's listener answers only a member's certificate: a plain TLS client, a
    member of another circle and the circle's own key from before a rekey get no byte
    of the peer API; the current member does (the same probe, so the probe works)."""
    home = trusting(tmp_path / "a", publisher)
    new_circle(home)
    old = _secret_of(home)
    meshdrop_in_process("--home", home, "circle", "rekey", "dorm", check=True)
    current = _secret_of(home)
    node = nodes.start(home, "--no-discovery")
    port = circle_port(node)
    now = time.time()
    stranger = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    stranger.check_hostname, stranger.verify_mode = False, ssl.CERT_NONE
    other = CircleTLS(CircleSecret.generate(), now).client_context()
    removed = CircleTLS(old, now).client_context()
    member = CircleTLS(current, now).client_context()
    answers = {
        who: asyncio.run(tls_probe(port, context))
        for who, context in (
            ("stranger", stranger),
            ("other circle", other),
            ("removed", removed),
            ("member", member),
        )
    }
    assert answers["member"].startswith(b"HTTP/1.1 200")
    assert answers["stranger"] == answers["other circle"] == answers["removed"] == b""


def test_an_open_node_in_a_circle_serves_both_and_says_so(
    tmp_path: Path, publisher: Publisher, nodes: Nodes
) -> None:
    home = trusting(tmp_path / "a", publisher)
    new_circle(home)
    node = nodes.start(home, "--no-discovery", "--open")
    mode = node.wait_event(lambda e: e["event"] == "mode")
    assert mode["mode"] == "open+circles"
    assert peer_api_answers(node)
    bare = nodes.start(trusting(tmp_path / "b", publisher), "--no-discovery")
    assert bare.wait_event(lambda e: e["event"] == "mode")["mode"] == "open"


def _secret_of(home: Path) -> CircleSecret:
    (stored,) = CircleStore(home).load().circles
    return stored.circle.current.secret


def test_a_quiet_nodes_reader_is_on_a_common_web_port_by_default(
    tmp_path: Path, publisher: Publisher
) -> None:
    """Without --port, a node in a circle serves its reader on 8080 (a port countless
    devices serve web pages on), not meshdrop's own 8470; its peers are on the circle's
    listener. Run without the helpers that always pass --port 0."""
    home = trusting(tmp_path / "a", publisher)
    new_circle(home)
    argv = [meshdrop_executable(), "--home", str(home), "node", "--bind", "127.0.0.1"]
    proc = subprocess.Popen(
        [*argv, "--no-discovery", "--no-watch", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=command_env(),
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first["event"] == "listening" and first["port"] == 8080
        assert first["peer_api"] == ""
        mode = json.loads(proc.stdout.readline())
        assert mode["mode"] == "quiet" and 8080 not in mode["circles"].values()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_readers_share_page_never_shows_a_circle_invite(
    tmp_path: Path, publisher: Publisher, nodes: Nodes
) -> None:
    """Phones cannot join circles, and the reader's pages are plain HTTP to anyone on
    the Wi-Fi: its share page gives the reader's address only, never an invite code
    (in any of its typed forms) or the circle's name."""
    home = trusting(tmp_path / "a", publisher)
    invite = new_circle(home, "dorm-secret-name")
    node = nodes.start(home, "--no-discovery")
    asked = urllib.request.Request(  # as a phone on the Wi-Fi asks for it
        f"http://127.0.0.1:{node.port}/share", headers={"Host": "192.168.7.20:8080"}
    )
    with urllib.request.urlopen(asked, timeout=10) as answer:
        page = answer.read().decode()
    assert "http://192.168.7.20:8080/" in page  # the page works: it gives the address
    for form in (invite, invite.replace("-", ""), invite.lower(), "dorm-secret-name"):
        assert form not in page
