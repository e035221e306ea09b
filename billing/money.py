"""Money as integer micro-units: the one rounding rule, parsing and formatting.

Every amount is an ``int`` of micro-units (``amount_micros``): 1 unit of any currency (1 USD,
1 EUR, 1 JPY) = 1,000,000 micros, whatever the currency's minor unit. Intermediate values are
exact ``fractions.Fraction``; nothing is ever a float.

The rounding rule (applied ONCE per statement line, never to partial sums): the exact amount is
rounded to the nearest micro, ties to even (banker's rounding, IEEE 754 roundTiesToEven), so
``Fraction(1, 2)`` micro rounds to 0 and ``Fraction(3, 2)`` to 2. Negative amounts (adjustments)
round symmetrically.

Config amounts are decimal strings (``"1.25"``, ``"0.000001"``): at most 6 decimals, never
rounded silently; anything else raises ``MoneyFormatError`` naming the value.
"""

from __future__ import annotations

import re
from fractions import Fraction

from provenance.errors import FormatError

MICROS_PER_UNIT = 1_000_000
BASIS_POINTS = 10_000  # 1 bp = 1/10,000
_AMOUNT = re.compile(r"(-?)([0-9]{1,15})(?:\.([0-9]{1,6}))?")
_CURRENCY = re.compile(r"[A-Z]{3}")


class MoneyFormatError(FormatError):
    """A money amount, rate or currency code in config or input is malformed."""


def round_to_micros(exact_micros: Fraction | int) -> int:
    """THE rounding rule: nearest integer micro, ties to even. Applied once per statement line."""
    return round(Fraction(exact_micros))


def parse_micros(text: str) -> int:
    """``"1.25"`` -> 1_250_000. At most 6 decimals and 15 integer digits; never rounds."""
    if not isinstance(text, str):
        raise MoneyFormatError(f"an amount must be a decimal string like '1.25', got {text!r:.40}")
    match = _AMOUNT.fullmatch(text.strip())
    if match is None:
        raise MoneyFormatError(
            f"not an amount with at most 6 decimals (e.g. '0.08', '1.25'): {text!r:.40}"
        )
    sign, whole, frac = match.groups()
    micros = int(whole) * MICROS_PER_UNIT + int((frac or "").ljust(6, "0"))
    return -micros if sign else micros


def parse_fraction(text: str, *, what: str = "value") -> Fraction:
    """An exact non-negative decimal (``"0.15"``, ``"1.2"``) as a Fraction; no floats, no
    exponents, at most 9 decimals."""
    if not isinstance(text, str) or not re.fullmatch(r"[0-9]{1,12}(\.[0-9]{1,9})?", text.strip()):
        raise MoneyFormatError(f"{what} must be a decimal string like '0.15': {text!r:.40}")
    return Fraction(text.strip())


def format_micros(amount_micros: int) -> str:
    """1_250_000 -> ``"1.250000"``: always 6 decimals, so the text is exact and sorts sanely."""
    if type(amount_micros) is not int:
        raise TypeError("format_micros() takes an int of micros")
    sign = "-" if amount_micros < 0 else ""
    whole, frac = divmod(abs(amount_micros), MICROS_PER_UNIT)
    return f"{sign}{whole}.{frac:06d}"


def parse_currency(text: str) -> str:
    """An ISO 4217-shaped code: three upper-case letters (``USD``)."""
    if not isinstance(text, str) or _CURRENCY.fullmatch(text) is None:
        raise MoneyFormatError(f"currency must be three upper-case letters: {text!r:.20}")
    return text


def apply_basis_points(amount: Fraction | int, bps: int) -> Fraction:
    """``amount * bps / 10,000`` exactly."""
    return Fraction(amount) * bps / BASIS_POINTS
