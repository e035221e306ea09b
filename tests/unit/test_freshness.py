"""Freshness lifetime and age (proxy/cache/freshness.py), RFC 9111 §4.2 for a shared cache."""

from __future__ import annotations

import pytest

from proxy.cache.freshness import (
    DELTA_SECONDS_MAX,
    HeuristicPolicy,
    corrected_initial_age,
    date_value,
    freshness_lifetime,
    heuristic_lifetime,
    parse_age,
)
from proxy.http.cache_control import parse_cache_control
from proxy.http.fields import Headers
from tests.unit.cache_builders import T0, http_date, stored_response

DAY_S = 86_400
HEURISTIC = HeuristicPolicy()


def lifetime(headers: Headers, status: int = 200, date_s: float = T0) -> float:
    directives = parse_cache_control(v for n, v in headers if n.lower() == "cache-control")
    return freshness_lifetime(status, headers, directives, date_s, HEURISTIC)


# ---- §4.2.1 calculating freshness lifetime ----


def test_s_maxage_beats_max_age_and_expires_rfc9111_s4_2_1() -> None:
    headers = [
        ("Cache-Control", "max-age=60, s-maxage=600"),
        ("Expires", http_date(T0 + 6000)),
        ("Last-Modified", http_date(T0 - 10 * DAY_S)),
    ]
    assert lifetime(headers) == 600


def test_max_age_beats_expires_rfc9111_s4_2_1() -> None:
    headers = [("Cache-Control", "max-age=60"), ("Expires", http_date(T0 + 6000))]
    assert lifetime(headers) == 60


def test_expires_minus_date_when_no_max_age_rfc9111_s4_2_1() -> None:
    headers = [("Expires", http_date(T0 + 300)), ("Last-Modified", http_date(T0 - DAY_S))]
    assert lifetime(headers) == 300


def test_explicit_expires_disables_heuristic_rfc9111_s4_2_2() -> None:
    """A cache MUST NOT use heuristics when an explicit expiration time is present."""
    headers = [("Expires", http_date(T0)), ("Last-Modified", http_date(T0 - 100 * DAY_S))]
    assert lifetime(headers) == 0


def test_heuristic_when_nothing_explicit_rfc9111_s4_2_1() -> None:
    headers = [("Last-Modified", http_date(T0 - 1000))]
    assert lifetime(headers) == pytest.approx(100)


@pytest.mark.parametrize("value", ["max-age=abc", "max-age=-5", "max-age", "max-age=1.5"])
def test_invalid_max_age_means_stale_rfc9111_s4_2_1(value: str) -> None:
    """§4.2.1: caches are encouraged to treat invalid freshness information as stale."""
    headers = [("Cache-Control", value), ("Expires", http_date(T0 + 600))]
    assert lifetime(headers) == 0


def test_invalid_s_maxage_means_stale_rfc9111_s4_2_1() -> None:
    assert lifetime([("Cache-Control", "s-maxage=x, max-age=600")]) == 0


@pytest.mark.parametrize("value", ["0", "-1", "tomorrow", "", "Thu, 18  Aug  2050 02:01:18 GMT"])
def test_invalid_expires_is_in_the_past_rfc9111_s5_3(value: str) -> None:
    headers = [("Expires", value), ("Last-Modified", http_date(T0 - 100 * DAY_S))]
    assert lifetime(headers) == 0


def test_past_expires_is_stale_rfc9111_s5_3() -> None:
    assert lifetime([("Expires", http_date(T0 - 60))]) == 0


def test_max_age_clamps_to_2_pow_31_rfc9111_s1_2_2() -> None:
    assert lifetime([("Cache-Control", "max-age=99999999999999")]) == DELTA_SECONDS_MAX


def test_quoted_max_age_is_accepted_rfc9111_s5_2() -> None:
    assert lifetime([("Cache-Control", 'max-age="60"')]) == 60


def test_first_of_repeated_directive_wins_rfc9111_s4_2_1() -> None:
    assert lifetime([("Cache-Control", "max-age=10"), ("Cache-Control", "max-age=99")]) == 10


# ---- §4.2.2 heuristic freshness ----


def test_heuristic_is_ten_percent_of_date_minus_last_modified_rfc9111_s4_2_2() -> None:
    headers = [("Last-Modified", http_date(T0 - 5000))]
    directives = parse_cache_control([])
    assert heuristic_lifetime(200, headers, directives, T0, HEURISTIC) == pytest.approx(500)


