"""What the store reports: plain values for the CLI, the reader and the transports."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from meshdrop.core.trust import PublisherState


class Outcome(Enum):
    IMPORTED = "imported"
    REPLACED = "imported, replacing an older version"
    ALREADY_HAD = "already had"
    REPLACED_TWIN = "imported, replacing another copy of the same version"
    PUBLISHER_UPDATED = "publisher updated"


@dataclass(frozen=True)
class Withdrawal:
    """A stored bundle that a newer publisher record withdrew: signed by a key the record
    reports compromised, or signed after the time a retired key was retired."""

    name: str
    version: int
    publisher: str  # fingerprint
    signer: str  # key id of the revoked key that signed it
    reason: str  # the revocation's reason: "compromised" or "retired"
    revoked_at: int  # when the key was revoked (a retired key's later bundles are withdrawn)

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "publisher": self.publisher,
            "signer": self.signer,
            "reason": self.reason,
            "revoked_at": self.revoked_at,
        }


@dataclass(frozen=True)
class ImportResult:
    outcome: Outcome
    name: str
    version: int
    publisher: str
    replaced_version: int | None = None
    withdrawn: tuple[Withdrawal, ...] = ()  # what a newer publisher record it carried withdrew


@dataclass(frozen=True)
class Equivocation:
    """Two different bundles signed as one version of one name: only a holder of the
    publisher's signing key can make them, so most likely a stolen key."""

    publisher: bytes
    name: str
    version: int
    kept: bytes  # manifest hash of the copy the node holds (the lower one)
    other: bytes  # manifest hash of the other copy
    signer: bytes  # the key that signed the other copy
    seen: int = 0


@dataclass(frozen=True)
class TrustAdded:
    """What ``trust add`` did: the chain pinned, whether the publisher is new here, why
    later records of the file were left out (they do not verify), if any were, and what
    its newer records withdrew."""

    state: PublisherState
    added: bool
    ignored: str | None = None
    withdrawn: tuple[Withdrawal, ...] = ()  # stored bundles the newer records withdrew


@dataclass(frozen=True)
class TrustedPublisher:
    fingerprint: str
    name: str
    version: int
    added: int
    updated: int
    newest_signed: int | None = None  # the newest signed time seen from this publisher


@dataclass(frozen=True)
class StoredBundle:
    """A committed, verified bundle as the index knows it."""

    id: int
    publisher: str
    publisher_name: str
    name: str
    version: int
    title: str
    description: str
    language: str
    priority: int
    created: int
    expires: int | None
    size: int
    file_count: int
    imported: int
    state: str = "ok"  # ok, expired or withdrawn
    equivocated: bool = False  # two copies of this version were signed (a likely stolen key)
    withdrawal: Withdrawal | None = None  # why it is withdrawn (state "withdrawn")

    def to_json(self) -> dict[str, object]:
        return {
            "publisher": self.publisher,
            "publisher_name": self.publisher_name,
            "name": self.name,
            "version": self.version,
            "title": self.title,
            "description": self.description,
            "language": self.language,
            "priority": self.priority,
            "created": self.created,
            "expires": self.expires,
            "size": self.size,
            "files": self.file_count,
            "state": self.state,
            "equivocated": self.equivocated,
        }


@dataclass(frozen=True)
class PartialImport:
    """A verified bundle whose data has only partly arrived (staged): its chunks take
    space, but it is not visible until the rest comes."""

    name: str
    version: int
    publisher: str  # fingerprint
    size: int  # the bundle's data bytes
    stored: int  # of them, those the store holds

    @property
    def missing(self) -> int:
        return self.size - self.stored


@dataclass
class FsckReport:
    chunks_checked: int = 0
    damaged_chunks: int = 0
    damaged_bundles: list[str] | None = None
    dropped_bundles: int = 0
    orphans_removed: int = 0
    temp_files_removed: int = 0

    @property
    def clean(self) -> bool:
        return not self.damaged_bundles or self.dropped_bundles == len(self.damaged_bundles)
