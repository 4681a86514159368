"""The publisher's side of the trust lifecycle: root thresholds, signing keys added and
revoked, root rotation, threshold signing on separate offline machines, and the private
key file format. Mostly through the installed `meshdrop` command, as a publisher uses it:
the command a test is about runs as a real process (``cli``); set-up steps and the looks
afterwards (``publisher show --json``) run the same command in process (``step``)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    FIXED_CREATED,
    Publisher,
    Result,
    assert_clean_error,
    meshdrop_in_process,
    pack,
    run_meshdrop,
    write_tree,
)
from meshdrop.core import codec
from meshdrop.core.bundle import HEADER_SIZE, parse_envelope, parse_header, parse_publisher_file
from meshdrop.core.keys import generate_private_key, key_id, public_bytes
from meshdrop.core.proposal import PROPOSAL_MAGIC, parse_proposal
from meshdrop.core.records import SignedRecord, parse_record, sign_record
from meshdrop.core.trust import advance_state, start_state
from meshdrop.errors import FormatError, PassphraseError, UsageError
from meshdrop.publish import keyfile
from meshdrop.publish.keyfile import (
    KEY_MAGIC,
    KeyKind,
    encode_key_file,
    encode_public_key_file,
    load_private_key,
    parse_key_file,
    read_public_key_file,
    write_private_key,
)
from meshdrop.publish.keystore import create_publisher, load_publisher

NOW = 1_750_000_000
PASSPHRASE = "고양이 on the roof".encode()


@pytest.fixture
def fast_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seal test keys with the cheapest scrypt cost meshdrop still reads (2**14)."""
    monkeypatch.setattr(keyfile, "SCRYPT_N", 2**14)


