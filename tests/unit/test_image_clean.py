"""reader/imageclean.py: pictures re-encoded with nothing but their pixels, plain text kept,
every other kind refused by name. Each input is made here with Pillow and checked by
parsing the output and by searching its bytes for what was hidden in the input."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator

import pytest
from PIL import ExifTags, Image, ImageCms, PngImagePlugin

from meshdrop.errors import (
    AttachmentError,
    DamagedImageError,
    ImageTooLargeError,
    UncleanableKindError,
)
from meshdrop.reader import imageclean
from meshdrop.reader.imageclean import CleanFile, attachment_name, clean

RED, BLUE = (220, 20, 20), (20, 20, 220)
LATITUDE = (37.0, 33.0, 59.88)
LONGITUDE = (126.0, 58.0, 41.2)
# Strings hidden in the inputs; none may be found in a cleaned file.
SECRETS = (
    b"SecretMaker",
    b"SecretModel",
    b"MAKERNOTE-SECRET",
    b"2024:03:12 14:30:22",
    b"XMP-SECRET",
    b"COMMENT-SECRET",
    b"THUMB-SECRET",
    b"Exif\x00\x00",
)


def two_halves(size: tuple[int, int] = (64, 32)) -> Image.Image:
    """Red left half, blue right half: which way it was turned can be seen."""
    image = Image.new("RGB", size, BLUE)
    image.paste(RED, (0, 0, size[0] // 2, size[1]))
    return image


def noisy(size: tuple[int, int]) -> Image.Image:
    """A picture that does not compress to nothing (for cutting a file short)."""
    return Image.frombytes(
        "RGB", size, bytes((i * 7919) % 251 for i in range(size[0] * size[1] * 3))
    )


def thumbnail_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 8), (0, 200, 0)).save(out, "JPEG", comment=b"THUMB-SECRET")
    return out.getvalue()


def camera_exif(orientation: int) -> bytes:
    """EXIF as a phone writes it: camera, time, GPS, a maker note, and a thumbnail (IFD1,
    appended by hand: Pillow does not write IFD1)."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make] = "SecretMaker"
    exif[ExifTags.Base.Model] = "SecretModel"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = LATITUDE
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = LONGITUDE
    details = exif.get_ifd(ExifTags.IFD.Exif)
    details[ExifTags.Base.MakerNote] = b"MAKERNOTE-SECRET-0123456789"
    details[ExifTags.Base.DateTimeOriginal] = "2024:03:12 14:30:22"
    return with_thumbnail(exif.tobytes(), thumbnail_jpeg())


def with_thumbnail(raw: bytes, thumb: bytes) -> bytes:
    """``raw`` (b"Exif\\0\\0" + TIFF) with an IFD1 holding ``thumb`` linked after IFD0."""
    tiff = bytearray(raw[6:])
    order = "<" if tiff[:2] == b"II" else ">"
    ifd0 = struct.unpack(order + "I", tiff[4:8])[0]
    count = struct.unpack(order + "H", tiff[ifd0 : ifd0 + 2])[0]
    link = ifd0 + 2 + 12 * count
    ifd1 = len(tiff)
    struct.pack_into(order + "I", tiff, link, ifd1)
    thumb_at = ifd1 + 2 + 2 * 12 + 4
    tiff += struct.pack(order + "H", 2)
    tiff += struct.pack(order + "HHII", 0x0201, 4, 1, thumb_at)  # JPEGInterchangeFormat
    tiff += struct.pack(order + "HHII", 0x0202, 4, 1, len(thumb))  # ...Length
    tiff += struct.pack(order + "I", 0) + thumb
    return raw[:6] + bytes(tiff)


def phone_jpeg(orientation: int = 6) -> bytes:
    out = io.BytesIO()
    two_halves().save(
        out,
        "JPEG",
        quality=95,
        exif=camera_exif(orientation),
        comment=b"COMMENT-SECRET",
        xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/">XMP-SECRET</x:xmpmeta>',
        icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),
    )
    return out.getvalue()


