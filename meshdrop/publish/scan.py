"""Reading the folder a publisher packs: every regular file under it, named as the bundle
will name it, with a media type from its extension. Links and special files are refused
(not followed, not skipped), so the publisher sees what is packed. No file's content is
read here: ``pack.py`` reads each file once, as it packs it.
"""

from __future__ import annotations

import functools
import mimetypes
import os
import stat
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from meshdrop.core.manifest import MAX_MEDIA_TYPE, MEDIA_TYPE
from meshdrop.core.paths import check_bundle_paths
from meshdrop.errors import UsageError

FALLBACK_MEDIA_TYPE = "application/octet-stream"

# Types Python's built-in table lacks, or has changed between Python versions (".js",
# ".wav"): fixed here so every publisher machine writes the same manifest.
_MEDIA_TYPE_OVERRIDES: Mapping[str, str] = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".txt": "text/plain",
    ".html": "text/html",
    ".htm": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".webp": "image/webp",
    ".opus": "audio/opus",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".m4a": "audio/mp4",
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".webm": "video/webm",
    ".mp4": "video/mp4",
    ".epub": "application/epub+zip",
    ".gz": "application/gzip",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
}


@dataclass(frozen=True)
class SourceFile:
    path: str  # inside the bundle, "/" between names
    fs_path: Path
    size: int
    mtime_ns: int


@functools.cache
def _builtin_media_types() -> Mapping[str, str]:
    # A MimeTypes instance fills its tables from Python's built-in defaults only; the
    # module-level guess_type also reads /etc/mime.types, which differs between machines.
    return dict(mimetypes.MimeTypes().types_map[True])


def media_type_for(path: str) -> str:
    """The media type recorded for a bundle path, from its extension alone."""
    stem, dot, extension = path.rpartition("/")[2].rpartition(".")
    if not dot or not stem:  # no extension, or a dot file such as ".profile"
        return FALLBACK_MEDIA_TYPE
    suffix = "." + extension.lower()
    found = _MEDIA_TYPE_OVERRIDES.get(suffix) or _builtin_media_types().get(suffix, "")
    media_type = found.partition(";")[0].strip().lower()
    if len(media_type) > MAX_MEDIA_TYPE or not MEDIA_TYPE.fullmatch(media_type):
        return FALLBACK_MEDIA_TYPE
    return media_type


def show_name(text: str) -> str:
    """A name fit for an error message: quoted and escaped if it holds unprintable characters."""
    return text if text.isprintable() else repr(text)


def scan_folder(src: Path) -> list[SourceFile]:
    """Every regular file under ``src``, sorted by bundle path. Symlinks and special
    files are refused, not followed or skipped: the publisher should see what is packed."""
    if not src.exists():
        raise UsageError(f"{src} does not exist")
    if not src.is_dir():
        raise UsageError(f"{src} is not a folder")
    files: list[SourceFile] = []
    pending = [(src, "")]
    while pending:
        folder, prefix = pending.pop()
        for entry in _list_folder(folder, prefix or "."):
            # Names from a Mac arrive decomposed (NFD, Korean split into jamo); the bundle
            # path is the standard NFC spelling of the same name.
            rel = prefix + unicodedata.normalize("NFC", entry.name)
            if entry.is_symlink():
                raise UsageError(f"refusing to pack a symlink: {show_name(rel)}")
            if entry.is_dir(follow_symlinks=False):
                pending.append((Path(entry.path), rel + "/"))
                continue
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode):
                raise UsageError(f"refusing to pack {_kind(info.st_mode)}: {show_name(rel)}")
            files.append(SourceFile(rel, Path(entry.path), info.st_size, info.st_mtime_ns))
    if not files:
        raise UsageError(f"nothing to pack: {src} has no files")
    files.sort(key=lambda f: f.path)
    check_bundle_paths(f.path for f in files)
    return files


def _list_folder(folder: Path, rel: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError as exc:
        raise UsageError(f"cannot read the folder {show_name(rel)} ({exc.strerror})") from exc


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    return "a special file"
