"""A report: what a writer sends a publisher, before it is sealed into a drop
(docs/FORMAT.md, "Drops", the plaintext). Text, a few attachments and the receipt code
the writer was shown. Caps are checked both when a report is made and when one is read.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from meshdrop.core import codec
from meshdrop.core.schema import Fields
from meshdrop.errors import DropContentError, FormatError, ReportTooLargeError

TEXT_MAX_BYTES = 64 * 1024  # UTF-8 bytes of the text
ATTACHMENTS_MAX = 8
ATTACHMENTS_MAX_BYTES = 8 * 1024 * 1024  # the data of all attachments together
NAME_MAX_CHARS = 255
MEDIA_TYPE_MAX_CHARS = 127
RECEIPT_CHARS = 8
RECEIPT_RANDOM_BYTES = 5  # 40 bits: exactly 8 base32 characters
RECEIPT_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
# Generous for the msgpack framing of a report at its caps.
MAX_ENCODED_BYTES = TEXT_MAX_BYTES + ATTACHMENTS_MAX_BYTES + 8 * 1024

_FIELDS = frozenset({"text", "attachments", "receipt", "name", "media_type", "data"})
_LIMITS = codec.Limits(
    max_bytes=MAX_ENCODED_BYTES,
    max_depth=3,
    max_items=64,
    max_containers=16,
    max_str=TEXT_MAX_BYTES,
    max_bin=ATTACHMENTS_MAX_BYTES,
    keys=_FIELDS,
)


@dataclass(frozen=True)
class Attachment:
    name: str  # data, never a path: whoever writes it to disk makes a safe name
    media_type: str
    data: bytes = b""

    def __repr__(self) -> str:  # never the bytes of a photo in a log
        return f"Attachment({self.name!r}, {self.media_type!r}, {len(self.data)} bytes)"


@dataclass(frozen=True)
class Report:
    text: str
    attachments: tuple[Attachment, ...]
    receipt: str

    def __repr__(self) -> str:  # never a writer's words in a log
        return f"Report(receipt={self.receipt}, {len(self.attachments)} attachments)"


def make_receipt(randomness: bytes) -> str:
    """The 8-character base32 receipt code of 5 random bytes from the caller."""
    if len(randomness) != RECEIPT_RANDOM_BYTES:
        raise ValueError(f"a receipt code takes {RECEIPT_RANDOM_BYTES} random bytes")
    return base64.b32encode(randomness).decode("ascii")


def check_report(report: Report) -> None:
    """Refuse (ReportTooLargeError, or FormatError for a bad name or receipt) a report
    that does not fit the caps, before any work is spent sealing it."""
    text_bytes = len(report.text.encode("utf-8"))
    if text_bytes > TEXT_MAX_BYTES:
        raise ReportTooLargeError(
            f"the report's text is {text_bytes} bytes, over the limit of {TEXT_MAX_BYTES}"
        )
    if len(report.attachments) > ATTACHMENTS_MAX:
        raise ReportTooLargeError(
            f"the report has {len(report.attachments)} files, over the limit of {ATTACHMENTS_MAX}"
        )
    total = sum(len(a.data) for a in report.attachments)
    if total > ATTACHMENTS_MAX_BYTES:
        raise ReportTooLargeError(
            f"the report's files come to {total} bytes, over the limit of {ATTACHMENTS_MAX_BYTES}"
        )
    for attachment in report.attachments:
        if not 1 <= len(attachment.name) <= NAME_MAX_CHARS:
            raise FormatError(f"a file name must have 1 to {NAME_MAX_CHARS} characters")
        if not 1 <= len(attachment.media_type) <= MEDIA_TYPE_MAX_CHARS:
            raise FormatError(f"a media type must have 1 to {MEDIA_TYPE_MAX_CHARS} characters")
    if len(report.receipt) != RECEIPT_CHARS or not set(report.receipt) <= RECEIPT_ALPHABET:
        raise FormatError(f"a receipt code is {RECEIPT_CHARS} characters of A-Z and 2-7")


def encode_report(report: Report) -> bytes:
    check_report(report)
    return codec.pack(
        {
            "text": report.text,
            "attachments": [
                {"name": a.name, "media_type": a.media_type, "data": a.data}
                for a in report.attachments
            ],
            "receipt": report.receipt,
        }
    )


def decode_report(data: bytes) -> Report:
    """The report in decrypted bytes; DropContentError if they break any rule."""
    what = "the report inside the drop"
    try:
        fields = Fields(codec.unpack(data, _LIMITS, what), what)
        attachments = []
        for i, item in enumerate(fields.map_list("attachments", 0, ATTACHMENTS_MAX)):
            af = Fields(item, f"file {i + 1} of {what}")
            attachments.append(
                Attachment(
                    af.text("name", NAME_MAX_CHARS, min_chars=1),
                    af.text("media_type", MEDIA_TYPE_MAX_CHARS, min_chars=1),
                    af.binary("data", None, max_len=ATTACHMENTS_MAX_BYTES),
                )
            )
            af.done()
        report = Report(
            fields.text("text", TEXT_MAX_BYTES), tuple(attachments), fields.text("receipt", 8)
        )
        fields.done()
        check_report(report)
    except (FormatError, ReportTooLargeError) as exc:
        raise DropContentError(str(exc)) from exc
    return report
