"""Pure parts of the admin UI: scrypt hashes (RFC 7914), the login limiter, period refs, money
and chart rendering."""

from __future__ import annotations

from datetime import UTC, datetime
from xml.etree import ElementTree

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from admin.billing_view import format_period_ref, parse_period_ref
from admin.charts import Series, bar_chart, empty_chart, line_chart
from admin.pages import Page, format_micros
from admin.passwords import check_password_policy, hash_password, is_password_match
from admin.ratelimit import LoginLimiter
from billing.statements import DAY, HOUR, MONTH, Period

SALT = bytes(range(16))


def test_scrypt_hash_round_trip_rfc7914() -> None:
    stored = hash_password("correct horse battery", SALT, 10)
    assert stored.startswith("scrypt$10$8$1$" + SALT.hex() + "$")
    assert is_password_match("correct horse battery", stored)
    assert not is_password_match("correct horse batterz", stored)
    assert hash_password("correct horse battery", bytes(16), 10) != stored  # salted


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "scrypt$10$8$1$zz$00",
        "bcrypt$x",
        "scrypt$99$8$1$" + "00" * 16 + "$" + "00" * 32,
        "scrypt$10$8$1$" + "00" * 16 + "$" + "00" * 5,
    ],
)
def test_malformed_stored_hashes_match_nothing(stored: str) -> None:
    assert not is_password_match("anything at all", stored)


def test_password_policy_and_salt_size() -> None:
    with pytest.raises(ValueError, match=r"10\.\.1024"):
        check_password_policy("short")
    check_password_policy("long enough!")
    with pytest.raises(ValueError, match="salt"):
        hash_password("long enough!", b"x", 10)


def test_limiter_blocks_after_max_failures_and_frees_after_the_window() -> None:
    limiter = LoginLimiter(max_failures=3, window_s=60)
    keys = ("ip:1", "user:root")
    for t in range(3):
        assert limiter.retry_after_s(keys, t) == 0
        limiter.note_failure(keys, t)
    assert limiter.retry_after_s(keys, 10) == 50
    assert limiter.retry_after_s(("ip:2", "user:root"), 10) == 50  # the username is blocked
    assert limiter.retry_after_s(("ip:2", "user:other"), 10) == 0
    assert limiter.retry_after_s(keys, 60.5) == 0  # the first failure left the window


def test_limiter_success_clears_and_memory_is_bounded() -> None:
    limiter = LoginLimiter(max_failures=2, window_s=60, max_keys=10)
    limiter.note_failure(("a",), 0)
    limiter.note_success(("a",))
    limiter.note_failure(("a",), 1)
    assert limiter.retry_after_s(("a",), 2) == 0
    for i in range(100):
        limiter.note_failure((f"k{i}",), 3)
    assert len(limiter._failures) <= 10


@settings(max_examples=50, deadline=None)
@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
    st.sampled_from([HOUR, DAY, MONTH]),
)
def test_period_refs_round_trip(moment: datetime, kind: str) -> None:
    start = moment.replace(minute=0, second=0, microsecond=0, tzinfo=UTC)
    if kind != HOUR:
        start = start.replace(hour=0)
    if kind == MONTH:
        start = start.replace(day=1)
    period = Period(kind, start)
    assert parse_period_ref(format_period_ref(period)) == period


@pytest.mark.parametrize(
    "text",
    [
        "",
        "week-2026-11-26T00:00:00Z",
        "day-2026-11-26T05:00:00Z",
        "month-2026-11-02T00:00:00Z",
        "hour-2026-11-26T05:30:00Z",
        "day-yesterday",
    ],
)
def test_bad_period_refs_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_period_ref(text)


def test_money_is_formatted_from_integer_micros() -> None:
    assert format_micros(1_234_567, "USD") == "1.234567 USD"
    assert format_micros(-5) == "-0.000005"
    assert format_micros(12_000_000_000) == "12,000.000000"


def test_pages_clamp_and_slice() -> None:
    page = Page(2, 5, 12)
    assert (page.offset, page.count, page.has_prev, page.has_next) == (5, 3, True, True)
    assert list(page.slice(list(range(12)))) == [5, 6, 7, 8, 9]
    assert Page(1, 5, 0).count == 1


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 10**12), min_size=1, max_size=60), st.text(min_size=1, max_size=20))
def test_charts_are_well_formed_svg_with_escaped_text(values: list[int], name: str) -> None:
    labels = [f"<{i}&>" for i in range(len(values))]
    for chart in (
        bar_chart(name, labels, [Series(name, tuple(values))]),
        line_chart(name, labels, [Series(name, tuple(values))]),
        empty_chart(name, "no data yet"),
    ):
        root = ElementTree.fromstring(chart)
        assert root.tag.endswith("svg") and root.get("role") == "img"
        assert root.find("{http://www.w3.org/2000/svg}title") is not None


def test_an_empty_series_draws_the_empty_state() -> None:
    assert "no data yet" in bar_chart("x", [], [])
