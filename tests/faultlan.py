"""The LAN sync commit for the injected-fault sweep: a bundle received the way the node's
sync engine stores one (transports/lan/engine.py, groupcommit.py), through the same
StoreIO calls in the same order: the ingest hold, ``check_offers``, ``stage_chunks``,
``publish_chunks``, ``commit_many``. An error is told as the node's log would: one line;
the exit code is its type's (README "Exit codes")."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from faultops import Operation

from meshdrop.core.bundle import HEADER_SIZE, parse_header
from meshdrop.core.verify import VerifiedManifest
from meshdrop.errors import MeshdropError


def receive(home: Path, bundles: list[Path]) -> Callable[[], int]:
    """The bundles are read here, before the child starts: their bytes come from a peer,
    not from this node's disk, so no fault touches them."""
    received = [(path.name, path.read_bytes()) for path in bundles]

    def run() -> int:
        try:
            asyncio.run(_receive(home, received))
        except MeshdropError as exc:
            print(f"meshdrop: {exc}", file=sys.stderr)
            return exc.exit_code
        return 0

    return run


async def _receive(home: Path, bundles: list[tuple[str, bytes]]) -> None:
    from meshdrop.transports.lan.storeio import Checked, Offered, StoreIO

    storeio = StoreIO(home)
    hold = await storeio.hold_ingest()
    try:
        offers, datas = [], []
        for name, raw in bundles:
            length = parse_header(raw[:HEADER_SIZE], name)
            envelope = raw[HEADER_SIZE : HEADER_SIZE + length]
            datas.append(raw[HEADER_SIZE + length :])
            offers.append(Offered(envelope, _listed(envelope), name))
        verified, chunks = [], []
        for checked, data in zip(await storeio.check_offers(offers), datas, strict=True):
            if isinstance(checked, Exception):
                raise checked
            assert isinstance(checked, Checked)
            if checked.refusal is not None:
                raise checked.refusal
            if checked.no_room is not None:
                raise checked.no_room
            if not isinstance(checked.accepted, VerifiedManifest):
                continue  # already held
            verified.append(checked.accepted)
            chunks += [(ref, data[ref.offset : ref.offset + ref.size]) for ref in checked.missing]
        if not verified:
            return
        temps = []
        for temp in await storeio.stage_chunks(chunks):
            if isinstance(temp, Exception):
                raise temp
            temps.append(temp)
        folders = await storeio.publish_chunks(temps, cached=True)
        for result in await storeio.commit_many(verified, folders):
            if isinstance(result, MeshdropError):
                raise result
    finally:
        hold.release()
        await storeio.aclose()


def _listed(envelope: bytes) -> bytes:
    from meshdrop.core.bundle import parse_envelope

    return hashlib.sha256(parse_envelope(envelope, "offer").manifest_bytes).digest()


def lan_commit(root: Path, base: Path, bundles: dict[str, Path]) -> Operation:
    template = root / "t-lan-commit"
    shutil.copytree(base, template / "home", symlinks=True)
    received = [bundles["news-b"], bundles["news-c"]]
    return Operation(
        "lan-commit",
        template,
        lambda work: [],
        before={"news-a v1"},
        after={"news-a v1", "news-b v1", "news-c v1"},
        runner=lambda work: receive(work / "home", received),
    )
