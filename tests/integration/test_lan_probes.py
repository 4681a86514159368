"""What a stranger's probe learns (issue 15, point 7): the node's and the standalone
reader's answers, read as raw bytes from a socket, name neither the product nor the
server software, for every kind of probe: a bad method, an unknown path, a malformed
request line, the reader's 404, its pages, a redirect, the peer API's errors."""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

from lankit import Nodes, wait_until
from test_lan_nodes import holding, sample_bundles, trusting

from conftest import Publisher, meshdrop_executable

NAMES = re.compile(rb"meshdrop|aiohttp|python", re.IGNORECASE)


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()


def post(path: str, body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


# (what, raw request, expected status)
PROBES = [
    ("a reader page", get("/"), 200),
    ("the reader's 404", get("/nothing/here"), 404),
    ("the reader's stylesheet 404", get("/static/x.css"), 404),
    ("a redirect", get("/lang/ko?next=/"), 303),
    ("a bad method", b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("a malformed request line", b"GARBAGE\r\n\r\n", 400),
    ("binary junk", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
    ("a header too long", b"GET / HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 400),
    ("an unknown peer path", get("/peer/v1/nope"), 404),
    ("a wrong method on the peer API", post("/peer/v1/hello", b""), 405),
    ("a malformed digest", get("/peer/v1/chunk/zz"), 404),
    ("a bad inventory", post("/peer/v1/inventory", b"abc"), 400),
    ("the status without its token", get("/node/status"), 403),
]


def ask(port: int, request: bytes) -> bytes:
    """Send ``request`` and read until the server closes (every probe asks it to, or is
    one it closes after)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        try:
            while piece := sock.recv(65536):
                answer += piece
        except TimeoutError:
            pass
    return answer


def check(port: int, what: str, request: bytes, status: int) -> None:
    answer = ask(port, request)
    assert answer.startswith(b"HTTP/1."), f"{what}: no HTTP answer: {answer[:200]!r}"
    assert int(answer.split(b" ", 2)[1]) == status, f"{what}: {answer[:300]!r}"
    head = answer.split(b"\r\n\r\n", 1)[0]
    assert not re.search(rb"(?im)^server:", head), f"{what} has a Server header: {head!r}"
    found = NAMES.search(answer)
    assert found is None, f"{what} says {found.group()!r}: {answer[:600]!r}"


def test_probes_of_a_node_and_of_the_reader_name_no_software(
    tmp_path: Path, publisher: Publisher, nodes: Nodes
) -> None:
    samples = sample_bundles(publisher, tmp_path / "o")
    home = holding(trusting(tmp_path / "home", publisher), *samples)
    node = nodes.start(home, "--no-discovery", "--no-watch")
    for what, request, status in PROBES:
        check(node.port, what, request, status)
    named = nodes.start(trusting(tmp_path / "named", publisher), "--no-discovery", "--no-watch",
                        "--name", "Dorm 4 shelf")  # fmt: skip
    page = ask(named.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b"<title>Dorm 4 shelf</title>" in page

    reader = subprocess.Popen(
        [meshdrop_executable(), "--home", str(home), "read", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert reader.stdout is not None
        first = reader.stdout.readline()
        port = int(wait_until(lambda: re.search(r":(\d+)/", first), what="the reader").group(1))
        for what, request, status in PROBES:
            if b"/peer/" in request or b"/node/" in request:
                status = 404  # the standalone reader has neither: its 404 page
            check(port, f"meshdrop read: {what}", request, status)
    finally:
        reader.terminate()
        reader.wait(30)
        assert reader.stderr is not None
        reader.stderr.close()
        reader.stdout.close()  # type: ignore[union-attr]
