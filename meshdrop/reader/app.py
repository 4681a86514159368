"""The reader's aiohttp application: routes, handlers, limits and headers (what the
pages show is shaped in ``views.py``)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import jinja2
from aiohttp import web

from meshdrop.core.manifest import FileEntry, Manifest
from meshdrop.reader import headers, i18n, views
from meshdrop.reader.accesscode import AccessGate
from meshdrop.reader.assets import Asset, load_assets
from meshdrop.reader.library import Library, find_file
from meshdrop.reader.render import (
    MAX_RENDERED_BYTES,
    is_local_link,
    kind_of,
    qr_svg,
    render_markdown,
)
from meshdrop.reader.sending import Damaged, send_publisher_file
from meshdrop.store.models import StoredBundle
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

_HOST = re.compile(r"[A-Za-z0-9.\-]{1,253}(:\d{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:\d{1,5})?")
_LOOPBACK = re.compile(r"^(localhost|127\.[\d.]+|\[::1\])(:\d+)?$")


class NotFound(Exception):
    """Answer the one 404 page: the same for never-existed, withdrawn and expired."""


@dataclass
class Reader:
    home: Path
    share_urls: ShareUrls | None = None
    name: str | None = None  # the owner's name for it; else a neutral word (i18n "site")
    access_code: str | None = None  # asked of every browser first (accesscode.py)
    library: Library = field(init=False)
    pages: asyncio.Semaphore = field(init=False)
    streams: asyncio.Semaphore = field(init=False)
    assets: dict[str, Asset] = field(init=False)
    templates: jinja2.Environment = field(init=False)
    static: dict[str, Asset] = field(init=False)
    backfill: asyncio.Task[None] | None = field(init=False, default=None)
    gate: AccessGate | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.library = Library(self.home)
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
        return [
            web.get("/", self._guard(page, self.home_page)),
            web.get("/search", self._guard(page, self.search_page)),
            web.get("/share", self._guard(page, self.share_page)),
            web.get("/lang/{code}", self._guard(page, self.set_language)),
            web.get("/static/{name}", self._guard(page, self.static_file)),
            web.get("/b/{fp}/{name}", self._guard(page, self.add_slash)),
            web.get("/b/{fp}/{name}/", self._guard(page, self.bundle_page)),
            web.get("/b/{fp}/{name}/v/{path:.+}", self._guard(page, self.view_page)),
            web.get("/b/{fp}/{name}/f/{path:.+}", self._guard(stream, self.publisher_file)),
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
        await self.library.shelf()  # a store that cannot be read stops the start, in one line
        # Bundles stored before search existed become searchable (in the background:
        # the reader answers meanwhile, with search covering what is indexed so far).
        self.backfill = asyncio.get_running_loop().create_task(self._backfill())

    async def _backfill(self) -> None:
        try:
            await self.library.backfill_search()
        except Exception as exc:
            log.error("reader: could not index older bundles for search (%s)", type(exc).__name__)

    async def on_cleanup(self, _app: web.Application) -> None:
        if self.backfill is not None:
            self.backfill.cancel()
            await asyncio.gather(self.backfill, return_exceptions=True)
        await self.library.close()

    # Pages

    def render(
        self, request: web.Request, template: str, status: int = 200, **values: object
    ) -> web.Response:
        lang = language(request)
        here = request.path_qs if request.method == "GET" and status == 200 else "/"
        other = "ko" if lang == "en" else "en"
        context = {
            "lang": lang,
            "t": i18n.STRINGS[lang],
            "site": self.name or i18n.STRINGS[lang]["site"],
            "css": self.assets["reader.css"].url,
            "icon": self.assets["icon.svg"].url,
            "switch_url": f"/lang/{other}?next={quote(here, safe='/')}",
            "other_lang": other,
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
        page = _page_number(request)
        start = (page - 1) * PAGE_SIZE
        shown = shelf.bundles[start : start + PAGE_SIZE]
        if page > 1 and not shown:
            raise NotFound
        lang = language(request)
        return self.render(
            request,
            "home.html",
            groups=views.group_for_home(shown, shelf, lang),
            newer=f"/?page={page - 1}" if page > 1 else "",
            older=f"/?page={page + 1}" if start + PAGE_SIZE < len(shelf.bundles) else "",
        )

    async def search_page(self, request: web.Request) -> web.StreamResponse:
        query = " ".join(request.query.get("q", "").split())[:MAX_QUERY_CHARS]
        found = await self.library.search(query) if query else []
        lang = language(request)
        results = [views.search_result(f, lang) for f in found[:50]]
        return self.render(request, "search.html", query=query, results=results)

    async def share_page(self, request: web.Request) -> web.StreamResponse:
        urls = self.addresses(request)
        qr = qr_svg(urls[0]) if urls else ""
        return self.render(request, "share.html", urls=urls, qr=qr)

    def addresses(self, request: web.Request) -> list[str]:
        """Addresses others on the network can use: the one this browser used (unless it
        is this machine's loopback) and those the node or the command knows."""
        found = []
        host = request.host
        if _HOST.fullmatch(host) and not _LOOPBACK.match(host):
            found.append(f"http://{host}/")
        for url in self.share_urls() if self.share_urls else ():
            if url not in found:
                found.append(url)
        return found

    async def set_language(self, request: web.Request) -> web.StreamResponse:
        code = request.match_info["code"]
        if code not in i18n.LANGUAGES:
            raise NotFound
        target = request.query.get("next", "/")
        if not target.startswith("/") or not is_local_link(target) or "\n" in target:
            target = "/"
        response = web.HTTPSeeOther(target)
        response.headers.update(headers.COMMON)
        # A session cookie (gone when the browser closes): the only cookie the reader sets.
        response.set_cookie(i18n.COOKIE, code, path="/", httponly=True, samesite="Strict")
        raise response

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

    async def _bundle(self, request: web.Request) -> tuple[StoredBundle, Manifest]:
        shelf = await self.library.shelf()
        bundle = shelf.find(request.match_info["fp"], request.match_info["name"])
        if bundle is None:
            raise NotFound
        manifest = await self.library.manifest(bundle)
        if manifest is None:
            raise NotFound
        return bundle, manifest

    async def _file(self, request: web.Request) -> tuple[StoredBundle, Manifest, FileEntry]:
        bundle, manifest = await self._bundle(request)
        entry = find_file(manifest, request.match_info["path"])
        if entry is None:
            raise NotFound
        return bundle, manifest, entry

    async def bundle_page(self, request: web.Request) -> web.StreamResponse:
        bundle, manifest = await self._bundle(request)
        shelf = await self.library.shelf()
        lang = language(request)
        page = _page_number(request)
        start = (page - 1) * FILES_PER_PAGE
        files = manifest.files[start : start + FILES_PER_PAGE]
        if page > 1 and not files:
            raise NotFound
        base = views.bundle_url(bundle)
        publisher = shelf.publishers.get(bundle.publisher)
        return self.render(
            request,
            "bundle.html",
            bundle=bundle,
            info=views.bundle_info(bundle, lang),
            fresh=views.freshness(publisher.newest_signed if publisher else None, shelf.now, lang),
            start=views.start_file(manifest, lang),
            base=base,
            files=[views.file_row(base, f, lang) for f in files],
            newer=f"{base}?page={page - 1}" if page > 1 else "",
            older=f"{base}?page={page + 1}" if start + FILES_PER_PAGE < len(manifest.files) else "",
        )

    async def view_page(self, request: web.Request) -> web.StreamResponse:
        bundle, _manifest, entry = await self._file(request)
        lang = language(request)
        base = views.bundle_url(bundle)
        kind = kind_of(entry.media_type)
        row = views.file_row(base, entry, lang)
        content: object = ""
        too_big = False
        if kind in ("markdown", "text"):
            if entry.size > MAX_RENDERED_BYTES:
                too_big = True
            else:
                text = (await self._whole_file(entry)).decode("utf-8", errors="replace")
                content = (
                    render_markdown(text, entry.path, base + "f/") if kind == "markdown" else text
                )
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

    async def _whole_file(self, entry: FileEntry) -> bytes:
        parts = []
        for index in range(len(entry.chunks)):
            data = await self.library.read_chunk(entry, index)
            if data is None:
                raise Damaged
            parts.append(data)
        return b"".join(parts)

    # Publisher files

    async def publisher_file(self, request: web.Request) -> web.StreamResponse:
        _bundle, _manifest, entry = await self._file(request)
        return await send_publisher_file(request, self.library, entry)


def language(request: web.Request) -> str:
    return i18n.choose(request.cookies.get(i18n.COOKIE), request.headers.get("Accept-Language"))


def _page_number(request: web.Request) -> int:
    text = request.query.get("page", "1")
    if not text.isdigit() or not 1 <= int(text) <= 100_000:
        raise NotFound
    return int(text)


def install_reader(
    app: web.Application,
    home: Path,
    share_urls: ShareUrls | None = None,
    name: str | None = None,
    access_code: str | None = None,
) -> Reader:
    """Add the reader's routes, start-up and clean-up to ``app`` (its answers to paths no
    other route takes are the reader's 404 page), its pages titled ``name`` (else a
    neutral word: no page names the software), each asking first for ``access_code`` if
    one is given. Returns the Reader."""
    reader = Reader(home, share_urls, name, access_code)
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
) -> web.Application:
    """The reader as an application of its own (see the package docstring to mount it);
    every HTTP error it raises gets a short body of its own (``plain_errors``)."""
    app = web.Application(client_max_size=64 * 1024, middlewares=[plain_errors])
    install_reader(app, home, share_urls, name, access_code)
    return app
