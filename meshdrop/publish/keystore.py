"""A publisher folder: the publisher's private keys and its chain of signed records.

    root-<keyid>.key     a root key (meshdrop key file, mode 0600); belongs offline
    signer-<keyid>.key   a delegated signing key (meshdrop key file, mode 0600)
    publisher.pub        the signed record chain that node owners pin (mode 0644)
    retired/             root keys replaced by a rotation and revoked signing keys, kept
                         (never deleted) but out of the way so they are not used again

publisher.pub is written last, so a folder without it is an unfinished setup. Key files
for records not yet published (a proposal waiting for signatures) may lie beside it.
"""

from __future__ import annotations

import fnmatch
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshdrop.core.bundle import encode_publisher_file, parse_publisher_file
from meshdrop.core.keys import generate_private_key, key_id, public_bytes
from meshdrop.core.records import (
    MAX_KEYS,
    MAX_NAME_CHARS,
    MAX_TIME,
    PublisherRecord,
    SignedRecord,
    Signer,
    publisher_id,
    sign_record,
    verify_first_record,
)
from meshdrop.core.trust import PublisherState, describe_time, pin_chain, start_state
from meshdrop.errors import FormatError, StoreError, TrustError, UsageError
from meshdrop.fs import atomic_write, fsync_dir, os_error_message, read_small_file
from meshdrop.publish.keyfile import (
    KeyFileInfo,
    KeyKind,
    PassphraseProvider,
    load_private_key,
    read_key_file_info,
    unlock,
    write_private_key,
)

PUBLISHER_FILE = "publisher.pub"
RETIRED_FOLDER = "retired"
ROOT_PREFIX = "root-"
SIGNER_PREFIX = "signer-"
KEY_SUFFIX = ".key"
DAY = 86400
DEFAULT_SIGNER_DAYS = 730
FOLDER_MODE = 0o700
PUBLIC_MODE = 0o644
MAX_PUBLISHER_FILE_BYTES = 16 * 1024 * 1024

__all__ = [
    "PassphraseProvider",
    "PublisherFolder",
    "create_publisher",
    "load_private_key",
    "load_publisher",
]

# Invisible characters that reorder displayed text, so a name could be shown as another.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_UNSAFE_CATEGORIES = ("Cc", "Cs", "Zl", "Zp")


def key_file_name(prefix: str, public_key: bytes) -> str:
    return f"{prefix}{key_id(public_key)}{KEY_SUFFIX}"


def check_publisher_name(name: str) -> str:
    if not 1 <= len(name) <= MAX_NAME_CHARS or not name.strip():
        raise UsageError(f"the publisher name must be 1 to {MAX_NAME_CHARS} characters")
    for char in name:
        if unicodedata.category(char) in _UNSAFE_CATEGORIES or char in _BIDI_CONTROLS:
            raise UsageError(
                f"the publisher name must not contain control characters (found U+{ord(char):04X})"
            )
    return name


def majority(count: int) -> int:
    """The default threshold for ``count`` root keys: more than half of them."""
    return count // 2 + 1


def check_root_shape(roots: int, threshold: int) -> None:
    if not 1 <= roots <= MAX_KEYS:
        raise UsageError(f"a publisher has 1 to {MAX_KEYS} root keys, not {roots}")
    if not 1 <= threshold <= roots:
        raise UsageError(
            f"the threshold must be from 1 to the number of root keys ({roots}), not {threshold}"
        )


def create_publisher(
    folder: Path,
    name: str,
    passphrase: bytes | None,
    now: int,
    signer_valid_days: int = DEFAULT_SIGNER_DAYS,
    roots: int = 1,
    threshold: int = 1,
) -> PublisherRecord:
    """Make a new publisher in the empty (or new) ``folder``: ``roots`` root keys of which
    ``threshold`` must sign each record, one signing key valid for ``signer_valid_days``,
    and record 1 delegating it, signed by every root key."""
    check_publisher_name(name)
    check_root_shape(roots, threshold)
    if passphrase is not None and not passphrase:
        raise UsageError("the passphrase must not be empty")
    if signer_valid_days < 1:
        raise UsageError("the signing key must be valid for at least one day")
    expires = now + signer_valid_days * DAY
    if not 0 <= now <= expires <= MAX_TIME:
        raise UsageError("the current time or the signing key's lifetime is out of range")
    _prepare_folder(folder)
    root_keys = [generate_private_key() for _ in range(roots)]
    signing_key = generate_private_key()
    root_pubs = tuple(sorted(public_bytes(k) for k in root_keys))
    record = PublisherRecord(
        publisher=publisher_id(root_pubs, threshold),
        name=name,
        version=1,
        created=now,
        roots=root_pubs,
        threshold=threshold,
        signers=(new_signer(public_bytes(signing_key), now, expires, ("*",)),),
    )
    signed = sign_record(record, root_keys)
    for key in root_keys:
        write_key(folder, key, KeyKind.ROOT, passphrase)
    write_key(folder, signing_key, KeyKind.SIGNER, passphrase)
    atomic_write(folder / PUBLISHER_FILE, encode_publisher_file([signed]), PUBLIC_MODE)
    return verify_first_record(signed)


