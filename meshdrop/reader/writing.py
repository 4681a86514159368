"""Writing to a publisher from the reader, with nothing but a browser (issue 18): the
"write to <publisher>" page, its form's sending, and the receipt code's check.

- ``GET /w/<id>``: the form, for a trusted publisher with a usable report key
  (store/reportkeys.py). ``<id>`` is opaque (readerids.publisher_id): no URL names the
  publisher. The page says, before anything is sent, which protection the link gives
  (``protection``); over plain HTTP from another device the form is not offered unless
  the owner declared the link controlled (``--reports-over-http``).
- ``POST /w/<id>``: the form read in memory under caps (reportform.py, never
  ``request.post()``, which spools files to disk), files cleaned (imageclean.py) and the
  report sealed (core/drops.py, stamp included) on worker threads, stored as a drop
  (store/drops.py), then the receipt code shown once. At most ``RATE_REPORTS`` forms
  that arrive whole per client address (an IPv6 /64) in ``RATE_WINDOW`` seconds.
- ``GET /r`` and ``POST /r``: a receipt code typed into a form (in a POST body, so it
  stays out of the browser's history) -> "waiting", "delivered" or "unknown".
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from aiohttp import web

from meshdrop.core.drops import STAMP_BITS, drop_id, seal
from meshdrop.core.reportkeys import ReportKey
from meshdrop.core.reports import (
    RECEIPT_ALPHABET,
    RECEIPT_CHARS,
    RECEIPT_RANDOM_BYTES,
    Attachment,
    Report,
    make_receipt,
)
from meshdrop.errors import (
    AttachmentError,
    DamagedImageError,
    DropError,
    ImageTooLargeError,
    ReportKeyExpiredError,
    ReportTooLargeError,
)
from meshdrop.reader import headers, i18n, imageclean, readerids, sealedsend
from meshdrop.reader.accesscode import address_key
from meshdrop.reader.reportform import (
    FILES_MAX_BYTES,
    MAX_FILES,
    TEXT_MAX_BYTES,
    FormRefused,
    Submission,
    read_submission,
)
from meshdrop.reader.requestinfo import origin
from meshdrop.store.drops import HERE, DropStore

if TYPE_CHECKING:
    from meshdrop.reader.app import Reader
    from meshdrop.reader.library import Shelf

WRITE_PATH = f"/w/{{pid:{readerids.ID_PATTERN}}}"
RECEIPT_PATH = "/r"
LIFETIME = 90 * 86_400  # a drop's expiry: 90 days after it is sealed
RATE_REPORTS = 5
RATE_WINDOW = 600.0  # seconds
SEND_SLOTS = 2  # forms read, cleaned and sealed at once (each holds up to 9 MiB)
TRACKED_ADDRESSES = 4096  # the rate limit forgets the oldest addresses beyond this
# "This machine": the only peers whose words never cross a network.
THIS_MACHINE = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})
_FORM_TYPE = "application/x-www-form-urlencoded"


class Protection(Enum):
    """What keeps the form's plaintext from others on its way to the node."""

    HTTPS = "https"  # the reader's TLS
    LOCAL = "local"  # a browser on the node's own machine: nothing crosses a network
    HOTSPOT = "hotspot"  # plain HTTP on a link the owner declared controlled
    NONE = "none"  # plain HTTP from another device: the form is not offered


def protection(request: web.Request, over_http: bool) -> Protection:
    if request.secure:
        return Protection.HTTPS
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if peer and str(peer[0]) in THIS_MACHINE:
        return Protection.LOCAL
    return Protection.HOTSPOT if over_http else Protection.NONE


@dataclass(frozen=True)
class Recipient:
    fingerprint: str
    name: str
    key: ReportKey
    url: str


class RateLimit:
    """At most ``count`` events per address in ``window`` seconds."""

    def __init__(self, count: int, window: float) -> None:
        self.count = count
        self.window = window
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def full(self, who: str) -> bool:
        times = self._seen.get(who)
        if times is None:
            return False
        cutoff = time.monotonic() - self.window
        while times and times[0] <= cutoff:
            times.popleft()
        return len(times) >= self.count

    def take(self, who: str) -> bool:
        """Count one event for ``who``; False (nothing counted) if the limit is reached."""
        if self.full(who):
            return False
        self._seen.setdefault(who, deque()).append(time.monotonic())
        self._seen.move_to_end(who)
        while len(self._seen) > TRACKED_ADDRESSES:
            self._seen.popitem(last=False)
        return True


class _FileRefused(Exception):
    def __init__(self, name: str, error: AttachmentError) -> None:
        super().__init__(str(error))
        self.name = name
        self.error = error


