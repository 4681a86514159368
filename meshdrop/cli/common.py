"""What every command shares: the home folder, passphrases, times, progress, output."""

from __future__ import annotations

import json
import os
import sys
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from meshdrop.core.sizes import human_size as human_size  # re-exported for the commands
from meshdrop.errors import PassphraseError, UsageError

if TYPE_CHECKING:
    from tqdm import tqdm

    from meshdrop.store.models import Withdrawal
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


def ask_passphrase(
    envs: Sequence[str], prompt: str, needed: str, empty: str, confirm: bool = False
) -> str:
    """A passphrase from the first of ``envs`` that is set and not empty, else typed on the
    terminal (twice with ``confirm``). Without a terminal: PassphraseError(``needed``); an
    empty answer: PassphraseError(``empty``)."""
    for name in envs:
        value = os.environ.get(name)
        if value:
            return value
    if not sys.stdin.isatty():
        raise PassphraseError(needed)
    entered = str(click.prompt(prompt, hide_input=True, confirmation_prompt=confirm, err=True))
    if not entered:
        raise PassphraseError(empty)
    return entered


def passphrase_from_env_or_prompt(what: str, confirm: bool = False) -> bytes:
    """The passphrase of a publisher's or an inbox's keys (MESHDROP_PASSPHRASE, else asked)."""
    needed = f"a passphrase is needed for {what}: set {PASSPHRASE_ENV} or run in a terminal"
    empty = "an empty passphrase is not allowed; use --unencrypted instead"
    return ask_passphrase(
        (PASSPHRASE_ENV,), f"Passphrase for {what}", needed, empty, confirm
    ).encode()


def checked_new_passphrase(passphrase: str, allow_weak: bool) -> str:
    """``passphrase``, refused if weak unless ``allow_weak`` (``--weak-passphrase``)."""
    from meshdrop.publish.keyfile import check_new_passphrase

    if not allow_weak:
        check_new_passphrase(passphrase.encode())
    return passphrase


def new_passphrase(what: str, allow_weak: bool) -> bytes:
    """A passphrase that seals new keys (typed twice, or MESHDROP_PASSPHRASE), refused if
    weak unless ``allow_weak``."""
    typed = passphrase_from_env_or_prompt(what, confirm=True).decode()
    return checked_new_passphrase(typed, allow_weak).encode()


def confirm_step(question: str, yes: bool, unattended: str) -> None:
    """Go on only with a person's yes: ``yes`` (``--yes``) or an answer on the terminal.
    Without a terminal to ask on, refuse with ``unattended`` (what to pass instead)."""
    from meshdrop.errors import ConfirmationNeededError, DeclinedError

    if yes:
        return
    if not sys.stdin.isatty():
        raise ConfirmationNeededError(unattended)
    if not click.confirm(question, default=False, err=True):
        raise DeclinedError("nothing was done (you answered no)")


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


def bar_wanted(quiet: bool) -> bool:
    """Whether to draw a progress bar: not asked to be quiet, and stderr is a terminal.
    Checked before importing tqdm, whose import alone costs about 50 ms."""
    return not quiet and sys.stderr.isatty()


FALLBACK_COLUMNS, FALLBACK_ROWS = 80, 24


def bar_columns() -> int | None:
    """None to follow the terminal's size; a fixed width where the terminal reports zero
    columns (a pseudo-terminal whose size was never set, as container and remote shells
    often give), where tqdm would draw nothing at all for the whole run."""
    try:
        columns = os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError):
        columns = 0
    return None if columns > 0 else FALLBACK_COLUMNS


EXIT_SOME_REFUSED = 1


def outcome_exit_code(failures: list[int], inputs: int) -> int:
    """README's rule: a command on one input exits with that input's own code (3-9); on
    several, 1 if any was refused. ``failures`` holds the code of each refused input."""
    if not failures:
        return 0
    return failures[0] if inputs == 1 else EXIT_SOME_REFUSED


def plural(count: int, noun: str, many: str | None = None) -> str:
    """'1 file', '2 files', '0 files' (``many`` for irregular plurals)."""
    return f"{count} {noun if count == 1 else (many or noun + 's')}"


def byte_bar(total: int, label: str) -> tqdm[Any]:
    """A tqdm bar of bytes on stderr: rate and time left, sized to the terminal."""
    from tqdm import tqdm  # imported here: most commands never draw a bar

    columns = bar_columns()
    return tqdm(
        total=total,
        desc=label,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        leave=False,
        dynamic_ncols=columns is None,
        ncols=columns,
        nrows=None if columns is None else FALLBACK_ROWS,
    )


@contextmanager
def progress_bar(total: int, label: str, quiet: bool = False) -> Iterator[Callable[[int], None]]:
    """A byte progress bar on stderr (rate and time left), only when stderr is a terminal."""
    if not bar_wanted(quiet):
        yield lambda _nbytes: None
        return
    bar = byte_bar(total, label)

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
    withdrawn: Sequence[Withdrawal] = (),
) -> dict[str, object]:
    """The one shape of an `import --json` line, whatever the source (a file, a folder, a
    courier folder): README's "import --json" documents each key. ``withdrawn`` lists the
    stored bundles a new publisher record in this input withdrew."""
    return {
        "files": files,
        "folder": folder,
        "outcome": outcome,
        "detail": detail,
        "name": name,
        "version": version,
        "publisher": publisher,
        "exit_code": exit_code,
        "withdrawn": [w.to_json() for w in withdrawn],
    }


def withdrawal_line(withdrawal: Withdrawal) -> str:
    """What an import says about a stored bundle a new publisher record withdrew."""
    what = f"withdrew {printable(withdrawal.name)} v{withdrawal.version}"
    return f"{what} ({withdrawal_reason(withdrawal)})"


def withdrawal_reason(withdrawal: Withdrawal) -> str:
    if withdrawal.reason == "compromised":
        return f"key {withdrawal.signer} reported compromised"
    return (
        f"signed after key {withdrawal.signer} was {withdrawal.reason} "
        f"on {format_time(withdrawal.revoked_at)}"
    )


_UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def printable(text: str) -> str:
    """Untrusted text made safe for a terminal: control and bidi characters escaped."""
    if text.isprintable():  # False for every category escaped below: the common fast path
        return text
    return "".join(
        ascii(ch)[1:-1] if unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch for ch in text
    )
