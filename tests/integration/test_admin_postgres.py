"""The admin UI of a real `cachet coordinator` process on PostgreSQL (issue 9): an admin made
by `cachet admin create-user --db postgresql://…` logs in over HTTP, an edge pushes batches, and
the dashboard (`/admin/dashboard.json` and `/admin/`) shows exactly that traffic, read from
PostgreSQL. The data folder holds no SQLite file; the users of an `admin-ui.db` left by the
previous version beside it are imported once and can log in."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from admin.passwords import hash_password
from admin.store import ADMIN, AdminStore, UiUser
from billing.config import CoordinatorConfig
from billing.store.sqlite import SqliteStore
from tests.component.billing.fleet import Edge, body_of, signing_key
from tests.integration.conftest import REPO_ROOT
from tests.ports import free_port
from tests.services import create_database, drop_database, ensure_postgres

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
START_TIMEOUT_S = 30.0
PASSWORD = "a long admin password"
OLD_PASSWORD = "the previous version's password"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def database() -> Iterator[str]:
    reason = ensure_postgres()
    if reason is not None:
        pytest.skip(reason)
    name = f"cachet_test_{secrets.token_hex(6)}"
    yield create_database(name)
    drop_database(name)


def _cachet(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "cachet", *args],
        cwd=REPO_ROOT, capture_output=True, check=False, timeout=60,
    )  # fmt: skip


async def _write_previous_side_file(path: Path) -> None:
    """What the UI kept beside a PostgreSQL coordinator before: an SQLite file of its own."""
    await (await SqliteStore.open(path)).close()
    config = CoordinatorConfig(data=str(path.parent), db=f"sqlite:///{path}")
    store = await AdminStore.open(config, "2026-11-01T00:00:00.000Z")
    try:
        old_hash = hash_password(OLD_PASSWORD, secrets.token_bytes(16), 10)
        await store.add_user(UiUser("old-admin", ADMIN, None, old_hash, "2026-11-01T00:00:00Z"))
    finally:
        await store.close()


class Coordinator:
    def __init__(self, data: Path, dsn: str, log: Path) -> None:
        self.data, self.dsn, self.log = data, dsn, log
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as sink:
            return subprocess.Popen(
                [sys.executable, "-m", "cachet", "coordinator", "--listen",
                 f"127.0.0.1:{self.port}", "--data", str(self.data), "--db", self.dsn],
                cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=sink, env=dict(os.environ),
            )  # fmt: skip

    async def start(self, http: aiohttp.ClientSession) -> None:
        self.proc = self._spawn()
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
        while asyncio.get_running_loop().time() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                async with http.get(f"{self.base}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError(f"coordinator did not start: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest_asyncio.fixture
async def coordinator(database: str, tmp_path: Path) -> AsyncIterator[Coordinator]:
    process = Coordinator(tmp_path / "data", database, tmp_path / "coordinator.log")
    yield process
    process.stop()


async def _log_in(base: str, username: str, password: str) -> aiohttp.ClientSession:
    """A client holding an admin session, logged in through the form like a browser."""
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # an IP host
    async with http.get(f"{base}/admin/login") as page:
        match = _CSRF.search(await page.text())
    assert match, "no CSRF field on the login page"
    form = {"username": username, "password": password, "csrf": match.group(1)}
    async with http.post(f"{base}/admin/login", data=form, allow_redirects=False) as response:
        assert (response.status, response.headers.get("Location")) == (302, "/admin/")
    return http


async def test_admin_ui_on_postgresql_shows_pushed_traffic(
    coordinator: Coordinator, tmp_path: Path
) -> None:
    data, dsn = coordinator.data, coordinator.dsn
    password_file = tmp_path / "pw"
    password_file.write_text(PASSWORD + "\n")
    made = _cachet("admin", "create-user", "--data", str(data), "--db", dsn, "--username",
                   "root", "--password-file", str(password_file), "--json")  # fmt: skip
    assert made.returncode == 0, made.stderr
    minted = _cachet("coordinator", "admin-token", "--data", str(data), "--db", dsn, "--json")
    assert minted.returncode == 0, minted.stderr
    bearer = {"Authorization": f"Bearer {json.loads(minted.stdout)['admin_token']}"}
    await _write_previous_side_file(data / "admin-ui.db")

    async with aiohttp.ClientSession() as http:
        await coordinator.start(http)
        base = coordinator.base
        async with http.post(f"{base}/v1/admin/enrolment-tokens", headers=bearer) as response:
            assert response.status == 201
            token = (await response.json())["token"]
        edge = Edge("edge-pg", signing_key("edge-pg"), epoch=datetime.now(UTC))
        enrol = {"token": token, "edge": edge.name, "verifier_key": edge.verifier}
        async with http.post(f"{base}/v1/edges/enrol", json=enrol) as response:
            assert response.status == 201, await response.text()
        batches = [
            edge.seal([edge.record(cache="hit"), edge.record(cache="miss", origin_bytes=500)]),
            edge.seal(count=5),
            edge.seal(count=3),
        ]
        for batch in batches:
            async with http.post(f"{base}/v1/batches", data=body_of(batch)) as response:
                answer = await response.json()
                assert (response.status, answer["status"]) == (200, "accepted"), answer

    served = [r for b in batches for r in b.records]
    admin = await _log_in(coordinator.base, "root", PASSWORD)
    try:
        async with admin.get(f"{coordinator.base}/admin/dashboard.json") as response:
            assert response.status == 200
            board = await response.json()
        totals = board["totals"]
        assert (totals["requests"], totals["hits"]) == (10, 9)
        assert (totals["batches"], totals["records"], totals["edges"]) == (3, 10, 1)
        assert sum(t["bytes_served"] for t in board["traffic"]) == sum(r.bytes for r in served)
        assert sum(t["origin_bytes"] for t in board["traffic"]) == 500
        async with admin.get(f"{coordinator.base}/admin/") as response:
            assert "<span>10</span> requests" in await response.text()
        async with admin.get(f"{coordinator.base}/admin/audit") as response:
            assert "login" in await response.text()  # the audit trail is in PostgreSQL too
    finally:
        await admin.close()

    previous = await _log_in(coordinator.base, "old-admin", OLD_PASSWORD)  # imported once
    await previous.close()
    log = (tmp_path / "coordinator.log").read_text()
    assert "imported 1 users" in log and "may be deleted" in log
    # No SQLite of the coordinator or of the UI: only the old file (and SQLite's -wal/-shm of
    # it) beside the log key.
    names = {p.name for p in data.iterdir()} - {"admin-ui.db-wal", "admin-ui.db-shm"}
    assert names == {"log-key", "log-key.pub", "admin-ui.db"}, names
