"""Money (issue 6 "Money in integer micro-units; one documented rounding rule applied once per
statement line"): exact parsing, ties-to-even rounding, no floats."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.money import (
    MoneyFormatError,
    apply_basis_points,
    format_micros,
    parse_currency,
    parse_fraction,
    parse_micros,
    round_to_micros,
)

micros = st.integers(min_value=-(10**15), max_value=10**15)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.25", 1_250_000),
        ("0.08", 80_000),
        ("0.000001", 1),
        ("12", 12_000_000),
        ("-0.5", -500_000),
    ],
)
def test_parse_micros_is_exact(text: str, expected: int) -> None:
    assert parse_micros(text) == expected


@pytest.mark.parametrize("text", ["1.2500001", "1e3", "", "1,25", "0x10", " . ", "NaN", "1.", ".5"])
def test_parse_micros_refuses_what_it_would_have_to_round_or_guess(text: str) -> None:
    with pytest.raises(MoneyFormatError):
        parse_micros(text)


def test_parse_micros_refuses_floats() -> None:
    with pytest.raises(MoneyFormatError):
        parse_micros(1.25)  # type: ignore[arg-type]


@given(micros)
@settings(max_examples=200, deadline=None)
def test_format_then_parse_round_trips(amount: int) -> None:
    assert parse_micros(format_micros(amount)) == amount


@pytest.mark.parametrize(
    ("exact", "expected"),
    [
        (Fraction(1, 2), 0),
        (Fraction(3, 2), 2),
        (Fraction(5, 2), 2),
        (Fraction(-1, 2), 0),
        (Fraction(-3, 2), -2),
        (Fraction(2, 3), 1),
        (Fraction(1, 3), 0),
    ],
)
def test_rounding_rule_is_half_even(exact: Fraction, expected: int) -> None:
    assert round_to_micros(exact) == expected


@given(st.fractions(max_denominator=10**6))
@settings(max_examples=200, deadline=None)
def test_rounding_is_off_by_at_most_half_a_micro(exact: Fraction) -> None:
    rounded = round_to_micros(exact)
    assert isinstance(rounded, int)
    assert abs(rounded - exact) <= Fraction(1, 2)


def test_fraction_and_currency_parsing() -> None:
    assert parse_fraction("0.15") == Fraction(15, 100)
    assert parse_currency("USD") == "USD"
    assert apply_basis_points(1_000_000, 2000) == 200_000
    for bad in ("usd", "US", "USDX"):
        with pytest.raises(MoneyFormatError):
            parse_currency(bad)
    for bad in ("1e-3", "-0.1", "inf", "0.1234567891"):
        with pytest.raises(MoneyFormatError):
            parse_fraction(bad)