def new_signer(public: bytes, now: int, expires: int, scope: tuple[str, ...]) -> Signer:
    # Valid from a day early, so a node whose clock runs behind still accepts fresh bundles.
    return Signer(public, not_before=max(0, now - DAY), expires=expires, scope=scope)


def key_path(folder: Path, kind: KeyKind, public: bytes) -> Path:
    prefix = ROOT_PREFIX if kind is KeyKind.ROOT else SIGNER_PREFIX
    return folder / key_file_name(prefix, public)


def write_key(
    folder: Path, key: Ed25519PrivateKey, kind: KeyKind, passphrase: bytes | None
) -> Path:
    path = key_path(folder, kind, public_bytes(key))
    write_private_key(path, key, kind, passphrase)
    return path


def _prepare_folder(folder: Path) -> None:
    try:
        if folder.exists():
            if not folder.is_dir():
                raise UsageError(f"{folder} is a file; choose a new folder for the publisher")
            if any(folder.iterdir()):
                raise UsageError(f"{folder} is not empty; choose a new folder for the publisher")
        else:
            folder.mkdir(mode=FOLDER_MODE, parents=True)
        folder.chmod(FOLDER_MODE)
    except OSError as exc:
        raise UsageError(f"cannot create the folder {folder} ({exc.strerror})") from exc


@dataclass(frozen=True)
class PublisherFolder:
    """A verified publisher folder: its record chain and the newest record."""

    folder: Path
    state: PublisherState

    @property
    def records(self) -> tuple[SignedRecord, ...]:
        return self.state.signed

    @property
    def current(self) -> PublisherRecord:
        return self.state.current

    def signer_path(self, signer: Signer) -> Path:
        return key_path(self.folder, KeyKind.SIGNER, signer.key)

    def root_key_file(self, public: bytes) -> KeyFileInfo | None:
        """The checked (still locked) key file of the root key ``public``, if it is here."""
        path = key_path(self.folder, KeyKind.ROOT, public)
        if not path.is_file():
            return None
        info = read_key_file_info(path)
        if info.public != public:
            raise FormatError(f"{path} holds another key than its name says")
        if info.kind is not KeyKind.ROOT:
            raise FormatError(f"{path} holds a {info.kind.label}, not a root key")
        return info

    def introduced(self, key: bytes) -> int:
        """The version of the first record that delegated ``key``."""
        return next(r.version for r in self.state.records if r.signer(key) is not None)

    def load_signer(
        self,
        passphrase_provider: PassphraseProvider,
        now: int,
        key_id: str | None = None,
        bundle_name: str | None = None,
    ) -> tuple[Ed25519PrivateKey, Signer]:
        """The signing key to sign with at ``now``: the one named by ``key_id`` (a unique
        prefix is enough), else the newest valid one here (latest start of validity, then
        latest delegation) that may sign ``bundle_name``. ``passphrase_provider`` is asked
        only if that key file is encrypted."""
        if key_id is None:
            signer = self._best_signer(now, bundle_name)
        else:
            signer = self._named_signer(key_id, now)
        path = self.signer_path(signer)
        info = read_key_file_info(path)
        if info.public != signer.key:
            raise FormatError(f"{path} holds another key than its name says")
        if info.kind is not KeyKind.SIGNER:
            raise FormatError(f"{path} holds a {info.kind.label}, not a signing key")
        return unlock(info, passphrase_provider), signer

    def _usable_signers(self) -> list[Signer]:
        revoked = self.state.revocations()
        return [s for s in self.current.signers if s.key not in revoked]

    def _best_signer(self, now: int, bundle_name: str | None) -> Signer:
        present = [s for s in self._usable_signers() if self.signer_path(s).is_file()]
        if not present:
            raise TrustError(
                f"{self.folder} holds no signing key of publisher {self.current.name!r}"
                f" (no {SIGNER_PREFIX}<key id>{KEY_SUFFIX} file)"
            )
        valid = [s for s in present if s.valid_at(now)]
        if valid and bundle_name is not None:
            allowed = [s for s in valid if _in_scope(s, bundle_name)]
            if not allowed:
                raise TrustError(
                    f"no valid signing key in {self.folder} may sign bundles named "
                    f"{bundle_name!r}; add one with 'meshdrop publisher add-signer'"
                )
            valid = allowed
        if valid:
            return max(valid, key=lambda s: (s.not_before, self.introduced(s.key), s.id))
        if all(s.expires < now for s in present):
            newest = max(s.expires for s in present)
            raise TrustError(
                f"every signing key in {self.folder} has expired; the newest expired on "
                f"{describe_time(newest)}"
            )
        earliest = min(s.not_before for s in present if s.not_before > now)
        raise TrustError(
            f"no signing key in {self.folder} is valid yet; the first becomes valid on "
            f"{describe_time(earliest)} (is this computer's clock right?)"
        )

    def _named_signer(self, wanted: str, now: int) -> Signer:
        prefix = wanted.strip().lower()
        signers = self._usable_signers()
        matches = [s for s in signers if prefix and s.id.startswith(prefix)]
        if not matches:
            raise UsageError(
                f"publisher {self.current.name!r} has no signing key {wanted!r}"
                f" (its keys: {', '.join(s.id for s in signers) or 'none'})"
            )
        if len(matches) > 1:
            raise UsageError(f"{wanted!r} matches {len(matches)} signing keys; type more of it")
        signer = matches[0]
        if not self.signer_path(signer).is_file():
            raise UsageError(f"the signing key {signer.id} is not in {self.folder}")
        if not signer.valid_at(now):
            raise TrustError(
                f"the signing key {signer.id} is valid only from {describe_time(signer.not_before)}"
                f" to {describe_time(signer.expires)}"
            )
        return signer

    def publish(self, signed: SignedRecord) -> PublisherFolder:
        """Append the verified next record to publisher.pub (crash-safe), then move keys
        that no longer count into retired/."""
        state = start_state((*self.state.signed, signed))
        if state.version != self.state.version + 1:
            raise TrustError(f"the new record does not follow version {self.state.version}")
        atomic_write(self.folder / PUBLISHER_FILE, encode_publisher_file(state.signed), PUBLIC_MODE)
        updated = PublisherFolder(self.folder, state)
        updated.retire_stale_keys()
        return updated

    def retire_stale_keys(self) -> list[Path]:
        """Move root keys that an earlier record listed but the current one does not, and
        revoked signing keys, into retired/. Key files of no record (a pending proposal's)
        stay. Never deletes: a retired key may still be needed to read old history."""
        current_roots = set(self.current.roots)
        old_roots = {k for r in self.state.records for k in r.roots} - current_roots
        stale = [key_path(self.folder, KeyKind.ROOT, k) for k in sorted(old_roots)]
        stale += [
            key_path(self.folder, KeyKind.SIGNER, k) for k in sorted(self.state.revocations())
        ]
        moved = []
        for path in stale:
            if path.is_file():
                moved.append(_move_to_retired(path))
        return moved


