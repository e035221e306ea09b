"""Operating a real `cachet proxy`: admin listener, metrics, graceful SIGTERM (issue 2)."""

from __future__ import annotations

import re
import signal
import socket
import time

from tests.integration.conftest import Origin, Proxy, ProxyFactory, read_until_close, status_of


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)"
    found = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_healthz_is_200(proxy: Proxy) -> None:
    response = proxy.admin("/healthz")
    assert response.status == 200


def test_metrics_counters_move(proxy: Proxy, origin: Origin, path: str) -> None:
    origin.script(path, {"headers": [["Cache-Control", "max-age=300"]], "body": "m"})
    before = proxy.admin("/metrics").body.decode()
    proxy.get(path)
    proxy.get(path)
    after = proxy.admin("/metrics").body.decode()
    assert "cachet_requests_total" in after
    for outcome in ("miss", "hit"):
        labels = f'outcome="{outcome}"'
        assert metric(after, "cachet_requests_total", labels) >= (
            metric(before, "cachet_requests_total", labels) + 1
        )


def test_sigterm_lets_in_flight_response_finish_and_refuses_new_connections(
    origin: Origin, proxy_factory: ProxyFactory, path: str
) -> None:
    """SIGTERM: stop accepting, finish the in-flight response, exit 0 (issue 2, Foundation)."""
    proxy = proxy_factory(origin.url, "--shutdown-grace-s", "10")
    origin.script(path, {"body": "slow but whole", "delay_s": 1.5})
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: example.test\r\n\r\n".encode())
        origin.wait_for_count(path, 1)
        proxy.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        while True:
            try:
                socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
            except ConnectionRefusedError:
                break
            assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
            time.sleep(0.02)
        raw = read_until_close(sock, 10.0)
    assert status_of(raw) == 200
    assert raw.endswith(b"slow but whole")
    assert proxy.proc.wait(15) == 0


def test_metrics_cover_issue_2_operations_list(proxy: Proxy, origin: Origin, path: str) -> None:
    """Issue 2, Operations: outcomes, bytes by tier, origin bytes, origin latency histogram,
    cache bytes/entries/evictions, open connections; all move with traffic."""
    origin.script(path, {"headers": [["Cache-Control", "max-age=300"]], "body_size": 1000})
    before = proxy.admin("/metrics").body.decode()
    proxy.get(path)
    proxy.get(path)
    text = proxy.admin("/metrics").body.decode()
    for name in (
        "cachet_cache_evictions_total",
        "cachet_open_connections",
        "cachet_origin_latency_seconds_bucket",
    ):
        assert re.search(r"^" + name + r"\b", text, re.MULTILINE), name
    for name, labels in (
        ("cachet_served_bytes_total", 'tier="memory"'),
        ("cachet_served_bytes_total", 'tier="origin"'),
        ("cachet_origin_bytes_total", ""),
        ("cachet_origin_latency_seconds_count", ""),
    ):
        assert metric(text, name, labels) >= metric(before, name, labels) + 1, name
    assert metric(text, "cachet_cache_bytes") >= 1000
    assert metric(text, "cachet_cache_entries") >= 1


def test_rejected_requests_are_counted(proxy: Proxy) -> None:
    before = metric(
        proxy.admin("/metrics").body.decode(), "cachet_rejected_requests_total", 'status="400"'
    )
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n")
        assert status_of(read_until_close(sock, 5.0)) == 400
    after = metric(
        proxy.admin("/metrics").body.decode(), "cachet_rejected_requests_total", 'status="400"'
    )
    assert after == before + 1
