"""Writing to a publisher from the reader (issue 18): the write page and its protection
notice, a report sent by headless Chromium with JavaScript disabled, the node's disk
searched for what was written, each refusal, the rate limit and the receipt code.

Real parts: `meshdrop read` as a subprocess, plain HTTP from chosen source addresses
(127.0.0.4 to a reader on 127.0.0.3 is "another device": nothing leaves loopback), the
HTTPS reader pinned by fingerprint, and the publisher's own report seed opening the drop.
"""

from __future__ import annotations

import asyncio
import html
import http.client
import io
import json
import re
import shutil
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from PIL import ExifTags, Image
from readerkit import DevTools, Reply, fetch, links, pack_in_process
from readerkit import reader_server as reader
from test_reader_browser import chromium, chromium_path, navigate, open_page, screenshot
from test_reader_https import https_reader, pinned_get

from conftest import (
    Publisher,
    assert_clean_error,
    run_meshdrop,
    write_tree,
)
from meshdrop.core.drops import open_drop
from meshdrop.core.reports import Report
from meshdrop.publish.keystore import load_publisher
from meshdrop.publish.reportkeys import add_report_key, build_bundle, load_report_seeds
from meshdrop.reader import i18n, readerids
from meshdrop.reader.imageclean import clean
from meshdrop.reader.writing import RATE_REPORTS
from meshdrop.store.drops import DROPS_FOLDER, DropStore

EN = i18n.STRINGS["en"]
KO = i18n.STRINGS["ko"]
NAME = "Workers' News"
KOREAN_REPORT = (
    "사장이 석 달째 월급을 주지 않고 여권을 가져갔습니다. 기숙사 3동 보안요원이 돈을 요구합니다."
)
LATITUDE = (37.0, 33.0, 59.88)
LONGITUDE = (126.0, 58.0, 41.2)
BOUNDARY = "----meshdropTestBoundary7MA4YWxk"


@dataclass
class Writer:
    publisher: Publisher
    home: Path  # a node trusting the publisher, holding its report key and one bundle
    fingerprint: str


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Writer:
    folder = tmp_path_factory.mktemp("reports")
    publisher = Publisher(folder / "publisher")
    run_meshdrop("publisher", "new", publisher.folder, "--name", NAME, "--unencrypted", check=True)
    home = folder / "node"
    run_meshdrop("--home", home, "trust", "add", "--yes", publisher.pub, check=True)
    now = int(time.time())
    src = write_tree(folder / "src", {"index.md": "# 안내\n\n임금 체불 신고.\n".encode()})
    bundle = pack_in_process(
        publisher, src, folder / "guide.mdrop", "guide", title="노동자 안내", language="ko"
    )
    publishing = load_publisher(publisher.folder)
    key, _signer = publishing.load_signer(lambda _what: None, now, bundle_name="report-keys")
    add_report_key(publishing, key, None, now)
    keys_bundle = build_bundle(publishing, key, now)
    run_meshdrop("--home", home, "import", bundle, keys_bundle, check=True)
    listed = run_meshdrop("--home", home, "trust", "ls", "--json", check=True).out
    return Writer(publisher, home, json.loads(listed.splitlines()[0])["fingerprint"])


@pytest.fixture
def writer(prepared: Writer, tmp_path: Path) -> Writer:
    """The prepared node, copied: each test's drops and rate limit are its own."""
    home = tmp_path / "node"
    shutil.copytree(prepared.home, home)
    return Writer(prepared.publisher, home, prepared.fingerprint)


