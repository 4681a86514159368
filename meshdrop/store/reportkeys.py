"""What a node learns from each trusted publisher's committed ``report-keys`` bundle
(docs/FORMAT.md, "The report-keys bundle"): the report keys it may seal to, and the drops
the publisher acknowledged, which it deletes.

The bundle came in through the one verified ingest path; each object inside is verified
again against the publisher's chain as the node follows it now, read through the store's
hash-checked chunk reads. An object that does not verify is left out, never fatal: one
bad key must not hide the others.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

from meshdrop.core.acks import ACK_LIST, verify_ack_list
from meshdrop.core.records import Reason
from meshdrop.core.reportkeys import (
    ACKS_FILE,
    KEYS_FILE,
    MAX_KEYS_FILE_BYTES,
    REPORT_KEYS_BUNDLE,
    ReportKey,
    parse_keys_file,
    verify_report_key,
    verify_retirement,
)
from meshdrop.core.signedobject import SignerKeysAt
from meshdrop.core.trust import PublisherState
from meshdrop.errors import MeshdropError, SignedObjectKindError
from meshdrop.store.drops import DropStore
from meshdrop.store.models import ImportResult, Outcome, StoredBundle

if TYPE_CHECKING:
    from meshdrop.store.store import Store

_MAX_ACKS_FILE_BYTES = ACK_LIST.max_bytes + 512
_NEW_CONTENT = frozenset({Outcome.IMPORTED, Outcome.REPLACED, Outcome.REPLACED_TWIN})


def signing_keys_at(state: PublisherState) -> SignerKeysAt:
    """The publisher's signing keys at a time, as its chain says: delegated and valid
    then, never reported compromised, and not retired before then."""

    def keys_at(when: int) -> Collection[bytes]:
        revoked = state.revocations()
        found = set()
        for record in state.records:
            for signer in record.signers:
                revocation = revoked.get(signer.key)
                if revocation is not None and (
                    revocation.reason is Reason.COMPROMISED or when > revocation.at
                ):
                    continue
                newest = state.signer(signer.key)
                if newest is not None and newest.valid_at(when):
                    found.add(signer.key)
        return found

    return keys_at


def report_keys(
    store: Store, now: int, listed: Iterable[StoredBundle] | None = None
) -> dict[str, list[ReportKey]]:
    """Fingerprint -> the report keys a writer may seal to now, newest first, for every
    trusted publisher whose report-keys bundle this node holds (retired and expired keys
    left out; publishers without a usable key left out). ``listed``: the store's bundles
    as ``list_bundles`` gave them, when the caller has them already (a store of thousands
    of bundles is not listed twice)."""
    found: dict[str, list[ReportKey]] = {}
    for state, bundle in _report_key_bundles(store, listed):
        blobs = _read_member(store, bundle, KEYS_FILE, MAX_KEYS_FILE_BYTES)
        try:
            objects = parse_keys_file(blobs) if blobs is not None else []
        except MeshdropError:
            continue
        usable = _usable_keys(objects, state, now)
        if usable:
            found[state.fingerprint] = usable
    return found


def _usable_keys(objects: Iterable[bytes], state: PublisherState, now: int) -> list[ReportKey]:
    keys_at = signing_keys_at(state)
    keys: list[ReportKey] = []
    retired: dict[bytes, int] = {}
    for blob in objects:
        try:
            keys.append(verify_report_key(blob, state.publisher, keys_at, now))
        except SignedObjectKindError:
            try:
                retirement = verify_retirement(blob, state.publisher, keys_at)
            except MeshdropError:
                continue
            old = retired.get(retirement.key_id, retirement.retire_at)
            retired[retirement.key_id] = min(old, retirement.retire_at)
        except MeshdropError:
            continue  # expired, or not verifiable against the chain as it stands
    usable = [k for k in keys if retired.get(k.key_id, now + 1) > now and k.created <= now]
    unique = {k.key_id: k for k in usable}
    return sorted(unique.values(), key=lambda k: k.sequence, reverse=True)


def apply_acks(store: Store, drops: DropStore) -> int:
    """Delete the held drops that a trusted publisher's latest ack list names (and
    remember them, so they are not stored again). Returns how many were deleted."""
    removed = 0
    for state, bundle in _report_key_bundles(store, None):
        data = _read_member(store, bundle, ACKS_FILE, _MAX_ACKS_FILE_BYTES)
        if data is None:
            continue
        try:
            acks = verify_ack_list(data, state.publisher, signing_keys_at(state))
        except MeshdropError:
            continue
        removed += drops.remove(acks.drops)
    return removed


def after_commit(store: Store, results: Iterable[ImportResult | MeshdropError]) -> None:
    """Apply ack lists when a commit brought a new report-keys bundle (and only then:
    every other commit stays as cheap as before)."""
    if any(
        isinstance(r, ImportResult) and r.name == REPORT_KEYS_BUNDLE and r.outcome in _NEW_CONTENT
        for r in results
    ):
        # The bundle is committed whatever happens here; the next one applies acks again.
        with contextlib.suppress(MeshdropError):
            apply_acks(store, DropStore(store.home))


def _report_key_bundles(
    store: Store, listed: Iterable[StoredBundle] | None
) -> list[tuple[PublisherState, StoredBundle]]:
    states = {s.fingerprint: s for s in store.trusted().values()}
    return [
        (states[b.publisher], b)
        for b in (store.list_bundles() if listed is None else listed)
        if b.name == REPORT_KEYS_BUNDLE and b.publisher in states
    ]


def _read_member(store: Store, bundle: StoredBundle, path: str, limit: int) -> bytes | None:
    """A file of the bundle (each chunk checked against its hash), or None if it has
    none by that name, it is over ``limit`` bytes, or it cannot be read whole."""
    try:
        manifest = store.manifest(bundle)
        entry = next((f for f in manifest.files if f.path == path), None)
        if entry is None or entry.size > limit:
            return None
        return b"".join(store.read_file(entry, bundle.name))
    except MeshdropError:
        return None
