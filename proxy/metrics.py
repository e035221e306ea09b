"""Proxy counters. The hit path bumps plain integers (a prometheus Counter takes a lock per
increment, too slow at tens of thousands of hits a second); a custom collector turns them into
Prometheus metrics at scrape time."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from proxy.recorder import Recorder
    from proxy.records.daemon import PipelineStatus
    from proxy.tracing import Tracer

ORIGIN_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ProxyStats:
    def __init__(self) -> None:
        self.requests_by_outcome: Counter[str] = Counter()  # X-Cache-Status words
        # The plain fresh hit is counted in two bare ints: the hit path's cheapest bookkeeping.
        self.fresh_hits = 0
        self.fresh_hit_bytes = 0
        self.bytes_by_tier: Counter[str] = Counter()  # memory | origin
        self.origin_bytes = 0
        self.origin_requests = 0
        self.origin_errors: Counter[str] = Counter()  # refused | reset | timeout | garbage
        self.rejected_requests: Counter[int] = Counter()  # by status: 400, 431, ...
        self.not_stored: Counter[str] = Counter()  # by storability reason
        self.invalidations = 0
        self.hash_mismatches = 0  # stored bytes that did not hash to their manifest's content id
        self.spool_full_refusals = 0  # 503s of spool_full_policy = "reject" (not recorded)
        self.revocation_purges = 0
        self.range_requests: Counter[str] = Counter()  # single | multipart | unsatisfiable | ...
        self.disk_hits = 0
        self.disk_reads = 0  # entry files read (concurrent misses of one key share a read)
        self.disk_puts_dropped = 0  # write-through puts dropped because the queue was full
        self.purges: Counter[tuple[str, str]] = Counter()  # (kind, mode) of accepted purges
        self.purged_objects: Counter[str] = Counter()  # by mode: soft | hard
        self.purges_refused: Counter[str] = Counter()  # by reason


def labelled_counter(
    name: str,
    documentation: str,
    labels: list[str],
    counts: Mapping[Any, int],
    label_values: Callable[[Any], list[str]] = lambda key: [key],
) -> CounterMetricFamily:
    """A counter family with one sample per key of `counts`, in sorted key order."""
    family = CounterMetricFamily(name, documentation, labels=labels)
    for key, count in sorted(counts.items()):
        family.add_metric(label_values(key), count)
    return family


class ProxyCollector(Collector):
    def __init__(
        self,
        stats: ProxyStats,
        cache_bytes: Callable[[], int],
        cache_entries: Callable[[], int],
        cache_evictions: Callable[[], int],
        open_connections: Callable[[], int],
        disk: DiskGauges | None = None,
    ) -> None:
        self._stats = stats
        self._cache_bytes = cache_bytes
        self._cache_entries = cache_entries
        self._cache_evictions = cache_evictions
        self._open_connections = open_connections
        self._disk = disk

    def collect(self) -> Iterator[Metric]:
        stats = self._stats
        by_outcome = Counter(stats.requests_by_outcome)
        by_outcome["HIT"] += stats.fresh_hits
        yield labelled_counter(
            "cachet_requests", "Client requests answered, by cache outcome", ["outcome"],
            by_outcome, lambda outcome: [outcome.lower()],
        )  # fmt: skip
        by_tier = Counter(stats.bytes_by_tier)
        by_tier["memory"] += stats.fresh_hit_bytes
        yield labelled_counter(
            "cachet_served_bytes", "Body bytes sent to clients, by tier", ["tier"], by_tier
        )
        yield CounterMetricFamily(
            "cachet_origin_bytes", "Body bytes received from origins", value=stats.origin_bytes
        )
        yield CounterMetricFamily(
            "cachet_origin_requests", "Requests sent to origins", value=stats.origin_requests
        )
        yield labelled_counter(
            "cachet_origin_errors", "Origin failures by kind", ["kind"], stats.origin_errors
        )
        yield labelled_counter(
            "cachet_rejected_requests",
            "Malformed client requests by status",
            ["status"],
            stats.rejected_requests,
            lambda status: [str(status)],
        )
        yield labelled_counter(
            "cachet_not_stored", "Responses not stored, by reason", ["reason"], stats.not_stored
        )
        yield CounterMetricFamily(
            "cachet_invalidations",
            "Cache invalidations by unsafe methods",
            value=stats.invalidations,
        )
        yield CounterMetricFamily(
            "cachet_spool_full_refusals",
            "Requests answered 503 because the record spool was full (spool_full_policy reject)",
            value=stats.spool_full_refusals,
        )
        yield CounterMetricFamily(
            "cachet_content_hash_mismatches",
            "Responses whose bytes did not match their manifest's content id (never attributed)",
            value=stats.hash_mismatches,
        )
        yield CounterMetricFamily(
            "cachet_revocation_purges",
            "Cached objects dropped because their manifest was revoked",
            value=stats.revocation_purges,
        )
        yield GaugeMetricFamily(
            "cachet_cache_bytes", "Bytes held by the memory tier", value=self._cache_bytes()
        )
        yield GaugeMetricFamily(
            "cachet_cache_entries", "URLs held by the memory tier", value=self._cache_entries()
        )
        yield CounterMetricFamily(
            "cachet_cache_evictions", "Memory tier evictions", value=self._cache_evictions()
        )
        yield GaugeMetricFamily(
            "cachet_open_connections", "Open client connections", value=self._open_connections()
        )
        yield from _range_and_purge_metrics(stats)
        if self._disk is not None:
            yield from _disk_metrics(stats, self._disk)


class DiskGauges(Protocol):
    """What the collector reads from the disk tier (proxy.cache.tiers.disk.DiskTier)."""

    bytes_used: int
    evictions: int
    corrupt_dropped: int

    @property
    def entries(self) -> int: ...


def _range_and_purge_metrics(stats: ProxyStats) -> Iterator[Metric]:
    yield labelled_counter(
        "cachet_range_requests",
        "GET requests with Range answered from the cache, by answer",
        ["answer"],
        stats.range_requests,
    )
    yield labelled_counter(
        "cachet_purges",
        "Accepted purge operations, by kind and mode",
        ["kind", "mode"],
        stats.purges,
        list,
    )
    yield labelled_counter(
        "cachet_purged_objects", "Cached URLs purged, by mode", ["mode"], stats.purged_objects
    )
    yield labelled_counter(
        "cachet_purges_refused",
        "Purge requests refused, by reason",
        ["reason"],
        stats.purges_refused,
    )


def _disk_metrics(stats: ProxyStats, disk: DiskGauges) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "cachet_disk_bytes", "Bytes held by the disk tier", value=disk.bytes_used
    )
    yield GaugeMetricFamily("cachet_disk_entries", "URLs held by the disk tier", value=disk.entries)
    yield CounterMetricFamily("cachet_disk_evictions", "Disk tier evictions", value=disk.evictions)
    yield CounterMetricFamily(
        "cachet_disk_corrupt_dropped",
        "Disk entries that failed their checksum or header and were deleted",
        value=disk.corrupt_dropped,
    )
    yield CounterMetricFamily(
        "cachet_disk_hits", "Memory misses answered from the disk tier", value=stats.disk_hits
    )
    yield CounterMetricFamily(
        "cachet_disk_reads", "Disk tier entry files read", value=stats.disk_reads
    )
    yield CounterMetricFamily(
        "cachet_disk_puts_dropped",
        "Write-through puts dropped because the disk queue was full",
        value=stats.disk_puts_dropped,
    )


def make_origin_latency(registry: CollectorRegistry) -> Histogram:
    return Histogram(
        "cachet_origin_latency_seconds",
        "Time from sending a request to an origin to its response head",
        buckets=ORIGIN_LATENCY_BUCKETS_S,
        registry=registry,
    )


class SpoolCollector(Collector):
    """One serving process's side of the record pipeline: what it emitted or lost, its spool."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder

    def collect(self) -> Iterator[Metric]:
        recorder = self._recorder
        spool = recorder.spool
        yield CounterMetricFamily(
            "cachet_records_emitted", "Records appended to the spool", value=recorder.emitted
        )
        yield CounterMetricFamily(
            "cachet_records_dropped", "Records lost because the spool was full", value=spool.dropped
        )
        yield GaugeMetricFamily("cachet_spool_bytes", "Bytes in the spool", value=spool.bytes_used)
        yield GaugeMetricFamily(
            "cachet_spool_segments", "Segment files in the spool", value=spool.segments
        )


