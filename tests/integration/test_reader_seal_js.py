"""Sealing in the browser (issue 18, "The first hop is the weak one"): the write page's
script (meshdrop/reader/static/seal.js) cleans the photos, seals and stamps the report in
headless Chromium with JavaScript on, and only the drop crosses the socket.

Real parts: `meshdrop read` on 127.0.0.3 over plain HTTP without --reports-over-http, and
"another device": Chromium reaches it through a small proxy in this test that connects
from 127.0.0.4 and records every byte the browser sends. crypto.subtle is taken away
before the page runs, as on a phone's plain-HTTP page (not a secure context). The drop
opens with the publisher's own report seed.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from readerkit import DevTools
from test_reader_browser import NOWHERE, chromium, chromium_path, navigate, open_page
from test_reader_reports import (
    EN,
    KOREAN_REPORT,
    Writer,
    drops_held,
    every_file,
    gps_values,
    open_with_publisher_seed,
    phone_jpeg,
    prepared,  # noqa: F401 (a fixture)
    reader,
    request,
    sentence,
    windows,
    write_url,
    writer,  # noqa: F401 (a fixture)
)

from meshdrop.core.drops import STAMP_BITS, check_drop, open_drop, seal
from meshdrop.core.reportkeys import ReportPrivateKey, Suite
from meshdrop.core.reports import Attachment, Report, encode_report
from meshdrop.store.drops import DropStore

PROXY = "127.0.0.5"
VECTORS = Path(__file__).parents[2] / "docs" / "vectors" / "drops.json"
NO_SUBTLE = "Object.defineProperty(window.crypto, 'subtle', {value: undefined});"


@asynccontextmanager
async def recording_proxy(target: str, source: str) -> AsyncIterator[tuple[str, bytearray]]:
    """A TCP proxy on PROXY to ``target`` (``http://host:port/``), connecting from
    ``source``; yields its base URL and every byte the browser sent through it."""
    host, port = target.removeprefix("http://").rstrip("/").rsplit(":", 1)
    sent = bytearray()

    async def pipe(
        source_r: asyncio.StreamReader, sink: asyncio.StreamWriter, record: bool
    ) -> None:
        try:
            while data := await source_r.read(65536):
                if record:
                    sent.extend(data)
                sink.write(data)
                await sink.drain()
        except ConnectionError:
            pass
        finally:
            sink.close()

    async def serve(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        node_r, node_w = await asyncio.open_connection(host, int(port), local_addr=(source, 0))
        await asyncio.gather(pipe(client_r, node_w, True), pipe(node_r, client_w, False))

    server = await asyncio.start_server(serve, PROXY, 0)
    try:
        yield f"http://{PROXY}:{server.sockets[0].getsockname()[1]}", sent
    finally:
        server.close()


async def evaluate(cdp: DevTools, expression: str) -> Any:
    answer = await cdp.send(
        "Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True}
    )
    assert "exceptionDetails" not in answer, answer
    return answer["result"].get("value")


async def wait_for(cdp: DevTools, expression: str, seconds: float = 120) -> Any:
    """Poll ``expression`` until it is truthy (a bound, not a timing assertion)."""
    deadline = time.monotonic() + seconds
    while not (value := await evaluate(cdp, expression)):
        assert time.monotonic() < deadline, f"never true: {expression}"
        await asyncio.sleep(0.2)
    return value


async def _seal_in_chromium(port: int, node: str, path: str, photo: Path) -> dict[str, Any]:
    async with recording_proxy(node, "127.0.0.4") as (base, sent):
        session, cdp = await open_page(port)
        try:
            await cdp.send("Page.addScriptToEvaluateOnNewDocument", {"source": NO_SUBTLE})
            await cdp.send("Network.setExtraHTTPHeaders", {"headers": {"Accept-Language": "ko"}})
            await navigate(cdp, base + path)
            before = await evaluate(
                cdp,
                "({browser: !document.getElementById('protection-browser').hidden,"
                " plain: !document.getElementById('protection').hidden,"
                " form: !document.querySelector('form.write').hidden,"
                " subtle: !!crypto.subtle})",
            )
            root = (await cdp.send("DOM.getDocument"))["root"]["nodeId"]
            files = await cdp.send("DOM.querySelector", {"nodeId": root, "selector": "#file"})
            await cdp.send(
                "DOM.setFileInputFiles", {"files": [str(photo)], "nodeId": files["nodeId"]}
            )
            text = json.dumps(KOREAN_REPORT)
            await evaluate(cdp, f"document.getElementById('text').value = {text}")
            await evaluate(cdp, "document.querySelector('form.write button').click()")
            receipt = await wait_for(
                cdp, "document.getElementById('receipt')?.textContent.trim() || ''"
            )
            return {**before, "receipt": receipt, "sent": bytes(sent)}
        finally:
            await cdp.close()
            await session.close()


def test_browser_seals_a_korean_report_with_a_gps_photo_over_plain_http(
    writer: Writer,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    chromium_path()
    photo = phone_jpeg()
    photo_path = tmp_path / "IMG_20260301_142233.jpg"
    photo_path.write_bytes(photo)
    with (
        reader(writer.home, bind="127.0.0.3") as node,
        chromium(f"{NOWHERE}, EXCLUDE {PROXY}") as port,
    ):
        path = write_url(writer.home, writer.fingerprint)
        seen = asyncio.run(_seal_in_chromium(port, node, path, photo_path))
    # What the writer was told before sending, and that this page had no crypto.subtle.
    assert seen["browser"] and not seen["plain"] and seen["form"] and not seen["subtle"]
    sent: bytes = seen["sent"]
    assert b"Content-Type: application/octet-stream" in sent
    assert KOREAN_REPORT.encode() not in sent and KOREAN_REPORT[:8].encode() not in sent
    for piece in windows(photo) + gps_values(photo):
        assert piece not in sent
    [drop] = drops_held(writer.home)
    blob = drop.read_bytes()
    assert blob in sent  # the drop is what crossed the socket
    disk = every_file(writer.home)
    assert KOREAN_REPORT.encode() not in disk
    report = open_with_publisher_seed(writer, blob)
    assert report.text == KOREAN_REPORT and report.receipt == seen["receipt"]
    [attachment] = report.attachments
    assert (attachment.name, attachment.media_type) == ("photo-1.jpg", "image/jpeg")
    assert attachment.data not in sent
    opened = Image.open(io.BytesIO(attachment.data))
    assert opened.format == "JPEG" and not opened.getexif() and "exif" not in opened.info
    assert opened.size == Image.open(io.BytesIO(photo)).size
    for piece in gps_values(photo):
        assert piece not in attachment.data
    assert DropStore(writer.home).receipt_state(report.receipt) == "waiting"


def test_write_page_runs_only_the_sealing_script(
    writer: Writer,  # noqa: F811 (the fixture)
) -> None:
    with reader(writer.home, bind="127.0.0.3") as base:
        path = write_url(writer.home, writer.fingerprint)
        page = request(base, path, source="127.0.0.4", Accept_Language="en")
        home = request(base, "/", source="127.0.0.4", Accept_Language="en")
        [script] = [s for s in page.text.split('"') if s.startswith("/static/seal.")]
        served = request(base, script, source="127.0.0.4")
    host = base.removeprefix("http://").rstrip("/")
    csp = page.header("Content-Security-Policy") or ""
    assert csp.count("script-src") == 1 and f"script-src http://{host}{script};" in csp
    assert "script-src 'none'" in (home.header("Content-Security-Policy") or "")
    assert served.status == 200
    assert (served.header("Content-Type") or "").startswith("text/javascript")
    assert (
        served.body == (Path(__file__).parents[2] / "meshdrop/reader/static/seal.js").read_bytes()
    )
    # Without the script the form stays hidden and says why.
    assert sentence(page.text, "protection") == EN["protect_none"]
    assert sentence(page.text, "script-needed") == EN["protect_script_needed"]
    assert 'enctype="multipart/form-data" hidden' in page.text


def _sealed(node: Writer, now: int) -> bytes:
    return seal(Report("임금 체불", (), "ABCD2345"), _key(node, now), now + 86_400, now)


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("bad_stamp", 422),
        ("wrong_size", 422),
        ("expired", 422),
        ("no_receipt", 400),
        ("over_16_mib", 413),
    ],
)
def test_node_refuses_a_bad_sealed_drop(
    writer: Writer,  # noqa: F811 (the fixture)
    case: str,
    status: int,
) -> None:
    now = int(time.time())
    blob, receipt = _sealed(writer, now), "ABCD2345"
    if case == "bad_stamp":
        blob = blob[:-1] + bytes([blob[-1] ^ 1])
    elif case == "wrong_size":
        blob = blob[:-100]
    elif case == "expired":
        blob = seal(Report("x", (), "ABCD2345"), _key(writer, now), now - 5, now - 10)
    elif case == "no_receipt":
        receipt = ""
    elif case == "over_16_mib":
        blob = bytes(16 * 1024 * 1024 + 1)
    with reader(writer.home, bind="127.0.0.3") as base:
        path = write_url(writer.home, writer.fingerprint)
        answer = request(
            base,
            path,
            "POST",
            blob,
            "127.0.0.4",
            Accept_Language="en",
            Content_Type="application/octet-stream",
            Receipt_Code=receipt,
        )
    assert answer.status == status, answer.text
    assert EN["drop_refused"] in answer.text and "Traceback" not in answer.text
    assert drops_held(writer.home) == []


def _key(node: Writer, now: int) -> Any:
    from meshdrop.store.reportkeys import report_keys
    from meshdrop.store.store import Store

    with Store(node.home) as store:
        return report_keys(store, now)[node.fingerprint][0]


async def _seal_vectors(port: int, node: str, path: str) -> list[dict[str, Any]]:
    vectors = json.loads(VECTORS.read_text())
    report = vectors["report"]
    js_report = {
        "text": report["text"],
        "receipt": report["receipt"],
        "attachments": [
            {**a, "data": list(bytes.fromhex(a["data"]))} for a in report["attachments"]
        ],
    }
    session, cdp = await open_page(port)
    try:
        await cdp.send("Page.addScriptToEvaluateOnNewDocument", {"source": NO_SUBTLE})
        await navigate(cdp, node.rstrip("/") + path)
        found = []
        for drop in vectors["drops"]:
            [key] = [k for k in vectors["report_keys"] if k["suite"] == drop["suite"]]
            public = base64.b64encode(bytes.fromhex(key["public_key"])).decode()
            out = await evaluate(
                cdp,
                f"""(async () => {{
                  const r = {json.dumps(js_report)};
                  r.attachments = r.attachments.map(a => ({{...a, data: Uint8Array.from(a.data)}}));
                  const enc = window.reportSeal.encodeReport(r);
                  const key = Uint8Array.from(atob({json.dumps(public)}), c => c.charCodeAt(0));
                  const drop = await window.reportSeal.sealDrop(
                    r, {json.dumps(drop["suite"])}, key, {drop["expiry"]}, {STAMP_BITS});
                  const hex = u => Array.from(u, b => b.toString(16).padStart(2, "0")).join("");
                  return {{encoded: hex(enc), drop: hex(drop)}};
                }})()""",
            )
            found.append({**drop, **{"js_" + k: v for k, v in out.items()}, "key": key})
        return found
    finally:
        await cdp.close()
        await session.close()


def test_javascript_drops_of_the_vector_inputs_open_in_python(
    writer: Writer,  # noqa: F811 (the fixture)
) -> None:
    vectors = json.loads(VECTORS.read_text())
    report = vectors["report"]
    expected = Report(
        report["text"],
        tuple(
            Attachment(a["name"], a["media_type"], bytes.fromhex(a["data"]))
            for a in report["attachments"]
        ),
        report["receipt"],
    )
    with reader(writer.home) as node, chromium() as port:
        path = write_url(writer.home, writer.fingerprint)
        sealed = asyncio.run(_seal_vectors(port, node, path))
    assert {d["suite"] for d in sealed} == {"x25519", "mlkem768-x25519"}
    for drop in sealed:
        assert bytes.fromhex(drop["js_encoded"]) == encode_report(expected)  # canonical
        blob = bytes.fromhex(drop["js_drop"])
        assert len(blob) == len(bytes.fromhex(drop["drop"]))  # the same size class
        check_drop(blob, vectors["now"])
        seed = ReportPrivateKey(Suite(drop["suite"]), bytes.fromhex(drop["key"]["seed"]))
        assert open_drop(blob, [seed]) == expected
