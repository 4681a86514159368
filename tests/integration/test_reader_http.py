"""The reader over real HTTP: `meshdrop read` on 127.0.0.1 (port 0) in front of a store
filled through the installed command, every page and every header checked."""

from __future__ import annotations

import gzip
import html
import re
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from readerkit import (
    BIG_SIZE,
    ID,
    MIB,
    Node,
    Reply,
    big_bytes,
    build_node,
    fetch,
    links,
    pack_in_process,
    reader_server,
    results,
    search,
    search_until_indexed,
)

from conftest import make_publisher, meshdrop_in_process, run_meshdrop, sealed_pass, write_tree

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
    assert csp["frame-ancestors"] == "'none'" and csp["frame-src"] == "'none'"
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


def bundle_csp(base: str, url: str) -> str:
    """The CSP a publisher file of the bundle at ``url`` must carry (headers.py)."""
    files = base.rstrip("/") + "/".join(url.split("/")[:3]) + "/f/"
    return (
        f"sandbox; default-src 'none'; img-src {files}; media-src {files}; "
        f"style-src {files} 'unsafe-inline'; font-src {files}; form-action 'none'; "
        "base-uri 'none'; frame-ancestors 'none'"
    )


# Pages


def test_home_lists_verified_bundles_grouped_with_freshness(node: Node, base: str) -> None:
    reply = fetch(base, "/")
    assert_reader_page(reply)
    html = reply.text
    assert reply.header("Cache-Control") == "no-store"
    for name in ("welcome", "news", "audio-notice", "rights-ko", "tricky", "honest"):
        assert f'href="{node.url(base, name)}"' in html, name
    assert "leaked" not in html  # withdrawn
    # Grouped by publisher (name and short fingerprint) and by language.
    assert "Workers&#39; News" in html and "Leaky Press" in html
    assert node.fingerprint[:9] in html and node.leaky_fingerprint[:9] in html
    assert ">Korean</h3>" in html and ">English</h3>" in html and ">Several languages</h3>" in html
    assert html.count("Newest content signed on ") == 2
    assert "✓ verified" in html
    # Newest first: the tricky bundle was signed last.
    order = [html.index(node.url(base, n)) for n in ("tricky", "welcome")]
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
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "expires" not in cookie.lower() and "max-age" not in cookie.lower()  # session only
    chosen = fetch(base, "/", Accept_Language="en", Cookie="lang=ko")
    assert '<html lang="ko">' in chosen.text
    assert '<html lang="en">' in fetch(base, "/", Cookie="lang=xx").text


@pytest.mark.parametrize("target", ["//127.0.0.2/x", "http://127.0.0.2/", "/\\127.0.0.2", "x"])
def test_language_link_never_redirects_off_the_node(base: str, target: str) -> None:
    reply = fetch(base, f"/lang/en?next={quote(target, safe='')}")
    assert reply.status == 303 and reply.header("Location") == "/"


def test_bundle_page_lists_files_with_facts(node: Node, base: str) -> None:
    reply = fetch(base, node.url(base, "news"))
    assert_reader_page(reply)
    html = reply.text
    assert "Workers&#39; News (sample)" in html
    assert node.fingerprint in html  # the full fingerprint, to compare in person
    assert "✓ verified" in html
    for path in ("index.html", "overtime.html", "payslip.ko.html", "clinic.md"):
        assert f'href="{node.url(base, "news", "v/" + path)}"' in html
    assert f'href="{node.url(base, "news", "v/index.html")}">Start reading' in html
    assert fetch(base, node.url(base, "news").rstrip("/")).status == 301


def test_article_view_is_the_publisher_page_with_the_bundle_csp_and_no_frame(
    node: Node, base: str
) -> None:
    bundle = node.url(base, "news")
    reply = fetch(base, node.url(base, "news", "v/overtime.html"))
    assert reply.status == 200
    assert reply.header("Content-Type") == "text/html; charset=utf-8"
    assert reply.header("Content-Security-Policy") == bundle_csp(base, bundle)
    assert reply.header("X-Frame-Options") == "DENY"
    assert_common_headers(reply)
    page = reply.text
    assert "<iframe" not in page and "<script" not in page
    assert "height:78" not in page
    # The reader's bar on top: back to the bundle, its title, its publisher, verified;
    # styled inline (the sandbox CSP loads no reader CSS); the download apart at the end.
    bar = page[: page.index("</nav>")]
    assert f'href="{bundle}"' in bar and "Workers&#39; News (sample)" in bar
    assert "✓ verified" in bar and "download" not in bar
    assert page.index(node.url(base, "news", "f/overtime.html?download")) > page.index("</nav>")
    assert page.count("<title>") == 1 and "<title>overtime" not in page.lower()
    # Links between articles lead to their opaque article views.
    download = node.url(base, "news", "f/overtime.html?download")
    articles = re.compile(f"{bundle}v/{ID}(#.*)?")
    for href, _text in links(page):
        assert href in (bundle, download) or articles.fullmatch(href), href


