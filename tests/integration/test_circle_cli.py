"""`meshdrop circle` as a node owner uses it (the installed command, as a subprocess): make
a circle, join it on a second node, list, show, leave and re-key; every bad invite code, a
damaged circle file and a taken name each a one-line refusal that changes nothing."""

from __future__ import annotations

import io
import json
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import segno
from ptykit import run_in_terminal

from conftest import Result, assert_clean_error, meshdrop_in_process, run_meshdrop
from meshdrop.core.circles import CircleSecret, circle_id, encode_invite
from meshdrop.errors import CircleFileError
from meshdrop.store.circles import CircleStore, encode_circle, read_circle_file

QR_BLOCKS = re.compile(r"^[█▀▄ ]{20,}$", re.MULTILINE)


def new_circle(home: Path, name: str = "dorm") -> dict[str, object]:
    """A circle made on ``home`` (in process: set-up), its `new --json` object."""
    result = meshdrop_in_process("--home", home, "circle", "new", name, "--json", check=True)
    made: dict[str, object] = json.loads(result.out)
    return made


def circle_files(home: Path) -> dict[str, bytes]:
    folder = home / "circles"
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.is_dir() else {}


def listed(home: Path) -> list[dict[str, Any]]:
    result = meshdrop_in_process("--home", home, "circle", "ls", "--json")
    return [json.loads(line) for line in result.out.splitlines()]


def assert_one_line_refusal(result: Result, code: int, *fragments: str) -> None:
    assert_clean_error(result, *fragments)
    assert result.code == code, result
    assert len(result.err.strip().splitlines()) == 1, result.err


# Making and joining


def test_new_prints_the_invite_a_qr_code_and_says_it_is_secret(tmp_path: Path) -> None:
    home = tmp_path / "node"
    result = run_meshdrop("--home", home, "circle", "new", "dorm")
    assert result.code == 0, result.err
    (code,) = re.findall(r"invite code: (\S+)", result.out)
    assert re.fullmatch(r"([A-Z2-7]{4}-){9}[A-Z2-7]{3}", code)
    assert QR_BLOCKS.search(result.out), result.out
    assert "secret" in result.out and "in person only" in result.out
    (only,) = listed(home)
    assert only["name"] == "dorm" and only["generation"] == 1


