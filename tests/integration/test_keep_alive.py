"""One client connection carrying many exchanges (RFC 9112 §9.3): every response is framed so
the next one starts where it should, whichever path (hit, 304, HEAD, error) produced it."""

from __future__ import annotations

import http.client
import signal
import socket
import time

from tests.integration.conftest import Origin, Proxy, ProxyFactory, raw_exchange
from tests.ports import free_port

FRESH = ["Cache-Control", "max-age=300"]


def test_mixed_exchanges_on_one_connection_rfc9112_s9_3(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(path, {"headers": [FRESH, ["ETag", '"k"']], "body": "0123456789"})
    origin.script(f"{path}/err", {"fault": "reset_before"})
    origin.script(f"{path}/chunked", {"headers": [FRESH], "body_size": 3000, "framing": "chunked"})
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    expected = [
        ("GET", path, {}, 200, b"0123456789"),
        ("GET", path, {"If-None-Match": '"k"'}, 304, b""),
        ("HEAD", path, {}, 200, b""),
        ("GET", f"{path}/err", {}, 502, None),
        ("GET", f"{path}/chunked", {}, 200, b"x" * 3000),
        ("GET", f"{path}/chunked", {}, 200, b"x" * 3000),
        ("HEAD", f"{path}/chunked", {}, 200, b""),
        ("GET", path, {}, 200, b"0123456789"),
    ]
    try:
        for method, target, headers, status, body in expected:
            conn.request(method, target, headers=headers)
            response = conn.getresponse()
            data = response.read()
            assert response.status == status, (method, target)
            if body is not None:
                assert data == body, (method, target)
            assert response.getheader("X-Request-ID")
            assert response.getheader("Via")
    finally:
        conn.close()


def test_pipelined_hit_waits_for_earlier_miss_rfc9112_s9_3_2(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(f"{path}/slow", {"body": "slow-first", "delay_s": 0.5})
    origin.script(f"{path}/hit", {"headers": [FRESH], "body": "cached-second"})
    assert proxy.get(f"{path}/hit").status == 200
    data = (
        f"GET {path}/slow HTTP/1.1\r\nHost: a.test\r\n\r\n"
        f"GET {path}/hit HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
    ).encode()
    raw = raw_exchange(proxy.port, data, timeout_s=10)
    assert 0 < raw.find(b"slow-first") < raw.find(b"cached-second")


def test_sigterm_with_idle_keep_alive_connections_exits_promptly(
    origin: Origin, proxy_factory: ProxyFactory, path: str
) -> None:
    proxy = proxy_factory(origin.url, "--shutdown-grace-s", "10")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as idle:
        idle.sendall(f"GET {path} HTTP/1.1\r\nHost: a.test\r\n\r\n".encode())
        assert idle.recv(100).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        proxy.proc.send_signal(signal.SIGTERM)
        assert proxy.proc.wait(10) == 0
        assert time.monotonic() - started < 5.0, "idle connections held the shutdown"


def test_errors_carry_request_id_and_via(proxy_factory: ProxyFactory) -> None:
    dead = proxy_factory(f"http://127.0.0.1:{free_port()}")
    response = dead.get("/x", headers={"X-Request-ID": "err-1"})
    assert response.status == 502
    assert response.header("X-Request-ID") == "err-1"
    assert response.header("Via") == "1.1 cachet"
    assert (response.header("Content-Type") or "").startswith("text/plain")
