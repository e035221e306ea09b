"""Key files: C2SP signed-note key formats on disk, 0600 atomic writes, refusal of open modes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cachet.keyfiles import (
    KeyFileError,
    read_any_verifier_key,
    read_signing_key,
    read_verifier_key,
    verifier_key_path,
    write_private_key,
    write_verifier_key,
)
from provenance.errors import CachetError
from provenance.keys import format_verifier_key, generate_signing_key

KEY = generate_signing_key("alice", b"\x07" * 32)
OTHER = generate_signing_key("alice", b"\x08" * 32)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_key_round_trips_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "alice.key"
    write_private_key(path, KEY)
    assert _mode(path) == 0o600
    assert read_signing_key(path) == KEY
    assert path.read_text().startswith("PRIVATE+KEY+alice+")
    assert path.read_text().endswith("\n")


def test_private_key_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private_key(tmp_path / "k", KEY)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "k") == 0o600


def test_verifier_key_file_is_the_signed_note_verifier_line(tmp_path: Path) -> None:
    """C2SP signed-note verifier key: <name>+<hex id>+<base64(0x01 || key)>."""
    path = tmp_path / "alice.key.pub"
    write_verifier_key(path, KEY.verifier)
    assert path.read_text() == format_verifier_key(KEY.verifier) + "\n"
    assert _mode(path) == 0o644
    assert read_verifier_key(path) == KEY.verifier
    assert read_any_verifier_key(path) == KEY.verifier


def test_verifier_key_path_appends_pub() -> None:
    assert verifier_key_path(Path("/x/alice.key")) == Path("/x/alice.key.pub")


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    path = tmp_path / "alice.key"
    write_private_key(path, KEY)
    with pytest.raises(KeyFileError, match="already exists"):
        write_private_key(path, OTHER)
    assert read_signing_key(path) == KEY
    write_private_key(path, OTHER, force=True)
    assert read_signing_key(path) == OTHER
    assert _mode(path) == 0o600


def test_no_temporary_files_are_left_behind(tmp_path: Path) -> None:
    path = tmp_path / "alice.key"
    write_private_key(path, KEY)
    with pytest.raises(KeyFileError):
        write_private_key(path, OTHER)
    write_private_key(path, OTHER, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice.key"]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o610])
def test_refuses_a_private_key_others_can_access(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "alice.key"
    write_private_key(path, KEY)
    path.chmod(mode)
    with pytest.raises(KeyFileError, match=f"mode {mode:04o}.*chmod 600"):
        read_signing_key(path)
    with pytest.raises(KeyFileError, match="chmod 600"):
        read_any_verifier_key(path)


def test_accepts_a_private_key_readable_only_by_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "alice.key"
    write_private_key(path, KEY)
    path.chmod(0o400)
    assert read_signing_key(path) == KEY
    assert read_any_verifier_key(path) == KEY.verifier


def test_truncated_private_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "alice.key"
    write_private_key(path, KEY)
    text = path.read_text()
    path.write_text(text[: len(text) // 2 + 8])
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="not a valid private key") as info:
        read_signing_key(path)
    secret = text.split("+", 4)[4].strip()  # the whole seed: its base64 may hold a "+"
    assert secret[:8] not in str(info.value)


@pytest.mark.parametrize(
    "content",
    [b"", b"alice+12345678\n", b"\xff\xfe\n", b"alice+00000000+AQ==\n", b"x" * 5000],
)
def test_malformed_verifier_key_files_are_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "k.pub"
    path.write_bytes(content)
    with pytest.raises(KeyFileError):
        read_verifier_key(path)


def test_verifier_key_with_wrong_key_id_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.pub"
    name, _, b64 = format_verifier_key(KEY.verifier).split("+")
    path.write_text(f"{name}+00000000+{b64}\n")
    with pytest.raises(KeyFileError, match="key id does not match"):
        read_verifier_key(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        read_signing_key(tmp_path / "nope")
    with pytest.raises(KeyFileError, match="does not exist"):
        read_verifier_key(tmp_path / "nope")


def test_private_key_is_not_a_verifier_key_and_vice_versa(tmp_path: Path) -> None:
    private, public = tmp_path / "k", tmp_path / "k.pub"
    write_private_key(private, KEY)
    write_verifier_key(public, KEY.verifier)
    with pytest.raises(KeyFileError, match="holds a private key"):
        read_verifier_key(private)
    with pytest.raises(KeyFileError, match="not a private key"):
        read_signing_key(public)


def test_symlinked_and_non_regular_key_files_are_refused(tmp_path: Path) -> None:
    target = tmp_path / "k"
    write_private_key(target, KEY)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(KeyFileError, match="symbolic link"):
        read_signing_key(link)
    with pytest.raises(KeyFileError, match="not a regular file"):
        read_signing_key(tmp_path)


def test_key_file_errors_are_bad_input_errors() -> None:
    assert issubclass(KeyFileError, CachetError)