def test_new_then_join_on_a_second_node_gives_the_same_circle(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    made = run_meshdrop("--home", first, "circle", "new", "dorm", "--json")
    assert made.code == 0, made.err
    invite = json.loads(made.out)["invite"]
    joined = run_meshdrop("--home", second, "circle", "join", invite, "--name", "Dorm 3")
    assert joined.code == 0, joined.err
    assert "joined circle Dorm 3" in joined.out
    (a,), (b,) = listed(first), listed(second)
    assert a["id"] == b["id"] == json.loads(made.out)["id"]
    assert b["name"] == "Dorm 3"


def test_join_reads_the_code_as_people_type_it(tmp_path: Path) -> None:
    invite = str(new_circle(tmp_path / "first")["invite"])
    typed = invite.lower().replace("-", " ").replace("o", "0").split()  # ten words
    result = run_meshdrop("--home", tmp_path / "second", "circle", "join", *typed)
    assert result.code == 0, result.err
    (joined,) = listed(tmp_path / "second")
    assert joined["name"] == f"circle-{str(joined['id'])[:8]}"


def test_join_without_a_code_reads_it_from_standard_input(tmp_path: Path) -> None:
    """Kept out of the shell's history: `echo CODE | meshdrop circle join --name x`."""
    import subprocess

    from conftest import command_env, meshdrop_executable

    invite = str(new_circle(tmp_path / "first")["invite"])
    home = tmp_path / "second"
    proc = subprocess.run(
        [meshdrop_executable(), "--home", str(home), "circle", "join", "--name", "dorm"],
        input=invite + "\n",
        capture_output=True,
        text=True,
        env=command_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert [c["name"] for c in listed(home)] == ["dorm"]


def test_qr_code_files_hold_the_bare_code_and_are_private(tmp_path: Path) -> None:
    home = tmp_path / "node"
    png, svg = tmp_path / "invite.png", tmp_path / "invite.svg"
    result = run_meshdrop("--home", home, "circle", "new", "dorm", "--png", png, "--svg", svg)
    assert result.code == 0, result.err
    (code,) = re.findall(r"invite code: (\S+)", result.out)
    expected_svg = io.BytesIO()
    qr = segno.make(code, error="m", micro=False)
    qr.save(expected_svg, kind="svg", scale=8, svgclass=None, lineclass=None)
    assert svg.read_bytes() == expected_svg.getvalue()  # the code itself, nothing else
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    for path in (png, svg):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert b"meshdrop" not in path.read_bytes()
        assert str(path) in result.out


def test_a_qr_file_in_a_missing_folder_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    home = tmp_path / "node"
    missing = tmp_path / "nowhere" / "invite.png"
    result = run_meshdrop("--home", home, "circle", "new", "dorm", "--png", missing)
    assert_one_line_refusal(result, 2, "no such folder")
    assert circle_files(home) == {}


def test_circle_files_are_private_and_not_named_by_the_circle(tmp_path: Path) -> None:
    home = tmp_path / "node"
    made = new_circle(home)
    folder = home / "circles"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    (name,) = [n for n in circle_files(home) if n.endswith(".circle")]
    assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    assert str(made["id"]) not in name  # members' file names do not link their nodes
    assert read_circle_file(folder / name).id == made["id"]


def test_circles_folder_with_loose_modes_is_made_private_again(tmp_path: Path) -> None:
    home = tmp_path / "node"
    (home / "circles").mkdir(parents=True, mode=0o755)
    (home / "circles").chmod(0o755)
    result = run_meshdrop("--home", home, "circle", "new", "dorm")
    assert result.code == 0, result.err
    assert stat.S_IMODE((home / "circles").stat().st_mode) == 0o700


# Listing and showing


def test_ls_lists_names_and_ids_but_never_invites(tmp_path: Path) -> None:
    home = tmp_path / "node"
    dorm, work = new_circle(home, "dorm"), new_circle(home, "기숙사 2")
    result = run_meshdrop("--home", home, "circle", "ls")
    assert result.code == 0, result.err
    assert [line.split("  ")[0] for line in result.out.splitlines()] == ["dorm", "기숙사 2"]
    for made in (dorm, work):
        assert str(made["id"]) in result.out
        assert str(made["invite"]) not in result.out
        assert str(made["invite"]).replace("-", "") not in result.out
    as_json = run_meshdrop("--home", home, "circle", "ls", "--json")
    assert [json.loads(line)["name"] for line in as_json.out.splitlines()] == ["dorm", "기숙사 2"]
    assert "invite" not in as_json.out


def test_ls_of_a_node_in_no_circle_says_how_to_start(tmp_path: Path) -> None:
    result = run_meshdrop("--home", tmp_path / "node", "circle", "ls")
    assert result.code == 0 and "not in any circle" in result.out
    assert not (tmp_path / "node").exists()  # listing creates nothing


def test_show_gives_the_same_invite_again(tmp_path: Path) -> None:
    home = tmp_path / "node"
    made = new_circle(home)
    result = run_meshdrop("--home", home, "circle", "show", "DORM", "--qr")
    assert result.code == 0, result.err
    assert f"invite code: {made['invite']}" in result.out
    assert QR_BLOCKS.search(result.out) and "in person only" in result.out
    as_json = json.loads(run_meshdrop("--home", home, "circle", "show", "dorm", "--json").out)
    assert as_json["invite"] == made["invite"] and as_json["id"] == made["id"]
    plain = run_meshdrop("--home", home, "circle", "show", "dorm")
    assert not QR_BLOCKS.search(plain.out)  # the QR code only when asked


@pytest.mark.parametrize("command", ["show", "leave", "rekey"])
def test_an_unknown_circle_name_is_refused(tmp_path: Path, command: str) -> None:
    home = tmp_path / "node"
    new_circle(home)
    before = circle_files(home)
    extra = ["--yes"] if command == "leave" else []
    result = run_meshdrop("--home", home, "circle", command, "dorms", *extra)
    assert_one_line_refusal(result, 2, "no circle named 'dorms'")
    assert circle_files(home) == before


# Names taken, circles held twice


def test_a_taken_name_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "node"
    new_circle(home, "Dorm")
    before = circle_files(home)
    result = run_meshdrop("--home", home, "circle", "new", "dorm")
    assert_one_line_refusal(result, 2, "a circle named 'Dorm' is already on this node")
    assert circle_files(home) == before


def test_joining_a_circle_twice_names_the_circle_it_is_already(tmp_path: Path) -> None:
    home = tmp_path / "node"
    made = new_circle(home, "dorm")
    before = circle_files(home)
    result = run_meshdrop("--home", home, "circle", "join", str(made["invite"]), "--name", "x")
    assert_one_line_refusal(result, 2, "already in that circle, under the name 'dorm'")
    assert circle_files(home) == before


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("", "needs a name"), ("dorm\x1b[2J", "control or invisible"), ("x" * 65, "at most 64")],
    ids=["empty", "control-characters", "too-long"],
)
def test_a_bad_circle_name_is_refused(tmp_path: Path, name: str, fragment: str) -> None:
    result = run_meshdrop("--home", tmp_path / "node", "circle", "new", name)
    assert_one_line_refusal(result, 2, fragment)
    assert circle_files(tmp_path / "node") == {}


