"""The article is the page: an HTML article's view (``/b/<bid>/v/<fid>``) is the
publisher's document itself, sanitized and pointed at the bundle's opaque URLs
(sanitize.py), with the reader's small bar at the top (back to the bundle, its title,
its publisher, verified) and the download link apart at the end. It is served like any
publisher file, under the bundle's sandbox CSP: no frame, no fixed height, no script."""

from __future__ import annotations

import asyncio

import jinja2
from aiohttp import web

from meshdrop.core.manifest import FileEntry
from meshdrop.reader import headers, i18n
from meshdrop.reader.library import Library, ShelvedBundle
from meshdrop.reader.links import BundleLinks
from meshdrop.reader.sanitize import rewrite_html
from meshdrop.reader.sending import read_whole

BAR_TEMPLATE = "articlebar.html"


async def article_page(
    library: Library,
    bar: jinja2.Template,
    bundle: ShelvedBundle,
    entry: FileEntry,
    links: BundleLinks,
    csp: str,
    values: dict[str, object],
) -> web.Response:
    """The page for the HTML file ``entry`` of ``bundle``; ``values`` are the bar's
    (lang, t, site, back, download), beside the bundle's own."""
    t = i18n.STRINGS[str(values["lang"])]
    shown = {
        **values,
        "t": t,
        "title": bundle.title or bundle.name,
        "publisher": bundle.publisher_name,
        "size": i18n.human_size(entry.size),
    }
    top, end = bar.render(part="top", **shown), bar.render(part="end", **shown)
    source = await read_whole(library, entry)
    body = await asyncio.to_thread(rewrite_html, source, entry.path, links, top, end)
    response = web.Response(body=body, content_type="text/html", charset="utf-8")
    response.headers.update(headers.PUBLISHER)
    response.headers["Content-Security-Policy"] = csp
    response.headers["Accept-Ranges"] = "none"
    response.headers["Vary"] = "Accept-Language, Cookie"
    return response
