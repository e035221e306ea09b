"""The log's Ed25519 signing key in the data folder (``log-key``, mode 0600, and ``log-key.pub``).

A small private helper until ``cachet/keyfiles.py`` (being written in parallel) lands; then this
module should call it instead. Created on first start with a key named after the log origin
(C2SP: a checkpoint's signer is usually named for its origin).
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from provenance.errors import FormatError
from provenance.keys import (
    SEED_SIZE,
    SigningKey,
    format_signing_key,
    format_verifier_key,
    generate_signing_key,
    parse_signing_key,
)

LOG_KEY_FILE = "log-key"


def load_or_create_log_key(data_dir: Path, origin: str) -> SigningKey:
    """Read the log key, or create it (0600, atomically) if absent. RuntimeError if the file is
    readable by group/others, malformed, or names another origin."""
    path = data_dir / LOG_KEY_FILE
    if not path.exists():
        _create(path, generate_signing_key(origin, secrets.token_bytes(SEED_SIZE)))
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise RuntimeError(f"{path} is accessible by group/others; chmod 600 it")
    try:
        key = parse_signing_key(path.read_text(encoding="utf-8"))
    except FormatError as exc:
        raise RuntimeError(f"{path}: {exc}") from None
    if key.name != origin:
        raise RuntimeError(f"{path} is the key of log {key.name!r}, not {origin!r}")
    return key


def _create(path: Path, key: SigningKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(format_signing_key(key) + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    pub = path.with_name(path.name + ".pub")
    pub.write_text(format_verifier_key(key.verifier) + "\n", encoding="utf-8")