class PipelineCollector(Collector):
    """The records process's side (sealing, forwarding), read from the status file it writes,
    and how often it was restarted: one per edge, whatever the number of serving processes."""

    def __init__(self, status: Callable[[], PipelineStatus], restarts: Callable[[], int]) -> None:
        self._status = status
        self._restarts = restarts

    def collect(self) -> Iterator[Metric]:
        pipeline = self._status()
        yield CounterMetricFamily(
            "cachet_records_process_restarts",
            "Times the records process (sealer and forwarder) exited and was restarted",
            value=self._restarts(),
        )
        yield GaugeMetricFamily(
            "cachet_records_status_age_seconds",
            "Seconds since the records process last reported (it reports every second)",
            value=max(0.0, time.time() - pipeline.written_at) if pipeline.written_at else 0.0,
        )
        yield CounterMetricFamily(
            "cachet_batches_sealed", "Signed batches sealed", value=pipeline.sealed_batches
        )
        yield CounterMetricFamily(
            "cachet_records_sealed", "Records sealed into batches", value=pipeline.sealed_records
        )
        yield CounterMetricFamily(
            "cachet_records_quarantined",
            "Spool records that failed validation and were set aside",
            value=pipeline.quarantined_records,
        )
        yield GaugeMetricFamily(
            "cachet_seal_latency_seconds",
            "Time the last batch took to seal and sign",
            value=pipeline.last_seal_latency_s,
        )
        if pipeline.forwarding:
            yield GaugeMetricFamily(
                "cachet_forward_lag_batches",
                "Sealed batches not yet acknowledged",
                value=pipeline.lag_count,
            )
            yield GaugeMetricFamily(
                "cachet_forward_lag_seconds",
                "Age of the oldest unacknowledged batch",
                value=pipeline.lag_s,
            )
            yield CounterMetricFamily(
                "cachet_batches_acked",
                "Batches the coordinator acknowledged",
                value=pipeline.acked,
            )
            yield labelled_counter(
                "cachet_forward_failures",
                "Batch sends that failed, by reason",
                ["reason"],
                pipeline.failures,
            )


