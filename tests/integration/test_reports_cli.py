"""Reports from the terminal, end to end with real `meshdrop` runs: the publisher's report
keys and their reserved bundle, `report write`, `reports open`, `reports ack`, key
retirement; every refusal one line, with its exit code and nothing lost."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest
from PIL import ExifTags, Image

from conftest import (
    assert_clean_error,
    meshdrop_in_process,
    run_meshdrop,
)
from meshdrop.publish.keyfile import KEY_MAGIC
from meshdrop.reader.imageclean import clean

KOREAN = "여권을 빼앗겼습니다. 임금이 석 달째 밀렸어요."
PASSPHRASE = {"MESHDROP_PASSPHRASE": "correct horse battery"}


def phone_jpeg() -> bytes:
    """A JPEG as a phone writes it: camera make and GPS position in its EXIF."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "SecretMaker"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (37.0, 33.0, 59.88)
    out = io.BytesIO()
    image = Image.new("RGB", (64, 32), (20, 20, 220))
    image.paste((220, 20, 20), (0, 0, 32, 32))
    image.save(out, "JPEG", quality=95, exif=exif)
    data = out.getvalue()
    assert b"SecretMaker" in data and Image.open(io.BytesIO(data)).getexif().get_ifd(
        ExifTags.IFD.GPSInfo
    )
    return data


def new_publisher(folder: Path, *extra: str) -> str:
    """A publisher made in process (unencrypted keys); its fingerprint."""
    result = meshdrop_in_process(
        "publisher",
        "new",
        folder,
        "--name",
        "Inbox News",
        "--unencrypted",
        "--json",
        *extra,
        check=True,
    )
    return str(json.loads(result.out)["fingerprint"])


def node_trusting(home: Path, publisher: Path) -> Path:
    meshdrop_in_process(
        "--home", home, "trust", "add", "--yes", publisher / "publisher.pub", check=True
    )
    return home


def held(home: Path) -> list[Path]:
    folder = home / "drops"
    return sorted(p for p in folder.iterdir() if len(p.name) == 64) if folder.is_dir() else []


@pytest.fixture
def inbox(tmp_path: Path) -> tuple[Path, str, Path]:
    """A publisher with a report key, and a node that trusts it and holds its
    report-keys bundle: (publisher folder, fingerprint, node home)."""
    publisher = tmp_path / "pub"
    fingerprint = new_publisher(publisher)
    home = node_trusting(tmp_path / "node", publisher)
    meshdrop_in_process("--home", home, "import", publisher / "report-keys.mdrop", check=True)
    return publisher, fingerprint, home


def test_publisher_new_makes_a_sealed_report_key_and_its_bundle(tmp_path: Path) -> None:
    folder = tmp_path / "pub"
    result = run_meshdrop("publisher", "new", folder, "--name", "Sealed", "--json", env=PASSPHRASE)
    assert result.code == 0, result.err
    info = json.loads(result.out)
    key_file = folder / f"report-{info['report_key']}.key"
    assert str(key_file) in info["files"]
    assert info["report_keys_bundle"] == str(folder / "report-keys.mdrop")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    data = key_file.read_bytes()
    assert data.startswith(KEY_MAGIC) and b"scrypt" in data and b'"seed"' not in data
    assert (folder / "report-keys" / "keys.bin").is_file()


def test_publisher_new_with_no_reports_makes_no_report_key(tmp_path: Path) -> None:
    folder = tmp_path / "pub"
    result = run_meshdrop(
        "publisher", "new", folder, "--name", "Quiet", "--unencrypted", "--no-reports"
    )
    assert result.code == 0, result.err
    assert list(folder.glob("report-*")) == []


def test_the_report_keys_bundle_imports_and_the_node_knows_the_key(
    tmp_path: Path,
) -> None:
    from meshdrop.store.reportkeys import report_keys
    from meshdrop.store.store import Store

    publisher = tmp_path / "pub"
    fingerprint = new_publisher(publisher)
    home = node_trusting(tmp_path / "node", publisher)
    result = run_meshdrop("--home", home, "import", publisher / "report-keys.mdrop")
    assert result.code == 0, result.err
    assert "imported" in result.out
    (key_file,) = publisher.glob("report-*.key")
    with Store(home) as store:
        keys = report_keys(store, store.now())
    assert [k.key_id.hex() for k in keys[fingerprint]] == [key_file.stem.removeprefix("report-")]


