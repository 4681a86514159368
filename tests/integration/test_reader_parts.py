"""The reader's parts on their own: range parsing, file names, language choice, Markdown,
the Library's search (its own worker), and the reader's own limits (in-process app, real socket)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from readerkit import pack_in_process

from conftest import make_publisher, meshdrop_in_process, run_meshdrop, write_tree
from meshdrop.core.manifest import CHUNK_SIZE
from meshdrop.reader import app as reader_app
from meshdrop.reader import i18n
from meshdrop.reader import library as library_module
from meshdrop.reader.headers import content_disposition
from meshdrop.reader.library import Library, Shelf
from meshdrop.reader.links import BundleLinks
from meshdrop.reader.ranges import ByteRange, Unsatisfiable, chunk_pieces, parse_range
from meshdrop.reader.render import is_local_link, render_markdown
from meshdrop.reader.searching import SearchService
from meshdrop.store.store import Store

ETAG = '"abc"'


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-4", 10, ByteRange(0, 4)),
        ("bytes=5-", 10, ByteRange(5, 9)),
        ("bytes=-3", 10, ByteRange(7, 9)),
        ("bytes=-30", 10, ByteRange(0, 9)),
        ("bytes=8-100", 10, ByteRange(8, 9)),
        ("bytes=0-0,2-3", 10, None),
        ("pages=1-2", 10, None),
    ],
)
def test_parse_range(header: str | None, size: int, expected: ByteRange | None) -> None:
    assert parse_range(header, size, None, ETAG) == expected


@pytest.mark.parametrize(
    ("header", "size"),
    [("bytes=10-", 10), ("bytes=0-", 0), ("bytes=-1", 0), ("bytes=3-2", 10), ("bytes=x", 10)],
)
def test_parse_range_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(Unsatisfiable):
        parse_range(header, size, None, ETAG)


def test_if_range_mismatch_means_the_whole_file() -> None:
    assert parse_range("bytes=0-1", 10, '"other"', ETAG) is None
    assert parse_range("bytes=0-1", 10, ETAG, ETAG) == ByteRange(0, 1)


def test_chunk_pieces_cover_exactly_the_range() -> None:
    assert chunk_pieces(ByteRange(0, 0)) == [(0, 0, 1)]
    assert chunk_pieces(ByteRange(CHUNK_SIZE - 2, CHUNK_SIZE + 1)) == [
        (0, CHUNK_SIZE - 2, CHUNK_SIZE),
        (1, 0, 2),
    ]
    pieces = chunk_pieces(ByteRange(5, 3 * CHUNK_SIZE + 6))
    assert [p[0] for p in pieces] == [0, 1, 2, 3]
    assert sum(end - start for _i, start, end in pieces) == 3 * CHUNK_SIZE + 2


@pytest.mark.parametrize(
    ("path", "attachment", "expected"),
    [
        ("a/report.pdf", True, "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"),
        (
            "안내 문.txt",
            False,
            "inline; filename=\"____.txt\"; filename*=UTF-8''%EC%95%88%EB%82%B4%20%EB%AC%B8.txt",
        ),
        ("café.html", False, "inline; filename=\"cafe.html\"; filename*=UTF-8''caf%C3%A9.html"),
        (
            'a"b;c%.txt',
            True,
            "attachment; filename=\"a_b_c_.txt\"; filename*=UTF-8''a%22b%3Bc%25.txt",
        ),
    ],
)
def test_content_disposition(path: str, attachment: bool, expected: str) -> None:
    assert content_disposition(path, attachment) == expected


@pytest.mark.parametrize(
    ("cookie", "header", "expected"),
    [
        (None, None, "en"),
        (None, "ko", "ko"),
        (None, "ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7", "ko"),
        (None, "en-US,en;q=0.9,ko;q=0.8", "en"),
        (None, "fr, ko;q=0.5", "ko"),
        (None, "ko;q=0.1, en;q=0.2", "en"),
        (None, "ko;q=abc, en;q=0.2", "en"),
        ("en", "ko", "en"),
        ("de", "ko", "ko"),
    ],
)
def test_language_choice(cookie: str | None, header: str | None, expected: str) -> None:
    assert i18n.choose(cookie, header) == expected


def test_both_languages_have_every_string() -> None:
    assert set(i18n.STRINGS["en"]) == set(i18n.STRINGS["ko"])


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("next.md", True),
        ("../other/page.html", True),
        ("#part", True),
        ("/b/x/y/", True),
        ("http://127.0.0.2/", False),
        ("HTTPS://example.org/", False),
        ("//example.org/x", False),
        ("javascript:alert(1)", False),
        (" data:text/html,x", False),
        ("mailto:a@b", False),
        ("\\\\host\\share", False),
    ],
)
def test_only_links_within_the_node_are_live(url: str, local: bool) -> None:
    assert is_local_link(url) is local


def test_markdown_renders_without_raw_html() -> None:
    bundle = BundleLinks(
        frozenset({"docs/img/p.png", "docs/next.md"}),
        lambda path: "/b/B/v/" + path.replace("/", "~"),
        lambda path: "/b/B/f/" + path.replace("/", "~"),
    )
    html = render_markdown(
        "# T\n\n<img src=x onerror=alert(1)>\n\n![a](img/p.png) ![b](../../escape.png)\n"
        "![c](img/missing.png) [x](http://127.0.0.2/) [next](next.md#s) [gone](gone.md)",
        "docs/page.md",
        bundle,
    )
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert '<img src="/b/B/f/docs~img~p.png" alt="a" />' in html  # its opaque URL
    assert '<img src="" alt="b" />' in html  # outside the bundle: no image
    assert '<img src="" alt="c" />' in html  # not a file of the bundle: no image
    assert '<a href="/b/B/v/docs~next.md#s">next</a>' in html
    assert "<a>gone</a>" in html and "127.0.0.2" in html and 'href="http' not in html


# The search index in the store


@pytest.fixture
def store_with_bundles(tmp_path: Path) -> Path:
    publisher = make_publisher(tmp_path / "publisher")
    home = tmp_path / "node"
    meshdrop_in_process("--home", home, "trust", "add", "--yes", publisher.pub, check=True)
    now = int(time.time())
    sources = {
        "ko": {
            "index.html": "<html><head><title>제목</title><style>.x{}</style></head>"
            "<body><p>고용주는 <b>여권</b>을 보관할 수 없습니다.</p>"
            "<script>var secretword = 1;</script></body></html>".encode(),
            "notes.md": "## 메모\n\n[초과근무](x.md) 수당을 **꼭** 확인하세요.".encode(),
        },
        "en": {"a.txt": b"Overtime PAY is counted per hour.", "b.bin": b"binaryword"},
        "long": {"long.txt": ("filler " * 10_000 + "needleword").encode()},
    }
    for name, files in sources.items():
        src = write_tree(tmp_path / name, files)
        out = tmp_path / f"{name}.mdrop"
        pack_in_process(publisher, src, out, name, title=f"{name} title", created=now - 1)
        meshdrop_in_process("--home", home, "import", out, check=True)
    return home


def test_library_searches_files_on_its_own_worker(store_with_bundles: Path) -> None:
    """The reader's Library: the index is built by a child process at the start, then
    one hit per file of a shown bundle, with its title and snippet, and titles per bundle."""

    async def scenario() -> None:
        library = Library(store_with_bundles)
        try:
            shelf = await library.shelf()  # the first shelf starts the index catching up
            await library.searching.indexed()
            [hit] = await library.search("여권")
            assert (hit.bundle.name, hit.path, hit.title) == ("ko", "index.html", "제목")
            assert (hit.before, hit.match) == ("고용주는 ", "여권")
            assert [(f.bundle.name, f.path) for f in await library.search("overtime pay")] == [
                ("en", "a.txt")
            ]
            assert await library.search("secretword") == []
            ko = next(b for b in shelf.bundles if b.name == "ko")
            assert await library.titles(ko) == {"index.html": "제목", "notes.md": "메모"}
        finally:
            await library.close()

    asyncio.run(scenario())


def test_library_shows_no_hit_on_a_version_it_does_not_show(tmp_path: Path) -> None:
    publisher = make_publisher(tmp_path / "publisher")
    home = tmp_path / "node"
    meshdrop_in_process("--home", home, "trust", "add", "--yes", publisher.pub, check=True)
    now = int(time.time())

    def publish(word: str, created: int) -> None:
        src = write_tree(tmp_path / word, {"a.txt": word.encode()})
        out = tmp_path / f"{word}.mdrop"
        pack_in_process(publisher, src, out, "news", title="news", created=created)
        meshdrop_in_process("--home", home, "import", out, check=True)

    async def searched(*queries: str) -> list[list[str]]:
        library = Library(home)
        try:
            await library.shelf()
            # Right away: whatever the index holds, only the version shown is a hit.
            found = [[f.path for f in await library.search(q)] for q in queries]
            await library.searching.indexed()
            return found + [[f.path for f in await library.search(q)] for q in queries]
        finally:
            await library.close()

    publish("firstword", now - 10)
    assert asyncio.run(searched("firstword"))[-1] == ["a.txt"]
    publish("secondword", now - 5)  # the index still holds the first version
    first, second, first_then, second_then = asyncio.run(searched("firstword", "secondword"))
    assert first == [] and second in ([], ["a.txt"])
    assert (first_then, second_then) == ([], ["a.txt"])


@contextlib.asynccontextmanager
async def reader_on_loopback(home: Path) -> AsyncIterator[tuple[reader_app.Reader, str]]:
    """The reader of ``home`` served on 127.0.0.1 (a free port): it and its base URL."""
    app = aiohttp.web.Application()
    reader = reader_app.install_reader(app, home)
    runner = aiohttp.web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await aiohttp.web.TCPSite(runner, "127.0.0.1", 0).start()
        yield reader, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def slow_shelves(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Every shelf takes ``seconds`` more to load (on the reader's store thread), as a
    store of thousands of bundles does while a sync keeps the CPU busy."""
    load = Library._load_shelf

    def slow(library: Library, store: Store) -> Shelf:
        time.sleep(seconds)
        return load(library, store)

    monkeypatch.setattr(Library, "_load_shelf", slow)


