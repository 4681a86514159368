"""The one exception family. Every message is a sentence a user reads, so it names the
problem (and the file or value at fault) without a traceback or internal jargon."""


class MeshdropError(Exception):
    """Base of every error meshdrop reports to a user. ``exit_code`` is what the CLI exits
    with."""

    exit_code = 1


class UsageError(MeshdropError):
    """The user asked for something that cannot be done as asked (bad option value,
    missing file, wrong kind of file)."""

    exit_code = 2


class FormatError(MeshdropError):
    """Bytes that do not follow the bundle format: truncated, malformed, oversized,
    non-canonical. Untrusted input is refused with this before anything is believed."""

    exit_code = 3


class UnsafePathError(FormatError):
    """A path inside a bundle that could escape a folder or clash on some file system."""


class ShortNameClashError(UnsafePathError):
    """A bundle path that could be the FAT 8.3 short name of another path beside it."""


class SignatureError(MeshdropError):
    """A signature that does not verify, or a key that is not acceptable."""

    exit_code = 4


class TrustError(MeshdropError):
    """Correctly signed, but not by a publisher (or key) this node trusts."""

    exit_code = 4


class UntrustedPublisherError(TrustError):
    """Of a publisher this node has not pinned: left alone, not a fault of the bytes."""


class IntegrityError(MeshdropError):
    """Data that does not match the hashes its signed manifest commits to."""

    exit_code = 5


class RollbackError(MeshdropError):
    """A version older than (or equal to a different copy of) one already seen."""

    exit_code = 6


class OlderVersionError(RollbackError):
    """A version older than one already seen: an old copy, normal on a stick."""


class EquivocationError(RollbackError):
    """A second, different bundle signed as a version already seen: only someone holding
    the publisher's signing key can make one (a likely stolen key). ``twin`` carries what
    the store records about it (a store value; None when nothing is to be recorded)."""

    def __init__(self, message: str, twin: object = None) -> None:
        super().__init__(message)
        self.twin = twin


class StoreError(MeshdropError):
    """The node's store cannot do what was asked: disk full, permissions, damage."""

    exit_code = 7


class MissingChunksError(StoreError):
    """Commit found chunks missing (removed by another writer meanwhile): fetch again."""


class OutOfDescriptorsError(StoreError):
    """The process had no file descriptor left (EMFILE, ENFILE) for the store's files or
    its index: nothing is wrong with them, and the same work succeeds a moment later."""


class NetworkError(MeshdropError):
    """The node cannot do what was asked on the network: the port is taken, no node is
    running, the address does not exist."""

    exit_code = 9


class PassphraseError(MeshdropError):
    """A private key could not be unlocked."""

    exit_code = 8


class FingerprintMismatchError(TrustError):
    """A publisher file whose fingerprint is not the one the node owner was told."""


class SameNameError(TrustError):
    """A new publisher whose display name reads like that of one already trusted: the
    likeliest shape of an impostor."""


class UnknownPublisherError(UsageError):
    """No trusted publisher has the fingerprint (or start of one) given."""


class AmbiguousPublisherError(UsageError):
    """The start of a fingerprint given matches several trusted publishers."""


class PrefixTooShortError(UsageError):
    """Too few characters of a fingerprint to pick a publisher by."""


class WeakPassphraseError(UsageError):
    """A new passphrase too short or too simple to stand an offline guessing attack."""


class ConfirmationNeededError(UsageError):
    """A step that needs a person's yes, asked where nobody can answer (no terminal)."""


class DeclinedError(MeshdropError):
    """The person asked answered no: nothing was done."""


class InviteError(UsageError):
    """A circle invite code that cannot be read: each kind of fault its own type, so that
    the message can say what to check (docs/PROTOCOL.md, "Circles")."""


class InviteCharacterError(InviteError):
    """A character that is not in the invite alphabet (A-Z, 2-7; 0, 1, 8 read as O, I, B)."""


class InviteLengthError(InviteError):
    """An invite code with too few or too many characters."""


class InviteChecksumError(InviteError):
    """An invite code whose check characters do not match: most likely a typo."""


class InviteVersionError(InviteError):
    """A well-formed invite code of a kind this meshdrop does not know (made by a newer one)."""


class UnknownCircleError(UsageError):
    """No circle on this node has the name given."""


class CircleExistsError(UsageError):
    """A new or joined circle whose name is taken, or whose secret this node already holds."""


class CircleFileError(StoreError):
    """A circle file in the node's home that cannot be read: damaged, truncated, not ours."""


class SignedObjectKindError(FormatError):
    """A signed object of one kind given where another was expected (a report key's
    retirement read as a report key, say): docs/FORMAT.md, "Report keys"."""


class SignedObjectSignerError(SignatureError):
    """A report key, retirement or ack list whose signature does not verify, or whose
    signer was not a signing key of its publisher at the time the object claims."""


class SignedObjectPublisherError(TrustError):
    """A report key, retirement or ack list of another publisher than the one asked about."""


class ReportKeyExpiredError(TrustError):
    """A report key whose not-after time has passed: nothing may be sealed to it."""


class ReportKeySuiteError(FormatError):
    """A report key of an unknown suite, or whose public key bytes cannot be used."""


class ReportTooLargeError(UsageError):
    """A report over the caps of a drop (text, attachment count or total size)."""


class DropError(FormatError):
    """A drop (a sealed report) that every node refuses before storing or relaying it:
    docs/FORMAT.md, "Drops". Each kind of fault is its own type."""


class DropSizeError(DropError):
    """A drop whose length is not one of the size classes."""


class DropTruncatedError(DropSizeError):
    """A drop shorter than the size class it should fill (cut short, or not a drop)."""


class DropOversizedError(DropSizeError):
    """A drop longer than the largest size class."""


class DropVersionError(DropError):
    """A drop of a version this meshdrop does not know."""


class DropExpiredError(DropError):
    """A drop whose expiry has passed."""


class DropExpiryTooFarError(DropError):
    """A drop whose expiry lies further ahead than a drop may live."""


class DropStampError(DropError):
    """A drop whose proof-of-work stamp does not check: altered, or never stamped."""


class DropContentError(DropError):
    """A drop that decrypts but whose report inside is malformed (made by a broken or
    hostile sender; only the recipient can see this)."""


class AttachmentError(UsageError):
    """A file given to a report that cannot be made safe to send (reader/imageclean.py):
    each kind of fault its own type; ``kind`` is what the file is, in words."""

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.kind = kind


class UncleanableKindError(AttachmentError):
    """A file of a kind whose identifying metadata cannot be removed (a PDF, a video)."""


class ImageTooLargeError(AttachmentError):
    """A picture of more pixels than may be decoded (a decompression bomb, or simply huge)."""


class DamagedImageError(AttachmentError):
    """A picture whose bytes cannot be decoded: cut short or broken."""


class StorePassphraseError(PassphraseError):
    """A passphrase or key file that opens none of the sealed store's key slots."""


class StoreLockedError(MeshdropError):
    """The store is sealed and no key for it is at hand (no agent, no passphrase given)."""

    exit_code = 10


class SealedFileError(StoreError):
    """A file of a sealed store that does not decrypt under its key: damaged or not ours."""


class BlindFileError(IntegrityError):
    """A file of a blind courier folder that does not open under the circle's key
    (damaged, cut short, or sealed for another circle), or whose inner header is refused."""


class CircleChoiceError(UsageError):
    """A node in several circles was not told which one a blind courier folder is for."""