def test_heuristic_is_capped_rfc9111_s4_2_2() -> None:
    headers = [("Last-Modified", http_date(T0 - 365 * DAY_S))]
    directives = parse_cache_control([])
    assert heuristic_lifetime(200, headers, directives, T0, HEURISTIC) == DAY_S
    small = HeuristicPolicy(max_s=30)
    assert heuristic_lifetime(200, headers, directives, T0, small) == 30


@pytest.mark.parametrize("status", [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501])
def test_heuristic_for_heuristically_cacheable_status_rfc9111_s4_2_2(status: int) -> None:
    assert lifetime([("Last-Modified", http_date(T0 - 1000))], status=status) > 0


@pytest.mark.parametrize("status", [302, 303, 307, 403, 500, 503])
def test_no_heuristic_for_other_status_rfc9111_s4_2_2(status: int) -> None:
    assert lifetime([("Last-Modified", http_date(T0 - 1000))], status=status) == 0


def test_heuristic_for_other_status_when_public_rfc9111_s4_2_2() -> None:
    headers = [("Cache-Control", "public"), ("Last-Modified", http_date(T0 - 1000))]
    assert lifetime(headers, status=302) == pytest.approx(100)


def test_no_heuristic_without_last_modified_rfc9111_s4_2_2() -> None:
    assert lifetime([]) == 0


@pytest.mark.parametrize("offset_s", [0, 60])
def test_no_heuristic_when_last_modified_not_before_date_rfc9111_s4_2_2(offset_s: int) -> None:
    assert lifetime([("Last-Modified", http_date(T0 + offset_s))]) == 0


def test_no_heuristic_with_invalid_last_modified_rfc9111_s4_2_2() -> None:
    assert lifetime([("Last-Modified", "yesterday")]) == 0


# ---- §4.2.3 calculating age ----


def test_parse_age_rfc9111_s5_1() -> None:
    assert parse_age([("Age", "42")]) == 42
    assert parse_age([]) == 0
    assert parse_age([("Age", "99999999999999")]) == DELTA_SECONDS_MAX


@pytest.mark.parametrize("value", ["-3", "abc", "1.5", "", "٣"])
def test_invalid_age_is_ignored_rfc9111_s5_1(value: str) -> None:
    assert parse_age([("Age", value)]) == 0


def test_age_uses_upstream_age_plus_response_delay_rfc9111_s4_2_3() -> None:
    """corrected_age_value = age_value + response_delay, and it beats apparent_age."""
    headers = [("Age", "100")]
    assert corrected_initial_age(headers, T0 - 2, T0, T0) == 102


def test_apparent_age_when_larger_rfc9111_s4_2_3() -> None:
    """apparent_age = max(0, response_time - date_value)."""
    assert corrected_initial_age([("Age", "5")], T0, T0, T0 - 30) == 30


def test_apparent_age_never_negative_rfc9111_s4_2_3() -> None:
    """A Date ahead of our clock gives apparent_age 0, not a negative age."""
    assert corrected_initial_age([], T0, T0, T0 + 300) == 0


def test_invalid_age_ignored_in_corrected_age_rfc9111_s4_2_3() -> None:
    assert corrected_initial_age([("Age", "bogus")], T0 - 1, T0, T0) == 1


def test_date_absent_uses_response_time_rfc9110_s6_6_1() -> None:
    assert date_value([], T0 + 7) == T0 + 7
    assert date_value([("Date", "garbage")], T0 + 7) == T0 + 7
    assert date_value([("Date", http_date(T0))], T0 + 7) == T0


def test_current_age_adds_resident_time_rfc9111_s4_2_3() -> None:
    stored = stored_response([("Cache-Control", "max-age=600"), ("Age", "10")])
    assert stored.corrected_initial_age_s == 10
    assert stored.current_age(T0 + 50) == 60
    assert stored.ttl(T0 + 50) == 540


def test_stored_without_date_gets_one_and_age_from_response_delay_rfc9111_s4_2_3() -> None:
    stored = stored_response(
        [("Cache-Control", "max-age=60")], date=None, request_time=T0 - 3, response_time=T0
    )
    assert ("Date", http_date(T0)) in stored.headers
    assert stored.corrected_initial_age_s == 3
    assert stored.freshness_lifetime_s == 60


def test_expires_relative_to_date_not_our_clock_rfc9111_s4_2_1() -> None:
    """Expires - Date: an origin clock ahead of ours doesn't lengthen the lifetime."""
    stored = stored_response([("Expires", http_date(T0 + 400))], date=T0 + 100, response_time=T0)
    assert stored.freshness_lifetime_s == 300
