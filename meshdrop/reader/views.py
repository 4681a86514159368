"""What the reader's templates are given: plain dicts and strings built from the store's
values (bundles, manifests, search hits), in the reader's language. No requests, no I/O:
the handlers in ``app.py`` fetch, these shape."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from meshdrop.core.manifest import FileEntry, Manifest
from meshdrop.reader import i18n
from meshdrop.reader.library import FoundFile, Shelf, ShelvedBundle
from meshdrop.reader.render import kind_of, shorten
from meshdrop.store.models import StoredBundle

STALE_DAYS = 30  # freshness warning after this long without new signed content
TITLE_CHARS = 120
DESCRIPTION_CHARS = 140
DAY = 86_400
TEXT_COOKIE = "text"
TEXT_SIZES = ("normal", "large")  # the first is the default


# Reader URLs name nothing: only the opaque ids of this node (readerids.py).


def bundle_url(bundle: ShelvedBundle) -> str:
    return f"/b/{bundle.bid}/"


def article_url(bundle: ShelvedBundle, path: str) -> str:
    """Where the file at ``path`` is read: as the page itself (HTML) or in a reader page."""
    return f"/b/{bundle.bid}/v/{bundle.file_id(path)}"


def file_url(bundle: ShelvedBundle, path: str) -> str:
    """The file itself, as the publisher signed it (HTML and CSS rewritten on the way)."""
    return f"/b/{bundle.bid}/f/{bundle.file_id(path)}"


def download_url(bundle: ShelvedBundle, path: str) -> str:
    return file_url(bundle, path) + "?download"


def short_fingerprint(fingerprint: str) -> str:
    return "-".join(fingerprint.split("-")[:2])


def freshness(newest: int | None, now: int, lang: str) -> dict[str, object]:
    t = i18n.STRINGS[lang]
    if newest is None:
        return {"text": t["nothing_signed"], "stale": ""}
    days = (now - newest) // DAY
    stale = t["stale"].format(days=days) if days >= STALE_DAYS else ""
    return {"text": t["newest_signed"].format(date=i18n.format_date(newest, lang)), "stale": stale}


def section_order(code: str, lang: str) -> int:
    """Where a language section goes for a reader of ``lang``: theirs first, then
    several-language and other sections, the other interface language last."""
    primary = code.split("-")[0].lower()
    if primary == lang:
        return 0
    if primary in i18n.LANGUAGES:
        return 2
    return 1


def group_for_home(bundles: Sequence[ShelvedBundle], shelf: Shelf, lang: str) -> list[object]:
    """Bundles (newest first) grouped by publisher, keeping the order in which each
    publisher's newest bundle comes, then by language in the reader's order."""
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
    newest = shelf.newest
    result: list[object] = []
    for fingerprint, sections in groups.items():
        codes = sorted(sections, key=lambda code: section_order(code, lang))  # stable
        result.append(
            {
                "name": names[fingerprint],
                "fingerprint": fingerprint,
                "short_fp": short_fingerprint(fingerprint),
                "fresh": freshness(newest.get(fingerprint), shelf.now, lang),
                "sections": [
                    {
                        "label": i18n.language_label(code, lang),
                        "code": code,
                        "entries": sections[code],
                    }
                    for code in codes
                ],
            }
        )
    return result


def with_titles(rows: Sequence[dict[str, str]], titles: Mapping[str, str]) -> list[dict[str, str]]:
    """Each file row with the name readers know it by: its article's own title (from the
    search index, once indexed), else its path in the bundle."""
    return [
        {**row, "title": shorten(titles.get(row["path"]) or row["path"], TITLE_CHARS)}
        for row in rows
    ]


def readable(rows: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """The rows a browser can show on a page of the reader's (the rest only download)."""
    return [row for row in rows if row["kind"] != "other"]


def text_size(cookie: str | None) -> str:
    """The text size the reader chose with the size link (a session cookie), else normal."""
    return cookie if cookie in TEXT_SIZES else TEXT_SIZES[0]


def bundle_info(bundle: StoredBundle, lang: str) -> dict[str, str]:
    t = i18n.STRINGS[lang]
    return {
        "date": i18n.format_date(bundle.created, lang),  # the version: when it was signed
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


def file_row(bundle: ShelvedBundle, entry: FileEntry, lang: str) -> dict[str, str]:
    kind = kind_of(entry.media_type)
    return {
        "path": entry.path,
        "kind": kind,
        "kind_label": i18n.STRINGS[lang][f"kinds_{kind}"],
        "size": i18n.human_size(entry.size),
        "view": article_url(bundle, entry.path),
        "raw": file_url(bundle, entry.path),
        "download": download_url(bundle, entry.path),
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


def search_result(found: FoundFile, lang: str) -> dict[str, object]:
    """One hit: the article (its title, else its file name) in its bundle, or the bundle
    itself when its title or description matched; with the snippet around the match."""
    bundle = found.bundle
    bundle_title = shorten(bundle.title or bundle.name, TITLE_CHARS)
    snippet = (found.before, found.match, found.after)
    return {
        "url": article_url(bundle, found.path) if found.path else bundle_url(bundle),
        "title": shorten(found.title or found.path, TITLE_CHARS) if found.path else bundle_title,
        "bundle": bundle_title if found.path else "",
        "publisher": bundle.publisher_name,
        "short_fp": short_fingerprint(bundle.publisher),
        "date": i18n.format_date(bundle.created, lang),
        "snippet": snippet if any(snippet) else None,
    }
