"""Closed statements as leaves of the coordinator's one global log (issue 6: "an immutable
statement per creator ... itself anchored in the Merkle log"), on SQLite and PostgreSQL:

- a creator's statement verifies offline against the global checkpoint with the log key alone
  (RFC 9162 §2.1.3.2), and the log after the close is consistent with the log before (§2.1.4.2);
- batches and statements interleaved in the log: every receipt still verifies and attribution
  bills every record exactly once (statement leaves are passed over, never counted);
- the C2SP tlog-tiles export carries statement leaves, and verifies from its files alone;
- a database of the previous schema, with statements closed there, upgrades in place: its
  statements are appended to the log after the batches already in it;
- a statement with one line changed fails verification, saying why.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from billing.api.app import COORDINATOR, build_app
from billing.api.billing import BILLING_SETTINGS, BillingSettings, plug_admin_view
from billing.config import CoordinatorConfig
from billing.ledger import jobs
from billing.log.leaves import BatchLeaf, LogLeaf
from billing.log.tile_source import open_tile_source
from billing.log.tiles_export import CHECKPOINT_FILE, export_tiles
from billing.service import rotate_admin_token
from billing.store.migrations import MIGRATIONS
from billing.store.postgres import PostgresStore
from billing.store.sqlite import SqliteStore
from provenance.batches import BatchHeader
from provenance.canonical_json import canonicalize
from provenance.checkpoint import parse_checkpoint
from provenance.errors import RootMismatchError, VerificationError
from provenance.manifests import manifest_id
from provenance.merkle import MerkleTree, leaf_hash, verify_consistency
from provenance.receipts import verify_receipt
from provenance.records import Record, format_timestamp
from provenance.signed_note import open_note
from provenance.statement_leaves import (
    StatementLeaf,
    parse_global_log_entry,
    parse_statement_proof,
    statement_content_hash,
    verify_statement_proof,
)
from provenance.tiles import TileTree, decode_bundle, tile_for, unpack_tile
from tests.component.billing.fleet import (
    T0,
    FakeClock,
    open_coordinator,
    signing_key,
)
from tests.component.billing.fleet import coordinator_config as make_config
from tests.component.billing.test_billing import (
    DAY_27,
    DAY_28,
    PRICING,
    BillingHarness,
    bh,
    expected_micros,
    send,
    view,
)
from tests.component.billing.test_registry import (
    CID_A,
    CID_B,
    add_creator,
    make_manifest,
    publish,
    signed_body,
)

__all__ = ["bh"]  # the fixture, used by name
pytestmark = pytest.mark.asyncio
Client = TestClient[web.Request, web.Application]
DAY_29 = "day-2026-11-29T00:00:00Z"


async def statement_proof(h: BillingHarness, creator: str, period: str) -> dict[str, Any]:
    """The creator's statement as GET /v1/creator/statements/{period} serves it."""
    url = f"/v1/creator/statements/{period}"
    response = await h.client.get(url, headers=await h.creator_token(creator))
    assert response.status == 200, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


def verify(h: BillingHarness, answer: dict[str, Any]) -> int:
    """Verify a served statement proof as a creator would, offline; its leaf index."""
    proof = parse_statement_proof(canonicalize(answer))
    checkpoint = verify_statement_proof(
        proof, h.coordinator.log_verifier, h.coordinator.config.log_origin
    )
    assert checkpoint.size == proof.tree_size
    return proof.leaf_index


async def log_leaves(h: BillingHarness) -> list[str]:
    """The kind of every leaf of the log, in log order ("batch" or "statement")."""
    store = h.coordinator.store
    size = await store.log_size()
    kinds = ["?"] * size
    for index in range(size):
        if await store.batch_at(index) is not None:
            kinds[index] = "batch"
    for row in await store._all("SELECT log_index FROM statements"):  # type: ignore[attr-defined]
        assert row[0] is not None and kinds[int(row[0])] == "?"
        kinds[int(row[0])] = "statement"
    return kinds


