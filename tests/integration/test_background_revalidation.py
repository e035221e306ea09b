"""stale-while-revalidate's background request through a real `cachet proxy` (RFC 5861 §3):
a failed background revalidation is retried by a later request, and shutdown waits for one."""

from __future__ import annotations

import signal
import time

from tests.integration.conftest import Origin, Proxy, ProxyFactory

STALE_SWR = {
    "headers": [
        ["Cache-Control", "max-age=1, stale-while-revalidate=600"],
        ["Age", "100"],
        ["ETag", '"v1"'],
    ],
    "body": "stale body",
}
FRESH_NEW = {"headers": [["Cache-Control", "max-age=300"]], "body": "new body"}


def wait_for_body(proxy: Proxy, path: str, body: bytes, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while proxy.get(path).body != body:
        assert time.monotonic() < deadline, f"never served {body!r}"
        time.sleep(0.05)


def test_failed_background_revalidation_is_retried_later_rfc5861_s3(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(path, STALE_SWR, {"fault": "reset_before"}, FRESH_NEW)
    proxy.get(path)
    stale = proxy.get(path)
    assert stale.body == b"stale body"
    origin.wait_for_count(path, 2)  # the background request, which fails
    deadline = time.monotonic() + 5.0
    while origin.count(path) < 3:
        assert time.monotonic() < deadline, "no new background revalidation after a failure"
        assert proxy.get(path).body in (b"stale body", b"new body")
        time.sleep(0.05)
    wait_for_body(proxy, path, b"new body")


def test_background_revalidation_304_refreshes_rfc5861_s3(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(
        path,
        STALE_SWR,
        {
            "status": 304,
            "reason": "Not Modified",
            "headers": [["Cache-Control", "max-age=300"], ["ETag", '"v1"']],
        },
    )
    proxy.get(path)
    proxy.get(path)
    origin.wait_for_count(path, 2)
    deadline = time.monotonic() + 5.0
    while proxy.get(path).header("X-Cache-Status") != "HIT":
        assert time.monotonic() < deadline, "the background 304 never refreshed the entry"
        time.sleep(0.05)
    assert origin.requests(path)[1]["headers"].count(["If-None-Match", '"v1"']) == 1
    assert origin.count(path) == 2


def test_sigterm_waits_for_background_revalidation_and_exits_0(
    origin: Origin, proxy_factory: ProxyFactory, path: str
) -> None:
    proxy = proxy_factory(origin.url)
    origin.script(path, STALE_SWR, {**FRESH_NEW, "delay_s": 1.0})
    proxy.get(path)
    assert proxy.get(path).body == b"stale body"
    origin.wait_for_count(path, 2)
    proxy.proc.send_signal(signal.SIGTERM)
    assert proxy.proc.wait(15) == 0
