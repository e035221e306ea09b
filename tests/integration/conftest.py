"""Real processes on 127.0.0.1: the scriptable origin (origin_app.py) and `cachet proxy`.

Clients: `Proxy.request` (http.client, one connection per request) for well-formed traffic and
`raw_exchange` (a plain socket) for the malformed shapes http.client refuses to send.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0
CLIENT_TIMEOUT_S = 15.0


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]


def http_request(
    port: int,
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: bytes | Iterable[bytes] | None = None,
    *,
    encode_chunked: bool = False,
    timeout_s: float = CLIENT_TIMEOUT_S,
) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request(
            method, target, body=body, headers=headers or {}, encode_chunked=encode_chunked
        )
        response = conn.getresponse()
        data = response.read()
        return Response(response.status, response.getheaders(), data)
    finally:
        conn.close()


def raw_exchange(port: int, data: bytes, timeout_s: float = 5.0) -> bytes:
    """Send bytes, half-close, read until the proxy closes (or the timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(data)
        return read_until_close(sock, timeout_s)


def read_until_close(sock: socket.socket, timeout_s: float) -> bytes:
    deadline = time.monotonic() + timeout_s
    received = bytearray()
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            piece = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not piece:
            break
        received += piece
    return bytes(received)


def status_of(raw: bytes) -> int:
    """The status code of the first final (non-1xx) response in raw bytes; 0 if none."""
    for line in raw.split(b"\r\n"):
        if line.startswith(b"HTTP/1.") and len(line) >= 12:
            code = int(line[9:12])
            if code >= 200:
                return code
    return 0


class Origin:
    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def script(self, path: str, *responses: dict[str, Any]) -> None:
        body = json.dumps({"path": path, "responses": list(responses)}).encode()
        response = http_request(self.port, "POST", "/_ctl/script", body=body)
        assert response.status == 204

    def requests(self, path: str) -> list[dict[str, Any]]:
        response = http_request(self.port, "GET", f"/_ctl/requests?path={path}")
        records: list[dict[str, Any]] = json.loads(response.body)
        return records

    def count(self, path: str) -> int:
        return len(self.requests(path))

    def wait_for_count(self, path: str, count: int, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.count(path) < count:
            assert time.monotonic() < deadline, f"origin never saw {count} requests to {path}"
            time.sleep(0.02)


def start_origin() -> Origin:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.origin_app"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("PORT "), f"origin did not start: {line!r}"
    return Origin(proc, int(line.split()[1]))


def stop_process(proc: subprocess.Popen[Any]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait(STOP_TIMEOUT_S)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    return code


class Proxy:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, admin_port: int, log: Path):
        self.proc = proc
        self.port = port
        self.admin_port = admin_port
        self.log = log

    def request(self, method: str, target: str, **kwargs: Any) -> Response:
        return http_request(self.port, method, target, **kwargs)

    def get(self, target: str, headers: dict[str, str] | None = None) -> Response:
        return self.request("GET", target, headers=headers)

    def admin(self, target: str) -> Response:
        return http_request(self.admin_port, "GET", target)

    def stop(self) -> int:
        return stop_process(self.proc)


def start_proxy(origin_url: str, cache_dir: Path, *flags: str) -> Proxy:
    port, admin_port = free_port(), free_port()
    cache_dir.mkdir(parents=True, exist_ok=True)
    log = cache_dir / "proxy.log"
    command = [
        sys.executable,
        "-m",
        "cachet",
        "proxy",
        "--listen",
        f"127.0.0.1:{port}",
        "--origin",
        origin_url,
        "--admin-listen",
        f"127.0.0.1:{admin_port}",
        "--cache-dir",
        str(cache_dir),
        *flags,
    ]
    with log.open("wb") as log_file:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CACHET_")}
        proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log_file, stderr=log_file, env=env)
    proxy = Proxy(proc, port, admin_port, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"cachet proxy exited early: {log.read_text()}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if proxy.admin("/healthz").status == 200:
                return proxy
        if time.monotonic() > deadline:
            proxy.stop()
            raise RuntimeError(f"cachet proxy not healthy in time: {log.read_text()}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def origin() -> Iterator[Origin]:
    server = start_origin()
    yield server
    stop_process(server.proc)


@pytest.fixture(scope="session")
def proxy(origin: Origin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """The shared proxy: tests use unique paths, so they don't interfere."""
    server = start_proxy(origin.url, tmp_path_factory.mktemp("proxy"), "--origin-timeout-s", "5")
    yield server
    server.stop()


ProxyFactory = Callable[..., Proxy]


@pytest.fixture
def proxy_factory(tmp_path: Path) -> Iterator[ProxyFactory]:
    """Start extra proxies with their own flags; all stopped after the test."""
    started: list[Proxy] = []

    def factory(origin_url: str, *flags: str) -> Proxy:
        server = start_proxy(origin_url, tmp_path / f"proxy{len(started)}", *flags)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def path(request: pytest.FixtureRequest) -> str:
    """A path no other test uses."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:80]
    return f"/t/{name}-{uuid.uuid4().hex[:8]}"
