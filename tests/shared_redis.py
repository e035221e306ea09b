"""The machine's Redis for the shared tier's tests (127.0.0.1:6379, keeps nothing on disk),
started when absent, and private redis-server processes for tests that stop one."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from tests.services import _wait_listening, ensure_service

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


def _start_command(port: int) -> list[str] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    return [binary, "--bind", REDIS_HOST, "--port", str(port), "--save", "", "--appendonly", "no",
            "--daemonize", "yes"]  # fmt: skip


def ensure_redis() -> str | None:
    """None when the local Redis listens (started if needed); else why it can't run."""
    return ensure_service("Redis", REDIS_HOST, REDIS_PORT, _start_command(REDIS_PORT))


def unique_prefix() -> str:
    """A key prefix no other test (or run) uses, so tests share the local Redis safely."""
    return f"cachet-test-{uuid.uuid4().hex[:12]}:"


def client(port: int = REDIS_PORT) -> redis.Redis:
    return redis.Redis(host=REDIS_HOST, port=port, socket_timeout=5)


def delete_prefix(prefix: str, port: int = REDIS_PORT) -> None:
    with client(port) as r:
        names = list(r.scan_iter(match=prefix + "*"))
        if names:
            r.delete(*names)


@contextmanager
def private_redis(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server of our own on ``port`` (in the foreground, so it can be killed)."""
    command = _start_command(port)
    if command is None:
        raise RuntimeError("redis-server is not installed")
    proc = subprocess.Popen(command[:-2], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not _wait_listening(REDIS_HOST, port, 10.0):
            raise RuntimeError(f"redis-server did not listen on {port}")
        yield proc
    finally:
        stop_redis(proc)


def stop_redis(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
