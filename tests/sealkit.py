"""What the sealed-store lifecycle tests share: a plain store with something in it, the
passphrase environments, and looking for plaintext in a home's bytes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from lankit import wait_until

from conftest import Publisher, Result, meshdrop_in_process, pack, run_meshdrop, write_tree

PASSPHRASE = "the real passphrase of this store"
OTHER = "a different passphrase for tests"
FAST = {"MESHDROP_TEST_FAST_KDF": "1"}
SEALED = {**FAST, "MESHDROP_STORE_PASSPHRASE": PASSPHRASE}
SECRET_TEXT = b"Minutes of the night-shift meeting, room 4"
FILE_NAME = "minutes-of-the-meeting.html"


def stocked_home(root: Path, publisher: Publisher) -> Path:
    """A plain home that trusts ``publisher`` and holds the bundle "minutes"."""
    home = root / "home"
    src = write_tree(root / "src", {FILE_NAME: b"<p>" + SECRET_TEXT + b"</p>"})
    bundle = pack(publisher, src, root / "minutes.mdrop", "minutes")
    meshdrop_in_process("--home", home, "trust", "add", "--yes", publisher.pub, check=True)
    meshdrop_in_process("--home", home, "import", bundle, check=True)
    return home


def chunk_hash() -> bytes:
    return hashlib.sha256(b"<p>" + SECRET_TEXT + b"</p>").digest()


def sealed_home(root: Path, publisher: Publisher) -> Path:
    home = stocked_home(root, publisher)
    meshdrop_in_process("--home", home, "seal", env=SEALED, check=True)
    wait_until(lambda: no_leftovers(home), what="the plain files removed")
    return home


def no_leftovers(home: Path) -> bool:
    """Nothing moved aside is left (seal and panic remove it in the background)."""
    return not any(name.startswith(".tmp-") for name in os.listdir(home))


def ls(home: Path, env: dict[str, str] | None = None) -> Result:
    return run_meshdrop("--home", home, "ls", env={**FAST, **(env or {})})


def lists_minutes(home: Path, env: dict[str, str] | None = None) -> bool:
    result = ls(home, env)
    assert result.code == 0, result
    return "minutes" in result.out


def one_line_error(result: Result, code: int, *fragments: str) -> None:
    """A refusal: ``code``, one line on stderr naming each fragment, no traceback."""
    assert result.code == code, result
    assert "Traceback" not in result.err + result.out, result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    for fragment in fragments:
        assert fragment.lower() in result.err.lower(), result.err


def home_bytes(home: Path) -> bytes:
    """Every byte of every file under ``home`` (names too), one blob to search."""
    parts = []
    for path in sorted(home.rglob("*")):
        parts.append(str(path.relative_to(home)).encode())
        if path.is_file():
            parts.append(path.read_bytes())
    return b"\0".join(parts)


def holds_plaintext(home: Path) -> bool:
    blob = home_bytes(home)
    digest = chunk_hash()
    return any(
        needle in blob
        for needle in (SECRET_TEXT, FILE_NAME.encode(), b"minutes", digest, digest.hex().encode())
    )
