"""Client conditionals answered from the cache and range requests through a real `cachet proxy`
(RFC 9110 §13.2.2, §14; RFC 9111 §3.3, §4.3.2)."""

from __future__ import annotations

from tests.integration.conftest import Origin, Proxy

FRESH = ["Cache-Control", "max-age=300"]
LAST_MODIFIED = "Tue, 01 Sep 2026 10:00:00 GMT"


def test_if_modified_since_answered_304_from_cache_rfc9110_s13_1_3(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(path, {"headers": [FRESH, ["Last-Modified", LAST_MODIFIED]], "body": "lm"})
    proxy.get(path)
    response = proxy.get(path, headers={"If-Modified-Since": LAST_MODIFIED})
    assert response.status == 304
    assert origin.count(path) == 1


def test_if_none_match_takes_precedence_over_ims_rfc9110_s13_2_2(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(
        path,
        {"headers": [FRESH, ["ETag", '"now"'], ["Last-Modified", LAST_MODIFIED]], "body": "p"},
    )
    proxy.get(path)
    response = proxy.get(
        path, headers={"If-None-Match": '"older"', "If-Modified-Since": LAST_MODIFIED}
    )
    assert (response.status, response.body) == (200, b"p")


def test_partial_response_is_never_served_as_whole_rfc9111_s3_3(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(
        path,
        {
            "status": 206,
            "reason": "Partial Content",
            "headers": [FRESH, ["Content-Range", "bytes 0-4/10"]],
            "body": "01234",
        },
        {"headers": [FRESH], "body": "0123456789"},
    )
    partial = proxy.get(path, headers={"Range": "bytes=0-4"})
    assert partial.status == 206
    whole = proxy.get(path)
    assert (whole.status, whole.body) == (200, b"0123456789")


def test_range_request_is_not_answered_with_the_whole_cached_body_as_206(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    """RFC 9110 §14.2: a cache may answer a Range from a stored 200 (206 with Content-Range)
    or ignore the Range (200 with the whole body); it must not mislabel either."""
    origin.script(path, {"headers": [FRESH], "body": "0123456789"})
    proxy.get(path)
    response = proxy.get(path, headers={"Range": "bytes=0-4"})
    if response.status == 206:
        assert response.body == b"01234"
        assert response.header("Content-Range") == "bytes 0-4/10"
    else:
        assert (response.status, response.body) == (200, b"0123456789")


def test_query_is_part_of_the_key_rfc9111_s2(proxy: Proxy, origin: Origin, path: str) -> None:
    origin.script(path, {"headers": [FRESH], "echo": True})
    first = proxy.get(f"{path}?x=1")
    second = proxy.get(f"{path}?x=2")
    assert b"x=1" in first.body
    assert b"x=2" in second.body
    assert proxy.get(f"{path}?x=1").header("X-Cache-Status") == "HIT"
    assert origin.count(path) == 2