async def test_closed_statements_verify_in_the_global_checkpoint_and_the_log_stays_consistent(
    bh: BillingHarness,
) -> None:
    edge = await bh.enrol("edge-a")
    await send(bh, edge, [view(edge, bh, "alice"), view(edge, bh, "bob")])
    before = await bh.coordinator.sequencer.flush()
    bh.clock.now = T0 + timedelta(days=1)
    await bh.close(DAY_27)
    after = await bh.coordinator.store.latest_checkpoint()
    assert after is not None and after.size == before.size + 2  # one leaf per statement
    indexes = {c: verify(bh, await statement_proof(bh, c, DAY_27)) for c in ("alice", "bob")}
    assert sorted(indexes.values()) == [before.size, before.size + 1]  # after the batch
    # the anchor is the coordinator's own latest checkpoint, served at /v1/checkpoint
    served = await (await bh.client.get("/v1/checkpoint")).text()
    answer = await statement_proof(bh, "alice", DAY_27)
    assert answer["anchor"]["checkpoint"] == served == after.note
    # RFC 9162 §2.1.4: the log after the close extends the one before it
    url = f"/v1/log/proof/consistency?first={before.size}&second={after.size}"
    proof = [bytes.fromhex(p) for p in (await (await bh.client.get(url)).json())["proof"]]
    verify_consistency(before.size, after.size, proof, bytes.fromhex(before.root_hash),
                       bytes.fromhex(after.root_hash))  # fmt: skip
    assert await log_leaves(bh) == ["batch", "statement", "statement"]


