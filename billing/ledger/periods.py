"""Pure helpers of the ledger: period ids, usage rows to ``Bucket``s, statements back from JSON.
No I/O, no clock. (A statement's leaf in the global log: ``provenance.statement_leaves``.)

A period id is ``<kind>-<start>`` with the start as ``YYYY-MM-DDTHH:MM:SSZ``, e.g.
``day-2026-11-27T00:00:00Z`` (the same form as the admin UI's ``format_period_ref``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from billing.aggregate import Bucket, BucketKey, _bucket_from, add_sums
from billing.statements import DAY, HOUR, MONTH, Period, Statement, StatementLine
from provenance.errors import FormatError
from provenance.records import parse_timestamp, sample_rate_ppm

PERIOD_KINDS = (HOUR, DAY, MONTH)
_START_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def format_period_id(period: Period) -> str:
    return f"{period.kind}-{period.start.astimezone(UTC).strftime(_START_FORMAT)}"


def parse_period_id(text: str) -> Period:
    """The period named ``text``; FormatError unless it is a well-aligned hour, day or month."""
    kind, _, start_text = text.partition("-")
    if kind not in PERIOD_KINDS:
        raise FormatError(f"period kind must be one of {', '.join(PERIOD_KINDS)}")
    try:
        start = datetime.strptime(start_text, _START_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise FormatError("period start must look like 2026-11-27T00:00:00Z") from None
    return aligned_period(kind, start)


def aligned_period(kind: str, start: datetime) -> Period:
    """Period(kind, start) if ``start`` is on a ``kind`` boundary; FormatError otherwise."""
    if kind not in PERIOD_KINDS:
        raise FormatError(f"period kind must be one of {', '.join(PERIOD_KINDS)}")
    aligned = start.minute == start.second == start.microsecond == 0
    if kind in (DAY, MONTH):
        aligned = aligned and start.hour == 0
    if kind == MONTH:
        aligned = aligned and start.day == 1
    if not aligned:
        raise FormatError(f"a {kind} period starts on a {kind} boundary (UTC)")
    return Period(kind, start.astimezone(UTC))


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One stored usage row: integer sums of one sample rate (squares for the variance)."""

    start: str
    creator: str
    content_id: str
    manifest_id: str
    edge: str
    use: str
    sample_rate: str
    sums: tuple[int, int, int, int, int, int, int, int]  # as aggregate._sum_raw orders them


def buckets_from_rows(rows: Iterable[UsageRow]) -> list[Bucket]:
    """Buckets (one per key) from usage rows, the same as aggregating their records."""
    grouped: dict[BucketKey, dict[int, list[int]]] = {}
    for row in rows:
        key = BucketKey(parse_timestamp(row.start), row.creator, row.content_id,
                        row.manifest_id, row.edge, row.use)  # fmt: skip
        add_sums(grouped.setdefault(key, {}), sample_rate_ppm(row.sample_rate), row.sums)
    return [_bucket_from(key, per_rate) for key, per_rate in sorted(grouped.items())]


def statement_from_json(text: str) -> Statement:
    """A stored statement (``statement_to_obj`` JSON) back as a ``Statement``."""
    obj = json.loads(text)
    period = Period(obj["period"]["kind"], parse_timestamp(obj["period"]["start"]))
    lines = tuple(
        StatementLine(
            x["content_id"],
            x["manifest_id"],
            x["use"],
            x["adjustment_of"],
            x["requests"],
            x["hits"],
            x["bytes_served"],
            x["bytes_from_cache"],
            tuple(x["sample_rates"]),
            x["requests_std_error"],
            x["rates_source"],
            x["amount_micros"],
        )
        for x in obj["lines"]
    )
    return Statement(
        obj["creator"], period, obj["currency"], lines, obj["gross_micros"], obj["fee_micros"],
        obj["net_micros"], obj["carried_in_micros"], obj["payout_micros"],
        obj["carry_out_micros"], obj["sha256"],
    )  # fmt: skip
