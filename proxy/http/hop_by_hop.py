"""Hop-by-hop fields a proxy must not forward (RFC 9110 §7.6.1).

:data:`HOP_BY_HOP` holds the connection-specific fields §7.6.1 names (Connection itself,
Proxy-Connection, Keep-Alive, TE, Transfer-Encoding, Upgrade); these are removed even when
Connection does not list them. Every field Connection lists is removed as well.

Decisions:

- Trailer is not in the set: RFC 9110 §6.6.2 makes it end-to-end metadata. It only means
  something alongside a body framing that carries trailers, so a shell that re-frames a
  body and drops its trailers must drop Trailer too; that is its call, not this module's.
- Proxy-Authenticate and Proxy-Authorization are not hop-by-hop in RFC 9110 (§11.7.1-2),
  but Proxy-Authorization carries credentials for the first proxy that wants them. Cachet
  as a reverse proxy is the client's first proxy and asks for none, so the request side
  (:data:`REQUEST_HOP_BY_HOP`, :func:`strip_request_hop_by_hop`) drops it rather than leak
  a client's proxy credentials to the origin. Proxy-Authenticate on responses is left as is.
"""

from __future__ import annotations

from typing import Final

from proxy.http.fields import Headers, get_values, split_list, without_fields

__all__ = [
    "HOP_BY_HOP",
    "REQUEST_HOP_BY_HOP",
    "connection_options",
    "strip_hop_by_hop",
    "strip_request_hop_by_hop",
]

HOP_BY_HOP: Final[frozenset[str]] = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade"}
)
REQUEST_HOP_BY_HOP: Final[frozenset[str]] = HOP_BY_HOP | {"proxy-authorization"}


def connection_options(headers: Headers) -> set[str]:
    """Lowercase connection options listed in Connection (RFC 9110 §7.6.1)."""
    return {option.lower() for option in split_list(get_values(headers, "connection"))}


def strip_hop_by_hop(headers: Headers) -> Headers:
    """Headers without the fixed hop-by-hop set and every field named in Connection."""
    return without_fields(headers, HOP_BY_HOP | connection_options(headers))


def strip_request_hop_by_hop(headers: Headers) -> Headers:
    """As :func:`strip_hop_by_hop`, also dropping Proxy-Authorization (module docstring)."""
    return without_fields(headers, REQUEST_HOP_BY_HOP | connection_options(headers))
