"""Key files on disk: the shell around `provenance.keys`, which does no I/O.

Formats (C2SP signed-note, one line each, newline-terminated):
    private key file  ``PRIVATE+KEY+<name>+<8 hex key id>+<base64(0x01 || seed)>``, mode 0600
    verifier key file ``<name>+<8 hex key id>+<base64(0x01 || public key)>``, mode 0644

Writes are atomic: the bytes go to a temporary file in the target's folder (created 0600 for a
private key, so the secret is never readable by others even for an instant), are fsynced, then
take the target's name. Without ``force`` the final step is a hard link, which fails if the
target exists, so a key is never overwritten by accident, even by a racing writer; with
``force`` it is ``os.replace``.

Reading a private key refuses a file that group or others can access (as OpenSSH does): a key
that others could have read must be treated as leaked, not used.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from provenance.errors import CachetError, FormatError
from provenance.keys import (
    SigningKey,
    VerifierKey,
    format_signing_key,
    format_verifier_key,
    parse_signing_key,
    parse_verifier_key,
)

PRIVATE_KEY_MODE = 0o600
VERIFIER_KEY_MODE = 0o644
MAX_KEY_FILE_BYTES = 4096
PRIVATE_KEY_PREFIX = "PRIVATE+KEY+"
_INSECURE_BITS = stat.S_IRWXG | stat.S_IRWXO
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # a symlinked key file is refused, not followed
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


class KeyFileError(CachetError):
    """A key file cannot be used: missing, unreadable, too open, malformed or already there."""


def verifier_key_path(private_key_path: Path) -> Path:
    """Where the verifier key of a private key file goes: ``PATH.pub``."""
    return private_key_path.with_name(private_key_path.name + ".pub")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms can't open a folder; the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomically(path: Path, data: bytes, mode: int, *, force: bool = False) -> None:
    """Write ``data`` to ``path`` with ``mode``, all or nothing; KeyFileError if it exists
    (unless ``force``) or cannot be written. MUST NOT leave a partial file at ``path``."""
    folder = path.parent if str(path.parent) else Path(".")
    if not force and os.path.lexists(path):
        raise KeyFileError(f"{path} already exists (use --force to overwrite)")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise KeyFileError(f"cannot write in {folder}: {exc.strerror or exc}") from None
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)  # mkstemp creates 0600, so a secret is never briefly world-readable
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        _move_into_place(tmp, path, force=force)
        _fsync_dir(folder)
    finally:
        tmp.unlink(missing_ok=True)


def _move_into_place(tmp: Path, path: Path, *, force: bool) -> None:
    try:
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails with FileExistsError: never clobbers a racing writer
    except FileExistsError:
        raise KeyFileError(f"{path} already exists (use --force to overwrite)") from None
    except OSError as exc:
        raise KeyFileError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_private_key(path: Path, key: SigningKey, *, force: bool = False) -> None:
    """Write ``key`` as a 0600 signed-note private key file (atomic; see module docstring)."""
    text = format_signing_key(key) + "\n"
    write_file_atomically(path, text.encode("ascii"), PRIVATE_KEY_MODE, force=force)


def write_verifier_key(path: Path, key: VerifierKey, *, force: bool = False) -> None:
    """Write ``key`` as a signed-note verifier key file (atomic)."""
    text = format_verifier_key(key) + "\n"
    write_file_atomically(path, text.encode("utf-8"), VERIFIER_KEY_MODE, force=force)


def _read_key_text(path: Path) -> tuple[str, os.stat_result]:
    try:
        fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK)  # a FIFO must not hang us
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise KeyFileError(
                f"key file {path} is a symbolic link; name the file itself"
            ) from None
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise KeyFileError(f"key file {path} is not a regular file")
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_KEY_FILE_BYTES + 1)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"key file {path} is larger than {MAX_KEY_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8"), info
    except UnicodeDecodeError:
        raise KeyFileError(f"key file {path} is not UTF-8 text") from None


def _check_private_mode(path: Path, info: os.stat_result) -> None:
    mode = stat.S_IMODE(info.st_mode)
    if mode & _INSECURE_BITS:
        raise KeyFileError(
            f"private key file {path} has mode {mode:04o}: group/others can access it; "
            f"run chmod 600 {path} (and treat the key as leaked if others could read it)"
        )


def _parse_private(path: Path, text: str) -> SigningKey:
    try:
        return parse_signing_key(text)
    except FormatError as exc:
        raise KeyFileError(f"key file {path} is not a valid private key: {exc}") from None


def read_signing_key(path: Path) -> SigningKey:
    """Read a private key file; KeyFileError if missing, too open, truncated or malformed."""
    text, info = _read_key_text(path)
    if not text.startswith(PRIVATE_KEY_PREFIX):
        raise KeyFileError(f"key file {path} is not a private key (want {PRIVATE_KEY_PREFIX}...)")
    _check_private_mode(path, info)
    return _parse_private(path, text)


def read_verifier_key(path: Path) -> VerifierKey:
    """Read a verifier key file; KeyFileError if missing or malformed. A private key file is
    refused here: pass its ``.pub`` instead (see ``read_any_verifier_key``)."""
    text, _ = _read_key_text(path)
    if text.startswith(PRIVATE_KEY_PREFIX):
        raise KeyFileError(f"key file {path} holds a private key; pass its verifier key (.pub)")
    try:
        return parse_verifier_key(text)
    except FormatError as exc:
        raise KeyFileError(f"key file {path} is not a valid verifier key: {exc}") from None


def read_any_verifier_key(path: Path) -> VerifierKey:
    """The verifier key of a verifier key file, or of a private key file (checked like
    ``read_signing_key``: a too-open private key is refused)."""
    text, info = _read_key_text(path)
    if text.startswith(PRIVATE_KEY_PREFIX):
        _check_private_mode(path, info)
        return _parse_private(path, text).verifier
    try:
        return parse_verifier_key(text)
    except FormatError as exc:
        raise KeyFileError(f"key file {path} is not a valid verifier key: {exc}") from None