def later_bundle(tmp_path: Path) -> tuple[Path, Path]:
    """A bundle "later" of another publisher: (its publisher file, the bundle file)."""
    publisher = make_publisher(tmp_path / "publisher-later", "Later Publisher")
    src = write_tree(tmp_path / "src-later", {"a.txt": b"later"})
    return publisher.pub, pack_in_process(
        publisher, src, tmp_path / "later.mdrop", "later", title="later"
    )


def add_bundle(home: Path, publisher: Path, bundle: Path) -> None:
    """What a sync or an import does meanwhile: another process commits a bundle."""
    run_meshdrop("--home", home, "trust", "add", "--yes", publisher, check=True)
    run_meshdrop("--home", home, "import", bundle, check=True)


def names_on(shelf: Shelf) -> set[str]:
    return {b.name for b in shelf.bundles}


def test_a_big_shelf_that_loads_slowly_is_shown_as_it_was_while_the_next_loads(
    store_with_bundles: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(library_module, "BIG_SHELF", 3)  # the fixture's store counts as big
    slow_shelves(monkeypatch, 2.0)
    later = later_bundle(tmp_path)

    async def scenario() -> None:
        library = Library(store_with_bundles)
        try:
            before = names_on(await library.shelf())  # the first one is waited for
            await asyncio.to_thread(add_bundle, store_with_bundles, *later)
            assert names_on(await library.shelf()) == before  # not waited for: as it was
            for _ in range(100):
                if "later" in names_on(await library.shelf()):
                    break
                await asyncio.sleep(0.1)
            assert names_on(await library.shelf()) == before | {"later"}
        finally:
            await library.close()

    asyncio.run(scenario())


def test_a_page_that_gets_a_new_shelf_while_the_next_loads_does_not_wait_for_it(
    store_with_bundles: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """During a sync a page may be the first to see a shelf while the next one loads on
    the reader's store thread: what the page shows with it (the write links) must come
    with that shelf, not from a query queued behind the load (the home page waited a
    whole reload: issue 19's p99 during a sync)."""
    monkeypatch.setattr(library_module, "BIG_SHELF", 3)
    slow_shelves(monkeypatch, 3.0)
    publisher = make_publisher(tmp_path / "publisher-later", "Later Publisher")
    first, second = (
        (publisher.pub, pack_in_process(
            publisher, write_tree(tmp_path / f"src-{name}", {"a.txt": name.encode()}),
            tmp_path / f"{name}.mdrop", name, title=name,
        ))
        for name in ("later", "later-two")
    )  # fmt: skip

    async def scenario() -> None:
        async with reader_on_loopback(store_with_bundles) as (reader, base):
            base += "/"
            library = reader.library
            async with aiohttp.ClientSession() as client:
                assert (await client.get(base)).status == 200  # the first shelf, waited for
                await asyncio.to_thread(add_bundle, store_with_bundles, *first)
                assert (await client.get(base)).status == 200  # stale; the next one loads
                loading = library._loading
                assert loading is not None
                await asyncio.wait_for(asyncio.shield(loading), 30)
                await asyncio.to_thread(add_bundle, store_with_bundles, *second)
                page = await client.get(base)  # a new shelf to it, and the next one loading
                assert page.status == 200
                assert "later" in await page.text()
                assert library._loading is not None and library._loading is not loading
                assert not library._loading.done()  # answered before that load ended

    asyncio.run(scenario())


def test_a_small_shelf_is_always_fresh_however_slowly_it_loads(
    store_with_bundles: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_shelves(monkeypatch, 0.5)  # slow, but 3 bundles are far fewer than BIG_SHELF
    later = later_bundle(tmp_path)

    async def scenario() -> None:
        library = Library(store_with_bundles)
        try:
            before = names_on(await library.shelf())
            await asyncio.to_thread(add_bundle, store_with_bundles, *later)
            assert names_on(await library.shelf()) == before | {"later"}  # waited for
        finally:
            await library.close()

    asyncio.run(scenario())


# The reader's own limits


def test_a_busy_file_limit_does_not_stall_pages(
    store_with_bundles: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader_app, "QUEUE_SECONDS", 0.3)

    async def scenario() -> None:
        async with (
            reader_on_loopback(store_with_bundles) as (reader, base),
            aiohttp.ClientSession() as client,
        ):
            home = await (await client.get(base + "/")).text()
            bundle = re.findall(r'href="(/b/[^"]+)"', home)[0]
            listing = await (await client.get(base + bundle)).text()
            raw = re.findall(r'href="(/b/[^"]+/f/[^"?]+)', listing)[0]
            for _ in range(reader_app.STREAM_SLOTS):  # every file slot taken
                await reader.streams.acquire()
            assert (await client.get(base + "/")).status == 200  # pages: own limit
            busy = await client.get(base + raw)
            assert busy.status == 503 and busy.headers["Retry-After"] == "5"
            assert "busy" in (await busy.text()).lower()
            for _ in range(reader_app.STREAM_SLOTS):
                reader.streams.release()
            assert (await client.get(base + raw)).status == 200

    asyncio.run(scenario())


@pytest.mark.parametrize("reader_first", [False, True])
def test_reader_shares_a_root_app_with_prefixed_sub_apps(
    tmp_path: Path, reader_first: bool
) -> None:
    """How the LAN node mounts it: the reader on the root app, the peer API under its
    prefix; the reader's catch-all 404 never takes the peer API's paths."""

    async def peer(_request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response({"peer": True}, status=404)

    async def scenario() -> None:
        peer_app = aiohttp.web.Application()
        peer_app.router.add_get("/{tail:.*}", peer)
        app = aiohttp.web.Application()
        if reader_first:
            reader_app.install_reader(app, tmp_path / "node")
            app.add_subapp("/peer/v1", peer_app)
        else:
            app.add_subapp("/peer/v1", peer_app)
            reader_app.install_reader(app, tmp_path / "node")
        runner = aiohttp.web.AppRunner(app, access_log=None)
        await runner.setup()
        await aiohttp.web.TCPSite(runner, "127.0.0.1", 0).start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            async with aiohttp.ClientSession() as client:
                answer = await client.get(base + "/peer/v1/inventory")
                assert await answer.json() == {"peer": True}
                assert "Server" not in answer.headers
                home = await client.get(base + "/")
                assert home.status == 200 and "<title>Library</title>" in await home.text()
                missing = await client.get(base + "/peer/v2/x")
                assert missing.status == 404 and "<html" in await missing.text()
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


def test_the_search_page_says_while_the_index_catches_up(
    store_with_bundles: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search while the index is still being built may miss what is new: the page says
    so until the run has ended (then the same search finds the whole answer, unsaid)."""
    release = threading.Event()
    run_once = SearchService._run_child_once

    def held(service: SearchService) -> int | None:
        release.wait(60)  # the indexing run is under way until the test lets it go
        return run_once(service)

    monkeypatch.setattr(SearchService, "_run_child_once", held)

    async def search(client: aiohttp.ClientSession, base: str) -> str:
        async with client.post(f"{base}/search", data={"q": "overtime"}) as reply:
            assert reply.status == 200
            return await reply.text()

    async def scenario() -> None:
        async with (
            reader_on_loopback(store_with_bundles) as (reader, base),
            aiohttp.ClientSession() as client,
        ):
            await reader.library.shelf()  # the first shelf starts the index catching up
            during = await search(client, base)
            release.set()
            await reader.library.searching.indexed()
            after = await search(client, base)
        assert '<p class="indexing">' in during
        assert '<p class="indexing">' not in after
        assert "a.txt" in after

    asyncio.run(scenario())
