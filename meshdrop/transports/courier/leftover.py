"""What a leftover of a cut-short export is: a ``.tmp-`` file in a courier folder that an
export never finished and renamed. The importer ignores its bytes but says what it was, so
a courier learns that a copy did not make it.

The file is untrusted like everything on a stick: only its header and envelope are read,
with the strict parsers; the bundle is named only if the envelope verifies against the
publishers this node trusts, and sizes come from what is on the disk, or from the verified
manifest, never from an unverified claim.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from meshdrop.core.sizes import human_size
from meshdrop.core.trust import PublisherState
from meshdrop.core.verify import verify_envelope
from meshdrop.errors import MeshdropError
from meshdrop.transports.courier.reader import open_courier_file


@dataclass(frozen=True)
class Leftover:
    detail: str
    name: str | None = None
    version: int | None = None
    publisher: str | None = None


def describe_leftover(path: Path, trusted: Mapping[bytes, PublisherState], now: int) -> Leftover:
    """What the leftover at ``path`` was a copy of, as far as can be told safely."""
    try:
        source = open_courier_file(path)
    except (MeshdropError, OSError):
        return Leftover(f"left by an export that was cut short ({_on_disk(path)}); ignored")
    with source:
        on_disk = human_size(source.file_size)
        try:
            verified = verify_envelope(source.envelope, trusted, now)
            start, end = source.data_range(verified.manifest)
        except MeshdropError:
            return Leftover(
                f"left by an export that was cut short ({on_disk}, of a bundle this node "
                "cannot verify); ignored"
            )
        m = verified.manifest
        whole = source.head_size + end - start
        what = f"{m.name} v{m.version}"
        if source.part is not None:
            what += f" (part {source.part.number} of {source.part.count})"
        if source.file_size < whole:
            detail = f"a copy of {what} was cut short at {on_disk} of {human_size(whole)}"
        else:
            detail = f"a copy of {what} was written ({on_disk}) but never finished"
        return Leftover(detail + "; ignored", m.name, m.version, verified.state.fingerprint)


def _on_disk(path: Path) -> str:
    try:
        return human_size(os.lstat(path).st_size)
    except OSError:
        return "size unknown"
