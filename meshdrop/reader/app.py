"""The reader's aiohttp application: routes, handlers, limits and headers (what the
pages show is shaped in ``views.py``)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import jinja2
from aiohttp import web

from meshdrop.core.manifest import FileEntry, Manifest
from meshdrop.reader import headers, i18n, views
from meshdrop.reader.accesscode import AccessGate
from meshdrop.reader.article import BAR_TEMPLATE, article_page
from meshdrop.reader.assets import Asset, load_assets
from meshdrop.reader.library import Library, ShelvedBundle
from meshdrop.reader.links import BundleLinks
from meshdrop.reader.panicpage import panic_routes
from meshdrop.reader.readerids import ID_PATTERN
from meshdrop.reader.render import (
    MAX_RENDERED_BYTES,
    kind_of,
    qr_svg,
    render_markdown,
)
from meshdrop.reader.requestinfo import (
    HOST,
    LOOPBACK,
    NotFound,
    back_with_cookie,
    language,
    origin,
    page_number,
)
from meshdrop.reader.sanitize import MAX_REWRITTEN_BYTES
from meshdrop.reader.sending import Damaged, read_whole, send_publisher_file
from meshdrop.reader.tlscert import grouped, share_link
from meshdrop.reader.writing import RECEIPT_PATH, WRITE_PATH, Writing
from meshdrop.transports.lan.serverguard import plain_errors

log = logging.getLogger("meshdrop.reader")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ShareUrls = Callable[[], Sequence[str]]

# Reader limits: its own, apart from the peer API's (which has its own semaphores and
# threads), so neither side can stall the other. Requests beyond a limit wait in line up
# to QUEUE_SECONDS, then get a short 503 page.
PAGE_SLOTS = 8  # pages rendered at once
STREAM_SLOTS = 24  # publisher files being sent at once (media players keep these open)
QUEUE_SECONDS = 10.0
PAGE_SIZE = 50  # bundles per home page: keeps it small on slow links
FILES_PER_PAGE = 200  # files listed per bundle page
MAX_QUERY_CHARS = 200


@dataclass
class Reader:
    home: Path
    share_urls: ShareUrls | None = None
    name: str | None = None  # the owner's name for it; else a neutral word (i18n "site")
    access_code: str | None = None  # asked of every browser first (accesscode.py)
    fingerprint: str | None = None  # of the HTTPS certificate (tlscert.py), if served so
    reports_over_http: bool = False  # the owner declared plain HTTP links controlled (writing.py)
    library: Library = field(init=False)
    writing: Writing = field(init=False)
    pages: asyncio.Semaphore = field(init=False)
    streams: asyncio.Semaphore = field(init=False)
    assets: dict[str, Asset] = field(init=False)
    templates: jinja2.Environment = field(init=False)
    static: dict[str, Asset] = field(init=False)
    gate: AccessGate | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.library = Library(self.home)
        self.writing = Writing(self, self.reports_over_http)
        self.pages = asyncio.Semaphore(PAGE_SLOTS)
        self.streams = asyncio.Semaphore(STREAM_SLOTS)
        self.assets = load_assets()
        self.static = {a.name: a for a in self.assets.values()}
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("meshdrop.reader", "templates"),
            autoescape=True,  # every value is escaped unless marked safe on purpose
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            # Loaded once, here: otherwise every page would stat its templates on disk
            # from inside the event loop, to see whether they changed (they never do).
            auto_reload=False,
        )
        for name in self.templates.list_templates():
            self.templates.get_template(name)
        if self.access_code is not None:
            self.gate = AccessGate(self.access_code, self.render)

    # Wiring

    def routes(self) -> list[web.RouteDef]:
        page, stream = self.pages, self.streams
        bundle, file = f"/b/{{bid:{ID_PATTERN}}}", f"{{fid:{ID_PATTERN}}}"
        return [
            web.get("/", self._guard(page, self.home_page)),
            web.get("/search", self._guard(page, self.search_page)),
            web.post("/search", self._guard(page, self.search_page)),
            web.get("/share", self._guard(page, self.share_page)),
            web.get("/lang/{code}", self._guard(page, self.set_language)),
            web.get("/text/{size}", self._guard(page, self.set_text_size)),
            web.get("/static/{name}", self._guard(page, self.static_file)),
            # Opaque ids only (readerids.py); any other form, old ones included, is a 404.
            web.get(bundle, self._guard(page, self.add_slash)),
            web.get(bundle + "/", self._guard(page, self.bundle_page)),
            web.get(f"{bundle}/v/{file}", self._guard(page, self.view_page)),
            web.get(f"{bundle}/f/{file}", self._guard(stream, self.publisher_file)),
            web.get(WRITE_PATH, self._guard(page, self.writing.form_page)),
            web.post(WRITE_PATH, self._guard(self.writing.sending, self.writing.send)),
            web.get(RECEIPT_PATH, self._guard(page, self.writing.receipt_form)),
            web.post(RECEIPT_PATH, self._guard(page, self.writing.receipt_check)),
            *panic_routes(self),  # answers as an unknown page unless a panic code is set
            web.route("*", "/{tail:.*}", self._guard(page, self.nothing_here)),
        ]

    def _guard(self, slots: asyncio.Semaphore, handler: Handler) -> Handler:
        """Run ``handler`` within the reader's own limit, and turn every failure into a
        short page that names no path or bundle (nothing about reading is logged)."""
        handler = self.gate.wrap(handler) if self.gate else handler

        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                await asyncio.wait_for(slots.acquire(), QUEUE_SECONDS)
            except TimeoutError:
                response = self.message_page(request, "busy_title", "busy", 503)
                response.headers["Retry-After"] = "5"
                return response
            try:
                return await handler(request)
            except NotFound:
                return self.message_page(request, "not_found_title", "not_found", 404)
            except Damaged:
                return self.message_page(request, "error_title", "damaged", 500)
            except (web.HTTPException, ConnectionError, asyncio.CancelledError):
                raise
            except Exception as exc:
                log.error("reader: internal error (%s)", type(exc).__name__)
                if os.environ.get("MESHDROP_DEBUG"):
                    log.exception("reader: details")
                return self.message_page(request, "error_title", "error", 500)
            finally:
                slots.release()

        return guarded

    async def on_startup(self, _app: web.Application) -> None:
        # A store that cannot be read stops the start, in one line. The first shelf also
        # starts the search index catching up, in a process of its own (searching.py).
        await self.library.shelf()
        self.library.watch()

    async def on_cleanup(self, _app: web.Application) -> None:
        await self.library.close()

    # Pages

    def render(
        self, request: web.Request, template: str, status: int = 200, **values: object
    ) -> web.Response:
        lang = language(request)
        here = request.path_qs if request.method == "GET" and status == 200 else "/"
        other = "ko" if lang == "en" else "en"
        size = views.text_size(request.cookies.get(views.TEXT_COOKIE))
        other_size = "normal" if size == "large" else "large"
        context = {
            "lang": lang,
            "t": i18n.STRINGS[lang],
            "site": self.name or i18n.STRINGS[lang]["site"],
            "css": self.assets["reader.css"].url,
            "icon": self.assets["icon.svg"].url,
            "switch_url": f"/lang/{other}?next={quote(here, safe='/')}",
            "other_lang": other,
            "text_size": size,
            "size_url": f"/text/{other_size}?next={quote(here, safe='/')}",
            "query": "",
            **values,
        }
        body = self.templates.get_template(template).render(context)
        response = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
        response.headers.update(headers.PAGE)
        response.enable_compression()
        return response

    def message_page(
        self, request: web.Request, title: str, text: str, status: int
    ) -> web.Response:
        return self.render(request, "message.html", status, title_key=title, text_key=text)

    async def home_page(self, request: web.Request) -> web.StreamResponse:
        shelf = await self.library.shelf()
        page = page_number(request)
        start = (page - 1) * PAGE_SIZE
        shown = shelf.bundles[start : start + PAGE_SIZE]
        if page > 1 and not shown:
            raise NotFound
        lang = language(request)
        return self.render(
            request,
            "home.html",
            groups=views.group_for_home(shown, shelf, lang),
            write=await self.writing.links(shelf),
            write_others=(
                await self.writing.without_content({b.publisher for b in shown}, shelf)
                if page == 1
                else []
            ),
            newer=f"/?page={page - 1}" if page > 1 else "",
            older=f"/?page={page + 1}" if start + PAGE_SIZE < len(shelf.bundles) else "",
        )

    async def search_page(self, request: web.Request) -> web.StreamResponse:
        # Terms come only in a POST's body: never in a URL (history, logs); GET is the
        # empty search page.
        form = await request.post() if request.method == "POST" else {}
        text = form.get("q", "")
        query = " ".join(text.split())[:MAX_QUERY_CHARS] if isinstance(text, str) else ""
        before = self.library.searching.index_state()
        found = await self.library.search(query) if query else []
        after = self.library.searching.index_state()
        lang = language(request)
        results = [views.search_result(f, lang) for f in found[:50]]
        indexing = before != after or after[1]
        return self.render(request, "search.html", query=query, results=results, indexing=indexing)

    async def share_page(self, request: web.Request) -> web.StreamResponse:
        urls = self.addresses(request)
        link = urls[0] if urls else ""
        if link and self.fingerprint:
            link = share_link(link, self.fingerprint)  # the QR lets a phone check it once
        fingerprint = grouped(self.fingerprint) if self.fingerprint else ""
        qr = qr_svg(link) if link else ""
        return self.render(request, "share.html", urls=urls, qr=qr, fingerprint=fingerprint)

    def addresses(self, request: web.Request) -> list[str]:
        """Addresses others on the network can use: the one this browser used (unless it
        is this machine's loopback) and those the node or the command knows."""
        found = []
        host = request.host
        if HOST.fullmatch(host) and not LOOPBACK.match(host):
            found.append(f"{request.scheme}://{host}/")
        for url in self.share_urls() if self.share_urls else ():
            if url not in found:
                found.append(url)
        return found

    async def set_language(self, request: web.Request) -> web.StreamResponse:
        code = request.match_info["code"]
        if code not in i18n.LANGUAGES:
            raise NotFound
        raise back_with_cookie(request, i18n.COOKIE, code)

    async def set_text_size(self, request: web.Request) -> web.StreamResponse:
        size = request.match_info["size"]
        if size not in views.TEXT_SIZES:
            raise NotFound
        raise back_with_cookie(request, views.TEXT_COOKIE, size)

    async def static_file(self, request: web.Request) -> web.StreamResponse:
        asset = self.static.get(request.match_info["name"])
        if asset is None:
            raise NotFound
        response = web.Response(body=asset.data)
        response.headers.update(headers.STATIC)
        response.headers["Content-Type"] = asset.media_type
        return response

    async def add_slash(self, request: web.Request) -> web.StreamResponse:
        # The same answer whether or not such a bundle exists.
        raise web.HTTPMovedPermanently(request.path + "/")

    async def nothing_here(self, request: web.Request) -> web.StreamResponse:
        raise NotFound

    async def _bundle(self, request: web.Request) -> tuple[ShelvedBundle, Manifest]:
        shelf = await self.library.shelf()
        bundle = shelf.find(request.match_info["bid"])
        if bundle is None:
            raise NotFound
        manifest = await self.library.manifest(bundle)
        if manifest is None:
            raise NotFound
        return bundle, manifest

    async def _file(self, request: web.Request) -> tuple[ShelvedBundle, Manifest, FileEntry]:
        shelf = await self.library.shelf()
        bundle = shelf.find(request.match_info["bid"])
        found = await self.library.file(bundle, request.match_info["fid"]) if bundle else None
        if bundle is None or found is None or found[1] is None:
            raise NotFound
        return bundle, found[0], found[1]

    async def bundle_page(self, request: web.Request) -> web.StreamResponse:
        bundle, manifest = await self._bundle(request)
        shelf = await self.library.shelf()
        lang = language(request)
        page = page_number(request)
        start = (page - 1) * FILES_PER_PAGE
        files = manifest.files[start : start + FILES_PER_PAGE]
        if page > 1 and not files:
            raise NotFound
        base = views.bundle_url(bundle)
        newest = shelf.newest.get(bundle.publisher)
        rows = views.with_titles(
            [views.file_row(bundle, f, lang) for f in files], await self.library.titles(bundle)
        )
        first = views.start_file(manifest, lang)
        return self.render(
            request,
            "bundle.html",
            bundle=bundle,
            info=views.bundle_info(bundle, lang),
            fresh=views.freshness(newest, shelf.now, lang),
            write=(await self.writing.links(shelf)).get(bundle.publisher, ""),
            start=views.article_url(bundle, first) if first else "",
            base=base,
            articles=views.readable(rows),
            files=rows,
            newer=f"{base}?page={page - 1}" if page > 1 else "",
            older=f"{base}?page={page + 1}" if start + FILES_PER_PAGE < len(manifest.files) else "",
        )

    async def view_page(self, request: web.Request) -> web.StreamResponse:
        bundle, manifest, entry = await self._file(request)
        lang = language(request)
        base = views.bundle_url(bundle)
        kind = kind_of(entry.media_type)
        titles = await self.library.titles(bundle)
        row = views.with_titles([views.file_row(bundle, entry, lang)], titles)[0]
        if kind == "html" and entry.size <= MAX_REWRITTEN_BYTES:
            site = self.name or i18n.STRINGS[lang]["site"]
            values = {"lang": lang, "site": site, "back": base}
            return await article_page(
                self.library,
                self.templates.get_template(BAR_TEMPLATE),
                bundle,
                entry,
                _links(bundle, manifest, self.gate),
                headers.publisher_csp(origin(request), bundle.bid),
                {**values, "download": row["download"]},
            )
        content: object = ""
        too_big = kind == "html"
        if kind in ("markdown", "text"):
            if entry.size > MAX_RENDERED_BYTES:
                too_big = True
            else:
                text = (await read_whole(self.library, entry)).decode("utf-8", errors="replace")
                links = _links(bundle, manifest, self.gate)
                content = render_markdown(text, entry.path, links) if kind == "markdown" else text
        [row] = views.with_titles([row], await self.library.titles(bundle))
        return self.render(
            request,
            "view.html",
            bundle=bundle,
            base=base,
            file=row,
            kind=kind,
            content=content,
            too_big=too_big,
        )

    # Publisher files

    async def publisher_file(self, request: web.Request) -> web.StreamResponse:
        bundle, manifest, entry = await self._file(request)
        csp = headers.publisher_csp(origin(request), bundle.bid)
        return await send_publisher_file(
            request, self.library, entry, _links(bundle, manifest, self.gate), csp
        )


def _links(bundle: ShelvedBundle, manifest: Manifest, gate: AccessGate | None) -> BundleLinks:
    """How a publisher file of ``bundle`` names the bundle's files (links.py); behind an
    access code each file with its pass (accesscode.py: a sandboxed page's requests
    carry no cookie)."""

    def file(path: str) -> str:
        url = views.file_url(bundle, path)
        return gate.grant(url) if gate else url

    paths = frozenset(f.path for f in manifest.files)
    return BundleLinks(paths, lambda path: views.article_url(bundle, path), file)


def install_reader(
    app: web.Application,
    home: Path,
    share_urls: ShareUrls | None = None,
    name: str | None = None,
    access_code: str | None = None,
    fingerprint: str | None = None,
    reports_over_http: bool = False,
) -> Reader:
    """Add the reader's routes, start-up and clean-up to ``app`` (its answers to paths no
    other route takes are the reader's 404 page), its pages titled ``name`` (else a
    neutral word: no page names the software), each asking first for ``access_code`` if
    one is given. Returns the Reader."""
    reader = Reader(home, share_urls, name, access_code, fingerprint, reports_over_http)
    app.add_routes(reader.routes())
    app.on_startup.append(reader.on_startup)
    app.on_cleanup.append(reader.on_cleanup)
    app.on_response_prepare.append(drop_server_header)
    return reader


async def drop_server_header(_request: web.Request, response: web.StreamResponse) -> None:
    """No ``Server:`` banner (it would tell an observer what this machine runs), and the
    common safety headers on every answer, aiohttp's own (redirects, 405) included."""
    response.headers.popall("Server", None)
    for name, value in headers.COMMON.items():
        response.headers.setdefault(name, value)


def make_reader_app(
    home: Path,
    share_urls: ShareUrls | None = None,
    name: str | None = None,
    access_code: str | None = None,
    fingerprint: str | None = None,
    reports_over_http: bool = False,
) -> web.Application:
    """The reader as an application of its own (see the package docstring to mount it);
    every HTTP error it raises gets a short body of its own (``plain_errors``)."""
    app = web.Application(client_max_size=64 * 1024, middlewares=[plain_errors])
    install_reader(app, home, share_urls, name, access_code, fingerprint, reports_over_http)
    return app