def jpeg_segments(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(marker, payload) of each JPEG segment up to the start of the scan."""
    at = 2
    while at < len(data):
        marker = data[at + 1]
        length = struct.unpack(">H", data[at + 2 : at + 4])[0]
        yield marker, data[at + 4 : at + 2 + length]
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            return
        at += 2 + length


def png_chunks(data: bytes) -> list[bytes]:
    kinds, at = [], 8
    while at < len(data):
        length = struct.unpack(">I", data[at : at + 4])[0]
        kinds.append(data[at + 4 : at + 8])
        at += 12 + length
    return kinds


def riff_chunks(data: bytes) -> list[bytes]:
    kinds, at = [], 12
    while at + 8 <= len(data):
        size = struct.unpack("<I", data[at + 4 : at + 8])[0]
        kinds.append(data[at : at + 4])
        at += 8 + size + (size & 1)
    return kinds


def png(width: int, height: int, rows: Iterator[bytes] | None = None, mode: int = 0) -> bytes:
    """A PNG made by hand (so that it can claim any size): greyscale, 8 bits, ``rows``
    compressed into its IDAT (none: a few bytes of it)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for row in rows or iter([b"\x00" * 16]))
    body += packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, mode, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


def assert_no_secrets(data: bytes) -> None:
    for secret in SECRETS:
        assert secret not in data, secret


def assert_no_metadata(image: Image.Image) -> None:
    assert not image.getexif()
    for key in ("exif", "xmp", "XML:com.adobe.xmp", "icc_profile", "comment"):
        assert key not in image.info, key


# Pictures: cleaned


def test_a_phone_jpeg_loses_exif_gps_maker_note_thumbnail_xmp_comment_and_icc() -> None:
    source = phone_jpeg(orientation=1)
    original = Image.open(io.BytesIO(source))
    ifd1 = original.getexif().get_ifd(ExifTags.IFD.IFD1)
    assert ifd1.get(0x0202) == len(thumbnail_jpeg())  # the input does carry a thumbnail
    assert original.getexif().get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitude]
    for secret in SECRETS[:-1]:
        assert secret in source, secret

    cleaned = clean(source)

    assert (cleaned.media_type, cleaned.suffix) == ("image/jpeg", ".jpg")
    assert_no_secrets(cleaned.data)
    markers = {marker for marker, _payload in jpeg_segments(cleaned.data)}
    # Only JFIF (APP0), tables, frame and scan: no APP1 (EXIF, XMP), APP2 (ICC), APP13
    # (IPTC) or COM segment.
    assert not markers & {0xE1, 0xE2, 0xED, 0xFE}, sorted(hex(m) for m in markers)
    image = Image.open(io.BytesIO(cleaned.data))
    assert image.size == (64, 32)
    assert_no_metadata(image)


def test_gps_values_are_not_in_the_cleaned_bytes() -> None:
    source = phone_jpeg()
    gps = Image.open(io.BytesIO(source)).getexif().get_ifd(ExifTags.IFD.GPSInfo)
    order = (
        "<"
        if source[source.index(b"Exif\x00\x00") + 6 : source.index(b"Exif\x00\x00") + 8] == b"II"
        else ">"
    )
    stored = [
        struct.pack(order + "II", part.numerator, part.denominator)
        for tag in (ExifTags.GPS.GPSLatitude, ExifTags.GPS.GPSLongitude)
        for part in gps[tag]
    ]
    seconds = [s for s in stored if s not in (struct.pack(order + "II", 37, 1),)]
    assert all(value in source for value in seconds)  # the search below can find them

    cleaned = clean(source).data

    assert not [value for value in seconds if value in cleaned]


def test_the_exif_orientation_is_applied_so_the_picture_stays_upright() -> None:
    cleaned = clean(phone_jpeg(orientation=6))  # stored sideways: shown turned 90° right

    opened = Image.open(io.BytesIO(cleaned.data))
    assert opened.size == (32, 64)
    assert_no_metadata(opened)  # no orientation left to apply a second time
    image = opened.convert("RGB")
    top, bottom = image.getpixel((16, 4)), image.getpixel((16, 60))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 150 > top[2] and bottom[2] > 150 > bottom[0]  # red above, blue below


