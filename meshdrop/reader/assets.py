"""The reader's own files (its stylesheet, icon and sealing script), served under names
that carry a hash of their bytes, so a browser never mixes an old stylesheet with a new
page. They are not cached (headers.STATIC): a cache entry would be a trace of the visit."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Asset:
    name: str
    data: bytes
    media_type: str

    @property
    def url(self) -> str:
        return f"/static/{self.name}"


def load_assets() -> dict[str, Asset]:
    found = {}
    for source, media_type in (
        ("reader.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
        ("seal.js", "text/javascript; charset=utf-8"),  # the write page's sealing
    ):
        data = resources.files("meshdrop.reader").joinpath("static", source).read_bytes()
        stem, _, suffix = source.rpartition(".")
        digest = hashlib.sha256(data).hexdigest()[:12]
        found[source] = Asset(f"{stem}.{digest}.{suffix}", data, media_type)
    return found
