"""An in-memory BillingView for tests: closing a period makes one fixed statement per creator,
so the pages with money can be exercised before billing's service exists."""

from __future__ import annotations

from datetime import UTC, datetime

from admin.billing_view import EarningsPoint, PeriodStatus
from billing.reconcile import Reconciliation
from billing.statements import Period, Statement, StatementLine

CLOSED_AT = "2026-11-27T12:00:00.000Z"


def _statement(creator: str, period: Period, cid: str, amount_micros: int) -> Statement:
    line = StatementLine(
        cid,
        "sha256:" + "e" * 64,
        "view",
        None,
        "1",
        "1",
        "2001",
        "2001",
        ("1",),
        "0",
        "platform",
        amount_micros,
    )
    fee = amount_micros // 5
    return Statement(
        creator,
        period,
        "USD",
        (line,),
        amount_micros,
        fee,
        amount_micros - fee,
        0,
        amount_micros - fee,
        0,
    )


class FakeBilling:
    def __init__(self, contents: dict[str, str]) -> None:
        self.contents = contents  # creator -> content id
        self.closed: dict[Period, list[Statement]] = {}

    async def list_periods(self) -> list[PeriodStatus]:
        return [
            PeriodStatus(p, CLOSED_AT, len(s), sum(x.payout_micros for x in s), "USD")
            for p, s in sorted(self.closed.items(), key=lambda kv: kv[0].start, reverse=True)
        ]

    async def close_period(self, period: Period) -> PeriodStatus:
        if period not in self.closed:
            self.closed[period] = [
                _statement(c, period, cid, 1_250_000 * (i + 1))
                for i, (c, cid) in enumerate(sorted(self.contents.items()))
            ]
        return next(s for s in await self.list_periods() if s.period == period)

    async def statements(self, period: Period) -> list[Statement]:
        return self.closed.get(period, [])

    async def statement(self, creator: str, period: Period) -> Statement | None:
        return next((s for s in self.closed.get(period, []) if s.creator == creator), None)

    async def earnings_series(self, creator: str) -> list[EarningsPoint]:
        return [
            EarningsPoint(p, s.net_micros, s.payout_micros, s.currency)
            for p, ss in sorted(self.closed.items(), key=lambda kv: kv[0].start)
            for s in ss
            if s.creator == creator
        ]

    async def reconciliation(self, period: Period) -> list[Reconciliation]:
        if period not in self.closed:
            return []
        start = datetime(period.start.year, period.start.month, period.start.day, tzinfo=UTC)
        return [
            Reconciliation(
                start, "edge-1", 10, 7, (("sampling", 2), ("unknown-content", 1)), 0, 0, 0
            )
        ]
