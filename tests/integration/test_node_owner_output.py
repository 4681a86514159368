"""Issue 14: what the node-owner commands tell people. `ls` counts what it stores but does
not list (withdrawn, expired, partial imports) and names the store when nothing is listed;
`ls --all` says why each is hidden; `get` shows progress from its start on any terminal,
and `get` and `rm` speak --json; `import` follows one exit-code rule. The behaviour under
test runs the installed command; set-up steps run in process."""

from __future__ import annotations

import json
import os
import pty
import shutil
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from trustkit import (
    T0,
    Chain,
    Delegation,
    bundle_bytes,
    pub,
    publisher_file,
    signed,
    write,
)

from conftest import command_env, meshdrop_executable, meshdrop_in_process, run_meshdrop
from meshdrop.cli.common import format_time
from meshdrop.core.keys import key_id
from meshdrop.core.manifest import CHUNK_SIZE
from meshdrop.core.records import Reason, SignedRecord

MiB = 1024 * 1024


@dataclass
class Node:
    home: Path
    chain: Chain
    records: list[SignedRecord]  # oldest first
    root: Path

    def bundle(
        self,
        name: str,
        signer: str = "s1",
        version: int = 1,
        created: int = T0,
        expires: int | None = None,
        data: bytes = b"<p>hello</p>",
    ) -> Path:
        made = bundle_bytes(
            self.records, self.chain.id, signer, name, version, created, expires, data
        )
        return write(self.root / f"{name}-{version}.mdrop", made)


def new_node(root: Path) -> Node:
    chain = Chain(roots=["r1"], threshold=1)
    record = chain.record(1, signers=(Delegation("s1"), Delegation("s2")))
    records = [signed(record, by=["r1"])]
    root.mkdir(parents=True, exist_ok=True)
    pub_file = write(root / "publisher.pub", publisher_file(records))
    home = root / "node"
    meshdrop_in_process(
        "--home", home, "trust", "add", pub_file, "--fingerprint", record.fingerprint, check=True
    )
    return Node(home, chain, records, root)


def step(*args: str | Path, check: bool = True) -> str:
    return meshdrop_in_process(*map(str, args), check=check).out


def hide_some(node: Node) -> int:
    """Leave one withdrawn, one expired and one partly imported bundle in the node, and two
    it lists ("later", "small"); returns when the expired one expired."""
    step("--home", node.home, "import", node.bundle("news", signer="s2"), "-q")
    # Expires in an hour; a bundle signed two hours ahead moves the node's clock floor
    # past it (a clock set back must not revive expired content), so it counts expired.
    now = int(time.time())
    step("--home", node.home, "import", node.bundle("brief", expires=now + 3600), "-q")
    step("--home", node.home, "import", node.bundle("later", created=now + 7200), "-q")
    revoking = node.chain.record(
        2, signers=(Delegation("s1"),), revoked=[("s2", Reason.COMPROMISED, T0)]
    )
    node.records.append(signed(revoking, by=["r1"]))
    step("--home", node.home, "import", node.bundle("small"), "-q")
    big = node.bundle("big", data=os.urandom(3 * CHUNK_SIZE))
    stick = node.root / "stick" / "meshdrop"
    stick.mkdir(parents=True)
    cut = stick / "big.mdrop"
    cut.write_bytes(big.read_bytes()[: -2 * CHUNK_SIZE])  # a copy cut short: 1 MiB of 3
    step("--home", node.home, "import", stick.parent, "-q", check=False)
    return now + 3600


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return new_node(tmp_path / "world")


# ls


def test_ls_of_an_empty_store_names_the_store_it_looked_at(tmp_path: Path) -> None:
    home = tmp_path / "forgotten-home"
    result = run_meshdrop("--home", home, "ls")
    assert (result.code, result.err) == (0, "")
    assert result.out == f"no bundles in {home}\n"


def test_ls_ends_with_what_is_stored_but_not_listed(node: Node) -> None:
    hide_some(node)
    result = run_meshdrop("--home", node.home, "ls")
    assert (result.code, result.err) == (0, "")
    lines = result.out.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["later", "small"]
    assert lines[-1] == (
        "not listed: 1 withdrawn (12 B), 1 expired (12 B), 1 partial import "
        "(1.0 MiB of 3.0 MiB stored, 2.0 MiB missing); 'meshdrop ls --all' shows them"
    )


