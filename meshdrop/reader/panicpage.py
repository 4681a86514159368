"""The reader's panic page (README, "Panic"): ``POST /p`` with the form field ``code``.

Off unless a panic code is set (`meshdrop panic-code`; looked up at each request, on a
worker thread); then the right code wipes the store (store/panic.py) and kills this
process at once (the browser sees the connection drop). Anything else, a wrong code, too
many tries (the report form's limit: 5 per address in 10 minutes), a GET, gets the
reader's ordinary "not found" page: the page does not show that it exists, nor whether a
code was set.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from meshdrop.reader.accesscode import address_key
from meshdrop.reader.writing import RATE_REPORTS, RATE_WINDOW, RateLimit
from meshdrop.store import panic, paniccode

if TYPE_CHECKING:
    from meshdrop.reader.app import Reader

PANIC_PATH = "/p"
FIELD = "code"
MAX_CODE_CHARS = 256


FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 4096


class PanicPage:
    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.limit = RateLimit(RATE_REPORTS, RATE_WINDOW)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        # Only a small urlencoded form is read: request.post() would spool a multipart
        # body's files to disk.
        small_form = (
            request.content_type == FORM_TYPE
            and request.content_length is not None
            and request.content_length <= MAX_FORM_BYTES
        )
        if small_form and self.limit.take(address_key(request.remote)):
            given = (await request.post()).get(FIELD)
            if isinstance(given, str) and len(given) <= MAX_CODE_CHARS:
                await asyncio.to_thread(_wipe_if_right, self.reader.home, given)
        return self.reader.message_page(request, "not_found_title", "not_found", 404)


def _wipe_if_right(home: Path, given: str) -> None:
    code = paniccode.load(home)
    if code is not None and code.matches(given):
        wipe_and_die(home)


def wipe_and_die(home: Path) -> None:
    panic.panic(home)
    os.kill(os.getpid(), signal.SIGKILL)


def panic_routes(reader: Reader) -> list[web.RouteDef]:
    """The panic page's route: it answers as every unknown page does unless a panic code
    is set when a request comes."""
    return [web.post(PANIC_PATH, PanicPage(reader).handle)]
