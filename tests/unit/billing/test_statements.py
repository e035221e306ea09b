"""Periods and statements (issue 6 "Periods and statements"): close a period (hour, day, month)
into an immutable statement per creator with line items, totals and a hash; late records become
adjustments in the next open period; settlement export as CSV and JSON, one line per creator,
totals that add up."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from billing.aggregate import HOUR as HOURLY
from billing.aggregate import Bucket, aggregate
from billing.attribution import Attributed, attribute_all
from billing.pricing import PricingRules, Rates
from billing.statements import (
    DAY,
    EXPORT_COLUMNS,
    HOUR,
    MONTH,
    TOTAL_ROW,
    Period,
    Statement,
    close_period,
    export_csv,
    export_json,
    hash_statement,
    period_containing,
    period_for,
    settlement_rows,
)
from provenance.manifests import PayoutTerms
from provenance.records import Record
from tests.unit.billing.billing_builders import (
    CID_A,
    CID_B,
    MAN_A2,
    NOW,
    is_revoked_at,
    make_record,
    manifest_active_at,
    records,
)

GB = 10**9
DAY_27 = Period(DAY, datetime(2026, 11, 27, tzinfo=UTC))
VIEW_RATES = Rates(per_hit_micros=7, per_gb_micros=20_000, savings_share=Fraction(3, 20))
RULES = PricingRules(view=VIEW_RATES, training=Rates(per_hit_micros=50),
                     origin_cost_per_gb_micros=80_000, edge_cost_per_gb_micros=20_000,
                     platform_fee_bps=2000)  # fmt: skip


def _buckets(batch: list[Record]) -> list[Bucket]:
    outcomes = attribute_all(batch, manifest_active_at, now=NOW + timedelta(days=3),
                             is_revoked_at=is_revoked_at)  # fmt: skip
    return list(aggregate([o for o in outcomes if isinstance(o, Attributed)], HOURLY).values())


def test_period_boundaries_are_utc_hours_days_and_calendar_months() -> None:
    """Issue 6: "Close a period (hour, day, month)"."""
    moment = datetime(2026, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    assert period_containing(moment, HOUR).end == datetime(2027, 1, 1, tzinfo=UTC)
    assert period_containing(moment, DAY).start == datetime(2026, 12, 31, tzinfo=UTC)
    month = period_containing(moment, MONTH)
    assert (month.start, month.end) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    feb = period_containing(datetime(2028, 2, 29, 12, tzinfo=UTC), MONTH)
    assert feb.end == datetime(2028, 3, 1, tzinfo=UTC)


def test_late_record_lands_in_the_first_open_period_as_an_adjustment() -> None:
    """Issue 6: "Records that arrive after a close become adjustments in the next open period"."""
    served = datetime(2026, 11, 25, 13, tzinfo=UTC)
    closed_until = datetime(2026, 11, 27, tzinfo=UTC)
    assert period_for(served, DAY, closed_until) == (DAY_27, True)
    assert period_for(served, DAY, None) == (Period(DAY, datetime(2026, 11, 25, tzinfo=UTC)), False)
    on_time = datetime(2026, 11, 27, 0, 0, tzinfo=UTC)
    assert period_for(on_time, DAY, closed_until) == (DAY_27, False)


def test_statement_lines_totals_fee_and_hash() -> None:
    batch = [
        make_record("a1", bytes=GB),
        make_record("a2", "2026-11-27T11:00:00.000Z", bytes=GB, edge="edge-b"),
        make_record("b1", content_id=CID_B, manifest=None, creator=None, bytes=3 * GB),
        make_record("t1", use="training", bytes=0),
        make_record("late", "2026-11-26T10:00:00.000Z", bytes=GB),
    ]
    statements = close_period(DAY_27, _buckets(batch), RULES)
    alice = statements["alice"]
    assert [line.adjustment_of for line in alice.lines] == [None, None, "2026-11-26T00:00:00.000Z"]
    training, view, late = alice.lines  # sorted: adjustments last, then content, manifest, use
    assert (view.content_id, view.manifest_id, view.use) == (CID_A, MAN_A2, "view")
    assert (view.requests, view.hits, view.bytes_served) == ("2", "2", str(2 * GB))
    # 2 hits x 7 + 2 GB x 20,000 + 2 GB x 60,000 x 15% = 14 + 40,000 + 18,000
    assert view.amount_micros == 58_014
    assert training.use == "training" and training.amount_micros == 50
    assert late.amount_micros == 29_007
    assert alice.gross_micros == sum(line.amount_micros for line in alice.lines)
    assert alice.fee_micros == round(alice.gross_micros * Fraction(2, 10))
    assert alice.net_micros == alice.gross_micros - alice.fee_micros
    assert alice.sha256 == hash_statement(alice) and len(alice.sha256) == 64
    assert set(statements) == {"alice", "bob"}


def test_hash_covers_every_field() -> None:
    alice = close_period(DAY_27, _buckets([make_record()]), RULES)["alice"]
    assert hash_statement(replace(alice, payout_micros=alice.payout_micros + 1)) != alice.sha256
    line = replace(alice.lines[0], amount_micros=alice.lines[0].amount_micros + 1)
    assert hash_statement(replace(alice, lines=(line,))) != alice.sha256


def test_statement_says_when_and_how_it_sampled() -> None:
    """Issue 6: "statements say so (with p and the resulting uncertainty)"."""
    batch = [make_record(f"s{i}", sample_rate="0.25") for i in range(3)]
    (line,) = close_period(DAY_27, _buckets(batch), RULES)["alice"].lines
    assert (line.requests, line.sample_rates) == ("12", ("0.25",))
    assert line.requests_std_error == "6"  # sqrt(n (1 - p) / p^2) = sqrt(3 x 0.75 / 0.0625)


def test_manifest_terms_override_view_rates() -> None:
    terms = {MAN_A2: PayoutTerms(per_hit_micros=1000, per_gb_micros=0)}
    rules = PricingRules(view=Rates(per_hit_micros=1))
    (line,) = close_period(DAY_27, _buckets([make_record()]), rules, terms_of=terms)["alice"].lines
    assert line.amount_micros == 1000 and line.rates_source == "manifest"


def test_minimum_payout_carries_forward_until_reached() -> None:
    """Issue 6: "a minimum payout with carry-forward"."""
    rules = PricingRules(view=Rates(per_hit_micros=400), minimum_payout_micros=1000)
    day1 = close_period(DAY_27, _buckets([make_record("x", bytes=1), make_record("y")]), rules)
    assert (day1["alice"].payout_micros, day1["alice"].carry_out_micros) == (0, 800)
    day28 = Period(DAY, DAY_27.end)
    carried = {"alice": 800, "zoe": 5}
    day2 = close_period(day28, _buckets([make_record("z", "2026-11-28T01:00:00.000Z")]), rules,
                        carried_in=carried)  # fmt: skip
    assert (day2["alice"].payout_micros, day2["alice"].carry_out_micros) == (1200, 0)
    assert day2["zoe"].lines == () and day2["zoe"].carry_out_micros == 5


def test_export_csv_and_json_one_line_per_creator_with_a_total() -> None:
    """Issue 6: "Settlement export per period as CSV and JSON, one line per creator"."""
    batch = [make_record("a"), make_record("b", content_id=CID_B, manifest=None, creator=None)]
    statements = close_period(DAY_27, _buckets(batch), RULES).values()
    rows = list(csv.DictReader(io.StringIO(export_csv(statements))))
    assert [row["creator"] for row in rows] == ["alice", "bob", TOTAL_ROW]
    assert tuple(rows[0]) == EXPORT_COLUMNS
    data = json.loads(export_json(statements))
    assert [row["creator"] for row in data["rows"]] == ["alice", "bob"]
    assert data["total"]["gross_micros"] == sum(r["gross_micros"] for r in data["rows"])


def _check_statement(s: Statement) -> None:
    assert s.gross_micros == sum(line.amount_micros for line in s.lines)
    assert s.net_micros == s.gross_micros - s.fee_micros
    assert s.carried_in_micros + s.net_micros == s.payout_micros + s.carry_out_micros
    assert s.sha256 == hash_statement(s)


@given(st.lists(records(), max_size=60), st.integers(0, 10**5), st.integers(0, 10_000))
@settings(max_examples=40, deadline=None)
def test_totals_always_add_up_and_carry_forward_conserves_money(
    batch: list[Record], minimum: int, fee_bps: int
) -> None:
    """Issue 6 "totals that add up", over random inputs: lines sum to each statement's gross,
    rows sum to the export total, and money is conserved across periods with carry-forward."""
    rules = replace(RULES, minimum_payout_micros=minimum, platform_fee_bps=fee_bps)
    buckets = _buckets(batch)
    carried: dict[str, int] = {}
    paid = net = 0
    for start in (datetime(2026, 11, 26, tzinfo=UTC), datetime(2026, 11, 27, tzinfo=UTC)):
        period = Period(DAY, start)
        mine = [b for b in buckets if period.contains(b.key.start)]
        statements = close_period(period, mine, rules, carried_in=carried)
        for s in statements.values():
            _check_statement(s)
        rows = settlement_rows(statements.values())
        for column in EXPORT_COLUMNS[4:11]:
            assert rows[-1][column] == sum(int(r[column]) for r in rows[:-1])
        csv_rows = list(csv.DictReader(io.StringIO(export_csv(statements.values()))))
        assert int(csv_rows[-1]["payout_micros"]) == sum(
            int(r["payout_micros"]) for r in csv_rows[:-1]
        )
        paid += sum(s.payout_micros for s in statements.values())
        net += sum(s.net_micros for s in statements.values())
        carried = {c: s.carry_out_micros for c, s in statements.items()}
    assert paid + sum(carried.values()) == net
