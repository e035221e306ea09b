"""Malformed or hostile origin responses (RFC 9112 §6.3): a clear 502, never a desynchronised
or poisoned exchange; and clients that vanish mid-exchange don't hurt the proxy."""

from __future__ import annotations

import socket

import pytest

from tests.integration.conftest import Origin, Proxy

RAW_RESPONSES = {
    # RFC 9112 §6.3 item 3: CL with TE from a server: TE wins, CL must be dropped downstream.
    "cl-and-te": "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
    "5\r\nhello\r\n0\r\n\r\n",
    # RFC 9112 §6.3 item 5: differing Content-Length values are unrecoverable.
    "two-lengths": "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "bad-length": "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nhello",
    "only-interim": "HTTP/1.1 100 Continue\r\n\r\n",
    "bad-chunk": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("shape", ["two-lengths", "bad-length", "only-interim"])
def test_broken_origin_framing_is_502_rfc9112_s6_3(
    proxy: Proxy, origin: Origin, path: str, shape: str
) -> None:
    origin.script(path, {"fault": "raw", "raw": RAW_RESPONSES[shape]})
    response = proxy.get(path)
    assert response.status == 502
    assert (response.header("Cache-Status") or "").startswith("cachet")


def test_origin_cl_with_te_uses_chunked_rfc9112_s6_3(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(path, {"fault": "raw", "raw": RAW_RESPONSES["cl-and-te"]})
    response = proxy.get(path)
    if response.status == 200:
        assert response.body == b"hello"
        assert response.header("Content-Length") in (None, "5")
    else:
        assert response.status == 502


def test_origin_bad_chunk_never_looks_complete(proxy: Proxy, origin: Origin, path: str) -> None:
    origin.script(path, {"fault": "raw", "raw": RAW_RESPONSES["bad-chunk"]})
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n".encode())
        raw = b""
        while piece := sock.recv(65536):
            raw += piece
    if raw.startswith(b"HTTP/1.1 200"):
        assert not raw.endswith(b"0\r\n\r\n")
    else:
        assert raw.startswith(b"HTTP/1.1 502")


def test_client_vanishing_mid_request_and_mid_response_is_harmless(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(path, {"body_size": 5_000_000})
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(f"POST {path}/upload HTTP/1.1\r\nHost: a.test\r\n".encode())
        sock.sendall(b"Content-Length: 1000000\r\n\r\n" + b"y" * 1000)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: a.test\r\n\r\n".encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
    after = proxy.get(path)
    assert after.status == 200
    assert len(after.body) == 5_000_000