def test_write_then_open_round_trip_with_korean_text_and_a_cleaned_photo(
    tmp_path: Path, inbox: tuple[Path, str, Path]
) -> None:
    publisher, fingerprint, home = inbox
    photo = tmp_path / "IMG_20240312_143022.jpg"
    photo.write_bytes(phone_jpeg())
    written = run_meshdrop(
        "--home",
        home,
        "report",
        "write",
        "--to",
        fingerprint[:9],
        "--text",
        KOREAN,
        "--file",
        photo,
        "--json",
    )
    assert written.code == 0, written.err
    sealed = json.loads(written.out)
    receipt = sealed["receipt"]
    assert len(receipt) == 8
    (drop,) = held(home)
    assert drop.name == sealed["drop_id"]
    for path in (home / "drops").iterdir():  # nothing of the report in the clear
        data = path.read_bytes()
        assert KOREAN.encode() not in data and b"SecretMaker" not in data
    out = tmp_path / "opened"
    opened = run_meshdrop("--home", home, "reports", "open", "--publisher", publisher, "--out", out)
    assert opened.code == 0, opened.err
    assert opened.out.strip() == "opened 1, not for you 0"
    report = out / drop.name
    assert (report / "report.txt").read_text(encoding="utf-8") == KOREAN
    meta = json.loads((report / "meta.json").read_text(encoding="utf-8"))
    assert meta["receipt"] == receipt and meta["drop_id"] == drop.name
    assert meta["attachments"][0]["file"] == "photo-1.jpg"
    picture = (report / "photo-1.jpg").read_bytes()
    assert picture == clean(photo.read_bytes()).data  # the same cleaned pixels
    image = Image.open(io.BytesIO(picture))
    assert not image.getexif() and not image.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    assert image.size == (64, 32)
    assert b"Exif" not in picture and b"SecretMaker" not in picture
    assert stat.S_IMODE(report.stat().st_mode) == 0o700
    again = run_meshdrop(
        "--home", home, "reports", "open", "--publisher", publisher, "--out", out, "--json"
    )
    assert json.loads(again.out)["already_opened"] == 1


def test_a_publisher_without_the_key_cannot_open_the_drop(
    tmp_path: Path, inbox: tuple[Path, str, Path]
) -> None:
    _publisher, fingerprint, home = inbox
    meshdrop_in_process(
        "--home", home, "report", "write", "--to", fingerprint, "--text", KOREAN, check=True
    )
    stranger = tmp_path / "stranger"
    new_publisher(stranger)
    out = tmp_path / "stolen"
    result = run_meshdrop("--home", home, "reports", "open", "--publisher", stranger, "--out", out)
    assert result.code == 0, result.err
    assert result.out.strip() == "opened 0, not for you 1"
    assert list(out.iterdir()) == []
    assert len(held(home)) == 1  # untouched


def test_ack_round_trip_deletes_the_drop_and_the_receipt_says_delivered(
    tmp_path: Path, inbox: tuple[Path, str, Path]
) -> None:
    from meshdrop.store.drops import DropStore

    publisher, fingerprint, home = inbox
    written = meshdrop_in_process(
        "--home", home, "report", "write", "--to", fingerprint, "--text", "hi", "--json", check=True
    )
    receipt = json.loads(written.out)["receipt"]
    (drop,) = held(home)
    carried = tmp_path / "carried.drop"
    carried.write_bytes(drop.read_bytes())
    assert DropStore(home).receipt_state(receipt) == "waiting"
    out = tmp_path / "opened"
    meshdrop_in_process(
        "--home", home, "reports", "open", "--publisher", publisher, "--out", out, check=True
    )
    acked = run_meshdrop("reports", "ack", "--publisher", publisher, "--opened", out, "--json")
    assert acked.code == 0, acked.err
    assert json.loads(acked.out)["drops"] == 1
    imported = run_meshdrop("--home", home, "import", publisher / "report-keys.mdrop")
    assert imported.code == 0, imported.err
    assert held(home) == []
    assert DropStore(home).receipt_state(receipt) == "delivered"
    replayed = run_meshdrop("--home", home, "import", carried)
    assert replayed.code == 0 and "already had" in replayed.out
    assert held(home) == []


