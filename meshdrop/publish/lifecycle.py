"""Changing a publisher: add a signing key, revoke one, rotate the root keys.

Each change becomes the next record (version + 1). When the folder holds enough root
keys it is signed and published at once; otherwise it is written as a proposal file,
which each root-key holder signs on their own machine and one command combines.

Every step checks before it writes, and writes crash-safely in an order where a crash
leaves nothing wrong: new key files first (harmless until a record names them), then
publisher.pub, then stale keys are moved into retired/.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshdrop.core import codec
from meshdrop.core.keys import Domain, generate_private_key, key_id, public_bytes, sign
from meshdrop.core.proposal import (
    MAX_PROPOSAL_BYTES,
    Proposal,
    Tally,
    complete_record,
    merge_proposals,
    new_proposal,
    parse_proposal,
    tally,
)
from meshdrop.core.records import (
    MAX_CHAIN,
    MAX_KEYS,
    MAX_TIME,
    PublisherRecord,
    Reason,
    Revocation,
    sign_record,
)
from meshdrop.core.trust import PublisherState, describe_time
from meshdrop.errors import UsageError
from meshdrop.fs import atomic_write, read_small_file
from meshdrop.publish.keyfile import (
    KeyFileInfo,
    KeyKind,
    PassphraseProvider,
    read_key_file_info,
    unlock,
)
from meshdrop.publish.keystore import (
    DAY,
    DEFAULT_SIGNER_DAYS,
    PUBLIC_MODE,
    PUBLISHER_FILE,
    PublisherFolder,
    check_root_shape,
    key_path,
    majority,
    new_signer,
    write_key,
)

MAX_SCOPES = 32
MAX_SCOPE_CHARS = 100


@dataclass(frozen=True)
class Change:
    """A proposed next record, and the private keys it brings into the folder."""

    what: str  # one line for people: "add signing key 3f2a..."
    record: PublisherRecord
    new_keys: tuple[tuple[KeyKind, Ed25519PrivateKey], ...] = ()

    @property
    def record_bytes(self) -> bytes:
        return codec.pack(self.record.to_value())

    def new_root_keys(self) -> list[Ed25519PrivateKey]:
        return [key for kind, key in self.new_keys if kind is KeyKind.ROOT]


def _next(current: PublisherRecord, now: int, **changes: Any) -> PublisherRecord:
    if current.version >= MAX_CHAIN:
        raise UsageError(
            f"publisher {current.name!r} has reached the limit of {MAX_CHAIN} record versions"
        )
    if not 0 <= now <= MAX_TIME:
        raise UsageError("this computer's clock is out of range")
    return dataclasses.replace(
        current, version=current.version + 1, created=now, raw=b"", **changes
    )


def check_scope(patterns: Sequence[str]) -> tuple[str, ...]:
    """Bundle-name patterns a signing key may sign ('*' for any, 'news-*' for some)."""
    if not patterns:
        return ("*",)
    if len(patterns) > MAX_SCOPES:
        raise UsageError(f"a signing key can have at most {MAX_SCOPES} --scope patterns")
    for pattern in patterns:
        if not 1 <= len(pattern) <= MAX_SCOPE_CHARS or not pattern.isprintable():
            raise UsageError(
                f"--scope {pattern!r} must be 1 to {MAX_SCOPE_CHARS} printable characters"
            )
    return tuple(dict.fromkeys(unicodedata.normalize("NFC", p) for p in patterns))


def plan_add_signer(
    folder: PublisherFolder, now: int, expires: int | None, scope: Sequence[str]
) -> Change:
    current = folder.current
    until = now + DEFAULT_SIGNER_DAYS * DAY if expires is None else expires
    if not now < until <= MAX_TIME:
        raise UsageError(f"--expires must be a date after now ({describe_time(now)})")
    if len(current.signers) >= MAX_KEYS:
        raise UsageError(
            f"publisher {current.name!r} already has {MAX_KEYS} signing keys; revoke old ones"
        )
    key = generate_private_key()
    signer = new_signer(public_bytes(key), now, until, check_scope(scope))
    record = _next(current, now, signers=(*current.signers, signer))
    return Change(f"add signing key {signer.id}", record, ((KeyKind.SIGNER, key),))


def plan_revoke(folder: PublisherFolder, wanted: str, reason: Reason, now: int) -> Change:
    current = folder.current
    revocations = folder.state.revocations()
    prefix = wanted.strip().lower()
    if prefix and any(key_id(k).startswith(prefix) for k in current.roots):
        raise UsageError(
            f"{wanted} is a root key; replace root keys with 'meshdrop publisher rotate-root'"
        )
    candidates = {s.key for s in current.signers} | set(revocations)
    matches = [k for k in sorted(candidates) if prefix and key_id(k).startswith(prefix)]
    if not matches:
        listed = ", ".join(s.id for s in current.signers) or "none"
        raise UsageError(
            f"publisher {current.name!r} has no signing key {wanted!r} (its keys: {listed})"
        )
    if len(matches) > 1:
        raise UsageError(f"{wanted!r} matches {len(matches)} keys; type more of its id")
    key = matches[0]
    earlier = revocations.get(key)
    if earlier is not None and (earlier.reason is Reason.COMPROMISED or reason is Reason.RETIRED):
        raise UsageError(
            f"key {key_id(key)} was already revoked ({earlier.reason.value} on "
            f"{describe_time(earlier.at)})"
        )
    # Records carry every revocation so far, so each one alone tells the whole story.
    revocations[key] = Revocation(key, reason, now)
    record = _next(
        current,
        now,
        signers=tuple(s for s in current.signers if s.key != key),
        revoked=tuple(sorted(revocations.values(), key=lambda r: (r.at, r.key))),
    )
    return Change(f"revoke signing key {key_id(key)} as {reason.value}", record)


def plan_rotate_root(
    folder: PublisherFolder,
    now: int,
    roots: int | None,
    threshold: int | None,
    new_roots: Sequence[bytes],
    keep: Sequence[str],
) -> Change:
    """New root keys: ``keep`` (ids of current roots), ``new_roots`` (public keys made on
    holders' machines) and as many generated here as it takes to make ``roots``."""
    current = folder.current
    kept = [_match_root(current, wanted) for wanted in keep]
    chosen = list(dict.fromkeys([*kept, *new_roots]))
    if len(chosen) != len(kept) + len(new_roots):
        raise UsageError("the same root key was given twice")
    signing = {s.key for s in current.signers} | set(folder.state.revocations())
    for key in new_roots:
        if key in signing:
            raise UsageError(f"key {key_id(key)} is a signing key; a root key must be a new key")
    if roots is None:
        roots = len(chosen) if chosen else len(current.roots)
    if roots < len(chosen):
        raise UsageError(f"--roots {roots} is fewer than the {len(chosen)} root keys given")
    if threshold is None:
        threshold = current.threshold if roots == len(current.roots) else majority(roots)
    check_root_shape(roots, threshold)
    generated = [generate_private_key() for _ in range(roots - len(chosen))]
    new_set = tuple(sorted([*chosen, *(public_bytes(k) for k in generated)]))
    if set(new_set) == set(current.roots) and threshold == current.threshold:
        raise UsageError("the new root keys and threshold are the same as now; nothing to change")
    record = _next(current, now, roots=new_set, threshold=threshold)
    what = f"replace the root keys: {threshold} of {roots} ({', '.join(map(key_id, new_set))})"
    return Change(what, record, tuple((KeyKind.ROOT, k) for k in generated))


def _match_root(current: PublisherRecord, wanted: str) -> bytes:
    prefix = wanted.strip().lower()
    matches = [k for k in current.roots if prefix and key_id(k).startswith(prefix)]
    if len(matches) != 1:
        listed = ", ".join(map(key_id, current.roots))
        raise UsageError(f"--keep-root {wanted!r} is not one current root key (they are {listed})")
    return matches[0]


def root_keys_to_unlock(folder: PublisherFolder, change: Change) -> list[KeyFileInfo]:
    """The fewest root key files here that, with the keys the change generates, meet the
    threshold of the current roots and of the new ones. UsageError if the folder does
    not hold enough (then the change must go out as a proposal)."""
    current, record = folder.current, change.record
    old, new = set(current.roots), set(record.roots)
    fresh = {public_bytes(k) for k in change.new_root_keys()}
    have_old, have_new = len(fresh & old), len(fresh & new)
    present = []
    for key in sorted((old | new) - fresh, key=lambda k: (not (k in old and k in new), k)):
        info = folder.root_key_file(key)
        if info is not None:
            present.append(info)
    chosen = []
    for info in present:
        helps_old = info.public in old and have_old < current.threshold
        helps_new = info.public in new and have_new < record.threshold
        if helps_old or helps_new:
            chosen.append(info)
            have_old += info.public in old
            have_new += info.public in new
    if have_old < current.threshold or have_new < record.threshold:
        here_old = sum(1 for i in present if i.public in old)
        counts = f"{here_old} of the {current.threshold} root keys needed"
        if new != old or record.threshold != current.threshold:
            here_new = len(fresh) + sum(1 for i in present if i.public in new)
            counts = (
                f"current root keys: {here_old} here, {current.threshold} needed; "
                f"new root keys: {here_new} here, {record.threshold} needed"
            )
        raise UsageError(
            f"{folder.folder} does not hold enough root keys to sign version {record.version} "
            f"({counts}); use --propose FILE and have the root key holders sign it with "
            "'meshdrop publisher sign'"
        )
    return chosen


def apply_change(
    folder: PublisherFolder,
    change: Change,
    root_keys: Sequence[Ed25519PrivateKey],
    new_key_passphrase: bytes | None,
) -> PublisherFolder:
    """Write the change's new keys, sign its record with ``root_keys`` and the new root
    keys, and publish it (publish verifies both thresholds first)."""
    signed = sign_record(change.record, [*root_keys, *change.new_root_keys()])
    for kind, key in change.new_keys:
        write_key(folder.folder, key, kind, new_key_passphrase)
    return folder.publish(signed)


def propose_change(
    folder: PublisherFolder, change: Change, out: Path, new_key_passphrase: bytes | None
) -> Proposal:
    """Write the change's new keys into the folder and its record, unsigned, to ``out``."""
    check_proposal_target(out)
    proposal = new_proposal(change.record_bytes)
    for kind, key in change.new_keys:
        write_key(folder.folder, key, kind, new_key_passphrase)
    atomic_write(out, proposal.encode(), PUBLIC_MODE)
    return proposal


def check_proposal_target(out: Path) -> None:
    """A proposal is never written over an existing file (it may hold signatures)."""
    if out.exists():
        raise UsageError(f"{out} already exists; choose another name for the proposal")
    if not out.parent.is_dir():
        raise UsageError(f"the folder {out.parent} does not exist")


def read_proposal(path: Path) -> Proposal:
    return parse_proposal(read_small_file(path, MAX_PROPOSAL_BYTES, "proposal file"), str(path))


def read_root_key(path: Path) -> KeyFileInfo:
    info = read_key_file_info(path)
    if info.kind is not KeyKind.ROOT:
        raise UsageError(f"{path} is a {info.kind.label}; proposals are signed with root keys")
    return info


def add_signature(
    path: Path, shown: Proposal, key_file: KeyFileInfo, passphrase_provider: PassphraseProvider
) -> Proposal:
    """Sign the record of the proposal at ``path`` (which must still be the ``shown``
    one) with ``key_file``'s key, and write the proposal back in place, crash-safely."""
    key = unlock(key_file, passphrase_provider)
    proposal = read_proposal(path)
    if proposal.record_bytes != shown.record_bytes:
        raise UsageError(f"{path} changed while it was being signed; run the command again")
    signed = proposal.with_signature(
        key_file.public, sign(key, Domain.PUBLISHER_RECORD, proposal.record_bytes)
    )
    atomic_write(path, signed.encode(), PUBLIC_MODE)
    return signed


def combine(folder: PublisherFolder, paths: Sequence[Path]) -> tuple[PublisherFolder, Tally]:
    """Merge the signatures of every proposal copy in ``paths`` and publish the record if
    they meet both thresholds; SignatureError naming what is missing if not."""
    merged = merge_proposals([(str(p), read_proposal(p)) for p in paths])
    counts = tally(folder.current, merged)
    _record, signed = complete_record(folder.state, merged, str(folder.folder / PUBLISHER_FILE))
    return folder.publish(signed), counts


def new_key_files(folder: PublisherFolder, change: Change) -> list[Path]:
    """Where the private keys the change makes are (or will be) written."""
    return [key_path(folder.folder, kind, public_bytes(key)) for kind, key in change.new_keys]


# --- describing records, for people --------------------------------------------------------


def record_lines(record: PublisherRecord) -> list[str]:
    """Everything a record says, one fact a line: what a root-key holder is signing."""
    lines = [
        f"publisher   {record.name} ({record.fingerprint})",
        f"version     {record.version}, made {describe_time(record.created)}",
        f"root keys   {record.threshold} of {len(record.roots)} must sign: "
        + ", ".join(map(key_id, record.roots)),
    ]
    for s in record.signers:
        lines.append(
            f"signer      {s.id}  valid {describe_time(s.not_before)} to "
            f"{describe_time(s.expires)}, may sign {', '.join(s.scope)}"
        )
    if not record.signers:
        lines.append("signer      none")
    for r in record.revoked:
        lines.append(f"revoked     {r.id}  {r.reason.value} on {describe_time(r.at)}")
    return lines


def change_lines(old: PublisherRecord, new: PublisherRecord) -> list[str]:
    """What ``new`` changes compared with ``old``."""
    lines = []
    if new.name != old.name:
        lines.append(f"renames the publisher from {old.name!r} to {new.name!r}")
    if set(new.roots) != set(old.roots) or new.threshold != old.threshold:
        lines.append(
            f"replaces the root keys ({old.threshold} of {len(old.roots)}: "
            f"{', '.join(map(key_id, old.roots))}) with {new.threshold} of {len(new.roots)}: "
            + ", ".join(map(key_id, new.roots))
        )
    old_signers = {s.key: s for s in old.signers}
    for s in new.signers:
        if s.key not in old_signers:
            lines.append(f"adds signing key {s.id}, valid to {describe_time(s.expires)}")
        elif old_signers[s.key] != s:
            lines.append(f"changes the validity or scope of signing key {s.id}")
    kept = {s.key for s in new.signers}
    old_revoked = {r.key: r for r in old.revoked}
    for r in new.revoked:
        if old_revoked.get(r.key) != r:
            lines.append(f"revokes signing key {r.id} as {r.reason.value}")
    for s in old.signers:
        if s.key not in kept and s.key not in {r.key for r in new.revoked}:
            lines.append(f"drops signing key {s.id} without revoking it")
    return lines or ["changes nothing but the version"]


def publisher_summary(
    state: PublisherState, now: int, folder: Path | None = None
) -> dict[str, object]:
    """What ``publisher show --json`` prints."""
    record = state.current
    summary: dict[str, object] = {
        "fingerprint": record.fingerprint,
        "name": record.name,
        "version": record.version,
        "created": record.created,
        "threshold": record.threshold,
        "roots": [key_id(k) for k in record.roots],
        "signers": [
            {
                "id": s.id,
                "not_before": s.not_before,
                "expires": s.expires,
                "scope": list(s.scope),
                "state": state.key_state(s.key, now),
            }
            for s in record.signers
        ],
        "revoked": [
            {"id": r.id, "reason": r.reason.value, "at": r.at, "state": r.reason.value}
            for r in sorted(state.revocations().values(), key=lambda r: (r.at, r.key))
        ],
    }
    if folder is not None:
        summary["root_keys_here"] = [
            key_id(k) for k in record.roots if key_path(folder, KeyKind.ROOT, k).is_file()
        ]
        summary["signing_keys_here"] = [
            s.id for s in record.signers if key_path(folder, KeyKind.SIGNER, s.key).is_file()
        ]
    return summary