def cli(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    """The command under test: a real `meshdrop` process, which must succeed."""
    return run_meshdrop(*args, env=env, check=True)


def step(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    """A set-up step or a look afterwards: the same command run in process."""
    return meshdrop_in_process(*args, env=env, check=True)


Runner = Callable[..., Result]


def show(source: Path, run: Runner = step) -> dict[str, Any]:
    value = json.loads(run("publisher", "show", source, "--json").out)
    assert isinstance(value, dict)
    return value


def signer_ids(source: Path) -> list[str]:
    signers = show(source)["signers"]
    assert isinstance(signers, list)
    return [s["id"] for s in signers]


def new_publisher(folder: Path, roots: int = 1, threshold: int = 1, run: Runner = step) -> Path:
    run(
        "publisher",
        "new",
        folder,
        "--name",
        "Lifecycle News",
        "--roots",
        str(roots),
        "--threshold",
        str(threshold),
        "--unencrypted",
    )
    return folder


def add_signer(folder: Path, *extra: str, run: Runner = step) -> str:
    before = set(signer_ids(folder))
    run("publisher", "add-signer", folder, "--unencrypted", *extra)
    [added] = set(signer_ids(folder)) - before
    return added


def bundle_signer(path: Path) -> str:
    data = path.read_bytes()
    length = parse_header(data[:HEADER_SIZE], path.name)
    envelope = parse_envelope(data[HEADER_SIZE : HEADER_SIZE + length], path.name)
    return key_id(envelope.signer)


def pack_into(folder: Path, tmp_path: Path, out: str, *extra: str) -> Path:
    src = write_tree(tmp_path / f"src-{out}", {"index.html": b"<p>hello</p>"})
    return pack(Publisher(folder), src, tmp_path / out, "news", *extra)


def chain_of(pub_file: Path) -> tuple[SignedRecord, ...]:
    return parse_publisher_file(pub_file.read_bytes(), str(pub_file))


# --- new, add-signer, pack ------------------------------------------------------------------


def test_new_with_three_roots_and_threshold_two(tmp_path: Path) -> None:
    folder = new_publisher(tmp_path / "pub", roots=3, threshold=2, run=cli)
    info = show(folder)
    assert info["version"] == 1 and info["threshold"] == 2 and info["name"] == "Lifecycle News"
    roots = info["roots"]
    assert isinstance(roots, list) and len(roots) == 3
    assert sorted(p.name for p in folder.glob("root-*.key")) == sorted(
        f"root-{r}.key" for r in roots
    )
    assert info["root_keys_here"] == roots
    [signer] = info["signers"]
    assert signer["state"] == "valid" and signer["scope"] == ["*"]
    for key_file in folder.glob("*.key"):
        assert key_file.read_bytes().startswith(KEY_MAGIC)
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # Record 1 is signed by every root, and its identity binds roots and threshold.
    [first] = chain_of(folder / "publisher.pub")
    assert len(first.signatures) == 3
    assert start_state([first]).current.threshold == 2


def test_new_defaults_to_a_majority_and_refuses_impossible_thresholds(tmp_path: Path) -> None:
    cli("publisher", "new", tmp_path / "five", "--name", "N", "--roots", "5", "--unencrypted")
    assert show(tmp_path / "five")["threshold"] == 3
    cli("publisher", "new", tmp_path / "one", "--name", "N", "--unencrypted")
    assert show(tmp_path / "one")["threshold"] == 1
    bad = run_meshdrop(
        "publisher", "new", tmp_path / "bad", "--name", "N", "--roots", "2", "--threshold", "3"
    )
    assert_clean_error(bad, "threshold must be from 1 to the number of root keys (2)")
    assert not (tmp_path / "bad").exists()


def test_add_signer_then_pack_signs_with_the_new_key(tmp_path: Path) -> None:
    folder = new_publisher(tmp_path / "pub")
    pinned = tmp_path / "pinned-v1.pub"
    shutil.copy(folder / "publisher.pub", pinned)
    [first] = signer_ids(folder)
    added = add_signer(folder, "--expires", "2099-01-01", run=cli)
    info = show(folder)
    assert info["version"] == 2
    [new_entry] = [s for s in info["signers"] if s["id"] == added]
    assert new_entry["expires"] == 4070908800 and new_entry["state"] == "valid"
    assert (folder / f"signer-{added}.key").is_file()

    newest = pack_into(folder, tmp_path, "newest.mdrop")
    assert bundle_signer(newest) == added
    older = pack_into(folder, tmp_path, "older.mdrop", "--signer", first[:8])
    assert bundle_signer(older) == first
    # A node that pinned only record 1 follows the chain the bundle carries.
    for bundle in (newest, older):
        cli("verify", bundle, "--trust", pinned)


def test_newest_key_is_the_latest_delegated_that_may_sign_the_name(tmp_path: Path) -> None:
    folder = new_publisher(tmp_path / "pub")
    [first] = signer_ids(folder)
    scoped = add_signer(folder, "--scope", "news-*", "--scope", "daily")
    src = write_tree(tmp_path / "src", {"a.txt": b"a"})
    for name, expected in (("news-ko", scoped), ("daily", scoped), ("books", first)):
        out = tmp_path / f"{name}.mdrop"
        cli("pack", src, "--publisher", folder, "--name", name, "-o", out, "--quiet")
        assert bundle_signer(out) == expected, name
    # In-process: "newest" is the latest start of validity, then the latest delegation.
    loaded = load_publisher(folder)
    _, chosen = loaded.load_signer(lambda _: None, int(FIXED_CREATED), bundle_name="news-x")
    assert chosen.id == scoped
    _, chosen = loaded.load_signer(lambda _: None, int(FIXED_CREATED))
    assert chosen.id == scoped


def test_add_signer_refuses_bad_options(tmp_path: Path) -> None:
    folder = new_publisher(tmp_path / "pub")
    before = (folder / "publisher.pub").read_bytes()
    cases = {
        ("--expires", "2001-01-01"): "--expires must be a date after now",
        ("--expires", "someday"): "is not a date",
        ("--scope", "x" * 101): "--scope",
        ("--scope", "bad\nname"): "printable",
    }
    for args, message in cases.items():
        result = run_meshdrop("publisher", "add-signer", folder, "--unencrypted", *args)
        assert_clean_error(result, message)
        assert len(result.err.strip().splitlines()) == 1
    assert (folder / "publisher.pub").read_bytes() == before
    assert len(list(folder.glob("signer-*.key"))) == 1


# --- revoke ----------------------------------------------------------------------------------


def test_revoke_retired_and_compromised_show_their_state(tmp_path: Path) -> None:
    folder = new_publisher(tmp_path / "pub")
    [first] = signer_ids(folder)
    second = add_signer(folder)
    third = add_signer(folder)
    cli("publisher", "revoke", folder, first[:6], "--reason", "retired")
    cli("publisher", "revoke", folder, second, "--reason", "compromised", "--yes")
    for source in (folder, folder / "publisher.pub"):
        info = show(source)
        assert info["version"] == 5
        assert [s["id"] for s in info["signers"]] == [third]
        revoked = {r["id"]: r for r in info["revoked"]}
        assert revoked[first]["reason"] == revoked[first]["state"] == "retired"
        assert revoked[second]["reason"] == revoked[second]["state"] == "compromised"
        assert all(isinstance(r["at"], int) for r in revoked.values())
    # Revoked keys leave the folder (kept in retired/), and pack no longer offers them.
    assert sorted(p.name for p in (folder / "retired").iterdir()) == sorted(
        [f"signer-{first}.key", f"signer-{second}.key"]
    )
    assert_clean_error(
        run_meshdrop(
            "pack",
            tmp_path,
            "--publisher",
            folder,
            "--name",
            "news",
            "--signer",
            second,
            "-o",
            tmp_path / "x.mdrop",
        ),
        "has no signing key",
    )
    state = load_publisher(folder).state
    keys = {key_id(k): k for k in state.revocations()}
    assert state.key_state(keys[first], NOW) == "retired"
    assert state.key_state(keys[second], NOW) == "compromised"
    text = cli("publisher", "show", folder).out
    assert f"revoked     {second}  compromised on" in text


def test_revoke_a_retired_key_again_as_compromised(tmp_path: Path) -> None:
    folder = new_publisher(tmp_path / "pub")
    [first] = signer_ids(folder)
    add_signer(folder)
    cli("publisher", "revoke", folder, first, "--reason", "retired")
    assert_clean_error(
        run_meshdrop("publisher", "revoke", folder, first, "--reason", "retired"),
        f"key {first} was already revoked (retired on",
    )
    cli("publisher", "revoke", folder, first, "--reason", "compromised", "--yes")
    [entry] = show(folder)["revoked"]
    assert entry["reason"] == "compromised"
    assert_clean_error(
        run_meshdrop("publisher", "revoke", folder, first, "--reason", "retired"),
        "already revoked (compromised",
    )


def test_revoke_refuses_unknown_keys_and_root_keys(tmp_path: Path) -> None:
    folder = new_publisher(tmp_path / "pub")
    [root] = show(folder)["roots"]
    assert_clean_error(
        run_meshdrop("publisher", "revoke", folder, "ffffffff", "--reason", "retired"),
        "has no signing key 'ffffffff'",
    )
    assert_clean_error(
        run_meshdrop("publisher", "revoke", folder, root, "--reason", "retired"),
        "is a root key",
        "rotate-root",
    )
    assert_clean_error(
        run_meshdrop("publisher", "revoke", folder, "x", "--reason", "lost"), "invalid value"
    )
    assert show(folder)["version"] == 1


def test_revoking_the_last_key_says_to_add_one(tmp_path: Path) -> None:
    folder = new_publisher(tmp_path / "pub")
    [only] = signer_ids(folder)
    result = cli("publisher", "revoke", folder, only, "--reason", "retired")
    assert "no signing key is left" in result.out
    assert signer_ids(folder) == []


# --- rotate-root -----------------------------------------------------------------------------


def test_rotate_root_is_followed_by_a_node_holding_record_1(tmp_path: Path) -> None:
    folder = new_publisher(tmp_path / "pub")
    pinned = tmp_path / "pinned-v1.pub"
    shutil.copy(folder / "publisher.pub", pinned)
    [old_root] = show(folder)["roots"]
    old_root_key = load_private_key(folder / f"root-{old_root}.key", lambda _: None)

    result = cli(
        "publisher", "rotate-root", folder, "--roots", "3", "--threshold", "2", "--unencrypted"
    )
    assert "published version 2" in result.out
    info = show(folder)
    new_roots = info["roots"]
    assert isinstance(new_roots, list) and len(new_roots) == 3 and old_root not in new_roots
    assert info["threshold"] == 2 and info["root_keys_here"] == new_roots
    assert not (folder / f"root-{old_root}.key").exists()
    assert (folder / "retired" / f"root-{old_root}.key").is_file()
    # Later changes are signed by the new roots only.
    added = add_signer(folder)

    record_1_only = start_state(chain_of(pinned))
    assert record_1_only.version == 1
    state, problem = advance_state(record_1_only, chain_of(folder / "publisher.pub"))
    assert problem is None and state.version == 3
    assert sorted(key_id(k) for k in state.current.roots) == sorted(new_roots)
    assert state.signer(next(s.key for s in state.current.signers if s.id == added))

    # The retired root can no longer change anything.
    forged = dataclasses.replace(state.current, version=4, signers=(), raw=b"")
    _, refused = advance_state(state, [sign_record(forged, [old_root_key])])
    assert refused is not None and "previous root keys" in refused

    bundle = pack_into(folder, tmp_path, "after-rotation.mdrop")
    assert bundle_signer(bundle) == added
    cli("verify", bundle, "--trust", pinned)


def test_rotate_root_keeps_named_roots_and_defaults_to_the_same_shape(tmp_path: Path) -> None:
    folder = new_publisher(tmp_path / "pub", roots=3, threshold=2)
    before = show(folder)["roots"]
    assert isinstance(before, list)
    cli("publisher", "rotate-root", folder, "--unencrypted")
    after = show(folder)
    assert after["threshold"] == 2 and len(after["roots"]) == 3
    assert not set(before) & set(after["roots"])
    keep = after["roots"][0]
    cli("publisher", "rotate-root", folder, "--keep-root", keep, "--roots", "2", "--unencrypted")
    final = show(folder)
    assert keep in final["roots"] and len(final["roots"]) == 2
    assert final["threshold"] == 2  # a majority of 2
    assert len(list((folder / "retired").glob("root-*.key"))) == 5
    assert_clean_error(
        run_meshdrop("publisher", "rotate-root", folder, "--keep-root", "zz"),
        "is not one current root key",
    )
    assert_clean_error(
        run_meshdrop("publisher", "rotate-root", folder, "--roots", "2", "--threshold", "3"),
        "threshold must be from 1",
    )


# --- threshold signing on separate machines --------------------------------------------------


@dataclasses.dataclass
class Office:
    """A 2-of-3 publisher whose three root keys live on three separate machines."""

    folder: Path
    holders: dict[str, Path]  # holder name -> their root key file

    def copy_for(self, proposal: Path, who: str) -> Path:
        target = self.holders[who].parent / f"{who}.proposal"
        shutil.copy(proposal, target)
        return target

    def sign(self, proposal: Path, who: str, *extra: str | Path, run: Runner = step) -> Result:
        return run("publisher", "sign", proposal, "--key", self.holders[who], *extra)

    def combine(self, *proposals: Path) -> Result:
        return run_meshdrop("publisher", "combine", *proposals, "--publisher", self.folder)


@pytest.fixture
def office(tmp_path: Path) -> Office:
    folder = new_publisher(tmp_path / "office", roots=3, threshold=2)
    holders = {}
    for who, root in zip(("ana", "ben", "kim"), sorted(folder.glob("root-*.key")), strict=True):
        machine = tmp_path / f"machine-{who}"
        machine.mkdir()
        holders[who] = machine / root.name
        shutil.move(root, holders[who])
    return Office(folder, holders)


def test_without_root_keys_a_change_must_be_proposed(office: Office, tmp_path: Path) -> None:
    result = run_meshdrop("publisher", "add-signer", office.folder, "--unencrypted")
    assert_clean_error(result, "does not hold enough root keys", "0 of the 2", "--propose")
    assert len(result.err.strip().splitlines()) == 1
    assert show(office.folder)["version"] == 1
    assert len(list(office.folder.glob("signer-*.key"))) == 1  # nothing written


def test_propose_sign_combine_two_of_three(office: Office, tmp_path: Path) -> None:
    proposal = tmp_path / "add.proposal"
    out = cli("publisher", "add-signer", office.folder, "--unencrypted", "--propose", proposal).out
    assert "nothing is published yet" in out
    assert proposal.read_bytes().startswith(PROPOSAL_MAGIC)
    assert parse_proposal(proposal.read_bytes(), "p").signatures == ()
    assert show(office.folder)["version"] == 1

    ana = office.copy_for(proposal, "ana")
    ben = office.copy_for(proposal, "ben")
    signed = office.sign(ana, "ana", "--publisher", office.folder / "publisher.pub", run=cli).out
    # The holder sees what they sign: publisher, version, roots, signers, and the change.
    assert "Lifecycle News" in signed and "version     2" in signed
    assert "2 of 3 must sign" in signed and "adds signing key" in signed
    assert "signed with root key" in signed and "1 signature" in signed

    refused = office.combine(ana)
    assert_clean_error(refused, "needs 1 more valid signature by the root keys (has 1 of 2")
    assert len(refused.err.strip().splitlines()) == 1
    assert show(office.folder)["version"] == 1

    office.sign(ben, "ben")
    result = office.combine(ana, ben)
    assert result.code == 0, result.err
    assert "published version 2" in result.out and "adds signing key" in result.out
    info = show(office.folder)
    assert info["version"] == 2 and len(info["signers"]) == 2
    [published] = chain_of(office.folder / "publisher.pub")[1:]
    assert len(published.signatures) == 2


def test_combine_counts_only_valid_signatures_by_distinct_root_keys(
    office: Office, tmp_path: Path
) -> None:
    proposal = tmp_path / "add.proposal"
    step("publisher", "add-signer", office.folder, "--unencrypted", "--propose", proposal)
    first = office.copy_for(proposal, "ana")
    second = office.holders["ana"].parent / "second-copy.proposal"
    shutil.copy(proposal, second)
    office.sign(first, "ana")
    office.sign(second, "ana")

    # A key that is not a root key of this publisher.
    stranger = tmp_path / "stranger.key"
    step("publisher", "keygen", stranger, "--unencrypted")
    stranger_copy = tmp_path / "stranger.proposal"
    shutil.copy(proposal, stranger_copy)
    note = cli("publisher", "sign", stranger_copy, "--key", stranger).out
    assert "is not among this record's root keys" in note

    # The same key's signature twice, in two copies and listed twice in one file.
    doubled = tmp_path / "doubled.proposal"
    parsed = parse_proposal(first.read_bytes(), "first")
    doubled_value = dataclasses.replace(parsed, signatures=parsed.signatures * 2)
    doubled.write_bytes(doubled_value.encode())

    cases = {
        "same key in two copies": [first, second],
        "same key twice in one file": [doubled],
        "a key that is not a root": [first, stranger_copy],
    }
    for case, files in cases.items():
        result = office.combine(*files)
        assert_clean_error(result, "has 1 of 2")
        assert "not yet signed by" in result.err, case
    assert show(office.folder)["version"] == 1


def test_combine_refuses_a_record_altered_after_signing(office: Office, tmp_path: Path) -> None:
    proposal = tmp_path / "add.proposal"
    step("publisher", "add-signer", office.folder, "--unencrypted", "--propose", proposal)
    ana = office.copy_for(proposal, "ana")
    ben = office.copy_for(proposal, "ben")
    office.sign(ana, "ana")
    office.sign(ben, "ben")

    def altered(path: Path) -> Path:
        parsed = parse_proposal(path.read_bytes(), path.name)
        signers = tuple(
            dataclasses.replace(s, expires=s.expires + 1) for s in parsed.record.signers
        )
        record_bytes = codec.pack(dataclasses.replace(parsed.record, signers=signers).to_value())
        out = path.with_name(f"altered-{path.name}")
        out.write_bytes(
            dataclasses.replace(
                parsed, record=parse_record(record_bytes), record_bytes=record_bytes
            ).encode()
        )
        return out

    assert_clean_error(office.combine(altered(ana), altered(ben)), "has 0 of 2")
    assert_clean_error(office.combine(ana, altered(ben)), "propose different records")
    assert show(office.folder)["version"] == 1
    assert office.combine(ana, ben).code == 0


def test_combine_refuses_a_stale_or_damaged_proposal(office: Office, tmp_path: Path) -> None:
    stale = tmp_path / "stale.proposal"
    fresh = tmp_path / "fresh.proposal"
    step("publisher", "add-signer", office.folder, "--unencrypted", "--propose", stale)
    step("publisher", "add-signer", office.folder, "--unencrypted", "--propose", fresh)
    for who in ("ana", "kim"):
        office.sign(fresh, who)
        office.sign(stale, who)
    assert office.combine(fresh).code == 0
    assert_clean_error(office.combine(stale), "can no longer be published", "another version 2")

    damaged = tmp_path / "damaged.proposal"
    damaged.write_bytes(stale.read_bytes()[:-3])
    assert_clean_error(office.combine(damaged), "truncated")
    (tmp_path / "not.proposal").write_bytes(b"hello")
    assert_clean_error(office.combine(tmp_path / "not.proposal"), "is not a meshdrop proposal file")
    assert_clean_error(
        run_meshdrop("publisher", "add-signer", office.folder, "--propose", fresh),
        "already exists",
    )


def test_sign_refuses_signing_keys_and_other_publishers(office: Office, tmp_path: Path) -> None:
    proposal = tmp_path / "add.proposal"
    step("publisher", "add-signer", office.folder, "--unencrypted", "--propose", proposal)
    signing_key = next(office.folder.glob("signer-*.key"))
    assert_clean_error(
        run_meshdrop("publisher", "sign", proposal, "--key", signing_key),
        "is a signing key; proposals are signed with root keys",
    )
    other = new_publisher(tmp_path / "other")
    assert_clean_error(
        run_meshdrop(
            "publisher", "sign", proposal, "--key", office.holders["ana"], "--publisher", other
        ),
        "the proposal is for another publisher",
    )
    stranger = tmp_path / "stranger.key"
    step("publisher", "keygen", stranger, "--unencrypted")
    assert_clean_error(
        run_meshdrop(
            "publisher", "sign", proposal, "--key", stranger, "--publisher", office.folder
        ),
        "is not a root key of publisher",
    )
    assert parse_proposal(proposal.read_bytes(), "p").signatures == ()
    office.sign(proposal, "ana")
    again = office.sign(proposal, "ana", run=cli)
    assert "already signed" in again.out
    assert len(parse_proposal(proposal.read_bytes(), "p").signatures) == 1


def test_rotation_to_holder_made_keys_needs_old_and_new_roots(
    office: Office, tmp_path: Path
) -> None:
    pinned = tmp_path / "pinned-v1.pub"
    shutil.copy(office.folder / "publisher.pub", pinned)
    new_keys = {}
    for who in ("dae", "eun", "fay"):
        machine = tmp_path / f"machine-{who}"
        machine.mkdir()
        new_keys[who] = machine / f"{who}.key"
        made = cli("publisher", "keygen", new_keys[who], "--unencrypted").out
        assert "made root key" in made
        assert (machine / f"{who}.pubkey").is_file()
    refused = run_meshdrop(
        "publisher", "rotate-root", office.folder, *_new_root_args(new_keys), "--threshold", "2"
    )
    assert_clean_error(refused, "does not hold enough root keys", "--propose")

    proposal = tmp_path / "rotate.proposal"
    cli(
        "publisher",
        "rotate-root",
        office.folder,
        *_new_root_args(new_keys),
        "--threshold",
        "2",
        "--propose",
        proposal,
    )
    for who in ("dae", "eun"):
        step("publisher", "sign", proposal, "--key", new_keys[who])
    only_new = office.combine(proposal)
    assert_clean_error(only_new, "2 more valid signatures by the current root keys (has 0 of 2")
    assert "new root keys" not in only_new.err

    old_only = tmp_path / "old-only.proposal"
    shutil.copy(proposal, old_only)
    office.sign(proposal, "ana")
    office.sign(proposal, "kim")
    assert office.combine(proposal).code == 0

    info = show(office.folder)
    assert info["version"] == 2
    assert sorted(info["roots"]) == sorted(
        read_key_id(new_keys[w].with_suffix(".pubkey")) for w in new_keys
    )
    state, problem = advance_state(
        start_state(chain_of(pinned)), chain_of(office.folder / "publisher.pub")
    )
    assert problem is None and state.version == 2


def _new_root_args(keys: dict[str, Path]) -> list[str]:
    return [
        arg for path in keys.values() for arg in ("--new-root", str(path.with_suffix(".pubkey")))
    ]


def read_key_id(pubkey: Path) -> str:
    return key_id(read_public_key_file(pubkey))


def test_new_root_refuses_what_is_not_a_pubkey_file(tmp_path: Path) -> None:
    folder = new_publisher(tmp_path / "pub")
    [root_file] = folder.glob("root-*.key")
    assert_clean_error(
        run_meshdrop("publisher", "rotate-root", folder, "--new-root", root_file),
        "is a private key file; give its .pubkey file instead",
    )
    (tmp_path / "junk.pubkey").write_text("meshdrop-public-key-v1 00\n")
    assert_clean_error(
        run_meshdrop("publisher", "rotate-root", folder, "--new-root", tmp_path / "junk.pubkey"),
        "is not a meshdrop public key file",
    )
    small_order = tmp_path / "small.pubkey"
    small_order.write_bytes(encode_public_key_file(bytes(32)))
    assert_clean_error(
        run_meshdrop("publisher", "rotate-root", folder, "--new-root", small_order),
        "small-order",
    )
    assert show(folder)["version"] == 1


def test_keygen_never_overwrites(tmp_path: Path) -> None:
    out = tmp_path / "mine.key"
    cli("publisher", "keygen", out, "--unencrypted")
    before = out.read_bytes()
    assert_clean_error(run_meshdrop("publisher", "keygen", out, "--unencrypted"), "already exists")
    assert out.read_bytes() == before
    assert parse_key_file(before, out).kind is KeyKind.ROOT
    assert read_public_key_file(out.with_suffix(".pubkey")) == parse_key_file(before, out).public


# --- encrypted keys through the command -------------------------------------------------------


def test_encrypted_publisher_lifecycle_through_the_command(tmp_path: Path) -> None:
    env = {"MESHDROP_PASSPHRASE": "correct horse"}
    folder = tmp_path / "pub"
    cli("publisher", "new", folder, "--name", "Sealed", "--roots", "2", env=env)
    for key_file in [*folder.glob("root-*.key"), *folder.glob("signer-*.key")]:
        assert parse_key_file(key_file.read_bytes(), key_file).encrypted
    wrong = run_meshdrop("publisher", "add-signer", folder, env={"MESHDROP_PASSPHRASE": "wrong"})
    assert_clean_error(wrong, "wrong passphrase for", "root-")
    no_passphrase = run_meshdrop("publisher", "add-signer", folder)
    assert_clean_error(no_passphrase, "a passphrase is needed", "MESHDROP_PASSPHRASE")
    assert show(folder)["version"] == 1
    cli("publisher", "add-signer", folder, env=env)
    assert show(folder)["version"] == 2


# --- show -------------------------------------------------------------------------------------


def test_show_json_of_a_folder_and_of_a_pub_file(tmp_path: Path) -> None:
    folder = new_publisher(tmp_path / "pub", roots=2, threshold=1)
    added = add_signer(folder, "--expires", "2098-06-01", "--scope", "news-*")
    elsewhere = tmp_path / "copy.pub"
    shutil.copy(folder / "publisher.pub", elsewhere)
    from_folder = show(folder, run=cli)
    from_file = show(elsewhere, run=cli)
    expected_keys = {"fingerprint", "name", "version", "threshold", "roots", "signers", "revoked"}
    assert expected_keys <= set(from_file)
    assert {k: from_folder[k] for k in from_file} == from_file
    assert from_file["fingerprint"] == load_publisher(folder).state.fingerprint
    assert from_file["revoked"] == []
    [entry] = [s for s in from_file["signers"] if s["id"] == added]
    assert set(entry) == {"id", "not_before", "expires", "scope", "state"}
    assert entry["scope"] == ["news-*"] and entry["state"] == "valid"
    assert "root_keys_here" not in from_file
    assert len(from_folder["root_keys_here"]) == 2
    assert_clean_error(run_meshdrop("publisher", "show", tmp_path / "nothing"), "no such file")
    (tmp_path / "bad.pub").write_bytes(b"\x89MDPUB\r\n\xc1")
    assert_clean_error(run_meshdrop("publisher", "show", tmp_path / "bad.pub"), "bad.pub")


# --- the private key file ---------------------------------------------------------------------


def test_key_file_fields_with_the_default_strength(tmp_path: Path) -> None:
    key = generate_private_key()
    path = tmp_path / "root.key"
    write_private_key(path, key, KeyKind.ROOT, PASSPHRASE)
    data = path.read_bytes()
    assert data.startswith(b"\x89MDKEY\r\n")
    fields = codec.unpack(data[8:], codec.Limits(max_bytes=4096), "key")
    assert fields["format"] == 1 and fields["kind"] == "root" and fields["kdf"] == "scrypt"
    assert (fields["n"], fields["r"], fields["p"]) == (2**17, 8, 1)
    assert len(fields["salt"]) == 16 and len(fields["nonce"]) == 12
    assert len(fields["sealed"]) == 48 and fields["public"] == public_bytes(key)
    assert "seed" not in fields
    assert key.private_bytes_raw() not in data
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_private_key(path, lambda _: PASSPHRASE)
    assert loaded.private_bytes_raw() == key.private_bytes_raw()


@pytest.mark.usefixtures("fast_scrypt")
def test_wrong_or_missing_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "signer.key"
    write_private_key(path, generate_private_key(), KeyKind.SIGNER, PASSPHRASE)
    with pytest.raises(PassphraseError, match=rf"^wrong passphrase for {path}$"):
        load_private_key(path, lambda _: b"not it")
    with pytest.raises(PassphraseError, match="no passphrase was given"):
        load_private_key(path, lambda _: None)
    asked: list[str] = []

    def provider(what: str) -> bytes:
        asked.append(what)
        return PASSPHRASE

    load_private_key(path, provider)
    assert asked == [str(path)]


def test_unencrypted_key_file(tmp_path: Path) -> None:
    key = generate_private_key()
    path = tmp_path / "plain.key"
    write_private_key(path, key, KeyKind.SIGNER, None)
    fields = codec.unpack(path.read_bytes()[8:], codec.Limits(max_bytes=4096), "key")
    assert fields["kdf"] == "none" and fields["seed"] == key.private_bytes_raw()
    assert not {"n", "r", "p", "salt", "nonce", "sealed"} & set(fields)

    def never(what: str) -> bytes:
        raise AssertionError("asked for a passphrase")

    assert load_private_key(path, never).private_bytes_raw() == key.private_bytes_raw()
    with pytest.raises(UsageError, match="holds a signing key, not a root key"):
        load_private_key(path, never, KeyKind.ROOT)


@pytest.mark.usefixtures("fast_scrypt")
@pytest.mark.parametrize("passphrase", [None, PASSPHRASE], ids=["plain", "sealed"])
def test_every_tampered_byte_is_a_format_error(tmp_path: Path, passphrase: bytes | None) -> None:
    data = encode_key_file(generate_private_key(), KeyKind.ROOT, passphrase)
    path = tmp_path / "k.key"
    for i in range(len(data)):
        for flip in (0x01, 0x80):
            damaged = bytearray(data)
            damaged[i] ^= flip
            with pytest.raises(FormatError, match=r"k\.key (is damaged|asks for)"):
                parse_key_file(bytes(damaged), path)
    for end in range(len(data)):
        with pytest.raises(FormatError, match="damaged"):
            parse_key_file(data[:end], path)
    with pytest.raises(FormatError, match="damaged"):
        parse_key_file(data + b"\x00", path)


def _resealed(data: bytes, **changes: object) -> bytes:
    """A key file with fields changed and its check digest recomputed (a forger's file)."""
    fields = codec.unpack(data[8:], codec.Limits(max_bytes=4096), "key")
    fields.update(changes)
    del fields["check"]
    fields["check"] = hashlib.sha256(KEY_MAGIC + codec.pack(fields)).digest()
    return KEY_MAGIC + codec.pack(fields)


@pytest.mark.usefixtures("fast_scrypt")
@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"seed": bytes(32)}, FormatError, "does not match its public key"),
        ({"public": public_bytes(generate_private_key())}, FormatError, "does not match"),
        ({"kind": "admin"}, FormatError, "unknown or invalid key"),
        ({"public": bytes(32)}, FormatError, "unknown or invalid key"),
        ({"kdf": "argon2"}, FormatError, "unknown kind of key protection"),
        ({"format": 2}, FormatError, "newer meshdrop"),
        ({"extra": 1}, FormatError, "unknown field"),
    ],
    ids=["seed", "public", "kind", "small_order", "kdf", "format", "extra_field"],
)
def test_forged_plain_key_files(
    tmp_path: Path, changes: dict[str, object], error: type[Exception], message: str
) -> None:
    path = tmp_path / "k.key"
    path.write_bytes(
        _resealed(encode_key_file(generate_private_key(), KeyKind.ROOT, None), **changes)
    )
    with pytest.raises(error, match=message):
        load_private_key(path, lambda _: None)


