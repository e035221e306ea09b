"""`cachet admin create-user`: the first admin, no default password (issue 7)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from admin.passwords import is_password_match
from admin.store import AdminStore
from cachet.cli import main


def test_create_user_from_a_password_file_then_refuse_a_duplicate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("a long admin password\n")
    args = [
        "admin",
        "create-user",
        "--data",
        str(tmp_path / "d"),
        "--username",
        "root",
        "--password-file",
        str(secret),
    ]
    assert main([*args, "--json"]) == 0
    assert '"username": "root"' in capsys.readouterr().out
    assert main(args) == 1
    assert "exists already" in capsys.readouterr().err

    async def stored() -> str:
        store = await AdminStore.open(tmp_path / "d" / "coordinator.db")
        try:
            user = await store.find_user("root")
        finally:
            await store.close()
        assert user is not None and user.role == "admin"
        return user.password_hash

    assert is_password_match("a long admin password", asyncio.run(stored()))


def test_create_user_refuses_weak_passwords_and_no_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("short\n")
    base = ["admin", "create-user", "--data", str(tmp_path / "d"), "--username", "root"]
    assert main([*base, "--password-file", str(secret)]) == 1
    assert "10..1024" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(base) == 1
    assert "--password-file" in capsys.readouterr().err
