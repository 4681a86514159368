"""The operations of the injected-fault sweep (tests/faultops.py), each set up by the real
commands in ``root``: a publisher, three small bundles, a node holding the first."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Collection
from pathlib import Path

from faultkit import cli, run_forked
from faultlan import lan_commit
from faultops import (
    BUNDLES,
    NEW_PASSPHRASE,
    PUBLISHER_PASSPHRASE,
    SEALED,
    SOME_REFUSED,
    STORE_FAULT,
    Operation,
    Outcome,
    fsck_clean,
    listed,
    step,
)

from meshdrop.transports.courier.outcome import Status

A, B, C = "news-a v1", "news-b v1", "news-c v1"
OPERATIONS = (
    "import-file",
    "import-folder",
    "courier-import",
    "courier-export",
    "trust-update",
    "seal",
    "passphrase",
    "panic",
    "lan-commit",
)
IMPORT_INCOMPLETE = Status.INCOMPLETE.value
INPUTS = 3  # of the several-input imports: two bundles, and a publisher file on the stick


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, symlinks=True)
    return dest


def build(root: Path, names: Collection[str] = ()) -> dict[str, Operation]:
    """The operations ``names`` (default: all), by name (set-up: a few seconds)."""
    publisher = root / "publisher"
    step("publisher", "new", publisher, "--name", "Fault News", "--unencrypted")
    bundles = {}
    for name, files in BUNDLES.items():
        src = write_tree(root / f"src-{name}", files)
        out = root / f"{name}.mdrop"
        step("pack", src, "--publisher", publisher, "--name", name, "--version", "1", "-o", out)
        bundles[name] = out
    empty = root / "empty"
    step("--home", empty, "trust", "add", "--yes", publisher / "publisher.pub")
    base = copy(empty, root / "base")
    step("--home", base, "import", bundles["news-a"])
    builders: dict[str, Callable[[], Operation]] = {
        "import-file": lambda: _import_file(root, base, bundles),
        "import-folder": lambda: _import_folder(root, base, bundles),
        "courier-import": lambda: _courier_import(root, base, empty, bundles),
        "courier-export": lambda: _courier_export(root, base, empty, bundles),
        "trust-update": lambda: _trust_update(root, base, publisher),
        "seal": lambda: _seal(root, base),
        "passphrase": lambda: _passphrase(root, base),
        "panic": lambda: _panic(root, base),
        "lan-commit": lambda: lan_commit(root, base, bundles),
    }
    return {name: make() for name, make in builders.items() if not names or name in names}


def _template(root: Path, name: str, base: Path) -> Path:
    template = root / f"t-{name}"
    copy(base, template / "home")
    return template


def _import_file(root: Path, base: Path, bundles: dict[str, Path]) -> Operation:
    template = _template(root, "import-file", base)
    bundle = bundles["news-b"]
    return Operation(
        "import-file",
        template,
        lambda work: ["--home", work / "home", "import", bundle],
        before={A},
        after={A, B},
    )


def _import_folder(root: Path, base: Path, bundles: dict[str, Path]) -> Operation:
    template = _template(root, "import-folder", base)
    folder = root / "folder"
    folder.mkdir()
    for name in ("news-b", "news-c"):
        shutil.copy(bundles[name], folder)
    return Operation(
        "import-folder",
        template,
        lambda work: ["--home", work / "home", "import", folder],
        before={A},
        after={A, B, C},
        fault_codes=(STORE_FAULT, SOME_REFUSED),
        inputs=INPUTS,
    )


def _courier_import(root: Path, base: Path, empty: Path, bundles: dict[str, Path]) -> Operation:
    template = _template(root, "courier-import", base)
    source = copy(empty, root / "courier-source")
    step("--home", source, "import", bundles["news-b"], bundles["news-c"])
    (template / "stick").mkdir()
    step("--home", source, "export", template / "stick")
    return Operation(
        "courier-import",
        template,
        lambda work: ["--home", work / "home", "import", work / "stick" / "meshdrop"],
        before={A},
        after={A, B, C},
        fault_codes=(STORE_FAULT, SOME_REFUSED),
        inputs=INPUTS,
        check_said=_no_false_incomplete,
    )


def _no_false_incomplete(outcome: Outcome) -> list[str]:
    # The stick holds every chunk: "incomplete" would hide the disk's fault.
    if f": {IMPORT_INCOMPLETE}:" in outcome.err:
        return ["a bundle whose every chunk is on the stick was reported incomplete"]
    return []


def _courier_export(root: Path, base: Path, empty: Path, bundles: dict[str, Path]) -> Operation:
    """The stick already holds an export of the node's first bundle (the previous state to
    keep); the node has one more."""
    template = root / "t-courier-export"
    (template / "stick").mkdir(parents=True)
    step("--home", base, "export", template / "stick")
    home = copy(base, template / "home")
    step("--home", home, "import", bundles["news-b"])

    def on_stick(work: Path) -> tuple[set[str] | None, list[str]]:
        reader = work / "reader"
        shutil.rmtree(reader, ignore_errors=True)
        copy(empty, reader)
        imported = run_forked(
            cli("--home", reader, "import", work / "stick" / "meshdrop"), {}, None
        )
        if "Traceback" in imported.err:
            return None, [f"importing the stick: a traceback: {imported.err[-400:]}"]
        return listed(reader, {}), fsck_clean_reader(reader)

    def check_failed(op: Operation, work: Path) -> list[str]:
        found, problems = on_stick(work)
        if found is None or not {A} <= found <= {A, B}:
            problems.append(f"the stick then gives {sorted(found or ())}, not A and maybe B")
        return problems

    def check_done(op: Operation, work: Path) -> list[str]:
        found, problems = on_stick(work)
        if found != {A, B}:
            problems.append(f"the stick gives {sorted(found or ())} after the export completed")
        return problems

    return Operation(
        "courier-export",
        template,
        lambda work: ["--home", work / "home", "export", work / "stick"],
        before={A, B},
        after={A, B},
        check_failed=check_failed,
        check_done=check_done,
    )


def fsck_clean_reader(home: Path) -> list[str]:
    outcome = run_forked(cli("--home", home, "fsck"), {}, None)
    return [] if outcome.code == 0 else [f"the stick's importer: fsck exits {outcome.code}"]


def _record_version(work: Path) -> int | None:
    outcome = run_forked(cli("--home", work / "home", "trust", "ls", "--json"), {}, None)
    if outcome.code != 0:
        return None
    return int(json.loads(outcome.out.splitlines()[0])["version"])


def _trust_update(root: Path, base: Path, publisher: Path) -> Operation:
    template = _template(root, "trust-update", base)
    newer = copy(publisher, root / "publisher-v2")
    step("publisher", "add-signer", newer, "--unencrypted", env=PUBLISHER_PASSPHRASE)

    def check_failed(op: Operation, work: Path) -> list[str]:
        version = _record_version(work)
        return [] if version in (1, 2) else [f"the publisher record is now {version}"]

    def check_done(op: Operation, work: Path) -> list[str]:
        version = _record_version(work)
        return [] if version == 2 else [f"the publisher record is {version} after the update"]

    return Operation(
        "trust-update",
        template,
        lambda work: ["--home", work / "home", "trust", "add", "--yes", newer / "publisher.pub"],
        before={A},
        after={A},
        check_failed=check_failed,
        check_done=check_done,
    )


def _seal(root: Path, base: Path) -> Operation:
    template = _template(root, "seal", base)

    def sealed(op: Operation, work: Path) -> bool:
        return (work / "home" / "slots").exists()

    def check_done(op: Operation, work: Path) -> list[str]:
        return [] if sealed(op, work) else ["the store is not sealed after `seal` completed"]

    return Operation(
        "seal",
        template,
        lambda work: ["--home", work / "home", "seal"],
        before={A},
        after={A},
        env=SEALED,
        check_done=check_done,
        done_anyway=sealed,
    )


def _passphrase(root: Path, base: Path) -> Operation:
    template = _template(root, "passphrase", base)
    step("--home", template / "home", "seal", env=SEALED)
    changed = {**SEALED, "MESHDROP_STORE_PASSPHRASE": NEW_PASSPHRASE}

    def check_env(op: Operation, work: Path) -> dict[str, str]:
        if listed(work / "home", SEALED) is not None:
            return {**SEALED, "MESHDROP_NEW_STORE_PASSPHRASE": NEW_PASSPHRASE}
        return {**changed, "MESHDROP_NEW_STORE_PASSPHRASE": NEW_PASSPHRASE}

    def check_done(op: Operation, work: Path) -> list[str]:
        opens = listed(work / "home", changed) is not None
        return [] if opens else ["the new passphrase does not open the store"]

    return Operation(
        "passphrase",
        template,
        lambda work: ["--home", work / "home", "passphrase"],
        before={A},
        after={A},
        env={**SEALED, "MESHDROP_NEW_STORE_PASSPHRASE": NEW_PASSPHRASE},
        check_env=check_env,
        check_done=check_done,
    )


def _panic(root: Path, base: Path) -> Operation:
    """A sealed store wiped. A panic that failed may leave the store whole only if it
    said so (exit 7, one line); whatever it did, a rerun wipes it, and then nothing of it
    opens with the passphrase: no slots file, no slots file being destroyed, no bundle."""
    template = _template(root, "panic", base)
    step("--home", template / "home", "seal", env=SEALED)
    slots = (template / "home" / "slots").read_bytes()

    def check_done(op: Operation, work: Path) -> list[str]:
        home = work / "home"
        problems = [f"{p.name} is left" for p in home.glob("slots*")]
        kept = [p for p in _files_racing_removal(home) if _holds(p, slots)]
        return problems + [f"the slots' bytes are left in {p.relative_to(home)}" for p in kept]

    return Operation(
        "panic",
        template,
        lambda work: ["--home", work / "home", "panic", "--yes"],
        before={A},
        after=set(),
        env=SEALED,
        may_list=lambda op, shown: shown in ({A}, set()),
        check_done=check_done,
    )


def _files_racing_removal(root: Path) -> list[Path]:
    """The files under ``root`` while panic's background process removes some."""
    return [Path(top, name) for top, _dirs, names in os.walk(root) for name in names]


def _holds(path: Path, data: bytes) -> bool:
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:  # removed meanwhile
        return False


__all__ = ["build", "fsck_clean"]
