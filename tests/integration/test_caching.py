"""Shared-cache behaviour end to end through a real `cachet proxy` (RFC 9111, RFC 5861)."""

from __future__ import annotations

import time

from tests.integration.conftest import Origin, Proxy, ProxyFactory, start_origin, stop_process

FRESH = ["Cache-Control", "max-age=300"]


def value_of(headers: list[list[str]], name: str) -> str | None:
    for field_name, value in headers:
        if field_name.lower() == name:
            return value
    return None


def test_miss_then_hit_rfc9111_s4(proxy: Proxy, origin: Origin, path: str) -> None:
    origin.script(path, {"headers": [FRESH], "body": "cached"})
    first, second = proxy.get(path), proxy.get(path)
    assert first.header("X-Cache-Status") == "MISS"
    assert second.header("X-Cache-Status") == "HIT"
    assert (second.header("Cache-Status") or "").startswith("cachet; hit")
    assert second.body == b"cached"
    assert origin.count(path) == 1


def test_no_store_is_not_stored_rfc9111_s5_2_2_5(proxy: Proxy, origin: Origin, path: str) -> None:
    origin.script(path, {"headers": [["Cache-Control", "no-store, max-age=300"]], "body": "a"})
    proxy.get(path)
    assert proxy.get(path).header("X-Cache-Status") != "HIT"
    assert origin.count(path) == 2


def test_set_cookie_is_not_stored_nor_replayed(proxy: Proxy, origin: Origin, path: str) -> None:
    origin.script(
        path,
        {"headers": [FRESH, ["Set-Cookie", "session=alice"]], "body": "alice's"},
        {"headers": [FRESH], "body": "public"},
    )
    first = proxy.get(path)
    assert first.header("Set-Cookie") == "session=alice"
    second = proxy.get(path)
    assert second.header("Set-Cookie") is None
    assert origin.count(path) == 2
    third = proxy.get(path)
    assert third.header("Set-Cookie") is None


