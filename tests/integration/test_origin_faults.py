"""Origin failures seen through a real `cachet proxy`: a clear 502/504 with Cache-Status, and
never a short response that looks complete."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.integration.conftest import Origin, Proxy, ProxyFactory, read_until_close, start_proxy
from tests.ports import free_port


@pytest.fixture(scope="module")
def impatient_proxy(origin: Origin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    server = start_proxy(
        origin.url, tmp_path_factory.mktemp("impatient"), "--origin-timeout-s", "1"
    )
    yield server
    server.stop()


def assert_cache_status(response_status: str | None) -> None:
    assert response_status is not None and response_status.startswith("cachet")


def test_origin_refused_is_502(proxy_factory: ProxyFactory) -> None:
    dead = proxy_factory(f"http://127.0.0.1:{free_port()}")
    response = dead.get("/anything")
    assert response.status == 502
    assert_cache_status(response.header("Cache-Status"))
    assert "refused" in (response.header("Cache-Status") or "")


@pytest.mark.parametrize("fault", ["reset_before", "close_before", "garbage"])
def test_origin_fault_before_response_is_502(
    proxy: Proxy, origin: Origin, path: str, fault: str
) -> None:
    origin.script(path, {"fault": fault})
    response = proxy.get(path)
    assert response.status == 502
    assert_cache_status(response.header("Cache-Status"))
    assert (response.header("Content-Type") or "").startswith("text/plain")


def test_origin_stall_is_504(impatient_proxy: Proxy, origin: Origin, path: str) -> None:
    origin.script(path, {"fault": "stall"})
    response = impatient_proxy.get(path)
    assert response.status == 504
    assert_cache_status(response.header("Cache-Status"))


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_origin_reset_mid_body_never_looks_complete(
    proxy: Proxy, origin: Origin, path: str, framing: str
) -> None:
    """RFC 9112 §6.3, §8: an incomplete message must not be presented as complete: with a
    Content-Length the client gets fewer bytes, chunked lacks its last chunk, and the
    connection closes."""
    origin.script(path, {"body_size": 200_000, "framing": framing, "fault": "reset_mid_body"})
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n".encode()
        )
        raw = read_until_close(sock, 10.0)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"cache-status: cachet" in head.lower()
    if b"content-length: 200000" in head.lower():
        assert len(body) < 200_000
    else:
        assert b"transfer-encoding: chunked" in head.lower()
        assert not body.endswith(b"0\r\n\r\n")


def test_origin_reset_mid_close_delimited_body_is_not_cached(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    """RFC 9111 §3.3: an incomplete response may be stored only as partial content; a body cut
    by a reset must never be replayed later as a complete 200."""
    origin.script(
        path,
        {
            "body_size": 200_000,
            "framing": "close",
            "fault": "reset_mid_body",
            "headers": [["Cache-Control", "max-age=300"]],
        },
        {"body_size": 200_000, "headers": [["Cache-Control", "max-age=300"]]},
    )
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n".encode()
        )
        read_until_close(sock, 10.0)
    second = proxy.get(path)
    assert second.status == 200
    assert len(second.body) == 200_000, (
        f"replayed a truncated body: {second.header('X-Cache-Status')}"
    )


@pytest.mark.parametrize("status", ["999", "099", "600"])
def test_an_origin_status_outside_1xx_to_5xx_is_a_502(
    proxy: Proxy, origin: Origin, path: str, status: str
) -> None:
    """RFC 9110 §15: status codes are 100-599; anything else is not HTTP. Passing it on would
    also leave a record no coordinator accepts (a completed response billed nowhere)."""
    raw = f"HTTP/1.1 {status} Odd\r\nContent-Length: 2\r\nCache-Control: max-age=60\r\n\r\nok"
    origin.script(path, {"fault": "raw", "raw": raw})
    response = proxy.get(path)
    assert response.status == 502
    assert_cache_status(response.header("Cache-Status"))
