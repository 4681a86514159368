"""The sealed store's lifecycle: seal, unlock, lock, passphrase, panic (README, "Sealing
a store")."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from meshdrop.cli.common import (
    ask_passphrase,
    checked_new_passphrase,
    confirm_step,
    emit_json,
    home_path,
)
from meshdrop.errors import StoreLockedError, UsageError

NEW_PASSPHRASE_ENV = "MESHDROP_NEW_STORE_PASSPHRASE"  # noqa: S105 (a variable name)
PANIC_CODE_ENV = "MESHDROP_PANIC_CODE"
KEY_FILE_HELP = "A key file made with 'meshdrop passphrase --add-key-file' (e.g. on an SD card)."

key_file_option = click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Open the sealed store with this key file (e.g. on an SD card: pull the card and "
    "the store stays locked after a restart).",
)
panic_signal_option = click.option(
    "--panic-signal",
    is_flag=True,
    help="SIGUSR2 wipes the store as 'meshdrop panic' does (off by default).",
)


def register(cli: click.Group) -> None:
    for command in (seal, unlock, lock, passphrase, panic, panic_code):
        cli.add_command(command)


def store_passphrase(what: str, envs: tuple[str, ...], confirm: bool = False) -> str:
    """A passphrase from the first of ``envs`` that is set, else asked on the terminal."""
    needed = f"{what} is needed: set {envs[0]} or run in a terminal"
    return ask_passphrase(
        envs, what.capitalize(), needed, "an empty passphrase is not allowed", confirm
    )


def open_store_keys(home: Path, key_file: Path | None) -> None:
    """Unlock ``home`` in this process: with ``key_file``, else through the agent or the
    environment, else by asking on the terminal; StoreLockedError without any."""
    from meshdrop.store import sealing

    if not sealing.is_sealed(home):
        return
    if key_file is not None:
        sealing.unlock_with_key_file(home, key_file)
        return
    try:
        sealing.keys_for(home)
    except StoreLockedError:
        if not sys.stdin.isatty():
            raise
        entered = click.prompt("Passphrase of the store", hide_input=True, err=True)
        sealing.unlock_with_passphrase(home, str(entered))


def _require_sealed(home: Path) -> None:
    from meshdrop.store import sealing

    if not sealing.is_sealed(home):
        raise UsageError(f"the store in {home} is not sealed (seal it with 'meshdrop seal')")


weak_option = click.option(
    "--weak-passphrase", is_flag=True, help="Accept a short passphrase (tests, demos)."
)


@click.command(epilog="Example: meshdrop seal ~/node   (or: meshdrop --home ~/node seal)")
@click.argument("home", required=False, type=click.Path(file_okay=False, path_type=Path))
@weak_option
@click.option("--json", "as_json", is_flag=True, help="What was done, as one JSON object.")
@click.pass_context
def seal(ctx: click.Context, home: Path | None, weak_passphrase: bool, as_json: bool) -> None:
    """Encrypt the store in place under a new passphrase (or make a new sealed store).

    The passphrase is asked twice (or read from MESHDROP_STORE_PASSPHRASE). A conversion
    cut short is finished or undone the next time the store is opened."""
    from meshdrop.store import sealconvert, sealing

    home = home or home_path(ctx)
    sealconvert.resume(home)
    if sealing.is_sealed(home):
        raise UsageError(f"the store in {home} is sealed already")
    secret = store_passphrase("the store's new passphrase", sealing.PASSPHRASE_ENVS, confirm=True)
    sealconvert.seal(home, checked_new_passphrase(secret, weak_passphrase))
    if as_json:
        emit_json({"home": str(home), "sealed": True})
    else:
        click.echo(f"sealed the store in {home}; 'meshdrop unlock' opens it for a session")


@click.command(epilog="Example: meshdrop --home ~/node unlock --timeout 3600")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path), help=KEY_FILE_HELP)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    metavar="SECONDS",
    help="Lock again after this many seconds (default: until 'meshdrop lock').",
)
@click.pass_context
def unlock(ctx: click.Context, key_file: Path | None, timeout: float | None) -> None:
    """Open the sealed store for the commands that follow, until 'meshdrop lock'.

    The keys are held in memory only, by a small agent process of your user."""
    from meshdrop.store import keyagent, sealing

    home = home_path(ctx)
    _require_sealed(home)
    if key_file is not None:
        keys = sealing.unlock_with_key_file(home, key_file)
    else:
        secret = store_passphrase("the store's passphrase", sealing.PASSPHRASE_ENVS)
        keys = sealing.unlock_with_passphrase(home, secret)
    keyagent.start(home, keys, timeout)
    click.echo(f"unlocked the store in {home} until 'meshdrop lock'")


@click.command(epilog="Example: meshdrop --home ~/node lock")
@click.pass_context
def lock(ctx: click.Context) -> None:
    """Forget the store's keys (stop the agent 'meshdrop unlock' started)."""
    from meshdrop.store import keyagent, sealing

    home = home_path(ctx)
    keyagent.stop(home)
    sealing.forget(home)
    click.echo(f"the store in {home} is locked")


