"""A cached object is never served to someone who shouldn't see it, and a request can't poison
the cache for others (ARCHITECTURE guarantees; RFC 9111)."""

from __future__ import annotations

from tests.integration.conftest import Origin, Proxy, ProxyFactory

FRESH = ["Cache-Control", "max-age=300"]


def value_of(headers: list[list[str]], name: str) -> str | None:
    for field_name, value in headers:
        if field_name.lower() == name:
            return value
    return None


def test_head_miss_does_not_store_an_empty_body_for_get_rfc9110_s9_3_2(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(path, {"headers": [FRESH], "body": "the body"})
    assert proxy.request("HEAD", path).body == b""
    response = proxy.get(path)
    assert response.status == 200
    assert response.body == b"the body"


def test_cache_is_keyed_by_host_rfc9111_s2(proxy: Proxy, origin: Origin, path: str) -> None:
    origin.script(path, {"headers": [FRESH], "echo": True})
    first = proxy.get(path, headers={"Host": "a.example.test"})
    second = proxy.get(path, headers={"Host": "b.example.test"})
    assert b"a.example.test" in first.body
    assert b"b.example.test" in second.body
    assert origin.count(path) == 2


def test_absolute_form_shares_the_origin_form_entry_rfc9112_s3_2_2(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(path, {"headers": [FRESH], "body": "same"})
    proxy.get(path, headers={"Host": "abs.example.test"})
    response = proxy.get(f"http://abs.example.test{path}", headers={"Host": "abs.example.test"})
    assert response.header("X-Cache-Status") == "HIT"
    assert origin.count(path) == 1


def test_private_response_is_not_stored_rfc9111_s5_2_2_7(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(path, {"headers": [["Cache-Control", "private, max-age=300"]], "body": "mine"})
    proxy.get(path)
    assert proxy.get(path).header("X-Cache-Status") != "HIT"
    assert origin.count(path) == 2


def test_request_no_store_is_not_stored_rfc9111_s5_2_1_5(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(path, {"headers": [FRESH], "body": "x"})
    proxy.get(path, headers={"Cache-Control": "no-store"})
    assert proxy.get(path).header("X-Cache-Status") != "HIT"
    assert origin.count(path) == 2


def test_s_maxage_overrides_max_age_for_a_shared_cache_rfc9111_s5_2_2_10(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(
        path, {"headers": [["Cache-Control", "max-age=300, s-maxage=0"], ["ETag", '"s"']]}
    )
    proxy.get(path)
    assert proxy.get(path).header("X-Cache-Status") != "HIT"
    assert origin.count(path) == 2


def test_response_no_cache_is_revalidated_every_time_rfc9111_s5_2_2_4(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(
        path,
        {"headers": [["Cache-Control", "no-cache, max-age=300"], ["ETag", '"nc"']], "body": "b"},
        {"status": 304, "reason": "Not Modified", "headers": [["ETag", '"nc"']]},
    )
    proxy.get(path)
    second = proxy.get(path)
    assert second.body == b"b"
    assert origin.count(path) == 2
    assert value_of(origin.requests(path)[1]["headers"], "if-none-match") == '"nc"'


def test_client_if_none_match_mismatch_gets_full_body_rfc9110_s13_1_2(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(path, {"headers": [FRESH, ["ETag", '"cur"']], "body": "current"})
    proxy.get(path)
    response = proxy.get(path, headers={"If-None-Match": '"old"'})
    assert (response.status, response.body) == (200, b"current")
    assert origin.count(path) == 1


def test_conditional_miss_fills_cache_for_others_rfc9111_s4_3_2(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(path, {"headers": [FRESH, ["ETag", '"f"']], "body": "filled"})
    assert proxy.get(path, headers={"If-None-Match": '"f"'}).status == 304
    plain = proxy.get(path)
    assert (plain.status, plain.body) == (200, b"filled")


def test_client_x_forwarded_host_is_not_forwarded(proxy: Proxy, origin: Origin, path: str) -> None:
    """A client-sent X-Forwarded-Host is unkeyed: forwarding it would let one request poison
    the entry for everyone (the proxy sets its own from Host)."""
    proxy.get(path, headers={"Host": "real.test", "X-Forwarded-Host": "evil.test"})
    [seen] = origin.requests(path)
    assert [v for n, v in seen["headers"] if n.lower() == "x-forwarded-host"] == ["real.test"]


def test_origin_5xx_serves_stale_if_error_rfc5861_s4(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(
        path,
        {
            "headers": [["Cache-Control", "max-age=1, stale-if-error=600"], ["Age", "100"]],
            "body": "old but fine",
        },
        {"status": 503, "reason": "Service Unavailable", "body": "down"},
    )
    proxy.get(path)
    response = proxy.get(path)
    assert (response.status, response.body) == (200, b"old but fine")
    assert response.header("X-Cache-Status") == "STALE"


def test_object_over_size_limit_streams_uncached(
    origin: Origin, proxy_factory: ProxyFactory, path: str
) -> None:
    # Over memory's limit and the disk's (a larger disk limit stores it from its spill file:
    # tests/integration/test_large_disk.py).
    small = proxy_factory(
        origin.url, "--max-object-size", "64KiB", "--disk-max-object-size", "64KiB"
    )
    origin.script(path, {"headers": [FRESH], "body_size": 300_000, "framing": "chunked"})
    assert small.get(path).body == b"x" * 300_000
    second = small.get(path)
    assert second.body == b"x" * 300_000
    assert second.header("X-Cache-Status") != "HIT"
    assert origin.count(path) == 2


def test_stored_set_cookie_is_never_replayed(
    origin: Origin, proxy_factory: ProxyFactory, path: str
) -> None:
    cookie_proxy = proxy_factory(origin.url, "--cache-set-cookie")
    origin.script(path, {"headers": [FRESH, ["Set-Cookie", "session=alice"]], "body": "page"})
    assert cookie_proxy.get(path).header("Set-Cookie") == "session=alice"
    hit = cookie_proxy.get(path)
    assert hit.body == b"page"
    assert hit.header("Set-Cookie") is None
