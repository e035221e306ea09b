"""``LedgerBillingView``: the admin UI's ``BillingView`` Protocol (``admin/billing_view.py``) on
billing's ``Billing`` service. It resolves the service from the app at each call (the service
starts in a cleanup_ctx entry), so it can be set on the app before startup::

    app[BILLING_VIEW] = LedgerBillingView(app)   # billing.api.billing.setup does this
"""

from __future__ import annotations

from aiohttp import web

from admin.billing_view import BillingUnavailableError, EarningsPoint, PeriodStatus
from billing.ledger.periods import format_period_id
from billing.ledger.reconciliation import reconcile_closed
from billing.ledger.service import Billing
from billing.ledger.store import PeriodRow
from billing.reconcile import Reconciliation
from billing.statements import DAY, Period, Statement, period_containing
from provenance.errors import CachetError
from provenance.records import parse_timestamp


def _status(row: PeriodRow) -> PeriodStatus:
    period = Period(row.kind, parse_timestamp(row.start))
    return PeriodStatus(period, row.closed_at, row.statements, row.payout_micros, row.currency)


class LedgerBillingView:
    def __init__(self, app: web.Application) -> None:
        self._app = app

    @property
    def _billing(self) -> Billing:
        from billing.api.billing import BILLING

        billing = self._app.get(BILLING)
        if billing is None:
            raise BillingUnavailableError("billing is starting; try again shortly")
        return billing

    async def list_periods(self) -> list[PeriodStatus]:
        """Closed periods and the open days that hold unbilled usage, newest first."""
        billing = self._billing
        closed = [_status(row) for row in await billing.list_periods()]
        currency = billing.rules.currency
        open_days = {period_containing(h, DAY) for h in await billing.open_hours()}
        covered = [(s.period.start, s.period.end) for s in closed]
        opened = [
            PeriodStatus(p, None, 0, 0, currency)
            for p in open_days
            if not any(start <= p.start < end for start, end in covered)
        ]
        return sorted([*closed, *opened], key=lambda s: (s.period.start, s.period.kind),
                      reverse=True)  # fmt: skip

    async def close_period(self, period: Period) -> PeriodStatus:
        try:
            return _status(await self._billing.close_period(period))
        except CachetError as exc:
            raise BillingUnavailableError(str(exc)) from None

    async def statements(self, period: Period) -> list[Statement]:
        billing = self._billing
        period_id = format_period_id(period)
        if await billing.ledger.find_period(period_id) is None:
            return []
        return await billing.statements(period_id)

    async def statement(self, creator: str, period: Period) -> Statement | None:
        return await self._billing.statement(format_period_id(period), creator)

    async def earnings_series(self, creator: str) -> list[EarningsPoint]:
        pairs = await self._billing.earnings(creator)
        return [
            EarningsPoint(
                Period(p.kind, parse_timestamp(p.start)), s.net_micros, s.payout_micros, s.currency
            )
            for p, s in pairs
        ]

    async def reconciliation(self, period: Period) -> list[Reconciliation]:
        billing = self._billing
        row = await billing.ledger.find_period(format_period_id(period))
        if row is None:
            return []
        results = [item.reconciliation for item in await reconcile_closed(billing.ledger, row)]
        for r in results:
            billing.metrics.note_reconciliation(r)
        return results
