"""proxy.tracing and the traceparent parse in proxy.exchange: W3C Trace Context §3.2 and the
OTLP/JSON encoding (opentelemetry-proto's JSON mapping), without sockets."""

from __future__ import annotations

import itertools
import json

import pytest

from proxy.config import OriginConfig, ProxyConfig
from proxy.exchange import Exchange, ExchangeReader
from proxy.http.request_parser import parse_request_head
from proxy.routing import Router
from proxy.tracing import FinishedSpan, Tracer, encode_otlp_traces, upstream_traceparent

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def exchange(*fields: tuple[str, str], target: str = "/a?q=1") -> Exchange:
    config = ProxyConfig(origins=(OriginConfig("http://127.0.0.1:8000", (), False),))
    lines = "".join(f"{name}: {value}\r\n" for name, value in fields)
    parsed = parse_request_head(f"GET {target} HTTP/1.1\r\nHost: h\r\n{lines}\r\n".encode())
    assert parsed is not None
    return ExchangeReader(Router(config), "X-Cachet-Use").read(parsed[0])


def counting_tracer(**kwargs: int) -> Tracer:
    clock = itertools.count(1_000, 500)
    serial = itertools.count(1)
    return Tracer(
        clock_ns=lambda: next(clock),
        random_bytes=lambda n: b"".join(next(serial).to_bytes(8, "big") for _ in range(n // 8)),
        **kwargs,
    )


def test_a_valid_traceparent_gives_trace_parent_and_flags() -> None:
    ex = exchange(("traceparent", f"00-{TRACE}-{SPAN}-00"))
    assert (ex.trace_id, ex.parent_span_id, ex.trace_flags) == (TRACE, SPAN, 0)


def test_a_later_version_may_carry_more_fields() -> None:
    """§3.2.4: a parser for version 00 reads a higher version's first four fields."""
    ex = exchange(("traceparent", f"cc-{TRACE}-{SPAN}-01-what-the-future-holds"))
    assert (ex.trace_id, ex.parent_span_id, ex.trace_flags) == (TRACE, SPAN, 1)


@pytest.mark.parametrize(
    "value",
    [
        f"ff-{TRACE}-{SPAN}-01",
        f"00-{'0' * 32}-{SPAN}-01",
        f"00-{TRACE}-{'0' * 16}-01",
        f"00-{TRACE.upper()}-{SPAN}-01",
        f"00-{TRACE}-{SPAN}-01-more",
        f"00-{TRACE}-{SPAN}",
        "",
    ],
)
def test_an_invalid_traceparent_is_ignored(value: str) -> None:
    ex = exchange(("traceparent", value))
    assert (ex.trace_id, ex.parent_span_id, ex.trace_flags) == (None, None, 1)


def test_a_span_joins_the_clients_trace_and_parents_the_upstream_request() -> None:
    tracer = counting_tracer()
    ex = exchange(("traceparent", f"00-{TRACE}-{SPAN}-01"))
    tracer.start(ex)
    assert ex.trace_id == TRACE and ex.parent_span_id == SPAN
    assert ex.span_id is not None and len(ex.span_id) == 16 and ex.span_id != SPAN
    assert upstream_traceparent(ex) == f"00-{TRACE}-{ex.span_id}-01"
    tracer.finish(ex, 200, "miss", "origin", 5)
    (span,) = tracer.take(10)
    assert (span.trace_id, span.parent_span_id, span.span_id) == (TRACE, SPAN, ex.span_id)
    assert (span.start_ns, span.end_ns) == (1_000, 1_500)
    assert span.path == "/a"  # the query string never leaves the edge


def test_without_a_traceparent_a_new_sampled_trace_starts() -> None:
    tracer = counting_tracer()
    ex = exchange()
    assert upstream_traceparent(ex) is None  # no span: tracing off for this exchange
    tracer.start(ex)
    assert ex.trace_id is not None and len(ex.trace_id) == 32 and ex.trace_id != "0" * 32
    assert ex.parent_span_id is None and ex.trace_flags == 1


def test_a_span_is_finished_once() -> None:
    tracer = counting_tracer()
    ex = exchange()
    tracer.start(ex)
    tracer.finish(ex, 200, "hit", "memory", 1)
    tracer.finish(ex, 200, "revalidated", "origin", 1)  # a background revalidation after it
    assert [span.cache for span in tracer.take(10)] == ["hit"]


def test_unsampled_spans_are_not_kept_and_a_full_queue_counts_its_drops() -> None:
    tracer = counting_tracer(max_queued=2)
    unsampled = exchange(("traceparent", f"00-{TRACE}-{SPAN}-00"))
    tracer.start(unsampled)
    tracer.finish(unsampled, 200, "miss", "origin", 1)
    assert tracer.queued == 0
    for _ in range(3):
        ex = exchange()
        tracer.start(ex)
        tracer.finish(ex, 200, "hit", "memory", 1)
    assert (tracer.queued, tracer.dropped_queue_full) == (2, 1)
    assert len(tracer.take(1)) == 1 and tracer.queued == 1


def test_the_otlp_json_body() -> None:
    spans = [
        FinishedSpan(TRACE, SPAN, None, "GET", "/a", 503, "error", "none", 0, "r1", 10, 20),
        FinishedSpan(TRACE, "1" * 16, SPAN, "HEAD", "/b", 200, "hit", "disk", 0, "r2", 30, 40),
    ]
    body = json.loads(encode_otlp_traces(spans, "svc", "edge-a", "0.1.0"))
    (resource_spans,) = body["resourceSpans"]
    resource = {a["key"]: a["value"] for a in resource_spans["resource"]["attributes"]}
    assert resource["service.name"] == {"stringValue": "svc"}
    assert resource["service.instance.id"] == {"stringValue": "edge-a"}
    (scope,) = resource_spans["scopeSpans"]
    first, second = scope["spans"]
    # Ids are hex (not base64) and 64-bit integers decimal strings in OTLP/JSON.
    assert (first["traceId"], first["spanId"]) == (TRACE, SPAN)
    assert (first["startTimeUnixNano"], first["endTimeUnixNano"]) == ("10", "20")
    assert first["kind"] == 2 and first["name"] == "GET"
    assert first["status"] == {"code": 2}  # a 5xx server span is an error
    assert "parentSpanId" not in first
    assert second["parentSpanId"] == SPAN and second["status"] == {}
    attributes = {a["key"]: a["value"] for a in second["attributes"]}
    assert attributes["http.response.status_code"] == {"intValue": "200"}
    assert attributes["cachet.tier"] == {"stringValue": "disk"}
    assert attributes["url.path"] == {"stringValue": "/b"}
