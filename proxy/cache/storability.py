"""May a shared cache store this response? (RFC 9111 §3, §3.5, §5.2; RFC 9213 §2.1)"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.cache.freshness import HEURISTICALLY_CACHEABLE, has_explicit_freshness
from proxy.http.cache_control import (
    Directives,
    parse_cache_control,
    parse_targeted_cache_control,
)
from proxy.http.fields import Headers, get_values, split_list, without_fields

# RFC 9111 §5.2.2.3 must-understand: status codes whose caching requirements this cache
# implements. 206 is absent until partial content is stored; 304 is never stored.
UNDERSTOOD_STATUS = frozenset(
    {200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 421, 451, 501}
)
CACHEABLE_METHODS = frozenset({"GET"})


@dataclass(frozen=True, slots=True)
class StoragePolicy:
    store_set_cookie: bool = False
    targeted_fields: tuple[str, ...] = ("cdn-cache-control",)  # lowercase, priority order


def targeted_directives(headers: Headers, targeted_fields: tuple[str, ...]) -> Directives | None:
    """RFC 9213 §2.2: the first targeted field that is present and valid, else None (an invalid
    targeted field is ignored as if absent, §2.1)."""
    for name in targeted_fields:
        values = get_values(headers, name)
        if values:
            parsed = parse_targeted_cache_control(values)
            if parsed is not None:
                return parsed
    return None


def effective_directives(headers: Headers, targeted_fields: tuple[str, ...]) -> Directives:
    """RFC 9213 §2.2: a valid targeted field replaces Cache-Control for this cache."""
    targeted = targeted_directives(headers, targeted_fields)
    if targeted is not None:
        return targeted
    return parse_cache_control(get_values(headers, "cache-control"))


def expiry_headers(headers: Headers, targeted_fields: tuple[str, ...]) -> Headers:
    """The fields freshness may read: RFC 9213 §2.2 says a cache using a targeted field MUST
    ignore Expires as well as Cache-Control in that response."""
    if targeted_directives(headers, targeted_fields) is None:
        return headers
    return without_fields(headers, {"expires"})


def reason_not_storable(
    method: str,
    request_headers: Headers,
    request_directives: Directives,
    status: int,
    response_headers: Headers,
    directives: Directives,
    policy: StoragePolicy,
) -> str | None:
    """None when the response may be stored, else a short reason (used in Cache-Status detail,
    logs and metrics)."""
    if method not in CACHEABLE_METHODS:
        return "method"
    if status < 200 or status in (206, 304):
        return "status"
    if request_directives.has("no-store"):
        return "request-no-store"  # §5.2.1.5
    if directives.has("must-understand"):
        if status not in UNDERSTOOD_STATUS:
            return "must-understand"  # §5.2.2.3
    elif directives.has("no-store"):
        return "no-store"  # §5.2.2.5
    if directives.field_names("private") == ():
        return "private"  # §5.2.2.7: unqualified private forbids a shared cache
    if get_values(request_headers, "authorization") and not (
        directives.has("must-revalidate") or directives.has("public") or directives.has("s-maxage")
    ):
        return "authorization"  # §3.5
    if "*" in split_list(get_values(response_headers, "vary")):
        return "vary-star"  # §4.1: "Vary: *" can never be matched
    if get_values(response_headers, "set-cookie") and not policy.store_set_cookie:
        return "set-cookie"
    if not (
        has_explicit_freshness(expiry_headers(response_headers, policy.targeted_fields), directives)
        or directives.has("public")
        or status in HEURISTICALLY_CACHEABLE
    ):
        return "no-freshness"
    return None


def fields_not_to_store(directives: Directives) -> frozenset[str]:
    """Fields a shared cache keeps out of storage: those named by qualified private (§5.2.2.7),
    those named by qualified no-cache (§5.2.2.4: never sent without revalidation, so the
    simplest faithful reading is not to keep them), and Set-Cookie, which is never replayed."""
    names = {"set-cookie", "set-cookie2"}
    for directive in ("private", "no-cache"):
        listed = directives.field_names(directive)
        if listed:
            names.update(listed)
    return frozenset(names)