async def test_a_statement_is_pending_until_its_leaf_is_in_a_checkpoint(
    bh: BillingHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A close whose statements the sequencer has not appended yet (another process leads the
    log, say): the creator gets the statement, marked pending, and no anchor."""
    edge = await bh.enrol("edge-a")
    await send(bh, edge, [view(edge, bh, "alice")])
    bh.clock.now = T0 + timedelta(days=1)
    sequencer = bh.coordinator.sequencer
    flush = sequencer.flush
    closing = False

    async def flush_batches_only() -> Any:
        if closing:
            return sequencer.checkpoint  # the leader has not stepped yet
        return await flush()

    monkeypatch.setattr(sequencer, "flush", flush_batches_only)
    await bh.billing.run_attribution()
    closing = True
    await bh.close(DAY_27)
    answer = await statement_proof(bh, "alice", DAY_27)
    assert answer["anchor"] is None and "not in a signed checkpoint" in answer["pending"]
    assert answer["statement"]["creator"] == "alice"
    await flush()
    verify(bh, await statement_proof(bh, "alice", DAY_27))


@pytest.mark.parametrize("step", [1, 2, 4, 256])
async def test_interleaved_batches_and_statements_bill_every_record_once(
    bh: BillingHarness, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, step: int
) -> None:
    """Batches, then two statements, then batches, ...: the runner's steps (``step`` log
    indexes each) start on batch leaves, on statement leaves, hold only statements or end on
    one; every record is billed once, every receipt verifies, the tiles carry both kinds."""
    monkeypatch.setattr(jobs, "BATCHES_PER_STEP", step)
    edge = await bh.enrol("edge-a")
    sent: dict[str, list[Record]] = {"alice": [], "bob": []}
    gross: dict[str, int] = {"alice": 0, "bob": 0}

    async def day_of_traffic(day: int) -> dict[str, list[Record]]:
        at = T0 + timedelta(days=day)
        today: dict[str, list[Record]] = {"alice": [], "bob": []}
        for n in range(3):  # three batches a day, both creators
            records = [
                view(edge, bh, c, ts=format_timestamp(at + timedelta(minutes=n, seconds=i)),
                     request_id=f"{c}-{day}-{n}-{i}")
                for i, c in enumerate(("alice", "bob", "alice"))
            ]  # fmt: skip
            await send(bh, edge, records)
            for c in ("alice", "bob"):
                today[c] += [r for r in records if r.creator == c]
                sent[c] += [r for r in records if r.creator == c]
        return today

    for day, period in enumerate((DAY_27, DAY_28, DAY_29)):
        for c, records in (await day_of_traffic(day)).items():
            gross[c] += expected_micros(records)  # one line per creator and day
        await bh.billing.run_attribution()
        bh.clock.now = T0 + timedelta(days=day + 1)
        await bh.close(period)
        await bh.billing.run_attribution()  # the cursor passes the statements just appended
    await day_of_traffic(3)  # after the last close: batches behind statements
    await bh.billing.run_attribution()

    kinds = await log_leaves(bh)
    assert kinds == (["batch"] * 3 + ["statement"] * 2) * 3 + ["batch"] * 3
    ledger = bh.billing.ledger
    assert await ledger.attribution_cursor() == len(kinds)
    store: Any = bh.coordinator.store
    rows = await store._all("SELECT SUM(records) FROM usage_hourly")
    assert int(rows[0][0]) == sum(len(v) for v in sent.values())  # each record once
    rows = await store._all("SELECT outcome, SUM(records) FROM outcome_counts GROUP BY outcome")
    counts = {str(r[0]): int(r[1]) for r in rows}
    assert counts == {"copies": 36, "attributed": 36}  # 4 days x 3 batches x 3 records
    assert len(await store._all("SELECT batch_id FROM ledger_batches")) == 12
    for creator in ("alice", "bob"):
        billed = [s for _, s in await bh.billing.earnings(creator)]
        assert sum(s.gross_micros for s in billed) == gross[creator]
        for period in (DAY_27, DAY_28, DAY_29):
            verify(bh, await statement_proof(bh, creator, period))
    for record in sent["alice"] + sent["bob"]:
        receipt = await bh.coordinator.receipt(record.request_id)
        verify_receipt(receipt, bh.coordinator.log_verifier)

    # the tlog-tiles export: a mirror recomputes every leaf and the root from the files alone
    out = tmp_path / "tiles"
    async with open_tile_source(bh.coordinator.config) as source:
        result = await export_tiles(source, out, bh.coordinator.log_verifier)
    assert result.size == len(kinds)
    verifier = bh.coordinator.log_verifier
    checkpoint = parse_checkpoint(open_note((out / CHECKPOINT_FILE).read_bytes(), [verifier]))
    tile = tile_for(0, 0, checkpoint.size)
    entries = decode_bundle((out / tile.entries_bundle().path).read_bytes(), tile.width)
    hashes = unpack_tile((out / tile.path).read_bytes(), tile.width)
    assert [leaf_hash(e) for e in entries] == hashes  # c2sp.org/tlog-tiles "Log entries"
    assert MerkleTree(hashes).root() == checkpoint.root_hash  # RFC 9162 §2.1.1
    tree = TileTree(lambda t: unpack_tile((out / t.path).read_bytes(), t.width), checkpoint.size)
    assert tree.root() == checkpoint.root_hash
    parsed = [parse_global_log_entry(e) for e in entries]
    assert ["statement" if isinstance(p, StatementLeaf) else "batch" for p in parsed] == kinds
    statements = [p for p in parsed if isinstance(p, StatementLeaf)]
    assert {(s.creator, s.period) for s in statements} == {
        (c, p) for c in ("alice", "bob") for p in (DAY_27, DAY_28, DAY_29)
    }
    assert all(isinstance(p[0], BatchHeader) for p in parsed if isinstance(p, tuple))


async def test_a_statement_with_one_line_changed_fails_verification(bh: BillingHarness) -> None:
    edge = await bh.enrol("edge-a")
    await send(bh, edge, [view(edge, bh, "alice", bytes=250_000_000)])
    bh.clock.now = T0 + timedelta(days=1)
    await bh.close(DAY_27)
    answer = await statement_proof(bh, "alice", DAY_27)
    verify(bh, answer)
    tampered = copy.deepcopy(answer)
    tampered["statement"]["lines"][0]["amount_micros"] += 1
    with pytest.raises(VerificationError, match="does not hash to its sha256"):
        verify(bh, tampered)
    # the same change with the hash recomputed: a statement the log never held
    tampered["statement"]["sha256"] = statement_content_hash(tampered["statement"])
    with pytest.raises(RootMismatchError, match="is not leaf"):
        verify(bh, tampered)


# -- upgrade in place -----------------------------------------------------------------------


async def _harness(
    config: CoordinatorConfig, clock: FakeClock, aiohttp_client: Callable[..., Awaitable[Client]]
) -> BillingHarness:
    app = build_app(lambda: open_coordinator(config, clock))
    app[BILLING_SETTINGS] = BillingSettings(seed_pricing=PRICING, background=False)
    plug_admin_view(app)
    client = await aiohttp_client(app)
    token = await rotate_admin_token(client.app[COORDINATOR].store, clock())
    return BillingHarness(client, clock, token)


async def test_a_database_of_the_previous_schema_appends_its_closed_statements(
    store_dsn: str | None,
    aiohttp_client: Callable[..., Awaitable[Client]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Migration 6 on a coordinator that closed a period under migration 5, whose sequencer
    took batch leaves only (statements went to the separate statements' log): after the
    upgrade its statements are leaves of the global log, behind the batches already there."""
    config = make_config(tmp_path, db=store_dsn)
    clock = FakeClock()
    backend: type[SqliteStore] | type[PostgresStore] = (
        SqliteStore if store_dsn is None else PostgresStore
    )
    module = "billing.store.sqlite" if store_dsn is None else "billing.store.postgres"

    async def batches_only(self: Any, limit: int) -> list[LogLeaf]:
        return [BatchLeaf(i) for i in await self.unsequenced_batch_ids(limit)]

    with monkeypatch.context() as old:
        # migration 7 (the ingest layout) is not what this test is about, and today's ingest
        # writes it: the database lacks only migration 6, as a migration-5 one did
        old.setattr(f"{module}.MIGRATIONS", tuple(m for m in MIGRATIONS if m.version != 6))
        old.setattr(backend, "unsequenced_leaves", batches_only)
        h = await _harness(config, clock, aiohttp_client)
        clock.now = T0 - timedelta(hours=2)
        manifests = {}
        for account, cid in (("alice", CID_A), ("bob", CID_B)):
            key = signing_key(account)
            await add_creator(h, key)
            m = make_manifest(key, items=((cid, f"/{account}.mp4"),))
            assert (await publish(h, signed_body(m, key)))[0] == 201
            manifests[account] = manifest_id(m)
        h.manifests = manifests  # type: ignore[attr-defined]
        clock.now = T0
        edge = await h.enrol("edge-a")
        await send(h, edge, [view(edge, h, "alice"), view(edge, h, "bob")])
        clock.now = T0 + timedelta(days=1)
        await h.close(DAY_27)
        late = [view(edge, h, "alice", request_id="late-1")]
        await send(h, edge, late)
        await h.billing.run_attribution()
        assert await h.coordinator.store.log_size() == 2  # the two batches, no statement
        columns = await h.coordinator.store._all(  # type: ignore[attr-defined]
            "SELECT * FROM statements"
        )
        assert len(columns) == 2 and len(columns[0]) == 5  # no log_index column yet
        await h.client.close()

    upgraded = await _harness(config, clock, aiohttp_client)
    upgraded.manifests = manifests  # type: ignore[attr-defined]
    assert await log_leaves(upgraded) == ["batch", "batch", "statement", "statement"]
    for creator in ("alice", "bob"):
        assert verify(upgraded, await statement_proof(upgraded, creator, DAY_27)) >= 2
    # billing goes on: the late record lands in the next period, once
    clock.now = T0 + timedelta(days=2)
    await upgraded.close(DAY_28)
    adjusted = await upgraded.billing.statement(DAY_28, "alice")
    assert adjusted is not None and adjusted.gross_micros == expected_micros(late)
    verify(upgraded, await statement_proof(upgraded, "alice", DAY_28))
    store: Any = upgraded.coordinator.store
    rows = await store._all("SELECT SUM(records) FROM usage_hourly")
    assert int(rows[0][0]) == 3