def test_authorization_request_is_not_served_from_cache_rfc9111_s3_5(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(path, {"headers": [FRESH], "body": "public"})
    proxy.get(path)
    authorized = proxy.get(path, headers={"Authorization": "Bearer token"})
    assert authorized.header("X-Cache-Status") != "HIT"
    assert origin.count(path) == 2


def test_authorization_response_is_not_stored_rfc9111_s3_5(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(path, {"headers": [FRESH], "body": "for alice"})
    proxy.get(path, headers={"Authorization": "Bearer alice"})
    anonymous = proxy.get(path)
    assert anonymous.header("X-Cache-Status") != "HIT"
    assert origin.count(path) == 2


def test_vary_two_variants_cached_separately_rfc9111_s4_1(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(
        path,
        {"headers": [FRESH, ["Vary", "Accept-Language"], ["Content-Language", "en"]], "body": "en"},
        {"headers": [FRESH, ["Vary", "Accept-Language"], ["Content-Language", "fr"]], "body": "fr"},
    )
    assert proxy.get(path, headers={"Accept-Language": "en"}).body == b"en"
    assert proxy.get(path, headers={"Accept-Language": "fr"}).body == b"fr"
    english = proxy.get(path, headers={"Accept-Language": "en"})
    french = proxy.get(path, headers={"Accept-Language": "fr"})
    assert (english.body, english.header("X-Cache-Status")) == (b"en", "HIT")
    assert (french.body, french.header("X-Cache-Status")) == (b"fr", "HIT")
    assert origin.count(path) == 2


def test_vary_star_is_never_served_from_cache_rfc9111_s4_1(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(path, {"headers": [FRESH, ["Vary", "*"]], "body": "a"})
    proxy.get(path)
    assert proxy.get(path).header("X-Cache-Status") != "HIT"
    assert origin.count(path) == 2


def test_post_invalidates_cached_get_rfc9111_s4_4(proxy: Proxy, origin: Origin, path: str) -> None:
    origin.script(
        path,
        {"headers": [FRESH], "body": "v1"},
        {"status": 204, "reason": "No Content"},
        {"headers": [FRESH], "body": "v2"},
    )
    assert proxy.get(path).body == b"v1"
    assert proxy.get(path).header("X-Cache-Status") == "HIT"
    assert proxy.request("POST", path, headers={"Content-Length": "1"}, body=b"u").status == 204
    after = proxy.get(path)
    assert after.body == b"v2"
    assert after.header("X-Cache-Status") != "HIT"
    assert [r["method"] for r in origin.requests(path)] == ["GET", "POST", "GET"]


def stale_with_etag(etag: str, extra: str = "") -> dict[str, object]:
    """Stale on arrival: max-age=1 but Age=100 (RFC 9111 §4.2.3), so no sleeping."""
    directives = "max-age=1" + (", " + extra if extra else "")
    return {
        "headers": [["Cache-Control", directives], ["Age", "100"], ["ETag", etag]],
        "body": "stale body",
    }


def test_stale_response_is_revalidated_and_304_refreshes_it_rfc9111_s4_3(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(
        path,
        stale_with_etag('"v1"'),
        {"status": 304, "reason": "Not Modified", "headers": [FRESH, ["ETag", '"v1"']]},
    )
    proxy.get(path)
    revalidated = proxy.get(path)
    assert revalidated.status == 200
    assert revalidated.body == b"stale body"
    assert revalidated.header("X-Cache-Status") == "REVALIDATED"
    conditional = origin.requests(path)[1]
    assert value_of(conditional["headers"], "if-none-match") == '"v1"'
    refreshed = proxy.get(path)  # §4.3.4: the 304's max-age=300 now applies
    assert refreshed.header("X-Cache-Status") == "HIT"
    assert origin.count(path) == 2


def test_client_if_none_match_answered_304_from_cache_rfc9110_s13_1_2(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(path, {"headers": [FRESH, ["ETag", '"abc"']], "body": "tagged"})
    proxy.get(path)
    response = proxy.get(path, headers={"If-None-Match": '"abc"'})
    assert response.status == 304
    assert response.body == b""
    assert response.header("ETag") == '"abc"'
    assert origin.count(path) == 1


def test_head_served_from_stored_get_rfc9110_s9_3_2(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(path, {"headers": [FRESH], "body": "0123456789"})
    proxy.get(path)
    response = proxy.request("HEAD", path)
    assert response.status == 200
    assert response.body == b""
    assert response.header("Content-Length") == "10"
    assert response.header("X-Cache-Status") == "HIT"
    assert origin.count(path) == 1


def test_stale_while_revalidate_one_background_request_rfc5861_s3(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    slow_fresh = {"headers": [FRESH], "body": "new body", "delay_s": 1.0}
    origin.script(path, stale_with_etag('"v1"', "stale-while-revalidate=600"), slow_fresh)
    proxy.get(path)
    started = time.monotonic()
    stale = proxy.get(path)
    assert time.monotonic() - started < 0.8, "the client waited for the revalidation"
    assert stale.body == b"stale body"
    assert stale.header("X-Cache-Status") in ("UPDATING", "STALE")
    for _ in range(5):
        assert proxy.get(path).body in (b"stale body", b"new body")
    origin.wait_for_count(path, 2)
    deadline = time.monotonic() + 5.0
    while proxy.get(path).body != b"new body":
        assert time.monotonic() < deadline, "the background revalidation never landed"
        time.sleep(0.05)
    assert origin.count(path) == 2


def test_only_if_cached_miss_is_504_rfc9111_s5_2_1_7(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    response = proxy.get(path, headers={"Cache-Control": "only-if-cached"})
    assert response.status == 504
    assert origin.count(path) == 0


def test_request_max_age_0_revalidates_rfc9111_s5_2_1_1(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(
        path,
        {"headers": [FRESH, ["ETag", '"m0"']], "body": "body"},
        {"status": 304, "reason": "Not Modified", "headers": [FRESH, ["ETag", '"m0"']]},
    )
    proxy.get(path)
    response = proxy.get(path, headers={"Cache-Control": "max-age=0"})
    assert response.status == 200
    assert response.body == b"body"
    assert origin.count(path) == 2
    assert value_of(origin.requests(path)[1]["headers"], "if-none-match") == '"m0"'


def test_stale_if_error_when_origin_is_down_rfc5861_s4(proxy_factory: ProxyFactory) -> None:
    own_origin = start_origin()
    try:
        own_proxy = proxy_factory(own_origin.url)
        own_origin.script("/sie", stale_with_etag('"e"', "stale-if-error=600"))
        assert own_proxy.get("/sie").status == 200
    finally:
        stop_process(own_origin.proc)
    response = own_proxy.get("/sie")
    assert response.status == 200
    assert response.body == b"stale body"
    assert response.header("X-Cache-Status") == "STALE"
    assert "stale" in (response.header("Cache-Status") or "")


def test_a_fresh_204_is_stored_and_served_from_cache(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    """RFC 9111 §3: any final response may be stored; 204 is heuristically cacheable (RFC 9110
    §15.3.5) and here explicitly fresh. (cache-tests: status-204-fresh)"""
    origin.script(path, {"status": 204, "reason": "No Content",
                         "headers": [["Cache-Control", "max-age=3600"]]})  # fmt: skip
    first = proxy.get(path)
    second = proxy.get(path)
    assert first.status == second.status == 204
    assert second.header("X-Cache-Status") == "HIT"
    assert origin.count(path) == 1
