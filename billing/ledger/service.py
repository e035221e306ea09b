"""``Billing``: the ledger's service functions (the HTTP API, the admin UI's ``BillingView`` and
the CLI call these, never the SQL).

- ``run_attribution()``: flush the log's sequencer and attribute everything sequenced.
- ``close_period(period)``: immutable statements per creator (pure ``close_period``), stored
  with their hashes; once that transaction commits the sequencer appends one leaf per statement
  to the global log (``provenance.statement_leaves``) and signs a checkpoint. Idempotent;
  periods of one kind close in order, never overlapping another kind.
- pricing: the platform's ``[pricing]`` rules, versioned (each update a row with its actor).
- reads for admins (periods, statements, exports, reconciliation) and for one creator.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from billing.attribution import Attributed, attribute
from billing.errors import ConflictError, NotFoundError
from billing.ledger.jobs import AttributionRunner, RegistrySnapshot
from billing.ledger.metrics import BillingMetrics
from billing.ledger.periods import buckets_from_rows, format_period_id, statement_from_json
from billing.ledger.store import LedgerStore, PeriodRow, PricingVersion, StoredStatement
from billing.log.proofs import inclusion_proof_at
from billing.pricing import PricingRules, parse_pricing
from billing.registry.service import Registry
from billing.service import Coordinator
from billing.statements import (
    Period,
    Statement,
    close_period,
    export_csv,
    export_json,
    statement_to_obj,
)
from provenance.canonical_json import canonicalize, parse
from provenance.errors import FormatError
from provenance.manifests import PayoutTerms
from provenance.receipts import Receipt
from provenance.records import format_timestamp, parse_timestamp, record_from_obj
from provenance.statement_leaves import (
    StatementProof,
    pending_statement_obj,
    statement_proof_to_obj,
)

DEFAULT_PRICING: dict[str, Any] = {"currency": "USD"}


class PeriodNotOverError(ConflictError):
    reason = "period-not-over"


class PeriodOrderError(ConflictError):
    reason = "period-order"


def _closed_period(row: PeriodRow) -> Period:
    return Period(row.kind, parse_timestamp(row.start))


class Billing:
    def __init__(
        self,
        coordinator: Coordinator,
        ledger: LedgerStore,
        *,
        seed_pricing: Mapping[str, Any] | None = None,
        interval_s: float = 5.0,
    ) -> None:
        self.coordinator, self.ledger = coordinator, ledger
        self.clock = coordinator.clock
        self.metrics = BillingMetrics(coordinator.metrics.registry)
        self.runner = AttributionRunner(
            coordinator.store, ledger, self.metrics, self.clock, interval_s
        )
        self._seed = dict(seed_pricing) if seed_pricing is not None else None
        self.rules = PricingRules()
        self.pricing_version = 0

    async def start(self, *, background: bool = True) -> None:
        """Load (or seed from the config file) the pricing and start the periodic runner."""
        latest = await self.ledger.latest_pricing()
        if latest is None:
            await self.update_pricing(self._seed or DEFAULT_PRICING, actor="config")
        else:
            self._apply_pricing(latest)
        if background:
            self.runner.start(lambda: self.coordinator.sequencer.state.size)

    async def stop(self) -> None:
        await self.runner.stop()

    # -- attribution ---------------------------------------------------------------------------
    async def run_attribution(self) -> int:
        """Sequence what was accepted, then attribute every sequenced batch; batches done."""
        await self.coordinator.sequencer.flush()
        return await self.runner.run_until_caught_up(self.coordinator.sequencer.state.size)

    # -- pricing -------------------------------------------------------------------------------
    def _apply_pricing(self, version: PricingVersion) -> None:
        self.rules = parse_pricing(json.loads(version.pricing_json))
        self.pricing_version = version.version

    async def update_pricing(self, section: Mapping[str, Any], actor: str) -> PricingVersion:
        """Validate (PricingConfigError naming the key) and store a new version, audited."""
        parse_pricing(section)
        text = canonicalize(dict(section)).decode()
        version = PricingVersion(self.pricing_version + 1, self._now(), actor, text)
        await self.ledger.add_pricing(version)
        self._apply_pricing(version)
        return version

    async def pricing_history(self) -> list[PricingVersion]:
        return await self.ledger.pricing_history()

    # -- periods -------------------------------------------------------------------------------
    def _now(self) -> str:
        return format_timestamp(self.clock())

    async def close_period(self, period: Period) -> PeriodRow:
        """Close ``period`` (idempotent: an already closed period is returned as it is)."""
        existing = await self.ledger.find_period(format_period_id(period))
        if existing is not None:
            return existing
        if period.end > self.clock():
            raise PeriodNotOverError(f"{format_period_id(period)} has not ended yet")
        started = time.perf_counter()
        await self.coordinator.sequencer.flush()
        async with self.runner.lock:
            while await self.runner.step(self.coordinator.sequencer.state.size):
                pass
            existing = await self.ledger.find_period(format_period_id(period))
            if existing is not None:
                return existing
            row = await self._close_locked(period, started)
        self.metrics.close_seconds.labels(period.kind).observe(time.perf_counter() - started)
        # The statements are committed, pending for the log: append them and sign now, so a
        # creator's statement is anchored when the close returns (where this process leads the
        # log; otherwise the leader's next step does it).
        await self.coordinator.sequencer.flush()
        return row

    async def _check_order(self, period: Period) -> None:
        closed = await self.ledger.list_periods()
        same = [p for p in closed if p.kind == period.kind]
        end = format_timestamp(period.end)
        start = format_timestamp(period.start)
        for p in closed:
            if p.kind != period.kind and p.start < end and start < p.end_at:
                raise PeriodOrderError(f"overlaps the closed {p.period_id}")
        if same and max(p.end_at for p in same) != start:
            last = max(same, key=lambda p: p.end_at)
            raise PeriodOrderError(f"periods close in order: the last closed is {last.period_id}")

    async def _terms(self, manifest_ids: set[str]) -> dict[str, PayoutTerms]:
        registry = Registry(self.coordinator.store, self.clock)
        return {
            mid: (await registry.signed_manifest(mid)).manifest.payout_terms
            for mid in sorted(manifest_ids)
        }

    async def _carried_in(self) -> dict[str, int]:
        closed = await self.ledger.list_periods()
        if not closed:
            return {}
        latest = max(closed, key=lambda p: (p.end_at, p.start))
        return {
            s.creator: statement_from_json(s.statement_json).carry_out_micros
            for s in await self.ledger.period_statements(latest.period_id)
        }

    async def _close_locked(self, period: Period, started: float) -> PeriodRow:
        await self._check_order(period)
        end = format_timestamp(period.end)
        buckets = buckets_from_rows(await self.ledger.unbilled_rows(end))
        terms = await self._terms({b.key.manifest_id for b in buckets})
        statements = close_period(period, buckets, self.rules, terms_of=terms,
                                  carried_in=await self._carried_in())  # fmt: skip
        new = [(c, s.sha256, canonicalize(statement_to_obj(s)).decode())
               for c, s in sorted(statements.items())]  # fmt: skip
        now = self._now()
        row = PeriodRow(
            format_period_id(period), period.kind, format_timestamp(period.start), end, now,
            len(new), sum(s.payout_micros for s in statements.values()), self.rules.currency,
            self.pricing_version, int((time.perf_counter() - started) * 1000),
        )  # fmt: skip
        await self.ledger.close_period(row, new, end)
        return row

    async def list_periods(self) -> list[PeriodRow]:
        """Closed periods, newest first."""
        return await self.ledger.list_periods()

    async def open_hours(self) -> list[datetime]:
        """Starts of the hours holding usage no period has billed yet, oldest first."""
        return [parse_timestamp(h) for h in await self.ledger.unbilled_hours()]

    async def period(self, period_id: str) -> PeriodRow:
        row = await self.ledger.find_period(period_id)
        if row is None:
            raise NotFoundError("no such closed period")
        return row

    async def statements(self, period_id: str) -> list[Statement]:
        await self.period(period_id)
        stored = await self.ledger.period_statements(period_id)
        return [statement_from_json(s.statement_json) for s in stored]

    async def statement(self, period_id: str, creator: str) -> Statement | None:
        stored = await self.ledger.find_statement(period_id, creator)
        return None if stored is None else statement_from_json(stored.statement_json)

    async def creator_statements(self, creator: str) -> list[StoredStatement]:
        return await self.ledger.creator_statements(creator)

    async def statement_proof(self, stored: StoredStatement) -> dict[str, object]:
        """The statement with its inclusion proof (RFC 9162 §2.1.3) in the global log and the
        latest signed checkpoint (``provenance.statement_leaves``), or marked pending while its
        leaf is not in a checkpoint yet. The checkpoint is read after the statement: its nodes
        were stored before it was signed."""
        statement = parse(stored.statement_json.encode())
        if not isinstance(statement, dict):
            raise RuntimeError("stored statement_json is not an object")
        store = self.coordinator.store
        checkpoint = await store.latest_checkpoint()
        index = stored.log_index
        if index is None or checkpoint is None or index >= checkpoint.size:
            reason = "its leaf is not in a signed checkpoint of the log yet; retry shortly"
            return pending_statement_obj(statement, reason)
        proof = await inclusion_proof_at(store, index, checkpoint.size, checkpoint.size)
        anchored = StatementProof(statement, index, checkpoint.size, tuple(proof), checkpoint.note)
        return statement_proof_to_obj(anchored)

    async def export(self, period_id: str, fmt: str) -> str:
        statements = await self.statements(period_id)
        if fmt == "csv":
            return export_csv(statements)
        if fmt == "json":
            return export_json(statements)
        raise FormatError("export format must be csv or json")

    # -- one creator's view --------------------------------------------------------------------
    async def earnings(self, creator: str) -> list[tuple[PeriodRow, Statement]]:
        """The creator's statements with their periods, oldest first."""
        periods = {p.period_id: p for p in await self.ledger.list_periods()}
        pairs = [
            (periods[s.period_id], statement_from_json(s.statement_json))
            for s in await self.ledger.creator_statements(creator)
        ]
        return sorted(pairs, key=lambda pair: (pair[0].start, pair[0].kind))

    async def creator_receipt(self, creator: str, request_id: str) -> Receipt:
        """The receipt of a request whose record bills to ``creator``; NotFoundError for any
        other request (whether it exists is not disclosed)."""
        location = await self.coordinator.store.find_record(request_id)
        if location is None:
            raise NotFoundError("no record of yours with that request id")
        items = json.loads(location.batch.records_json)
        record = record_from_obj(items[location.record_index])
        content = {record.content_id} if record.content_id is not None else set()
        snapshot = await RegistrySnapshot.load(self.coordinator.store, content)
        outcome = attribute(record, snapshot.active_at, now=self.clock(),
                            is_revoked_at=snapshot.is_revoked_at)  # fmt: skip
        if not isinstance(outcome, Attributed) or outcome.creator != creator:
            raise NotFoundError("no record of yours with that request id")
        return await self.coordinator.receipt(request_id)
