"""Periods, statements and settlement exports (issue 6 "Periods and statements"). Pure.

Periods are UTC hours, days or calendar months, half-open ``[start, end)``. Closing a period
turns its buckets into one immutable ``Statement`` per creator: line items (one per content id x
manifest x use, plus adjustment lines for late records, each rounded once), the gross, the
platform fee line, the net, the carry-forward and a SHA-256 over the statement's RFC 8785
canonical JSON. A closed statement is never rewritten: a record whose period is already closed
lands in the first open period as an adjustment line naming the period it belongs to
(``period_for``).

Minimum payout with carry-forward: ``available = carried_in + net``; if it reaches the minimum it
is all paid (``carry_out = 0``), else nothing is paid and ``carry_out = available``; so
``carried_in + net == payout + carry_out`` always.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from fractions import Fraction

from billing.aggregate import Bucket, merge_buckets
from billing.pricing import PricingRules, Usage, platform_fee_micros, price_line
from provenance.canonical_json import canonicalize
from provenance.manifests import PayoutTerms
from provenance.records import SAMPLE_RATE_SCALE, format_timestamp

HOUR = "hour"
DAY = "day"
MONTH = "month"
TOTAL_ROW = "#total"  # not a valid account name, so it never collides with a creator
EXPORT_COLUMNS = (
    "period_start", "period_end", "creator", "currency", "lines", "gross_micros", "fee_micros",
    "net_micros", "carried_in_micros", "payout_micros", "carry_out_micros", "statement_sha256",
)  # fmt: skip
_SUMMED = EXPORT_COLUMNS[4:11]


@dataclass(frozen=True, slots=True, order=True)
class Period:
    kind: str
    start: datetime

    @property
    def end(self) -> datetime:
        if self.kind == HOUR:
            return self.start + timedelta(hours=1)
        if self.kind == DAY:
            return self.start + timedelta(days=1)
        year, month = divmod(self.start.month, 12)
        return self.start.replace(year=self.start.year + year, month=month + 1)

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def period_containing(moment: datetime, kind: str) -> Period:
    """The UTC hour, day or month holding ``moment``."""
    start = moment.replace(minute=0, second=0, microsecond=0)
    if kind == HOUR:
        return Period(kind, start)
    if kind == DAY:
        return Period(kind, start.replace(hour=0))
    if kind == MONTH:
        return Period(kind, start.replace(day=1, hour=0))
    raise ValueError(f"period kind must be hour, day or month, not {kind!r}")


def period_for(
    served_at: datetime, kind: str, closed_until: datetime | None
) -> tuple[Period, bool]:
    """Where a record lands: its own period, or (if that one is closed, i.e. ends at or before
    ``closed_until``) the first open period, as an adjustment. Returns (period, is_adjustment)."""
    own = period_containing(served_at, kind)
    if closed_until is None or own.end > closed_until:
        return own, False
    return period_containing(closed_until, kind), True


@dataclass(frozen=True, slots=True)
class StatementLine:
    content_id: str
    manifest_id: str
    use: str
    adjustment_of: str | None  # start of the closed period a late record belonged to
    requests: str  # exact decimal, or rounded to 3 decimals when sampling made it fractional
    hits: str
    bytes_served: str
    bytes_from_cache: str
    sample_rates: tuple[str, ...]  # "1" when not sampled
    requests_std_error: str
    rates_source: str
    amount_micros: int


@dataclass(frozen=True, slots=True)
class Statement:
    creator: str
    period: Period
    currency: str
    lines: tuple[StatementLine, ...]
    gross_micros: int
    fee_micros: int
    net_micros: int
    carried_in_micros: int
    payout_micros: int
    carry_out_micros: int
    sha256: str = ""


def format_quantity(value: Fraction) -> str:
    """An integer exactly; a fraction (from 1/p scaling) rounded half-even to 3 decimals."""
    if value.denominator == 1:
        return str(value.numerator)
    thousandths = round(value * 1000)
    sign = "-" if thousandths < 0 else ""
    whole, frac = divmod(abs(thousandths), 1000)
    return f"{sign}{whole}.{frac:03d}"


def _rate_text(ppm: int) -> str:
    """ppm as the record's canonical sample_rate text: "1", "0.25", "0.001"."""
    if ppm == SAMPLE_RATE_SCALE:
        return "1"
    return "0." + f"{ppm:06d}".rstrip("0")


def _line(bucket: Bucket, adjustment_of: Period | None, rules: PricingRules,
          terms: PayoutTerms | None) -> StatementLine:  # fmt: skip
    k = bucket.key
    usage = Usage(bucket.hits.value, bucket.bytes_served.value, bucket.bytes_from_cache.value)
    price = price_line(usage, use=k.use, content_id=k.content_id, creator=k.creator,
                       rules=rules, terms=terms)  # fmt: skip
    return StatementLine(
        k.content_id, k.manifest_id, k.use,
        None if adjustment_of is None else format_timestamp(adjustment_of.start),
        format_quantity(bucket.requests.value), format_quantity(bucket.hits.value),
        format_quantity(bucket.bytes_served.value), format_quantity(bucket.bytes_from_cache.value),
        tuple(_rate_text(p) for p in sorted(bucket.sample_rates_ppm, reverse=True)),
        format_quantity(bucket.requests.std_error()), price.rates_source, price.amount_micros,
    )  # fmt: skip


