"""Billing on the coordinator (issue 6), over HTTP with a real SQLite store: signed batches in,
attribution, period close, statements that match an independent computation, late records as
adjustments, immutability, exports that add up, creator isolation and reconciliation."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient

from billing.api.app import COORDINATOR, build_app
from billing.api.billing import BILLING, BILLING_SETTINGS, BillingSettings, plug_admin_view
from billing.billing_view_impl import LedgerBillingView
from billing.ledger.periods import parse_period_id
from billing.ledger.service import Billing
from billing.service import rotate_admin_token
from provenance.manifests import manifest_id
from provenance.receipts import parse_receipt
from provenance.records import Record
from tests.component.billing.conftest import Harness
from tests.component.billing.fleet import (
    T0,
    Edge,
    FakeClock,
    body_of,
    open_coordinator,
    signing_key,
)
from tests.component.billing.fleet import coordinator_config as make_config
from tests.component.billing.test_registry import (
    CID_A,
    CID_B,
    add_creator,
    make_manifest,
    publish,
    signed_body,
)

pytestmark = pytest.mark.asyncio
Client = TestClient[web.Request, web.Application]
PRICING = {
    "currency": "USD", "origin_cost_per_gb": "0.08", "edge_cost_per_gb": "0.02",
    "platform_fee_bps": 2000, "minimum_payout": "0", "view": {"savings_share": "0.15"},
}  # fmt: skip
DAY_27 = "day-2026-11-27T00:00:00Z"
DAY_28 = "day-2026-11-28T00:00:00Z"


class BillingHarness(Harness):
    @property
    def billing(self) -> Billing:
        return self.client.app[BILLING]

    async def creator_token(self, account: str) -> dict[str, str]:
        url = f"/v1/admin/creators/{account}/tokens"
        response = await self.client.post(url, headers=self.admin)
        return {"Authorization": f"Bearer {(await response.json())['token']}"}

    async def close(self, period: str) -> dict[str, Any]:
        url = f"/v1/admin/periods/close?period={period}"
        response = await self.client.post(url, headers=self.admin)
        assert response.status == 200, await response.text()
        result: dict[str, Any] = await response.json()
        return result


@pytest_asyncio.fixture
async def bh(
    store_dsn: str | None, aiohttp_client: Callable[..., Awaitable[Client]], tmp_path: Path
) -> BillingHarness:
    clock = FakeClock()
    config = make_config(tmp_path, db=store_dsn)
    app = build_app(lambda: open_coordinator(config, clock))
    app[BILLING_SETTINGS] = BillingSettings(seed_pricing=PRICING, background=False)
    plug_admin_view(app)
    client = await aiohttp_client(app)
    token = await rotate_admin_token(client.app[COORDINATOR].store, clock())
    h = BillingHarness(client, clock, token)
    clock.now = T0 - timedelta(hours=2)  # manifests published before the records' time
    manifests = {}
    for account, cid in (("alice", CID_A), ("bob", CID_B)):
        key = signing_key(account)
        await add_creator(h, key)
        m = make_manifest(key, items=((cid, f"/{account}.mp4"),))
        status, _ = await publish(h, signed_body(m, key))
        assert status == 201
        manifests[account] = manifest_id(m)
    clock.now = T0
    h.manifests = manifests  # type: ignore[attr-defined]
    return h


def view(edge: Edge, h: BillingHarness, creator: str, **fields: Any) -> Record:
    cid = CID_A if creator == "alice" else CID_B
    mid = h.manifests[creator]  # type: ignore[attr-defined]
    return edge.record(content_id=cid, creator=creator, manifest=mid, **fields)


def expected_micros(records: list[Record]) -> int:
    """Independently: manifest terms 10 micros/hit + 20,000 micros/GB served (view), plus 15 %
    of (0.08 - 0.02) $/GB on bytes from cache; one half-even rounding per line."""
    hits = sum(1 for r in records if r.tier in ("memory", "disk"))
    served = sum(r.bytes for r in records)
    cached = sum(r.bytes for r in records if r.tier in ("memory", "disk"))
    exact = (
        hits * 10 + Fraction(served * 20_000, 10**9) + Fraction(cached * 60_000 * 15, 100 * 10**9)
    )
    return round(exact)


async def send(h: BillingHarness, edge: Edge, records: list[Record], **headers: str) -> None:
    status, body = await h.post(body_of(edge.seal(records)), **headers)
    assert status == 200 and body["status"] == "accepted", body


async def test_statement_totals_match_records_and_pricing_late_record_adjusts(
    bh: BillingHarness,
) -> None:
    edge = await bh.enrol("edge-a")
    alice = [view(edge, bh, "alice", bytes=250_000_000 + i) for i in range(5)]
    alice.append(view(edge, bh, "alice", cache="miss", tier="origin", bytes=3_000_000))
    bob = [view(edge, bh, "bob", bytes=1_000_000_007)]
    await send(bh, edge, [*alice, *bob])
    await bh.billing.run_attribution()
    await bh.billing.run_attribution()  # idempotent: nothing is attributed twice
    bh.clock.now = T0 + timedelta(days=1)  # the 27th is over
    closed = await bh.close(DAY_27)
    assert closed["statements"] == 2
    statements = {s.creator: s for s in await bh.billing.statements(DAY_27)}
    for creator, records in (("alice", alice), ("bob", bob)):
        s = statements[creator]
        gross = expected_micros(records)
        assert s.gross_micros == gross
        assert s.fee_micros == round(Fraction(gross * 2000, 10_000))
        assert s.net_micros == s.payout_micros == gross - s.fee_micros
    first_json = (await bh.billing.ledger.find_statement(DAY_27, "alice")).statement_json  # type: ignore[union-attr]

    late = [view(edge, bh, "alice", bytes=100_000_000)]  # served on the 27th, arrives now
    await send(bh, edge, late)
    assert (await bh.close(DAY_27))["closed_at"] == closed["closed_at"]  # idempotent
    bh.clock.now = T0 + timedelta(days=2)
    await bh.close(DAY_28)
    adjusted = await bh.billing.statement(DAY_28, "alice")
    assert adjusted is not None
    assert [line.adjustment_of for line in adjusted.lines] == ["2026-11-27T00:00:00.000Z"]
    assert adjusted.gross_micros == expected_micros(late)
    stored = await bh.billing.ledger.find_statement(DAY_27, "alice")
    assert stored is not None and stored.statement_json == first_json  # never rewritten


async def test_export_totals_add_up_csv_and_json_rfc4180(bh: BillingHarness) -> None:
    edge = await bh.enrol("edge-a")
    await send(bh, edge, [view(edge, bh, c, bytes=123_456_789) for c in ("alice", "bob", "bob")])
    bh.clock.now = T0 + timedelta(days=1)
    await bh.close(DAY_27)
    url = f"/v1/admin/periods/{DAY_27}/export"
    text = await (await bh.client.get(url + ".csv", headers=bh.admin)).text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["creator"] for r in rows] == ["alice", "bob", "#total"]
    for column in ("gross_micros", "fee_micros", "net_micros", "payout_micros"):
        assert int(rows[-1][column]) == sum(int(r[column]) for r in rows[:-1])
    document = json.loads(await (await bh.client.get(url + ".json", headers=bh.admin)).text())
    assert document["total"]["payout_micros"] == sum(r["payout_micros"] for r in document["rows"])
    assert document["total"]["payout_micros"] == int(rows[-1]["payout_micros"])


async def test_creator_sees_only_their_own_statements_and_receipts(bh: BillingHarness) -> None:
    edge = await bh.enrol("edge-a")
    a, b = view(edge, bh, "alice"), view(edge, bh, "bob")
    await send(bh, edge, [a, b])
    await bh.billing.run_attribution()
    bh.clock.now = T0 + timedelta(days=1)
    await bh.close(DAY_27)
    alice = await bh.creator_token("alice")
    listing = await (await bh.client.get("/v1/creator/statements", headers=alice)).json()
    assert [s["period"]["id"] for s in listing["statements"]] == [DAY_27]
    mine = await bh.client.get(f"/v1/creator/statements/{DAY_27}", headers=alice)
    body = await mine.json()
    assert mine.status == 200 and body["statement"]["creator"] == "alice"
    # one log: the batch (leaf 0), then alice's and bob's statements (leaves 1 and 2)
    assert (body["anchor"]["leaf_index"], body["anchor"]["tree_size"]) == (1, 3)
    assert body["anchor"]["checkpoint"]
    receipt = await bh.client.get(f"/v1/creator/receipts/{a.request_id}", headers=alice)
    assert receipt.status == 200
    parsed = parse_receipt(await receipt.read())
    assert parsed.record.request_id == a.request_id
    other = await bh.client.get(f"/v1/creator/receipts/{b.request_id}", headers=alice)
    assert other.status == 404
    bob = await bh.creator_token("bob")
    bobs = await (await bh.client.get(f"/v1/creator/statements/{DAY_27}", headers=bob)).json()
    assert bobs["statement"]["creator"] == "bob"
    admin = await bh.client.get("/v1/creator/statements", headers=bh.admin)
    assert admin.status == 403
    anonymous = await bh.client.get("/v1/creator/earnings")
    assert anonymous.status == 401


async def test_reconciliation_explains_every_record_remainder_zero(bh: BillingHarness) -> None:
    edge = await bh.enrol("edge-a")
    upstream = await bh.enrol("edge-b")
    billed = [view(edge, bh, "alice") for _ in range(3)]
    unknown = edge.record(content_id="sha256:" + "c" * 64)
    bypass = view(edge, bh, "alice", cache="bypass", tier="origin", method="POST")
    served_to_proxy = upstream.record(request_id=billed[0].request_id, upstream_of="edge-a",
                                      content_id=CID_A, creator="alice",
                                      manifest=bh.manifests["alice"])  # type: ignore[attr-defined]  # fmt: skip
    await send(bh, edge, [*billed, unknown, bypass],
               **{"X-Cachet-Requests-Served": "9", "X-Cachet-Records-Emitted": "5"})  # fmt: skip
    await send(bh, upstream, [served_to_proxy])
    bh.clock.now = T0 + timedelta(days=1)
    await bh.close(DAY_27)
    response = await bh.client.get(f"/v1/admin/reconciliation?period={DAY_27}", headers=bh.admin)
    assert response.status == 200, await response.text()
    view_ = LedgerBillingView(bh.client.app)
    results = {r.edge: r for r in await view_.reconciliation(parse_period_id(DAY_27))}
    a = results["edge-a"]
    assert (a.expected, a.billed) == (9, 3)
    differences = dict(a.differences)
    assert differences["sampling"] == 4
    assert differences["unknown-content"] == 1 and differences["non-billable"] == 1
    assert a.unexplained_transport == a.unexplained_billing == 0
    b = results["edge-b"]
    assert dict(b.differences)["upstream-duplicate"] == 1
    assert b.unexplained_transport == b.unexplained_billing == 0
    metrics = await (await bh.client.get("/metrics")).text()
    assert 'cachet_billing_requests_total{creator="alice"} 3.0' in metrics
    assert 'cachet_billing_records_excluded_total{reason="unknown-content"} 1.0' in metrics
    assert "cachet_billing_period_close_seconds_count" in metrics
