"""Behaviour the HTTP cache tests (cache-tests.fyi, docs/conformance.md) found wrong, through a
real `cachet proxy`: each failing test id, with a control that shows the setup does cache."""

from __future__ import annotations

from tests.integration.conftest import Origin, Proxy

FAR_FUTURE = "Thu, 18 Aug 2050 02:01:18 GMT"


def test_far_future_expires_is_fresh_rfc9111_s5_3(proxy: Proxy, origin: Origin, path: str) -> None:
    origin.script(path, {"headers": [["Expires", FAR_FUTURE]], "body": "e"})
    proxy.get(path)
    assert proxy.get(path).header("X-Cache-Status") == "HIT"
    assert origin.count(path) == 1


def test_expires_with_doubled_spaces_is_invalid_so_stale_rfc9111_s5_3(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    """cache-tests freshness-expires-invalid-multiple-spaces: RFC 9110 §5.6.7's grammar has
    single spaces, and an invalid Expires means "already expired" (RFC 9111 §5.3)."""
    doubled = "Thu, 18  Aug  2050 02:01:18 GMT"
    origin.script(path, {"headers": [["Expires", doubled]], "body": "e"}, {"body": "e2"})
    proxy.get(path)
    second = proxy.get(path)
    assert second.header("X-Cache-Status") != "HIT"
    assert second.body == b"e2"
    assert origin.count(path) == 2


def test_cdn_cache_control_replaces_cache_control_rfc9213_s2_2(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    headers = [["Cache-Control", "no-store"], ["CDN-Cache-Control", "max-age=10000"]]
    origin.script(path, {"headers": headers, "body": "c"})
    proxy.get(path)
    assert proxy.get(path).header("X-Cache-Status") == "HIT"
    assert origin.count(path) == 1


def test_cdn_cache_control_of_the_wrong_type_is_ignored_rfc9213_s2_1(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    """cache-tests cdn-cc-invalid-sh-type-wrong: max-age must be an Integer, so a String
    max-age makes the field ignored and Cache-Control: no-store applies."""
    headers = [["Cache-Control", "no-store"], ["CDN-Cache-Control", 'max-age="10000"']]
    origin.script(path, {"headers": headers, "body": "c"}, {"headers": headers, "body": "c2"})
    proxy.get(path)
    second = proxy.get(path)
    assert second.header("X-Cache-Status") != "HIT"
    assert second.body == b"c2"
    assert origin.count(path) == 2
