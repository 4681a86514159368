"""The reader over real HTTP: `meshdrop read` on 127.0.0.1 (port 0) in front of a store
filled through the installed command, every page and every header checked."""

from __future__ import annotations

import gzip
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from readerkit import (
    BIG_SIZE,
    MIB,
    Node,
    Reply,
    big_bytes,
    build_node,
    fetch,
    pack_in_process,
    reader_server,
)

from conftest import make_publisher, meshdrop_in_process, run_meshdrop, write_tree
from meshdrop.reader.headers import PUBLISHER_CSP

ANY_OTHER_LANGUAGE = "fr-FR,fr;q=0.9"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Node:
    # Set-up in process; the reader under test runs as a real `meshdrop read` process.
    return build_node(tmp_path_factory.mktemp("reader"), run=meshdrop_in_process)


@pytest.fixture(scope="module")
def base(node: Node) -> Iterator[str]:
    with reader_server(node.home) as url:
        yield url


def csp_directives(reply: Reply) -> dict[str, str]:
    policy = reply.header("Content-Security-Policy")
    assert policy, "no Content-Security-Policy"
    directives = (d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
    return {d[0]: (d[1] if len(d) > 1 else "") for d in directives}


def assert_reader_page(reply: Reply, status: int = 200) -> None:
    assert reply.status == status, reply
    assert reply.header("Content-Type") == "text/html; charset=utf-8"
    csp = csp_directives(reply)
    assert csp["default-src"] == "'self'"
    assert csp["script-src"] == "'none'"  # no script at all, so no inline script either
    assert csp["object-src"] == "'none'" and csp["base-uri"] == "'none'"
    assert csp["frame-ancestors"] == "'none'" and csp["frame-src"] == "'self'"
    assert "unsafe-inline" not in reply.header("Content-Security-Policy")  # type: ignore[operator]
    assert_common_headers(reply)
    html = reply.text
    # Every asset is the node's own: no URL with a host anywhere in the page.
    assert not re.search(r"""(src|href|action)=["']?(https?:)?//""", html), html
    assert "<script" not in html and " style=" not in html


def assert_common_headers(reply: Reply) -> None:
    assert reply.header("Server") is None
    assert reply.header("X-Content-Type-Options") == "nosniff"
    assert reply.header("Referrer-Policy") == "no-referrer"
    assert reply.all("Set-Cookie") == []


def path_of(node: Node, name: str, rest: str = "") -> str:
    return node.bundle_path(name) + rest


# Pages


def test_home_lists_verified_bundles_grouped_with_freshness(node: Node, base: str) -> None:
    reply = fetch(base, "/")
    assert_reader_page(reply)
    html = reply.text
    assert reply.header("Cache-Control") == "no-store"
    for name in ("welcome", "news", "audio-notice", "rights-ko", "tricky"):
        assert f'href="{node.bundle_path(name)}"' in html, name
    assert f'href="{node.bundle_path("honest", node.leaky_fingerprint)}"' in html
    assert "leaked" not in html  # withdrawn
    # Grouped by publisher (name and short fingerprint) and by language.
    assert "Workers&#39; News" in html and "Leaky Press" in html
    assert node.fingerprint[:9] in html and node.leaky_fingerprint[:9] in html
    assert ">Korean</h3>" in html and ">English</h3>" in html and ">Several languages</h3>" in html
    assert html.count("Newest content signed on ") == 2
    assert "✓ verified" in html
    # Newest first: the tricky bundle was signed last.
    order = [html.index(node.bundle_path(n)) for n in ("tricky", "rights-ko", "welcome")]
    assert order == sorted(order)
    # Untrusted text is escaped, never markup.
    assert "Tricky &lt;b&gt;content&lt;/b&gt; &amp; edge cases" in html


def test_interface_language_from_accept_language_and_the_lang_link(base: str) -> None:
    english = fetch(base, "/", Accept_Language=ANY_OTHER_LANGUAGE).text
    assert '<html lang="en">' in english and "Search" in english
    korean = fetch(base, "/", Accept_Language="ko-KR,ko;q=0.9,en;q=0.5")
    assert '<html lang="ko">' in korean.text and "검색" in korean.text
    assert "가장 최근 콘텐츠 서명일" in korean.text
    assert '<html lang="en">' in fetch(base, "/", Accept_Language="en;q=1, ko;q=0.3").text
    assert korean.header("Vary") == "Accept-Language, Cookie"
    # The link sets the one cookie and comes back to the page it was on.
    switch = fetch(base, "/lang/ko?next=/search%3Fq%3Dpassport")
    assert switch.status == 303
    assert switch.header("Location") == "/search?q=passport"
    [cookie] = switch.all("Set-Cookie")
    assert cookie.startswith("lang=ko;")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "expires" not in cookie.lower() and "max-age" not in cookie.lower()  # session only
    chosen = fetch(base, "/", Accept_Language="en", Cookie="lang=ko")
    assert '<html lang="ko">' in chosen.text
    assert '<html lang="en">' in fetch(base, "/", Cookie="lang=xx").text


@pytest.mark.parametrize("target", ["//127.0.0.2/x", "http://127.0.0.2/", "/\\127.0.0.2", "x"])
def test_language_link_never_redirects_off_the_node(base: str, target: str) -> None:
    reply = fetch(base, f"/lang/en?next={quote(target, safe='')}")
    assert reply.status == 303 and reply.header("Location") == "/"


def test_bundle_page_lists_files_with_facts(node: Node, base: str) -> None:
    reply = fetch(base, path_of(node, "news"))
    assert_reader_page(reply)
    html = reply.text
    assert "Workers&#39; News (sample)" in html
    assert node.fingerprint in html  # the full fingerprint, to compare in person
    assert "✓ verified" in html
    for path in ("index.html", "overtime.html", "payslip.ko.html", "clinic.md"):
        assert f'href="{path_of(node, "news", "v/" + path)}"' in html
    assert f'href="{path_of(node, "news", "v/index.html")}">Start reading' in html
    assert fetch(base, path_of(node, "news").rstrip("/")).status == 301


def test_article_is_shown_in_a_sandboxed_frame(node: Node, base: str) -> None:
    reply = fetch(base, path_of(node, "news", "v/overtime.html"))
    assert_reader_page(reply)
    [frame] = re.findall(r"<iframe[^>]*>", reply.text)
    assert re.search(r"\ssandbox[\s>]", frame) and "allow-" not in frame
    assert f'src="{path_of(node, "news", "f/overtime.html")}"' in frame


def test_publisher_html_carries_the_sandbox_policy(node: Node, base: str) -> None:
    reply = fetch(base, path_of(node, "tricky", "f/hostile.html"))
    assert reply.status == 200
    assert reply.header("Content-Security-Policy") == PUBLISHER_CSP
    csp = csp_directives(reply)
    assert csp["sandbox"] == ""  # no allow-scripts, allow-same-origin, allow-forms, ...
    assert csp["default-src"] == "'none'"
    assert csp["img-src"] == csp["media-src"] == "'self'"
    assert csp["style-src"] == "'self' 'unsafe-inline'"
    assert csp["form-action"] == "'none'" and csp["frame-ancestors"] == "'self'"
    assert reply.header("Content-Type") == "text/html; charset=utf-8"
    assert reply.header("X-Frame-Options") == "SAMEORIGIN"
    assert_common_headers(reply)
    assert b"hostile page" in reply.body  # served as the publisher made it


def test_markdown_is_rendered_on_the_node_without_html_or_outside_links(
    node: Node, base: str
) -> None:
    reply = fetch(base, path_of(node, "rights-ko", "v/index.md"))
    assert_reader_page(reply)
    html = reply.text
    assert "<h1>여권은 당신의 것입니다</h1>" in html
    assert "<strong>여권</strong>" in html
    assert "&lt;script&gt;" in html  # shown as text
    assert '<a href="next.md">다음 글</a>' in html  # local links stay live
    assert "http://127.0.0.2/outside" in html and 'href="http://127.0.0.2' not in html
    assert 'href="javascript:' not in html
    assert f'src="{path_of(node, "rights-ko", "f/chart.png")}"' in html


def test_text_image_audio_video_and_other_views(node: Node, base: str) -> None:
    text = fetch(base, path_of(node, "tricky", "v/notes.txt"))
    assert_reader_page(text)
    assert "<pre" in text.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text.text
    image = fetch(base, path_of(node, "news", "v/overtime-chart.png")).text
    assert f'<img class="image" src="{path_of(node, "news", "f/overtime-chart.png")}"' in image
    audio = fetch(base, path_of(node, "audio-notice", "v/notice.ogg")).text
    raw = path_of(node, "audio-notice", "f/notice.ogg")
    assert f'<audio controls preload="metadata" src="{raw}">' in audio
    other = fetch(base, path_of(node, "tricky", "v/report.pdf")).text
    assert "download it to open it" in other
    assert f'href="{path_of(node, "tricky", "f/report.pdf")}?download"' in other


def test_search_finds_korean_and_english_in_titles_descriptions_and_articles(
    node: Node, base: str
) -> None:
    def found(query: str, lang: str = "en") -> list[str]:
        html = fetch(base, f"/search?q={quote(query)}", Accept_Language=lang).text
        return re.findall(r'<li><a href="/b/\w+/([a-z0-9.-]+)/">', html)

    assert found("여권") == ["rights-ko"]  # two syllables: below the trigram length
    assert sorted(found("임금명세서")) == ["news", "rights-ko"]
    assert "rights-ko" in found("초과근무")  # in the description and the article
    assert found("OVERTIME pay") == ["news"]  # case-insensitive, every word must match
    assert found("passport belongs") == ["news"]
    assert "welcome" in found("fingerprint")
    assert found("zebracrossing") == []  # only in the withdrawn bundle
    assert found("never-written-anywhere") == []
    assert found("top.location") == []  # a script in HTML is not article text
    html = fetch(base, f"/search?q={quote('여권')}").text
    assert_reader_page(fetch(base, f"/search?q={quote('여권')}"))
    assert "<mark>여권</mark>" in html
    assert 'value="여권"' in html
    hostile = fetch(base, "/search?q=" + quote('"><script>alert(1)</script>')).text
    assert "<script>alert" not in hostile
    assert fetch(base, "/search").status == 200


def test_share_page_shows_the_address_with_a_qr_code_drawn_on_the_node(base: str) -> None:
    reply = fetch(base, "/share", Host="192.168.7.20:8080")
    assert_reader_page(reply)
    assert "<code>http://192.168.7.20:8080/</code>" in reply.text
    assert re.search(r'<svg [^>]*class="segno"', reply.text)
    local = fetch(base, "/share").text  # loopback is no use to others
    assert "address is not known" in local and "<svg" not in local


def test_static_assets_are_local_and_cacheable(base: str) -> None:
    html = fetch(base, "/").text
    [css] = re.findall(r'<link rel="stylesheet" href="(/static/[^"]+)"', html)
    reply = fetch(base, css)
    assert reply.status == 200 and reply.header("Content-Type") == "text/css; charset=utf-8"
    assert "immutable" in (reply.header("Cache-Control") or "")
    assert "Noto Sans CJK KR" in reply.text and "url(" not in reply.text  # no web fonts
    assert_common_headers(reply)
    assert fetch(base, "/static/reader.css").status == 404


def test_pages_are_compressed_for_browsers_that_ask(base: str) -> None:
    reply = fetch(base, "/", Accept_Encoding="gzip")
    assert reply.header("Content-Encoding") == "gzip"
    assert b"<title>Library</title>" in gzip.decompress(reply.body)


# Publisher files and ranges


def raw(node: Node, name: str, path: str) -> str:
    return path_of(node, name, "f/" + quote(path))


def test_files_have_their_media_type_and_name(node: Node, base: str) -> None:
    png = fetch(base, raw(node, "news", "overtime-chart.png"))
    assert png.header("Content-Type") == "image/png"
    assert png.header("Accept-Ranges") == "bytes"
    assert png.body[:4] == b"\x89PNG"
    assert png.header("Content-Disposition") == (
        "inline; filename=\"overtime-chart.png\"; filename*=UTF-8''overtime-chart.png"
    )
    pdf = fetch(base, raw(node, "tricky", "report.pdf"))
    assert pdf.header("Content-Type") == "application/pdf"
    assert (pdf.header("Content-Disposition") or "").startswith("attachment;")
    korean = fetch(base, raw(node, "rights-ko", "안내문.txt") + "?download")
    assert korean.header("Content-Type") == "text/plain; charset=utf-8"
    assert korean.header("Content-Disposition") == (
        "attachment; filename=\"___.txt\"; filename*=UTF-8''" + quote("안내문.txt", safe="")
    )
    assert korean.body.decode("utf-8").startswith("휴일 근무 수당 안내")
    empty = fetch(base, raw(node, "tricky", "empty.txt"))
    assert empty.status == 200 and empty.body == b"" and empty.header("Content-Length") == "0"


BIG = big_bytes()
RANGES = [
    # (name, Range header, status, (start, end) served or None for all)
    ("first byte", "bytes=0-0", 206, (0, 0)),
    ("first chunk exactly", f"bytes=0-{MIB - 1}", 206, (0, MIB - 1)),
    ("across a chunk boundary", f"bytes={MIB - 10}-{MIB + 9}", 206, (MIB - 10, MIB + 9)),
    ("across three chunks", f"bytes=5-{2 * MIB + 5}", 206, (5, 2 * MIB + 5)),
    ("open-ended", f"bytes={2 * MIB}-", 206, (2 * MIB, BIG_SIZE - 1)),
    ("last byte", f"bytes={BIG_SIZE - 1}-", 206, (BIG_SIZE - 1, BIG_SIZE - 1)),
    ("suffix", "bytes=-100", 206, (BIG_SIZE - 100, BIG_SIZE - 1)),
    ("suffix longer than the file", f"bytes=-{BIG_SIZE * 2}", 206, (0, BIG_SIZE - 1)),
    (
        "end past the end is cut",
        f"bytes={BIG_SIZE - 10}-{BIG_SIZE * 3}",
        206,
        (BIG_SIZE - 10, BIG_SIZE - 1),
    ),
    ("spaces and case", "Bytes= 7-8 ", 206, (7, 8)),
    ("several ranges: whole file", "bytes=0-1,5-6", 200, None),
    ("another unit: whole file", "items=0-1", 200, None),
    ("start past the end", f"bytes={BIG_SIZE}-", 416, None),
    ("far past the end", "bytes=99999999999-99999999999", 416, None),
    ("end before start", "bytes=9-2", 416, None),
    ("empty suffix", "bytes=-0", 416, None),
    ("no numbers", "bytes=-", 416, None),
    ("not numbers", "bytes=a-b", 416, None),
    ("negative", "bytes=--5", 416, None),
    ("huge number", "bytes=0-" + "9" * 30, 416, None),
]


@pytest.mark.parametrize(("case", "header", "status", "span"), RANGES, ids=[r[0] for r in RANGES])
def test_range_requests(
    node: Node, base: str, case: str, header: str, status: int, span: tuple[int, int] | None
) -> None:
    reply = fetch(base, raw(node, "tricky", "big.bin"), Range=header)
    assert reply.status == status, (case, reply.status)
    assert_common_headers(reply)
    assert reply.header("Content-Security-Policy") == PUBLISHER_CSP
    if status == 416:
        assert reply.header("Content-Range") == f"bytes */{BIG_SIZE}"
        assert reply.body == b""
    elif span is None:
        assert reply.header("Content-Range") is None
        assert reply.body == BIG
    else:
        start, end = span
        assert reply.header("Content-Range") == f"bytes {start}-{end}/{BIG_SIZE}"
        assert reply.header("Content-Length") == str(end - start + 1)
        assert reply.body == BIG[start : end + 1]


def test_if_range_serves_the_part_only_for_the_same_bytes(node: Node, base: str) -> None:
    path = raw(node, "tricky", "big.bin")
    etag = fetch(base, path, "HEAD").header("ETag")
    assert etag and etag.startswith('"')
    same = fetch(base, path, Range="bytes=0-9", If_Range=etag)
    assert same.status == 206 and same.body == BIG[:10]
    other = fetch(base, path, Range="bytes=0-9", If_Range='"something-else"')
    assert other.status == 200 and other.body == BIG


def test_head_sends_headers_only(node: Node, base: str) -> None:
    reply = fetch(base, raw(node, "tricky", "big.bin"), "HEAD", Range="bytes=10-19")
    assert reply.status == 206 and reply.body == b""
    assert reply.header("Content-Length") == "10"


def test_media_is_served_whole_and_in_parts(node: Node, base: str) -> None:
    source = Path(__file__).parents[2] / "bundles" / "audio" / "notice.ogg"
    data = source.read_bytes()
    whole = fetch(base, raw(node, "audio-notice", "notice.ogg"))
    assert whole.status == 200 and whole.body == data
    assert whole.header("Content-Type") == "audio/ogg"
    part = fetch(base, raw(node, "audio-notice", "notice.ogg"), Range="bytes=1000-")
    assert part.status == 206 and part.body == data[1000:]


# Not found: one answer for everything that is not shown


def comparable(reply: Reply) -> tuple[int, bytes, list[tuple[str, str]]]:
    return reply.status, reply.body, sorted((k, v) for k, v in reply.headers if k != "Date")


def test_not_found_is_identical_for_never_existed_withdrawn_and_missing(
    node: Node, base: str
) -> None:
    fp = node.fingerprint.replace("-", "")
    leaky = node.leaky_fingerprint.replace("-", "")
    cases = {
        "withdrawn bundle": f"/b/{leaky}/leaked/",
        "never existed": f"/b/{leaky}/never-was/",
        "other publisher's name": f"/b/{fp}/leaked/",
        "unknown publisher": "/b/" + "A" * 32 + "/news/",
        "withdrawn file": f"/b/{leaky}/leaked/f/index.html",
        "withdrawn view": f"/b/{leaky}/leaked/v/index.html",
        "missing file": f"/b/{fp}/news/f/nothing.html",
        "missing view": f"/b/{fp}/news/v/nothing.html",
        "no such page": "/admin",
        "bad page number": "/?page=abc",
        "page past the end": "/?page=99",
    }
    replies = {case: fetch(base, path) for case, path in cases.items()}
    first = comparable(replies["never existed"])
    assert first[0] == 404
    for case, reply in replies.items():
        assert comparable(reply) == first, case
        assert_reader_page(reply, 404)
    assert fetch(base, f"/b/{leaky}/honest/").status == 200  # its publisher is still shown


def test_bundle_that_expires_while_served_turns_into_the_same_404(tmp_path: Path) -> None:
    publisher = make_publisher(tmp_path / "publisher")
    home = tmp_path / "node"  # set up in process; the reader under test is a real process
    meshdrop_in_process("--home", home, "trust", "add", "--yes", publisher.pub, check=True)
    now = int(time.time())
    for name, expires in (("brief", now + 4), ("lasting", None)):
        src = write_tree(tmp_path / name, {"index.html": b"<p>soon gone</p>"})
        out = tmp_path / f"{name}.mdrop"
        pack_in_process(publisher, src, out, name, title=name, created=now - 1, expires=expires)
        meshdrop_in_process("--home", home, "import", out, check=True)
    trusted = meshdrop_in_process("--home", home, "trust", "ls", check=True)
    [fp] = {line.split()[0] for line in trusted.out.splitlines()}
    fp = fp.replace("-", "")
    with reader_server(home) as base:
        assert fetch(base, f"/b/{fp}/brief/").status == 200
        assert "/brief/" in fetch(base, "/").text
        time.sleep(max(now + 5 - time.time(), 0) + 0.5)
        expired = fetch(base, f"/b/{fp}/brief/")
        never = fetch(base, f"/b/{fp}/never/")
        assert expired.status == 404
        assert comparable(expired) == comparable(never)
        assert fetch(base, f"/b/{fp}/brief/f/index.html").status == 404
        assert "/brief/" not in fetch(base, "/").text
        assert "/lasting/" in fetch(base, "/").text


# Headers on everything


def test_no_server_header_and_no_cookie_on_any_answer(node: Node, base: str) -> None:
    paths = [
        "/",
        "/search?q=x",
        "/share",
        "/nothing",
        path_of(node, "news"),
        path_of(node, "news").rstrip("/"),
        path_of(node, "news", "v/index.html"),
        raw(node, "news", "index.html"),
    ]
    for path in paths:
        for method in ("GET", "HEAD"):
            reply = fetch(base, path, method)
            assert reply.header("Server") is None, path
            assert reply.all("Set-Cookie") == [], path
            assert reply.header("X-Content-Type-Options") == "nosniff", path
    ranged = fetch(base, raw(node, "tricky", "big.bin"), Range="bytes=0-1")
    unsatisfiable = fetch(base, raw(node, "tricky", "big.bin"), Range=f"bytes={BIG_SIZE}-")
    post = fetch(base, "/", "POST")
    for reply in (ranged, unsatisfiable, post):
        assert reply.header("Server") is None
        assert reply.all("Set-Cookie") == []


# A home page with many bundles


def test_home_page_stays_small_with_200_bundles(tmp_path: Path) -> None:
    publisher = make_publisher(tmp_path / "publisher", "노동자 소식 Workers' News")
    home = tmp_path / "node"
    meshdrop_in_process("--home", home, "trust", "add", "--yes", publisher.pub, check=True)
    out = tmp_path / "bundles"
    out.mkdir()
    now = int(time.time())
    for i in range(200):
        src = write_tree(tmp_path / "src" / str(i), {"index.html": f"<p>{i}</p>".encode()})
        korean = i % 2 == 0
        pack_in_process(
            publisher,
            src,
            out / f"b{i:03}.mdrop",
            f"issue-{i:03}",
            title=(
                f"노동자 소식 {i}호: 임금명세서와 초과근무 수당 확인하는 법"
                if korean
                else f"Workers' News, issue {i}: overtime pay and your passport"
            ),
            description=(
                "기본급, 수당, 공제 항목을 하나씩 확인하는 방법과 여권을 돌려받는 방법. " * 4
                if korean
                else "How to check the overtime on your payslip, and why nobody may keep "
                "your passport or ID card for you, even for safekeeping. " * 3
            ),
            language="ko" if korean else "en",
            created=now - 400 + i,
        )
    meshdrop_in_process("--home", home, "import", out, "--quiet", check=True)
    with reader_server(home) as base:
        seen: list[str] = []
        page = 1
        while True:
            reply = fetch(base, f"/?page={page}")
            assert_reader_page(reply)
            assert len(reply.body) < 50_000, f"page {page} is {len(reply.body)} bytes"
            seen += re.findall(r'href="/b/\w+/(issue-\d+)/"', reply.text)
            if "?page=" + str(page + 1) not in reply.text:
                break
            page += 1
        assert len(seen) == 200 == len(set(seen))
        assert seen[0] == "issue-199"  # newest first
        assert len(fetch(base, "/", Accept_Encoding="gzip").body) < 12_000  # on the wire


def test_read_reports_a_port_in_use_in_one_line(node: Node, base: str) -> None:
    port = base.rstrip("/").rsplit(":", 1)[1]
    result = run_meshdrop("--home", node.home, "read", "--port", port)
    assert result.code == 9  # network (README exit codes)
    assert result.err.count("\n") == 1
    assert "cannot listen on 127.0.0.1" in result.err and "another --port" in result.err


@pytest.mark.parametrize(
    "request_bytes",
    [b"BLAH\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"],
)
def test_malformed_requests_name_no_software(base: str, request_bytes: bytes) -> None:
    port = int(base.rstrip("/").rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request_bytes)
        answer = conn.recv(4096).decode("latin-1")
    assert answer.startswith("HTTP/1.") and " 400 " in answer.split("\r\n")[0]
    assert "aiohttp" not in answer.lower() and "python" not in answer.lower()


def test_read_refuses_a_damaged_store_in_one_line(tmp_path: Path) -> None:
    home = tmp_path / "node"
    home.mkdir()
    (home / "index.sqlite").write_bytes(b"this is not a database" * 100)
    result = run_meshdrop("--home", home, "read", "--port", "0")
    assert result.code == 7, result
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert result.err.startswith("meshdrop: cannot open the store index")
