"""Invalidation by unsafe methods (RFC 9111 §4.4)."""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from proxy.cache.keys import normalise_host, primary_key
from proxy.http.fields import Headers, get_values

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})  # RFC 9110 §9.2.1


def keys_to_invalidate(
    method: str, status: int, scheme: str, host: str, target: str, response_headers: Headers
) -> list[str]:
    """Primary keys to invalidate after an unsafe request with a non-error response: the target
    URI (§4.4 MUST), and the Location and Content-Location URIs when they share its origin (§4.4
    MAY; another origin's URIs are never touched, so one site can't purge another's)."""
    if method in SAFE_METHODS or not (200 <= status < 400):
        return []
    request_key = primary_key(scheme, host, target)
    keys = [request_key]
    origin = f"{scheme}://{normalise_host(host, scheme)}"
    for field in ("location", "content-location"):
        for value in get_values(response_headers, field)[:1]:
            absolute = urljoin(request_key, value.strip())
            parts = urlsplit(absolute)
            if parts.scheme != scheme or not parts.netloc:
                continue
            if f"{parts.scheme}://{normalise_host(parts.netloc, parts.scheme)}" != origin:
                continue
            target_part = parts.path or "/"
            if parts.query:
                target_part += "?" + parts.query
            key = primary_key(scheme, parts.netloc, target_part)
            if key not in keys:
                keys.append(key)
    return keys
