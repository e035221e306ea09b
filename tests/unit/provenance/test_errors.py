"""The error tree documented in provenance/errors.py."""

from __future__ import annotations

import pytest

from provenance import errors


@pytest.mark.parametrize(
    ("error", "parent", "status"),
    [
        (errors.FormatError, errors.CachetError, 400),
        (errors.ProofFormatError, errors.FormatError, 400),
        (errors.VerificationError, errors.CachetError, 422),
        (errors.SignatureError, errors.VerificationError, 422),
        (errors.RootMismatchError, errors.VerificationError, 422),
        (errors.UnknownKeyError, errors.VerificationError, 403),
        (errors.ChainError, errors.VerificationError, 422),
        (errors.PushbackError, errors.CachetError, 503),
    ],
)
def test_tree_and_status_hints(error: type[errors.CachetError], parent: type, status: int) -> None:
    assert issubclass(error, parent)
    assert error.status_hint == status
    assert not issubclass(error, ValueError | TypeError)  # catching CachetError hides no bug


def test_pushback_carries_retry_after() -> None:
    err = errors.PushbackError("ingest queue full", retry_after_s=30)
    assert err.retry_after_s == 30 and err.status_hint == 503
    with pytest.raises(ValueError, match="retry_after_s"):
        errors.PushbackError("x", retry_after_s=-1)
