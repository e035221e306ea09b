"""May a stored response answer this request, and how? (RFC 9111 §4, §4.2.4, §5.2; RFC 5861;
RFC 8246)

Precedence, decided once and documented in docs/design/cache-policy.md: explicit must-revalidate,
proxy-revalidate and unqualified no-cache forbid every form of stale reuse. s-maxage implies
proxy-revalidate (§5.2.2.10), which stops a client's max-stale, but the origin's own explicit
stale-while-revalidate / stale-if-error still apply, since they are a narrower grant by the same
authority.
"""

from __future__ import annotations

import enum

from proxy.cache.entry import StoredResponse
from proxy.http.cache_control import INVALID, Directives


class Verdict(enum.Enum):
    FRESH = "fresh"
    STALE_ACCEPTED = "stale-accepted"  # the client's max-stale admits it (§5.2.1.2)
    STALE_WHILE_REVALIDATE = "stale-while-revalidate"  # RFC 5861 §3
    REVALIDATE = "revalidate"  # §4.3: a conditional request must go forward first


def forbids_stale(directives: Directives) -> bool:
    """§4.2.4: stale reuse is prohibited by must-revalidate, proxy-revalidate and no-cache."""
    return (
        directives.has("must-revalidate")
        or directives.has("proxy-revalidate")
        or directives.field_names("no-cache") == ()
    )


def _staleness_within(directive_value: int | None, staleness_s: float) -> bool:
    return (
        directive_value is not None
        and directive_value != INVALID
        and staleness_s <= directive_value
    )


def decide_reuse(
    stored: StoredResponse, request: Directives, request_pragma_no_cache: bool, now: float
) -> Verdict:
    response = stored.directives.values
    if "no-cache" in response and response["no-cache"] is None:
        return Verdict.REVALIDATE  # §5.2.2.4: unqualified no-cache
    ttl = stored.freshness_lifetime_s - stored.current_age(now)
    fresh = ttl > 0 and not stored.stale_marked
    if not request.values and not request_pragma_no_cache:  # the common request: no directives
        return Verdict.FRESH if fresh else _stale_verdict(stored, request, ttl)
    if request.has("no-cache") or (request_pragma_no_cache and not request.values):
        return Verdict.REVALIDATE  # §5.2.1.4, §5.4
    max_age = request.seconds("max-age")
    # RFC 8246 §2: while fresh, an immutable response answers a reload (max-age=0).
    reload_of_immutable = fresh and "immutable" in response
    if (
        max_age is not None
        and max_age != INVALID
        and stored.current_age(now) > max_age
        and not reload_of_immutable
    ):
        return Verdict.REVALIDATE  # §5.2.1.1
    min_fresh = request.seconds("min-fresh")
    if min_fresh is not None and min_fresh != INVALID and ttl < min_fresh:
        return Verdict.REVALIDATE  # §5.2.1.3
    if fresh:
        return Verdict.FRESH
    return _stale_verdict(stored, request, ttl)


def _stale_verdict(stored: StoredResponse, request: Directives, ttl: float) -> Verdict:
    response = stored.directives
    if forbids_stale(response):
        return Verdict.REVALIDATE
    staleness = -ttl
    if request.has("max-stale") and not response.has("s-maxage"):
        if request.get("max-stale") is None:
            return Verdict.STALE_ACCEPTED  # §5.2.1.2: no value means any staleness
        if _staleness_within(request.seconds("max-stale"), staleness):
            return Verdict.STALE_ACCEPTED
    if _staleness_within(response.seconds("stale-while-revalidate"), staleness):
        return Verdict.STALE_WHILE_REVALIDATE
    return Verdict.REVALIDATE


def may_serve_stale_on_error(
    stored: StoredResponse, request: Directives, now: float, default_s: int
) -> bool:
    """RFC 5861 §4 stale-if-error, from the response or the request, or the operator's default;
    never when the response forbids stale reuse (§4.2.4). s-maxage implies proxy-revalidate
    (§5.2.2.10), so with it only the origin's own stale-if-error applies (module docstring)."""
    if forbids_stale(stored.directives):
        return False
    staleness = max(0.0, -stored.ttl(now))
    if _staleness_within(stored.directives.seconds("stale-if-error"), staleness):
        return True
    if stored.directives.has("s-maxage") and staleness > 0:
        return False
    return _staleness_within(request.seconds("stale-if-error"), staleness) or (
        default_s > 0 and staleness <= default_s
    )