# Bad invite codes


def _good_code() -> str:
    return encode_invite(CircleSecret(bytes(range(20))))


def _typo(code: str) -> str:
    compact = code.replace("-", "")
    return compact[:12] + ("Q" if compact[12] != "Q" else "R") + compact[13:]


BAD_CODES: dict[str, tuple[Callable[[str], list[str]], str]] = {
    "truncated": (lambda c: [c[:-5]], "too short"),
    "one-letter-extra": (lambda c: [c + "A"], "1 extra"),
    "a-typo": (lambda c: [_typo(c)], "mistyped"),
    "a-letter-no-code-has": (lambda c: [c.replace(c[5], "9", 1)], "'9' in group 2"),
    "empty": (lambda c: [""], "no invite code given"),
    "no-code-at-all": (lambda c: [], "no invite code given"),
}


@pytest.mark.parametrize("case", BAD_CODES)
def test_a_bad_invite_code_is_refused_in_one_line(tmp_path: Path, case: str) -> None:
    home = tmp_path / "node"
    new_circle(home, "kept")
    before = circle_files(home)
    make_words, fragment = BAD_CODES[case]
    words = make_words(_good_code())
    result = run_meshdrop("--home", home, "circle", "join", *words, "--name", "new")
    assert_one_line_refusal(result, 2, fragment)
    assert circle_files(home) == before
    assert _good_code() not in result.err


def test_an_invite_of_a_newer_kind_says_to_update(tmp_path: Path) -> None:
    import base64
    import hashlib

    head = bytes([2]) + bytes(range(20))
    compact = base64.b32encode(head + hashlib.sha256(head).digest()[:3]).decode().rstrip("=")
    result = run_meshdrop("--home", tmp_path / "node", "circle", "join", compact)
    assert_one_line_refusal(result, 2, "newer kind", "update meshdrop")


def test_rekey_with_a_bad_code_changes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "node"
    new_circle(home)
    before = circle_files(home)
    result = run_meshdrop("--home", home, "circle", "rekey", "dorm", "--code", _typo(_good_code()))
    assert_one_line_refusal(result, 2, "mistyped")
    assert circle_files(home) == before


# Leaving


def test_leave_without_a_terminal_needs_yes(tmp_path: Path) -> None:
    home = tmp_path / "node"
    new_circle(home)
    before = circle_files(home)
    result = run_meshdrop("--home", home, "circle", "leave", "dorm")
    assert_one_line_refusal(result, 2, "--yes")
    assert circle_files(home) == before


