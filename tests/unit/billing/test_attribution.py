"""Attribution (issue 6 "Attribution"): each deduplicated record goes to the manifest version
active for its content id at the record's timestamp; unknown, revoked (after grace), hash
mismatch, non-billable and upstream_of duplicates are excluded, each with a reason kept and
counted."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.attribution import (
    ATTRIBUTED,
    EXCLUSION_REASONS,
    Attributed,
    Excluded,
    attribute,
    attribute_all,
    count_outcomes,
)
from provenance.records import Record
from tests.unit.billing.billing_builders import (
    CID_B,
    CID_GONE,
    CID_NONE,
    MAN_A1,
    MAN_A2,
    MAN_B,
    MAN_GONE,
    NOW,
    is_revoked_at,
    make_record,
    manifest_active_at,
    records,
)


def _attr(record: Record) -> Attributed | Excluded:
    return attribute(record, manifest_active_at, now=NOW, is_revoked_at=is_revoked_at)


def test_goes_to_the_manifest_version_active_at_the_record_timestamp() -> None:
    """Issue 6: "goes to the manifest version that was active ... at the record's timestamp"."""
    before = _attr(make_record(ts="2026-11-27T05:59:59.999Z", manifest=MAN_A2))
    after = _attr(make_record(ts="2026-11-27T06:00:00.000Z", manifest=MAN_A1))
    assert isinstance(before, Attributed) and before.manifest_id == MAN_A1
    assert isinstance(after, Attributed) and after.manifest_id == MAN_A2
    assert before.creator == after.creator == "alice"


def test_creator_comes_from_the_registry_not_the_record() -> None:
    out = _attr(make_record(content_id=CID_B, manifest=MAN_B, creator="mallory"))
    assert isinstance(out, Attributed) and out.creator == "bob"


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (make_record(sample_rate="0"), "invalid"),
        (make_record(ts="2026-11-27T12:05:00.001Z"), "invalid"),
        (make_record(upstream_of="edge-child"), "upstream-duplicate"),
        (make_record(method="POST"), "non-billable"),
        (make_record(cache="bypass", tier="origin"), "non-billable"),
        (make_record(cache="error", tier="none", status=502), "non-billable"),
        (make_record(status=404), "non-billable"),
        (make_record(content_id=None, manifest=None, creator=None), "unknown-content"),
        (make_record(content_id=CID_NONE, manifest=None, creator=None), "unknown-content"),
        (make_record(manifest=None), "hash-mismatch"),
        (make_record(content_id=CID_GONE, manifest=MAN_GONE), "revoked"),
    ],
)
def test_each_exclusion_has_its_reason(record: Record, reason: str) -> None:
    """Issue 6: excluded "each with a reason that is kept and counted"."""
    out = _attr(record)
    assert isinstance(out, Excluded)
    assert out.reason == reason
    assert out.detail


def test_future_skew_is_tolerated_up_to_the_limit() -> None:
    assert isinstance(_attr(make_record(ts="2026-11-27T12:05:00.000Z")), Attributed)


def test_304_and_206_bill() -> None:
    for record in (make_record(status=304), make_record(status=206)):
        assert isinstance(_attr(record), Attributed)


@pytest.mark.parametrize(
    "record",
    [
        make_record(method="HEAD", bytes=0),  # a HEAD hit names its content (and is vouched)
        make_record(method="HEAD", bytes=0, status=304, cache="revalidated"),
        make_record(method="HEAD", bytes=0, cache="miss", tier="origin", content_id=None,
                    manifest=None, creator=None),  # a HEAD miss hashes no body: no content id
    ],
)  # fmt: skip
def test_head_serves_no_content_so_it_does_not_bill(record: Record) -> None:
    """docs/billing.md §1: creators are paid for their content served (hits, bytes); a HEAD
    answer carries none. It is ``non-billable`` whether or not the edge knew the content (a HEAD
    miss is not ``unknown-content``, which would hint at a registry problem)."""
    out = _attr(record)
    assert isinstance(out, Excluded)
    assert (out.reason, out.detail) == ("non-billable", "HEAD serves no content")


def test_revoked_content_bills_within_the_grace_window() -> None:
    """Issue 6: "revoked content (after its grace window)" is excluded, not before: the registry
    keeps the version active until revocation + grace (here 00:00 + 1 h)."""
    in_grace = make_record(content_id=CID_GONE, manifest=MAN_GONE, ts="2026-11-26T00:59:59.999Z")
    out = _attr(in_grace)
    assert isinstance(out, Attributed) and out.manifest_id == MAN_GONE
    at_end = make_record(content_id=CID_GONE, manifest=MAN_GONE, ts="2026-11-26T01:00:00.000Z")
    out = _attr(at_end)
    assert isinstance(out, Excluded) and out.reason == "revoked"


def test_content_claimed_again_after_a_revocation_bills_to_the_new_claim() -> None:
    def registry(content_id: str, ts: str) -> tuple[str, str, object] | None:
        return (MAN_B, "bob", None)

    out = attribute(make_record(content_id=CID_GONE, manifest=MAN_B), registry, now=NOW,
                    is_revoked_at=is_revoked_at)  # fmt: skip
    assert isinstance(out, Attributed) and out.creator == "bob"


@given(st.lists(records(), max_size=60))
@settings(max_examples=60, deadline=None)
def test_every_record_gets_exactly_one_outcome(batch: list[Record]) -> None:
    """Issue 6: counts by reason + attributed = input, for any input."""
    outcomes = attribute_all(
        batch, manifest_active_at, now=NOW + timedelta(days=2), is_revoked_at=is_revoked_at
    )
    assert [o.record for o in outcomes] == batch
    counts = count_outcomes(outcomes)
    assert set(counts) == {ATTRIBUTED, *EXCLUSION_REASONS}
    assert sum(counts.values()) == len(batch)
    for outcome in outcomes:
        if isinstance(outcome, Excluded):
            assert outcome.reason in EXCLUSION_REASONS
