"""OpenTelemetry export (issue 4: "OpenTelemetry export optional and off by default"): a real
proxy posts one SERVER span per request to an OTLP/HTTP JSON collector (a small HTTP server in
this test), joined to the client's W3C trace, and the origin's traceparent names the edge's span
as its parent (W3C Trace Context §3.2)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.integration.conftest import Origin, ProxyFactory

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
WAIT_S = 10.0


class Collector:
    """An OTLP/HTTP receiver: keeps every span it is sent; answers ``status`` to each POST."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.spans: list[dict[str, Any]] = []
        self.resources: list[dict[str, Any]] = []
        self.content_types: list[str] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                collector.content_types.append(self.headers.get("Content-Type", ""))
                for resource_spans in body["resourceSpans"]:
                    collector.resources.append(resource_spans["resource"])
                    for scope in resource_spans["scopeSpans"]:
                        collector.spans.extend(scope["spans"])
                self.send_response(collector.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + WAIT_S
        while len(self.spans) < count:
            assert time.monotonic() < deadline, f"collector got {len(self.spans)} of {count} spans"
            time.sleep(0.05)
        return self.spans


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    yield server
    server.close()


def _attributes(span: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: next(iter(a["value"].values())) for a in span["attributes"]}


def test_off_by_default_the_origin_gets_the_clients_traceparent_unchanged(
    origin: Origin, proxy_factory: ProxyFactory, path: str
) -> None:
    proxy = proxy_factory(origin.url)
    traceparent = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
    assert proxy.get(path, {"traceparent": traceparent}).status == 200
    sent = origin.requests(path)[0]["headers"]
    assert [v for n, v in sent if n.lower() == "traceparent"] == [traceparent]
    assert "cachet_trace_spans" not in proxy.admin("/metrics").body.decode()


def test_a_miss_and_a_hit_become_server_spans_in_the_clients_trace(
    origin: Origin, proxy_factory: ProxyFactory, path: str, collector: Collector
) -> None:
    origin.script(path, {"headers": [["Cache-Control", "max-age=60"]], "body": "traced"})
    proxy = proxy_factory(origin.url, "--otlp-traces-url", collector.url, "--edge-id", "edge-t")
    traceparent = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
    miss = proxy.get(path + "?q=secret", {"traceparent": traceparent, "tracestate": "k=v"})
    hit = proxy.get(path + "?q=secret")
    assert (miss.status, hit.status) == (200, 200)
    assert hit.header("X-Cache-Status") == "HIT"
    spans = collector.wait_for(2)
    by_cache = {_attributes(span)["cachet.cache"]: span for span in spans}
    miss_span, hit_span = by_cache["miss"], by_cache["hit"]

    # The miss joined the client's trace, under the client's span.
    assert miss_span["traceId"] == CLIENT_TRACE
    assert miss_span["parentSpanId"] == CLIENT_SPAN
    assert miss_span["kind"] == 2  # SERVER
    assert int(miss_span["endTimeUnixNano"]) >= int(miss_span["startTimeUnixNano"]) > 0
    attrs = _attributes(miss_span)
    assert attrs["http.request.method"] == "GET"
    assert attrs["http.response.status_code"] == "200"
    assert attrs["url.path"] == path  # never the query string
    assert attrs["cachet.request_id"] == miss.header("X-Request-ID")
    assert "secret" not in json.dumps(spans)

    # The origin's traceparent names the edge's span as its parent; tracestate is passed on.
    sent = origin.requests(path)[0]["headers"]
    assert [v for n, v in sent if n.lower() == "traceparent"] == [
        f"00-{CLIENT_TRACE}-{miss_span['spanId']}-01"
    ]
    assert [v for n, v in sent if n.lower() == "tracestate"] == ["k=v"]

    # The hit had no traceparent: a trace of its own, with no parent.
    assert len(hit_span["traceId"]) == 32 and hit_span["traceId"] != CLIENT_TRACE
    assert "parentSpanId" not in hit_span
    assert _attributes(hit_span)["http.response.body.size"] == str(len(b"traced"))
    # Records carry the trace id (issue 4): a span leads to its record and back.
    for response, span in ((miss, miss_span), (hit, hit_span)):
        receipt = proxy.admin(f"/_cachet/receipts/{response.header('X-Request-ID')}")
        assert json.loads(receipt.body)["record"]["trace_id"] == span["traceId"]
    resource = {a["key"]: a["value"]["stringValue"] for a in collector.resources[0]["attributes"]}
    assert resource["service.name"] == "cachet-proxy"
    assert resource["service.instance.id"] == "edge-t"
    assert collector.content_types[0] == "application/json"


def test_a_trace_the_client_did_not_sample_is_propagated_but_not_exported(
    origin: Origin, proxy_factory: ProxyFactory, path: str, collector: Collector
) -> None:
    proxy = proxy_factory(origin.url, "--otlp-traces-url", collector.url)
    traceparent = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-00"
    assert proxy.get(path, {"traceparent": traceparent}).status == 200
    assert proxy.get(path + "-sampled").status == 200
    collector.wait_for(1)
    time.sleep(1.5)  # one more export interval: the unsampled span must not follow
    assert len(collector.spans) == 1
    assert collector.spans[0]["traceId"] != CLIENT_TRACE
    sent = origin.requests(path)[0]["headers"]
    (upstream,) = [v for n, v in sent if n.lower() == "traceparent"]
    assert upstream.startswith(f"00-{CLIENT_TRACE}-") and upstream.endswith("-00")
    assert upstream.split("-")[2] != CLIENT_SPAN


@pytest.mark.parametrize(
    "bad",
    [
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff is invalid
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # uppercase hex
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # 00 takes no more
        "garbage",
    ],
)
def test_an_invalid_traceparent_starts_a_new_trace(
    origin: Origin, proxy_factory: ProxyFactory, path: str, collector: Collector, bad: str
) -> None:
    """W3C Trace Context §3.2.2: an invalid traceparent is ignored, and a new trace started."""
    proxy = proxy_factory(origin.url, "--otlp-traces-url", collector.url)
    assert proxy.get(path, {"traceparent": bad}).status == 200
    (span,) = collector.wait_for(1)
    assert span["traceId"] != CLIENT_TRACE.upper() and span["traceId"] != "0" * 32
    assert "parentSpanId" not in span
    sent = origin.requests(path)[0]["headers"]
    assert [v for n, v in sent if n.lower() == "traceparent"] == [
        f"00-{span['traceId']}-{span['spanId']}-01"
    ]


def test_a_collector_that_fails_costs_spans_not_responses(
    origin: Origin, proxy_factory: ProxyFactory, path: str
) -> None:
    failing = Collector(status=503)
    try:
        proxy = proxy_factory(origin.url, "--otlp-traces-url", failing.url)
        for index in range(5):
            assert proxy.get(f"{path}-{index}").status == 200
        failing.wait_for(5)
        deadline = time.monotonic() + WAIT_S
        while True:
            metrics = proxy.admin("/metrics").body.decode()
            if 'cachet_trace_spans_dropped_total{reason="export_failed"} 5.0' in metrics:
                break
            assert time.monotonic() < deadline, metrics
            time.sleep(0.1)
        assert "cachet_trace_spans_exported_total 0.0" in metrics
    finally:
        failing.close()
    # And with nothing listening at all, requests are still answered.
    dead = Collector()
    dead_url = dead.url
    dead.close()
    proxy = proxy_factory(origin.url, "--otlp-traces-url", dead_url)
    assert proxy.get(path + "-dead").status == 200
    assert proxy.stop() == 0
