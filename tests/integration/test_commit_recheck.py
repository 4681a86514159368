"""The commit accepts a bundle once more under the write lock (store/store.py
``_accept_again``): between a source's ``accept`` and its commit, the publisher's chain,
the clock and the version marks may move. With the chain unchanged, the signature is not
checked twice (the small-bundle path of a LAN sync commits many at once), but a signing
key revoked meanwhile, or an expiry passed meanwhile, still keeps the bundle out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_publisher_lifecycle import signer_ids

from conftest import Publisher, meshdrop_in_process, pack, write_tree
from meshdrop.core.verify import VerifiedManifest
from meshdrop.errors import MeshdropError, TrustError
from meshdrop.store.bundlefile import open_bundle_file
from meshdrop.store.ingest import IngestSession, copy_chunks
from meshdrop.store.models import ImportResult, Outcome
from meshdrop.store.store import Store


def _bundle(publisher: Publisher, tmp: Path, *extra: str) -> Path:
    src = write_tree(tmp / "src", {"index.html": b"<p>news</p>"})
    return pack(publisher, src, tmp / "news.mdrop", "news", *extra)


def _trusting(home: Path, publisher: Publisher) -> Path:
    meshdrop_in_process("--home", home, "trust", "add", "--yes", publisher.pub, check=True)
    return home


def _commit_after(home: Path, bundle: Path, meanwhile: object) -> ImportResult | MeshdropError:
    """Accept ``bundle`` and put its chunks, run ``meanwhile()``, then commit."""
    with Store(home) as store, IngestSession(store) as session, open_bundle_file(bundle) as src:
        verified = session.accept(src.envelope)
        assert isinstance(verified, VerifiedManifest)
        folders = copy_chunks(src, session.needed(verified), store.store_chunk)
        assert callable(meanwhile)
        meanwhile()
        (outcome,) = session.commit_group([verified], folders)
        return outcome


def _listed(home: Path) -> list[str]:
    out = meshdrop_in_process("--home", home, "ls", "--json", check=True).out
    return [json.loads(line)["name"] for line in out.splitlines()]


def test_an_unchanged_chain_commits(tmp_path: Path, publisher: Publisher) -> None:
    home = _trusting(tmp_path / "node", publisher)
    outcome = _commit_after(home, _bundle(publisher, tmp_path), lambda: None)
    assert isinstance(outcome, ImportResult) and outcome.outcome is Outcome.IMPORTED
    assert _listed(home) == ["news"]


def test_a_signing_key_revoked_between_accept_and_commit_keeps_the_bundle_out(
    tmp_path: Path, publisher: Publisher
) -> None:
    home = _trusting(tmp_path / "node", publisher)
    bundle = _bundle(publisher, tmp_path)
    (signer,) = signer_ids(publisher.folder)

    def revoke() -> None:
        meshdrop_in_process(
            "publisher", "revoke", publisher.folder, signer, "--reason", "compromised", "--yes",
            check=True,
        )  # fmt: skip
        meshdrop_in_process("--home", home, "trust", "add", "--yes", publisher.pub, check=True)

    outcome = _commit_after(home, bundle, revoke)
    assert isinstance(outcome, TrustError)  # the key was reported compromised
    assert _listed(home) == []


def test_an_expiry_passed_between_accept_and_commit_keeps_the_bundle_out(
    tmp_path: Path, publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _trusting(tmp_path / "node", publisher)
    bundle = _bundle(publisher, tmp_path, "--expires", "2099-01-01")
    import meshdrop.store.store as store_module

    def later() -> None:  # the clock passes the expiry while the chunks were coming
        monkeypatch.setattr(store_module.time, "time", lambda: 4_102_444_800.0 + 86_400)

    outcome = _commit_after(home, bundle, later)
    assert isinstance(outcome, TrustError)
    assert _listed(home) == []
