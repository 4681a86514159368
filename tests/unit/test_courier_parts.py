"""Part sizes: the default keeps a pulled stick's loss small, and a bundle too big for
MAX_PARTS parts of the size asked for gets bigger parts, never over what FAT32 holds."""

from __future__ import annotations

from meshdrop.core.sizes import human_size
from meshdrop.transports.courier.layout import DEFAULT_PART_SIZE, FAT32_MAX_FILE, MAX_PARTS
from meshdrop.transports.courier.parts import fitting_part_size

GIB = 1024**3


def test_default_part_size_is_well_under_fat32s_limit() -> None:
    assert DEFAULT_PART_SIZE == 512 * 1024**2 < FAT32_MAX_FILE


def test_part_size_asked_for_is_kept_when_the_parts_fit_the_count() -> None:
    assert fitting_part_size(DEFAULT_PART_SIZE, 100 * GIB) == DEFAULT_PART_SIZE


def test_part_size_grows_for_a_bundle_that_would_need_too_many_parts() -> None:
    size = fitting_part_size(DEFAULT_PART_SIZE, 1024 * GIB)
    assert DEFAULT_PART_SIZE < size <= FAT32_MAX_FILE
    assert 1024 * GIB / size < MAX_PARTS - 90  # room for each part's head and cut chunk


def test_part_size_never_grows_past_fat32s_limit() -> None:
    assert fitting_part_size(DEFAULT_PART_SIZE, 8192 * GIB) == FAT32_MAX_FILE


def test_sizes_read_as_the_command_line_shows_them() -> None:
    assert [human_size(n) for n in (21, 1536, 1024**2, int(1.2 * GIB))] == [
        "21 B",
        "1.5 KiB",
        "1.0 MiB",
        "1.2 GiB",
    ]
