"""A stored response (RFC 9111 §3) and the values derived from it once, at store time, so that the
hit path does arithmetic instead of parsing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proxy.http.cache_control import Directives
from proxy.http.fields import Headers

# Selecting header fields of the request that chose this variant (RFC 9111 §4.1): lowercase field
# name and the request's normalised combined value, or None where the request lacked the field.
VaryKey = tuple[tuple[str, str | None], ...]


@dataclass(slots=True)
class StoredResponse:
    status: int
    reason: str
    headers: Headers  # end-to-end fields as stored: no hop-by-hop fields, no Age, Date present
    body: bytes
    request_time: float  # POSIX seconds when the request that produced this response was sent
    response_time: float  # POSIX seconds when the response was received (RFC 9111 §4.2.3)
    vary: VaryKey
    directives: Directives  # the effective response directives (targeted field or Cache-Control)
    freshness_lifetime_s: float
    corrected_initial_age_s: float
    etag: str | None
    last_modified: float | None
    date_value: float
    no_cache_fields: tuple[str, ...] = ()  # lowercase; never sent without revalidation
    # Wire form of the status line and stored fields, built once; the hit path appends the
    # per-response fields (Age, Cache-Status, X-Request-ID, Connection) and the body.
    head_bytes: bytes = b""
    size_bytes: int = 0
    stale_marked: bool = field(default=False)  # a soft purge marks an entry stale (issue 3)
    # Whose content this is (proxy.records.emit.Attribution), set only after the stored bytes
    # were checked against the manifest's content id.
    attribution: Any = None
    record_template: Any = None  # proxy.records.emit: the constant parts of this hit's record

    def current_age(self, now: float) -> float:
        """RFC 9111 §4.2.3: corrected initial age plus the time resident in this cache."""
        return self.corrected_initial_age_s + max(0.0, now - self.response_time)

    def ttl(self, now: float) -> float:
        """Remaining freshness in seconds; negative once stale (RFC 9211 §2.4 `ttl`)."""
        if self.stale_marked:
            return min(0.0, self.freshness_lifetime_s - self.current_age(now))
        return self.freshness_lifetime_s - self.current_age(now)
