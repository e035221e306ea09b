"""Batches arriving at once (a fleet posting together; issue 5, performance): every guarantee of
one batch at a time still holds when the store applies them together (SQLite's group commit:
several batches, one transaction, one fsync; PostgreSQL: concurrent transactions).

Guarantees checked (issue 5, "Ingest"): each acknowledged batch stored, the same batch twice
stored once, a gap refused and kept as an incident, never half-applied, and an answer only after
the COMMIT that made the batch durable (a failed COMMIT acknowledges nothing).
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from billing.errors import ChainGapError
from billing.service import open_store
from billing.store.base import ApplyResult, IncomingBatch, Outcome, Store
from billing.store.sqlite import SqliteStore
from tests.component.billing.conftest import Harness
from tests.component.billing.fleet import (
    Edge,
    body_of,
    coordinator_config,
    enrolled,
    incoming_of,
)

pytestmark = pytest.mark.asyncio
NOW = "2026-11-27T12:00:00.000Z"


async def _count(store: Store, table: str) -> int:
    rows = await store._all(f"SELECT COUNT(*) FROM {table}")  # type: ignore[attr-defined]
    return int(rows[0][0])


def _apply(store: Store, batch: IncomingBatch) -> Coroutine[Any, Any, ApplyResult]:
    return store.apply_batch(batch, NOW, secrets.token_hex(8))


async def test_edges_posting_at_once_are_all_stored_in_chain_order(
    store_dsn: str | None, tmp_path: Path
) -> None:
    store = await open_store(coordinator_config(tmp_path, db=store_dsn))
    try:
        edges = await enrolled(store, *(f"edge-{i}" for i in range(6)))

        async def post_chain(edge: Edge) -> list[ApplyResult]:
            return [await _apply(store, incoming_of(edge.seal(count=4))) for _ in range(3)]

        results = await asyncio.gather(*(post_chain(edge) for edge in edges))
        assert {r.outcome for chain in results for r in chain} == {Outcome.ACCEPTED}
        assert sum(r.records_stored for chain in results for r in chain) == 6 * 3 * 4
        assert await _count(store, "record_ids") == 6 * 3 * 4
        for edge in edges:
            head = await store.chain_head(edge.name)
            assert head is not None and head.seq == 2
        assert len(await store.unsequenced_batch_ids(100)) == 18
        assert await store.list_incidents(None) == []
    finally:
        await store.close()


async def test_one_group_keeps_each_batch_own_outcome(tmp_path: Path) -> None:
    """Five batches queued together go into one SQLite transaction, and each gets the answer
    it would have had alone: seq 0 and 1 of one edge accepted in order, a resend of seq 0 a
    duplicate, seq 3 a gap kept as an incident, and a batch whose insert fails rolled back
    alone while the others commit."""
    store = await open_store(coordinator_config(tmp_path))
    assert isinstance(store, SqliteStore)
    try:
        a, b = await enrolled(store, "edge-a", "edge-b")
        first, second = incoming_of(a.seal(count=3)), incoming_of(a.seal(count=3))
        a.seal()  # seq 2, never sent
        gap = incoming_of(a.seal())
        failing = incoming_of(b.seal(count=3))
        original = store._insert_batch

        async def insert_or_fail(db: Any, batch: IncomingBatch, now: str) -> ApplyResult:
            result = await original(db, batch, now)
            if batch.batch_id == failing.batch_id:
                raise RuntimeError("disk on fire after the writes")
            return result

        groups: list[int] = []
        commit_group = store._commit_group

        async def counting(group: Any) -> Any:
            groups.append(len(group))
            return await commit_group(group)

        store._insert_batch = insert_or_fail  # type: ignore[method-assign]
        store._commit_group = counting  # type: ignore[method-assign]
        outcomes = await asyncio.gather(
            *(_apply(store, batch) for batch in (first, second, first, gap, failing)),
            return_exceptions=True,
        )
        assert groups == [5]
        accepted, accepted_next, resend, refused, failed = outcomes
        assert isinstance(accepted, ApplyResult) and accepted.outcome is Outcome.ACCEPTED
        assert isinstance(accepted_next, ApplyResult)
        assert accepted_next.outcome is Outcome.ACCEPTED
        assert resend == ApplyResult(Outcome.DUPLICATE, 0, 0)
        assert isinstance(refused, ChainGapError)
        assert isinstance(failed, RuntimeError)
        head = await store.chain_head("edge-a")
        assert head is not None and head.seq == 1
        assert [(i.kind, i.seq) for i in await store.list_incidents(None)] == [("chain-gap", 3)]
        assert await store.chain_head("edge-b") is None  # the failed batch left nothing
        assert await store.find_record(failing.records[0].request_id) is None
        assert await _count(store, "record_ids") == 6
        store._insert_batch = original  # type: ignore[method-assign]
        assert (await _apply(store, failing)).outcome is Outcome.ACCEPTED
    finally:
        await store.close()


class _CommitFails:
    """The writer connection, except that COMMIT fails once (a full disk, an I/O error)."""

    def __init__(self, inner: Any) -> None:
        self._inner, self.failed = inner, False

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT" and not self.failed:
            self.failed = True

            async def fail() -> None:
                raise sqlite3.OperationalError("disk I/O error")

            return fail()
        return self._inner.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_a_failed_commit_acknowledges_no_batch_of_the_group(tmp_path: Path) -> None:
    store = await open_store(coordinator_config(tmp_path))
    assert isinstance(store, SqliteStore)
    try:
        edges = await enrolled(store, "edge-a", "edge-b", "edge-c")
        batches = [incoming_of(edge.seal(count=2)) for edge in edges]
        writer = store._db
        store._db = _CommitFails(writer)  # type: ignore[assignment]
        outcomes = await asyncio.gather(
            *(_apply(store, batch) for batch in batches), return_exceptions=True
        )
        store._db = writer
        assert all(isinstance(o, sqlite3.OperationalError) for o in outcomes)
        assert await _count(store, "batches") == 0
        assert await _count(store, "record_ids") == 0
        assert all([await store.chain_head(e.name) is None for e in edges])
        resent = await asyncio.gather(*(_apply(store, batch) for batch in batches))
        assert {r.outcome for r in resent} == {Outcome.ACCEPTED}
        assert await _count(store, "record_ids") == 6
    finally:
        await store.close()


async def test_a_fleet_posting_at_once_over_http(harness: Harness) -> None:
    edges = [await harness.enrol(f"edge-{i}") for i in range(5)]

    async def post_chain(edge: Edge) -> list[tuple[int, dict[str, Any]]]:
        return [await harness.post(body_of(edge.seal(count=3))) for _ in range(2)]

    answers = [a for chain in await asyncio.gather(*map(post_chain, edges)) for a in chain]
    assert [(status, body["status"]) for status, body in answers] == [(200, "accepted")] * 10
    same = await asyncio.gather(*(harness.post(body_of(edge.sent[0])) for edge in edges))
    assert [body["status"] for _, body in same] == ["duplicate"] * 5
    text = await (await harness.client.get("/metrics")).text()
    assert "cachet_coordinator_records_ingested_total 30.0" in text.splitlines()
