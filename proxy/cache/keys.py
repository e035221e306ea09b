"""Cache keys (RFC 9111 §2) and secondary keys from Vary (§4.1)."""

from __future__ import annotations

import re

from proxy.cache.entry import VaryKey
from proxy.http.fields import Headers, get_values, split_list

DEFAULT_PORTS = {"http": "80", "https": "443"}
_LIST_WHITESPACE = re.compile(r"[ \t]*,[ \t]*")


def normalise_host(host: str, scheme: str = "http") -> str:
    """Lowercase the host and drop the scheme's default port (RFC 3986 §6.2.2, §6.2.3)."""
    host = host.strip().lower()
    default = DEFAULT_PORTS.get(scheme)
    if default and host.endswith(":" + default) and not host.endswith("]"):
        host = host[: -len(default) - 1]
    return host


def primary_key(scheme: str, host: str, target: str) -> str:
    """The target URI (§2): scheme, authority and origin-form target."""
    return f"{scheme}://{normalise_host(host, scheme)}{target}"


def vary_names(response_headers: Headers) -> tuple[str, ...]:
    """Lowercase, de-duplicated field names listed in Vary, in their first order."""
    seen: dict[str, None] = {}
    for name in split_list(get_values(response_headers, "vary")):
        seen.setdefault(name.lower(), None)
    return tuple(seen)


def normalised_request_value(request_headers: Headers, name: str) -> str | None:
    """The combined field value (RFC 9110 §5.3) with whitespace around list commas removed:
    §4.1 allows normalising differences that are semantically insignificant."""
    values = get_values(request_headers, name)
    if not values:
        return None
    return _LIST_WHITESPACE.sub(",", ",".join(v.strip() for v in values))


def vary_key(names: tuple[str, ...], request_headers: Headers) -> VaryKey:
    return tuple((name, normalised_request_value(request_headers, name)) for name in names)


def is_vary_match(stored: VaryKey, request_headers: Headers) -> bool:
    """§4.1: every selecting field of the stored response matches the new request; a field absent
    from both requests matches."""
    return all(normalised_request_value(request_headers, name) == value for name, value in stored)
