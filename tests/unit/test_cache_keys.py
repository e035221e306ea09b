"""Cache keys (proxy/cache/keys.py): RFC 9111 §2 primary key, §4.1 Vary secondary keys."""

from __future__ import annotations

import pytest

from proxy.cache.keys import (
    is_vary_match,
    normalise_host,
    normalised_request_value,
    primary_key,
    vary_key,
    vary_names,
)


def test_primary_key_is_target_uri_rfc9111_s2() -> None:
    assert primary_key("http", "Example.COM:80", "/a?b=1") == "http://example.com/a?b=1"
    assert primary_key("https", "example.com:443", "/") == "https://example.com/"


def test_non_default_port_kept_rfc9111_s2() -> None:
    assert primary_key("http", "example.com:8080", "/") == "http://example.com:8080/"
    assert normalise_host("example.com:443", "http") == "example.com:443"


def test_ipv6_host_without_port_kept_rfc3986_s6_2_3() -> None:
    assert normalise_host("[::80]", "http") == "[::80]"
    assert normalise_host("[::1]:80", "http") == "[::1]"


def test_query_distinguishes_keys_rfc9111_s2() -> None:
    assert primary_key("http", "h", "/a?x=1") != primary_key("http", "h", "/a?x=2")


def test_vary_names_case_insensitive_and_deduplicated_rfc9111_s4_1() -> None:
    headers = [("Vary", "Accept-Encoding, ACCEPT"), ("vary", "accept-encoding, User-Agent")]
    assert vary_names(headers) == ("accept-encoding", "accept", "user-agent")


def test_no_vary_means_empty_secondary_key_rfc9111_s4_1() -> None:
    assert vary_names([]) == ()
    assert vary_key((), [("Accept", "x")]) == ()
    assert is_vary_match((), [("Accept", "x")])


def test_same_key_whatever_the_case_of_vary_names_rfc9111_s4_1() -> None:
    request = [("accept-encoding", "gzip")]
    upper = vary_key(vary_names([("Vary", "Accept-Encoding")]), request)
    lower = vary_key(vary_names([("vary", "accept-encoding")]), request)
    assert upper == lower == (("accept-encoding", "gzip"),)


def test_field_absent_in_both_requests_matches_rfc9111_s4_1() -> None:
    stored = vary_key(("accept-language",), [])
    assert stored == (("accept-language", None),)
    assert is_vary_match(stored, [("Accept", "text/html")])


def test_field_present_in_only_one_request_does_not_match_rfc9111_s4_1() -> None:
    stored = vary_key(("accept-language",), [])
    assert not is_vary_match(stored, [("Accept-Language", "en")])
    stored_en = vary_key(("accept-language",), [("Accept-Language", "en")])
    assert not is_vary_match(stored_en, [])


def test_different_value_does_not_match_rfc9111_s4_1() -> None:
    stored = vary_key(("accept-encoding",), [("Accept-Encoding", "gzip")])
    assert not is_vary_match(stored, [("Accept-Encoding", "br")])


@pytest.mark.parametrize(
    "request_headers",
    [
        [("Accept-Encoding", "gzip,br")],
        [("Accept-Encoding", "gzip ,  br")],
        [("Accept-Encoding", "gzip,\tbr")],
        [("Accept-Encoding", "gzip"), ("Accept-Encoding", "br")],
        [("ACCEPT-ENCODING", "gzip, br")],
    ],
)
def test_whitespace_and_line_splits_normalised_rfc9111_s4_1(
    request_headers: list[tuple[str, str]],
) -> None:
    """§4.1: differences that are semantically insignificant (list whitespace, combining
    field lines per RFC 9110 §5.3, field-name case) may be normalised away."""
    stored = vary_key(("accept-encoding",), [("Accept-Encoding", "gzip, br")])
    assert is_vary_match(stored, request_headers)


def test_order_of_list_members_is_significant_rfc9111_s4_1() -> None:
    stored = vary_key(("accept-encoding",), [("Accept-Encoding", "gzip, br")])
    assert not is_vary_match(stored, [("Accept-Encoding", "br, gzip")])


def test_every_selecting_field_must_match_rfc9111_s4_1() -> None:
    request = [("Accept", "text/html"), ("Accept-Language", "en")]
    stored = vary_key(("accept", "accept-language"), request)
    assert is_vary_match(stored, request)
    assert not is_vary_match(stored, [("Accept", "text/html"), ("Accept-Language", "fr")])


def test_normalised_value_absent_is_none_rfc9111_s4_1() -> None:
    assert normalised_request_value([], "accept") is None
    assert normalised_request_value([("Accept", " a ,b ")], "accept") == "a,b"
