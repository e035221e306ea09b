"""What the admin UI and the creator portal need from billing (issue 6), as one Protocol.

Billing's service layer implements ``BillingView``; until it exists the app uses
``NoBillingYet``, which has no periods, statements or earnings and refuses to close a period with
``BillingUnavailableError`` (the pages show their empty states). The values are billing's own
pure types (``billing.statements.Statement``/``Period``, ``billing.reconcile.Reconciliation``), so
the UI renders exactly what billing computed.

A period is named in URLs by ``format_period_ref``: ``<kind>-<start>``, e.g.
``day-2026-11-27T00:00:00Z``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from billing.reconcile import Reconciliation
from billing.statements import DAY, HOUR, MONTH, Period, Statement

PERIOD_KINDS = (HOUR, DAY, MONTH)
_START_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class BillingUnavailableError(Exception):
    """Billing cannot do this (yet); the message is safe to show."""


@dataclass(frozen=True, slots=True)
class PeriodStatus:
    period: Period
    closed_at: str | None  # RFC 3339; None while open
    statements: int
    payout_micros: int
    currency: str


@dataclass(frozen=True, slots=True)
class EarningsPoint:
    period: Period
    net_micros: int
    payout_micros: int
    currency: str


class BillingView(Protocol):
    async def list_periods(self) -> list[PeriodStatus]:
        """Every period billing knows, newest first."""
        ...

    async def close_period(self, period: Period) -> PeriodStatus:
        """Close the period (idempotent); BillingUnavailableError with a reason if it can't."""
        ...

    async def statements(self, period: Period) -> list[Statement]:
        """The period's statements, one per creator, by creator."""
        ...

    async def statement(self, creator: str, period: Period) -> Statement | None: ...

    async def earnings_series(self, creator: str) -> list[EarningsPoint]:
        """The creator's closed periods, oldest first."""
        ...

    async def reconciliation(self, period: Period) -> list[Reconciliation]:
        """Expected vs billed per edge, with the reasons."""
        ...


class NoBillingYet:
    """The BillingView before billing's service exists: empty everywhere."""

    async def list_periods(self) -> list[PeriodStatus]:
        return []

    async def close_period(self, period: Period) -> PeriodStatus:
        raise BillingUnavailableError("billing is not running on this coordinator yet")

    async def statements(self, period: Period) -> list[Statement]:
        return []

    async def statement(self, creator: str, period: Period) -> Statement | None:
        return None

    async def earnings_series(self, creator: str) -> list[EarningsPoint]:
        return []

    async def reconciliation(self, period: Period) -> list[Reconciliation]:
        return []


def format_period_ref(period: Period) -> str:
    return f"{period.kind}-{period.start.astimezone(UTC).strftime(_START_FORMAT)}"


def parse_period_ref(text: str) -> Period:
    """The period named by ``text``; ValueError unless it is a well-aligned period."""
    kind, _, start_text = text.partition("-")
    if kind not in PERIOD_KINDS:
        raise ValueError(f"period kind must be one of {PERIOD_KINDS}")
    start = datetime.strptime(start_text, _START_FORMAT).replace(tzinfo=UTC)
    aligned = start.minute == start.second == 0
    if kind in (DAY, MONTH):
        aligned = aligned and start.hour == 0
    if kind == MONTH:
        aligned = aligned and start.day == 1
    if not aligned:
        raise ValueError(f"a {kind} period starts on a {kind} boundary")
    return Period(kind, start)
