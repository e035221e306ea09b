"""The one error tree of Cachet.

``CachetError`` always means *the input was bad*; our own misuse of an API raises ``TypeError``,
``ValueError`` or ``RuntimeError`` instead, so catching ``CachetError`` never hides a bug::

    CachetError                      status_hint 400   base: bad input from outside
    ├── FormatError                  400   malformed input (bad JSON, bad field, bad encoding)
    │   └── ProofFormatError         400   a Merkle proof of the wrong shape (length, size, index)
    ├── VerificationError            422   well-formed but wrong
    │   ├── SignatureError           422   a signature does not verify
    │   ├── RootMismatchError        422   a Merkle root (or count, or timestamp span) differs
    │   ├── UnknownKeyError          403   no trusted key has that name and key id
    │   └── ChainError               422   a batch does not link to its predecessor (gap, fork)
    └── PushbackError                503   overloaded: try again after ``retry_after_s``

Each error carries ``status_hint``: the HTTP status one middleware maps it to. Remote callers get a
short generic reason; the message (``str(err)``) is detail for structured logs and never holds
secrets.
"""

from __future__ import annotations


class CachetError(Exception):
    """Base of every "the input was bad" error."""

    status_hint: int = 400


class FormatError(CachetError):
    """Malformed input: it cannot even be parsed into the expected shape."""

    status_hint = 400


class ProofFormatError(FormatError):
    """A Merkle proof whose shape is wrong for the claimed index and sizes (RFC 9162 §2.1)."""


class VerificationError(CachetError):
    """Well-formed input that is wrong: bad signature, wrong root, unknown key, broken chain."""

    status_hint = 422


class SignatureError(VerificationError):
    """An Ed25519 signature (RFC 8032) does not verify."""


class RootMismatchError(VerificationError):
    """A recomputed Merkle root (or a value derived from the same data) differs from the claim."""


class UnknownKeyError(VerificationError):
    """No trusted key has the name and key id the input names."""

    status_hint = 403


class ChainError(VerificationError):
    """A batch header does not link to the previous header of its edge (gap, fork or replay)."""


class PushbackError(CachetError):
    """Overloaded: the caller should retry after ``retry_after_s`` seconds (503 + Retry-After)."""

    status_hint = 503

    def __init__(self, message: str, retry_after_s: int) -> None:
        if retry_after_s < 0:
            raise ValueError("retry_after_s must be >= 0")
        super().__init__(message)
        self.retry_after_s = retry_after_s
