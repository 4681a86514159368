"""Seed corpora for the fuzz targets, from real data: bundles packed by the installed
`meshdrop` from the demo folders (bundles/), a publisher made by `meshdrop publisher new`
and updated by `add-signer` and `add-report-key`, the drop and report-key vectors
(docs/vectors/drops.json), and peer, courier and reader messages made by the product's
own encoders. ``build(out)`` writes <out>/<target>/<sha256 prefix> files."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import fuzztargets_blind
from fuzztargets import NOW, ROOT, all_targets, report_private_key, vectors
from fuzztargets_net import ASKED_DROPS, INVENTORY_REQUEST
from PIL import Image, PngImagePlugin

from meshdrop.core import circles, codec, drops, holdings, inventory, reportkeys, storekeys
from meshdrop.core.bundle import HEADER_SIZE, parse_envelope, parse_header, parse_publisher_file
from meshdrop.core.proposal import Proposal
from meshdrop.core.records import parse_record
from meshdrop.core.reports import encode_report
from meshdrop.transports.courier.parts import PartHeader, encode_part_header
from meshdrop.transports.courier.want import Want, stream_id
from meshdrop.transports.lan import dropsync, protocol
from meshdrop.transports.lan.introduce import Introduction, encode_query

# Small enough that a fuzzer's mutations of them stay fast (the audio and news samples
# are larger: their deep checks are the same as welcome's).
DEMO_FOLDERS = ("welcome",)


def _meshdrop(*args: str, env: dict[str, str]) -> None:
    subprocess.run(["meshdrop", *args], check=True, env=env, capture_output=True, timeout=120)


def _real_files(work: Path) -> dict[str, list[bytes]]:
    """Bundles and publisher files made by the installed command."""
    env = {**os.environ, "MESHDROP_PASSPHRASE": "fuzz seed passphrase"}
    env.pop("MESHDROP_TEST_SEAL_NEW_STORES", None)
    pub = work / "pub"
    _meshdrop("publisher", "new", str(pub), "--name", "Fuzz seed publisher", env=env)
    first_pub = (pub / "publisher.pub").read_bytes()
    _meshdrop("publisher", "add-signer", str(pub), env=env)
    _meshdrop("publisher", "add-report-key", str(pub), env=env)
    small = work / "small"
    small.mkdir()
    (small / "index.html").write_text("<h1>Hi</h1><p>A small page.</p>\n")
    (small / "note.txt").write_text("note\n")
    found = {"bundles": [], "publisher_files": [first_pub, (pub / "publisher.pub").read_bytes()]}
    for folder in (small, *(ROOT / "bundles" / name for name in DEMO_FOLDERS)):
        out = work / f"{folder.name}.mdrop"
        _meshdrop(
            "pack", str(folder), "--publisher", str(pub), "--name", folder.name,
            "--title", folder.name.title(), "-o", str(out), "--quiet", env=env,
        )  # fmt: skip
        found["bundles"].append(out.read_bytes())
    found["bundles"].extend(p.read_bytes() for p in sorted(pub.glob("*.mdrop")))
    return found


def _hexes(entries: object, key: str) -> list[bytes]:
    assert isinstance(entries, list)
    return [bytes.fromhex(entry[key]) for entry in entries]


def seeds(work: Path) -> dict[str, list[bytes]]:
    real = _real_files(work)
    bundles, pub_files = real["bundles"], real["publisher_files"]
    envelopes = [
        b[HEADER_SIZE : HEADER_SIZE + parse_header(b[:HEADER_SIZE], "seed")] for b in bundles
    ]
    parsed = [parse_envelope(raw, "seed") for raw in envelopes]
    manifests = [e.manifest_bytes for e in parsed]
    chain = parse_publisher_file(pub_files[-1], "seed")
    records = [signed.record_bytes for signed in chain]
    chains = [codec.pack([r.to_value() for r in chain]), codec.pack([chain[0].to_value()])]
    v = vectors()
    signed_objects = [
        *_hexes(v["report_keys"], "signed"),
        _hexes([v], "retirement")[0],
        _hexes([v], "acks")[0],
    ]
    drop_blobs = _hexes(v["drops"], "drop")
    report = drops.open_drop(drop_blobs[0], [report_private_key()], stamp_bits=0)
    reports = [encode_report(report)] if report is not None else []
    secret = circles.CircleSecret(bytes(range(circles.SECRET_BYTES)))
    invite = circles.encode_invite(secret)
    header = storekeys.new_header(fast_for_tests=True)
    slots = storekeys.new_slots_file(storekeys.new_store_keys(), bytes(32), header).encode()
    messages = _peer_messages(envelopes, drop_blobs)
    response = messages[3]
    want = Want(
        NOW,
        {stream_id(bytes(32), "news"): 3, stream_id(bytes(32), "welcome"): 1},
        frozenset([bytes(32)]),
    )
    return {
        "codec": [*envelopes, *manifests, *records, *chains, *signed_objects, *messages],
        "bundle": bundles,
        "self_signed": bundles,
        "manifest": manifests,
        "record": records,
        "publisher_file": pub_files,
        "records_chain": chains,
        "proposal": [
            Proposal(parse_record(s.record_bytes), s.record_bytes, s.signatures).encode()
            for s in chain
        ],
        "signed_object": signed_objects,
        "keys_file": [reportkeys.encode_keys_file(signed_objects[:-1])],
        "drop": drop_blobs,
        "report": reports,
        "invite": [invite.encode(), invite.lower().replace("-", " ").encode()],
        "circle_token": [
            circles.make_token(secret, circles.epoch_of(NOW), bytes(circles.NONCE_BYTES))
        ],
        "slots": [slots],
        "blind_inner": [seed + bytes(64) for seed in fuzztargets_blind.SEEDS],
        "peer_message": messages,
        "peer_envelope": envelopes,
        "image_clean": _pictures(),
        "inventory_response": [response],
        "http_head": [
            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 12\r\n"
            b"Date: Mon, 07 Dec 2026 06:35:00 GMT\r\nServer: meshdrop\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 5\r\n\r\n",
        ],
        "discovery": [
            b"\x02\x01v1\x00" + b"d" * 40,
            b"\x01\x04path" + b"/" + bytes(32).hex().encode(),
        ],
        "hello_query": [encode_query(Introduction(b"\x01" * 16, bytes(8), 8123))[1:].encode()],
        "bitmap": [bytes([2]) + holdings.encode_bitmap([True, False] * 7 + [True])],
        "part_header": [encode_part_header(PartHeader(4096, 1, 3, 0, 1 << 20))],
        "want": [want.encode(), Want(0, {}, frozenset()).encode()],
        "range": [
            bytes(3) + b"\x64bytes=0-99",
            b"\x00\x10\x00\x00bytes=-500",
            b'\x00\x10\x00\x00bytes=100-\t"abc"',
        ],
        "reader_query": [
            b"page=2&next=/b/abc/f/1",
            b"next=//evil.example/&page=0",
            b"g=abc&page=99999",
        ],
        "search": [
            b"clinic hours",
            "진료 시간".encode(),
            b'"quoted" AND OR NEAR(x y) col:word*',
            b"caf\xc3\xa9 -not",
        ],
    }


def _pictures() -> list[bytes]:
    """Small pictures as phones send them: a JPEG with an EXIF orientation, a PNG with a
    text chunk and transparency, an animated GIF, a WebP; and a plain text."""
    image = Image.new("RGB", (9, 7), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated
    out = []
    for fmt, extra in (
        ("JPEG", {"exif": exif.tobytes(), "quality": 50}),
        ("PNG", {"pnginfo": _png_text()}),
        ("GIF", {"save_all": True, "append_images": [image.rotate(90)]}),
        ("WEBP", {"quality": 50}),
    ):
        buffer = io.BytesIO()
        (image.convert("RGBA") if fmt == "PNG" else image).save(buffer, format=fmt, **extra)
        out.append(buffer.getvalue())
    return [*out, b"A note: the clinic opens at nine.\n"]


def _png_text() -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "someone")
    return info


def _peer_messages(envelopes: list[bytes], drop_blobs: list[bytes]) -> list[bytes]:
    """What a node's peer API and client really send, made by their encoders."""
    slots = [inventory.bundle_slot(bytes(32), f"bundle-{i}") for i in range(64)]
    under_a = [slot for slot in slots if slot.hex().startswith("a")][:3]
    entries = tuple(
        inventory.Entry(slot, i + 1, bytes([i]) * inventory.DIGEST_BYTES)
        for i, slot in enumerate(under_a)
    )
    response = protocol.InventoryResponse(
        scope=INVENTORY_REQUEST.scope,
        nodes=(
            inventory.Node("", children=bytes(range(16)) * 8),
            inventory.Node("a", entries=entries),
        ),
    )
    return [
        protocol.encode_hello(protocol.Hello(protocol.PROTOCOL_VERSION, bytes(8), b"\x07" * 16)),
        protocol.encode_held_publishers(b"\x05" * 16, [bytes(32), bytes([1]) * 32]),
        protocol.encode_inventory_request(INVENTORY_REQUEST),
        protocol.encode_inventory_response(response),
        protocol.encode_digests([bytes([i]) * 32 for i in range(3)]),
        protocol.encode_envelope_batch([envelopes[0], None]),
        codec.pack([[d.drop_id, d.size, d.expiry] for d in ASKED_DROPS]),
        dropsync.encode_batch([drop_blobs[0], None]),
    ]


def build(out: Path) -> dict[str, int]:
    """Write every target's seeds under ``out``; how many each has."""
    work = Path(tempfile.mkdtemp(prefix="meshdrop-seeds-"))
    try:
        made = seeds(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    missing = set(all_targets()) - set(made)
    assert not missing, f"targets without seeds: {sorted(missing)}"
    counts = {}
    for name, items in made.items():
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for item in items:
            (folder / hashlib.sha256(item).hexdigest()[:16]).write_bytes(item)
        counts[name] = len(items)
    return counts
