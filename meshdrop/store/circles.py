"""The circles this node is in, on disk: one file per circle in ``<home>/circles/``
(folder 0700, files 0600, each written whole with fs.atomic_write). Every read and write
of a circle file is in this module, so sealing them under the store key is one change.

A file is JSON (UTF-8)::

    {"format": 1, "name": "...", "generations": [
        {"number": 1, "secret": "<40 hex digits>", "created": <unix s>, "retired": <unix s>},
        {"number": 2, "secret": "...", "created": ..., "retired": null}]}

Its name is ``<16 random hex digits>.circle``, drawn when the circle is added: not the
circle id, which every member shares, so that the file names of two seized nodes do not
show they are in one circle. A damaged file is reported (CircleFileError naming it) and
left untouched; the other circles still load.

In a sealed store the file's content is that JSON sealed with the purpose "circle"
(store/homefiles.py); its name is drawn the same way."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshdrop.core.circles import (
    SECRET_BYTES,
    Circle,
    CircleSecret,
    Generation,
    check_circle_name,
    new_circle,
    same_name,
)
from meshdrop.errors import (
    CircleExistsError,
    CircleFileError,
    MeshdropError,
    SealedFileError,
    StoreError,
    UnknownCircleError,
    UsageError,
)
from meshdrop.fs import atomic_write, fsync_dir, os_error_message, read_small_file
from meshdrop.store import homefiles
from meshdrop.store.homefiles import PLAIN, FileCodec

FOLDER_NAME = "circles"
FOLDER_MODE = 0o700
FILE_MODE = 0o600
FILE_SUFFIX = ".circle"
FILE_LIMIT = 64 * 1024 + homefiles.OVERHEAD
FORMAT_VERSION = 1
LOCK_NAME = ".lock"
_FILE_NAME = re.compile(r"[0-9a-f]{16}\.circle")
_SECRET_HEX = re.compile(rf"[0-9a-f]{{{2 * SECRET_BYTES}}}")
_FILE_KEYS = {"format", "name", "generations"}
_GENERATION_KEYS = {"number", "secret", "created", "retired"}


@dataclass(frozen=True)
class StoredCircle:
    circle: Circle
    path: Path


@dataclass(frozen=True)
class CircleBook:
    """Every circle file of a home, read: the circles that loaded (by name) and one
    error for each file that did not."""

    circles: tuple[StoredCircle, ...]
    damaged: tuple[CircleFileError, ...]

    def find(self, name: str) -> StoredCircle:
        for stored in self.circles:
            if same_name(stored.circle.name, name):
                return stored
        hint = f" ({len(self.damaged)} damaged circle file(s) could not be read)"
        raise UnknownCircleError(
            f"no circle named {name!r} on this node{hint if self.damaged else ''}; "
            "see 'meshdrop circle ls'"
        )

    def holding(self, secret: CircleSecret) -> tuple[StoredCircle, Generation] | None:
        """The circle (and its generation) whose secret ``secret`` is, if any."""
        for stored in self.circles:
            generation = stored.circle.holding(secret)
            if generation is not None:
                return stored, generation
        return None

    def require_intact(self) -> None:
        """Raise the first damaged file's error: for a caller that must not go on with
        part of the circles (a node would otherwise leave a circle silently)."""
        if self.damaged:
            raise self.damaged[0]


class CircleStore:
    """The ``circles`` folder of a node's home. Changes hold an exclusive lock on
    ``circles/.lock``, so two commands never add the same circle or lose a rekey.
    ``codec``: how the files are kept (by default as the home's store is: plain or sealed;
    StoreLockedError if it is sealed and locked)."""

    def __init__(self, home: Path, codec: FileCodec | None = None) -> None:
        self.home = home
        self.folder = home / FOLDER_NAME
        self.codec = FileCodec.for_home(home) if codec is None else codec

    def file_names(self) -> list[Path]:
        """The circle files in the folder (not the lock, nor temp files), by name."""
        if not self.folder.is_dir():
            return []
        try:
            paths = sorted(self.folder.iterdir())
        except OSError as exc:
            raise StoreError(os_error_message(exc, f"reading {self.folder}")) from exc
        return [path for path in paths if _FILE_NAME.fullmatch(path.name)]

    def load(self) -> CircleBook:
        circles: list[StoredCircle] = []
        damaged: list[CircleFileError] = []
        for path in self.file_names():
            try:
                circles.append(StoredCircle(read_circle_file(path, self.codec), path))
            except CircleFileError as exc:
                damaged.append(exc)
        circles.sort(key=lambda stored: stored.circle.name.casefold())
        return CircleBook(tuple(circles), tuple(damaged))

    def add(self, name: str, secret: CircleSecret, now: int) -> Circle:
        """Join (or make) a circle under ``name``. Refused if the name is taken or the
        secret is already held here, as any generation of any circle."""
        circle = new_circle(name, secret, now)
        with self._locked():
            book = self.load()
            _check_new(book, circle.name, secret)
            path = self.folder / f"{secrets.token_hex(8)}{FILE_SUFFIX}"
            if path.exists():  # 64 random bits: never, but a file is never overwritten
                raise StoreError(f"{path} exists already; try again")
            _write(path, circle, self.codec)
        return circle

    def leave(self, name: str) -> Circle:
        """Remove a circle and every generation of its key from this node."""
        with self._locked():
            stored = self.load().find(name)
            try:
                stored.path.unlink()
                fsync_dir(self.folder)
            except OSError as exc:
                raise StoreError(os_error_message(exc, f"removing {stored.path}")) from exc
        return stored.circle

    def rekey(self, name: str, now: int, secret: CircleSecret | None = None) -> Circle:
        """Give a circle a new current secret (``secret``: one a member received as the new
        invite; None: a fresh random one), the old one kept as retired at ``now``."""
        with self._locked():
            book = self.load()
            stored = book.find(name)
            if secret is None:
                secret = CircleSecret.generate()
            else:
                _check_secret_is_new(book, secret)
            circle = stored.circle.rekeyed(secret, now)
            _write(stored.path, circle, self.codec)
        return circle

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.home.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
            self.folder.mkdir(exist_ok=True, mode=FOLDER_MODE)
            self.folder.chmod(FOLDER_MODE)
            fd = os.open(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except OSError as exc:
            raise StoreError(os_error_message(exc, f"opening {self.folder}")) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _check_new(book: CircleBook, name: str, secret: CircleSecret) -> None:
    _check_secret_is_new(book, secret)
    for stored in book.circles:
        if same_name(stored.circle.name, name):
            raise CircleExistsError(
                f"a circle named {stored.circle.name!r} is already on this node: choose "
                "another name (if this is its new invite after a rekey, run "
                f"'meshdrop circle rekey {shell_word(stored.circle.name)} --code CODE' instead)"
            )


def shell_word(name: str) -> str:
    """``name`` as typed in a shell command: in double quotes unless it is a plain word."""
    return name if re.fullmatch(r"[\w.+-]+", name) else json.dumps(name, ensure_ascii=False)


def _check_secret_is_new(book: CircleBook, secret: CircleSecret) -> None:
    held = book.holding(secret)
    if held is None:
        return
    stored, generation = held
    if generation is stored.circle.current:
        raise CircleExistsError(
            f"this node is already in that circle, under the name {stored.circle.name!r}"
        )
    raise CircleExistsError(
        f"that is an old invite of the circle {stored.circle.name!r} on this node "
        f"(generation {generation.number}, replaced by a rekey): ask for its current invite"
    )


def _write(path: Path, circle: Circle, codec: FileCodec) -> None:
    atomic_write(path, codec.encode(homefiles.CIRCLE, encode_circle(circle)), FILE_MODE)


def encode_circle(circle: Circle) -> bytes:
    document = {
        "format": FORMAT_VERSION,
        "name": circle.name,
        "generations": [
            {
                "number": g.number,
                "secret": g.secret.raw.hex(),
                "created": g.created,
                "retired": g.retired,
            }
            for g in circle.generations
        ],
    }
    return (json.dumps(document, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def read_circle_file(path: Path, codec: FileCodec = PLAIN) -> Circle:
    """One circle file, checked whole; CircleFileError (naming the file) for anything
    that is not a circle file as this module writes them."""
    try:
        data = read_small_file(path, FILE_LIMIT, "circle file")
    except MeshdropError as exc:
        raise _damaged(path, str(exc)) from exc
    try:
        data = codec.decode(homefiles.CIRCLE, data, path)
    except SealedFileError as exc:
        raise _damaged(path, "it does not open with this store's key") from exc
    try:
        document = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
        return decode_circle(document)
    except (UnicodeDecodeError, ValueError, UsageError) as exc:
        # json's own messages (cut short, bad syntax) are in ValueError's text already.
        raise _damaged(path, _reason(exc)) from exc


def _reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return "cut short" if exc.pos >= len(exc.doc.rstrip()) else "not JSON"
    if isinstance(exc, UnicodeDecodeError):
        return "not text"
    return str(exc)


def _damaged(path: Path, reason: str) -> CircleFileError:
    return CircleFileError(
        f"the circle file {path} is damaged ({reason}); it was left as it is and the other "
        "circles still work: restore it from a backup, or remove it and join that circle "
        "again with its invite"
    )


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise ValueError("a key appears twice")
    return document


def decode_circle(document: object) -> Circle:
    """A Circle from a parsed circle file; ValueError saying what is wrong."""
    if not isinstance(document, dict) or set(document) != _FILE_KEYS:
        raise ValueError(f"not an object with exactly {', '.join(sorted(_FILE_KEYS))}")
    if document["format"] != FORMAT_VERSION or isinstance(document["format"], bool):
        raise ValueError(f"format {document['format']!r}, not {FORMAT_VERSION}")
    name = document["name"]
    if not isinstance(name, str) or check_circle_name(name) != name:
        raise ValueError("its name is not a valid circle name")
    entries = document["generations"]
    if not isinstance(entries, list) or not entries:
        raise ValueError("no generations")
    generations = tuple(_decode_generation(entry) for entry in entries)
    numbers = [g.number for g in generations]
    if numbers != sorted(set(numbers)):
        raise ValueError("its generations are out of order")
    if generations[-1].retired is not None or any(g.retired is None for g in generations[:-1]):
        raise ValueError("not exactly its last generation is current")
    return Circle(name, generations)


def _decode_generation(entry: object) -> Generation:
    if not isinstance(entry, dict) or set(entry) != _GENERATION_KEYS:
        raise ValueError(f"a generation without exactly {', '.join(sorted(_GENERATION_KEYS))}")
    secret = entry["secret"]
    if not isinstance(secret, str) or not _SECRET_HEX.fullmatch(secret):
        raise ValueError("a secret that is not 40 hex digits")
    retired = entry["retired"]
    return Generation(
        number=_count(entry["number"], "number", minimum=1),
        secret=CircleSecret(bytes.fromhex(secret)),
        created=_count(entry["created"], "created"),
        retired=None if retired is None else _count(retired, "retired"),
    )


def _count(value: object, field: str, minimum: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value < 2**63:
        raise ValueError(f"a generation's {field} is not a whole number")
    return value