def test_ls_with_only_hidden_bundles_names_the_store_and_counts_them(node: Node) -> None:
    step("--home", node.home, "import", node.bundle("news", signer="s2"), "-q")
    revoking = node.chain.record(
        2, signers=(Delegation("s1"),), revoked=[("s2", Reason.COMPROMISED, T0)]
    )
    node.records.append(signed(revoking, by=["r1"]))
    newer = write(node.root / "newer.pub", publisher_file(node.records))
    step("--home", node.home, "import", newer)
    result = run_meshdrop("--home", node.home, "ls")
    assert result.out == (
        f"no bundles to read in {node.home}\n"
        "not listed: 1 withdrawn (12 B); 'meshdrop ls --all' shows them\n"
    )


def test_ls_all_says_why_each_bundle_is_hidden(node: Node) -> None:
    expired = hide_some(node)
    result = run_meshdrop("--home", node.home, "ls", "--all")
    assert (result.code, result.err) == (0, "")
    by_name = {line.split()[0]: line for line in result.out.splitlines()}
    assert set(by_name) == {"later", "small", "news", "brief", "big"}
    assert by_name["news"].endswith(f"(withdrawn: key {key_id(pub('s2'))} reported compromised)")
    assert by_name["brief"].endswith(f"  (expired on {format_time(expired)})")
    assert by_name["big"].endswith("(partial import: 1.0 MiB of 3.0 MiB stored, 2.0 MiB missing)")
    assert "  1 file  " in by_name["small"] and "(" not in by_name["small"].split("]")[-1]
    assert "not listed" not in result.out


def test_ls_json_gives_each_bundle_a_state_and_reason_and_partial_ones_with_all(
    node: Node,
) -> None:
    expired = hide_some(node)
    plain = run_meshdrop("--home", node.home, "ls", "--json")
    listed = [json.loads(line) for line in plain.out.splitlines()]
    assert [(b["name"], b["state"], b["reason"]) for b in listed] == [
        ("later", "ok", None),
        ("small", "ok", None),
    ]
    every = [
        json.loads(line) for line in step("--home", node.home, "ls", "--all", "--json").splitlines()
    ]
    states = {b["name"]: (b["state"], b["reason"]) for b in every}
    assert states["news"] == ("withdrawn", f"key {key_id(pub('s2'))} reported compromised")
    assert states["brief"] == ("expired", f"expired on {format_time(expired)}")
    assert states["big"] == ("partial", f"partial: {MiB} of {3 * MiB} bytes stored")
    (partial,) = [b for b in every if b["state"] == "partial"]
    assert (partial["size"], partial["stored"], partial["missing"]) == (3 * MiB, MiB, 2 * MiB)


# get and rm


def run_on_a_sizeless_terminal(*args: str | Path) -> bytes:
    """Run the installed command with stdout and stderr on a pseudo-terminal that reports
    zero rows and columns (as one never sized by its opener is); everything it printed."""
    import fcntl
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
    env = command_env()
    env.pop("COLUMNS", None)
    try:
        proc = subprocess.Popen(
            [meshdrop_executable(), *map(str, args)],
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=slave,
            env=env,
        )
    finally:
        os.close(slave)
    output = b""
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's last writer closed it
                break
            if not data:
                break
            output += data
    finally:
        os.close(master)
        proc.wait(60)
    assert proc.returncode == 0, output
    return output


def test_get_draws_its_progress_bar_from_the_start_on_a_terminal_of_unknown_width(
    node: Node, tmp_path: Path
) -> None:
    step("--home", node.home, "import", node.bundle("big", data=os.urandom(3 * MiB)), "-q")
    out = run_on_a_sizeless_terminal("--home", node.home, "get", "big", "-o", tmp_path / "out")
    first_frame = out.split(b"\r")[1]
    assert first_frame.startswith(b"big:   0%|") and b"0.00/3.00M" in first_frame, out
    assert out.endswith(f"wrote 1 file of big v1 (3.0 MiB) to {tmp_path / 'out'}\r\n".encode())


