"""HTTP dates (RFC 9110 §5.6.7): parse all three formats, generate IMF-fixdate.

Accepted inputs (after trimming SP/HTAB at both ends, as field values are trimmed,
RFC 9110 §5.5), with exactly the single spaces the grammar has between components:

- IMF-fixdate ``Sun, 06 Nov 1994 08:49:37 GMT`` (the only format we generate);
- obsolete RFC 850 ``Sunday, 06-Nov-94 08:49:37 GMT``;
- obsolete asctime ``Sun Nov  6 08:49:37 1994`` (day as one or two digits).

Decisions, each for a reason:

- The day name must be one of the names the grammar allows for that format, but it is not
  checked against the date: a wrong weekday is the sender's typo, not a different instant.
- Names, "GMT" and separators are case-sensitive as the ABNF says (``%s"GMT"``); any other
  zone ("UTC", "PST", "+0000") makes the date invalid.
- RFC 850's two-digit year: §5.6.7 asks to read a year more than 50 years in the future as
  the most recent past year with those digits. We have no clock here, so the rule is fixed
  relative to the POSIX epoch: 70-99 mean 1970-1999 and 00-69 mean 2000-2069. This agrees
  with the clock-based rule for any "now" in 2020-2069 for every year a real sender emits.
- Second 60 (a leap second, allowed by §5.6.7) is accepted and counts as the next second.
- Runs of spaces or tabs inside the date are not read as one space. §5.6.7 encourages
  robust parsing, but RFC 9111 §5.3 makes an invalid Expires mean "already expired": a
  lenient reading turns a malformed Expires into a far-future one, and the cache then
  serves the response for years. The HTTP cache tests (freshness-expires-invalid-multiple-
  spaces) require this, and nginx agrees. asctime's space-padded day (``Nov  6``) is
  grammar, not a run of spaces, and stays valid.
- Anything else (bad month, day 31 of a 30-day month, hour 24, non-ASCII digits) gives None.
  :func:`parse_http_date` never raises.
"""

from __future__ import annotations

import re

__all__ = ["format_http_date", "parse_http_date"]

_SHORT_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_LONG_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBER = {name: index + 1 for index, name in enumerate(_MONTHS)}
_SECONDS_PER_DAY = 86_400
_MAX_TEXT = 64  # the longest valid date (RFC 850, "Wednesday") is 38 characters

_SHORT = "|".join(_SHORT_DAYS)
_LONG = "|".join(_LONG_DAYS)
_MON = "|".join(_MONTHS)
_TIME = r"(?P<hour>\d\d):(?P<minute>\d\d):(?P<second>\d\d)"
_IMF_FIXDATE = re.compile(
    rf"(?:{_SHORT}), (?P<day>\d\d) (?P<month>{_MON}) (?P<year>\d{{4}}) {_TIME} GMT", re.ASCII
)
_RFC850 = re.compile(
    rf"(?:{_LONG}), (?P<day>\d\d)-(?P<month>{_MON})-(?P<year>\d\d) {_TIME} GMT", re.ASCII
)
_ASCTIME = re.compile(  # date1 = month SP ( 2DIGIT / ( SP DIGIT ) )
    rf"(?:{_SHORT}) (?P<month>{_MON}) (?: (?P<day>\d)|(?P<day2>\d\d)) {_TIME} (?P<year>\d{{4}})",
    re.ASCII,
)


def parse_http_date(value: str) -> float | None:
    """POSIX seconds (UTC) for an HTTP-date in any of the three formats, or None if invalid."""
    if len(value) > _MAX_TEXT:
        return None
    text = value.strip(" \t")
    for pattern in (_IMF_FIXDATE, _RFC850, _ASCTIME):
        match = pattern.fullmatch(text)
        if match is not None:
            return _seconds_from_fields(match, two_digit_year=pattern is _RFC850)
    return None


def format_http_date(posix_s: float) -> str:
    """IMF-fixdate for a POSIX time, e.g. ``Sun, 06 Nov 1994 08:49:37 GMT`` (§5.6.7).

    Fractions of a second are dropped (floor). Raises ValueError if the year falls outside
    0000-9999, which the format cannot express.
    """
    whole_s = int(posix_s // 1)
    days, second_of_day = divmod(whole_s, _SECONDS_PER_DAY)
    year, month, day = _civil_from_days(days)
    if not 0 <= year <= 9999:
        raise ValueError(f"year {year} cannot be written as an HTTP-date")
    hour, rest = divmod(second_of_day, 3600)
    minute, second = divmod(rest, 60)
    weekday = _SHORT_DAYS[(days + 3) % 7]  # 1970-01-01 was a Thursday
    return (
        f"{weekday}, {day:02d} {_MONTHS[month - 1]} {year:04d} "
        f"{hour:02d}:{minute:02d}:{second:02d} GMT"
    )


def _seconds_from_fields(match: re.Match[str], *, two_digit_year: bool) -> float | None:
    year = int(match["year"])
    if two_digit_year:
        year += 1900 if year >= 70 else 2000
    month = _MONTH_NUMBER[match["month"]]
    day = int(match["day"] or match["day2"])
    hour, minute, second = int(match["hour"]), int(match["minute"]), int(match["second"])
    if not 1 <= day <= _days_in_month(year, month):
        return None
    if hour > 23 or minute > 59 or second > 60:
        return None
    days = _days_from_civil(year, month, day)
    return float(days * _SECONDS_PER_DAY + hour * 3600 + minute * 60 + second)


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if _is_leap(year) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar (no datetime range limits)."""
    shifted_year = year - 1 if month <= 2 else year  # years start in March: leap day last
    era, year_of_era = divmod(shifted_year, 400)
    day_of_year = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """Inverse of :func:`_days_from_civil`: (year, month, day)."""
    era, day_of_era = divmod(days + 719_468, 146_097)
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = shifted_month + 3 if shifted_month < 10 else shifted_month - 9
    year = era * 400 + year_of_era + (1 if month <= 2 else 0)
    return year, month, day
