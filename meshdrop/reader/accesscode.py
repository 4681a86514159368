"""The reader's optional access code (``--reader-code``): people who are not given the code
see nothing of the library, only a small page asking for it.

With a code set, every reader page (never the peer API under /peer/v1/ nor /node/, which
are not reader routes) first answers with that page. Its form POSTs the code to
``UNLOCK_PATH``; the right code sets a cookie holding a random token this process keeps in
memory (never the code: a cookie read off a seized phone does not give the code away) and
sends the browser back to the page it asked for, which must be a path on this node. The
token dies with the process, so a restarted reader asks again.

A publisher's article is a sandboxed document of an opaque origin (headers.py): the
browser sends its requests for images, styles and fonts without SameSite cookies. Its
page therefore names its own bundle's files with a pass (``grant``: ``?k=`` and an HMAC
of the file's path under the token), good for that one file while the token lives. The
cookie is SameSite=Lax, so that a tap on a link in an article (a top-level navigation)
still carries it.

Guessing is slowed per address: after ``MAX_TRIES`` wrong codes an address is refused for
``LOCK_SECONDS``; each further wrong code after that locks it again. IPv6 addresses count
per /64 (one host can use a whole /64). The table of addresses is bounded; a LAN gives one
attacker a few hundred IPv4 addresses at most, well below its size.

What this does not do: reader traffic is plain HTTP, so a watcher of the Wi-Fi still sees
the pages, and the code itself when it is sent (docs/THREATS.md, "The reader").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Protocol
from urllib.parse import quote, urlsplit

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from meshdrop.errors import UsageError
from meshdrop.reader import headers, i18n
from meshdrop.reader.readerids import ID_PATTERN

log = logging.getLogger("meshdrop.reader")

ENV = "MESHDROP_READER_CODE"
MIN_CHARS = 4
MAX_CHARS = 128
COOKIE = "access"
UNLOCK_PATH = "/unlock"
# What the code page itself needs: its stylesheet and icon, and the language links (they
# only set the language cookie and come back to a local page, which is again gated).
OPEN_PREFIXES = ("/static/", "/lang/")
GRANT = "k"  # the query parameter holding a file's pass
_FILE_PATH = re.compile(f"/b/{ID_PATTERN}/f/{ID_PATTERN}")
MAX_TRIES = 5
LOCK_SECONDS = 300.0
FORGET_SECONDS = 3600.0  # a quiet hour wipes an address's wrong tries
MAX_ADDRESSES = 4096
MAX_TARGET_CHARS = 2048

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Render(Protocol):
    """The reader's page renderer (``Reader.render``)."""

    def __call__(
        self, request: web.Request, template: str, status: int = 200, **values: object
    ) -> web.Response: ...


def check_code(code: str) -> str:
    """The code as it will be compared (NFC, surrounding spaces dropped), or a UsageError
    naming what is wrong with it (never echoing it: it may be on a shared screen)."""
    given = "--reader-code (or MESHDROP_READER_CODE)"
    cleaned = normal(code)
    if not cleaned:
        raise UsageError(f"{given} is empty: give a code of at least {MIN_CHARS} characters")
    if len(cleaned) < MIN_CHARS:
        raise UsageError(f"{given} is too short: use at least {MIN_CHARS} characters")
    if len(cleaned) > MAX_CHARS:
        raise UsageError(f"{given} is too long: use at most {MAX_CHARS} characters")
    if not cleaned.isprintable():
        raise UsageError(f"{given} holds control characters: use letters, digits and spaces")
    return cleaned


def normal(code: str) -> str:
    """What people mean by a code: the same letters however the keyboard composed them."""
    return unicodedata.normalize("NFC", code).strip()


def local_target(value: object) -> str:
    """``value`` if it is a path on this node (printable ASCII, starting with one "/", no
    scheme or host); else "/": the form's ``next`` must not send anyone elsewhere."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_TARGET_CHARS:
        return "/"
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if not all(0x21 <= ord(ch) < 0x7F for ch in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def address_key(remote: str | None) -> str:
    """Whom wrong tries are counted against: an IPv4 address, or an IPv6 /64."""
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return "?"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class GuessLimit:
    """Wrong tries per address, in a bounded table (least recently failed dropped first)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        tries: int = MAX_TRIES,
        capacity: int = MAX_ADDRESSES,
    ) -> None:
        self.clock = clock
        self.tries = tries
        self.capacity = capacity
        self._failed: OrderedDict[str, tuple[int, float]] = OrderedDict()  # count, last

    def wait(self, who: str) -> float:
        """Seconds until ``who`` may try again (0: now)."""
        found = self._current(who)
        if found is None or found[0] < self.tries:
            return 0.0
        return max(0.0, LOCK_SECONDS - (self.clock() - found[1]))

    def failed(self, who: str) -> None:
        count = self._current(who)
        self._failed.pop(who, None)
        self._failed[who] = ((count[0] if count else 0) + 1, self.clock())
        while len(self._failed) > self.capacity:
            self._failed.popitem(last=False)

    def succeeded(self, who: str) -> None:
        self._failed.pop(who, None)

    def __len__(self) -> int:
        return len(self._failed)

    def _current(self, who: str) -> tuple[int, float] | None:
        found = self._failed.get(who)
        if found is not None and self.clock() - found[1] >= FORGET_SECONDS:
            del self._failed[who]
            return None
        return found


