"""What the publisher commands tell people (issue 14): the signing ceremony says which
file is stale and what to do, reporting a key compromised asks first, weak passphrases are
refused, keygen makes its folder, every command that changes something has --json, and
counts are plural-correct. The command under test runs as the installed `meshdrop`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from ptykit import run_in_terminal

from conftest import assert_clean_error, meshdrop_in_process, run_meshdrop

EXIT_USAGE = 2
EXIT_TRUST = 4
STRONG = {"MESHDROP_PASSPHRASE": "a long enough passphrase"}


def step(*args: str | Path) -> str:
    return meshdrop_in_process(*args, check=True).out


def version_of(folder: Path) -> int:
    return int(json.loads(step("publisher", "show", folder, "--json"))["version"])


def signer_of(folder: Path) -> str:
    [signer] = json.loads(step("publisher", "show", folder, "--json"))["signers"]
    return str(signer["id"])


class Office:
    """A 2-of-3 publisher whose root keys were moved to their holders' machines."""

    def __init__(self, root: Path) -> None:
        self.folder = root / "office"
        step("publisher", "new", self.folder, "--name", "Office", "--roots", "3", "--unencrypted")
        self.keys: list[Path] = []
        for key in sorted(self.folder.glob("root-*.key")):
            holder = root / f"holder-{len(self.keys)}"
            holder.mkdir()
            self.keys.append(Path(shutil.move(key, holder / key.name)))

    def propose(self, out: Path) -> Path:
        step("publisher", "add-signer", self.folder, "--unencrypted", "--propose", out)
        return out

    def sign(self, proposal: Path, *holders: int) -> None:
        for holder in holders:
            step("publisher", "sign", proposal, "--key", self.keys[holder])


@pytest.fixture
def office(tmp_path: Path) -> Office:
    return Office(tmp_path)


# --- the signing ceremony -----------------------------------------------------------------


def test_signing_with_a_stale_publisher_file_says_the_file_is_stale(
    office: Office, tmp_path: Path
) -> None:
    stale = Path(shutil.copy(office.folder / "publisher.pub", tmp_path / "holders-copy.pub"))
    first = office.propose(tmp_path / "first.proposal")
    office.sign(first, 0, 1)
    step("publisher", "combine", first, "--publisher", office.folder)
    second = office.propose(tmp_path / "second.proposal")
    result = run_meshdrop(
        "publisher", "sign", second, "--key", office.keys[0], "--publisher", stale
    )
    assert result.code == EXIT_TRUST
    assert_clean_error(
        result, f"{stale} is out of date", "holds version 1", "get the current publisher.pub"
    )
    assert "make a new proposal" not in result.err


def test_combining_an_already_published_proposal_says_so(office: Office, tmp_path: Path) -> None:
    proposal = office.propose(tmp_path / "add.proposal")
    office.sign(proposal, 0, 1)
    step("publisher", "combine", proposal, "--publisher", office.folder)
    result = run_meshdrop("publisher", "combine", proposal, "--publisher", office.folder)
    assert result.code == EXIT_TRUST
    assert_clean_error(result, "the proposal is already published", "version 2")
    assert "make a new proposal" not in result.err
    assert version_of(office.folder) == 2


def test_sign_and_combine_count_signatures_in_plural_correct_words(
    office: Office, tmp_path: Path
) -> None:
    proposal = office.propose(tmp_path / "add.proposal")
    first = run_meshdrop("publisher", "sign", proposal, "--key", office.keys[0])
    assert first.out.strip().endswith("now holds 1 signature"), first.out
    short = run_meshdrop("publisher", "combine", proposal, "--publisher", office.folder)
    assert_clean_error(short, "needs 1 more valid signature by the root keys")
    second = run_meshdrop("publisher", "sign", proposal, "--key", office.keys[1])
    assert second.out.strip().endswith("now holds 2 signatures"), second.out
    assert "(s)" not in first.out + short.err + second.out


def test_sign_and_combine_json(office: Office, tmp_path: Path) -> None:
    proposal = office.propose(tmp_path / "add.proposal")
    office.sign(proposal, 0)
    signed = run_meshdrop("publisher", "sign", proposal, "--key", office.keys[1], "--json")
    assert signed.code == 0, signed.err
    info = json.loads(signed.out)
    assert info["action"] == "signed" and info["signatures"] == 2 and info["version"] == 2
    assert info["files"] == [str(proposal)]
    combined = run_meshdrop(
        "publisher", "combine", proposal, "--publisher", office.folder, "--json"
    )
    assert combined.code == 0, combined.err
    result = json.loads(combined.out)
    assert result["action"] == "published" and result["version"] == 2
    assert result["name"] == "Office" and result["ignored_signatures"] == 0
    assert result["files"] == [str(office.folder / "publisher.pub")]


# --- reporting a key compromised ----------------------------------------------------------


def test_revoke_compromised_without_a_terminal_or_yes_refuses(tmp_path: Path) -> None:
    folder = tmp_path / "pub"
    step("publisher", "new", folder, "--name", "News", "--unencrypted")
    result = run_meshdrop(
        "publisher", "revoke", folder, signer_of(folder), "--reason", "compromised"
    )
    assert result.code == EXIT_USAGE
    assert_clean_error(result, "withdraws everything it signed on every node", "--yes")
    assert version_of(folder) == 1


