"""Billing's Prometheus metrics, on the coordinator's registry (served at its ``/metrics``).

Per-creator series (``creator`` label) grow with the number of creators, not with traffic.
Counters count what the runner attributed since the process started (Prometheus counters);
the ledger tables hold the durable totals.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from billing.attribution import ATTRIBUTED
from billing.reconcile import Reconciliation


class BillingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        by_creator = ["creator"]
        self.requests = Counter(
            "cachet_billing_requests", "Attributed requests (records), by creator", by_creator,
            registry=r,
        )  # fmt: skip
        self.bytes_served = Counter(
            "cachet_billing_bytes_served", "Body bytes served of attributed records, by creator",
            by_creator, registry=r,
        )  # fmt: skip
        self.bytes_from_cache = Counter(
            "cachet_billing_bytes_from_cache",
            "Bytes served from cache (origin egress saved), by creator", ["creator"], registry=r,
        )  # fmt: skip
        self.records_attributed = Counter(
            "cachet_billing_records_attributed", "Records attributed to a creator", registry=r
        )
        self.records_excluded = Counter(
            "cachet_billing_records_excluded", "Records excluded from billing, by reason",
            ["reason"], registry=r,
        )  # fmt: skip
        self.discrepancies = Gauge(
            "cachet_billing_reconciliation_records",
            "Records of the last reconciled period that were not billed there, by reason"
            " (unexplained-*: no reason; must be 0)", ["reason"], registry=r,
        )  # fmt: skip
        self.close_seconds = Histogram(
            "cachet_billing_period_close_seconds", "Time to close a period", ["kind"],
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120), registry=r,
        )  # fmt: skip

    def note_step(
        self, creator_totals: Mapping[str, Sequence[int]], by_outcome: Tally[str]
    ) -> None:
        """A step's attributed records per creator: (requests, bytes served, bytes from
        cache), unscaled; and its outcome counts."""
        for creator, (requests, served, cached) in creator_totals.items():
            self.requests.labels(creator).inc(requests)
            self.bytes_served.labels(creator).inc(served)
            self.bytes_from_cache.labels(creator).inc(cached)
        for outcome, n in by_outcome.items():
            if outcome == ATTRIBUTED:
                self.records_attributed.inc(n)
            else:
                self.records_excluded.labels(outcome).inc(n)

    def note_reconciliation(self, r: Reconciliation) -> None:
        """The last reconciled (period, edge): records not billed there, by reason."""
        for reason, records in r.differences:
            self.discrepancies.labels(reason).set(records)
        self.discrepancies.labels("duplicates").set(r.duplicates)
        self.discrepancies.labels("unexplained-transport").set(r.unexplained_transport)
        self.discrepancies.labels("unexplained-billing").set(r.unexplained_billing)
