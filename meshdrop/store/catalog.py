"""Reading what a store holds: listing bundles (with what hides them), finding one by
name, its manifest, and its files' bytes, each chunk checked against its hash."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from meshdrop.core.bundle import parse_envelope
from meshdrop.core.keys import key_id, parse_fingerprint
from meshdrop.core.manifest import FileEntry, Manifest, parse_manifest
from meshdrop.core.trust import PublisherState
from meshdrop.errors import IntegrityError, UsageError
from meshdrop.store.chunks import ChunkStore
from meshdrop.store.db import Database
from meshdrop.store.models import PartialImport, StoredBundle, Withdrawal
from meshdrop.store.staging import list_staged

_EQUIVOCATED = (
    "SELECT p.fingerprint, e.name, e.version FROM equivocations e "
    "JOIN publishers p ON p.id = e.publisher"
)
_LIST_BUNDLES = (
    "SELECT b.id, p.fingerprint, p.name, b.name, b.version, b.title, b.description, "
    "b.language, b.priority, b.created, b.expires, b.size, b.file_count, b.imported, "
    "b.withdrawn, b.publisher, b.signer FROM bundles b JOIN publishers p ON p.id = b.publisher "
    "ORDER BY b.created DESC, b.name"
)


class Catalog:
    """The read side of a store (the Store is one)."""

    db: Database
    chunks: ChunkStore

    def now(self) -> int:
        raise NotImplementedError

    def trusted(self) -> dict[bytes, PublisherState]:
        raise NotImplementedError

    def list_bundles(self, include_hidden: bool = False) -> list[StoredBundle]:
        """Committed bundles of trusted publishers, newest first; withdrawn and expired
        ones only with ``include_hidden``."""
        now = self.now()
        found = []
        twins = set(self.db.conn.execute(_EQUIVOCATED))
        for row in self.db.conn.execute(_LIST_BUNDLES):
            *columns, withdrawn, publisher_id, signer = row
            bundle = StoredBundle(*columns)
            if (bundle.publisher, bundle.name, bundle.version) in twins:
                bundle = replace(bundle, equivocated=True)
            if withdrawn:
                bundle = replace(
                    bundle,
                    state="withdrawn",
                    withdrawal=self._withdrawal(bundle, publisher_id, signer),
                )
            elif bundle.expires is not None and bundle.expires < now:
                bundle = replace(bundle, state="expired")
            if bundle.state == "ok" or include_hidden:
                found.append(bundle)
        return found

    def _withdrawal(
        self, bundle: StoredBundle, publisher: bytes, signer: bytes
    ) -> Withdrawal | None:
        state = self.trusted().get(publisher)
        revocation = state.revocations().get(signer) if state is not None else None
        if revocation is None:
            return None
        return Withdrawal(
            bundle.name,
            bundle.version,
            bundle.publisher,
            key_id(signer),
            revocation.reason.value,
            revocation.at,
        )

    def partial_imports(self) -> list[PartialImport]:
        """Bundles whose data has only partly arrived (an interrupted import, a stick that
        brought some parts): not listed, but their verified chunks are kept."""
        found = []
        for staged in list_staged(self.db):
            refs = parse_manifest(staged.envelope.manifest_bytes).chunk_refs()
            held = {ref.digest for ref in refs if self.chunks.has(ref.digest)}
            stored = sum(ref.size for ref in refs if ref.digest in held)
            found.append(
                PartialImport(staged.name, staged.version, staged.publisher, staged.size, stored)
            )
        return found

    def find_bundle(self, name: str, publisher: str | None = None) -> StoredBundle:
        wanted = parse_fingerprint(publisher) if publisher else ""
        matches = [
            b
            for b in self.list_bundles(include_hidden=True)
            if b.name == name and b.state != "withdrawn" and b.publisher.startswith(wanted)
        ]
        if not matches:
            raise UsageError(f"no stored bundle is named {name!r}")
        if len(matches) > 1:
            raise UsageError(
                f"several publishers have a bundle named {name!r}; choose one with --publisher"
            )
        return matches[0]

    def manifest(self, bundle: StoredBundle) -> Manifest:
        row = self.db.conn.execute(
            "SELECT envelope FROM bundles WHERE id = ?", (bundle.id,)
        ).fetchone()
        if row is None:
            raise UsageError(f"bundle {bundle.name!r} is no longer stored")
        return parse_manifest(parse_envelope(row[0], bundle.name).manifest_bytes)

    def read_file(self, entry: FileEntry, bundle_name: str) -> Iterator[bytes]:
        """The file's bytes chunk by chunk, each checked against its hash."""
        for digest in entry.chunks:
            data = self.chunks.read(digest)
            if data is None:
                raise IntegrityError(
                    f"part of {entry.path!r} in {bundle_name!r} is missing or damaged in the "
                    "store; run 'meshdrop fsck --repair' and import the bundle again"
                )
            yield data