class Writing:
    """The handlers of the report pages, for ``reader`` (routes in app.py)."""

    def __init__(self, reader: Reader, over_http: bool = False) -> None:
        self.reader = reader
        self.over_http = over_http
        self.sending = asyncio.Semaphore(SEND_SLOTS)
        self.limit = RateLimit(RATE_REPORTS, RATE_WINDOW)
        self._recipients: dict[str, Recipient] = {}
        self._for_shelf: Shelf | None = None
        self._drops: DropStore | None = None
        self._drops_lock = threading.Lock()

    # Who can be written to

    async def recipients(self, shelf: Shelf | None = None) -> tuple[dict[str, Recipient], Shelf]:
        """Recipients by page id, computed again when the shelf changes (from what the
        shelf loaded with it: no page waits on the store for them), and the shelf:
        ``shelf`` if the page has it already, else the library's."""
        if shelf is None:
            shelf = await self.reader.library.shelf()
        if shelf is not self._for_shelf:
            found = {}
            for fingerprint, usable in shelf.report_keys.items():
                trusted = shelf.publishers.get(fingerprint)
                if trusted is None or not usable:
                    continue
                pid = readerids.publisher_id(shelf.reader_key, fingerprint)
                newest = max(usable, key=lambda k: (k.sequence, k.created))
                found[pid] = Recipient(fingerprint, trusted.name, newest, f"/w/{pid}")
            self._recipients, self._for_shelf = found, shelf
        return self._recipients, shelf

    async def links(self, shelf: Shelf | None = None) -> dict[str, str]:
        """Fingerprint -> the URL of its write page, for the home and bundle pages."""
        found, _shelf = await self.recipients(shelf)
        return {r.fingerprint: r.url for r in found.values()}

    async def without_content(
        self, shown: set[str], shelf: Shelf | None = None
    ) -> list[tuple[str, str]]:
        """(name, write URL) of publishers one can write to whose content is not among
        ``shown`` (fingerprints): a publisher may publish only its report key."""
        found, _shelf = await self.recipients(shelf)
        return sorted((r.name, r.url) for r in found.values() if r.fingerprint not in shown)

    async def _recipient(self, request: web.Request) -> tuple[Recipient, int] | None:
        found, shelf = await self.recipients()
        recipient = found.get(request.match_info["pid"])
        return (recipient, shelf.now) if recipient else None

    # Pages

    async def form_page(self, request: web.Request) -> web.StreamResponse:
        found = await self._recipient(request)
        if found is None:
            return self._not_found(request)
        return self._form(request, found[0])

    async def send(self, request: web.Request) -> web.StreamResponse:
        found = await self._recipient(request)
        if found is None:
            return self._not_found(request)
        recipient, now = found
        if sealedsend.is_sealed(request):  # sealed in the browser: any link may carry it
            return await self._send_sealed(request, now)
        if protection(request, self.over_http) is Protection.NONE:
            return self._form(request, recipient, status=403)
        who = address_key(request.remote)
        if self.limit.full(who):
            return self._too_many(request)
        t = self._strings(request)
        try:
            submission = await read_submission(request)
        except FormRefused as exc:
            return self._form(request, recipient, exc.status, t[exc.key])
        if not submission.text.strip() and not submission.attachments:
            return self._form(request, recipient, 400, t["report_empty"])
        if not self.limit.take(who):  # taken here: another form may have come meanwhile
            return self._too_many(request)
        try:
            attachments = await asyncio.to_thread(_cleaned, submission)
        except _FileRefused as exc:
            error = _file_refusal(exc, t, i18n.kind_words(exc.error.kind, self._lang(request)))
            return self._form(request, recipient, 422, error, submission.text)
        receipt = make_receipt(secrets.token_bytes(RECEIPT_RANDOM_BYTES))
        report = Report(submission.text, attachments, receipt)
        try:
            blob = await asyncio.to_thread(seal, report, recipient.key, now + LIFETIME, now)
        except ReportTooLargeError:
            return self._form(request, recipient, 413, t["report_files_too_big"], report.text)
        except ReportKeyExpiredError:
            return self._not_found(request)
        await asyncio.to_thread(self._store, blob, receipt, now)
        return self.reader.render(request, "receipt.html", receipt=receipt, state="")

    async def _send_sealed(self, request: web.Request, now: int) -> web.StreamResponse:
        """A drop sealed by seal.js: checked like any drop (DropStore.add), never opened."""
        who = address_key(request.remote)
        if self.limit.full(who):
            return self._too_many(request)
        try:
            receipt = sealedsend.receipt_of(request)
            blob = await sealedsend.read_drop(request)
        except sealedsend.SealedRefused as exc:
            refused = exc.status
            return self.reader.message_page(request, "drop_refused_title", "drop_refused", refused)
        if not self.limit.take(who):
            return self._too_many(request)
        try:
            await asyncio.to_thread(self._store, blob, receipt, now)
        except DropError:
            return self.reader.message_page(request, "drop_refused_title", "drop_refused", 422)
        return self.reader.render(request, "receipt.html", receipt=receipt, state="")

    async def receipt_form(self, request: web.Request) -> web.StreamResponse:
        return self.reader.render(request, "receipt.html", receipt="", state="")

    async def receipt_check(self, request: web.Request) -> web.StreamResponse:
        # A small urlencoded form only: request.post() would spool a multipart's files.
        code = ""
        if request.content_type == _FORM_TYPE:
            given = (await request.post()).get("code", "")
            code = _normal_code(given) if isinstance(given, str) else ""
        if len(code) != RECEIPT_CHARS or not set(code) <= RECEIPT_ALPHABET:
            return self.reader.render(request, "receipt.html", 400, receipt="", state="bad")
        state = await asyncio.to_thread(self._receipt_state, code)
        return self.reader.render(request, "receipt.html", receipt="", state=state)

    # Shaping

    def _form(
        self,
        request: web.Request,
        recipient: Recipient,
        status: int = 200,
        error: str = "",
        text: str = "",
    ) -> web.Response:
        script = self.reader.assets["seal.js"].url
        response = self.reader.render(
            request,
            "write.html",
            status,
            recipient=recipient,
            protection=protection(request, self.over_http).value,
            error=error,
            text=text,
            caps={
                "text_kib": TEXT_MAX_BYTES // 1024,
                "files": MAX_FILES,
                "files_mib": FILES_MAX_BYTES // (1024 * 1024),
            },
            sealing={  # what seal.js needs to seal in the browser (static/seal.js)
                "script": script,
                "suite": recipient.key.suite.value,
                "key": base64.b64encode(recipient.key.public_key).decode("ascii"),
                "expiry": int(time.time()) + LIFETIME,
                "stamp_bits": STAMP_BITS,
            },
        )
        response.headers["Content-Security-Policy"] = headers.write_page_csp(
            origin(request), script
        )
        return response

    def _too_many(self, request: web.Request) -> web.Response:
        response = self.reader.message_page(request, "write_wait_title", "write_wait", 429)
        response.headers["Retry-After"] = str(int(RATE_WINDOW))
        return response

    def _not_found(self, request: web.Request) -> web.Response:
        return self.reader.message_page(request, "not_found_title", "not_found", 404)

    def _lang(self, request: web.Request) -> str:
        return i18n.choose(request.cookies.get(i18n.COOKIE), request.headers.get("Accept-Language"))

    def _strings(self, request: web.Request) -> dict[str, str]:
        return dict(i18n.STRINGS[self._lang(request)])

    # The drops folder (threads)

    def _drop_store(self) -> DropStore:
        if self._drops is None:
            self._drops = DropStore(self.reader.home)
        return self._drops

    def _store(self, blob: bytes, receipt: str, now: int) -> None:
        with self._drops_lock:
            drops = self._drop_store()
            drops.add(blob, now, HERE)
            drops.note_receipt(receipt, drop_id(blob))

    def _receipt_state(self, code: str) -> str:
        with self._drops_lock:
            return self._drop_store().receipt_state(code)


def _cleaned(submission: Submission) -> tuple[Attachment, ...]:
    """Each chosen file cleaned of what identifies it (imageclean.py), under a neutral
    name; _FileRefused names the first that cannot be."""
    cleaned = []
    for number, chosen in enumerate(submission.attachments, start=1):
        try:
            clean = imageclean.clean(chosen.data)
        except AttachmentError as exc:
            raise _FileRefused(chosen.name or str(number), exc) from exc
        cleaned.append(
            Attachment(imageclean.attachment_name(number, clean), clean.media_type, clean.data)
        )
    return tuple(cleaned)


def _file_refusal(refused: _FileRefused, t: dict[str, str], kind: str) -> str:
    if isinstance(refused.error, ImageTooLargeError):
        key = "attach_too_large"
    elif isinstance(refused.error, DamagedImageError):
        key = "attach_damaged"
    elif refused.error.kind == "an empty file":
        key = "attach_empty"
    else:
        key = "attach_uncleanable"
    return t[key].format(name=refused.name, kind=kind)


def _normal_code(given: str) -> str:
    """A typed receipt code as stored: upper case, without spaces or dashes."""
    return "".join(ch for ch in given.upper() if ch not in " -\t")[:32]
