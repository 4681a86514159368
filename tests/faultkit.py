"""Injected I/O faults (issue 21): make the Nth call of one kind fail with ENOSPC, EIO or
EROFS, in a forked child that runs the real command (``meshdrop.cli.main.main``) in
process.

The parent imports meshdrop once and forks a child per run, so a fault point costs the
command's own work, not an interpreter start. The child patches, at the Python level:

- ``write``: os.write, os.pwrite, os.writev, os.pwritev, and ``write``/``writelines`` of
  every file object opened for writing through io.open (builtins.open, Path.open,
  Path.write_bytes, os.fdopen all go through it);
- ``fsync``: os.fsync, os.fdatasync, os.sync and the store's syncfs (a libc call);
- ``rename``: os.rename, os.replace (Path.rename and Path.replace call them);
- ``open``: os.open and io.open (ENOSPC and EROFS only where the open may create or write;
  EIO on any open);
- ``sqlite``: execute, executemany, executescript and commit of every connection made
  by sqlite3.connect or SQLCipher's connect (a connection factory: C methods cannot be
  patched on instances), raising what SQLite raises: "database or disk is full"
  (SQLITE_FULL), "disk I/O error" (SQLITE_IOERR), "attempt to write a readonly database"
  (SQLITE_READONLY).

A run without a fault counts the calls of each kind (K); a sweep then fails each N in
1..K. The child must be forked from a process that runs no threads (the parent only
imports and forks)."""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import sqlite3
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlcipher3.dbapi2 as sqlcipher

from meshdrop.store import chunks as store_chunks
from meshdrop.store import sealconvert

KINDS = ("write", "fsync", "rename", "open", "sqlite")
ERRNOS = {"ENOSPC": errno.ENOSPC, "EIO": errno.EIO, "EROFS": errno.EROFS}
# The result codes and messages SQLite gives for each fault (sqlite3.h).
SQLITE_FAULTS = {
    errno.ENOSPC: (13, "SQLITE_FULL", "database or disk is full"),
    errno.EIO: (10, "SQLITE_IOERR", "disk I/O error"),
    errno.EROFS: (8, "SQLITE_READONLY", "attempt to write a readonly database"),
}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# An open that writes counts as "open-w" too: ENOSPC and EROFS are only ever met there.
CREATING_ERRNOS = (errno.ENOSPC, errno.EROFS)
CHILD_FAILED = 98  # the child's own code failed (not meshdrop's): a harness fault


@dataclass(frozen=True)
class Fault:
    """Fail the ``nth`` call of ``kind`` with ``err``."""

    kind: str
    nth: int
    err: int

    @property
    def counter(self) -> str:
        writing_only = self.kind == "open" and self.err in CREATING_ERRNOS
        return "open-w" if writing_only else self.kind

    def label(self) -> str:
        return f"{self.kind}#{self.nth}:{errno.errorcode[self.err]}"


def counter_for(kind: str, err: int) -> str:
    return Fault(kind, 1, err).counter


@dataclass
class Injector:
    fault: Fault | None
    counts: dict[str, int] = field(default_factory=dict)
    fired: bool = False

    def hit(self, counter: str, filename: object = None) -> None:
        self.counts[counter] = self.counts.get(counter, 0) + 1
        fault = self.fault
        if fault is None or self.fired or counter != fault.counter:
            return
        if self.counts[counter] == fault.nth:
            self.fired = True
            if fault.kind == "sqlite":
                raise sqlite_error(fault.err, self.sqlite_module)
            if isinstance(filename, str | os.PathLike):
                raise OSError(fault.err, os.strerror(fault.err), os.fspath(filename))
            raise OSError(fault.err, os.strerror(fault.err))

    sqlite_module: Any = sqlite3


def sqlite_error(err: int, module: Any) -> Exception:
    code, name, message = SQLITE_FAULTS[err]
    exc = module.OperationalError(message)
    exc.sqlite_errorcode = code
    exc.sqlite_errorname = name
    return exc