def test_a_retired_key_is_no_longer_offered_and_its_seed_goes_after_the_grace(
    tmp_path: Path, inbox: tuple[Path, str, Path]
) -> None:
    publisher, fingerprint, home = inbox
    (old,) = publisher.glob("report-*.key")
    old_id = old.stem.removeprefix("report-")
    retired = run_meshdrop(
        "publisher", "retire-report-key", publisher, old_id[:8], "--at", "2020-01-01"
    )
    assert retired.code == 0, retired.err
    meshdrop_in_process("--home", home, "import", publisher / "report-keys.mdrop", check=True)
    refused = run_meshdrop("--home", home, "report", "write", "--to", fingerprint, "--text", "x")
    assert_clean_error(refused, "has no report key on this node")
    assert refused.code == 2
    added = run_meshdrop("publisher", "add-report-key", publisher, "--unencrypted", "--json")
    assert added.code == 0, added.err
    new_id = json.loads(added.out)["report_key"]
    meshdrop_in_process("--home", home, "import", publisher / "report-keys.mdrop", check=True)
    meshdrop_in_process(
        "--home", home, "report", "write", "--to", fingerprint, "--text", "x", check=True
    )
    opened = run_meshdrop(
        "--home", home, "reports", "open", "--publisher", publisher, "--out", tmp_path / "opened"
    )
    assert opened.code == 0, opened.err
    assert f"destroyed the private key of retired report key {old_id[:12]}" in opened.out
    assert not old.exists()
    assert (publisher / f"report-{new_id}.key").is_file()
    assert opened.out.strip().endswith("opened 1, not for you 0")


def test_report_write_refuses_a_file_it_cannot_clean_with_one_line(
    tmp_path: Path, inbox: tuple[Path, str, Path]
) -> None:
    _publisher, fingerprint, home = inbox
    pdf = tmp_path / "payslip.pdf"
    pdf.write_bytes(b"%PDF-1.7\n secret payslip")
    result = run_meshdrop(
        "--home", home, "report", "write", "--to", fingerprint, "--text", "x", "--file", pdf
    )
    assert_clean_error(result, "payslip.pdf", "a PDF document cannot be cleaned")
    assert result.code == 2
    assert held(home) == []


def test_report_write_to_a_publisher_without_report_keys_is_refused(tmp_path: Path) -> None:
    publisher = tmp_path / "pub"
    fingerprint = new_publisher(publisher, "--no-reports")
    home = node_trusting(tmp_path / "node", publisher)
    result = run_meshdrop("--home", home, "report", "write", "--to", fingerprint, "--text", "x")
    assert_clean_error(result, "has no report key on this node")
    unknown = run_meshdrop("--home", home, "report", "write", "--to", "ZZZZ-ZZZZ", "--text", "x")
    assert_clean_error(unknown, "no trusted publisher")
    empty = run_meshdrop("--home", home, "report", "write", "--to", fingerprint)
    assert_clean_error(empty, "the report is empty")
    assert empty.code == 2


def test_report_write_out_file_then_open_from_it(
    tmp_path: Path, inbox: tuple[Path, str, Path]
) -> None:
    publisher, fingerprint, home = inbox
    out_file = tmp_path / "stick" / "r.drop"
    out_file.parent.mkdir()
    meshdrop_in_process(
        "--home",
        home,
        "report",
        "write",
        "--to",
        fingerprint,
        "--text",
        KOREAN,
        "--out",
        out_file,
        check=True,
    )
    assert held(home) == []
    result = run_meshdrop(
        "reports",
        "open",
        "--publisher",
        publisher,
        "--from",
        out_file.parent,
        "--out",
        tmp_path / "opened",
        "--json",
    )
    assert result.code == 0, result.err
    assert json.loads(result.out)["opened"] == 1