class RecordCollector(Collector):
    """A single serving process's record pipeline: its spool and the records process it runs."""

    def __init__(self, recorder: Recorder) -> None:
        self._spool = SpoolCollector(recorder)
        self._pipeline = PipelineCollector(
            recorder.pipeline_status, lambda: recorder.pipeline_restarts
        )

    def collect(self) -> Iterator[Metric]:
        yield from self._spool.collect()
        yield from self._pipeline.collect()


# Families a worker counts for purges the supervisor fanned out to it: the supervisor counts
# each purge once itself (who asked, refusals), so the workers' copies are left out.
SUPERVISOR_COUNTED = frozenset({"cachet_purges", "cachet_purges_refused"})
WORKER_LABEL = "worker"


def merge_worker_metrics(expositions: Mapping[int, str]) -> list[Metric]:
    """Each worker's /metrics (Prometheus text) merged into one set of families, every sample
    labelled ``worker="<i>"``: one HELP/TYPE per family, as the text format requires. Raises
    ValueError for a text that is not valid exposition format."""
    merged: dict[str, Metric] = {}
    for index, text in sorted(expositions.items()):
        for family in text_string_to_metric_families(text):
            if family.name in SUPERVISOR_COUNTED:
                continue
            target = merged.get(family.name)
            if target is None:
                target = Metric(family.name, family.documentation, family.type, family.unit)
                merged[family.name] = target
            for sample in family.samples:
                labels = {**sample.labels, WORKER_LABEL: str(index)}
                target.samples.append(sample._replace(labels=labels))
    return list(merged.values())


class WorkerGauges(Protocol):
    """What the supervisor's collector reads about one worker (proxy.supervisor.WorkerHandle)."""

    @property
    def index(self) -> int: ...

    @property
    def serving(self) -> bool: ...

    @property
    def restarts(self) -> int: ...

    @property
    def scrape_failures(self) -> int: ...


class SupervisorCollector(Collector):
    """`cachet proxy --workers N`'s own metrics: its workers, and the purges it fanned out."""

    def __init__(
        self,
        workers: Callable[[], list[WorkerGauges]],
        purges: Mapping[tuple[str, str], int],
        purges_refused: Mapping[str, int],
    ) -> None:
        self._workers = workers
        self._purges = purges
        self._purges_refused = purges_refused

    def collect(self) -> Iterator[Metric]:
        workers = self._workers()
        yield GaugeMetricFamily(
            "cachet_workers", "Worker processes configured (--workers)", value=len(workers)
        )
        yield GaugeMetricFamily(
            "cachet_workers_serving",
            "Worker processes running and listening",
            value=sum(1 for worker in workers if worker.serving),
        )
        by_worker = {str(worker.index): worker for worker in workers}
        yield labelled_counter(
            "cachet_worker_restarts",
            "Times a worker process died and was started again",
            [WORKER_LABEL],
            {name: worker.restarts for name, worker in by_worker.items()},
        )
        yield labelled_counter(
            "cachet_worker_scrape_failures",
            "Scrapes of a worker's metrics that failed (its samples are missing from that scrape)",
            [WORKER_LABEL],
            {name: worker.scrape_failures for name, worker in by_worker.items()},
        )
        yield labelled_counter(
            "cachet_purges",
            "Accepted purge operations, by kind and mode",
            ["kind", "mode"],
            self._purges,
            list,
        )
        yield labelled_counter(
            "cachet_purges_refused",
            "Purge requests refused, by reason",
            ["reason"],
            self._purges_refused,
        )


class FamiliesCollector(Collector):
    """Families built elsewhere (the workers' merged metrics), swapped in before each scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


class TracingCollector(Collector):
    """OpenTelemetry export (proxy.tracing): spans sent, and spans lost with the reason."""

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer

    def collect(self) -> Iterator[Metric]:
        tracer = self._tracer
        yield CounterMetricFamily(
            "cachet_trace_spans_exported",
            "Spans the OTLP endpoint accepted",
            value=tracer.exported,
        )
        dropped = CounterMetricFamily(
            "cachet_trace_spans_dropped",
            "Spans lost: the queue was full, or the OTLP endpoint failed or was too slow",
            labels=["reason"],
        )
        dropped.add_metric(["queue_full"], tracer.dropped_queue_full)
        dropped.add_metric(["export_failed"], tracer.dropped_export_failed)
        yield dropped
        yield GaugeMetricFamily(
            "cachet_trace_spans_queued", "Finished spans waiting for export", value=tracer.queued
        )
