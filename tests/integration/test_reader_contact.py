"""Zero contact beyond the node (issue 17), in headless Chromium as a phone.

Every host name Chromium looks up is mapped to a counting listener on 127.0.0.3, and
Chromium writes a NetLog: a hostile corpus of publisher HTML (every resource hint,
outside links tapped in the framed view and at the raw address, SVG, CSS, meta refresh,
``<base>``, forms, frames, ``data:``, a look-alike ``index.html``, links into another
publisher's bundle) must cause 0 host look-ups, 0 connections and 0 requests beyond the
node, and load no other publisher's file. The unit tests below pin the rewriting itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from readerkit import PNG_1X1, DevTools, Node, build_node, fetch, pack_in_process, reader_server
from test_reader_browser import _tap, chromium, chromium_path, navigate, open_page

from conftest import Publisher, run_meshdrop, write_tree
from meshdrop.reader import headers, readerids
from meshdrop.reader.links import BundleLinks
from meshdrop.reader.sanitize import rewrite_html

OUT = "http://outside.example"
SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
    'width="40" height="40"><a xlink:href="http://svg-link.example/"><rect width="40" '
    'height="40" fill="teal"/></a><image href="http://svg-image.example/i.png"/></svg>'
)
# The first links stack at the top, 40 px each, so a tap can find them framed or raw.
LINKS = [
    f'<a href="{OUT}/plain">plain</a>',
    f'<a href="{OUT}/top" target="_top">top</a>',
    f'<a href="{OUT}/file.bin" download>download</a>',
    f'<a href="{OUT}/ping" ping="{OUT}/pinged">ping</a>',
    '<a href="//protocol-relative.example/x">protocol-relative</a>',
    '<a href="data:text/html,<p>data</p>">data</a>',
    '<a href="{other}">another publisher</a>',
    '<a href="https://outside.example/https">https</a>',
]
CORPUS = """<!doctype html><html><head>
<meta http-equiv="refresh" content="1;url=http://refresh.example/">
<meta http-equiv="x-dns-prefetch-control" content="on">
<base href="http://base.example/">
<link rel="dns-prefetch" href="//dns-prefetch.example">
<link rel="preconnect" href="https://preconnect.example">
<link rel="prefetch" href="http://prefetch.example/next.html">
<link rel="preload" as="style" href="http://preload.example/s.css">
<link rel="preload" as="font" href="http://preload-font.example/f.woff2" crossorigin>
<link rel="modulepreload" href="http://modulepreload.example/m.js">
<link rel="prerender" href="http://prerender.example/">
<link rel="icon" href="http://icon.example/favicon.ico">
<link rel="manifest" href="http://manifest.example/app.webmanifest">
<link rel="stylesheet" href="http://stylesheet.example/s.css">
<link rel="stylesheet" href="{other_css}">
<link rel="stylesheet" href="own.css">
<style>
@import url("http://import.example/i.css");
@font-face {{ font-family: x; src: url("http://font.example/f.woff2"); }}
body {{ margin: 0; font-family: x, sans-serif; background: url("http://bg.example/b.png"); }}
a {{ display: block; height: 40px; }}
p {{ background: url({other_img}); border-image: u\\72l({other_img}); }}
</style>
</head><body>
{links}
<img src="http://img.example/i.png"><img src="chart.png" srcset="http://srcset.example/2x.png 2x">
<img src="{other_img}"><img src="pic.svg" alt="own svg">
<picture><source srcset="http://picture.example/p.webp"><img src="chart.png"></picture>
<video poster="http://poster.example/p.png" src="http://video.example/v.mp4"></video>
<audio src="http://audio.example/a.ogg" autoplay></audio>
<object data="http://object.example/o"></object><embed src="http://embed.example/e">
<iframe src="http://iframe.example/"></iframe><iframe src="data:text/html,<img src=http://x.example>">
</iframe>
<form action="http://form.example/" method="post"><input name="a"><button>go</button></form>
{svg}
<script>fetch("http://script.example/")</script>
<p style="background-image: url(http://inline-style.example/b.png)">an article</p>
</body></html>
"""
LOOK_ALIKE = """<!doctype html><title>Library</title>
<header><strong>Library</strong> <span class="ok">✓ verified</span></header>
<a href="http://lookalike.example/login" style="display:block;height:40px">Sign in again</a>
<link rel="preconnect" href="https://lookalike-hint.example">
"""


@dataclass
class Listener:
    """Where every host name leads: counts connections and requests."""

    connections: int = 0
    requests: list[str] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(Exception):
            line = await asyncio.wait_for(reader.readline(), 5)
            if line:
                self.requests.append(line.decode("latin-1").strip())
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def listener() -> AsyncIterator[tuple[int, Listener]]:
    counts = Listener()
    server = await asyncio.start_server(counts.serve, "127.0.0.3", 0)
    try:
        yield server.sockets[0].getsockname()[1], counts
    finally:
        server.close()
        await server.wait_closed()


def counted_chromium(listener_port: int, net_log: Path) -> contextlib.AbstractContextManager[int]:
    """Headless Chromium as test_reader_browser starts it, but with every host name
    mapped to the listener and a NetLog of every host look-up and connection."""
    return chromium(
        # Chromium's own services (network time, component updates, account checks)
        # call Google hosts whatever the flags say: those fail, uncounted; the corpus
        # names none of them.
        "MAP *.google.com ~NOTFOUND, MAP *.googleapis.com ~NOTFOUND,"
        f" MAP * 127.0.0.3:{listener_port}, EXCLUDE 127.0.0.1",
        [
            # Chromium's own background traffic, which would be counted too.
            "--disable-extensions",
            "--disable-default-apps",
            "--disable-domain-reliability",
            "--disable-client-side-phishing-detection",
            "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
            "--safebrowsing-disable-auto-update",
            "--metrics-recording-only",
            "--no-pings",
            f"--log-net-log={net_log}",
        ],
    )


def read_net_log(net_log: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Chromium's net log (its constants, its events), whole or as far as it was written:
    Chromium writes the constants on the first line and one event per line, and closes
    the list (`]`, then `"polledData"` and `}`) only if it has the time when it stops, so
    the end may be missing or cut anywhere. A cut last event is left out."""
    lines = net_log.read_text().splitlines()
    constants = json.loads(lines[0].rstrip(",") + "}")["constants"]
    events = []
    for line in lines[2:]:
        line = line.rstrip(",").removesuffix("]")
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # the cut last line, or the closing lines
        if isinstance(event, dict) and "type" in event:
            events.append(event)
    return constants, events


