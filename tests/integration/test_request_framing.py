"""More request shapes RFC 9112 says to reject, and keep-alive/pipelining behaviour, against a
real `cachet proxy`. Each request asks for Connection: close where the connection may stay."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Origin, Proxy, raw_exchange, status_of


def request(path: str, *lines: str, method: str = "GET", body: bytes = b"") -> bytes:
    fields = "".join(f"{line}\r\n" for line in lines)
    return f"{method} {path} HTTP/1.1\r\n{fields}\r\n".encode() + body


@pytest.mark.parametrize(
    ("name", "fields", "body"),
    [
        ("missing-host", (), b""),  # RFC 9112 §3.2
        ("two-hosts", ("Host: a.test", "Host: b.test"), b""),  # RFC 9112 §3.2
        ("space-before-colon", ("Host: a.test", "X-Bad : 1"), b""),  # RFC 9112 §5.1
        ("negative-length", ("Host: a.test", "Content-Length: -1"), b""),  # RFC 9112 §6.3
        ("plus-length", ("Host: a.test", "Content-Length: +3"), b"abc"),  # RFC 9110 §8.6
        ("te-not-chunked-last", ("Host: a.test", "Transfer-Encoding: chunked, gzip"), b""),
        ("te-unknown", ("Host: a.test", "Transfer-Encoding: xchunked"), b""),  # RFC 9112 §6.1
    ],
)
def test_smuggling_shapes_are_rejected_rfc9112(
    proxy: Proxy, origin: Origin, path: str, name: str, fields: tuple[str, ...], body: bytes
) -> None:
    method = "POST" if body or any("Length" in f or "Transfer" in f for f in fields) else "GET"
    raw = raw_exchange(
        proxy.port, request(path, *fields, "Connection: close", method=method, body=body)
    )
    # RFC 9112 §6.1: an unknown transfer coding SHOULD be 501; every other shape here is 400.
    expected = 501 if name == "te-unknown" else 400
    assert status_of(raw) == expected, f"{name}: {raw[:120]!r}"
    assert origin.count(path) == 0


def test_pipelined_requests_answered_in_order_rfc9112_s9_3_2(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    for index in range(3):
        origin.script(f"{path}/{index}", {"body": f"body-{index}", "delay_s": 0.2 * (2 - index)})
    data = b"".join(
        request(f"{path}/{index}", "Host: a.test", *(["Connection: close"] if index == 2 else []))
        for index in range(3)
    )
    raw = raw_exchange(proxy.port, data, timeout_s=10)
    positions = [raw.find(f"body-{index}".encode()) for index in range(3)]
    assert all(p > 0 for p in positions), raw
    assert positions == sorted(positions)


def test_post_body_then_pipelined_get_rfc9112_s6_3(proxy: Proxy, origin: Origin, path: str) -> None:
    data = request(path, "Host: a.test", "Content-Length: 5", method="POST", body=b"hello")
    data += request(f"{path}/next", "Host: a.test", "Connection: close")
    raw = raw_exchange(proxy.port, data, timeout_s=10)
    assert raw.count(b"HTTP/1.1 200 ") == 2
    [post] = origin.requests(path)
    assert post["body"] == "hello"
    assert origin.count(f"{path}/next") == 1


def test_http10_request_is_answered_and_closed_rfc9112_s9_3(proxy: Proxy, path: str) -> None:
    raw = raw_exchange(proxy.port, f"GET {path} HTTP/1.0\r\nHost: a.test\r\n\r\n".encode(), 5)
    assert raw.startswith(b"HTTP/1.1 200 ")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()  # RFC 9112 §6.1: never chunked to 1.0
    assert body


def test_overlong_target_is_414_rfc9112_s3(proxy: Proxy) -> None:
    target = "/" + "a" * (70 * 1024)
    raw = raw_exchange(proxy.port, request(target, "Host: a.test", "Connection: close"))
    assert status_of(raw) in (414, 431)


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("nul-in-value", "X-Nul: a\x00b"),  # RFC 9110 §5.5
        ("bad-name-token", "X(Bad): 1"),  # RFC 9110 §5.1
        ("empty-name", ": value"),  # RFC 9112 §5
    ],
)
def test_invalid_field_is_400_rfc9110_s5(
    proxy: Proxy, origin: Origin, path: str, name: str, field: str
) -> None:
    raw = raw_exchange(proxy.port, request(path, "Host: a.test", field, "Connection: close"))
    assert status_of(raw) == 400, name
    assert origin.count(path) == 0


def test_transfer_encoding_in_http10_is_faulty_framing_rfc9112_s6_1(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    data = (
        f"POST {path} HTTP/1.0\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n"
        "Content-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    ).encode()
    raw = raw_exchange(proxy.port, data)
    assert status_of(raw) == 400
    assert origin.count(path) == 0
