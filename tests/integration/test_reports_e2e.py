"""A report's whole way, with real parts only (issue 18, "What it must show"): headless
Chromium without JavaScript writes a Korean report with a GPS-tagged photo to node A's
reader; A passes the sealed drop to B over the LAN (two network namespaces on a bridge,
real mDNS inside them); B exports it to a FAT32 image (mtools); C, the publisher's inbox
machine, imports the stick and opens it; the ack goes back on a stick to B, and from B
to A over the LAN; both delete the drop and A's receipt page says "delivered". Node A's
home, B's home and both stick images are then searched byte by byte for the report.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from urllib.parse import urlencode

import pytest
from dropkit import held_ids
from lankit import NodeProc, Nodes, wait_until
from netnskit import host_ns, in_namespace
from PIL import Image
from readerkit import Reply, pack_in_process
from test_courier_fat import make_fat32, need_tools, sh
from test_lan_netns import Lan, lan  # noqa: F401 (the fixture)
from test_reader_browser import chromium, chromium_path
from test_reader_reports import (
    EN,
    KOREAN_REPORT,
    _write_in_chromium,
    every_file,
    gps_values,
    phone_jpeg,
    receipt_of,
    request,
    sentence,
    windows,
)

from conftest import Publisher, meshdrop_in_process, run_meshdrop, write_tree
from meshdrop.reader.imageclean import clean

pytestmark = pytest.mark.xdist_group("mdns")  # one bridge, one mDNS test at a time

NAME = "Workers' News"
BROWSER_WAIT = 120.0  # seconds: Chromium's start, the page, the form sent and sealed


def new_publisher(folder: Path, *extra: str) -> dict[str, object]:
    """`meshdrop publisher new` (a report key by default); its --json answer."""
    made = run_meshdrop(
        "publisher", "new", folder, "--name", NAME, "--unencrypted", "--json", *extra, check=True
    )
    info: dict[str, object] = json.loads(made.out)
    return info


def node_home(home: Path, publisher: Path) -> Path:
    """A home that trusts the publisher and holds its report-keys bundle."""
    meshdrop_in_process("--home", home, "trust", "add", "--yes", publisher / "publisher.pub",
                        check=True)  # fmt: skip
    meshdrop_in_process("--home", home, "import", publisher / "report-keys.mdrop", check=True)
    return home


def start_node(nodes: Nodes, network: Lan, number: int, home: Path) -> NodeProc:
    # --reports-over-http stands for "a hotspot the node runs": with it the owner says the
    # link between the phone and the node is theirs, and here it is (the bridge joins only
    # the test's namespaces; nobody else is on it, nothing leaves it).
    return nodes.start(
        home,
        "--reports-over-http",
        "--no-watch",
        bind="0.0.0.0",
        prefix=["ip", "netns", "exec", network.add_host(number)],
    )


def write_in_browser(ns: str, address: str, base: str, photo: Path) -> str:
    """Chromium started inside namespace ``ns`` (so are its DevTools socket and every
    request it makes) sends the report; the page it ends on."""

    def browse() -> str:
        with chromium(resolver_rules=f"MAP * ~NOTFOUND, EXCLUDE {address}") as port:
            return asyncio.run(_write_in_chromium(port, base, photo))

    return in_namespace(ns, browse, timeout=BROWSER_WAIT)


def receipt_page(ns: str, base: str, code: str) -> Reply:
    body = urlencode({"code": code}).encode()
    kind = "application/x-www-form-urlencoded"
    return in_namespace(
        ns, lambda: request(base, "/r", "POST", body, Content_Type=kind, Accept_Language="en")
    )


def to_stick(image: Path, source: Path) -> None:
    sh("mcopy", "-s", "-i", image, source, "::/")


def from_stick(image: Path, name: str, dest: Path) -> Path:
    dest.mkdir()
    sh("mcopy", "-s", "-n", "-i", image, f"::/{name}", dest)
    return dest / name


def pixels(data: bytes) -> bytes:
    return Image.open(io.BytesIO(data)).convert("RGB").tobytes()


def assert_nothing_of_the_report(place: str, data: bytes, photo: bytes, cleaned: bytes) -> None:
    for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
        assert KOREAN_REPORT.encode(encoding) not in data, f"the text ({encoding}) in {place}"
        assert KOREAN_REPORT[:12].encode(encoding) not in data, f"its start in {place}"
    for piece in windows(photo) + windows(cleaned):
        assert piece not in data, f"bytes of the photo in {place}"
    for value in gps_values(photo):
        assert value not in data, f"a GPS value in {place}"
    assert b"SecretMaker" not in data, f"the camera's maker in {place}"


def test_a_report_from_a_browser_reaches_the_publisher_and_its_ack_comes_back(
    lan: Lan,  # noqa: F811 (the fixture)
    nodes: Nodes,
    tmp_path: Path,
) -> None:
    chromium_path()
    need_tools()
    publisher = tmp_path / "publisher"
    new_publisher(publisher)
    a_home = node_home(tmp_path / "a", publisher)
    # What A's reader shows the worker: the publisher's news (the write link sits with a
    # publisher's bundles on the home page; a publisher with no bundle gets no group).
    guide = write_tree(tmp_path / "src", {"index.md": "# 안내\n\n임금 체불 신고.\n".encode()})
    guide = pack_in_process(Publisher(publisher), guide, tmp_path / "guide.mdrop", "guide",
                            title="노동자 안내", language="ko")  # fmt: skip
    meshdrop_in_process("--home", a_home, "import", guide, check=True)
    b_home = node_home(tmp_path / "b", publisher)
    c_home = node_home(tmp_path / "c", publisher)  # the inbox machine: the seed is here
    stranger = tmp_path / "stranger"
    new_publisher(stranger)
    photo = phone_jpeg()
    photo_path = tmp_path / "IMG_20260301_142233.jpg"
    photo_path.write_bytes(photo)
    cleaned = clean(photo).data

    a = start_node(nodes, lan, 1, a_home)
    b = start_node(nodes, lan, 2, b_home)
    base = a.urls[0] + "/"
    ns_a = host_ns(lan, 1)

    # 1. A phone on A's hotspot writes, without JavaScript.
    page = write_in_browser(ns_a, lan.address(1), base, photo_path)
    code = receipt_of(page)
    [drop] = held_ids(a_home)
    waiting = receipt_page(ns_a, base, code)
    assert sentence(waiting.text, "state") == EN["receipt_state_waiting"]

    # 2. A to B over the LAN.
    wait_until(lambda: drop in held_ids(b_home), what="the drop to reach B over the LAN")

    # 3. B to a FAT32 stick; C imports it and opens the report.
    exported = tmp_path / "b-export"
    exported.mkdir()
    result = run_meshdrop("--home", b_home, "export", exported)
    assert result.code == 0 and "Traceback" not in result.err, result.err
    stick = make_fat32(tmp_path / "stick.img")
    to_stick(stick, exported / "meshdrop")
    carried = from_stick(stick, "meshdrop", tmp_path / "c-stick")
    imported = run_meshdrop("--home", c_home, "import", carried.parent)
    assert imported.code == 0 and "Traceback" not in imported.err, imported.err
    assert held_ids(c_home) == {drop}

    refused = run_meshdrop("--home", c_home, "reports", "open", "--publisher", stranger,
                           "--out", tmp_path / "stolen")  # fmt: skip
    assert refused.code == 0, refused.err
    assert refused.out.strip() == "opened 0, not for you 1"
    assert list((tmp_path / "stolen").iterdir()) == []

    inbox = tmp_path / "inbox"
    opened = run_meshdrop("--home", c_home, "reports", "open", "--publisher", publisher,
                          "--out", inbox)  # fmt: skip
    assert opened.code == 0, opened.err
    assert opened.out.strip() == "opened 1, not for you 0"
    report = inbox / drop.hex()
    assert (report / "report.txt").read_text(encoding="utf-8") == KOREAN_REPORT
    assert json.loads((report / "meta.json").read_text(encoding="utf-8"))["receipt"] == code
    picture = (report / "photo-1.jpg").read_bytes()
    assert pixels(picture) == pixels(cleaned)
    image = Image.open(io.BytesIO(picture))
    assert not image.getexif() and "exif" not in image.info
    assert b"Exif" not in picture
    for value in gps_values(photo):
        assert value not in picture
    assert all(piece in picture for piece in windows(cleaned))  # what step 5 looks for

    # 4. The ack: a stick from the publisher to B, then the LAN from B to A.
    acked = run_meshdrop("reports", "ack", "--publisher", publisher, "--opened", inbox, "--json")
    assert acked.code == 0, acked.err
    assert json.loads(acked.out)["drops"] == 1
    back_stick = make_fat32(tmp_path / "back.img")
    to_stick(back_stick, publisher / "report-keys.mdrop")
    bundle = from_stick(back_stick, "report-keys.mdrop", tmp_path / "b-stick")
    taken = run_meshdrop("--home", b_home, "import", bundle)
    assert taken.code == 0 and "Traceback" not in taken.err, taken.err
    assert drop not in held_ids(b_home)
    got = a.wait_event(lambda e: e["event"] == "bundle" and e["name"] == "report-keys")
    assert got["peer"] == f"{lan.address(2)}:{b.port}"  # the ack came over the LAN, from B
    wait_until(lambda: drop not in held_ids(a_home), what="A to delete the acked drop")
    for home in (a_home, b_home):
        assert not (home / "drops" / drop.hex()).exists()
    delivered = receipt_page(ns_a, base, code)
    assert sentence(delivered.text, "state") == EN["receipt_state_delivered"]

    # 5. What a seized device or a searched stick holds.
    for place, data in (
        ("A's home", every_file(a_home)),
        ("B's home", every_file(b_home)),
        ("the stick", stick.read_bytes()),
        ("the stick back", back_stick.read_bytes()),
    ):
        assert_nothing_of_the_report(place, data, photo, cleaned)
    assert code.encode() not in every_file(a_home)  # the receipt kept only as an HMAC