def test_publisher_html_at_its_raw_address_carries_the_bundle_sandbox(
    node: Node, base: str
) -> None:
    reply = fetch(base, node.url(base, "tricky", "f/hostile.html"))
    assert reply.status == 200
    assert reply.header("Content-Security-Policy") == bundle_csp(base, node.url(base, "tricky"))
    csp = csp_directives(reply)
    assert csp["sandbox"] == ""  # no allow-scripts, allow-same-origin, allow-forms, ...
    assert reply.header("Content-Type") == "text/html; charset=utf-8"
    assert reply.header("X-Frame-Options") == "DENY"
    assert_common_headers(reply)
    assert b"hostile page" in reply.body  # served as the publisher made it
    assert b"<nav" not in reply.body  # no reader bar on the raw file


def test_csp_falls_back_to_self_for_a_host_header_that_is_not_a_host(node: Node, base: str) -> None:
    reply = fetch(base, node.url(base, "tricky", "f/hostile.html"), Host="evil;script-src *")
    assert reply.status == 200
    csp = csp_directives(reply)
    assert csp["img-src"] == "'self'" and "script-src" not in csp and "evil" not in str(csp)


def test_markdown_is_rendered_on_the_node_without_html_or_outside_links(
    node: Node, base: str
) -> None:
    reply = fetch(base, node.url(base, "rights-ko", "v/index.md"))
    assert_reader_page(reply)
    html = reply.text
    assert "<h1>여권은 당신의 것입니다</h1>" in html
    assert "<strong>여권</strong>" in html
    assert "&lt;script&gt;" in html  # shown as text
    assert f'<a href="{node.url(base, "rights-ko", "v/next.md")}">다음 글</a>' in html
    assert "http://127.0.0.2/outside" in html and 'href="http://127.0.0.2' not in html
    assert 'href="javascript:' not in html
    assert f'src="{node.url(base, "rights-ko", "f/chart.png")}"' in html


def test_text_image_audio_video_and_other_views(node: Node, base: str) -> None:
    text = fetch(base, node.url(base, "tricky", "v/notes.txt"))
    assert_reader_page(text)
    assert "<pre" in text.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text.text
    image = fetch(base, node.url(base, "news", "v/overtime-chart.png")).text
    assert f'<img class="image" src="{node.url(base, "news", "f/overtime-chart.png")}"' in image
    audio = fetch(base, node.url(base, "audio-notice", "v/notice.ogg")).text
    raw = node.url(base, "audio-notice", "f/notice.ogg")
    assert f'<audio controls preload="metadata" src="{raw}">' in audio
    other = fetch(base, node.url(base, "tricky", "v/report.pdf")).text
    assert "download it to open it" in other
    assert f'href="{node.url(base, "tricky", "f/report.pdf")}?download"' in other


def test_search_is_a_post_and_finds_articles(node: Node, base: str) -> None:
    def found(query: str, lang: str = "en") -> list[str]:
        return results(search(base, query, Accept_Language=lang))

    reply = search_until_indexed(base, "여권")
    assert_reader_page(reply)
    assert node.url(base, "rights-ko", "v/index.md") in results(reply)
    assert "<mark>여권</mark>" in reply.text and 'value="여권"' in reply.text
    # The index commits a bundle at a time: wait for the news bundle's too.
    overtime = results(search_until_indexed(base, "OVERTIME pay"))
    assert node.url(base, "news", "v/overtime.html") in overtime
    assert found("zebracrossing") == []  # only in the withdrawn bundle
    assert found("top.location") == []  # a script in HTML is not article text
    hostile = search(base, '"><script>alert(1)</script>').text
    assert "<script>alert" not in hostile
    # The terms stay out of URLs (history, logs): the form posts; GET shows the empty
    # search page, whatever its query string says.
    home = fetch(base, "/").text
    assert re.search(r'<form [^>]*action="/search" method="post"', home)
    empty = fetch(base, f"/search?q={quote('여권')}")
    assert_reader_page(empty)
    assert results(empty) == [] and "여권" not in empty.text
    assert "여권" not in (reply.header("Location") or "") and reply.status == 200