@click.command(epilog="Example: meshdrop --home ~/node passphrase --add-key-file /media/card/key")
@click.option("--duress", is_flag=True, help="Set the duress passphrase (it wipes the store).")
@click.option(
    "--add-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a new key file at PATH that opens the store (replaces an older one).",
)
@click.option("--remove-key-file", is_flag=True, help="The key file no longer opens the store.")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path), help=KEY_FILE_HELP)
@weak_option
@click.pass_context
def passphrase(
    ctx: click.Context,
    duress: bool,
    add_key_file: Path | None,
    remove_key_file: bool,
    key_file: Path | None,
    weak_passphrase: bool,
) -> None:
    """Change the store's passphrase, or set the duress passphrase or a key file.

    Only the store's key file of slots is rewritten; the data is not re-encrypted. The new
    passphrase is asked twice (or read from MESHDROP_NEW_STORE_PASSPHRASE); the current
    one from MESHDROP_STORE_PASSPHRASE, the agent, or the terminal."""
    from meshdrop.store import slotedit

    home = home_path(ctx)
    _require_sealed(home)
    if sum([duress, add_key_file is not None, remove_key_file]) > 1:
        raise UsageError("give one of --duress, --add-key-file, --remove-key-file")
    open_store_keys(home, key_file)
    if add_key_file is not None:
        slotedit.add_key_file(home, add_key_file)
        click.echo(f"wrote the key file {add_key_file}; keep it apart from this device")
    elif remove_key_file:
        slotedit.remove_key_file(home)
        click.echo("no key file opens the store now")
    else:
        what = "the duress passphrase" if duress else "the store's new passphrase"
        secret = checked_new_passphrase(
            store_passphrase(what, (NEW_PASSPHRASE_ENV,), True), weak_passphrase
        )
        slotedit.set_passphrase(home, secret, duress=duress)
        click.echo(f"{'set' if duress else 'changed'} {what.replace('the store', 'the')}")


@click.command(epilog="Example: meshdrop --home ~/node panic --yes")
@click.option("--yes", is_flag=True, help="Do not ask first.")
@click.pass_context
def panic(ctx: click.Context, yes: bool) -> None:
    """Make the store unreadable at once and stop its node, reader and agent.

    Says nothing on success, whatever the store held."""
    from meshdrop.store import panic as wipe

    home = home_path(ctx)
    confirm_step(f"Wipe the store in {home}?", yes, "pass --yes to wipe without a question")
    wipe.panic(home)


@click.command("panic-code", epilog="Example: meshdrop --home ~/node panic-code")
@click.option("--off", is_flag=True, help="Forget the panic code: the panic page is off.")
@click.pass_context
def panic_code(ctx: click.Context, off: bool) -> None:
    """Set the code that wipes the store when sent to the reader's panic page.

    The code is asked twice (or read from MESHDROP_PANIC_CODE) and kept only as a slow
    hash. A reader started after this serves the page (POST /p, field 'code'); anyone who
    learns the code can wipe the store."""
    from meshdrop.store import paniccode

    home = home_path(ctx)
    if off:
        paniccode.clear_code(home)
        click.echo("no panic code is set: the panic page is off")
        return
    paniccode.set_code(home, store_passphrase("the panic code", (PANIC_CODE_ENV,), confirm=True))
    click.echo("set the panic code: readers started from now on serve the panic page")


def install_panic_signal(home: Path) -> None:
    """SIGUSR2 wipes ``home`` and kills this process (``node --panic-signal``)."""
    import signal

    from meshdrop.reader.panicpage import wipe_and_die

    signal.signal(signal.SIGUSR2, lambda _sig, _frame: wipe_and_die(home))