class AccessGate:
    """Wraps each reader handler: a request passes with the token's cookie (or for what
    the code page needs), a POST to UNLOCK_PATH tries a code, anything else gets the
    code page."""

    def __init__(self, code: str, render: Render, limit: GuessLimit | None = None) -> None:
        self._digest = _digest(check_code(code))
        self._token = secrets.token_urlsafe(32)
        self._render = render
        self.limit = limit or GuessLimit()

    def wrap(self, handler: Handler) -> Handler:
        async def gated(request: web.Request) -> web.StreamResponse:
            if request.path == UNLOCK_PATH and request.method == "POST":
                return await self._unlock(request)
            if self._lets_through(request):
                return await handler(request)
            return self._ask(request, request.path_qs)

        return gated

    def grant(self, path: str) -> str:
        """``path`` (a publisher file's, /b/<bid>/f/<fid>) with its pass appended."""
        mac = hmac.new(self._token.encode(), path.encode(), hashlib.sha256).digest()[:16]
        return f"{path}?{GRANT}={base64.urlsafe_b64encode(mac).decode().rstrip('=')}"

    def _lets_through(self, request: web.Request) -> bool:
        if request.path.startswith(OPEN_PREFIXES):
            return True
        given = request.query.get(GRANT)
        if given is not None and _FILE_PATH.fullmatch(request.path):
            wanted = self.grant(request.path).rsplit("=", 1)[1]
            return hmac.compare_digest(given.encode(errors="replace"), wanted.encode())
        cookie = request.cookies.get(COOKIE, "")
        return hmac.compare_digest(cookie.encode(errors="replace"), self._token.encode())

    async def _unlock(self, request: web.Request) -> web.StreamResponse:
        try:
            form = await request.post()
        except (ValueError, HttpProcessingError):  # a body that is not a well-formed form
            return self._ask(request, "/", "code_wrong")
        target = local_target(form.get("next"))
        given = form.get("code")
        # From here to the answer nothing awaits: parallel tries from one address are
        # counted one after another, none slips past the limit.
        who = address_key(request.remote)
        if self.limit.wait(who) > 0:
            return self._refuse(request, target, who)
        if not isinstance(given, str) or not normal(given):
            return self._ask(request, target, "code_wrong")
        if not hmac.compare_digest(_digest(normal(given)), self._digest):
            self.limit.failed(who)
            if self.limit.wait(who) > 0:
                log.warning("reader: too many wrong codes from one address; refusing it a while")
                return self._refuse(request, target, who)
            return self._ask(request, target, "code_wrong")
        self.limit.succeeded(who)
        response = web.HTTPSeeOther(target)
        response.headers.update(headers.COMMON)
        # A session cookie, like the language one: nothing that outlives the browser.
        response.set_cookie(COOKIE, self._token, path="/", httponly=True, samesite="Lax")
        raise response

    def _refuse(self, request: web.Request, target: str, who: str) -> web.Response:
        response = self._ask(request, target, "code_wait", status=429)
        response.headers["Retry-After"] = str(max(1, round(self.limit.wait(who))))
        return response

    def _ask(
        self, request: web.Request, target: str, problem: str = "", status: int = 403
    ) -> web.Response:
        """The code page (403: nothing here without the code), in the reader's language,
        its language link coming back to it."""
        lang = i18n.choose(request.cookies.get(i18n.COOKIE), request.headers.get("Accept-Language"))
        other = "ko" if lang == "en" else "en"
        return self._render(
            request,
            "access.html",
            status,
            next=target,
            problem=problem,
            unlock=UNLOCK_PATH,
            switch_url=f"/lang/{other}?next={quote(target, safe='/')}",
        )


def _digest(code: str) -> bytes:
    """Codes are compared as digests: equal lengths, so the comparison takes the same time
    whatever the length of a guess."""
    return hashlib.sha256(code.encode()).digest()