def test_get_json_says_what_was_written(node: Node, tmp_path: Path) -> None:
    step("--home", node.home, "import", node.bundle("news"), "-q")
    whole = run_meshdrop("--home", node.home, "get", "news", "-o", tmp_path / "all", "--json")
    one = run_meshdrop(
        "--home", node.home, "get", "news", "index.html", "-o", tmp_path / "i.html", "--json"
    )
    fingerprint = node.chain.record(1).fingerprint
    assert json.loads(whole.out) == {
        "path": str(tmp_path / "all"),
        "files": 1,
        "bytes": 12,
        "name": "news",
        "version": 1,
        "publisher": fingerprint,
    }
    assert json.loads(one.out) == {
        "path": str(tmp_path / "i.html"),
        "files": 1,
        "bytes": 12,
        "name": "news",
        "version": 1,
        "publisher": fingerprint,
    }


def test_rm_json_says_what_was_removed(node: Node) -> None:
    step("--home", node.home, "import", node.bundle("news"), "-q")
    result = run_meshdrop("--home", node.home, "rm", "news", "--json")
    assert (result.code, result.err) == (0, "")
    assert json.loads(result.out) == {
        "removed": "news",
        "version": 1,
        "publisher": node.chain.record(1).fingerprint,
        "bytes": 12,
        "files": 1,
    }


# import: one exit-code rule


def damaged(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # the last data byte: the chunk no longer matches its hash
    return write(path.with_name("damaged.mdrop"), bytes(data))


def stranger_bundle(root: Path) -> Path:
    other = Chain(roots=["someone-else"], threshold=1)
    records = [signed(other.record(1, signers=(Delegation("x1"),)), by=["someone-else"])]
    return write(root / "stranger.mdrop", bundle_bytes(records, other.id, "x1"))


@pytest.mark.parametrize(
    ("case", "code"),
    [("malformed", 3), ("untrusted", 4), ("data mismatch", 5), ("older version", 6)],
)
def test_importing_one_file_exits_with_that_files_own_code(
    case: str, code: int, node: Node
) -> None:
    if case == "malformed":
        target = write(node.root / "junk.mdrop", b"not a bundle at all")
    elif case == "untrusted":
        target = stranger_bundle(node.root)
    elif case == "data mismatch":
        target = damaged(node.bundle("news"))
    else:
        step("--home", node.home, "import", node.bundle("news", version=2), "-q")
        target = node.bundle("news", version=1)
    result = run_meshdrop("--home", node.home, "import", target, "--json")
    assert result.code == code, result
    assert [json.loads(x)["exit_code"] for x in result.out.splitlines()] == [code]


def test_importing_several_inputs_exits_1_and_each_line_carries_its_own_code(
    node: Node, tmp_path: Path
) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    shutil.copyfile(node.bundle("news"), folder / "a-news.mdrop")
    (folder / "b-junk.mdrop").write_bytes(b"not a bundle at all")
    shutil.copyfile(stranger_bundle(node.root), folder / "c-stranger.mdrop")
    result = run_meshdrop("--home", node.home, "import", folder, "--json")
    assert result.code == 1, result
    codes = {
        Path(x["files"][0]).name: x["exit_code"] for x in map(json.loads, result.out.splitlines())
    }
    assert codes == {"a-news.mdrop": 0, "b-junk.mdrop": 3, "c-stranger.mdrop": 4}


@pytest.mark.parametrize("inputs", ["one file", "a folder of two"])
def test_a_full_disk_exits_7_whatever_the_number_of_inputs(
    inputs: str, node: Node, tmp_path: Path
) -> None:
    """The free-space floor (tests/integration/test_store.py fills a real tmpfs as well):
    MESHDROP_MIN_FREE above any disk's size makes the store refuse as a full disk does."""
    news = node.bundle("news")
    target = news
    if inputs == "a folder of two":
        target = tmp_path / "incoming"
        target.mkdir()
        shutil.copyfile(news, target / "news.mdrop")
        (target / "junk.mdrop").write_bytes(b"not a bundle at all")
    result = run_meshdrop(
        "--home", node.home, "import", target, env={"MESHDROP_MIN_FREE": str(10**18)}
    )
    assert result.code == 7, result
    assert "not enough free disk space" in result.err and "Traceback" not in result.err
