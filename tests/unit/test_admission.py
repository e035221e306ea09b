"""Admission and 304 refresh (proxy/cache/admission.py), RFC 9111 §3.1, §3.2, §4.2, §4.3.4;
RFC 9213 §2.1."""

from __future__ import annotations

from proxy.cache.admission import (
    is_freshened_by_head,
    is_refreshable_by,
    refresh_stored_response,
)
from proxy.cache.entry import StoredResponse
from proxy.http.fields import Headers, get_values
from tests.unit.cache_builders import POLICY, T0, http_date, stored_response


def names(headers: Headers) -> set[str]:
    return {name.lower() for name, _ in headers}


def head_lines(stored: StoredResponse) -> list[str]:
    return stored.head_bytes.decode("latin-1").split("\r\n")


# ---- storing (§3.1) ----


def test_age_and_content_length_not_stored_rfc9111_s3_1() -> None:
    stored = stored_response(
        [("Cache-Control", "max-age=60"), ("Age", "5"), ("Content-Length", "999")], body=b"abc"
    )
    assert "age" not in names(stored.headers)
    assert "content-length" not in names(stored.headers)
    assert "Content-Length: 3" in head_lines(stored)
    assert not any(line.startswith("Age:") for line in head_lines(stored))


def test_set_cookie_never_stored_rfc9111_s3_1() -> None:
    stored = stored_response([("Cache-Control", "max-age=60"), ("Set-Cookie", "sid=1")])
    assert "set-cookie" not in names(stored.headers)
    assert b"sid=1" not in stored.head_bytes


def test_qualified_private_fields_not_stored_rfc9111_s5_2_2_7() -> None:
    stored = stored_response(
        [("Cache-Control", 'private="X-User", max-age=60'), ("X-User", "alice"), ("X-Ok", "1")]
    )
    assert "x-user" not in names(stored.headers)
    assert "x-ok" in names(stored.headers)
    assert b"alice" not in stored.head_bytes


def test_qualified_no_cache_fields_not_stored_rfc9111_s5_2_2_4() -> None:
    stored = stored_response(
        [("Cache-Control", 'no-cache="X-Secret", max-age=60'), ("X-Secret", "s3cret")]
    )
    assert "x-secret" not in names(stored.headers)
    assert stored.no_cache_fields == ("x-secret",)


def test_via_appended_rfc9110_s7_6_3() -> None:
    stored = stored_response([("Cache-Control", "max-age=60"), ("Via", "1.1 origin-lb")])
    assert "Via: 1.1 origin-lb, 1.1 cachet" in head_lines(stored)


def test_validators_and_date_recorded_rfc9111_s4_3_1() -> None:
    stored = stored_response(
        [
            ("Cache-Control", "max-age=60"),
            ("ETag", '"v1"'),
            ("Last-Modified", http_date(T0 - 3600)),
        ]
    )
    assert stored.etag == '"v1"'
    assert stored.last_modified == T0 - 3600
    assert stored.date_value == T0


def test_cdn_cache_control_sets_lifetime_rfc9213_s2_1() -> None:
    stored = stored_response([("Cache-Control", "no-cache"), ("CDN-Cache-Control", "max-age=300")])
    assert stored.freshness_lifetime_s == 300
    assert not stored.directives.has("no-cache")


def test_invalid_cdn_cache_control_falls_back_rfc9213_s2_1() -> None:
    stored = stored_response([("Cache-Control", "max-age=60"), ("CDN-Cache-Control", "max-age=")])
    assert stored.freshness_lifetime_s == 60


def test_vary_key_taken_from_the_request_rfc9111_s4_1() -> None:
    stored = stored_response(
        [("Cache-Control", "max-age=60"), ("Vary", "Accept-Encoding, Accept-Language")],
        request_headers=[("Accept-Encoding", "gzip")],
    )
    assert stored.vary == (("accept-encoding", "gzip"), ("accept-language", None))


# ---- refreshing after a 304 (§4.3.4, §3.2) ----

ORIGINAL = [
    ("Cache-Control", "max-age=60"),
    ("ETag", '"v1"'),
    ("Content-Type", "text/plain"),
    ("X-Version", "1"),
]


def original() -> StoredResponse:
    return stored_response(ORIGINAL, body=b"hello")


def refresh(update: Headers, at: float = T0 + 100) -> StoredResponse:
    return refresh_stored_response(original(), update, at, at, POLICY)


def test_304_fields_replace_stored_ones_rfc9111_s3_2() -> None:
    refreshed = refresh(
        [("Date", http_date(T0 + 100)), ("Cache-Control", "max-age=600"), ("X-Version", "2")]
    )
    assert get_values(refreshed.headers, "x-version") == ["2"]
    assert get_values(refreshed.headers, "cache-control") == ["max-age=600"]
    assert get_values(refreshed.headers, "content-type") == ["text/plain"]
    assert refreshed.body == b"hello"
    assert refreshed.status == 200


def test_304_never_updates_content_length_rfc9111_s3_2() -> None:
    refreshed = refresh([("Date", http_date(T0 + 100)), ("Content-Length", "0")])
    lengths = [line for line in head_lines(refreshed) if line.lower().startswith("content-length")]
    assert lengths == ["Content-Length: 5"]


def test_freshness_recomputed_from_the_304_rfc9111_s4_3_4() -> None:
    refreshed = refresh([("Date", http_date(T0 + 100)), ("Cache-Control", "max-age=600")])
    assert refreshed.freshness_lifetime_s == 600
    assert refreshed.current_age(T0 + 100) == 0
    assert refreshed.ttl(T0 + 150) == 550