def test_share_page_shows_the_address_with_a_qr_code_drawn_on_the_node(base: str) -> None:
    reply = fetch(base, "/share", Host="192.168.7.20:8080")
    assert_reader_page(reply)
    assert "<code>http://192.168.7.20:8080/</code>" in reply.text
    assert re.search(r'<svg [^>]*class="segno"', reply.text)
    local = fetch(base, "/share").text  # loopback is no use to others
    assert "address is not known" in local and "<svg" not in local


def test_static_assets_are_local_and_never_kept_by_the_browser(base: str) -> None:
    html = fetch(base, "/").text
    [css] = re.findall(r'<link rel="stylesheet" href="(/static/[^"]+)"', html)
    reply = fetch(base, css)
    assert reply.status == 200 and reply.header("Content-Type") == "text/css; charset=utf-8"
    assert reply.header("Cache-Control") == "no-store"  # no cache entry left on the phone
    assert "Noto Sans CJK KR" in reply.text and "url(" not in reply.text  # no web fonts
    assert_common_headers(reply)
    assert fetch(base, "/static/reader.css").status == 404


def test_pages_are_compressed_for_browsers_that_ask(base: str) -> None:
    reply = fetch(base, "/", Accept_Encoding="gzip")
    assert reply.header("Content-Encoding") == "gzip"
    assert b"<title>Library</title>" in gzip.decompress(reply.body)


# Publisher files and ranges


def raw(base: str, node: Node, name: str, path: str) -> str:
    return node.url(base, name, "f/" + path)


def test_files_have_their_media_type_and_name(node: Node, base: str) -> None:
    png = fetch(base, raw(base, node, "news", "overtime-chart.png"))
    assert png.header("Content-Type") == "image/png"
    assert png.header("Accept-Ranges") == "bytes"
    assert png.body[:4] == b"\x89PNG"
    assert png.header("Content-Disposition") == (
        "inline; filename=\"overtime-chart.png\"; filename*=UTF-8''overtime-chart.png"
    )
    pdf = fetch(base, raw(base, node, "tricky", "report.pdf"))
    assert pdf.header("Content-Type") == "application/pdf"
    assert (pdf.header("Content-Disposition") or "").startswith("attachment;")
    korean = fetch(base, raw(base, node, "rights-ko", "안내문.txt") + "?download")
    assert korean.header("Content-Type") == "text/plain; charset=utf-8"
    assert korean.header("Content-Disposition") == (
        "attachment; filename=\"___.txt\"; filename*=UTF-8''" + quote("안내문.txt", safe="")
    )
    assert korean.body.decode("utf-8").startswith("휴일 근무 수당 안내")
    empty = fetch(base, raw(base, node, "tricky", "empty.txt"))
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
    reply = fetch(base, raw(base, node, "tricky", "big.bin"), Range=header)
    assert reply.status == status, (case, reply.status)
    assert_common_headers(reply)
    assert reply.header("Content-Security-Policy") == bundle_csp(base, node.url(base, "tricky"))
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
    path = raw(base, node, "tricky", "big.bin")
    etag = fetch(base, path, "HEAD").header("ETag")
    assert etag and etag.startswith('"')
    same = fetch(base, path, Range="bytes=0-9", If_Range=etag)
    assert same.status == 206 and same.body == BIG[:10]
    other = fetch(base, path, Range="bytes=0-9", If_Range='"something-else"')
    assert other.status == 200 and other.body == BIG


def test_head_sends_headers_only(node: Node, base: str) -> None:
    reply = fetch(base, raw(base, node, "tricky", "big.bin"), "HEAD", Range="bytes=10-19")
    assert reply.status == 206 and reply.body == b""
    assert reply.header("Content-Length") == "10"


