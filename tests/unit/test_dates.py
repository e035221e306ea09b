"""HTTP dates (proxy/http/dates.py), RFC 9110 §5.6.7."""

from __future__ import annotations

import calendar
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.http.dates import format_http_date, parse_http_date

EXAMPLE_S = calendar.timegm((1994, 11, 6, 8, 49, 37))  # the instant RFC 9110 §5.6.7 uses


@pytest.mark.parametrize(
    "text",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850 format
        "Sun Nov  6 08:49:37 1994",  # ANSI C's asctime() format
    ],
)
def test_parses_the_three_examples_of_rfc9110_s5_6_7(text: str) -> None:
    assert parse_http_date(text) == EXAMPLE_S


def test_returns_float_posix_seconds_rfc9110_s5_6_7() -> None:
    result = parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT")
    assert result == 0.0
    assert isinstance(result, float)


@pytest.mark.parametrize(
    "text",
    [
        "  Sun, 06 Nov 1994 08:49:37 GMT\t",
        " Sunday, 06-Nov-94 08:49:37 GMT ",
        "\tSun Nov  6 08:49:37 1994 ",
        "Sun Nov 06 08:49:37 1994",  # asctime's day is ( 2DIGIT / ( SP DIGIT ) )
    ],
)
def test_whitespace_around_the_date_is_trimmed_rfc9110_s5_5(text: str) -> None:
    assert parse_http_date(text) == EXAMPLE_S


@pytest.mark.parametrize(
    "text",
    [
        "Sun,  06   Nov 1994\t08:49:37 GMT",
        "Thu, 18  Aug  2050 02:01:18 GMT",  # the HTTP cache tests' invalid-multiple-spaces Expires
        "Sun, 06 Nov 1994  08:49:37 GMT",
        "Sun,\t06 Nov 1994 08:49:37 GMT",
        "Sunday,  06-Nov-94  08:49:37 GMT",
        "Sun  Nov  6 08:49:37 1994",
        "Sun Nov   6 08:49:37 1994",
        "Sun Nov 6 08:49:37 1994",
    ],
)
def test_extra_or_missing_spaces_inside_make_the_date_invalid_rfc9111_s5_3(text: str) -> None:
    """RFC 9110 §5.6.7's grammar has single SPs; an Expires that breaks it is invalid and so
    "already expired" (RFC 9111 §5.3), never read as a far-future date."""
    assert parse_http_date(text) is None


def test_wrong_day_name_is_accepted_rfc9110_s5_6_7() -> None:
    assert parse_http_date("Mon, 06 Nov 1994 08:49:37 GMT") == EXAMPLE_S


@pytest.mark.parametrize(
    ("text", "year"),
    [
        ("Thursday, 01-Jan-70 00:00:00 GMT", 1970),
        ("Friday, 31-Dec-99 00:00:00 GMT", 1999),
        ("Saturday, 01-Jan-00 00:00:00 GMT", 2000),
        ("Monday, 01-Jan-69 00:00:00 GMT", 2069),
    ],
)
def test_rfc850_two_digit_year_pivot_rfc9110_s5_6_7(text: str, year: int) -> None:
    month = 12 if "Dec" in text else 1
    day = 31 if "Dec" in text else 1
    assert parse_http_date(text) == calendar.timegm((year, month, day, 0, 0, 0))


def test_leap_second_is_accepted_rfc9110_s5_6_7() -> None:
    assert parse_http_date("Sat, 31 Dec 2016 23:59:60 GMT") == calendar.timegm(
        (2017, 1, 1, 0, 0, 0)
    )


def test_leap_day_rfc9110_s5_6_7() -> None:
    assert parse_http_date("Thu, 29 Feb 2024 00:00:00 GMT") == calendar.timegm(
        (2024, 2, 29, 0, 0, 0)
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0",
        "-1",
        "1994-11-06T08:49:37Z",
        "Thu, 01 Jan 1970 00:00:00 PST",
        "Thu, 01 Jan 1970 00:00:00 UTC",
        "Thu, 01 Jan 1970 00:00:00 +0000",
        "Thu, 01 Jan 1970 00:00:00",
        "Thu, 01 Jan 1970 00:00:00 gmt",
        "thu, 01 jan 1970 00:00:00 GMT",
        "Xyz, 01 Jan 1970 00:00:00 GMT",
        "Thu, 01 Foo 1970 00:00:00 GMT",
        "Thu, 32 Jan 1970 00:00:00 GMT",
        "Thu, 00 Jan 1970 00:00:00 GMT",
        "Thu, 31 Apr 1970 00:00:00 GMT",
        "Thu, 29 Feb 2023 00:00:00 GMT",
        "Thu, 29 Feb 1900 00:00:00 GMT",
        "Thu, 01 Jan 1970 24:00:00 GMT",
        "Thu, 01 Jan 1970 00:60:00 GMT",
        "Thu, 01 Jan 1970 00:00:61 GMT",
        "Thu, 1 Jan 1970 00:00:00 GMT",
        "Thu, 01 Jan 70 00:00:00 GMT",
        "Thu, 01 Jan 1970 0:00:00 GMT",
        "Thu, ٠١ Jan 1970 00:00:00 GMT",
        "Thursday, 01-Jan-1970 00:00:00 GMT",
        "Thu Jan  1 00:00:00 1970 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT junk",
        "Sun, 06 Nov 1994 08:49:37 GMT" + " " * 100,
    ],
)
def test_invalid_dates_give_none_rfc9110_s5_6_7(text: str) -> None:
    assert parse_http_date(text) is None


def test_format_example_rfc9110_s5_6_7() -> None:
    assert format_http_date(EXAMPLE_S) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert format_http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert format_http_date(-1) == "Wed, 31 Dec 1969 23:59:59 GMT"


def test_format_drops_fractions_rfc9110_s5_6_7() -> None:
    assert format_http_date(EXAMPLE_S + 0.999) == "Sun, 06 Nov 1994 08:49:37 GMT"


def test_format_refuses_years_the_format_cannot_hold() -> None:
    with pytest.raises(ValueError, match="year"):
        format_http_date(253402300800)  # 10000-01-01


MIN_S = calendar.timegm((1, 1, 1, 0, 0, 0))
MAX_S = calendar.timegm((9999, 12, 31, 23, 59, 59))


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=MIN_S, max_value=MAX_S))
def test_format_then_parse_round_trips_rfc9110_s5_6_7(posix_s: int) -> None:
    assert parse_http_date(format_http_date(posix_s)) == posix_s


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=MIN_S, max_value=MAX_S))
def test_format_matches_the_c_library_rfc9110_s5_6_7(posix_s: int) -> None:
    t = time.gmtime(posix_s)
    expected = (
        f"{calendar.day_abbr[t.tm_wday]}, {t.tm_mday:02d} {calendar.month_abbr[t.tm_mon]} "
        f"{t.tm_year:04d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )
    assert format_http_date(posix_s) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=255), max_size=80))
def test_parse_never_raises_on_arbitrary_text(text: str) -> None:
    result = parse_http_date(text)
    assert result is None or isinstance(result, float)