def look_ups_beyond_the_node(net_log: Path) -> list[str]:
    """Hosts Chromium asked its resolver for, other than the node's 127.0.0.1 (a mapped
    name shows as 127.0.0.3: on a real network each would have been a DNS query)."""
    constants, events = read_net_log(net_log)
    request = constants["logEventTypes"]["HOST_RESOLVER_MANAGER_REQUEST"]
    hosts = [
        e["params"]["host"]
        for e in events
        if e["type"] == request and "host" in e.get("params", {})
    ]
    return [h for h in hosts if "://127.0.0.1:" not in h and "://~notfound" not in h]


def build_corpus_node(folder: Path) -> Node:
    """The corpus also points at another publisher's file by its real address on this
    node (as if its publisher had learned it: the node's reader key is made first)."""
    node = build_node(folder)
    readerids.reader_key(node.home)
    other = node.made_up_url("honest", node.leaky_fingerprint, "index.html")
    links = "\n".join(LINKS).format(other=other.replace("/f/", "/v/"))
    corpus = CORPUS.format(links=links, svg=SVG, other_css=other, other_img=other)
    src = write_tree(
        folder / "src-corpus",
        {
            "corpus.html": corpus.encode(),
            "index.html": LOOK_ALIKE.encode(),
            "own.css": b"p { color: #333 }",
            "chart.png": PNG_1X1,
            "pic.svg": SVG.encode(),
        },
    )
    bundle = pack_in_process(
        Publisher(folder / "publisher"), src, folder / "corpus.mdrop", "corpus", title="Corpus"
    )
    run_meshdrop("--home", node.home, "import", bundle, check=True)
    node.titles["corpus"] = "Corpus"
    return node


def test_hostile_corpus_contacts_nothing_beyond_the_node(tmp_path: Path) -> None:
    chromium_path()
    asyncio.run(_corpus_scenario(tmp_path))


