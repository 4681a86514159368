"""A publisher's references turned into this node's opaque URLs (readerids.py): a
relative href or src in an HTML, CSS or Markdown file is resolved against the file's
folder, and becomes its target's URL if the target is a file of the same bundle. Any
other reference (off the node, to another bundle, to a path the bundle does not hold)
resolves to None and is dropped by the caller."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from urllib.parse import unquote

from meshdrop.reader.render import is_local_link


@dataclass(frozen=True)
class BundleLinks:
    """The files of one bundle, by path, and how to name them in URLs."""

    paths: Collection[str]
    article: Callable[[str], str]  # path -> where it is read (/b/<bid>/v/<fid>)
    file: Callable[[str], str]  # path -> the file itself (/b/<bid>/f/<fid>)

    def resolve(self, url: str, file_path: str, as_article: bool) -> str | None:
        """The URL for a reference written in the file at ``file_path``; None if it
        leaves the bundle or names no file of it. Queries are dropped; a fragment is
        kept on article links ("#part" alone stays an in-page jump)."""
        url = url.strip()
        folder = posixpath.dirname(file_path)
        if not stays_in_bundle(url, folder):
            return None
        address, _, fragment = url.partition("#")
        path = address.split("?", 1)[0]
        if not path and not address:
            return "#" + fragment if as_article else None
        target = (
            file_path if not path else posixpath.normpath(posixpath.join(folder, unquote(path)))
        )
        if target not in self.paths:
            return None
        if as_article:
            return self.article(target) + (f"#{fragment}" if fragment else "")
        return self.file(target)


def stays_in_bundle(url: str, folder: str) -> bool:
    """A relative URL that, from a file in ``folder``, points into the same bundle."""
    url = url.strip()
    if not url or not is_local_link(url) or url.startswith("/"):
        return False
    path = url.split("#", 1)[0].split("?", 1)[0]
    if not path:
        return True  # "#part" or "?x": this same file
    target = posixpath.normpath(posixpath.join(folder, path))
    return not (target == ".." or target.startswith("../") or target.startswith("/"))


# CSS references: url(...) tokens (quoted or not) and @import's string form. A CSS escape
# (u\72l(...)) or image-set("...") slips past these: the per-bundle CSP (headers.py) is
# what guarantees a page loads only its own bundle's files; this keeps references right.
_CSS_REFERENCE = re.compile(
    r"""@import\s+(?:"(?P<i1>[^"]*)"|'(?P<i2>[^']*)')"""
    r"""|url\(\s*(?:"(?P<u1>[^"]*)"|'(?P<u2>[^']*)'|(?P<u3>[^)\s'"]*))\s*\)""",
    re.IGNORECASE,
)


def rewrite_css(css: str, file_path: str, links: BundleLinks) -> str:
    """CSS written in (or for) the file at ``file_path`` with every url() pointing at the
    bundle's own file URL, or ``none`` where it pointed anywhere else."""

    def replace(match: re.Match[str]) -> str:
        found = match.groupdict()
        reference = next((v for v in found.values() if v), "")
        target = links.resolve(reference, file_path, as_article=False) if reference else None
        written = f'url("{target}")' if target else "none"
        return "@import " + written if match.group(0).startswith("@") else written

    return _CSS_REFERENCE.sub(replace, css)
