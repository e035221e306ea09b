"""Bodies and validators under load through a real `cachet proxy` (RFC 9111 §4.3.4, §3)."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

from tests.integration.conftest import Origin, Proxy, http_request

FRESH = ["Cache-Control", "max-age=300"]


def test_304_updates_stored_headers_rfc9111_s4_3_4(proxy: Proxy, origin: Origin, path: str) -> None:
    origin.script(
        path,
        {
            "headers": [
                ["Cache-Control", "max-age=1"],
                ["Age", "100"],
                ["ETag", '"u"'],
                ["X-Version", "1"],
            ],
            "body": "same body",
        },
        {
            "status": 304,
            "reason": "Not Modified",
            "headers": [FRESH, ["ETag", '"u"'], ["X-Version", "2"]],
        },
    )
    proxy.get(path)
    revalidated = proxy.get(path)
    assert "fwd-status=304" in (revalidated.header("Cache-Status") or "")
    hit = proxy.get(path)
    assert hit.header("X-Cache-Status") == "HIT"
    assert hit.header("X-Version") == "2"
    assert hit.body == b"same body"


def test_304_for_another_etag_fetches_whole_rfc9111_s4_3_4(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(
        path,
        {"headers": [["Cache-Control", "max-age=1"], ["Age", "100"], ["ETag", '"a"']], "body": "A"},
        {"status": 304, "reason": "Not Modified", "headers": [FRESH, ["ETag", '"b"']]},
        {"headers": [FRESH, ["ETag", '"b"']], "body": "B"},
    )
    proxy.get(path)
    response = proxy.get(path)
    assert response.status == 200
    assert response.body == b"B"


def test_concurrent_misses_all_get_whole_bodies(proxy: Proxy, origin: Origin, path: str) -> None:
    body_size = 1_000_000
    origin.script(path, {"headers": [FRESH], "body_size": body_size, "delay_s": 0.2})
    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(lambda _: http_request(proxy.port, "GET", path), range(32)))
    for response in responses:
        assert response.status == 200
        assert len(response.body) == body_size
        assert response.body == b"x" * body_size


def test_large_response_streams_and_caches_intact(proxy: Proxy, origin: Origin, path: str) -> None:
    size = 20 * 1024 * 1024
    origin.script(path, {"headers": [FRESH], "body_size": size, "framing": "chunked"})
    digest = hashlib.sha256(b"x" * size).hexdigest()
    first = proxy.get(path)
    second = proxy.get(path)
    assert hashlib.sha256(first.body).hexdigest() == digest
    assert hashlib.sha256(second.body).hexdigest() == digest
    assert second.header("X-Cache-Status") == "HIT"
    assert second.header("Content-Length") == str(size)
