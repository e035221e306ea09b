"""The machine's PostgreSQL and NATS for tests: started when absent (as the machine's docs say),
one throwaway database per test run, and a clear skip reason when they truly can't run."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

PG_HOST, PG_PORT = "127.0.0.1", 5432
NATS_HOST, NATS_PORT = "127.0.0.1", 4222
PG_ADMIN_DSN = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"
NATS_URL = f"nats://{NATS_HOST}:{NATS_PORT}"


def is_listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_listening(host: str, port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if is_listening(host, port):
            return True
        time.sleep(0.2)
    return False


def start_postgres_command() -> list[str] | None:
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        return None
    versions = sorted(os.listdir("/etc/postgresql"))
    if not versions:
        return None
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"]


def start_nats_command() -> list[str] | None:
    if shutil.which("start-stop-daemon") is None or not Path("/usr/sbin/nats-server").exists():
        return None
    return [
        "start-stop-daemon", "--start", "--oknodo", "--background",
        "--exec", "/usr/sbin/nats-server", "--", "-a", NATS_HOST, "-p", str(NATS_PORT), "-js",
        "-sd", "/var/lib/nats-server", "-l", "/var/log/nats-server.log",
    ]  # fmt: skip


def ensure_service(name: str, host: str, port: int, command: list[str] | None) -> str | None:
    """None when the service listens (starting it if needed); else the reason it can't run."""
    if is_listening(host, port):
        return None
    if command is None:
        return f"{name} is not listening on {host}:{port} and this machine has no way to start it"
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if _wait_listening(host, port, 30.0):
        return None
    return f"{name} did not start on {host}:{port}: {(done.stderr or done.stdout).strip()[:200]}"


def ensure_postgres() -> str | None:
    return ensure_service("PostgreSQL", PG_HOST, PG_PORT, start_postgres_command())


def ensure_nats() -> str | None:
    return ensure_service("NATS", NATS_HOST, NATS_PORT, start_nats_command())


def _run_sync(dsn: str, sql: str) -> None:
    """Run ``sql`` on its own loop in a helper thread (callers may be inside a running loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _execute(dsn, sql)).result()


async def _execute(dsn: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database(name: str) -> str:
    """CREATE DATABASE ``name`` (a test run's own); its DSN."""
    _run_sync(PG_ADMIN_DSN, f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{name}"


def drop_database(name: str) -> None:
    _run_sync(PG_ADMIN_DSN, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_sql(dsn: str, sql: str) -> None:
    _run_sync(dsn, sql)