def test_leave_with_yes_removes_the_key(tmp_path: Path) -> None:
    home = tmp_path / "node"
    made = new_circle(home)
    new_circle(home, "other")
    result = run_meshdrop("--home", home, "circle", "leave", "dorm", "--yes")
    assert result.code == 0, result.err
    assert "left circle dorm" in result.out
    assert [c["name"] for c in listed(home)] == ["other"]
    invite_secret = _secret_of(str(made["invite"]))
    assert all(invite_secret.hex().encode() not in data for data in circle_files(home).values())


def _secret_of(invite: str) -> bytes:
    from meshdrop.core.circles import decode_invite

    return decode_invite(invite).raw


@pytest.mark.parametrize(("answer", "kept"), [("n", True), ("y", False)])
def test_leave_asks_on_a_terminal(tmp_path: Path, answer: str, kept: bool) -> None:
    home = tmp_path / "node"
    new_circle(home)
    result = run_in_terminal("--home", home, "circle", "leave", "dorm", answer=answer)
    assert "Leave the circle dorm" in result.out
    assert ([c["name"] for c in listed(home)] == ["dorm"]) is kept
    assert result.code == (1 if kept else 0), result.out


# Re-keying


def test_rekey_makes_a_new_invite_and_keeps_the_old_key_retired(tmp_path: Path) -> None:
    owner, member, removed = tmp_path / "owner", tmp_path / "member", tmp_path / "removed"
    made = new_circle(owner)
    for home in (member, removed):
        meshdrop_in_process("--home", home, "circle", "join", str(made["invite"]),
                            "--name", "dorm", check=True)  # fmt: skip
    result = run_meshdrop("--home", owner, "circle", "rekey", "dorm")
    assert result.code == 0, result.err
    (new_code,) = re.findall(r"invite code: (\S+)", result.out)
    assert new_code != made["invite"]
    assert "Every member must now take this invite" in result.out
    assert "lost access" in result.out and QR_BLOCKS.search(result.out)
    (shown,) = listed(owner)
    assert shown["generation"] == 2 and shown["id"] != made["id"]
    assert [g["id"] for g in shown["retired"]] == [made["id"]]
    # A member takes the new invite and is in the new generation with the owner; the
    # member who did not get it is left on the old one.
    took = run_meshdrop("--home", member, "circle", "rekey", "dorm", "--code", new_code)
    assert took.code == 0, took.err
    assert listed(member)[0]["id"] == shown["id"]
    assert listed(removed)[0]["id"] == made["id"]


def test_an_old_invite_after_a_rekey_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "node"
    made = new_circle(home)
    meshdrop_in_process("--home", home, "circle", "rekey", "dorm", check=True)
    before = circle_files(home)
    result = run_meshdrop("--home", home, "circle", "join", str(made["invite"]), "--name", "old")
    assert_one_line_refusal(result, 2, "an old invite of the circle 'dorm'", "generation 1")
    assert circle_files(home) == before


def test_joining_the_new_invite_under_the_same_name_points_to_rekey(tmp_path: Path) -> None:
    owner, member = tmp_path / "owner", tmp_path / "member"
    made = new_circle(owner, "dorm")
    meshdrop_in_process(
        "--home", member, "circle", "join", str(made["invite"]), "--name", "Dorm 3", check=True
    )
    rekeyed = meshdrop_in_process("--home", owner, "circle", "rekey", "dorm", "--json", check=True)
    new_code = json.loads(rekeyed.out)["invite"]
    result = run_meshdrop("--home", member, "circle", "join", new_code, "--name", "dorm 3")
    assert_one_line_refusal(result, 2, 'circle rekey "Dorm 3" --code CODE')


# Damaged circle files


def _write_circles(home: Path) -> tuple[Path, Path]:
    """Two circles on ``home``: (the file of 'dorm', the file of 'work')."""
    new_circle(home, "dorm")
    new_circle(home, "work")
    book = CircleStore(home).load()
    by_name = {s.circle.name: s.path for s in book.circles}
    return by_name["dorm"], by_name["work"]


