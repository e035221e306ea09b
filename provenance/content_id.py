"""Content ids: ``sha256:<64 lowercase hex>`` of the exact bytes of an object."""

from __future__ import annotations

import hashlib
import re

from provenance.errors import FormatError

CONTENT_ID_PREFIX = "sha256:"
_CONTENT_ID = re.compile(r"sha256:[0-9a-f]{64}")


def content_id(data: bytes) -> str:
    """Return the content id of ``data``."""
    return CONTENT_ID_PREFIX + hashlib.sha256(data).hexdigest()


def content_id_from_digest(digest: bytes) -> str:
    """Return the content id for a SHA-256 digest computed elsewhere (e.g. while streaming)."""
    if len(digest) != 32:
        raise ValueError("a SHA-256 digest is 32 bytes")
    return CONTENT_ID_PREFIX + digest.hex()


def is_content_id(value: object) -> bool:
    """True if ``value`` is a well-formed content id (also used for manifest ids)."""
    return isinstance(value, str) and _CONTENT_ID.fullmatch(value) is not None


def parse_content_id(value: object) -> bytes:
    """Return the 32-byte digest of a content id, or raise FormatError."""
    if not is_content_id(value):
        raise FormatError(f"not a content id (want sha256:<64 lowercase hex>): {value!r:.80}")
    assert isinstance(value, str)
    return bytes.fromhex(value[len(CONTENT_ID_PREFIX) :])