def test_a_png_loses_its_text_itxt_ztxt_exif_and_icc_chunks() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "COMMENT-SECRET")
    info.add_itxt("Description", "비밀 XMP-SECRET", lang="ko", zip=False)
    info.add_text("Software", "SecretMaker", zip=True)
    out = io.BytesIO()
    two_halves().save(
        out,
        "PNG",
        pnginfo=info,
        exif=camera_exif(1),
        icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),
    )
    source = out.getvalue()
    assert {b"tEXt", b"iTXt", b"zTXt", b"eXIf", b"iCCP"} <= set(png_chunks(source))

    cleaned = clean(source)

    assert cleaned.media_type == "image/png"
    assert set(png_chunks(cleaned.data)) <= {b"IHDR", b"IDAT", b"IEND"}
    assert_no_secrets(cleaned.data)
    image = Image.open(io.BytesIO(cleaned.data))
    assert image.size == (64, 32) and image.convert("RGB").getpixel((4, 4)) == RED


def test_a_webp_loses_its_exif_xmp_and_icc_chunks_and_stays_lossless() -> None:
    out = io.BytesIO()
    two_halves().save(
        out,
        "WEBP",
        lossless=True,
        exif=camera_exif(1),
        xmp=b"<x:xmpmeta>XMP-SECRET</x:xmpmeta>",
        icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),
    )
    source = out.getvalue()
    assert {b"EXIF", b"XMP ", b"ICCP"} <= set(riff_chunks(source))

    cleaned = clean(source)

    assert cleaned.media_type == "image/webp"
    assert set(riff_chunks(cleaned.data)) <= {b"VP8L", b"VP8 ", b"VP8X", b"ALPH"}
    assert b"VP8L" in riff_chunks(cleaned.data)
    assert_no_secrets(cleaned.data)
    image = Image.open(io.BytesIO(cleaned.data))
    assert image.convert("RGB").getpixel((4, 4)) == RED and image.size == (64, 32)


def test_an_animated_gif_keeps_only_its_first_frame_as_a_png_without_its_comment() -> None:
    out = io.BytesIO()
    first, second = two_halves(), Image.new("RGB", (64, 32), (0, 200, 0))
    first.save(out, "GIF", save_all=True, append_images=[second], comment=b"COMMENT-SECRET")
    source = out.getvalue()
    assert b"COMMENT-SECRET" in source

    cleaned = clean(source)

    assert (cleaned.media_type, cleaned.suffix) == ("image/png", ".png")
    assert_no_secrets(cleaned.data)
    image = Image.open(io.BytesIO(cleaned.data))
    assert getattr(image, "n_frames", 1) == 1
    assert image.convert("RGB").getpixel((4, 4)) == RED


def test_a_transparent_palette_png_keeps_its_transparency() -> None:
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 255, 0, 0])
    out = io.BytesIO()
    image.save(out, "PNG", transparency=1)

    cleaned = Image.open(io.BytesIO(clean(out.getvalue()).data))

    assert cleaned.mode == "RGBA" and cleaned.getpixel((0, 0)) == (255, 0, 0, 0)


# Plain text: kept


def test_plain_text_is_kept_as_it_is() -> None:
    text = "임금을 석 달째 받지 못했습니다.\r\nUnpaid wages\tsince March.\n".encode()

    cleaned = clean(text)

    assert cleaned == CleanFile("text/plain; charset=utf-8", ".txt", text)
    assert attachment_name(2, cleaned) == "text-2.txt"


def test_cleaned_pictures_get_a_neutral_name() -> None:
    assert attachment_name(1, clean(phone_jpeg())) == "photo-1.jpg"


# Refused, by kind