def _in_scope(signer: Signer, bundle_name: str) -> bool:
    return any(fnmatch.fnmatchcase(bundle_name, pattern) for pattern in signer.scope)


def _move_to_retired(path: Path) -> Path:
    retired = path.parent / RETIRED_FOLDER
    target = retired / path.name
    try:
        retired.mkdir(mode=FOLDER_MODE, exist_ok=True)
        counter = 1
        while target.exists():
            counter += 1
            target = retired / f"{path.stem}-{counter}{path.suffix}"
        path.rename(target)
        fsync_dir(retired)
        fsync_dir(path.parent)
    except OSError as exc:
        raise StoreError(os_error_message(exc, f"moving {path} into {retired}")) from exc
    return target


def load_publisher(folder: Path) -> PublisherFolder:
    """Read and verify ``folder``/publisher.pub (keys are loaded later, on demand)."""
    if not folder.exists():
        raise UsageError(f"there is no publisher folder at {folder}")
    if not folder.is_dir():
        raise UsageError(f"{folder} is a file, not a publisher folder")
    path = folder / PUBLISHER_FILE
    if not path.is_file():
        raise UsageError(f"{folder} is not a publisher folder (it has no {PUBLISHER_FILE})")
    return PublisherFolder(folder, read_publisher_file(path))


def read_publisher_file(path: Path) -> PublisherState:
    """Read and verify a publisher folder's own publisher.pub from record 1 on: every
    record in it must verify."""
    data = read_small_file(path, MAX_PUBLISHER_FILE_BYTES, "publisher file")
    return start_state(parse_publisher_file(data, str(path)))


def read_trust_file(path: Path) -> PublisherState:
    """Read a publisher.pub to trust (``verify --trust``): the chain its records prove,
    as far as they verify; records beside it that do not are left out, as a node does."""
    data = read_small_file(path, MAX_PUBLISHER_FILE_BYTES, "publisher file")
    state, _ignored = pin_chain(parse_publisher_file(data, str(path)))
    return state


def read_trust_files(paths: Iterable[Path]) -> dict[bytes, PublisherState]:
    """The publishers to verify against (``verify --trust``), by publisher key."""
    states = (read_trust_file(path) for path in paths)
    return {state.publisher: state for state in states}


def read_publisher_source(source: Path) -> PublisherState:
    """A publisher folder's or publisher.pub file's verified record chain."""
    return read_publisher_file(source / PUBLISHER_FILE if source.is_dir() else source)
