"""Prometheus metrics of the coordinator, on a registry of their own (one per app)."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge


class CoordinatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.batches_accepted = Counter(
            "cachet_coordinator_batches_accepted", "Batches accepted into the log", registry=r
        )
        self.batches_duplicate = Counter(
            "cachet_coordinator_batches_duplicate",
            "Batches received again and acknowledged without storing",
            registry=r,
        )
        self.batches_rejected = Counter(
            "cachet_coordinator_batches_rejected",
            "Batches refused, by reason",
            ["reason"],
            registry=r,
        )
        self.records_ingested = Counter(
            "cachet_coordinator_records_ingested", "Records stored (deduplicated)", registry=r
        )
        self.records_duplicate = Counter(
            "cachet_coordinator_records_duplicate",
            "Records whose request id was already held by a preferred record",
            registry=r,
        )
        self.log_size = Gauge("cachet_coordinator_log_size", "Leaves in the log", registry=r)
        self.checkpoint_size = Gauge(
            "cachet_coordinator_checkpoint_size", "Tree size of the latest checkpoint", registry=r
        )
        self._checkpoint_at: float | None = None
        self._clock: Callable[[], float] = time.monotonic
        age = Gauge(
            "cachet_coordinator_checkpoint_age_seconds",
            "Seconds since the latest checkpoint was signed (-1: none yet)",
            registry=r,
        )
        age.set_function(self._checkpoint_age_s)

    def note_checkpoint(self, size: int) -> None:
        self.checkpoint_size.set(size)
        self._checkpoint_at = self._clock()

    def _checkpoint_age_s(self) -> float:
        return -1.0 if self._checkpoint_at is None else self._clock() - self._checkpoint_at