def test_media_is_served_whole_and_in_parts(node: Node, base: str) -> None:
    source = Path(__file__).parents[2] / "bundles" / "audio" / "notice.ogg"
    data = source.read_bytes()
    whole = fetch(base, raw(base, node, "audio-notice", "notice.ogg"))
    assert whole.status == 200 and whole.body == data
    assert whole.header("Content-Type") == "audio/ogg"
    part = fetch(base, raw(base, node, "audio-notice", "notice.ogg"), Range="bytes=1000-")
    assert part.status == 206 and part.body == data[1000:]


# Not found: one answer for everything that is not shown


def comparable(reply: Reply) -> tuple[int, bytes, list[tuple[str, str]]]:
    return reply.status, reply.body, sorted((k, v) for k, v in reply.headers if k != "Date")


def test_not_found_is_identical_for_never_existed_withdrawn_and_missing(
    node: Node, base: str
) -> None:
    leaky = node.leaky_fingerprint
    news = node.url(base, "news")
    withdrawn_file = node.made_up_url("leaked", leaky, "index.html")
    cases = {
        "withdrawn bundle": node.made_up_url("leaked", leaky),
        "never existed": node.made_up_url("never-was", leaky),
        "other publisher's name": node.made_up_url("leaked"),
        "made-up id": "/b/" + "a" * 16 + "/",
        "withdrawn file": withdrawn_file,
        "withdrawn view": withdrawn_file.replace("/f/", "/v/"),
        "missing file": news + "f/" + "a" * 16,
        "missing view": news + "v/" + "a" * 16,
        "another bundle's file id": news + "f/" + node.url(base, "tricky", "f/chart.png")[-16:],
        "id in capitals": "/b/" + news.split("/")[2].upper() + "/",
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
    assert fetch(base, node.url(base, "honest")).status == 200  # its publisher is still shown


def test_old_url_forms_that_name_the_bundle_answer_the_one_404(node: Node, base: str) -> None:
    fp = node.fingerprint.replace("-", "")
    never = comparable(fetch(base, "/b/" + "a" * 16 + "/"))
    for old in (
        f"/b/{fp}/news/",
        f"/b/{fp}/news",
        f"/b/{fp}/news/v/index.html",
        f"/b/{fp}/news/f/overtime-chart.png",
        f"/b/{fp}/news/f/overtime-chart.png?download",
    ):
        reply = fetch(base, old)
        assert comparable(reply) == never, old
        assert_reader_page(reply, 404)


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
    with reader_server(home) as base:
        shown = {text: href for href, text in links(fetch(base, "/").text)}
        brief, lasting = shown["brief"], shown["lasting"]
        file = next(h for h, _t in links(fetch(base, brief).text) if "?download" in h)
        assert fetch(base, brief).status == 200 and fetch(base, file).status == 200
        time.sleep(max(now + 5 - time.time(), 0) + 0.5)
        expired = fetch(base, brief)
        never = fetch(base, "/b/" + "a" * 16 + "/")
        assert expired.status == 404
        assert comparable(expired) == comparable(never)
        assert fetch(base, file).status == 404
        assert brief not in fetch(base, "/").text
        assert lasting in fetch(base, "/").text


# Headers on everything


def test_no_server_header_and_no_cookie_on_any_answer(node: Node, base: str) -> None:
    paths = [
        "/",
        "/search?q=x",
        "/share",
        "/nothing",
        node.url(base, "news"),
        node.url(base, "news").rstrip("/"),
        node.url(base, "news", "v/index.html"),
        raw(base, node, "news", "index.html"),
    ]
    for path in paths:
        for method in ("GET", "HEAD"):
            reply = fetch(base, path, method)
            assert reply.header("Server") is None, path
            assert reply.all("Set-Cookie") == [], path
            assert reply.header("X-Content-Type-Options") == "nosniff", path
    ranged = fetch(base, raw(base, node, "tricky", "big.bin"), Range="bytes=0-1")
    unsatisfiable = fetch(base, raw(base, node, "tricky", "big.bin"), Range=f"bytes={BIG_SIZE}-")
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
            seen += [t for h, t in links(reply.text) if re.fullmatch(f"/b/{ID}/", h)]
            if "?page=" + str(page + 1) not in reply.text:
                break
            page += 1
        assert len(seen) == 200 == len(set(seen))
        assert seen[0].startswith("Workers' News, issue 199:")  # newest first
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


# URLs that name nothing (opaque per-node ids)

ALLOWED_URL = re.compile(
    rf"""/(\?page=\d+)?|/search|/share|/static/[\w.-]+|/(lang|text)/\w+\?next=(?P<next>\S*)
    |/b/{ID}/(\?page=\d+)?|/b/{ID}/v/{ID}(\#\S*)?|/b/{ID}/f/{ID}(\?download)?|\#\S*""",
    re.VERBOSE,
)


def urls_in(page: str) -> list[str]:
    return [
        html.unescape(u)
        for u in re.findall(r"""\s(?:href|src|action|poster)=["']([^"']*)["']""", page)
    ]


def test_no_url_on_any_page_names_a_bundle_file_publisher_or_fingerprint(
    node: Node, base: str
) -> None:
    pages = ["/", "/share", "/search", "/nothing-here"]
    for name in ("welcome", "news", "audio-notice", "rights-ko", "tricky", "honest"):
        bundle = node.url(base, name)
        pages.append(bundle)
        pages += [h for h, _t in links(fetch(base, bundle).text) if "/v/" in h]
    seen: set[str] = set()
    for page in pages:
        reply = fetch(base, page)
        assert reply.status in (200, 404), page
        for url in urls_in(reply.text):
            seen.add(url)
            match = ALLOWED_URL.fullmatch(url)
            assert match, f"{url!r} on {page}"
            if match.group("next"):
                assert ALLOWED_URL.fullmatch(unquote(match.group("next"))), url
    for reply in (search(base, "여권"), search(base, "overtime")):
        for url in urls_in(reply.text):
            assert ALLOWED_URL.fullmatch(url), url
    names = [*node.names, node.fingerprint, node.fingerprint.replace("-", "")]
    names += [node.leaky_fingerprint, node.leaky_fingerprint.replace("-", "")]
    names += ["index.html", "overtime", "payslip", "chart.png", "hostile", "notice.ogg"]
    for url in seen:
        for name in names:
            assert name.lower() not in url.lower().split("#")[0], (name, url)
    assert len([u for u in seen if "/v/" in u]) >= 10  # the crawl did reach the articles


def test_reader_key_is_private_and_stable_across_restarts(node: Node, base: str) -> None:
    key = node.home / "reader.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    data = key.read_bytes()
    assert len(data) == (32 + 28 if sealed_pass() else 32)  # sealed: nonce, key, tag
    with reader_server(node.home) as again:
        assert fetch(again, "/").text.count(node.url(base, "news")) == 1
        assert fetch(again, node.url(base, "news", "v/index.html")).status == 200
    assert key.read_bytes() == data


def two_nodes_with_one_bundle(tmp_path: Path) -> list[Path]:
    publisher = make_publisher(tmp_path / "publisher")
    src = write_tree(tmp_path / "src", {"index.html": b"<p>same bundle</p>"})
    out = pack_in_process(publisher, src, tmp_path / "same.mdrop", "same", title="Same")
    homes = [tmp_path / "one", tmp_path / "two"]
    for home in homes:
        meshdrop_in_process("--home", home, "trust", "add", "--yes", publisher.pub, check=True)
        meshdrop_in_process("--home", home, "import", out, check=True)
    return homes


def test_ids_differ_from_node_to_node(tmp_path: Path) -> None:
    urls = []
    for home in two_nodes_with_one_bundle(tmp_path):
        with reader_server(home) as base:
            [bundle] = [h for h, t in links(fetch(base, "/").text) if t == "Same"]
            [file] = [h for h, _t in links(fetch(base, bundle).text) if "?download" in h]
            urls.append((bundle, file))
    assert urls[0][0] != urls[1][0] and urls[0][1] != urls[1][1]
    for bundle, file in urls:
        assert re.fullmatch(f"/b/{ID}/", bundle)
        assert re.fullmatch(f"/b/{ID}/f/{ID}\\?download", file)


def test_a_damaged_reader_key_is_refused_in_one_line_and_kept(tmp_path: Path) -> None:
    [home, _other] = two_nodes_with_one_bundle(tmp_path)
    key = home / "reader.key"
    key.write_bytes(b"too short")
    result = run_meshdrop("--home", home, "read", "--port", "0")
    assert result.code == 7, result  # store (README exit codes)
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert "reader.key" in result.err
    assert ("damaged" if sealed_pass() else "not a reader key") in result.err
    assert key.read_bytes() == b"too short"  # nothing replaced behind the owner's back
