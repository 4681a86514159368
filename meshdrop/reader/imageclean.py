"""Files attached to a report, made safe to send (issue 18): what identifies a writer's
camera, phone, place or time is removed, or the file is refused.

The rule, by what the bytes are (never the name or the media type the browser declared):

- A JPEG, PNG or WebP picture, or a GIF (its first frame only; an animation is not kept),
  is decoded and its pixels alone encoded again (Pillow): no EXIF (GPS, camera, maker
  notes, thumbnails, times), XMP, IPTC, comments, text chunks or ICC profile survives.
  The EXIF orientation is applied first, so the picture stays upright; pixels with an
  embedded ICC profile are converted to sRGB, so colours stay close. A JPEG stays a JPEG
  (quality ``JPEG_QUALITY``), a PNG a PNG, a WebP a WebP (quality ``WEBP_QUALITY``, or
  lossless), a GIF becomes a PNG. Pixel size is kept.
- Plain text (UTF-8 without NUL or control characters other than tab, line breaks and form
  feed, and not markup) is kept as it is: it holds only what the writer wrote.
- Everything else is refused, naming the kind in words ("a PDF document cannot be cleaned
  of what identifies it; it was not attached"): PDFs, office files, videos, sound, SVG,
  web pages, archives, HEIC and other pictures. An empty file is refused too.
- A picture of more than ``MAX_PIXELS`` pixels is refused before its pixels are decoded
  (a decompression bomb); Pillow's own bomb check (``Image.MAX_IMAGE_PIXELS``) stays behind
  it. A picture that cannot be decoded whole (cut short, broken) is refused.

Names: a cleaned file gets a neutral name (``attachment_name``): a phone names a photo by
the moment it was taken, and a file's name can carry a person's.

What cleaning cannot remove: what a picture shows (a face, a window's view, a uniform), or
the noise pattern of its camera's sensor (docs/THREATS.md, "Reports (in progress)").

This is CPU work for up to a second on a small machine: run it off the event loop
(``asyncio.to_thread``).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

from PIL import Image, ImageCms

from meshdrop.errors import (
    AttachmentError,
    DamagedImageError,
    ImageTooLargeError,
    UncleanableKindError,
)

MAX_PIXELS = 40_000_000  # more than any photo whose JPEG fits the form's 8 MiB
JPEG_QUALITY = 88
WEBP_QUALITY = 88
TEXT_MEDIA_TYPE = "text/plain; charset=utf-8"
_TEXT_CONTROLS = frozenset(range(0x20)) - {0x09, 0x0A, 0x0C, 0x0D}
_MARKUP_LOOKAHEAD = 1024


@dataclass(frozen=True)
class CleanFile:
    """A file fit to send: its bytes, media type and name suffix (from what it is)."""

    media_type: str
    suffix: str
    data: bytes

    @property
    def is_picture(self) -> bool:
        return self.media_type.startswith("image/")


@dataclass(frozen=True)
class _Picture:
    words: str
    pillow_format: str  # what Pillow may open it as (no guessing among all its formats)
    save_as: str
    media_type: str
    suffix: str


JPEG = _Picture("a JPEG photo", "JPEG", "JPEG", "image/jpeg", ".jpg")
PNG = _Picture("a PNG picture", "PNG", "PNG", "image/png", ".png")
WEBP = _Picture("a WebP picture", "WEBP", "WEBP", "image/webp", ".webp")
GIF = _Picture("a GIF picture", "GIF", "PNG", "image/png", ".png")
TEXT = "plain text"

# Refused kinds, recognised by their first bytes so that the writer is told what the file
# is. The test for pictures cleaned comes first; the rest is in no particular order.
_PREFIXES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive or an office document"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an office document"),
    (b"{\\rtf", "an RTF document"),
    (b"II*\x00", "a TIFF or camera RAW picture"),
    (b"MM\x00*", "a TIFF or camera RAW picture"),
    (b"8BPS", "a Photoshop file"),
    (b"\x1aE\xdf\xa3", "a video"),
    (b"OggS", "a sound recording or video"),
    (b"fLaC", "a sound recording"),
    (b"ID3", "a sound recording"),
    (b"#!AMR", "a sound recording"),
    (b"Rar!\x1a\x07", "a compressed archive"),
    (b"7z\xbc\xaf\x27\x1c", "a compressed archive"),
    (b"\x1f\x8b", "a compressed archive"),
    (b"\x7fELF", "a program"),
    (b"MZ", "a program"),
)
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_SOUND_BRANDS = frozenset({b"M4A ", b"M4B "})
_UNKNOWN = "a file of a kind this node does not know"


def clean(data: bytes) -> CleanFile:
    """``data`` fit to send, or an AttachmentError saying why it cannot be."""
    kind = recognise(data)
    if isinstance(kind, _Picture):
        return _clean_picture(data, kind)
    if kind == TEXT:
        return CleanFile(TEXT_MEDIA_TYPE, ".txt", data)
    if not data:
        raise UncleanableKindError("the file is empty; it was not attached", "an empty file")
    raise UncleanableKindError(
        f"{kind} cannot be cleaned of what identifies it; it was not attached", kind
    )


def attachment_name(number: int, cleaned: CleanFile) -> str:
    """The name a cleaned file travels under: "photo-1.jpg", "text-2.txt"."""
    return f"{'photo' if cleaned.is_picture else 'text'}-{number}{cleaned.suffix}"


def recognise(data: bytes) -> _Picture | str:
    """What ``data`` is: a picture that can be cleaned, ``TEXT``, or a refused kind in
    words ("a PDF document")."""
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if data.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if data.startswith(b"RIFF") and len(data) >= 12:
        riff: dict[bytes, _Picture | str] = {
            b"WEBP": WEBP,
            b"WAVE": "a sound recording",
            b"AVI ": "a video",
        }
        return riff.get(data[8:12], _UNKNOWN)
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in _HEIF_BRANDS:
            return "a HEIC photo (the iPhone's own format)"
        if brand in _AVIF_BRANDS:
            return "an AVIF picture"
        return "a sound recording" if brand in _SOUND_BRANDS else "a video"
    if data.startswith(b"BM") and len(data) >= 6 and _le32(data[2:6]) == len(data):
        return "a BMP picture"
    for prefix, words in _PREFIXES:
        if data.startswith(prefix):
            return words
    return _text_kind(data)


def _text_kind(data: bytes) -> str:
    if not data or any(byte in _TEXT_CONTROLS for byte in data):
        return _UNKNOWN
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return _UNKNOWN
    head = text.lstrip("\ufeff \t\r\n\f")[:_MARKUP_LOOKAHEAD].lower()
    if head.startswith("<svg") or (head.startswith(("<?xml", "<!doctype svg")) and "<svg" in head):
        return "an SVG drawing"
    if head.startswith(("<!doctype html", "<html")) or "<html" in head:
        return "a web page"
    if head.startswith("<?xml"):
        return "an XML document"
    return TEXT


def _clean_picture(data: bytes, picture: _Picture) -> CleanFile:
    try:
        with Image.open(io.BytesIO(data), formats=[picture.pillow_format]) as opened:
            width, height = opened.size
            if width * height > MAX_PIXELS:
                raise _too_large(picture)
            opened.load()  # the first frame only: an animation's others are never decoded
            pixels = _upright(opened)
            pixels = _in_srgb(pixels, opened.info.get("icc_profile"))
            pixels = _plain_mode(pixels, picture, "transparency" in opened.info)
            # A new image: nothing of the opened one's info, EXIF or palette comes along.
            fresh = Image.new(pixels.mode, pixels.size)
            fresh.paste(pixels)
    except AttachmentError:
        raise
    except Image.DecompressionBombError as exc:
        raise _too_large(picture) from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        # Pillow's words for bytes it cannot decode (UnidentifiedImageError is an OSError).
        raise DamagedImageError(
            f"{picture.words} is damaged or cut short and cannot be cleaned; it was not attached",
            picture.words,
        ) from exc
    out = io.BytesIO()
    fresh.save(out, format=picture.save_as, **_save_options(picture, data))
    return CleanFile(picture.media_type, picture.suffix, out.getvalue())


def _too_large(picture: _Picture) -> ImageTooLargeError:
    return ImageTooLargeError(
        f"{picture.words} has too many pixels to clean (at most {MAX_PIXELS // 1_000_000} "
        "million); it was not attached",
        picture.words,
    )


# EXIF orientation -> the turn that makes the picture upright (as ImageOps.exif_transpose)
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ORIENTATION_TAG = 0x0112


def _upright(image: Image.Image) -> Image.Image:
    try:
        orientation = image.getexif().get(_ORIENTATION_TAG)
    except (OSError, SyntaxError, ValueError, KeyError, TypeError, IndexError, struct.error):
        orientation = None  # EXIF too broken to read: the picture is kept as stored
    turn = _UPRIGHT.get(orientation) if isinstance(orientation, int) else None
    return image.transpose(turn) if turn is not None else image


def _in_srgb(image: Image.Image, profile: object) -> Image.Image:
    """``image`` converted from its embedded colour profile to sRGB (the profile itself,
    which can carry names, is not kept). A profile that cannot be used is ignored."""
    if not isinstance(profile, bytes) or not profile or image.mode not in ("RGB", "RGBA", "CMYK"):
        return image
    try:
        converted = ImageCms.profileToProfile(
            image,
            ImageCms.ImageCmsProfile(io.BytesIO(profile)),
            ImageCms.createProfile("sRGB"),
            outputMode="RGBA" if image.mode == "RGBA" else "RGB",
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return image
    return converted if converted is not None else image


def _plain_mode(image: Image.Image, picture: _Picture, transparent: bool) -> Image.Image:
    """``image`` in a mode its output format stores without a palette or extra data."""
    keep = {
        "JPEG": ("L", "RGB"),
        "PNG": ("1", "L", "LA", "RGB", "RGBA"),
        "WEBP": ("RGB", "RGBA"),
    }[picture.save_as]
    if image.mode in keep:
        return image
    see_through = transparent or image.mode in ("RGBA", "LA", "PA", "RGBa", "La")
    if image.mode == "1" and "L" in keep:
        return image.convert("L")
    return image.convert("RGBA" if see_through and "RGBA" in keep else "RGB")


def _save_options(picture: _Picture, original: bytes) -> dict[str, object]:
    if picture is JPEG:
        return {"quality": JPEG_QUALITY}
    if picture is WEBP:
        return {"lossless": _lossless_webp(original), "quality": WEBP_QUALITY}
    return {}


def _lossless_webp(data: bytes) -> bool:
    """Whether a WebP's image data is lossless ("VP8L"): kept so when encoded again."""
    at = 12
    while at + 8 <= len(data):
        chunk, size = data[at : at + 4], _le32(data[at + 4 : at + 8])
        if chunk in (b"VP8 ", b"VP8L"):
            return chunk == b"VP8L"
        if chunk == b"ANMF":  # an animation frame: its image data is the next chunk inside
            at += 8 + 16
            continue
        at += 8 + size + (size & 1)
    return False


def _le32(data: bytes) -> int:
    return int.from_bytes(data, "little")
