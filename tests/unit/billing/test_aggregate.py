"""Aggregation (issue 6 "Aggregation"): hourly and daily buckets per creator x content x edge x
use; sampled records scaled by 1/p exactly, with p and the uncertainty carried."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from billing.aggregate import DAY, HOUR, aggregate, roll_up_to_days
from billing.attribution import Attributed, attribute_all
from provenance.records import Record, sample_rate_ppm
from tests.unit.billing.billing_builders import (
    CID_A,
    MAN_A2,
    NOW,
    is_revoked_at,
    make_record,
    manifest_active_at,
    records,
)


def _attributed(batch: list[Record]) -> list[Attributed]:
    outcomes = attribute_all(batch, manifest_active_at, now=NOW + timedelta(days=3),
                             is_revoked_at=is_revoked_at)  # fmt: skip
    return [o for o in outcomes if isinstance(o, Attributed)]


def test_hourly_bucket_counts_requests_hits_bytes_and_savings() -> None:
    """Issue 6: "requests, hits, bytes served, bytes served from cache, origin bytes saved"."""
    batch = [
        make_record("h1", "2026-11-27T10:01:00.000Z", bytes=1000),
        make_record("h2", "2026-11-27T10:59:59.999Z", bytes=500, cache="stale", tier="disk"),
        make_record(
            "m1",
            "2026-11-27T10:30:00.000Z",
            bytes=800,
            cache="miss",
            tier="origin",
            origin_bytes=800,
        ),
        make_record("x1", "2026-11-27T11:00:00.000Z", bytes=7),
    ]
    buckets = aggregate(_attributed(batch), HOUR)
    assert len(buckets) == 2
    ten = next(b for k, b in buckets.items() if k.start.hour == 10)
    assert ten.key.start == datetime(2026, 11, 27, 10, tzinfo=UTC)
    assert (ten.key.creator, ten.key.content_id, ten.key.manifest_id) == ("alice", CID_A, MAN_A2)
    assert (ten.key.edge, ten.key.use) == ("edge-a", "view")
    assert ten.requests.value == 3 and ten.hits.value == 2
    assert ten.bytes_served.value == 2300 and ten.bytes_from_cache.value == 1500
    assert ten.origin_bytes_saved.value == 1500
    assert ten.requests.variance == 0 and not ten.is_sampled


def test_sampled_records_scale_by_one_over_p_exactly() -> None:
    """Issue 6: "Sampled records are scaled by 1/p" (exactly, no float)."""
    batch = [make_record(f"s{i}", sample_rate="0.3", bytes=10) for i in range(2)]
    (bucket,) = aggregate(_attributed(batch), HOUR).values()
    assert bucket.requests.value == Fraction(20, 3)
    assert bucket.bytes_served.value == Fraction(200, 3)
    assert bucket.sample_rates_ppm == {300_000} and bucket.is_sampled
    # binomial variance of the scaled count n/p: n (1 - p) / p^2
    assert bucket.requests.variance == 2 * Fraction(7, 10) / Fraction(9, 100)
    assert bucket.requests.std_error() == Fraction(3944, 1000)  # sqrt(15.555...) = 3.944...


def test_uses_and_edges_get_their_own_buckets() -> None:
    batch = [make_record("a"), make_record("b", use="training"), make_record("c", edge="edge-b")]
    assert len(aggregate(_attributed(batch), DAY)) == 3


@given(st.lists(records(), max_size=80))
@settings(max_examples=50, deadline=None)
def test_scaling_is_exact_and_days_roll_up_from_hours(batch: list[Record]) -> None:
    """Scaled totals equal the exact sum of x/p; daily = rolled-up hourly; nothing lost."""
    attributed = _attributed(batch)
    hourly = aggregate(attributed, HOUR)
    daily = aggregate(attributed, DAY)
    assert roll_up_to_days(hourly.values()) == daily
    expected_requests = sum(
        (Fraction(10**6, sample_rate_ppm(a.record.sample_rate)) for a in attributed), Fraction(0)
    )
    expected_bytes = sum(
        (Fraction(a.record.bytes * 10**6, sample_rate_ppm(a.record.sample_rate))
         for a in attributed),
        Fraction(0),
    )  # fmt: skip
    assert sum((b.requests.value for b in daily.values()), Fraction(0)) == expected_requests
    assert sum((b.bytes_served.value for b in hourly.values()), Fraction(0)) == expected_bytes
    assert sum(b.records for b in hourly.values()) == len(attributed)
    for b in hourly.values():
        assert b.hits.value <= b.requests.value
        assert b.bytes_from_cache.value <= b.bytes_served.value
        assert (b.requests.variance == 0) == (not b.is_sampled)
