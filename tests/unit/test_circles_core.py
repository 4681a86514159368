"""Circles' pure core (meshdrop/core/circles.py): invite codes, the HKDF derivations, the
epoch window and discovery tokens, against docs/PROTOCOL.md's "Circles" section."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from meshdrop.core.circles import (
    EPOCH_SECONDS,
    INVITE_ALPHABET,
    INVITE_CHARS,
    TOKEN_BYTES,
    Circle,
    CircleSecret,
    Generation,
    Purpose,
    ca_name,
    ca_seed,
    check_circle_name,
    circle_id,
    decode_invite,
    derive,
    encode_invite,
    epoch_of,
    make_token,
    new_circle,
    new_token,
    recognise,
    same_name,
    token_key,
    window,
)
from meshdrop.errors import (
    InviteCharacterError,
    InviteChecksumError,
    InviteError,
    InviteLengthError,
    InviteVersionError,
    UsageError,
)

PROTOCOL = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"
SECRET = CircleSecret(bytes(range(20)))
OTHER = CircleSecret(bytes(range(100, 120)))
NOW = 1_750_000_000.0  # a moment well inside epoch 20254
NONCE = bytes.fromhex("0001020304050607")


def secrets_for_tests(count: int) -> list[CircleSecret]:
    return [CircleSecret(hashlib.sha256(n.to_bytes(2, "big")).digest()[:20]) for n in range(count)]


def code_of(version: int, raw: bytes, spare: int = 0) -> str:
    """An invite code built here from the documented layout, not by encode_invite."""
    head = bytes([version]) + raw
    payload = head + hashlib.sha256(head).digest()[:3]
    compact = base64.b32encode(payload).decode().rstrip("=")
    last = INVITE_ALPHABET[INVITE_ALPHABET.index(compact[-1]) | spare]
    return compact[:-1] + last


# Invite codes


def test_invite_round_trip_and_layout() -> None:
    for secret in secrets_for_tests(64):
        code = encode_invite(secret)
        groups = code.split("-")
        assert [len(g) for g in groups] == [4] * 9 + [3]
        assert set(code.replace("-", "")) <= set(INVITE_ALPHABET)
        assert code.replace("-", "") == code_of(1, secret.raw)
        assert decode_invite(code) == secret


@pytest.mark.parametrize(
    "typed",
    [
        pytest.param(lambda c: c.lower(), id="lower-case"),
        pytest.param(lambda c: c.replace("-", ""), id="no-dashes"),
        pytest.param(lambda c: c.replace("-", " "), id="spaces"),
        pytest.param(lambda c: "  " + c.replace("-", " \t ") + "\n", id="any-white-space"),
        pytest.param(lambda c: c.replace("-", "\u2013"), id="en-dashes-from-a-document"),
        pytest.param(lambda c: c.replace("O", "0").replace("I", "1").replace("B", "8"), id="0-1-8"),
        pytest.param(lambda c: c, id="as-printed"),
    ],
)  # fmt: skip
def test_invites_are_read_forgivingly(typed: object) -> None:
    # A code with O, I and B in it, so that the 0/1/8 case has something to change.
    secret = next(s for s in secrets_for_tests(500) if {"O", "I", "B"} <= set(encode_invite(s)))
    assert callable(typed)
    assert decode_invite(typed(encode_invite(secret))) == secret


GOOD = encode_invite(SECRET)
COMPACT = GOOD.replace("-", "")

BAD_INVITES = {
    "empty": ("", InviteLengthError, "no invite code given"),
    "only-dashes": ("- - -", InviteLengthError, "no invite code given"),
    "one-group-missing": (GOOD.rsplit("-", 1)[0], InviteLengthError, "too short"),
    "one-letter-missing": (GOOD[:-1], InviteLengthError, "1 missing"),
    "one-letter-extra": (GOOD + "A", InviteLengthError, "1 extra"),
    "twice-the-code": (GOOD + GOOD, InviteLengthError, "too long"),
    "a-nine": (COMPACT[:5] + "9" + COMPACT[6:], InviteCharacterError, "'9' in group 2"),
    "a-padding-sign": (COMPACT[:-1] + "=", InviteCharacterError, "'='"),
    "a-hangul-letter": ("가" + COMPACT[1:], InviteCharacterError, "group 1"),
    "a-control-character": (COMPACT[:10] + "\x1b" + COMPACT[11:], InviteCharacterError, "\\x1b"),
    "a-typo": (COMPACT[:7] + ("A" if COMPACT[7] != "A" else "B") + COMPACT[8:],
               InviteChecksumError, "mistyped"),
    "spare-bits-set": (code_of(1, SECRET.raw, spare=1), InviteChecksumError, "mistyped"),
    "a-newer-version": (code_of(2, SECRET.raw), InviteVersionError, "version 2"),
    "version-zero": (code_of(0, SECRET.raw), InviteVersionError, "version 0"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_INVITES)
def test_bad_invite_is_refused_with_its_own_error(case: str) -> None:
    text, kind, fragment = BAD_INVITES[case]
    with pytest.raises(kind) as caught:
        decode_invite(text)
    message = str(caught.value)
    assert fragment in message
    assert "\n" not in message
    assert isinstance(caught.value, InviteError) and isinstance(caught.value, UsageError)
    assert caught.value.exit_code == 2
    assert COMPACT not in message  # the secret is never echoed back


def test_every_one_letter_typo_is_detected() -> None:
    for position in range(INVITE_CHARS):
        for letter in INVITE_ALPHABET:
            if letter == COMPACT[position]:
                continue
            typo = COMPACT[:position] + letter + COMPACT[position + 1 :]
            with pytest.raises(InviteChecksumError):
                decode_invite(typo)


def test_every_swap_of_two_neighbouring_letters_is_detected() -> None:
    for position in range(INVITE_CHARS - 1):
        a, b = COMPACT[position], COMPACT[position + 1]
        if a == b:
            continue
        swapped = COMPACT[:position] + b + a + COMPACT[position + 2 :]
        with pytest.raises(InviteChecksumError):
            decode_invite(swapped)


def test_a_circle_secret_never_shows_in_its_repr() -> None:
    shown = repr(SECRET) + repr(Generation(1, SECRET, created=0))
    assert SECRET.raw.hex() not in shown and COMPACT not in shown
    assert circle_id(SECRET) in shown


@pytest.mark.parametrize("size", [0, 19, 21, 32])
def test_a_circle_secret_is_twenty_bytes(size: int) -> None:
    with pytest.raises(ValueError, match="20 bytes"):
        CircleSecret(bytes(size))


def test_fresh_secrets_differ() -> None:
    assert len({CircleSecret.generate().raw for _ in range(100)}) == 100


# Derivations


def hkdf(raw: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(raw)


def test_derivations_follow_the_documented_labels() -> None:
    epoch = (20254).to_bytes(8, "big")
    raw = SECRET.raw
    assert circle_id(SECRET) == hkdf(raw, b"meshdrop circle v1 circle-id", 8).hex()
    assert token_key(SECRET, 20254) == hkdf(raw, b"meshdrop circle v1 token" + epoch, 32)
    assert ca_seed(SECRET, 20254) == hkdf(raw, b"meshdrop circle v1 ca-seed" + epoch, 32)
    assert ca_name(SECRET, 20254) == hkdf(raw, b"meshdrop circle v1 ca-name" + epoch, 16).hex()


def test_derivations_are_deterministic() -> None:
    copy = CircleSecret(bytes(SECRET.raw))
    assert circle_id(copy) == circle_id(SECRET)
    assert token_key(copy, 7) == token_key(SECRET, 7)
    assert ca_seed(copy, 7) == ca_seed(SECRET, 7)
    assert ca_name(copy, 7) == ca_name(SECRET, 7)


def test_derivations_differ_per_circle_epoch_and_purpose() -> None:
    values: list[bytes] = []
    for secret in (SECRET, OTHER):
        values.append(bytes.fromhex(circle_id(secret)))
        for epoch in (20253, 20254, 20255):
            values += [token_key(secret, epoch), ca_seed(secret, epoch)]
            values.append(bytes.fromhex(ca_name(secret, epoch)))
    assert len(set(values)) == len(values)
    # The same purpose and length, only the label differs: still unrelated.
    assert derive(SECRET, Purpose.TOKEN, 32, 1) != derive(SECRET, Purpose.CA_SEED, 32, 1)


def test_derived_names_have_their_documented_shape() -> None:
    assert re.fullmatch(r"[0-9a-f]{16}", circle_id(SECRET))
    assert re.fullmatch(r"[0-9a-f]{32}", ca_name(SECRET, 0))
    assert len(ca_seed(SECRET, 0)) == 32


def test_protocol_md_example_matches_the_code() -> None:
    """The worked example in docs/PROTOCOL.md ("Circles", Example) is what this code gives,
    so a second implementation can check itself against the document."""
    text = PROTOCOL.read_text(encoding="utf-8")
    circles = text.split("Circles: secrets, invites, derived keys and tokens", 1)[-1]
    section = circles.split("### Example", 1)[-1].split("\n## ", 1)[0]
    assert "circle secret" in section, "docs/PROTOCOL.md has no circle example"
    found = dict(re.findall(r"^\| ([A-Za-z ()0-9-]+?) \| `([^`]+)` \|$", section, re.MULTILINE))
    secret = CircleSecret(bytes.fromhex(found["circle secret"]))
    epoch = int(found["epoch"])
    nonce = bytes.fromhex(found["nonce"])
    assert found["invite code"] == encode_invite(secret)
    assert found["circle id"] == circle_id(secret)
    assert found["token key"] == token_key(secret, epoch).hex()
    assert found["token"] == make_token(secret, epoch, nonce).hex()
    assert found["CA seed"] == ca_seed(secret, epoch).hex()
    assert found["CA name"] == ca_name(secret, epoch)
    assert epoch == epoch_of(float(found["now (unix seconds)"]))


# Epochs and the window


@pytest.mark.parametrize(
    ("now", "epoch"),
    [
        (0.0, 0),
        (86_399.999, 0),
        (86_400.0, 1),
        (NOW, 20254),
        (-5.0, 0),
        (float("nan"), 0),
        (float("inf"), 0),
    ],
)
def test_epoch_of(now: float, epoch: int) -> None:
    assert epoch_of(now) == epoch


def test_the_window_is_two_epochs_each_side() -> None:
    assert list(window(NOW)) == [20252, 20253, 20254, 20255, 20256]
    assert list(window(EPOCH_SECONDS * 1.5)) == [0, 1, 2, 3]  # none below 0


# Tokens


def test_token_layout() -> None:
    token = make_token(SECRET, 20254, NONCE)
    tag = hmac.new(token_key(SECRET, 20254), NONCE, hashlib.sha256).digest()[:8]
    assert token == NONCE + tag and len(token) == TOKEN_BYTES


@pytest.mark.parametrize("days", [-2, -1, 0, 1, 2])
def test_a_token_is_recognised_with_clocks_up_to_two_days_apart(days: int) -> None:
    token = new_token(SECRET, NOW)
    found = recognise([OTHER, SECRET], token, NOW + days * EPOCH_SECONDS)
    assert found is not None
    assert found.secret == SECRET and found.epoch == epoch_of(NOW)


@pytest.mark.parametrize("days", [-30, -3, 3, 365])
def test_a_token_from_outside_the_window_is_not_recognised(days: int) -> None:
    token = new_token(SECRET, NOW)
    assert recognise([SECRET], token, NOW + days * EPOCH_SECONDS) is None


def test_tokens_never_repeat() -> None:
    tokens = {new_token(SECRET, NOW) for _ in range(2000)}
    assert len(tokens) == 2000


def test_recognise_picks_the_right_circle_among_several() -> None:
    circles = secrets_for_tests(6)
    for secret in circles:
        found = recognise(circles, new_token(secret, NOW), NOW)
        assert found is not None and found.secret == secret


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(b"", id="empty"),
        pytest.param(NONCE, id="nonce-alone"),
        pytest.param(make_token(SECRET, 20254, NONCE)[:-1], id="one-byte-short"),
        pytest.param(make_token(SECRET, 20254, NONCE) + b"\0", id="one-byte-long"),
        pytest.param(NONCE + bytes(8), id="zero-tag"),
        pytest.param(make_token(OTHER, 20254, NONCE), id="another-circle"),
        pytest.param(bytes(16), id="zeros"),
    ],
)
def test_tokens_that_are_not_ours_are_not_recognised(token: bytes) -> None:
    assert recognise([SECRET], token, NOW) is None


def test_a_tampered_tag_is_not_recognised() -> None:
    token = bytearray(make_token(SECRET, 20254, NONCE))
    for position in range(len(token)):
        changed = bytearray(token)
        changed[position] ^= 0x01
        assert recognise([SECRET], bytes(changed), NOW) is None


def test_no_circles_recognise_nothing() -> None:
    assert recognise([], new_token(SECRET, NOW), NOW) is None


# Circles and names


def test_rekey_retires_the_old_generation_at_its_time() -> None:
    circle = new_circle("dorm", SECRET, now=100)
    rekeyed = circle.rekeyed(OTHER, now=200)
    assert [g.number for g in rekeyed.generations] == [1, 2]
    assert rekeyed.retired[0].retired == 200 and rekeyed.current.retired is None
    assert rekeyed.id == circle_id(OTHER) != circle.id
    assert rekeyed.holding(SECRET) is rekeyed.generations[0]
    assert rekeyed.holding(CircleSecret(bytes(20))) is None
    with pytest.raises(ValueError, match="at least one"):
        Circle("empty", ())


def test_circle_names_are_cleaned() -> None:
    assert check_circle_name("  Dorm 3 ") == "Dorm 3"
    assert check_circle_name("Cafe\u0301") == "Caf\u00e9"  # NFC
    assert check_circle_name("기숙사") == "기숙사"
    assert same_name("Dorm", " dORM ")
    assert not same_name("Dorm", "Dorm 2")


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "needs a name"),
        ("   ", "needs a name"),
        ("x" * 65, "at most 64"),
        ("dorm\x1b[31m", "control or invisible"),
        ("dorm\u202e", "control or invisible"),
        ("two\nlines", "control or invisible"),
    ],
)
def test_bad_circle_names_are_refused(name: str, fragment: str) -> None:
    with pytest.raises(UsageError, match=re.escape(fragment)):
        check_circle_name(name)
