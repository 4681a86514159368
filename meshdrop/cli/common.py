"""What every command shares: the home folder, passphrases, times, progress, output."""

from __future__ import annotations

import json
import os
import sys
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from meshdrop.errors import PassphraseError, UsageError

if TYPE_CHECKING:
    from meshdrop.store.store import Store

PASSPHRASE_ENV = "MESHDROP_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)


def default_home() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("meshdrop", appauthor=False))


def home_path(ctx: click.Context) -> Path:
    home = ctx.obj.get("home") if ctx.obj else None
    return Path(home) if home else default_home()


def open_store(ctx: click.Context) -> Store:
    from meshdrop.store.store import Store

    return Store(home_path(ctx))


PUBLISHER_FILE_LIMIT = 16 * 1024 * 1024


def read_publisher_file(path: Path) -> bytes:
    """A publisher.pub's bytes (a small regular file; links, devices, huge files refused)."""
    from meshdrop.fs import read_small_file

    return read_small_file(path, PUBLISHER_FILE_LIMIT, "publisher file")


def passphrase_from_env_or_prompt(what: str, confirm: bool = False) -> bytes:
    value = os.environ.get(PASSPHRASE_ENV)
    if value is not None:
        return value.encode()
    if not sys.stdin.isatty():
        raise PassphraseError(
            f"a passphrase is needed for {what}: set {PASSPHRASE_ENV} or run in a terminal"
        )
    entered = click.prompt(
        f"Passphrase for {what}", hide_input=True, confirmation_prompt=confirm, err=True
    )
    if not entered:
        raise PassphraseError("an empty passphrase is not allowed; use --unencrypted instead")
    return str(entered).encode()


def parse_time(text: str, option: str) -> int:
    """Unix seconds from '1700000000', '2027-01-31' (midnight UTC) or an ISO date-time."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(
            f"{option} {text!r} is not a date: use YYYY-MM-DD, an ISO date-time or Unix seconds"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def format_time(ts: int | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def bar_wanted(quiet: bool) -> bool:
    """Whether to draw a progress bar: not asked to be quiet, and stderr is a terminal.
    Checked before importing tqdm, whose import alone costs about 50 ms."""
    return not quiet and sys.stderr.isatty()


@contextmanager
def progress_bar(total: int, label: str, quiet: bool = False) -> Iterator[Callable[[int], None]]:
    """A byte progress bar on stderr (rate and time left), only when stderr is a terminal."""
    if not bar_wanted(quiet):
        yield lambda _nbytes: None
        return
    from tqdm import tqdm  # imported here: most commands never draw a bar

    bar = tqdm(
        total=total,
        desc=label,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        leave=False,
        dynamic_ncols=True,
    )

    def advance(nbytes: int) -> None:
        bar.update(nbytes)

    try:
        yield advance
    finally:
        bar.close()


def emit_json(value: object) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, sort_keys=True))


def import_line(
    files: list[str],
    outcome: str,
    detail: str,
    *,
    folder: str | None = None,
    name: str | None = None,
    version: int | None = None,
    publisher: str | None = None,
    exit_code: int = 0,
) -> dict[str, object]:
    """The one shape of an `import --json` line, whatever the source (a file, a folder, a
    courier folder): README's "import --json" documents each key. ``withdrawn`` lists the
    stored bundles a new publisher record withdrew (to be filled)."""
    return {
        "files": files,
        "folder": folder,
        "outcome": outcome,
        "detail": detail,
        "name": name,
        "version": version,
        "publisher": publisher,
        "exit_code": exit_code,
        "withdrawn": [],
    }


_UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def printable(text: str) -> str:
    """Untrusted text made safe for a terminal: control and bidi characters escaped."""
    if text.isprintable():  # False for every category escaped below: the common fast path
        return text
    return "".join(
        ascii(ch)[1:-1] if unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch for ch in text
    )
