"""Splitting a bundle file into parts a stick can hold (``meshdrop pack --part-size``),
in the courier's part format (``parts.py``), so `meshdrop import` reads them like parts an
export wrote.

Each part is written under a temporary name, fsynced and renamed on its own; the whole
.mdrop is removed only once every part is durable, so a crash leaves either the whole
bundle or it and some parts (which import as parts of it).
"""

from __future__ import annotations

import os
from pathlib import Path

from meshdrop.bulkio import SequentialWriter
from meshdrop.core.manifest import parse_manifest
from meshdrop.errors import StoreError
from meshdrop.fs import DurableBatch, fsync_dir, os_error_message
from meshdrop.store.bundlefile import ReadAt
from meshdrop.transports.courier.layout import part_number
from meshdrop.transports.courier.parts import encode_part_header, fitting_part_size, plan_parts
from meshdrop.transports.courier.reader import open_courier_file

COPY_STEP = 8 * 1024 * 1024


def part_path(bundle: Path, number: int) -> Path:
    """news.mdrop -> news.p001"""
    return bundle.with_name(f"{bundle.stem if bundle.suffix else bundle.name}.p{number:03d}")


def split_bundle_file(bundle: Path, part_size: int) -> list[Path]:
    """Write the bundle file ``bundle`` (just packed, so trusted) as parts of at most
    ``part_size`` bytes beside it, then remove it. Returns the parts' paths."""
    written: list[Path] = []
    with open_courier_file(bundle) as source:
        manifest = parse_manifest(source.envelope.manifest_bytes, bundle.name)
        size = fitting_part_size(part_size, source.file_size)
        for part in plan_parts(manifest, len(source.envelope_bytes), size):
            target = part_path(bundle, part.number)
            batch = DurableBatch()
            fd = batch.create(target)
            try:
                out = SequentialWriter(fd)
                out.write(encode_part_header(part) + source.envelope_bytes)
                _copy(source.reader, source.head_size + part.start, part.length, out)
                batch.commit()
            except OSError as exc:
                raise StoreError(os_error_message(exc, f"writing {target}")) from exc
            finally:
                batch.abort()
            written.append(target)
    try:
        bundle.unlink()
        fsync_dir(bundle.parent)
    except OSError as exc:
        raise StoreError(os_error_message(exc, f"removing {bundle}")) from exc
    return written


def stale_parts(bundle: Path, count: int) -> list[str]:
    """Part files beside ``bundle`` named like its parts but past its ``count``: left by
    an earlier pack of a bigger bundle under the same name."""
    stem = part_path(bundle, 1).name[: -len(".p001")]
    found = []
    for entry in os.scandir(bundle.parent):
        number = part_number(entry.name)
        if entry.name.startswith(stem + ".p") and number is not None and number > count:
            found.append(entry.name)
    return sorted(found)


def _copy(src: ReadAt, offset: int, length: int, out: SequentialWriter) -> None:
    end = offset + length
    while offset < end:
        data = src.read_at(offset, min(COPY_STEP, end - offset))
        if not data:
            raise StoreError("the packed bundle ended early while splitting it into parts")
        out.write(data)
        offset += len(data)