async def _corpus_scenario(tmp_path: Path) -> None:
    node = await asyncio.to_thread(build_corpus_node, tmp_path / "world")
    net_log = tmp_path / "netlog.json"
    async with listener() as (port, counts):
        with reader_server(node.home) as base:
            with counted_chromium(port, net_log) as devtools:
                session, cdp = await open_page(devtools)
                try:
                    await _read_the_corpus(cdp, base.rstrip("/"), node)
                finally:
                    await cdp.close()
                    await session.close()
            _assert_raw_answers_are_contained(base, node)
            own = [base.rstrip("/") + node.url(base, "corpus", "f/" + n) for n in OWN_FILES]
    look_ups = look_ups_beyond_the_node(net_log)
    assert (look_ups, counts.connections, counts.requests) == ([], 0, []), (
        f"contact beyond the node: look-ups {look_ups}, {counts.connections} connections, "
        f"requests {counts.requests}"
    )
    # No other bundle's file loads: the sanitizer drops its address from the markup and
    # from url(); what it cannot see (an escaped u\72l() is refused by the per-bundle CSP
    # before any request leaves the browser (Chromium reports the attempt, then its block).
    other = node.made_up_url("honest", node.leaky_fingerprint)
    loaded = [r["request"]["url"] for r in cdp.of("Network.requestWillBeSent")]
    tried = {
        r["requestId"] for r in cdp.of("Network.requestWillBeSent") if other in r["request"]["url"]
    }
    blocked = {
        f["requestId"] for f in cdp.of("Network.loadingFailed") if f.get("blockedReason") == "csp"
    }
    answered = {r["requestId"] for r in cdp.of("Network.responseReceived")}
    assert tried, "the corpus's escaped CSS reference was not tried: the test tests nothing"
    assert tried <= blocked and not tried & answered, "another publisher's file was loaded"
    assert [u for u in own if u not in loaded] == [], "own stylesheet or SVG image not loaded"


OWN_FILES = ("own.css", "pic.svg")


def _assert_raw_answers_are_contained(base: str, node: Node) -> None:
    csp = headers.publisher_csp(base.rstrip("/"), node.url(base, "corpus").split("/")[2])
    for name in ("corpus.html", "index.html", "pic.svg", "own.css"):
        reply = fetch(base, node.url(base, "corpus", "f/" + name))
        assert reply.status == 200, name
        assert reply.header("Content-Security-Policy") == csp, name
        assert reply.header("X-DNS-Prefetch-Control") == "off", name
    # SVG has links of its own: at its raw address it is a download, never a page.
    assert fetch(base, node.url(base, "corpus", "f/pic.svg")).header("Content-Disposition") == (
        "attachment; filename=\"pic.svg\"; filename*=UTF-8''pic.svg"
    )
    page = fetch(base, node.url(base, "corpus", "f/corpus.html"))
    assert page.header("Accept-Ranges") == "none" and "example" not in page.text.split("<style>")[0]
    other = node.made_up_url("honest", node.leaky_fingerprint)
    assert other not in re.sub(r"<style>.*?</style>", "", page.text, flags=re.DOTALL)
    assert f'url("{other}' not in page.text  # only the escaped u\\72l( is left, to the CSP


async def _read_the_corpus(cdp: DevTools, base: str, node: Node) -> None:
    for page in ("corpus.html", "index.html"):
        # As the reader shows it (the article is the page, under the reader's bar), then
        # raw, as "open in new tab" shows it: tap every link the publisher wrote.
        for kind in ("v/", "f/"):
            url = base + node.url(base + "/", "corpus", kind + page)
            await navigate(cdp, url, settle=1.5)
            top = await cdp.evaluate(
                "(() => { const n = document.querySelector('nav');"
                " return n ? n.getBoundingClientRect().bottom : 0; })()"
            )
            await _tap_links(cdp, 0, top, len(LINKS))
            assert (await cdp.evaluate("location.href")) == url
    await asyncio.sleep(1.5)  # the meta refresh would have fired by now


async def _tap_links(cdp: DevTools, x: float, y: float, count: int) -> None:
    await _tap(cdp, x + 200, y + 5)  # wakes the input
    for index in range(count):
        await _tap(cdp, x + 20, y + 20 + 40 * index)
        await asyncio.sleep(0.3)


# The rewriting itself, without a browser.


BUNDLE = BundleLinks(
    frozenset({"dir/page.html", "dir/next.html", "dir/site.css", "chart.png", "dir/own.css"}),
    lambda path: "/b/B/v/" + path.replace("/", "~"),
    lambda path: "/b/B/f/" + path.replace("/", "~"),
)


