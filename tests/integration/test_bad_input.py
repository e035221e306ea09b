"""Malformed and hostile requests against a real `cachet proxy` (RFC 9112, RFC 9110)."""

from __future__ import annotations

import socket
import time

import pytest

from tests.integration.conftest import (
    Origin,
    Proxy,
    ProxyFactory,
    raw_exchange,
    read_until_close,
    status_of,
)


def head(target: str = "/", *lines: str, method: str = "GET") -> bytes:
    fields = "".join(f"{line}\r\n" for line in lines)
    return f"{method} {target} HTTP/1.1\r\nHost: example.test\r\n{fields}\r\n".encode()


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET\r\n",
        b"GET /x\r\n",
        b"GET /x HTTP/1.1 extra\r\n",
        b"GET  /x HTTP/1.1\r\n",
        b"G(T /x HTTP/1.1\r\n",
        b"GET /x HTTX/1.1\r\n",
    ],
)
def test_malformed_request_line_is_400_rfc9112_s3(proxy: Proxy, request_line: bytes) -> None:
    raw = raw_exchange(proxy.port, request_line + b"Host: example.test\r\n\r\n")
    assert status_of(raw) == 400


def test_head_too_large_is_431_rfc6585_s5(proxy: Proxy) -> None:
    big = "X-Big: " + "a" * (70 * 1024)
    raw = raw_exchange(proxy.port, head("/", big))
    assert status_of(raw) == 431


def test_content_length_with_transfer_encoding_is_400_and_closed_rfc9112_s6_1(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    smuggle = (
        f"POST {path} HTTP/1.1\r\nHost: example.test\r\nContent-Length: 4\r\n"
        f"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET {path}/smuggled HTTP/1.1\r\n"
        "Host: example.test\r\n\r\n"
    ).encode()
    raw = raw_exchange(proxy.port, smuggle)
    assert status_of(raw) == 400
    assert raw.count(b"HTTP/1.1 ") == 1, "connection must close after the 400"
    assert origin.count(path) == 0
    assert origin.count(f"{path}/smuggled") == 0


def test_differing_duplicate_content_length_is_400_rfc9112_s6_3(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    raw = raw_exchange(
        proxy.port, head(path, "Content-Length: 3", "Content-Length: 5", method="POST") + b"abcde"
    )
    assert status_of(raw) == 400
    assert origin.count(path) == 0


def test_obs_fold_is_400_rfc9112_s5_2(proxy: Proxy, origin: Origin, path: str) -> None:
    raw = raw_exchange(proxy.port, head(path, "X-Folded: one", " two"))
    assert status_of(raw) == 400
    assert origin.count(path) == 0


def test_bare_cr_is_400_rfc9112_s2_2(proxy: Proxy, origin: Origin, path: str) -> None:
    raw = raw_exchange(proxy.port, head(path, "X-Bare: a\rb"))
    assert status_of(raw) == 400
    assert origin.count(path) == 0


def test_connect_is_refused_rfc9110_s9_3_6(proxy: Proxy) -> None:
    raw = raw_exchange(
        proxy.port,
        b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\nConnection: close\r\n\r\n",
    )
    assert 400 <= status_of(raw) < 500


def test_absolute_form_other_authority_is_400_rfc9112_s3_2_2(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    raw = raw_exchange(
        proxy.port,
        f"GET http://evil.test{path} HTTP/1.1\r\nHost: example.test\r\n"
        "Connection: close\r\n\r\n".encode(),
    )
    assert status_of(raw) == 400
    assert origin.count(path) == 0


def test_slow_request_head_is_cut_off(origin: Origin, proxy_factory: ProxyFactory) -> None:
    """Slowloris: a head dribbled byte by byte is cut off after --header-timeout-s, even though
    bytes keep arriving; and the proxy keeps serving afterwards."""
    proxy = proxy_factory(origin.url, "--header-timeout-s", "1")
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        received = b""
        for byte in b"GET / HTTP/1.1\r\nHost: example.test\r\nX-Slow: " + b"a" * 100:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            sock.settimeout(0.2)
            try:
                received = sock.recv(4096)
            except TimeoutError:
                continue
            break
        received += read_until_close(sock, 2.0)
    elapsed = time.monotonic() - started
    assert elapsed < 5.0, "slow head not cut off"
    assert status_of(received) in (408, 0)
    assert proxy.get("/healthy-after-slowloris").status == 200


def test_proxy_still_serves_after_bad_input(proxy: Proxy, path: str) -> None:
    for junk in (b"\x00\xff\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", b"\r\n" * 3):
        raw_exchange(proxy.port, junk, timeout_s=2.0)
    assert proxy.get(path).status == 200