def _group_lines(
    period: Period, buckets: Iterable[Bucket]
) -> dict[str, dict[tuple[str, str, str, Period | None], list[Bucket]]]:
    groups: dict[str, dict[tuple[str, str, str, Period | None], list[Bucket]]] = {}
    for b in buckets:
        k = b.key
        if k.start >= period.end:
            raise ValueError(f"bucket at {k.start.isoformat()} is after {period}")
        origin = None if period.contains(k.start) else period_containing(k.start, period.kind)
        line_key = (k.content_id, k.manifest_id, k.use, origin)
        groups.setdefault(k.creator, {}).setdefault(line_key, []).append(b)
    return groups


def close_period(
    period: Period,
    buckets: Iterable[Bucket],
    rules: PricingRules,
    *,
    terms_of: Mapping[str, PayoutTerms] | None = None,
    carried_in: Mapping[str, int] | None = None,
) -> dict[str, Statement]:
    """One statement per creator for ``period``. ``buckets`` are those that land in it: buckets
    inside the period, and buckets of late records from closed periods (before ``period``),
    which become adjustment lines. ``terms_of`` maps manifest ids to payout terms;
    ``carried_in`` the carry-forward of each creator from the previous period."""
    terms_of = terms_of or {}
    carried_in = carried_in or {}
    groups = _group_lines(period, buckets)
    statements = {}
    for creator in sorted(set(groups) | {c for c, v in carried_in.items() if v}):
        lines = []
        for (_cid, mid, _use, origin), group in sorted(
            groups.get(creator, {}).items(), key=lambda item: _sort_key(item[0])
        ):
            merged = merge_buckets(group[0].key, group)
            lines.append(_line(merged, origin, rules, terms_of.get(mid)))
        statements[creator] = _statement(creator, period, tuple(lines), rules,
                                         carried_in.get(creator, 0))  # fmt: skip
    return statements


def _sort_key(key: tuple[str, str, str, Period | None]) -> tuple[str, str, str, str]:
    cid, mid, use, origin = key
    return ("" if origin is None else format_timestamp(origin.start), cid, mid, use)


def _statement(creator: str, period: Period, lines: tuple[StatementLine, ...],
               rules: PricingRules, carried_in_micros: int) -> Statement:  # fmt: skip
    gross = sum(line.amount_micros for line in lines)
    fee = platform_fee_micros(gross, rules)
    net = gross - fee
    available = carried_in_micros + net
    paid = available >= rules.minimum_payout_micros and available > 0
    payout, carry_out = (available, 0) if paid else (0, available)
    unsigned = Statement(creator, period, rules.currency, lines, gross, fee, net,
                         carried_in_micros, payout, carry_out)  # fmt: skip
    return replace(unsigned, sha256=hash_statement(unsigned))


def statement_to_obj(s: Statement) -> dict[str, object]:
    """The statement as JSON-ready data (only strings, ints, lists, null)."""
    return {
        "creator": s.creator, "currency": s.currency, "period": {
            "kind": s.period.kind, "start": format_timestamp(s.period.start),
            "end": format_timestamp(s.period.end)},
        "lines": [{
            "content_id": x.content_id, "manifest_id": x.manifest_id, "use": x.use,
            "adjustment_of": x.adjustment_of, "requests": x.requests, "hits": x.hits,
            "bytes_served": x.bytes_served, "bytes_from_cache": x.bytes_from_cache,
            "sample_rates": list(x.sample_rates), "requests_std_error": x.requests_std_error,
            "rates_source": x.rates_source, "amount_micros": x.amount_micros} for x in s.lines],
        "gross_micros": s.gross_micros, "fee_micros": s.fee_micros, "net_micros": s.net_micros,
        "carried_in_micros": s.carried_in_micros, "payout_micros": s.payout_micros,
        "carry_out_micros": s.carry_out_micros, "sha256": s.sha256,
    }  # fmt: skip


def hash_statement(s: Statement) -> str:
    """Hex SHA-256 of the RFC 8785 canonical JSON of the statement without its ``sha256``."""
    obj = statement_to_obj(s)
    del obj["sha256"]
    return hashlib.sha256(canonicalize(obj)).hexdigest()


def settlement_rows(statements: Iterable[Statement]) -> list[dict[str, str | int]]:
    """One row per creator (sorted), then the ``#total`` row: the column sums of those rows."""
    rows: list[dict[str, str | int]] = []
    for s in sorted(statements, key=lambda st: st.creator):
        values = (len(s.lines), s.gross_micros, s.fee_micros, s.net_micros,
                  s.carried_in_micros, s.payout_micros, s.carry_out_micros)  # fmt: skip
        head = (format_timestamp(s.period.start), format_timestamp(s.period.end), s.creator,
                s.currency)  # fmt: skip
        rows.append(dict(zip(EXPORT_COLUMNS, (*head, *values, s.sha256), strict=True)))
    if len({row["currency"] for row in rows}) > 1 or len({row["period_start"] for row in rows}) > 1:
        raise ValueError("a settlement export holds one period in one currency")
    total: dict[str, str | int] = dict.fromkeys(EXPORT_COLUMNS, "")
    total["creator"] = TOTAL_ROW
    if rows:
        total.update({c: rows[0][c] for c in ("period_start", "period_end", "currency")})
    for column in _SUMMED:
        total[column] = sum(int(row[column]) for row in rows)
    return [*rows, total]


def export_csv(statements: Iterable[Statement]) -> str:
    """Settlement CSV (RFC 4180, CRLF): header, one row per creator, the ``#total`` row."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(settlement_rows(statements))
    return out.getvalue()


def export_json(statements: Iterable[Statement]) -> str:
    """Settlement JSON: ``{"rows": [...one per creator], "total": {...}}``, canonical."""
    rows = settlement_rows(statements)
    return canonicalize({"rows": rows[:-1], "total": rows[-1]}).decode()
