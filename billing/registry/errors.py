"""The registry's branches of the error tree (each with the ``reason`` a caller sees)::

    CachetError
    ├── VerificationError
    │   ├── UnknownKeyError
    │   │   └── UnknownCreatorError   403  unknown-creator  (no such creator account)
    │   └── SupersedesError           422  supersedes-mismatch (names no latest version of the
    │                                       creator's lineage, or the version is not n + 1)
    ├── ForbiddenError                403  forbidden  (a creator token acting for someone else)
    └── ConflictError
        └── VersionExistsError        409  version-exists  (that lineage already has that version,
                                            or the superseded version already has a successor)

Signature problems keep ``provenance``'s own errors (``bad-signature``, ``unknown-key``) and a
revoked creator key is ``billing.errors.RevokedKeyError`` (``revoked-key``).
"""

from __future__ import annotations

from billing.errors import ConflictError
from provenance.errors import CachetError, UnknownKeyError, VerificationError


class UnknownCreatorError(UnknownKeyError):
    reason = "unknown-creator"


class SupersedesError(VerificationError):
    reason = "supersedes-mismatch"


class ForbiddenError(CachetError):
    status_hint = 403
    reason = "forbidden"


class VersionExistsError(ConflictError):
    reason = "version-exists"