@pytest.mark.usefixtures("fast_scrypt")
@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"n": 2**24}, FormatError, "passphrase strength"),
        ({"r": 1}, FormatError, "passphrase strength"),
        ({"public": public_bytes(generate_private_key())}, PassphraseError, "wrong passphrase"),
    ],
    ids=["huge_n", "weak_r", "swapped_public"],
)
def test_forged_sealed_key_files(
    tmp_path: Path, changes: dict[str, object], error: type[Exception], message: str
) -> None:
    path = tmp_path / "k.key"
    sealed = encode_key_file(generate_private_key(), KeyKind.ROOT, PASSPHRASE)
    path.write_bytes(_resealed(sealed, **changes))
    with pytest.raises(error, match=message):
        load_private_key(path, lambda _: PASSPHRASE)


def test_key_file_holding_another_key_than_its_name(tmp_path: Path) -> None:
    create_publisher(tmp_path / "pub", "NGO", None, NOW, roots=2, threshold=2)
    loaded = load_publisher(tmp_path / "pub")
    first, second = loaded.current.roots
    path_of = {k: tmp_path / "pub" / f"root-{key_id(k)}.key" for k in (first, second)}
    path_of[first].write_bytes(path_of[second].read_bytes())
    with pytest.raises(FormatError, match="another key than its name says"):
        loaded.root_key_file(first)


def test_proposal_file_is_parsed_strictly(tmp_path: Path) -> None:
    create_publisher(tmp_path / "pub", "NGO", None, NOW)
    record = load_publisher(tmp_path / "pub").current
    record_bytes = codec.pack(dataclasses.replace(record, version=2).to_value())
    good = PROPOSAL_MAGIC + codec.pack({"record": record_bytes, "signatures": []})
    assert parse_proposal(good, "p").record.version == 2
    bad = {
        "magic": b"\x89MDPUB\r\n" + good[8:],
        "extra field": PROPOSAL_MAGIC
        + codec.pack({"record": record_bytes, "signatures": [], "x": 1}),
        "short key": PROPOSAL_MAGIC
        + codec.pack({"record": record_bytes, "signatures": [{"key": b"k", "sig": bytes(64)}]}),
        "not a record": PROPOSAL_MAGIC + codec.pack({"record": b"junk", "signatures": []}),
        "non-canonical": PROPOSAL_MAGIC
        + b"\x82\xaasignatures\x90\xa6record"
        + codec.pack(record_bytes),
        "trailing": good + b"\x00",
    }
    for case, data in bad.items():
        with pytest.raises(FormatError):
            parse_proposal(data, case)
