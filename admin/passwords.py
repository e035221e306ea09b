"""Password hashes with scrypt (RFC 7914), a memory-hard KDF, from ``cryptography``. Pure: the
salt is a parameter.

Stored form: ``scrypt$<log2 n>$<r>$<p>$<salt hex>$<hash hex>``; verification reads the cost
parameters from the stored text, so raising the cost later keeps old hashes valid.
"""

from __future__ import annotations

import hmac

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

DEFAULT_LOG2_N = 15  # n = 32768, r = 8: 32 MiB and ~0.1 s per hash (RFC 7914 §2 cost knobs)
SCRYPT_R = 8
SCRYPT_P = 1
HASH_BYTES = 32
SALT_BYTES = 16
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024


def check_password_policy(password: str) -> None:
    """ValueError with the reason unless the password is acceptable (length only: NIST 800-63B)."""
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise ValueError(
            f"a password must be {MIN_PASSWORD_CHARS}..{MAX_PASSWORD_CHARS} characters"
        )


def _derive(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    kdf = Scrypt(salt=salt, length=HASH_BYTES, n=2**log2_n, r=r, p=p)
    return kdf.derive(password.encode("utf-8"))


def hash_password(password: str, salt: bytes, log2_n: int = DEFAULT_LOG2_N) -> str:
    """The stored form of ``password`` under ``salt`` (16 random bytes from the caller)."""
    if len(salt) != SALT_BYTES:
        raise ValueError(f"salt must be {SALT_BYTES} bytes")
    if not 10 <= log2_n <= 20:
        raise ValueError("log2_n must be in 10..20")
    digest = _derive(password, salt, log2_n, SCRYPT_R, SCRYPT_P)
    return f"scrypt${log2_n}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def is_password_match(password: str, stored: str) -> bool:
    """True if ``password`` matches the stored form; False for a wrong password or a malformed
    stored text (which then matches nothing)."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    try:
        log2_n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, expected = bytes.fromhex(parts[4]), bytes.fromhex(parts[5])
    except ValueError:
        return False
    if not (10 <= log2_n <= 20 and 1 <= r <= 32 and 1 <= p <= 16 and len(expected) == HASH_BYTES):
        return False
    return hmac.compare_digest(_derive(password, salt, log2_n, r, p), expected)
