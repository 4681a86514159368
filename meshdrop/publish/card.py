"""The publisher card: a printable page with the publisher's name, its whole fingerprint
and a QR code of it, which a node owner compares with (or feeds to) `trust add`.

The QR code and the card's SVG ``<metadata id="meshdrop-publisher">`` carry one text form,
``meshdrop-publisher:<FINGERPRINT>`` (docs/FORMAT.md, "Publisher card")."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import segno

from meshdrop.core.keys import parse_fingerprint
from meshdrop.errors import FormatError, UsageError
from meshdrop.fs import atomic_write, read_small_file

CARD_SCHEME = "meshdrop-publisher:"
CARD_ELEMENT_ID = "meshdrop-publisher"
MAX_CARD_BYTES = 256 * 1024
CARD_MODE = 0o644
_FINGERPRINT = re.compile(r"[A-Z2-7]{4}(?:-[A-Z2-7]{4}){7}")
_WIDTH = 360
_QR_SCALE = 6
_QR_TOP = 84


@dataclass(frozen=True)
class CardFiles:
    svg: Path
    png: Path


def card_text(fingerprint: str) -> str:
    """What the QR code and the SVG's metadata say: ``meshdrop-publisher:ABCD-...``."""
    return f"{CARD_SCHEME}{fingerprint}"


def card_qr(fingerprint: str) -> segno.QRCode:
    return segno.make(card_text(fingerprint), error="m", micro=False)


def card_svg(name: str, fingerprint: str) -> str:
    """The card as a standalone SVG: no fonts, images or links from elsewhere."""
    qr = card_qr(fingerprint)
    qr_size = qr.symbol_size(scale=_QR_SCALE)[0]
    groups = fingerprint.split("-")
    fp_top = _QR_TOP + qr_size + 34
    height = fp_top + 96
    lines = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_WIDTH} {height}">',
        f'<metadata id="{CARD_ELEMENT_ID}">{card_text(fingerprint)}</metadata>',
        f"<title>meshdrop publisher {escape(name)}</title>",
        f'<rect width="{_WIDTH}" height="{height}" fill="#fff" stroke="#000"/>',
        '<text x="50%" y="30" text-anchor="middle" font-family="sans-serif" font-size="14">'
        "meshdrop publisher</text>",
        '<text x="50%" y="62" text-anchor="middle" font-family="sans-serif" font-size="22" '
        f'font-weight="bold">{escape(name)}</text>',
        f'<g transform="translate({(_WIDTH - qr_size) // 2},{_QR_TOP})">'
        f"{qr.svg_inline(scale=_QR_SCALE)}</g>",
    ]
    for row, part in enumerate((groups[:4], groups[4:])):
        lines.append(
            f'<text x="50%" y="{fp_top + row * 30}" text-anchor="middle" '
            f'font-family="monospace" font-size="22">{escape(" ".join(part))}</text>'
        )
    lines.append(
        f'<text x="50%" y="{fp_top + 64}" text-anchor="middle" font-family="sans-serif" '
        'font-size="12">Compare every group before you trust this publisher.</text>'
    )
    lines.append("</svg>")
    return "\n".join(lines) + "\n"


def card_paths(out: Path) -> CardFiles:
    """``out`` with .svg and with .png (an .svg or .png suffix given is replaced)."""
    base = out.with_suffix("") if out.suffix.lower() in (".svg", ".png") else out
    return CardFiles(Path(f"{base}.svg"), Path(f"{base}.png"))


def write_card(name: str, fingerprint: str, out: Path) -> CardFiles:
    """Write the card as SVG (name, fingerprint, QR code) and as PNG (the QR code alone:
    segno draws no text), each crash-safely, making their folder if missing."""
    files = card_paths(out)
    try:
        files.svg.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot make the folder {files.svg.parent} ({exc.strerror})") from exc
    atomic_write(files.svg, card_svg(name, fingerprint).encode("utf-8"), CARD_MODE)
    png = io.BytesIO()
    card_qr(fingerprint).save(png, kind="png", scale=8)
    atomic_write(files.png, png.getvalue(), CARD_MODE)
    return files


def read_card_fingerprint(path: Path) -> str:
    """The fingerprint a card's SVG carries in its metadata; FormatError for anything
    else (another SVG, a damaged card, a PNG)."""
    data = read_small_file(path, MAX_CARD_BYTES, "publisher card")
    not_a_card = f"{path} is not a meshdrop publisher card (give the card's .svg file)"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(not_a_card) from exc
    # Entities could make a small file expand to gigabytes; a card never has them.
    if re.search(r"<!(DOCTYPE|ENTITY)", text, re.IGNORECASE):
        raise FormatError(not_a_card)
    try:
        root = ElementTree.fromstring(text)  # noqa: S314 (no DTD, so no entities: above)
    except ElementTree.ParseError as exc:
        raise FormatError(not_a_card) from exc
    found = [
        element.text or ""
        for element in root.iter()
        if element.tag.rsplit("}", 1)[-1] == "metadata" and element.get("id") == CARD_ELEMENT_ID
    ]
    if len(found) != 1 or not found[0].strip().startswith(CARD_SCHEME):
        raise FormatError(not_a_card)
    fingerprint = parse_fingerprint(found[0].strip()[len(CARD_SCHEME) :])
    if not _FINGERPRINT.fullmatch(fingerprint):
        raise FormatError(f"{path} is a damaged publisher card: its fingerprint is not whole")
    return fingerprint
