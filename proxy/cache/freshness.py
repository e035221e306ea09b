"""Freshness and age (RFC 9111 §4.2), from the point of view of a shared cache."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.http.cache_control import INVALID, Directives
from proxy.http.dates import parse_http_date
from proxy.http.fields import Headers, get_values

HEURISTIC_FRACTION = 0.1  # RFC 9111 §4.2.2: "10% of the time since last modification"
DELTA_SECONDS_MAX = 2**31  # RFC 9111 §1.2.2

# RFC 9110 §15.1 / RFC 9111 §4.2.2: status codes defined as heuristically cacheable.
HEURISTICALLY_CACHEABLE = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})


@dataclass(frozen=True, slots=True)
class HeuristicPolicy:
    fraction: float = HEURISTIC_FRACTION
    max_s: int = 86_400


def parse_age(headers: Headers) -> int:
    """RFC 9111 §5.1: the first Age line's delta-seconds; an invalid value is ignored (0), an
    overflowing one clamps to 2**31 (§1.2.2)."""
    values = get_values(headers, "age")
    if not values:
        return 0
    first = values[0].split(",", 1)[0].strip()
    if not first.isascii() or not first.isdigit():
        return 0
    return min(int(first), DELTA_SECONDS_MAX)


def date_value(headers: Headers, response_time: float) -> float:
    """The origin's Date, or the time the response was received when Date is absent or invalid
    (RFC 9110 §6.6.1 has the recipient supply one)."""
    values = get_values(headers, "date")
    if values:
        parsed = parse_http_date(values[0])
        if parsed is not None:
            return parsed
    return response_time


def corrected_initial_age(
    headers: Headers, request_time: float, response_time: float, date_s: float
) -> float:
    """RFC 9111 §4.2.3: max(apparent_age, age_value + response_delay)."""
    apparent_age = max(0.0, response_time - date_s)
    response_delay = max(0.0, response_time - request_time)
    return max(apparent_age, parse_age(headers) + response_delay)


def freshness_lifetime(
    status: int,
    headers: Headers,
    directives: Directives,
    date_s: float,
    heuristic: HeuristicPolicy,
) -> float:
    """RFC 9111 §4.2.1 for a shared cache: s-maxage, then max-age, then Expires - Date, then a
    heuristic (§4.2.2). An invalid directive argument or an invalid Expires means stale (0)."""
    for name in ("s-maxage", "max-age"):
        seconds = directives.seconds(name)
        if seconds is not None:
            return 0.0 if seconds == INVALID else float(seconds)
    expires_values = get_values(headers, "expires")
    if expires_values:
        expires = parse_http_date(expires_values[0])
        if expires is None:
            return 0.0  # §5.3: an invalid Expires (e.g. "0") represents a time in the past
        return max(0.0, expires - date_s)
    return heuristic_lifetime(status, headers, directives, date_s, heuristic)


def heuristic_lifetime(
    status: int,
    headers: Headers,
    directives: Directives,
    date_s: float,
    heuristic: HeuristicPolicy,
) -> float:
    """RFC 9111 §4.2.2: only for heuristically cacheable statuses or responses marked public, and
    only with a Last-Modified to reason from; a fraction of the time since modification."""
    if status not in HEURISTICALLY_CACHEABLE and not directives.has("public"):
        return 0.0
    modified_values = get_values(headers, "last-modified")
    if not modified_values:
        return 0.0
    last_modified = parse_http_date(modified_values[0])
    if last_modified is None or last_modified >= date_s:
        return 0.0
    return min(float(heuristic.max_s), (date_s - last_modified) * heuristic.fraction)


def has_explicit_freshness(headers: Headers, directives: Directives) -> bool:
    return (
        directives.has("s-maxage")
        or directives.has("max-age")
        or bool(get_values(headers, "expires"))
    )
