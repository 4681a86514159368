"""The export plan on values made in memory: which bundles go onto a stick, in what order,
and what is left alone, replaced, repaired or left out (no store, no stick)."""

from __future__ import annotations

import hashlib

from trustkit import T0, Chain, pub, signed

from meshdrop.core.bundle import Envelope
from meshdrop.core.keys import SIGNATURE_BYTES
from meshdrop.core.manifest import CHUNK_SIZE, FileEntry, Manifest
from meshdrop.store.export import ExportableBundle
from meshdrop.store.models import StoredBundle
from meshdrop.transports.courier.exportplan import (
    Done,
    ExportPlan,
    plan_export,
    select_bundles,
)
from meshdrop.transports.courier.layout import bundle_file_name, part_file_name
from meshdrop.transports.courier.parts import PartHeader
from meshdrop.transports.courier.stickstate import StickFile, StickState
from meshdrop.transports.courier.want import Want, stream_id

CHAIN = Chain(["r1"], 1)
RECORDS = (signed(CHAIN.record(1), ["r1"]),)
FINGERPRINT = "AAAA-BBBB-CCCC-DDDD-EEEE-FFFF-GGGG-HHHH"
OTHER = "ZZZZ-BBBB-CCCC-DDDD-EEEE-FFFF-GGGG-HHHH"
MIB = 1024 * 1024
PLENTY = 64 * 1024 * MIB


def stored(
    name: str,
    version: int = 1,
    *,
    priority: int = 0,
    created: int = T0,
    size: int = 1000,
    publisher: str = FINGERPRINT,
) -> StoredBundle:
    return StoredBundle(
        id=1,
        publisher=publisher,
        publisher_name="Scenario News",
        name=name,
        version=version,
        title=name,
        description="",
        language="en",
        priority=priority,
        created=created,
        expires=None,
        size=size,
        file_count=1,
        imported=created,
    )