def request(
    base: str,
    path: str,
    method: str = "GET",
    body: bytes | None = None,
    source: str | None = None,
    **headers: str,
) -> Reply:
    """One HTTP request, from the address ``source`` if given."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(
        parts.hostname or "", parts.port, timeout=30, source_address=(source, 0) if source else None
    )
    try:
        conn.request(
            method, path, body=body, headers={k.replace("_", "-"): v for k, v in headers.items()}
        )
        response = conn.getresponse()
        return Reply(response.status, response.getheaders(), response.read())
    finally:
        conn.close()


def multipart(*parts: tuple[str, str | None, bytes], end: bool = True) -> bytes:
    """A multipart/form-data body of (field name, file name or None, bytes)."""
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' if name else "form-data"
        if filename is not None:
            disposition += f'; filename="{filename}"'
            head = f"Content-Disposition: {disposition}\r\nContent-Type: application/octet-stream"
        else:
            head = f"Content-Disposition: {disposition}"
        out += f"--{BOUNDARY}\r\n{head}\r\n\r\n".encode() + data + b"\r\n"
    return out + (f"--{BOUNDARY}--\r\n".encode() if end else b"")


def send(base: str, path: str, body: bytes, source: str | None = None, **headers: str) -> Reply:
    kind = f"multipart/form-data; boundary={BOUNDARY}"
    return request(base, path, "POST", body, source, Content_Type=kind, **headers)


def write_url(home: Path, fingerprint: str) -> str:
    key = (home / readerids.KEY_FILE).read_bytes()
    return f"/w/{readerids.publisher_id(key, fingerprint)}"


def drops_held(home: Path) -> list[Path]:
    folder = home / DROPS_FOLDER
    return (
        sorted(p for p in folder.iterdir() if re.fullmatch("[0-9a-f]{64}", p.name))
        if folder.exists()
        else []
    )


def receipt_of(page: str) -> str:
    found = re.search(r'<p class="receipt" id="receipt"><strong>([A-Z2-7]{8})</strong>', page)
    assert found is not None, page
    return found.group(1)


def sentence(page: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}">(.*?)</p>', page, re.S)
    assert found is not None, page
    return html.unescape(re.sub(r"<[^>]*>", "", found.group(1))).strip()


def phone_jpeg() -> bytes:
    """A photo as a phone saves it: noisy pixels, EXIF with camera and GPS."""
    image = Image.frombytes("RGB", (96, 64), bytes((i * 7919) % 251 for i in range(96 * 64 * 3)))
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "SecretMaker"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = LATITUDE
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = LONGITUDE
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95, exif=exif.tobytes())
    return out.getvalue()


def gps_values(jpeg: bytes) -> list[bytes]:
    """The GPS rationals as stored in the JPEG (the bytes a disk search looks for)."""
    start = jpeg.index(b"Exif\x00\x00") + 6
    order = "<" if jpeg[start : start + 2] == b"II" else ">"
    gps = Image.open(io.BytesIO(jpeg)).getexif().get_ifd(ExifTags.IFD.GPSInfo)
    stored = [
        struct.pack(order + "II", part.numerator, part.denominator)
        for tag in (ExifTags.GPS.GPSLatitude, ExifTags.GPS.GPSLongitude)
        for part in gps[tag]
    ]
    found = [value for value in stored if value != struct.pack(order + "II", 37, 1)]
    assert found and all(value in jpeg for value in found)
    return found


def windows(data: bytes, size: int = 48, count: int = 8) -> list[bytes]:
    """Pieces from across ``data`` (a search for each finds the file or a copy of it)."""
    step = max((len(data) - size) // count, 1)
    return [data[i : i + size] for i in range(len(data) // 3, len(data) - size, step)][:count]


def every_file(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file())


def open_with_publisher_seed(writer: Writer, blob: bytes) -> Report:
    seeds = load_report_seeds(writer.publisher.folder, lambda _what: None)
    report = open_drop(blob, seeds)
    assert report is not None, "the publisher's report key does not open the drop"
    return report


# The pages


def test_home_and_bundle_pages_link_to_an_opaque_write_page(writer: Writer) -> None:
    with reader(writer.home) as base:
        home = fetch(base, "/", Accept_Language="en")
        wanted = f"Write to {NAME}"
        [href] = [h for h, text in links(home.text) if text == wanted]
        assert re.fullmatch("/w/[a-z2-7]{16}", href)
        assert href == write_url(writer.home, writer.fingerprint)
        [bundle] = [h for h, text in links(home.text) if text == "노동자 안내"]
        assert (href, wanted) in links(fetch(base, bundle, Accept_Language="en").text)
        assert "report-keys" not in home.text  # the reserved bundle is never listed
        page = fetch(base, href, Accept_Language="en")
    assert page.status == 200
    for hidden in (writer.fingerprint, writer.fingerprint[:16], "Workers"):
        assert hidden not in href
    assert f"<title>{EN['site']}</title>" in page.text  # neutral: the history names nobody
    assert page.header("Cache-Control") == "no-store"
    assert page.text.count("<script") == 1  # seal.js only (test_reader_seal_js.py)
    assert 'method="post" enctype="multipart/form-data"' in page.text
    assert sentence(page.text, "protection") == EN["protect_local"]
    assert EN["write_photos"] in html.unescape(page.text)


def test_a_publisher_with_only_a_report_key_can_be_written_to_from_home(writer: Writer) -> None:
    """A publisher may publish nothing but its report key: the home page still offers it."""
    run_meshdrop("--home", writer.home, "rm", "guide", check=True)
    with reader(writer.home) as base:
        home = fetch(base, "/", Accept_Language="en")
        assert EN["no_bundles"] in home.text and EN["write_others"] in home.text
        [href] = [h for h, text in links(home.text) if text == f"Write to {NAME}"]
        assert href == write_url(writer.home, writer.fingerprint)
        assert fetch(base, href, Accept_Language="en").status == 200


def test_write_page_in_korean_says_the_protection_before_sending(writer: Writer) -> None:
    with reader(writer.home) as base:
        page = fetch(base, write_url(writer.home, writer.fingerprint), Accept_Language="ko")
    assert sentence(page.text, "protection") == KO["protect_local"]
    assert page.text.index('id="protection"') < page.text.index(
        '<button class="button" type="submit">'
    )
    assert KO["write_heading"].format(name=NAME) in html.unescape(page.text)


def test_unknown_write_page_is_the_one_not_found_page(writer: Writer) -> None:
    with reader(writer.home) as base:
        page = fetch(base, "/w/aaaaaaaaaaaaaaaa", Accept_Language="en")
        untrusted = fetch(base, "/w/" + readerids.publisher_id(b"x" * 32, writer.fingerprint))
    assert page.status == 404 and EN["not_found"] in page.text
    assert untrusted.status == 404


# A browser without JavaScript, on this machine


def test_browser_without_javascript_sends_a_korean_report_with_a_gps_photo(
    writer: Writer, tmp_path: Path
) -> None:
    chromium_path()
    photo = phone_jpeg()
    photo_path = tmp_path / "IMG_20260301_142233.jpg"
    photo_path.write_bytes(photo)
    with reader(writer.home) as base, chromium() as port:
        page = asyncio.run(_write_in_chromium(port, base, photo_path))
    code = receipt_of(page)
    [drop] = drops_held(writer.home)
    disk = every_file(writer.home)
    assert KOREAN_REPORT.encode() not in disk
    assert KOREAN_REPORT[:12].encode() not in disk
    cleaned = clean(photo).data
    for piece in windows(photo) + windows(cleaned) + gps_values(photo):
        assert piece not in disk
    report = open_with_publisher_seed(writer, drop.read_bytes())
    assert report.text == KOREAN_REPORT and report.receipt == code
    [attachment] = report.attachments
    assert (attachment.name, attachment.media_type) == ("photo-1.jpg", "image/jpeg")
    assert attachment.data == cleaned  # the node's cleaning, nothing else
    opened = Image.open(io.BytesIO(attachment.data))
    assert not opened.getexif() and "exif" not in opened.info
    original = Image.open(io.BytesIO(photo)).convert("RGB")
    assert opened.size == original.size
    pixels = zip(opened.convert("RGB").tobytes(), original.tobytes(), strict=True)
    difference = sum(abs(a - b) for a, b in pixels) / len(original.tobytes())
    assert difference < 8, difference  # the same pixels, encoded again
    for piece in gps_values(photo):
        assert piece not in attachment.data


async def _write_in_chromium(port: int, base: str, photo: Path) -> str:
    session, cdp = await open_page(port)
    try:
        await cdp.send("Emulation.setScriptExecutionDisabled", {"value": True})
        await cdp.send("Network.setExtraHTTPHeaders", {"headers": {"Accept-Language": "ko"}})
        await navigate(cdp, base)
        href = await _attribute(cdp, "p.write-to a", "href")
        await navigate(cdp, base.rstrip("/") + href)
        text = await _node(cdp, "#text")
        await cdp.send("DOM.focus", {"nodeId": text})
        await cdp.send("Input.insertText", {"text": KOREAN_REPORT})
        files = await _node(cdp, "#file")
        await cdp.send("DOM.setFileInputFiles", {"files": [str(photo)], "nodeId": files})
        await screenshot(cdp, "write-ko.png")  # for a person to look at
        button = await _node(cdp, "form.write button")
        await cdp.send("DOM.scrollIntoViewIfNeeded", {"nodeId": button})
        box = (await cdp.send("DOM.getBoxModel", {"nodeId": button}))["model"]["content"]
        x, y = (box[0] + box[4]) / 2, (box[1] + box[5]) / 2
        loaded = cdp.expect("Page.loadEventFired")
        for kind in ("mousePressed", "mouseReleased"):
            await cdp.send(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1},
            )
        await asyncio.wait_for(loaded, 60)
        await screenshot(cdp, "receipt-ko.png")
        root = (await cdp.send("DOM.getDocument"))["root"]["nodeId"]
        return str((await cdp.send("DOM.getOuterHTML", {"nodeId": root}))["outerHTML"])
    finally:
        await cdp.close()
        await session.close()


async def _node(cdp: DevTools, selector: str) -> int:
    root = (await cdp.send("DOM.getDocument"))["root"]["nodeId"]
    found = await cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})
    assert found["nodeId"], f"no {selector} on the page"
    return int(found["nodeId"])


async def _attribute(cdp: DevTools, selector: str, name: str) -> str:
    node = await _node(cdp, selector)
    values = (await cdp.send("DOM.getAttributes", {"nodeId": node}))["attributes"]
    return str(dict(zip(values[::2], values[1::2], strict=True))[name])


# Which links may carry the form


def test_plain_http_from_another_device_gets_no_form(writer: Writer) -> None:
    with reader(writer.home, bind="127.0.0.3") as base:
        path = write_url(writer.home, writer.fingerprint)
        page = request(base, path, source="127.0.0.4", Accept_Language="en")
        sent = send(base, path, multipart(("text", None, b"secret words")), "127.0.0.4")
        here = request(base, path, source="127.0.0.3", Accept_Language="en")
    assert page.status == 200
    assert sentence(page.text, "protection") == EN["protect_none"]
    # Offered only to seal.js (test_reader_seal_js.py): hidden, and useless without it.
    assert 'enctype="multipart/form-data" hidden' in page.text
    assert sent.status == 403 and "secret words" not in sent.text
    assert drops_held(writer.home) == []
    # Another loopback address is not "this machine": only 127.0.0.1 and ::1 are.
    assert sentence(here.text, "protection") == EN["protect_none"]


def test_reports_over_http_offers_the_form_on_a_controlled_link(writer: Writer) -> None:
    with reader(writer.home, "--reports-over-http", bind="127.0.0.3") as base:
        path = write_url(writer.home, writer.fingerprint)
        page = request(base, path, source="127.0.0.4", Accept_Language="en")
        sent = send(base, path, multipart(("text", None, b"no pay for March")), "127.0.0.4")
    assert sentence(page.text, "protection") == EN["protect_hotspot"]
    assert '<form class="write"' in page.text
    assert sent.status == 200, sent.text
    receipt_of(sent.text)
    assert len(drops_held(writer.home)) == 1


def test_https_reader_offers_the_form(writer: Writer) -> None:
    with https_reader(writer.home) as served:
        page = pinned_get(served, write_url(writer.home, writer.fingerprint), Accept_Language="en")
    assert page.status == 200
    assert sentence(page.text, "protection") == EN["protect_https"]
    assert '<form class="write"' in page.text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["read", "--https", "--reports-over-http"], "--reports-over-http has no use with --https"),
        (
            ["node", "--no-reader", "--reports-over-http"],
            "--reports-over-http has no use with --no-reader",
        ),
    ],
    ids=["read-with-https", "node-without-reader"],
)
def test_reports_over_http_bad_combinations(tmp_path: Path, argv: list[str], message: str) -> None:
    result = run_meshdrop("--home", tmp_path / "node", *argv)
    assert_clean_error(result, message)
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1


# Refusals: each its own sentence on the form page, nothing stored


@pytest.fixture(scope="module")
def refusing(
    prepared: Writer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Writer, str]]:
    home = tmp_path_factory.mktemp("refusing") / "node"
    shutil.copytree(prepared.home, home)
    refusing = Writer(prepared.publisher, home, prepared.fingerprint)
    with reader(home) as base:
        yield refusing, base


def _big_text_files(count: int, size: int) -> list[tuple[str, str | None, bytes]]:
    return [("file", f"note-{i}.txt", b"a" * size) for i in range(count)]


REFUSALS = {
    "not-a-form": (415, "report_not_a_form", None),
    "too-big": (413, "report_too_big", None),
    "text-too-long": (
        413,
        "report_text_too_long",
        multipart(("text", None, b"a" * (64 * 1024 + 1))),
    ),
    "too-many-files": (413, "report_too_many_files", multipart(*_big_text_files(9, 10))),
    "files-too-big": (
        413,
        "report_files_too_big",
        multipart(*_big_text_files(2, 4 * 1024 * 1024 + 1)),
    ),
    "unknown-field": (400, "report_unknown_field", multipart(("name", None, b"Kim"))),
    "nameless-part": (400, "report_nameless_part", multipart(("", None, b"x"))),
    "repeated-text": (
        400,
        "report_repeated_text",
        multipart(("text", None, b"one"), ("text", None, b"two")),
    ),
    "text-not-utf8": (
        400,
        "report_text_unreadable",
        multipart(("text", None, "임금".encode("euc-kr"))),
    ),
    "incomplete": (400, "report_incomplete", multipart(("text", None, b"cut"), end=False)),
    "empty": (400, "report_empty", multipart(("text", None, b"  \r\n "))),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_form_says_why_in_one_sentence(refusing: tuple[Writer, str], case: str) -> None:
    writer, base = refusing
    status, key, body = REFUSALS[case]
    path = write_url(writer.home, writer.fingerprint)
    if case == "not-a-form":
        reply = request(
            base,
            path,
            "POST",
            urlencode({"text": "hello"}).encode(),
            Content_Type="application/x-www-form-urlencoded",
            Accept_Language="en",
        )
    elif case == "too-big":
        reply = send(
            base, path, b"x" * 1024, Content_Length=str(9 * 1024 * 1024 + 1), Accept_Language="en"
        )
    else:
        assert body is not None
        reply = send(base, path, body, Accept_Language="en")
    assert reply.status == status, reply.text
    assert sentence(reply.text, "refused") == EN[key]
    assert '<form class="write"' in reply.text  # the form again, to try once more
    assert drops_held(writer.home) == []


@pytest.mark.parametrize(
    ("case", "data", "key", "kind"),
    [
        ("pdf", b"%PDF-1.7\n% payslip\n", "attach_uncleanable", "a PDF document"),
        ("damaged-photo", phone_jpeg()[:900], "attach_damaged", ""),
    ],
    ids=["pdf", "damaged-photo"],
)
def test_refused_file_is_named_and_the_text_is_kept(
    refusing: tuple[Writer, str], case: str, data: bytes, key: str, kind: str
) -> None:
    writer, base = refusing
    body = multipart(("text", None, "월급 명세서".encode()), ("file", f"{case}.bin", data))
    for lang, strings in (("en", EN), ("ko", KO)):
        reply = send(base, write_url(writer.home, writer.fingerprint), body, Accept_Language=lang)
        assert reply.status == 422, reply.text
        words = i18n.kind_words(kind, lang)
        assert sentence(reply.text, "refused") == strings[key].format(
            name=f"{case}.bin", kind=words
        )
        assert ">월급 명세서</textarea>" in reply.text
    assert drops_held(writer.home) == []


# The rate limit and the receipt code


def test_rate_limit_refuses_more_reports_from_one_address(writer: Writer) -> None:
    with reader(writer.home) as base:
        path = write_url(writer.home, writer.fingerprint)
        for number in range(RATE_REPORTS):
            sent = send(base, path, multipart(("text", None, f"report {number}".encode())))
            assert sent.status == 200, sent.text
        refused = send(base, path, multipart(("text", None, b"one more")), Accept_Language="en")
    assert refused.status == 429
    assert refused.header("Retry-After") == "600"
    assert EN["write_wait"] in refused.text
    assert len(drops_held(writer.home)) == RATE_REPORTS


def test_receipt_code_shows_waiting_then_delivered(writer: Writer) -> None:
    def check(base: str, code: str) -> Reply:
        body = urlencode({"code": code}).encode()
        kind = "application/x-www-form-urlencoded"
        return request(base, "/r", "POST", body, Content_Type=kind, Accept_Language="en")

    with reader(writer.home) as base:
        form = fetch(base, "/r", Accept_Language="en")
        sent = send(
            base, write_url(writer.home, writer.fingerprint), multipart(("text", None, b"hi"))
        )
        code = receipt_of(sent.text)
        waiting = check(base, code.lower()[:4] + "-" + code.lower()[4:])  # as people type it
        unknown = check(base, "AAAAAAAA" if code != "AAAAAAAA" else "BBBBBBBB")
        bad = check(base, "not a code!")
        [drop] = drops_held(writer.home)
        DropStore(writer.home).remove([bytes.fromhex(drop.name)])  # as an ack does
        delivered = check(base, code)
    assert form.status == 200 and 'action="/r" method="post"' in form.text
    assert sentence(waiting.text, "state") == EN["receipt_state_waiting"]
    assert sentence(unknown.text, "state") == EN["receipt_state_unknown"]
    assert bad.status == 400 and sentence(bad.text, "state") == EN["receipt_state_bad"]
    assert sentence(delivered.text, "state") == EN["receipt_state_delivered"]
    assert code.encode() not in every_file(writer.home)  # kept only as an HMAC


def test_receipt_check_refuses_a_multipart_body(writer: Writer) -> None:
    with reader(writer.home) as base:
        reply = send(base, "/r", multipart(("code", None, b"ABCDEFGH")), Accept_Language="en")
    assert reply.status == 400 and sentence(reply.text, "state") == EN["receipt_state_bad"]
