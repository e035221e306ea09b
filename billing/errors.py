"""The coordinator's branches of the one error tree (``provenance.errors``).

Each error adds a short ``reason`` (a stable, lowercase token: the JSON ``error`` field a remote
caller sees and the ``reason`` label of the rejection metrics) to the status hint::

    CachetError
    ├── FormatError
    │   └── PayloadTooLargeError     413  payload-too-large
    ├── VerificationError
    │   ├── UnknownKeyError
    │   │   └── RevokedKeyError      403  revoked-key
    │   ├── ChainError
    │   │   ├── ChainGapError        409  chain-gap   (stored as an incident)
    │   │   └── ChainForkError       409  chain-fork  (stored as an incident)
    │   └── FutureBatchError         422  future-dated
    ├── UnauthorizedError            401  unauthorized (admin token missing or wrong)
    ├── EnrolmentError               403  enrolment-refused (token unknown, used or expired)
    ├── NotFoundError                404  not-found
    └── ConflictError                409  conflict (e.g. an edge id already enrolled)

Errors of ``provenance`` keep their own status and get a reason from ``reason_of``.
"""

from __future__ import annotations

from provenance.errors import (
    CachetError,
    ChainError,
    FormatError,
    ProofFormatError,
    PushbackError,
    RootMismatchError,
    SignatureError,
    UnknownKeyError,
    VerificationError,
)


class PayloadTooLargeError(FormatError):
    status_hint = 413
    reason = "payload-too-large"


class RevokedKeyError(UnknownKeyError):
    reason = "revoked-key"


class ChainGapError(ChainError):
    status_hint = 409
    reason = "chain-gap"


class ChainForkError(ChainError):
    status_hint = 409
    reason = "chain-fork"


class FutureBatchError(VerificationError):
    reason = "future-dated"


class UnauthorizedError(CachetError):
    status_hint = 401
    reason = "unauthorized"


class EnrolmentError(CachetError):
    status_hint = 403
    reason = "enrolment-refused"


class NotFoundError(CachetError):
    status_hint = 404
    reason = "not-found"


class ConflictError(CachetError):
    status_hint = 409
    reason = "conflict"


_REASONS: tuple[tuple[type[CachetError], str], ...] = (
    (ProofFormatError, "bad-proof-request"),
    (FormatError, "malformed"),
    (SignatureError, "bad-signature"),
    (RootMismatchError, "root-mismatch"),
    (UnknownKeyError, "unknown-key"),
    (ChainError, "chain"),
    (VerificationError, "verification-failed"),
    (PushbackError, "overloaded"),
)


def reason_of(error: CachetError) -> str:
    """The short reason token for an error (its own ``reason`` or its family's)."""
    own = getattr(type(error), "reason", None)
    if isinstance(own, str):
        return own
    for kind, reason in _REASONS:
        if isinstance(error, kind):
            return reason
    return "bad-request"
