"""Human byte sizes for configuration: "256MiB", "10GiB", "1.5GB", "4096".

Both unit families are accepted, and they mean what their standards say:
IEC binary prefixes (KiB, MiB, GiB, TiB = powers of 1024) and SI decimal prefixes
(kB/KB, MB, GB, TB = powers of 1000). A bare number is bytes; "B" may be written.
Units are matched case-insensitively ("256mib" works). Bare "K", "M", "G" are refused
because tools disagree on them (nginx reads "m" as MiB, disk vendors as MB); the error says
which spellings to use. Fractions are allowed when the result is a whole number of bytes
("1.5GiB"), computed exactly with Decimal, never float. Pure: no I/O.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

__all__ = ["SizeError", "format_size", "parse_size_bytes"]


class SizeError(ValueError):
    """The text is not a size we understand. The message says why, in one line."""


_UNIT_BYTES: dict[str, int] = {
    "": 1,
    "b": 1,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
}
_AMBIGUOUS = {"k", "m", "g", "t"}
_SIZE = re.compile(r"\s*(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[A-Za-z]*)\s*")
_MAX_TEXT = 64
_IEC_FOR_FORMAT = (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))


def parse_size_bytes(text: str | int) -> int:
    """Return the number of bytes `text` denotes, or raise SizeError.

    An int is taken as bytes (TOML may hold a plain integer). Negative sizes are refused.
    """
    if isinstance(text, bool):
        raise SizeError(f"expected a size such as 256MiB, got {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise SizeError(f"size must not be negative, got {text}")
        return text
    if not isinstance(text, str):
        raise SizeError(f"expected a size such as 256MiB, got {text!r}")
    if len(text) > _MAX_TEXT:
        raise SizeError("size is too long to be a size")
    match = _SIZE.fullmatch(text)
    if match is None:
        raise SizeError(f"{text!r} is not a size; write a number and a unit, e.g. 256MiB or 1GB")
    unit = match["unit"].lower()
    if unit in _AMBIGUOUS:
        raise SizeError(
            f"{text!r}: unit {match['unit']!r} is ambiguous; "
            f"write {unit.upper()}iB (powers of 1024) or {unit.upper()}B (powers of 1000)"
        )
    multiplier = _UNIT_BYTES.get(unit)
    if multiplier is None:
        raise SizeError(
            f"{text!r}: unknown unit {match['unit']!r}; use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB"
        )
    return _whole_bytes(text, match["number"], multiplier)


def _whole_bytes(text: str, number: str, multiplier: int) -> int:
    try:
        exact = Decimal(number) * multiplier
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise SizeError(f"{text!r} is not a size") from exc
    if exact != exact.to_integral_value():
        raise SizeError(f"{text!r} is not a whole number of bytes")
    return int(exact)


def format_size(size_bytes: int) -> str:
    """Return the shortest exact IEC spelling of `size_bytes` ("256MiB"; "1000" if none fits).

    `parse_size_bytes(format_size(n)) == n` for every n >= 0.
    """
    if size_bytes < 0:
        raise ValueError(f"size must not be negative, got {size_bytes}")
    for unit, multiplier in _IEC_FOR_FORMAT:
        if size_bytes >= multiplier and size_bytes % multiplier == 0:
            return f"{size_bytes // multiplier}{unit}"
    return str(size_bytes)