REFUSED = {
    "pdf": (b"%PDF-1.7\n1 0 obj << /Author (Kim) >>\n", "a PDF document"),
    "svg": (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "an SVG drawing"),
    "bare svg": (b"  <svg><metadata>x</metadata></svg>", "an SVG drawing"),
    "heic": (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64, "a HEIC photo"),
    "avif": (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1" + b"\x00" * 64, "an AVIF picture"),
    "mp4 video": (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 64, "a video"),
    "docx": (b"PK\x03\x04\x14\x00\x06\x00" + b"\x00" * 64, "a ZIP archive or an office document"),
    "old office": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64, "an office document"),
    "tiff": (b"II*\x00\x08\x00\x00\x00" + b"\x00" * 64, "a TIFF or camera RAW picture"),
    "bmp": (b"BM\x46\x00\x00\x00" + b"\x00" * 64, "a BMP picture"),
    "wav": (b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 64, "a sound recording"),
    "web page": (b"<!DOCTYPE html><html><title>x</title></html>", "a web page"),
    "unknown binary": (bytes(range(256)), "a file of a kind this node does not know"),
    "text with NUL": (b"hello\x00world", "a file of a kind this node does not know"),
    "not utf-8": ("안녕하세요".encode("euc-kr"), "a file of a kind this node does not know"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_kind_that_cannot_be_cleaned_is_refused_by_name(case: str) -> None:
    data, words = REFUSED[case]

    with pytest.raises(UncleanableKindError) as refused:
        clean(data)

    message = str(refused.value)
    assert message.startswith(words) and message.endswith("it was not attached")
    assert "cannot be cleaned of what identifies it" in message and "\n" not in message
    assert refused.value.kind.startswith(words)
    assert refused.value.exit_code == 2


def test_an_empty_file_is_refused() -> None:
    with pytest.raises(UncleanableKindError, match=r"^the file is empty; it was not attached$"):
        clean(b"")


# Refused: broken or too big


def test_a_truncated_jpeg_is_refused_as_damaged() -> None:
    out = io.BytesIO()
    noisy((128, 128)).save(out, "JPEG", quality=95)
    whole = out.getvalue()

    with pytest.raises(DamagedImageError) as refused:
        clean(whole[: len(whole) // 2])

    assert str(refused.value) == (
        "a JPEG photo is damaged or cut short and cannot be cleaned; it was not attached"
    )


def test_a_truncated_png_is_refused_as_damaged() -> None:
    out = io.BytesIO()
    noisy((64, 64)).save(out, "PNG")

    with pytest.raises(DamagedImageError, match=r"^a PNG picture is damaged"):
        clean(out.getvalue()[:-200])


def test_a_jpeg_header_with_nothing_after_it_is_refused_as_damaged() -> None:
    with pytest.raises(DamagedImageError):
        clean(b"\xff\xd8\xff\xe0" + b"\x00" * 40)


def test_a_decompression_bomb_over_the_cap_is_refused_before_decoding() -> None:
    # 6400 x 6400 = 41 million pixels of zeros: 41 MB decoded, a few KiB as a file.
    side = 6400
    assert side * side > imageclean.MAX_PIXELS
    row = b"\x00" * (side + 1)
    bomb = png(side, side, iter([row] * side))
    assert len(bomb) < 100_000

    with pytest.raises(ImageTooLargeError) as refused:
        clean(bomb)

    assert str(refused.value) == (
        "a PNG picture has too many pixels to clean (at most 40 million); it was not attached"
    )


def test_a_picture_claiming_ten_billion_pixels_is_refused() -> None:
    # Pillow's own check (Image.MAX_IMAGE_PIXELS) raises first: the same refusal.
    with pytest.raises(ImageTooLargeError, match="too many pixels"):
        clean(png(100_000, 100_000))


def test_every_refusal_is_an_attachment_error_a_cli_can_report() -> None:
    for data in (b"%PDF-1.4", png(100_000, 100_000), b"\xff\xd8\xff\xe0"):
        with pytest.raises(AttachmentError) as refused:
            clean(data)
        assert refused.value.exit_code == 2 and refused.value.kind
