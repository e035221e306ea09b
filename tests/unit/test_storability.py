"""May a shared cache store this response? (proxy/cache/storability.py), RFC 9111 §3, §3.5,
§4.1, §5.2; RFC 9213 §2.1."""

from __future__ import annotations

import pytest

from proxy.cache.storability import (
    StoragePolicy,
    effective_directives,
    fields_not_to_store,
    reason_not_storable,
)
from proxy.http.cache_control import parse_cache_control
from proxy.http.fields import Headers

POLICY = StoragePolicy()
CDN = ("cdn-cache-control",)


def reason(
    response_headers: Headers,
    *,
    method: str = "GET",
    status: int = 200,
    request_headers: Headers | None = None,
    policy: StoragePolicy = POLICY,
) -> str | None:
    request_headers = request_headers or []
    request_cc = parse_cache_control(v for n, v in request_headers if n.lower() == "cache-control")
    directives = effective_directives(response_headers, policy.targeted_fields)
    return reason_not_storable(
        method, request_headers, request_cc, status, response_headers, directives, policy
    )


CACHEABLE = [("Cache-Control", "max-age=60")]


def test_plain_cacheable_response_is_storable_rfc9111_s3() -> None:
    assert reason(CACHEABLE) is None


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "get", "OPTIONS"])
def test_method_not_understood_as_cacheable_rfc9111_s3(method: str) -> None:
    assert reason(CACHEABLE, method=method) == "method"


@pytest.mark.parametrize("status", [100, 101, 103, 206, 304])
def test_non_final_206_and_304_not_stored_rfc9111_s3(status: int) -> None:
    """§3: the status code is final; 206 and 304 need understanding this cache lacks."""
    assert reason(CACHEABLE, status=status) == "status"


def test_response_no_store_rfc9111_s5_2_2_5() -> None:
    assert reason([("Cache-Control", "no-store, max-age=60")]) == "no-store"


def test_request_no_store_rfc9111_s5_2_1_5() -> None:
    assert reason(CACHEABLE, request_headers=[("Cache-Control", "no-store")]) == "request-no-store"


def test_must_understand_with_understood_status_ignores_no_store_rfc9111_s5_2_2_3() -> None:
    headers = [("Cache-Control", "must-understand, no-store, max-age=60")]
    assert reason(headers, status=200) is None


def test_must_understand_with_unknown_status_not_stored_rfc9111_s5_2_2_3() -> None:
    headers = [("Cache-Control", "must-understand, no-store, max-age=60")]
    assert reason(headers, status=299) == "must-understand"
    assert reason(headers, status=599) == "must-understand"


def test_unqualified_private_not_stored_by_shared_cache_rfc9111_s5_2_2_7() -> None:
    assert reason([("Cache-Control", "private, max-age=60")]) == "private"


def test_qualified_private_is_storable_rfc9111_s5_2_2_7() -> None:
    """Qualified private only keeps the listed fields out of a shared cache."""
    assert reason([("Cache-Control", 'private="X-User", max-age=60')]) is None
    directives = parse_cache_control(['private="X-User, X-Token", max-age=60'])
    assert {"x-user", "x-token"} <= fields_not_to_store(directives)


AUTH = [("Authorization", "Bearer t")]


def test_authorization_without_permission_not_stored_rfc9111_s3_5() -> None:
    assert reason(CACHEABLE, request_headers=AUTH) == "authorization"


@pytest.mark.parametrize("cache_control", ["public", "s-maxage=60", "must-revalidate, max-age=60"])
def test_authorization_with_public_s_maxage_must_revalidate_rfc9111_s3_5(
    cache_control: str,
) -> None:
    assert reason([("Cache-Control", cache_control)], request_headers=AUTH) is None


def test_authorization_with_proxy_revalidate_alone_not_stored_rfc9111_s3_5() -> None:
    """§3.5 names must-revalidate, public and s-maxage only."""
    headers = [("Cache-Control", "proxy-revalidate, max-age=60")]
    assert reason(headers, request_headers=AUTH) == "authorization"


def test_vary_star_alone_rfc9111_s4_1() -> None:
    assert reason([*CACHEABLE, ("Vary", "*")]) == "vary-star"


def test_vary_star_among_other_names_rfc9111_s4_1() -> None:
    assert reason([*CACHEABLE, ("Vary", "Accept-Encoding, *")]) == "vary-star"
    assert reason([*CACHEABLE, ("Vary", "Accept"), ("Vary", "*")]) == "vary-star"