def rewritten(source: str, path: str = "dir/page.html") -> str:
    return rewrite_html(source.encode(), path, BUNDLE).decode()


def test_rewrite_keeps_the_article_and_its_own_files() -> None:
    out = rewritten(
        '<meta name="viewport" content="width=device-width"><title>T</title>'
        '<link rel="stylesheet" href="site.css"><style>a > b { color: red }</style>'
        '<h1 style="color: red">Pay</h1><img src="../chart.png" alt="c"><a href="next.html#s">n</a>'
    )
    assert out.startswith('<!doctype html>\n<meta charset="utf-8">')
    for kept in (
        '<meta name="viewport" content="width=device-width">',
        '<link rel="stylesheet" href="/b/B/f/dir~site.css">',
        "<style>a > b { color: red }</style>",
        '<h1 style="color: red">Pay</h1>',
        '<img src="/b/B/f/chart.png" alt="c">',
        '<a href="/b/B/v/dir~next.html#s">n</a>',
    ):
        assert kept in out, (kept, out)
    assert "<title>" not in out  # it would name the article in the browser's history


def test_rewrite_points_references_at_opaque_urls_and_drops_unknown_ones() -> None:
    out = rewritten(
        '<a href="#part">in page</a><a href="?x=1">same</a><a href="missing.html">gone</a>'
        '<img src="./missing.png"><a href="next%2Ehtml">quoted</a>'
        '<style>@import "site.css"; @import url(elsewhere.css);'
        " b { background: url('../chart.png') } i { background: url(/b/other/f/x) }</style>"
        '<p style="background: URL( &quot;../chart.png&quot; ), url(nope.png)">p</p>'
    )
    assert '<a href="#part">in page</a>' in out
    assert '<a href="/b/B/v/dir~page.html">same</a>' in out
    assert "<a>gone</a>" in out and "<img>" in out
    assert '<a href="/b/B/v/dir~next.html">quoted</a>' in out
    assert '@import url("/b/B/f/dir~site.css"); @import none;' in out
    assert 'b { background: url("/b/B/f/chart.png") }' in out
    assert "i { background: none }" in out
    assert 'style="background: url(&quot;/b/B/f/chart.png&quot;), none"' in out
    assert "missing" not in out and "other" not in out and "nope" not in out


def test_rewrite_removes_every_resource_hint_and_outside_load() -> None:
    out = rewritten(CORPUS.format(links="", svg=SVG, other_css="/x.css", other_img="../../y.png"))
    # CSS may still name outside addresses: the publisher CSP stops those loads.
    markup = re.sub(r'<style>.*?</style>| style="[^"]*"', "", out, flags=re.DOTALL)
    for gone in ("example", "<base", "<script", "<form", "<iframe", "<svg", "http-equiv", "/x.css"):
        assert gone not in markup, gone
    assert out.count("<link") == 12 and out.count('href="') == 1  # own.css alone
    assert 'href="/b/B/f/dir~own.css"' in out
    assert "../../y.png" not in markup
    # In CSS, url() is rewritten; an escaped u\72l( is left to the per-bundle CSP.
    assert "url(../../y.png)" not in out and 'url("http' not in out


def test_rewrite_shows_an_outside_link_as_inert_text() -> None:
    out = rewritten('<a href="http://t.example/a?b=1&amp;c=<2>" target="_top" download>Go</a>')
    assert out.endswith(
        '<a>Go</a> <span class="off-node">(http://t.example/a?b=1&amp;c=&lt;2&gt;)</span>'
    )
    same = rewritten('<a href="https://t.example/">https://t.example/</a>')
    assert same.endswith("<a>https://t.example/</a>")


def test_rewrite_drops_links_that_leave_the_bundle_on_the_node() -> None:
    out = rewritten(
        '<a href="/b/x/y/f/a.html">abs</a><a href="../../z.html">up</a><img src="/z.png">'
    )
    assert "href" not in out and "src" not in out


def test_rewrite_survives_bytes_that_are_not_utf8() -> None:
    out = rewrite_html(b"<p>\xff\xfe caf\xe9 \x00</p>", "a.html", BUNDLE).decode()
    assert "<p>\ufffd\ufffd caf\ufffd \ufffd</p>" in out
