"""Builders shared by the RFC 9111 policy tests: stored responses at explicit times, no clock."""

from __future__ import annotations

from proxy.cache.admission import AdmissionPolicy, make_stored_response
from proxy.cache.entry import StoredResponse
from proxy.cache.freshness import HeuristicPolicy
from proxy.http.dates import format_http_date
from proxy.http.fields import Headers

T0 = 1_700_000_000.0  # a fixed POSIX time on a whole second
POLICY = AdmissionPolicy(
    heuristic=HeuristicPolicy(), targeted_fields=("cdn-cache-control",), via="1.1 cachet"
)


def http_date(posix_s: float) -> str:
    return format_http_date(posix_s)


def stored_response(
    headers: Headers,
    *,
    status: int = 200,
    body: bytes = b"hello",
    request_headers: Headers | None = None,
    request_time: float = T0,
    response_time: float = T0,
    date: float | None = T0,
    policy: AdmissionPolicy = POLICY,
) -> StoredResponse:
    """A stored response received at `response_time`; Date is set to `date` unless None."""
    fields = list(headers)
    if date is not None:
        fields.append(("Date", http_date(date)))
    return make_stored_response(
        status,
        "OK",
        fields,
        body,
        request_headers or [],
        request_time,
        response_time,
        policy,
    )
