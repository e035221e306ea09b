"""OpenTelemetry trace export (issue 4: "OpenTelemetry export optional and off by default").

With ``otlp_traces_url`` set, every request the proxy answers becomes one SERVER span: its trace
is the client's W3C ``traceparent`` trace (or a new one), its parent the client's span, and the
``traceparent`` sent to the origin names this span as the parent, so the origin's spans nest
under the edge's. Finished spans wait in a bounded queue and leave in OTLP/HTTP JSON batches
(opentelemetry-proto's JSON mapping: hex trace and span ids, 64-bit integers as decimal strings)
from a background task; the request path only appends a tuple. A full queue or a failed POST
drops spans and counts them: tracing never slows or fails a response.

What a span holds (docs/tracing.md): method, status, cache outcome, tier, body bytes
sent, the request id, the path without its query string. No client address, no query string,
no header values.

``Tracer`` and ``encode_otlp_traces`` are pure; ``OtlpExporter`` only moves bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp

    from proxy.exchange import Exchange

log = logging.getLogger("cachet.tracing")

SPAN_KIND_SERVER = 2  # opentelemetry-proto trace.proto SpanKind
STATUS_CODE_ERROR = 2  # trace.proto Status.StatusCode; UNSET (0) otherwise
SAMPLED_FLAG = 0x01  # W3C Trace Context §3.2.2.5
MAX_QUEUED_SPANS = 8192
EXPORT_BATCH_SPANS = 512
EXPORT_INTERVAL_S = 1.0
EXPORT_TIMEOUT_S = 5.0
_ID_BLOCK = 256


@dataclass(frozen=True, slots=True)
class FinishedSpan:
    trace_id: str  # 32 lowercase hex
    span_id: str  # 16 lowercase hex
    parent_span_id: str | None
    method: str
    path: str
    status: int
    cache: str  # the record vocabulary: hit, miss, stale, revalidated, bypass, error
    tier: str
    sent_bytes: int
    request_id: str
    start_ns: int
    end_ns: int


class Tracer:
    """Gives each request a span id (and a trace id when the client sent none) and keeps the
    finished spans of sampled traces until the exporter takes them."""

    def __init__(
        self,
        *,
        max_queued: int = MAX_QUEUED_SPANS,
        clock_ns: Callable[[], int] = time.time_ns,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._max_queued = max_queued
        self._clock_ns = clock_ns
        self._random_bytes = random_bytes
        self._queue: list[FinishedSpan] = []
        self._fresh_ids: list[str] = []
        self.dropped_queue_full = 0
        self.dropped_export_failed = 0
        self.exported = 0

    def start(self, ex: Exchange) -> None:
        """Open the request's span (a W3C Trace Context participant: keep the client's trace,
        become the parent of what the edge sends upstream)."""
        if ex.trace_id is None:
            ex.trace_id = self._fresh_id() + self._fresh_id()
            ex.parent_span_id = None
            ex.trace_flags = SAMPLED_FLAG
        ex.span_id = self._fresh_id()
        ex.span_started_ns = self._clock_ns()

    def finish(self, ex: Exchange, status: int, cache: str, tier: str, sent_bytes: int) -> None:
        """Close the span once (later calls for the same exchange, e.g. a background
        revalidation after the client's answer, are ignored)."""
        started = ex.span_started_ns
        if not started or ex.span_id is None or ex.trace_id is None:
            return
        ex.span_started_ns = 0
        if not ex.trace_flags & SAMPLED_FLAG:
            return
        if len(self._queue) >= self._max_queued:
            self.dropped_queue_full += 1
            return
        self._queue.append(
            FinishedSpan(
                trace_id=ex.trace_id,
                span_id=ex.span_id,
                parent_span_id=ex.parent_span_id,
                method=ex.method,
                path=ex.target.partition("?")[0],
                status=status,
                cache=cache,
                tier=tier,
                sent_bytes=sent_bytes,
                request_id=ex.request_id,
                start_ns=started,
                end_ns=max(started, self._clock_ns()),
            )
        )

    def take(self, limit: int) -> list[FinishedSpan]:
        taken, self._queue = self._queue[:limit], self._queue[limit:]
        return taken

    @property
    def queued(self) -> int:
        return len(self._queue)

    def _fresh_id(self) -> str:
        """64 random bits as 16 hex digits, drawn from the OS in blocks (one syscall per 256)."""
        ids = self._fresh_ids
        if not ids:
            block = self._random_bytes(8 * _ID_BLOCK)
            ids.extend(block[i : i + 8].hex() for i in range(0, len(block), 8))
        found = ids.pop()
        return found if found != "0" * 16 else self._fresh_id()  # all-zero ids are invalid


def upstream_traceparent(ex: Exchange) -> str | None:
    """The ``traceparent`` the origin gets when the edge has a span: this span as the parent
    (W3C Trace Context §3.2), the client's flags kept."""
    if ex.span_id is None or ex.trace_id is None:
        return None
    return f"00-{ex.trace_id}-{ex.span_id}-{ex.trace_flags:02x}"


def _attribute(key: str, value: str | int) -> dict[str, Any]:
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def span_json(span: FinishedSpan) -> dict[str, Any]:
    """One span in opentelemetry-proto's JSON mapping, with HTTP semantic-convention names."""
    encoded: dict[str, Any] = {
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "name": span.method,  # HTTP server span names: the method when no route template
        "kind": SPAN_KIND_SERVER,
        "startTimeUnixNano": str(span.start_ns),
        "endTimeUnixNano": str(span.end_ns),
        "attributes": [
            _attribute("http.request.method", span.method),
            _attribute("url.scheme", "http"),
            _attribute("url.path", span.path),
            _attribute("http.response.status_code", span.status),
            _attribute("http.response.body.size", span.sent_bytes),
            _attribute("cachet.cache", span.cache),
            _attribute("cachet.tier", span.tier),
            _attribute("cachet.request_id", span.request_id),
        ],
        # Semantic conventions: a server span is an error only for 5xx answers.
        "status": {"code": STATUS_CODE_ERROR} if span.status >= 500 else {},
    }
    if span.parent_span_id is not None:
        encoded["parentSpanId"] = span.parent_span_id
    return encoded


def encode_otlp_traces(
    spans: Sequence[FinishedSpan], service_name: str, instance_id: str, version: str
) -> bytes:
    """An ExportTraceServiceRequest body (OTLP/HTTP, ``application/json``)."""
    resource = [
        _attribute("service.name", service_name),
        _attribute("service.instance.id", instance_id),
        _attribute("service.version", version),
    ]
    request = {
        "resourceSpans": [
            {
                "resource": {"attributes": resource},
                "scopeSpans": [
                    {
                        "scope": {"name": "cachet.proxy", "version": version},
                        "spans": [span_json(span) for span in spans],
                    }
                ],
            }
        ]
    }
    return json.dumps(request, separators=(",", ":")).encode()


class OtlpExporter:
    """Posts the tracer's spans to an OTLP/HTTP endpoint every second (or sooner when a batch
    is full); one POST at a time, dropped (and counted) when the collector fails or is slow."""

    def __init__(
        self, tracer: Tracer, url: str, service_name: str, instance_id: str, version: str
    ) -> None:
        self.tracer = tracer
        self._session: aiohttp.ClientSession | None = None
        self._url = url
        self._resource = (service_name, instance_id, version)
        self._task: asyncio.Task[None] | None = None
        self._failures_logged = 0

    def start(self) -> None:
        import aiohttp

        # A session of its own: the origin pool's limits and timeouts are the origin's.
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=2))
        self._task = asyncio.get_running_loop().create_task(self._run(), name="cachet-otlp")

    async def stop(self) -> None:
        """Send what is queued (each POST bounded by the export timeout), then stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self.tracer.queued and self._session is not None:
            await self.export_once()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(EXPORT_INTERVAL_S)
            while self.tracer.queued:
                await self.export_once()
                if self.tracer.queued < EXPORT_BATCH_SPANS:
                    break

    async def export_once(self) -> None:
        import aiohttp

        spans = self.tracer.take(EXPORT_BATCH_SPANS)
        if not spans or self._session is None:
            return
        body = encode_otlp_traces(spans, *self._resource)
        try:
            async with asyncio.timeout(EXPORT_TIMEOUT_S):
                async with self._session.post(
                    self._url, data=body, headers={"Content-Type": "application/json"}
                ) as response:
                    await response.read()
                    ok = 200 <= response.status < 300
                    reason = f"HTTP {response.status}"
        except (aiohttp.ClientError, OSError, TimeoutError) as err:
            ok, reason = False, type(err).__name__
        if ok:
            self.tracer.exported += len(spans)
            return
        self.tracer.dropped_export_failed += len(spans)
        # One line per failure would flood the log while a collector is down.
        if self._failures_logged < 3 or self._failures_logged % 100 == 0:
            log.warning("trace export failed (%s): %d spans dropped", reason, len(spans))
        self._failures_logged += 1