def test_vary_without_star_is_storable_rfc9111_s4_1() -> None:
    assert reason([*CACHEABLE, ("Vary", "Accept-Encoding")]) is None


def test_set_cookie_not_stored_by_default_policy() -> None:
    """Policy: a shared cache must not hand one client's cookie to another."""
    assert reason([*CACHEABLE, ("Set-Cookie", "sid=1")]) == "set-cookie"


def test_set_cookie_stored_when_policy_allows_rfc9111_s3_1() -> None:
    """Even then Set-Cookie itself is kept out of storage."""
    assert reason([*CACHEABLE, ("Set-Cookie", "sid=1")], policy=StoragePolicy(True)) is None
    assert "set-cookie" in fields_not_to_store(parse_cache_control(["max-age=60"]))


@pytest.mark.parametrize("status", [302, 303, 307, 500, 503])
def test_no_freshness_and_not_heuristically_cacheable_rfc9111_s3(status: int) -> None:
    assert reason([], status=status) == "no-freshness"


@pytest.mark.parametrize(
    "headers",
    [
        [("Cache-Control", "max-age=60")],
        [("Cache-Control", "s-maxage=60")],
        [("Expires", "Thu, 01 Jan 2099 00:00:00 GMT")],
        [("Cache-Control", "public")],
    ],
)
def test_explicit_freshness_or_public_makes_302_storable_rfc9111_s3(headers: Headers) -> None:
    assert reason(headers, status=302) is None


@pytest.mark.parametrize("status", [200, 301, 404, 410])
def test_heuristically_cacheable_status_storable_without_freshness_rfc9111_s3(
    status: int,
) -> None:
    assert reason([], status=status) is None


def test_no_cache_response_is_storable_rfc9111_s5_2_2_4() -> None:
    """no-cache forbids reuse without validation, not storage."""
    assert reason([("Cache-Control", "no-cache")]) is None


def test_qualified_no_cache_fields_not_stored_rfc9111_s5_2_2_4() -> None:
    directives = parse_cache_control(['no-cache="X-Secret", max-age=60'])
    assert "x-secret" in fields_not_to_store(directives)


# ---- RFC 9213 targeted fields ----


def test_cdn_cache_control_overrides_cache_control_rfc9213_s2_1() -> None:
    headers = [("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=60")]
    assert effective_directives(headers, CDN).seconds("max-age") == 60
    assert not effective_directives(headers, CDN).has("no-store")
    assert reason(headers) is None


def test_cdn_cache_control_no_store_beats_cache_control_rfc9213_s2_1() -> None:
    headers = [("Cache-Control", "max-age=600"), ("CDN-Cache-Control", "no-store")]
    assert reason(headers) == "no-store"


def test_invalid_cdn_cache_control_is_ignored_rfc9213_s2_1() -> None:
    headers = [("Cache-Control", "max-age=60"), ("CDN-Cache-Control", "max-age=60,, bad!")]
    directives = effective_directives(headers, CDN)
    assert directives.seconds("max-age") == 60
    assert reason(headers) is None


def test_cdn_cache_control_of_the_wrong_type_falls_back_to_cache_control_rfc9213_s2_1() -> None:
    """A String max-age breaks the type RFC 9213 §2.1 infers, so the targeted field is ignored
    and Cache-Control's no-store applies (cache tests: cdn-cc-invalid-sh-type-wrong)."""
    headers = [("CDN-Cache-Control", 'max-age="10000"'), ("Cache-Control", "no-store")]
    assert reason(headers) == "no-store"


def test_targeted_field_priority_order_rfc9213_s2_1() -> None:
    headers = [
        ("Cache-Control", "max-age=1"),
        ("CDN-Cache-Control", "max-age=2"),
        ("Cachet-Cache-Control", "max-age=3"),
    ]
    assert (
        effective_directives(headers, ("cachet-cache-control", "cdn-cache-control")).seconds(
            "max-age"
        )
        == 3
    )
    assert effective_directives(headers, ()).seconds("max-age") == 1


def test_expires_ignored_when_targeted_field_applies_rfc9213_s2_2() -> None:
    """A cache using a targeted field MUST ignore Cache-Control *and Expires* in that response,
    so Expires can't make a 302 storable."""
    headers = [
        ("CDN-Cache-Control", "must-revalidate"),
        ("Expires", "Thu, 01 Jan 2099 00:00:00 GMT"),
    ]
    assert reason(headers, status=302) == "no-freshness"
    assert reason([("Expires", "Thu, 01 Jan 2099 00:00:00 GMT")], status=302) is None
