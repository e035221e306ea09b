"""The counters an edge sends with its batches, on the coordinator (docs/billing.md §5-§6; issue
6 "Reconciliation"), on SQLite and PostgreSQL: records a full spool dropped
(``X-Cachet-Records-Dropped``) get their own reason, ``spool-full``, so that ``sampling`` is
served - emitted - dropped; counters are stored exactly when their batch is (in its
transaction: a resent batch counts nothing twice, a refused one stores none); malformed counters
refuse the batch with a reason; counters stored before migration 5 dropped none."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from billing.api.app import COORDINATOR
from billing.ledger.backend import ledger_store_for
from billing.service import open_store
from billing.store.migrations import MIGRATIONS
from tests.component.billing.fleet import T0, body_of, coordinator_config
from tests.component.billing.test_billing import DAY_27, BillingHarness, bh, view

__all__ = ["bh"]  # the fixture, used by name
pytestmark = pytest.mark.asyncio
SERVED, EMITTED, DROPPED = (
    "X-Cachet-Requests-Served",
    "X-Cachet-Records-Emitted",
    "X-Cachet-Records-Dropped",
)


async def _reconciliation(h: BillingHarness, edge: str) -> dict[str, Any]:
    """The edge's row of the admin API's reconciliation of DAY_27 (closed first)."""
    h.clock.now = T0 + timedelta(days=1)
    await h.close(DAY_27)
    response = await h.client.get(f"/v1/admin/reconciliation?period={DAY_27}", headers=h.admin)
    assert response.status == 200, await response.text()
    rows = {row["edge"]: row for row in (await response.json())["edges"]}
    row: dict[str, Any] = rows[edge]
    assert row["unexplained_transport"] == row["unexplained_billing"] == 0, row
    return row


async def _stored_counters(h: BillingHarness) -> list[tuple[Any, ...]]:
    store = h.client.app[COORDINATOR].store
    rows = await store._all(  # type: ignore[attr-defined]
        "SELECT edge, seq, requests_served, records_emitted, records_dropped FROM edge_counters"
        " ORDER BY edge, seq"
    )
    return [tuple(int(v) if not isinstance(v, str) else v for v in r) for r in rows]


async def test_records_a_full_spool_dropped_reconcile_as_spool_full(bh: BillingHarness) -> None:
    edge = await bh.enrol("edge-a")
    first = [view(edge, bh, "alice") for _ in range(3)]
    status, body = await bh.post(
        body_of(edge.seal(first)), **{SERVED: "12", EMITTED: "3", DROPPED: "4"}
    )
    assert (status, body["status"]) == (200, "accepted"), body
    # an edge of before X-Cachet-Records-Dropped: it dropped none
    second = [view(edge, bh, "alice") for _ in range(2)]
    status, body = await bh.post(body_of(edge.seal(second)), **{SERVED: "5", EMITTED: "2"})
    assert (status, body["status"]) == (200, "accepted"), body
    row = await _reconciliation(bh, "edge-a")
    assert (row["expected"], row["billed"]) == (17, 5)
    assert row["differences"]["spool-full"] == 4
    assert row["differences"]["sampling"] == 17 - 5 - 4
    assert sum(row["differences"].values()) == row["expected"] - row["billed"]


async def test_a_resent_batch_stores_its_counters_once(bh: BillingHarness) -> None:
    edge = await bh.enrol("edge-a")
    body = body_of(edge.seal([view(edge, bh, "alice") for _ in range(3)]))
    counters = {SERVED: "10", EMITTED: "3", DROPPED: "2"}
    assert (await bh.post(body, **counters))[1]["status"] == "accepted"
    for resend in (counters, {SERVED: "99", EMITTED: "3", DROPPED: "50"}, {}):
        status, answer = await bh.post(body, **resend)  # the edge never saw our ack
        assert (status, answer["status"]) == (200, "duplicate"), answer
    assert await _stored_counters(bh) == [("edge-a", 0, 10, 3, 2)]
    row = await _reconciliation(bh, "edge-a")
    assert (row["expected"], row["billed"]) == (10, 3)
    assert (row["differences"]["sampling"], row["differences"]["spool-full"]) == (5, 2)


async def test_a_refused_batch_stores_no_counters(bh: BillingHarness) -> None:
    edge = await bh.enrol("edge-a")
    edge.seal([view(edge, bh, "alice")])  # seq 0, never sent
    gap = body_of(edge.seal([view(edge, bh, "alice")]))
    status, answer = await bh.post(gap, **{SERVED: "4", EMITTED: "1", DROPPED: "1"})
    assert (status, answer["error"]) == (409, "chain-gap"), answer
    assert await _stored_counters(bh) == []


@pytest.mark.parametrize(
    "headers",
    [
        {SERVED: "5", EMITTED: "3", DROPPED: "3"},  # more dropped than served - emitted
        {SERVED: "5", EMITTED: "3", DROPPED: "-1"},
        {SERVED: "5", EMITTED: "3", DROPPED: "two"},
        {DROPPED: "1"},  # without served and emitted
    ],
)
async def test_malformed_counters_refuse_the_batch_with_a_reason(
    bh: BillingHarness, headers: dict[str, str]
) -> None:
    edge = await bh.enrol("edge-a")
    body = body_of(edge.seal([view(edge, bh, "alice") for _ in range(3)]))
    status, answer = await bh.post(body, **headers)
    assert (status, answer["error"]) == (400, "malformed"), answer
    # nothing of it was stored: the same batch with sane counters is accepted
    status, answer = await bh.post(body, **{SERVED: "5", EMITTED: "3", DROPPED: "2"})
    assert (status, answer["status"]) == (200, "accepted"), answer
    assert await _stored_counters(bh) == [("edge-a", 0, 5, 3, 2)]


async def _execute(store: Any, sql: str) -> None:
    """One literal statement in the store's own write transaction (either backend)."""
    async with store._transaction() as db:
        await db.execute(sql)


async def test_counters_stored_before_migration_5_dropped_none(
    store_dsn: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A coordinator upgraded in place: its counters rows gain ``records_dropped`` = 0."""
    config = coordinator_config(tmp_path, db=store_dsn)
    backend = "billing.store.sqlite" if store_dsn is None else "billing.store.postgres"
    with monkeypatch.context() as patch:
        patch.setattr(f"{backend}.MIGRATIONS", tuple(m for m in MIGRATIONS if m.version < 5))
        old = await open_store(config)
        try:
            await _execute(
                old, "INSERT INTO edge_counters VALUES ('edge-a', 0, '2026-11-27T10', 9, 5)"
            )
        finally:
            await old.close()
    store = await open_store(config)
    try:
        assert await store.migrate() == []  # 5 was applied at open
        await _execute(
            store, "INSERT INTO ledger_batches VALUES ('b0', 'edge-a', 0, '2026-11-27T10', 5)"
        )
        found = await ledger_store_for(store).edge_counters("2026-11-27", "2026-11-28")
        assert (found["edge-a"].served, found["edge-a"].emitted) == (9, 5)
        assert (found["edge-a"].dropped, found["edge-a"].unreported) == (0, 0)
    finally:
        await store.close()
