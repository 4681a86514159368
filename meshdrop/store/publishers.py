"""The publishers a node trusts: pinning, updating and removing their chains, listing
them, and the equivocations recorded against them. Needs only the index (``Database``)."""

from __future__ import annotations

from meshdrop.core.bundle import parse_publisher_file
from meshdrop.core.keys import parse_fingerprint
from meshdrop.core.names import check_new_name
from meshdrop.core.records import peek_record
from meshdrop.core.trust import (
    PublisherState,
    advance_state,
    check_fingerprint,
    pin_publisher_file,
)
from meshdrop.errors import (
    AmbiguousPublisherError,
    PrefixTooShortError,
    TrustError,
    UnknownPublisherError,
    UntrustedPublisherError,
)
from meshdrop.store import lookalikes, trustdb
from meshdrop.store.db import Database
from meshdrop.store.models import (
    Equivocation,
    ImportResult,
    Outcome,
    TrustAdded,
    TrustedPublisher,
    Withdrawal,
)

MIN_PREFIX_CHARS = 4


class Publishers:
    """Trust operations on the index; the Store is one (it adds chunks and bundles)."""

    db: Database

    def trusted(self) -> dict[bytes, PublisherState]:
        """The verified chains of the trusted publishers, loaded again only when the
        index may have changed."""
        return self.db.cached("trusted", trustdb.load_states)

    def trust_add(
        self,
        publisher_file: bytes,
        what: str,
        *,
        fingerprint: str | None = None,
        allow_same_name: bool = False,
    ) -> TrustAdded:
        """Pin the publisher in a publisher.pub, for as much of its chain as verifies:
        only if its fingerprint is the whole ``fingerprint`` (when given), and, for a new
        publisher, only if no trusted one has a name that reads alike (unless allowed)."""
        state, ignored = pin_publisher_file(publisher_file, what)
        if fingerprint is not None:
            check_fingerprint(fingerprint, state.fingerprint)
        with self.db.write_lock(), self.db.transaction() as conn:
            known = self.trusted().get(state.publisher)
            if known is None and not allow_same_name:
                self.check_name_is_new(state)
            if known is not None:
                state, _problem = advance_state(known, state.signed)
            withdrawn = trustdb.save_state(conn, state, new=known is None)
        return TrustAdded(state, known is None, ignored, tuple(withdrawn))

    def update_publisher(self, publisher_file: bytes, what: str) -> ImportResult:
        """Take newer records of an already trusted publisher (never trusts a new one).
        Every trusted publisher the file's readable records claim is advanced, so records
        of another publisher placed in front change nothing."""
        chain = parse_publisher_file(publisher_file, what)
        claimed = sorted({r.publisher for s in chain if (r := peek_record(s)) is not None})
        with self.db.write_lock():
            trusted = self.trusted()
            known = [trusted[p] for p in claimed if p in trusted]
            if not known:
                raise UntrustedPublisherError(f"{what} is of a publisher this node does not trust")
            reached = [(old, *advance_state(old, chain)) for old in known]
            advanced = [(old, new) for old, new, _ in reached if new.version > old.version]
            if not advanced:
                problem = next((p for _, _, p in reached if p is not None), None)
                if problem is not None:
                    raise TrustError(problem)
                state = known[0]
                return ImportResult(
                    Outcome.ALREADY_HAD, state.current.name, state.version, state.fingerprint
                )
            withdrawn: list[Withdrawal] = []
            with self.db.transaction() as conn:
                for _, state in advanced:
                    withdrawn += trustdb.save_state(conn, state, new=False)
        old, state = advanced[0]
        return ImportResult(
            Outcome.PUBLISHER_UPDATED,
            state.current.name,
            state.version,
            state.fingerprint,
            old.version,
            tuple(withdrawn),
        )

    def trust_list(self) -> list[TrustedPublisher]:
        rows = self.db.conn.execute(
            "SELECT id, fingerprint, name, version, added, updated FROM publishers ORDER BY name"
        ).fetchall()
        states = self.trusted()
        return [
            TrustedPublisher(
                fingerprint=fingerprint,
                name=name,
                version=version,
                added=added,
                updated=updated,
                newest_signed=trustdb.newest_signed(self.db.conn, states[publisher_id]),
            )
            for publisher_id, fingerprint, name, version, added, updated in rows
            if publisher_id in states
        ]

    def check_name_is_new(self, state: PublisherState) -> None:
        """SameNameError if another trusted publisher's name reads like ``state``'s."""
        trusted = [(p.name, p.fingerprint) for p in self.trust_list()]
        check_new_name(state.current.name, state.fingerprint, trusted, lookalikes.prototypes())

    def resolve_publisher(self, text: str) -> TrustedPublisher:
        """A trusted publisher by its fingerprint or a unique prefix of at least
        MIN_PREFIX_CHARS characters of it."""
        wanted = parse_fingerprint(text)
        given = len(wanted.replace("-", ""))
        if given < MIN_PREFIX_CHARS:
            raise PrefixTooShortError(
                f"{text!r} is too short to pick a publisher: give at least {MIN_PREFIX_CHARS} "
                "characters of its fingerprint (see 'meshdrop trust ls')"
            )
        matches = [p for p in self.trust_list() if p.fingerprint.startswith(wanted)]
        if not matches:
            raise UnknownPublisherError(f"no trusted publisher has the fingerprint {text!r}")
        if len(matches) > 1:
            raise AmbiguousPublisherError(
                f"{text!r} matches {len(matches)} publishers; give more of the fingerprint"
            )
        return matches[0]

    def publisher_state(self, fingerprint: str) -> PublisherState:
        return next(s for s in self.trusted().values() if s.fingerprint == fingerprint)

    def trust_remove(self, text: str) -> TrustedPublisher:
        publisher = self.resolve_publisher(text)
        with self.db.write_lock(), self.db.transaction() as conn:
            conn.execute("DELETE FROM publishers WHERE fingerprint = ?", (publisher.fingerprint,))
        return publisher

    def record_equivocation(self, twin: object) -> None:
        """Keep a refused twin's trace (``EquivocationError.twin``) for ``trust show``."""
        if not isinstance(twin, Equivocation):
            return
        with self.db.write_lock(), self.db.transaction() as conn:
            trustdb.record_equivocation(conn, twin)

    def equivocations(self, fingerprint: str) -> list[Equivocation]:
        """The equivocations recorded for a trusted publisher, oldest first."""
        state = self.publisher_state(fingerprint)
        return trustdb.equivocations(self.db.conn, state.publisher)
