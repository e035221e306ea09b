"""Every method reaches the origin intact; bodies stream; nothing unsafe is retried (issue 2,
Foundation; RFC 9110 §9, RFC 9112 §7)."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator

import pytest

from tests.integration.conftest import Origin, Proxy, read_until_close, status_of


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("GET", b""),
        ("HEAD", b""),
        ("POST", b"post body"),
        ("PUT", b"put body"),
        ("DELETE", b""),
        ("PATCH", b'{"op": "replace"}'),
        ("OPTIONS", b""),
        ("FOOBAR", b"unknown method body"),
    ],
)
def test_method_target_and_body_reach_origin_rfc9110_s9(
    proxy: Proxy, origin: Origin, path: str, method: str, body: bytes
) -> None:
    target = f"{path}?q=1&r=%2F"
    headers = {"Content-Length": str(len(body))} if body else {}
    response = proxy.request(method, target, headers=headers, body=body or None)
    assert response.status == 200
    [seen] = origin.requests(path)
    assert seen["method"] == method
    assert seen["target"] == target
    assert seen["body"].encode("latin-1") == body


def generate_body(total_bytes: int, piece_bytes: int = 1 << 16) -> Iterator[bytes]:
    sent = 0
    counter = 0
    while sent < total_bytes:
        piece = hashlib.sha256(str(counter).encode()).digest() * (piece_bytes // 32)
        piece = piece[: total_bytes - sent]
        counter += 1
        sent += len(piece)
        yield piece


def test_large_request_body_is_streamed_intact(proxy: Proxy, origin: Origin, path: str) -> None:
    size = 20 * 1024 * 1024
    digest = hashlib.sha256()
    for piece in generate_body(size):
        digest.update(piece)
    response = proxy.request(
        "PUT", path, headers={"Content-Length": str(size)}, body=generate_body(size)
    )
    assert response.status == 200
    [seen] = origin.requests(path)
    assert seen["body_len"] == size
    assert seen["body_sha256"] == digest.hexdigest()


def test_chunked_request_body_rfc9112_s7_1(proxy: Proxy, origin: Origin, path: str) -> None:
    pieces = [b"first,", b"second,", b"x" * 100_000, b"last"]
    response = proxy.request(
        "POST",
        path,
        headers={"Transfer-Encoding": "chunked"},
        body=iter(pieces),
        encode_chunked=True,
    )
    assert response.status == 200
    [seen] = origin.requests(path)
    assert seen["body_len"] == sum(map(len, pieces))
    assert seen["body_sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()


def test_expect_100_continue_rfc9110_s10_1_1(proxy: Proxy, origin: Origin, path: str) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: example.test\r\nContent-Length: 11\r\n"
            "Expect: 100-continue\r\nConnection: close\r\n\r\n".encode()
        )
        interim = sock.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100 ")
        sock.sendall(b"hello world")
        raw = interim + read_until_close(sock, 10.0)
    assert status_of(raw) == 200
    [seen] = origin.requests(path)
    assert seen["body"] == "hello world"


def test_post_is_not_retried_when_origin_resets_rfc9110_s9_2_2(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(path, {"fault": "reset_before"})
    response = proxy.request("POST", path, headers={"Content-Length": "4"}, body=b"once")
    assert response.status == 502
    assert origin.count(path) == 1


def test_post_on_a_reused_origin_connection_is_not_retried(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    """The origin closes right after reading a POST sent on a pooled keep-alive connection:
    the POST must not be replayed on a fresh connection (RFC 9110 §9.2.2)."""
    origin.script(path, {"body": "warm"}, {"fault": "close_before"})
    assert proxy.get(path).status == 200
    response = proxy.request("POST", path, headers={"Content-Length": "4"}, body=b"once")
    assert response.status == 502
    assert [r["method"] for r in origin.requests(path)] == ["GET", "POST"]