def test_304_without_date_makes_the_entry_fresh_again_rfc9111_s4_3_4() -> None:
    """RFC 9110 §6.6.1: a recipient supplies a Date for a response without one, so the
    refreshed entry's age starts at the 304, not at the old Date."""
    refreshed = refresh([("ETag", '"v1"')])
    assert refreshed.date_value == T0 + 100
    assert refreshed.current_age(T0 + 100) == 0
    assert refreshed.ttl(T0 + 110) == 50


def test_304_age_counts_rfc9111_s4_2_3() -> None:
    refreshed = refresh([("Date", http_date(T0 + 100)), ("Age", "20")])
    assert refreshed.current_age(T0 + 100) == 20
    assert "age" not in names(refreshed.headers)


def test_304_set_cookie_and_private_fields_not_stored_rfc9111_s3_1() -> None:
    refreshed = refresh(
        [
            ("Date", http_date(T0 + 100)),
            ("Cache-Control", 'private="X-User", max-age=60'),
            ("Set-Cookie", "sid=2"),
            ("X-User", "bob"),
        ]
    )
    assert "set-cookie" not in names(refreshed.headers)
    assert "x-user" not in names(refreshed.headers)


def test_same_strong_etag_is_refreshable_rfc9111_s4_3_4() -> None:
    assert is_refreshable_by(original(), [("ETag", '"v1"')])


def test_etag_mismatch_not_refreshable_rfc9111_s4_3_4() -> None:
    """If none of the stored responses has the same strong validator, the cache MUST NOT use
    the new response to update any stored responses."""
    assert not is_refreshable_by(original(), [("ETag", '"v2"')])


def test_304_etag_but_stored_has_none_not_refreshable_rfc9111_s4_3_4() -> None:
    stored = stored_response([("Cache-Control", "max-age=60")])
    assert not is_refreshable_by(stored, [("ETag", '"v1"')])


def test_304_without_validator_refreshes_the_validated_response_rfc9111_s4_3_4() -> None:
    """admission.py's documented choice: the response we validated is the one to update."""
    assert is_refreshable_by(original(), [("Date", http_date(T0))])


def test_upstream_cache_status_preserved_rfc9211_s2() -> None:
    """Caches SHOULD preserve the existing Cache-Status value when adding their member; the
    hit path appends ours as a later field line, so the upstream member must stay stored."""
    stored = stored_response(
        [("Cache-Control", "max-age=60"), ("Cache-Status", "edge-a; fwd=uri-miss; stored")]
    )
    assert "Cache-Status: edge-a; fwd=uri-miss; stored" in head_lines(stored)


def test_upstream_x_cache_status_not_replayed() -> None:
    stored = stored_response([("Cache-Control", "max-age=60"), ("X-Cache-Status", "MISS")])
    assert "x-cache-status" not in names(stored.headers)


def test_expires_ignored_when_targeted_field_applies_rfc9213_s2_2() -> None:
    stored = stored_response([("CDN-Cache-Control", "public"), ("Expires", http_date(T0 + 600))])
    assert stored.freshness_lifetime_s == 0


def test_expires_used_when_targeted_field_invalid_rfc9213_s2_2() -> None:
    stored = stored_response([("CDN-Cache-Control", "public="), ("Expires", http_date(T0 + 600))])
    assert stored.freshness_lifetime_s == 600


# ---- freshening with HEAD (§4.3.5) ----


def test_head_with_the_same_validators_and_length_updates_rfc9111_s4_3_5() -> None:
    stored = stored_response([("ETag", '"v1"'), ("Last-Modified", http_date(T0 - 60))], body=b"abc")
    head = [("ETag", '"v1"'), ("Last-Modified", http_date(T0 - 60)), ("Content-Length", "3")]
    assert is_freshened_by_head(stored, head, 3)


def test_head_without_validators_or_length_updates_rfc9111_s4_3_5() -> None:
    """Only the validators it received are compared; with none, nothing says it changed."""
    assert is_freshened_by_head(original(), [("Cache-Control", "max-age=1000")], 5)


def test_head_with_another_etag_makes_it_stale_rfc9111_s4_3_5() -> None:
    assert not is_freshened_by_head(original(), [("ETag", '"v2"')], 5)


def test_head_with_an_etag_the_stored_response_lacks_makes_it_stale_rfc9111_s4_3_5() -> None:
    stored = stored_response([("Cache-Control", "max-age=60")])
    assert not is_freshened_by_head(stored, [("ETag", '"v1"')], len(stored.body))


def test_head_with_another_last_modified_makes_it_stale_rfc9111_s4_3_5() -> None:
    stored = stored_response([("Last-Modified", http_date(T0 - 60))])
    length = len(stored.body)
    assert not is_freshened_by_head(stored, [("Last-Modified", http_date(T0 - 30))], length)
    assert not is_freshened_by_head(stored, [("Last-Modified", "yesterday")], length)


def test_head_with_another_content_length_makes_it_stale_rfc9111_s4_3_5() -> None:
    stored = stored_response([("ETag", '"v1"')], body=b"abc")
    assert not is_freshened_by_head(stored, [("ETag", '"v1"'), ("Content-Length", "4")], 3)
    assert not is_freshened_by_head(stored, [("ETag", '"v1"'), ("Content-Length", "x")], 3)
