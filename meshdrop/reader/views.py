"""What the reader's templates are given: plain dicts and strings built from the store's
values (bundles, manifests, search hits), in the reader's language. No requests, no I/O:
the handlers in ``app.py`` fetch, these shape."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from meshdrop.core.manifest import FileEntry, Manifest
from meshdrop.reader import i18n
from meshdrop.reader.library import Found, Shelf, compact
from meshdrop.reader.render import kind_of, shorten, snippet_parts
from meshdrop.store.models import StoredBundle

STALE_DAYS = 30  # freshness warning after this long without new signed content
TITLE_CHARS = 120
DESCRIPTION_CHARS = 140
DAY = 86_400


def bundle_url(bundle: StoredBundle) -> str:
    return f"/b/{compact(bundle.publisher)}/{bundle.name}/"


def short_fingerprint(fingerprint: str) -> str:
    return "-".join(fingerprint.split("-")[:2])


def freshness(newest: int | None, now: int, lang: str) -> dict[str, object]:
    t = i18n.STRINGS[lang]
    if newest is None:
        return {"text": t["nothing_signed"], "stale": ""}
    days = (now - newest) // DAY
    stale = t["stale"].format(days=days) if days >= STALE_DAYS else ""
    return {"text": t["newest_signed"].format(date=i18n.format_date(newest, lang)), "stale": stale}


def group_for_home(bundles: Sequence[StoredBundle], shelf: Shelf, lang: str) -> list[object]:
    """Bundles (newest first) grouped by publisher, then by language, keeping the order
    in which each group's newest bundle comes."""
    groups: dict[str, dict[str, list[dict[str, str]]]] = {}
    for bundle in bundles:
        sections = groups.setdefault(bundle.publisher, {})
        sections.setdefault(bundle.language, []).append(
            {
                "url": bundle_url(bundle),
                "title": shorten(bundle.title or bundle.name, TITLE_CHARS),
                "description": shorten(bundle.description, DESCRIPTION_CHARS),
                "date": i18n.format_date(bundle.created, lang),
            }
        )
    names = {b.publisher: b.publisher_name for b in bundles}
    result: list[object] = []
    for fingerprint, sections in groups.items():
        publisher = shelf.publishers.get(fingerprint)
        result.append(
            {
                "name": names[fingerprint],
                "short_fp": short_fingerprint(fingerprint),
                "fresh": freshness(publisher.newest_signed if publisher else None, shelf.now, lang),
                "sections": [
                    {"label": i18n.language_label(code, lang), "code": code, "entries": items}
                    for code, items in sections.items()
                ],
            }
        )
    return result


def bundle_info(bundle: StoredBundle, lang: str) -> dict[str, str]:
    t = i18n.STRINGS[lang]
    return {
        "signed": t["signed_on"].format(date=i18n.format_date(bundle.created, lang)),
        "expires": (
            t["expires_on"].format(date=i18n.format_date(bundle.expires, lang))
            if bundle.expires
            else ""
        ),
        "size": i18n.human_size(bundle.size),
        "language": i18n.language_label(bundle.language, lang),
        "short_fp": short_fingerprint(bundle.publisher),
    }


def file_row(base: str, entry: FileEntry, lang: str) -> dict[str, str]:
    kind = kind_of(entry.media_type)
    quoted = quote(entry.path)
    return {
        "path": entry.path,
        "kind": kind,
        "kind_label": i18n.STRINGS[lang][f"kinds_{kind}"],
        "size": i18n.human_size(entry.size),
        "view": f"{base}v/{quoted}",
        "raw": f"{base}f/{quoted}",
        "download": f"{base}f/{quoted}?download",
        "media_type": entry.media_type,
    }


def start_file(manifest: Manifest, lang: str) -> str:
    """The file to start reading with: index.<lang>.html, index.html, index.md, ...,
    else the first article."""
    paths = {f.path: f for f in manifest.files}
    for name in (f"index.{lang}.html", "index.html", f"index.{lang}.md", "index.md", "README.md"):
        if name in paths:
            return name
    article = next((f.path for f in manifest.files if kind_of(f.media_type) == "html"), None)
    return article or next(
        (f.path for f in manifest.files if kind_of(f.media_type) == "markdown"), ""
    )


def search_result(found: Found, lang: str) -> dict[str, object]:
    bundle, hit = found.bundle, found.hit
    return {
        "url": bundle_url(bundle),
        "title": shorten(bundle.title or bundle.name, TITLE_CHARS),
        "description": shorten(bundle.description, DESCRIPTION_CHARS),
        "publisher": bundle.publisher_name,
        "short_fp": short_fingerprint(bundle.publisher),
        "date": i18n.format_date(bundle.created, lang),
        "snippet": snippet_parts(hit.snippet, hit.match_at, hit.match_len) if hit.snippet else None,
    }
