"""The everyday flow through the installed command: pin, import, list, get, re-import.

The first test runs every step of it (publisher new, pack, trust add, import, ls, get) as
a real `meshdrop` process; the fixtures of the others make publishers, bundles and nodes
in process (conftest.py), and their follow-up listings run in process too."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from conftest import Publisher, Result, assert_clean_error, list_json, write_tree


def test_import_lists_and_gets_verified_content(run: Callable[..., Result], tmp_path: Path) -> None:
    folder = tmp_path / "publisher"
    made = run("publisher", "new", folder, "--name", "Workers", "--unencrypted", check=True)
    assert f"give node owners: {folder / 'publisher.pub'}" in made.out
    files = {"index.html": b"<h1>hi</h1>", "img/a.png": b"\x89PNG" + bytes(3_000_000)}
    src = write_tree(tmp_path / "src", files)
    bundle = tmp_path / "news.mdrop"
    run(
        *("pack", src, "--publisher", folder, "--name", "news", "--version", "1"),
        *("--title", "Workers' News", "-o", bundle, "--quiet"),
        check=True,
    )
    node = tmp_path / "node"
    pinned = run("--home", node, "trust", "add", "--yes", folder / "publisher.pub", check=True)
    assert "now trusting Workers" in pinned.out
    result = run("--home", node, "import", bundle, check=True)
    assert "imported: news v1" in result.out
    listing = run("--home", node, "ls", "--json", check=True)
    [listed] = [json.loads(line) for line in listing.out.splitlines()]
    assert listed["name"] == "news" and listed["version"] == 1
    assert listed["title"] == "Workers' News"
    assert listed["size"] == sum(len(v) for v in files.values())
    assert listed["files"] == 2
    run("--home", node, "get", "news", "-o", tmp_path / "out", check=True)
    for rel, data in files.items():
        assert (tmp_path / "out" / rel).read_bytes() == data
    run("--home", node, "get", "news", "img/a.png", "-o", tmp_path / "a.png", check=True)
    assert (tmp_path / "a.png").read_bytes() == files["img/a.png"]


def test_reimport_reports_already_had(
    run: Callable[..., Result], make_bundle: Callable[..., Path], node: Path
) -> None:
    bundle = make_bundle("news")
    run("--home", node, "import", bundle, check=True)
    again = run("--home", node, "import", bundle, check=True)
    assert "already had" in again.out


def test_newer_version_replaces_older_and_older_is_refused(
    run: Callable[..., Result], make_bundle: Callable[..., Path], node: Path
) -> None:
    v1 = make_bundle("news", {"a.txt": b"one"}, version=1)
    v2 = make_bundle("news", {"a.txt": b"two"}, version=2)
    run("--home", node, "import", v1, check=True)
    replaced = run("--home", node, "import", v2, check=True)
    assert "replaces v1" in replaced.out
    assert [b["version"] for b in list_json(node)] == [2]
    assert_clean_error(run("--home", node, "import", v1), "older than version 2")
    assert [b["version"] for b in list_json(node)] == [2]


def test_untrusted_publisher_is_refused_and_nothing_listed(
    run: Callable[..., Result], make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    bundle = make_bundle("news")
    home = tmp_path / "stranger-node"
    assert_clean_error(run("--home", home, "import", bundle), "does not trust")
    assert list_json(home) == []


def test_trust_ls_and_rm_hide_bundles(
    run: Callable[..., Result],
    make_bundle: Callable[..., Path],
    node: Path,
    publisher: Publisher,
) -> None:
    run("--home", node, "import", make_bundle("news"), check=True)
    [entry] = [
        json.loads(x) for x in run("--home", node, "trust", "ls", "--json").out.split("\n") if x
    ]
    run("--home", node, "trust", "rm", entry["fingerprint"][:9], check=True)
    assert list_json(node) == []
    run("--home", node, "trust", "add", "--yes", publisher.pub, check=True)
    assert [b["name"] for b in list_json(node)] == ["news"]


def test_rm_deletes_but_older_versions_stay_refused(
    run: Callable[..., Result], make_bundle: Callable[..., Path], node: Path
) -> None:
    v1 = make_bundle("news", {"a.txt": b"one"}, version=1)
    v2 = make_bundle("news", {"a.txt": b"two"}, version=2)
    run("--home", node, "import", v2, check=True)
    assert "removed news v2" in run("--home", node, "rm", "news", check=True).out
    assert list_json(node) == []
    assert not any((node / "chunks").rglob("*" * 1 + "?" * 63))
    assert_clean_error(run("--home", node, "import", v1), "older than version 2")
    assert "imported: news v2" in run("--home", node, "import", v2, check=True).out
