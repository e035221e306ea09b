"""`cachet admin create-user`: the first admin, no default password (issue 7), written to the
coordinator's own database, SQLite or PostgreSQL (``--db``; issue 9)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from admin.passwords import is_password_match
from admin.store import AdminStore
from billing.config import CoordinatorConfig
from cachet.cli import main


def _db_args(store_dsn: str | None) -> list[str]:
    return [] if store_dsn is None else ["--db", store_dsn]


def test_create_user_from_a_password_file_then_refuse_a_duplicate(
    store_dsn: str | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("a long admin password\n")
    data = tmp_path / "d"
    args = [
        "admin",
        "create-user",
        "--data",
        str(data),
        *_db_args(store_dsn),
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
        config = CoordinatorConfig(data=str(data), db=store_dsn)
        store = await AdminStore.open(config, "2026-11-27T12:00:00.000Z")
        try:
            user = await store.find_user("root")
        finally:
            await store.close()
        assert user is not None and user.role == "admin"
        return user.password_hash

    assert is_password_match("a long admin password", asyncio.run(stored()))
    # On PostgreSQL the UI keeps nothing beside the log key: no side SQLite file any more.
    assert not (data / "admin-ui.db").exists()
    if store_dsn is not None:
        assert not (data / "coordinator.db").exists()


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


def test_create_user_refuses_an_unsupported_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("a long admin password\n")
    args = ["admin", "create-user", "--data", str(tmp_path / "d"), "--db", "mysql://db/cachet"]
    assert main([*args, "--username", "root", "--password-file", str(secret)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cachet admin: ") and "unsupported DSN 'mysql'" in err
    assert err.count("\n") == 1
