"""What opens a sealed store for a server, and what wipes it without a terminal (issue
19): `node` and `read` on a locked store, `--key-file`, the panic page with its code, and
`node --panic-signal`."""

from __future__ import annotations

import os
import signal
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from lankit import Nodes, wait_until
from sealkit import FAST, SEALED, holds_plaintext, no_leftovers, one_line_error, sealed_home

from conftest import Publisher, meshdrop_in_process, run_meshdrop

CODE = "orange kettle 42"
KILLED = -9


@pytest.fixture
def home(tmp_path: Path, publisher: Publisher) -> Path:
    return sealed_home(tmp_path, publisher)


@pytest.mark.parametrize("command", ["node", "read"])
def test_a_server_on_a_locked_store_without_a_terminal_exits_10(command: str, home: Path) -> None:
    extra = ["--no-discovery", "--no-watch"] if command == "node" else []
    result = run_meshdrop("--home", home, command, "--bind", "127.0.0.1", "--port", "0", *extra)
    one_line_error(result, 10, "locked")


def test_node_opens_a_sealed_store_with_a_key_file(
    home: Path, tmp_path: Path, nodes: Nodes
) -> None:
    card = tmp_path / "card-key"
    meshdrop_in_process(
        "--home", home, "passphrase", "--add-key-file", card, env=SEALED, check=True
    )
    node = nodes.start(home, "--no-discovery", "--no-watch", "--key-file", str(card), env=FAST)
    assert "minutes" in page(node.urls[0])


def test_node_with_a_missing_key_file_is_refused(home: Path, tmp_path: Path) -> None:
    result = run_meshdrop(
        "--home", home, "node", "--bind", "127.0.0.1", "--port", "0", "--no-discovery",
        "--no-watch", "--key-file", tmp_path / "no-card",
    )  # fmt: skip
    one_line_error(result, 2, "no such file")


def page(url: str, data: dict[str, str] | None = None) -> str:
    body = None if data is None else urllib.parse.urlencode(data).encode()
    try:
        with urllib.request.urlopen(url, body, timeout=30) as response:
            return str(response.read().decode())
    except urllib.error.HTTPError as exc:
        return f"{exc.code} {exc.read().decode()}"


def post_code(url: str, code: str) -> str:
    return page(url.rstrip("/") + "/p", {"code": code})


def test_the_panic_page_is_off_until_a_code_is_set(home: Path, nodes: Nodes) -> None:
    node = nodes.start(home, "--no-discovery", "--no-watch", env=SEALED)
    nothing = page(node.urls[0].rstrip("/") + "/no-such-page")
    assert post_code(node.urls[0], CODE) == nothing
    assert node.proc.poll() is None


def test_the_right_panic_code_wipes_the_store_and_stops_the_node(home: Path, nodes: Nodes) -> None:
    result = run_meshdrop("--home", home, "panic-code", env={**SEALED, "MESHDROP_PANIC_CODE": CODE})
    assert result.code == 0, result
    assert CODE.encode() not in (home / "code").read_bytes()
    node = nodes.start(home, "--no-discovery", "--no-watch", env=SEALED)
    nothing = page(node.urls[0].rstrip("/") + "/no-such-page")
    assert page(node.urls[0].rstrip("/") + "/p") == nothing  # a GET: the ordinary "not found"
    assert post_code(node.urls[0], "orange kettle 43") == nothing
    assert node.proc.poll() is None
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        post_code(node.urls[0], CODE)
    assert node.proc.wait(timeout=60) == KILLED
    wait_until(lambda: no_leftovers(home), what="the store removed")
    assert os.listdir(home) == []
    assert not holds_plaintext(home)


def test_the_panic_page_stops_listening_after_five_tries(home: Path, nodes: Nodes) -> None:
    meshdrop_in_process(
        "--home", home, "panic-code", env={**SEALED, "MESHDROP_PANIC_CODE": CODE}, check=True
    )
    node = nodes.start(home, "--no-discovery", "--no-watch", env=SEALED)
    for attempt in range(5):
        post_code(node.urls[0], f"wrong guess number {attempt}")
    nothing = page(node.urls[0].rstrip("/") + "/no-such-page")
    assert post_code(node.urls[0], CODE) == nothing  # the limit is reached: not even checked
    assert node.proc.poll() is None
    assert run_meshdrop("--home", home, "ls", env=SEALED).code == 0


def test_a_short_panic_code_is_refused(home: Path) -> None:
    env = {**SEALED, "MESHDROP_PANIC_CODE": "short"}
    one_line_error(run_meshdrop("--home", home, "panic-code", env=env), 2, "too short")
    assert not (home / "code").exists()


def test_panic_code_off_removes_it(home: Path) -> None:
    meshdrop_in_process(
        "--home", home, "panic-code", env={**SEALED, "MESHDROP_PANIC_CODE": CODE}, check=True
    )
    assert run_meshdrop("--home", home, "panic-code", "--off").code == 0
    assert not (home / "code").exists()


def test_the_panic_signal_wipes_the_store_when_asked_for(home: Path, nodes: Nodes) -> None:
    node = nodes.start(home, "--no-discovery", "--no-watch", "--panic-signal", env=SEALED)
    node.proc.send_signal(signal.SIGUSR2)
    assert node.proc.wait(timeout=60) == KILLED
    wait_until(lambda: no_leftovers(home), what="the store removed")
    assert os.listdir(home) == []


@pytest.mark.parametrize("command", ["panic-code"])
def test_help_has_an_example(command: str) -> None:
    assert "Example: meshdrop" in run_meshdrop(command, "--help").out
