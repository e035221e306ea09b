"""docs/grafana/cachet-dashboard.json parses as a Grafana dashboard and queries only metrics the
code exposes, under the names Prometheus scrapes (counters end in `_total`, histograms in
`_bucket`/`_sum`/`_count`)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana" / "cachet-dashboard.json"
METRIC_SOURCES = (
    ROOT / "proxy" / "metrics.py",
    ROOT / "billing" / "metrics.py",
    ROOT / "billing" / "ledger" / "metrics.py",
)
_DECLARATION = re.compile(
    r"\b(CounterMetricFamily|GaugeMetricFamily|Counter|Gauge|Histogram|labelled_counter)\(\s*\"(cachet_\w+)\""
)
_METRIC_IN_QUERY = re.compile(r"\bcachet_[a-z0-9_]+")
_SUFFIXES = {
    "CounterMetricFamily": ("_total",),
    "labelled_counter": ("_total",),  # proxy/metrics.py: a CounterMetricFamily with labels
    "Counter": ("_total",),
    "GaugeMetricFamily": ("",),
    "Gauge": ("",),
    "Histogram": ("_bucket", "_sum", "_count"),
}


def exposed_metric_names() -> set[str]:
    """Every series name the proxy's and the coordinator's /metrics can expose."""
    names: set[str] = set()
    for source in METRIC_SOURCES:
        for kind, name in _DECLARATION.findall(source.read_text(encoding="utf-8")):
            names.update(name + suffix for suffix in _SUFFIXES[kind])
    return names


def load_dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return document


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def queries(dashboard: dict[str, Any]) -> list[str]:
    return [
        target["expr"] for panel in all_panels(dashboard) for target in panel.get("targets", [])
    ]


def test_the_source_scan_finds_both_processes_metrics() -> None:
    names = exposed_metric_names()
    assert "cachet_requests_total" in names
    assert "cachet_origin_latency_seconds_bucket" in names
    assert "cachet_coordinator_checkpoint_age_seconds" in names
    assert "cachet_billing_period_close_seconds_bucket" in names
    assert "cachet_requests" not in names  # a counter is scraped with its _total suffix


def test_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = load_dashboard()
    assert dashboard["title"] and dashboard["uid"]
    assert isinstance(dashboard["schemaVersion"], int)
    panel_ids = [panel["id"] for panel in all_panels(dashboard)]
    assert len(panel_ids) == len(set(panel_ids))
    for panel in all_panels(dashboard):
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        for target in panel.get("targets", []):
            assert target["refId"] and target["expr"]


def test_every_queried_metric_exists_in_the_code() -> None:
    exposed = exposed_metric_names()
    used = {name for expr in queries(load_dashboard()) for name in _METRIC_IN_QUERY.findall(expr)}
    assert used, "the dashboard queries no cachet metric"
    assert used <= exposed, sorted(used - exposed)


def test_dashboard_shows_the_signals_operations_md_tells_to_alert_on() -> None:
    used = {name for expr in queries(load_dashboard()) for name in _METRIC_IN_QUERY.findall(expr)}
    for name in (
        "cachet_records_dropped_total",
        "cachet_forward_lag_seconds",
        "cachet_forward_failures_total",
        "cachet_coordinator_batches_rejected_total",
        "cachet_coordinator_checkpoint_age_seconds",
        "cachet_billing_reconciliation_records",
    ):
        assert name in used, name
