"""fsck: re-verify every stored chunk against its hash; with repair, drop the bundles that
lost one, and remove temp files and chunks no bundle (or staged partial bundle) uses."""

from __future__ import annotations

from collections.abc import Callable

from meshdrop.store.chunks import ChunkStore
from meshdrop.store.db import Database
from meshdrop.store.models import FsckReport
from meshdrop.store.staging import staged_digests


def check(
    db: Database,
    chunks: ChunkStore,
    repair: bool,
    progress: Callable[[int], None] | None = None,
) -> FsckReport:
    """The caller holds the ingest lock (exclusively to repair)."""
    report = FsckReport(damaged_bundles=[])
    with db.write_lock():
        if repair:
            report.temp_files_removed = chunks.remove_temp_files()
        referenced: dict[bytes, list[int]] = {}
        for bundle_id, digest in db.conn.execute("SELECT bundle_id, hash FROM bundle_chunks"):
            referenced.setdefault(digest, []).append(bundle_id)
        bad_bundles: set[int] = set()
        for digest, owners in referenced.items():
            report.chunks_checked += 1
            data = chunks.read(digest)
            if progress:
                progress(len(data) if data else 0)
            if data is None:
                report.damaged_chunks += 1
                bad_bundles.update(owners)
                if repair:
                    chunks.delete([digest])
        names = {
            row[0]: f"{row[1]} v{row[2]}"
            for row in db.conn.execute("SELECT id, name, version FROM bundles")
        }
        report.damaged_bundles = sorted(names[i] for i in bad_bundles)
        if repair:
            with db.transaction() as conn:
                conn.executemany("DELETE FROM bundles WHERE id = ?", ((i,) for i in bad_bundles))
            report.dropped_bundles = len(bad_bundles)
            staged = staged_digests(db.conn)  # a partial bundle's chunks stay
            # By file name: a sealed store's names cannot be turned back into hashes.
            kept = {chunks.name_of(digest) for digest in referenced.keys() | staged}
            orphans = [name for name in chunks.all_names() if name not in kept]
            chunks.delete_names(orphans)
            report.orphans_removed = len(orphans)
    return report
