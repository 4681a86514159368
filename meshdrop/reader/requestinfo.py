"""What the reader reads from a request (its language, the page asked for, the origin
the browser used) and the one 404 answer; and the redirect that sets a preference."""

from __future__ import annotations

import re

from aiohttp import web

from meshdrop.reader import headers, i18n
from meshdrop.reader.render import is_local_link

HOST = re.compile(r"[A-Za-z0-9.\-]{1,253}(:\d{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:\d{1,5})?")
LOOPBACK = re.compile(r"^(localhost|127\.[\d.]+|\[::1\])(:\d+)?$")


class NotFound(Exception):
    """Answer the one 404 page: the same for never-existed, withdrawn and expired."""


def origin(request: web.Request) -> str | None:
    """``scheme://host[:port]`` as this browser reached the node, for the per-bundle CSP;
    None (the CSP then says 'self') if the Host header is not a plain host[:port]: it is
    written into a header, where anything else could add directives or break it."""
    host = request.host
    return f"{request.scheme}://{host}" if HOST.fullmatch(host) else None


def language(request: web.Request) -> str:
    return i18n.choose(request.cookies.get(i18n.COOKIE), request.headers.get("Accept-Language"))


def back_with_cookie(request: web.Request, name: str, value: str) -> web.HTTPSeeOther:
    """Back to the local page in ``next`` with a preference set (the reader's cookies are
    session cookies, gone when the browser closes: the language and the text size)."""
    target = request.query.get("next", "/")
    if not target.startswith("/") or not is_local_link(target) or "\n" in target:
        target = "/"
    response = web.HTTPSeeOther(target)
    response.headers.update(headers.COMMON)
    # Lax, not Strict: a tap on a link in an article (a sandboxed page of an opaque
    # origin, headers.py) is a cross-site navigation to the browser.
    response.set_cookie(name, value, path="/", httponly=True, samesite="Lax")
    return response


def page_number(request: web.Request) -> int:
    text = request.query.get("page", "1")
    if not text.isdigit() or not 1 <= int(text) <= 100_000:
        raise NotFound
    return int(text)
