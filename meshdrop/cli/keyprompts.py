"""What the publisher commands share: passphrases for keys old and new, and the help
texts of the options that ask for them."""

from __future__ import annotations

from dataclasses import dataclass

from meshdrop.cli.common import new_passphrase, passphrase_from_env_or_prompt

UNENCRYPTED_HELP = "Store new private keys without a passphrase (tests, demos)."
# A help text, not a password.
WEAK_PASSPHRASE_HELP = (
    "Accept a new passphrase shorter than 12 characters or with fewer than 5 different "  # noqa: S105
    "ones (not for real keys: a seized key file can be guessed offline)."
)
JSON_HELP = "One JSON object saying what was done, for scripts."


def ask_passphrase(what: str) -> bytes:
    """The passphrase of an existing key file."""
    return passphrase_from_env_or_prompt(what)


@dataclass(frozen=True)
class KeyPassphrase:
    """How to seal the private keys a command makes: not at all, or with a passphrase
    that must be strong unless ``weak_ok``."""

    unencrypted: bool
    weak_ok: bool = False
    what: str = "the new keys"

    def get(self) -> bytes | None:
        return None if self.unencrypted else new_passphrase(self.what, self.weak_ok)
