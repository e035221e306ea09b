"""Clients that stall hold nothing forever: idle keep-alive connections and request bodies that
stop arriving are cut off (issue 2: never a hang or a leak)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.integration.conftest import (
    Origin,
    Proxy,
    ProxyFactory,
    read_until_close,
    start_proxy,
    status_of,
)


@pytest.fixture(scope="module")
def strict_proxy(origin: Origin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    server = start_proxy(
        origin.url,
        tmp_path_factory.mktemp("strict"),
        "--header-timeout-s",
        "1",
        "--keepalive-timeout-s",
        "1",
    )
    yield server
    server.stop()


def test_idle_keep_alive_connection_is_closed(strict_proxy: Proxy, path: str) -> None:
    with socket.create_connection(("127.0.0.1", strict_proxy.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: a.test\r\n\r\n".encode())
        started = time.monotonic()
        raw = read_until_close(sock, 6.0)
        assert status_of(raw) == 200
        assert time.monotonic() - started < 5.0, "idle keep-alive connection never closed"


def test_stalled_request_body_is_cut_off(strict_proxy: Proxy, origin: Origin, path: str) -> None:
    """Head complete, then half the declared body and silence: the connection must not be held
    open (with its origin connection) forever."""
    with socket.create_connection(("127.0.0.1", strict_proxy.port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100\r\n\r\n".encode()
            + b"z" * 50
        )
        started = time.monotonic()
        read_until_close(sock, 8.0)
        assert time.monotonic() - started < 7.0, "stalled request body never cut off"
    assert strict_proxy.get(path).status == 200


def test_silent_new_connection_is_cut_off_after_header_timeout(
    origin: Origin, proxy_factory: ProxyFactory
) -> None:
    """Slowloris with zero bytes: a fresh connection that never starts its head is sending its
    head too slowly (issue 2), so --header-timeout-s applies, not the keep-alive idle timeout
    meant for the gap between requests."""
    proxy = proxy_factory(origin.url, "--header-timeout-s", "1")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        started = time.monotonic()
        read_until_close(sock, 8.0)
        assert time.monotonic() - started < 6.0, "a silent connection is held open"
