"""Turning an origin response into a StoredResponse, and refreshing one after a 304
(RFC 9111 §3, §3.2, §4.3.4). Pure: times are parameters."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from proxy.cache.entry import StoredResponse
from proxy.cache.freshness import (
    HeuristicPolicy,
    corrected_initial_age,
    date_value,
    freshness_lifetime,
)
from proxy.cache.keys import vary_key, vary_names
from proxy.cache.storability import effective_directives, expiry_headers, fields_not_to_store
from proxy.http.dates import format_http_date, parse_http_date
from proxy.http.fields import Headers, get_values, replace_fields, without_fields
from proxy.http.wire import serialize_fields, serialize_status_line

# Fields the cache recomputes for every response it sends, so they are not stored. An upstream
# Cache-Status is kept: our member is appended after it (RFC 9211 §2: preserve the existing value).
RECOMPUTED_FIELDS = frozenset({"age", "content-length", "x-cache-status"})
# §3.2: a 304 never updates Content-Length.
NOT_UPDATED_BY_304 = frozenset({"content-length"})
# Per-entry bookkeeping overhead counted against the memory budget besides header and body bytes.
ENTRY_OVERHEAD_BYTES = 256


@dataclass(frozen=True, slots=True)
class AdmissionPolicy:
    heuristic: HeuristicPolicy
    targeted_fields: tuple[str, ...]  # lowercase
    via: str  # e.g. "1.1 cachet"


def make_stored_response(
    status: int,
    reason: str,
    headers: Headers,
    body: bytes,
    request_headers: Headers,
    request_time: float,
    response_time: float,
    policy: AdmissionPolicy,
) -> StoredResponse:
    """`headers` are the origin's end-to-end fields (hop-by-hop already removed)."""
    directives = effective_directives(headers, policy.targeted_fields)
    kept = without_fields(headers, fields_not_to_store(directives) | RECOMPUTED_FIELDS)
    if not get_values(kept, "date"):
        kept.append(("Date", format_http_date(response_time)))  # RFC 9110 §6.6.1
    return _derive(
        status,
        reason,
        kept,
        body,
        vary_key(vary_names(headers), request_headers),
        request_time,
        response_time,
        initial_age_headers=headers,
        policy=policy,
    )


def refresh_stored_response(
    stored: StoredResponse,
    update_headers: Headers,
    request_time: float,
    response_time: float,
    policy: AdmissionPolicy,
) -> StoredResponse:
    """§4.3.4 / §3.2: fields of the 304 replace the stored ones, except Content-Length and the
    fields the cache must not keep; freshness and age are computed anew from this exchange."""
    update_directives = effective_directives(update_headers, policy.targeted_fields)
    excluded = fields_not_to_store(update_directives) | RECOMPUTED_FIELDS
    update = without_fields(update_headers, excluded)
    if not get_values(update, "date"):
        # RFC 9110 §6.6.1: supply the Date the 304 lacked, or the stored Date would make the
        # refreshed entry look as old as the original response (§4.2.3 apparent_age).
        update.append(("Date", format_http_date(response_time)))
    merged = replace_fields(stored.headers, update, keep=NOT_UPDATED_BY_304)
    return _derive(
        stored.status,
        stored.reason,
        merged,
        stored.body,
        stored.vary,
        request_time,
        response_time,
        initial_age_headers=update_headers,
        policy=policy,
    )


def is_refreshable_by(stored: StoredResponse, update_headers: Headers) -> bool:
    """§4.3.4: a 304 that carries an ETag selects the stored responses with the same (strong)
    entity tag; without one, the response we validated is the one to update."""
    etags = get_values(update_headers, "etag")
    if not etags:
        return True
    return stored.etag is not None and etags[0].strip() == stored.etag


def is_freshened_by_head(stored: StoredResponse, head_headers: Headers, body_length: int) -> bool:
    """RFC 9111 §4.3.5: does a 200 to a HEAD update this stored GET response (True), or make it
    stale (False)? It updates when every validator the HEAD response carries matches the
    stored one (the same entity-tag; the same Last-Modified instant) and its Content-Length,
    if it has one, is the stored body's length. A validator the stored response lacks is a
    mismatch; an unparsable one too (nothing says the representation is the same)."""
    etags = get_values(head_headers, "etag")
    if etags and (stored.etag is None or etags[0].strip() != stored.etag):
        return False
    modified = get_values(head_headers, "last-modified")
    if modified:
        received = parse_http_date(modified[0])
        if received is None or stored.last_modified is None or received != stored.last_modified:
            return False
    lengths = get_values(head_headers, "content-length")
    if lengths:
        value = lengths[0].strip()
        if not value.isdigit() or int(value) != body_length:
            return False
    return True


def _derive(
    status: int,
    reason: str,
    headers: Headers,
    body: bytes,
    vary: tuple[tuple[str, str | None], ...],
    request_time: float,
    response_time: float,
    *,
    initial_age_headers: Headers,
    policy: AdmissionPolicy,
) -> StoredResponse:
    directives = effective_directives(headers, policy.targeted_fields)
    date_s = date_value(headers, response_time)
    etag_values = get_values(headers, "etag")
    modified_values = get_values(headers, "last-modified")
    wire_headers = [*headers, ("Content-Length", str(len(body)))]
    via_values = get_values(headers, "via")
    if via_values:
        wire_headers = [(n, v) for n, v in wire_headers if n.lower() != "via"]
        wire_headers.append(("Via", ", ".join([*via_values, policy.via])))
    else:
        wire_headers.append(("Via", policy.via))
    head_bytes = serialize_status_line(status, reason) + serialize_fields(wire_headers)
    no_cache = directives.field_names("no-cache") or ()
    return StoredResponse(
        status=status,
        reason=reason,
        headers=headers,
        body=body,
        request_time=request_time,
        response_time=response_time,
        vary=vary,
        directives=directives,
        freshness_lifetime_s=freshness_lifetime(
            status,
            expiry_headers(headers, policy.targeted_fields),
            directives,
            date_s,
            policy.heuristic,
        ),
        corrected_initial_age_s=corrected_initial_age(
            initial_age_headers, request_time, response_time, date_s
        ),
        etag=etag_values[0].strip() if etag_values else None,
        last_modified=parse_http_date(modified_values[0]) if modified_values else None,
        date_value=date_s,
        no_cache_fields=tuple(no_cache),
        head_bytes=head_bytes,
        size_bytes=len(head_bytes) + len(body) + ENTRY_OVERHEAD_BYTES,
    )


def provenance_header(content_id: str, creator: str, manifest_id: str | None) -> str:
    """ARCHITECTURE.md: `v=1;id=sha256:<hex>;creator=<account>;manifest=sha256:<hex>`."""
    value = f"v=1;id={content_id};creator={creator}"
    return value + (f";manifest={manifest_id}" if manifest_id else "")


def with_attribution(stored: StoredResponse, attribution: Any) -> StoredResponse:
    """The stored response, attributed (bytes already checked against the content id), with
    X-Provenance among the fields every hit sends."""
    if attribution is None:
        return stored
    if attribution.manifest_id is None:  # bytes that failed their check: recorded, not vouched
        return replace(stored, attribution=attribution, record_template=None)
    line = "X-Provenance: " + provenance_header(
        attribution.content_id, attribution.creator, attribution.manifest_id
    )
    extra = (line + "\r\n").encode("latin-1")
    return replace(
        stored,
        attribution=attribution,
        head_bytes=stored.head_bytes + extra,
        size_bytes=stored.size_bytes + len(extra),
        record_template=None,
    )
