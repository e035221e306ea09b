"""Content ids: sha256:<64 lowercase hex> of the bytes."""

from __future__ import annotations

import hashlib

import pytest

from provenance.content_id import (
    content_id,
    content_id_from_digest,
    is_content_id,
    parse_content_id,
)
from provenance.errors import FormatError


def test_content_id_of_bytes() -> None:
    assert (
        content_id(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    digest = hashlib.sha256(b"abc").digest()
    assert content_id_from_digest(digest) == content_id(b"abc")
    assert parse_content_id(content_id(b"abc")) == digest
    with pytest.raises(ValueError, match="32 bytes"):
        content_id_from_digest(b"short")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "sha256:",
        "sha256:" + "A" * 64,
        "sha256:" + "0" * 63,
        "sha512:" + "0" * 64,
        "SHA256:" + "0" * 64,
        " sha256:" + "0" * 64,
        "sha256:" + "0" * 64 + "\n",
        None,
        5,
    ],
)
def test_malformed_content_ids(value: object) -> None:
    assert not is_content_id(value)
    with pytest.raises(FormatError):
        parse_content_id(value)