class WriteCounting:
    """A file object opened for writing whose writes count (and may fail)."""

    def __init__(self, inner: Any, injector: Injector) -> None:
        self._inner = inner
        self._injector = injector

    def write(self, data: Any) -> Any:
        self._injector.hit("write")
        return self._inner.write(data)

    def writelines(self, lines: Iterable[Any]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __iter__(self) -> Any:
        return iter(self._inner)

    def __enter__(self) -> WriteCounting:
        self._inner.__enter__()
        return self

    def __exit__(self, *exc: object) -> Any:
        return self._inner.__exit__(*exc)


def _writes(mode: str) -> bool:
    return any(c in mode for c in "wax+")


def install(injector: Injector) -> None:
    """Patch this (forked) process for good: it exits after the run."""

    def counted(real: Callable[..., Any], kind: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            injector.hit(kind, args[0] if args else None)
            return real(*args, **kwargs)

        return call

    for name, kind in (
        ("write", "write"),
        ("pwrite", "write"),
        ("writev", "write"),
        ("pwritev", "write"),
        ("fsync", "fsync"),
        ("fdatasync", "fsync"),
        ("sync", "fsync"),
        ("rename", "rename"),
        ("replace", "rename"),
    ):
        if hasattr(os, name):
            setattr(os, name, counted(getattr(os, name), kind))
    store_chunks.syncfs = counted(store_chunks.syncfs, "fsync")
    sealconvert.syncfs = counted(sealconvert.syncfs, "fsync")

    real_os_open = os.open

    def os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & WRITE_FLAGS:
            injector.hit("open-w", path)
        injector.hit("open", path)
        return real_os_open(path, flags, *args, **kwargs)

    os.open = os_open

    real_io_open = io.open

    def io_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if not isinstance(file, int):  # os.fdopen: the descriptor is open already
            if _writes(mode):
                injector.hit("open-w", file)
            injector.hit("open", file)
        handle = real_io_open(file, mode, *args, **kwargs)
        return WriteCounting(handle, injector) if _writes(mode) else handle

    io.open = io_open
    builtins.open = io_open
    _install_sqlite(injector)


def _install_sqlite(injector: Injector) -> None:
    def connection_class(base: type[Any], module: Any) -> type[Any]:
        def hit() -> None:
            injector.sqlite_module = module
            injector.hit("sqlite")

        class Faulty(base):
            def execute(self, *args: Any) -> Any:
                hit()
                return super().execute(*args)

            def executemany(self, *args: Any) -> Any:
                hit()
                return super().executemany(*args)

            def executescript(self, *args: Any) -> Any:
                hit()
                return super().executescript(*args)

            def commit(self) -> None:
                hit()
                super().commit()

        return Faulty

    modules: tuple[Any, ...] = (sqlite3, sqlcipher)
    for module in modules:
        real_connect = module.connect
        factory = connection_class(module.Connection, module)

        def connect(*args: Any, _real: Any = real_connect, _f: Any = factory, **kw: Any) -> Any:
            kw.setdefault("factory", _f)
            return _real(*args, **kw)

        module.connect = connect


@dataclass
class Outcome:
    code: int
    out: str
    err: str
    fired: bool = False
    counts: dict[str, int] = field(default_factory=dict)


def run_forked(target: Callable[[], int], env: dict[str, str], fault: Fault | None) -> Outcome:
    """``target()`` (its return value the exit code) in a forked child with ``env``'s
    MESHDROP_* variables only, stdin from /dev/null, and ``fault`` installed (None: only
    count the calls)."""
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
        out, err, report = (Path(tmp) / n for n in ("out", "err", "report"))
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child)
            code = CHILD_FAILED
            try:
                code = _child(target, env, fault, out, err, report)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        state = json.loads(report.read_text()) if report.exists() else {}
        return Outcome(
            code,
            out.read_text(errors="replace"),
            err.read_text(errors="replace"),
            bool(state.get("fired")),
            dict(state.get("counts", {})),
        )


def _child(
    target: Callable[[], int],
    env: dict[str, str],
    fault: Fault | None,
    out: Path,
    err: Path,
    report: Path,
) -> int:
    for stream, path in ((1, out), (2, err)):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, stream)
        os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    for name in [k for k in os.environ if k.startswith("MESHDROP_")]:
        del os.environ[name]
    os.environ.update(env)
    injector = Injector(fault)
    real_write = os.write
    install(injector)
    try:
        code = target()
    except BaseException:  # the harness's own code failed: a traceback says where
        traceback.print_exc()
        code = CHILD_FAILED
    sys.stdout.flush()
    sys.stderr.flush()
    state = json.dumps({"fired": injector.fired, "counts": injector.counts}).encode()
    injector.fault = None  # the report below must not fail
    fd = os.open(report, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    real_write(fd, state)
    os.close(fd)
    return code


def cli(*argv: str | Path) -> Callable[[], int]:
    """The installed command's entry point, run with ``argv``: its exit code."""

    def run() -> int:
        from meshdrop.cli.main import main

        sys.argv = ["meshdrop", *map(str, argv)]
        try:
            main()
        except SystemExit as exc:
            status = exc.code
            return status if isinstance(status, int) else (0 if status is None else 1)
        return 0

    return run
