"""Bearer tokens (admin, enrolment): random, shown once, stored only as SHA-256 hex."""

from __future__ import annotations

import hashlib
import hmac

TOKEN_PREFIXES = ("cachet-admin-", "cachet-enrol-")


def format_token(prefix: str, random_bytes: bytes) -> str:
    """A token string from caller-drawn random bytes (>= 16)."""
    if prefix not in TOKEN_PREFIXES or len(random_bytes) < 16:
        raise ValueError("unknown token prefix or too few random bytes")
    return prefix + random_bytes.hex()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (RFC 6750 §2.1), or None."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def is_same_hash(left: str, right: str) -> bool:
    return hmac.compare_digest(left.encode(), right.encode())