def test_a_damaged_circle_file_is_named_and_the_others_still_work(tmp_path: Path) -> None:
    home = tmp_path / "node"
    broken, _ = _write_circles(home)
    broken.write_bytes(broken.read_bytes()[:50])  # truncated, as by a pulled plug
    damaged = broken.read_bytes()
    result = run_meshdrop("--home", home, "circle", "ls")
    assert result.code == 7, result
    assert "work" in result.out and "dorm" not in result.out
    assert_one_line_refusal(result, 7, str(broken), "damaged", "cut short")
    shown = run_meshdrop("--home", home, "circle", "show", "work")
    assert shown.code == 0, shown.err
    missing = run_meshdrop("--home", home, "circle", "show", "dorm")
    assert_one_line_refusal(missing, 2, "no circle named 'dorm'", "1 damaged circle file")
    made = run_meshdrop("--home", home, "circle", "new", "third")
    assert made.code == 0, made.err
    assert broken.read_bytes() == damaged  # left as it was, for the owner to restore


GARBLED: dict[str, Callable[[bytes], bytes]] = {
    "empty": lambda data: b"",
    "truncated": lambda data: data[: len(data) // 2],
    "not-json": lambda data: b"\x00\xff" + data,
    "not-text": lambda data: b"\xff\xfe\xfd",
    "a-list": lambda data: b"[]",
    "no-generations": lambda data: data.replace(b'"generations"', b'"generation"'),
    "secret-too-short": lambda data: re.sub(rb'"secret": "[0-9a-f]{2}', b'"secret": "', data),
    "secret-not-hex": lambda data: re.sub(rb'"secret": "[0-9a-f]', b'"secret": "z', data),
    "number-a-string": lambda data: data.replace(b'"number": 1', b'"number": "1"'),
    "created-a-bool": lambda data: re.sub(rb'"created": \d+', b'"created": true', data),
    "current-retired": lambda data: data.replace(b'"retired": null', b'"retired": 5'),
    "future-format": lambda data: data.replace(b'"format": 1', b'"format": 2'),
    "duplicate-key": lambda data: data.replace(b'"format": 1,', b'"format": 1, "format": 1,'),
    "control-in-name": lambda data: data.replace(b'"name": "dorm"', b'"name": "do\\u001brm"'),
    "huge": lambda data: data + b" " * 70_000,
}


@pytest.mark.parametrize("case", GARBLED)
def test_each_kind_of_garbled_circle_file_is_reported_not_loaded(tmp_path: Path, case: str) -> None:
    home = tmp_path / "node"
    broken, kept = _write_circles(home)
    garbled = GARBLED[case](broken.read_bytes())
    assert garbled != broken.read_bytes()
    broken.write_bytes(garbled)
    book = CircleStore(home).load()
    assert [s.path for s in book.circles] == [kept]
    (error,) = book.damaged
    assert isinstance(error, CircleFileError) and error.exit_code == 7
    message = str(error)
    assert str(broken) in message and "damaged" in message and "\n" not in message
    with pytest.raises(CircleFileError):
        book.require_intact()
    assert broken.read_bytes() == garbled


def test_a_circle_file_round_trips(tmp_path: Path) -> None:
    home = tmp_path / "node"
    dorm, _ = _write_circles(home)
    circle = read_circle_file(dorm)
    assert encode_circle(circle) == dorm.read_bytes()
    assert circle.current.secret.id == circle_id(circle.current.secret)


def test_temp_files_of_an_interrupted_write_are_not_circles(tmp_path: Path) -> None:
    home = tmp_path / "node"
    dorm, _ = _write_circles(home)
    (dorm.parent / f".tmp-0123456789ab-{dorm.name}").write_bytes(dorm.read_bytes()[:10])
    book = CircleStore(home).load()
    assert len(book.circles) == 2 and book.damaged == ()