def exportable(name: str, version: int = 1, *, size: int = 1000) -> ExportableBundle:
    chunks = tuple(
        hashlib.sha256(f"{name} v{version} chunk {i}".encode()).digest()
        for i in range(-(-size // CHUNK_SIZE))
    )
    manifest = Manifest(
        CHAIN.id,
        name,
        version,
        T0,
        None,
        name,
        "",
        "en",
        0,
        (FileEntry("index.html", size, "text/html", chunks),),
    )
    manifest_bytes = manifest.encode()
    envelope = Envelope(manifest_bytes, pub("s1"), bytes(SIGNATURE_BYTES), RECORDS).encode()
    digest = hashlib.sha256(manifest_bytes).digest()
    return ExportableBundle(stored(name, version, size=size), envelope, digest, CHAIN.id)


def whole_copy(item: ExportableBundle, *, complete: bool = True) -> StickFile:
    b = item.bundle
    return StickFile(
        bundle_file_name(b.name, item.manifest_hash),
        item.manifest_hash,
        item.publisher_id,
        b.name,
        b.version,
        None,
        complete,
        item.file_size,
        b.size,
    )


def stick_of(*files: StickFile, unreadable: tuple[str, ...] = ()) -> StickState:
    return StickState(
        {f.name: f for f in files}, frozenset([f.name for f in files] + list(unreadable))
    )


def plan(
    items: list[ExportableBundle],
    stick: StickState | None = None,
    *,
    max_bytes: int | None = None,
    free: int = PLENTY,
    reserve: int = 0,
    part_size: int = 4 * 1024 * MIB,
) -> ExportPlan:
    return plan_export(
        items,
        stick or StickState(),
        part_size=part_size,
        max_bytes=max_bytes,
        reserve=reserve,
        free=free,
    )


def outcomes(result: ExportPlan) -> dict[str, Done]:
    found = {r.name: r.done for r in result.reports}
    found.update({w.item.bundle.name: w.done for w in result.writes})
    return found


def test_priority_first_then_newest_then_name() -> None:
    bundles = [
        stored("old-news", created=T0 - 100),
        stored("urgent-old", priority=5, created=T0 - 50),
        stored("news", created=T0),
        stored("urgent", priority=5, created=T0),
        stored("also-news", created=T0),
    ]
    chosen = select_bundles(bundles, {FINGERPRINT}, (), None, {})
    assert [b.name for b in chosen] == ["urgent", "urgent-old", "also-news", "news", "old-news"]


def test_only_chosen_publishers_and_names() -> None:
    bundles = [
        stored("news-1"),
        stored("radio"),
        stored("news-2", publisher=OTHER),
    ]
    chosen = select_bundles(bundles, {FINGERPRINT}, ("news-*",), None, {})
    assert [b.name for b in chosen] == ["news-1"]


def test_what_the_destination_lacks_goes_before_priority() -> None:
    bundles = [stored("urgent", priority=5), stored("news", version=2), stored("radio")]
    want = Want(
        created=T0,
        have={stream_id(CHAIN.id, "urgent"): 1, stream_id(CHAIN.id, "news"): 1},
        publishers=frozenset(),
    )
    chosen = select_bundles(bundles, {FINGERPRINT}, (), want, {FINGERPRINT: CHAIN.id})
    assert [b.name for b in chosen] == ["news", "radio", "urgent"]


def test_max_bytes_leaves_out_what_does_not_fit_and_goes_on() -> None:
    big, small = exportable("big", size=3 * MIB), exportable("small", size=1000)
    first = exportable("first", size=2 * MIB)
    result = plan([first, big, small], max_bytes=first.file_size + small.file_size + 10)
    assert [w.item.bundle.name for w in result.writes] == ["first", "small"]
    (left_out,) = result.reports
    assert (left_out.name, left_out.done) == ("big", Done.LEFT_OUT)
    assert "--max-bytes" in left_out.detail


def test_free_space_less_the_reserve_leaves_out() -> None:
    news = exportable("news", size=2 * MIB)
    result = plan([news], free=news.file_size + MIB, reserve=2 * MIB)
    assert outcomes(result) == {"news": Done.LEFT_OUT}
    assert not result.writes


def test_a_complete_copy_on_the_stick_is_left_alone_and_counts_against_max_bytes() -> None:
    news, radio = exportable("news", size=2 * MIB), exportable("radio", size=2 * MIB)
    result = plan([news, radio], stick_of(whole_copy(news)), max_bytes=news.file_size + 10)
    assert outcomes(result) == {"news": Done.ALREADY_THERE, "radio": Done.LEFT_OUT}
    assert result.reports[0].files == [whole_copy(news).name]


def test_an_older_version_is_replaced_after_the_new_one_is_written() -> None:
    v1, v2 = exportable("news", 1), exportable("news", 2)
    (write,) = plan([v2], stick_of(whole_copy(v1))).writes
    assert write.done is Done.REPLACED
    assert write.superseded == (whole_copy(v1).name,)
    assert write.names == [bundle_file_name("news", v2.manifest_hash)]


def test_a_newer_version_on_the_stick_wins() -> None:
    v2, v3 = exportable("news", 2), exportable("news", 3)
    result = plan([v2], stick_of(whole_copy(v3)))
    assert outcomes(result) == {"news": Done.STICK_NEWER}
    assert not result.writes


def test_a_damaged_or_unreadable_copy_is_written_again() -> None:
    news = exportable("news")
    for stick in (
        stick_of(whole_copy(news, complete=False)),
        stick_of(unreadable=(whole_copy(news).name,)),
    ):
        (write,) = plan([news], stick).writes
        assert write.done is Done.REPAIRED
        assert write.superseded == ()
        assert [f.name for f in write.to_write] == [whole_copy(news).name]


def test_a_first_copy_is_written() -> None:
    (write,) = plan([exportable("news")]).writes
    assert write.done is Done.WRITTEN
    assert write.size == exportable("news").file_size


def test_intact_parts_already_on_the_stick_are_kept() -> None:
    big = exportable("big", size=3 * MIB)
    part_size = 1200 * 1024
    (fresh,) = plan([big], part_size=part_size).writes
    assert fresh.names == [part_file_name("big", big.manifest_hash, n) for n in (1, 2, 3)]
    first = fresh.files[0]
    on_stick = StickFile(
        first.name,
        big.manifest_hash,
        big.publisher_id,
        "big",
        1,
        PartHeader(len(big.envelope), 1, 3, first.start, first.end - first.start),
        True,
        first.size,
        big.bundle.size,
    )
    (write,) = plan([big], stick_of(on_stick), part_size=part_size).writes
    assert write.keep == {first.name}
    assert [f.name for f in write.to_write] == fresh.names[1:]
    assert write.done is Done.REPAIRED
