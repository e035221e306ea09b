"""Framing faults on either side of a real `cachet proxy` (RFC 9112 §6-§8)."""

from __future__ import annotations

import socket

import pytest

from tests.integration.conftest import Origin, Proxy, raw_exchange, read_until_close, status_of


@pytest.mark.parametrize("chunk_size", [b"zz", b"fffffffffffffffffffff", b"-5", b"0x5", b""])
def test_invalid_chunk_size_is_400_rfc9112_s7_1(
    proxy: Proxy, origin: Origin, path: str, chunk_size: bytes
) -> None:
    """An invalid chunk size arriving with the head: nothing has been written yet, so the
    proxy answers 400 and closes; the origin never gets the body."""
    head = f"POST {path} HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n"
    raw = raw_exchange(proxy.port, head.encode() + chunk_size + b"\r\nhello\r\n0\r\n\r\n")
    assert status_of(raw) == 400, f"expected a 400 answer, got {raw[:200]!r}"
    assert all(r["body"] != "hello" for r in origin.requests(path))


def test_origin_reset_mid_close_delimited_body_never_looks_complete_rfc9112_s8(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    """RFC 9112 §8: a close-delimited body ended by a connection reset (not a clean close) is
    incomplete; re-framed as chunked for the client it must not get its last chunk."""
    origin.script(path, {"body_size": 200_000, "framing": "close", "fault": "reset_mid_body"})
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n".encode()
        )
        raw = read_until_close(sock, 10.0)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding: chunked" in head.lower()
    assert not body.endswith(b"0\r\n\r\n"), "a truncated body was presented as complete"