@pytest.mark.parametrize(("answer", "version"), [("y", 2), ("n", 1)])
def test_revoke_compromised_asks_on_a_terminal(answer: str, version: int, tmp_path: Path) -> None:
    folder = tmp_path / "pub"
    step("publisher", "new", folder, "--name", "News", "--unencrypted")
    signer = signer_of(folder)
    result = run_in_terminal(
        "publisher", "revoke", folder, signer, "--reason", "compromised", answer=answer
    )
    assert f"Revoke signing key {signer} as compromised?" in result.out
    assert "withdrawn on every node" in result.out
    assert (result.code == 0) is (answer == "y"), result.out
    assert version_of(folder) == version


def test_revoke_retired_asks_nothing_and_json_says_what_was_published(tmp_path: Path) -> None:
    folder = tmp_path / "pub"
    step("publisher", "new", folder, "--name", "News", "--unencrypted")
    signer = signer_of(folder)
    result = run_meshdrop("publisher", "revoke", folder, signer, "--reason", "retired", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out) == {
        "action": "published",
        "change": f"revoke signing key {signer} as retired",
        "files": [str(folder / "publisher.pub")],
        "fingerprint": json.loads(step("publisher", "show", folder, "--json"))["fingerprint"],
        "name": "News",
        "version": 2,
    }


# --- passphrases for new keys -------------------------------------------------------------


@pytest.mark.parametrize(
    "weak",
    [
        pytest.param("x", id="one character"),
        pytest.param("elevenchars", id="eleven characters"),
        pytest.param("abababababababab", id="two different characters"),
    ],
)
def test_a_weak_new_passphrase_is_refused(weak: str, tmp_path: Path) -> None:
    folder = tmp_path / "pub"
    result = run_meshdrop(
        "publisher", "new", folder, "--name", "News", env={"MESHDROP_PASSPHRASE": weak}
    )
    assert result.code == EXIT_USAGE
    assert_clean_error(result, "too weak", "at least 12 characters", "--weak-passphrase")
    assert len(result.err.strip().splitlines()) == 1
    assert not folder.exists()


def test_weak_passphrase_flag_accepts_it(tmp_path: Path) -> None:
    folder = tmp_path / "pub"
    result = run_meshdrop(
        "publisher",
        "new",
        folder,
        "--name",
        "News",
        "--weak-passphrase",
        env={"MESHDROP_PASSPHRASE": "x"},
    )
    assert result.code == 0, result.err
    assert (folder / "publisher.pub").is_file()


def test_add_signer_and_keygen_check_the_new_passphrase_too(tmp_path: Path) -> None:
    folder = tmp_path / "pub"
    step("publisher", "new", folder, "--name", "News", "--unencrypted")
    weak = {"MESHDROP_PASSPHRASE": "short"}
    signer = run_meshdrop("publisher", "add-signer", folder, env=weak)
    assert_clean_error(signer, "too weak")
    assert version_of(folder) == 1
    key = tmp_path / "holder" / "root.key"
    keygen = run_meshdrop("publisher", "keygen", key, env=weak)
    assert_clean_error(keygen, "too weak")
    assert not key.exists()


# --- keygen, new, add-signer, rotate-root -------------------------------------------------


def test_keygen_makes_its_folder_and_says_what_it_wrote_in_json(tmp_path: Path) -> None:
    key = tmp_path / "stick" / "ana" / "root.key"
    result = run_meshdrop("publisher", "keygen", key, "--json", env=STRONG)
    assert result.code == 0, result.err
    info = json.loads(result.out)
    assert info["action"] == "made" and len(info["key"]) == 16
    assert info["files"] == [str(key), str(key.with_suffix(".pubkey"))]
    assert key.is_file() and key.with_suffix(".pubkey").is_file()


def test_publisher_new_json(tmp_path: Path) -> None:
    folder = tmp_path / "pub"
    result = run_meshdrop(
        "publisher", "new", folder, "--name", "News", "--roots", "3", "--unencrypted", "--json"
    )
    assert result.code == 0, result.err
    info = json.loads(result.out)
    assert info["action"] == "created" and info["name"] == "News" and info["version"] == 1
    assert info["threshold"] == 2 and len(info["roots"]) == 3
    assert info["folder"] == str(folder)
    assert sorted(info["files"]) == sorted(str(p) for p in folder.iterdir())


def test_add_signer_json_published_and_proposed(office: Office, tmp_path: Path) -> None:
    proposal = tmp_path / "add.proposal"
    proposed = run_meshdrop(
        "publisher", "add-signer", office.folder, "--unencrypted", "--propose", proposal, "--json"
    )
    assert proposed.code == 0, proposed.err
    info = json.loads(proposed.out)
    assert info["action"] == "proposed" and info["version"] == 2
    [new_key] = [f for f in info["files"] if f.endswith(".key")]
    assert info["files"] == [str(proposal), new_key] and Path(new_key).is_file()

    folder = tmp_path / "solo"
    step("publisher", "new", folder, "--name", "Solo", "--unencrypted")
    published = run_meshdrop("publisher", "add-signer", folder, "--unencrypted", "--json")
    assert published.code == 0, published.err
    result = json.loads(published.out)
    assert result["action"] == "published" and result["version"] == 2
    assert result["change"].startswith("add signing key ")
    assert result["files"][0] == str(folder / "publisher.pub")


def test_rotate_root_json(tmp_path: Path) -> None:
    folder = tmp_path / "pub"
    step("publisher", "new", folder, "--name", "News", "--unencrypted")
    result = run_meshdrop(
        "publisher", "rotate-root", folder, "--roots", "2", "--unencrypted", "--json"
    )
    assert result.code == 0, result.err
    info = json.loads(result.out)
    assert info["action"] == "published" and info["version"] == 2
    assert info["change"].startswith("replace the root keys: 2 of 2")
    assert len([f for f in info["files"] if "root-" in f]) == 2
