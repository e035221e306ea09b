"""POST /v1/batches: every refusal with its reason, chain gaps and forks as incidents,
duplicates acknowledged once, dedup by request id, overload as 503 + Retry-After."""

from __future__ import annotations

import dataclasses
import gzip
import json
from datetime import timedelta

import pytest

from billing.store.base import Outcome
from provenance.batches import ZERO_HASH_HEX, SealedBatch
from provenance.records import format_timestamp
from tests.component.billing.conftest import Harness
from tests.component.billing.fleet import Edge, body_of, signing_key

pytestmark = pytest.mark.asyncio


async def _metric(h: Harness, line_start: str) -> float:
    text = await (await h.client.get("/metrics")).text()
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    return 0.0


async def test_valid_batch_is_accepted_stored_and_counted(harness: Harness) -> None:
    edge = await harness.enrol("edge-a")
    status, body = await harness.post(body_of(edge.seal(count=5)), **{"X-Cachet-Spool-Lag": "7"})
    assert (status, body["status"], body["records_stored"]) == (200, "accepted", 5)
    assert await _metric(harness, "cachet_coordinator_records_ingested_total") == 5
    edges = await (await harness.client.get("/v1/admin/edges", headers=harness.admin)).json()
    [row] = edges["edges"]
    assert row["chain_head"]["seq"] == 0 and row["spool_lag"] == 7
    assert row["batches_accepted"] == 1 and row["last_seen_at"] is not None


async def test_a_resent_batch_still_reports_the_edges_spool_lag(harness: Harness) -> None:
    """An accepted batch writes the lag in its own transaction; a duplicate, which writes
    nothing, still updates it (the edge is resending because it is behind)."""
    edge = await harness.enrol("edge-a")
    body = body_of(edge.seal(count=2))
    assert (await harness.post(body, **{"X-Cachet-Spool-Lag": "3"}))[1]["status"] == "accepted"
    again = await harness.post(body, **{"X-Cachet-Spool-Lag": "9"})
    assert again[1]["status"] == "duplicate"
    edges = await (await harness.client.get("/v1/admin/edges", headers=harness.admin)).json()
    [row] = edges["edges"]
    assert (row["spool_lag"], row["batches_accepted"]) == (9, 1)


async def test_gzip_body_is_accepted_rfc9110_8_4(harness: Harness) -> None:
    edge = await harness.enrol("edge-a")
    data = gzip.compress(body_of(edge.seal()))
    status, body = await harness.post(data, **{"Content-Encoding": "gzip"})
    assert (status, body["status"]) == (200, "accepted")


async def test_same_batch_twice_is_acknowledged_twice_and_stored_once(harness: Harness) -> None:
    edge = await harness.enrol("edge-a")
    data = body_of(edge.seal(count=4))
    first = await harness.post(data)
    second = await harness.post(data)
    assert first[1]["status"] == "accepted"
    assert second == (200, second[1]) and second[1]["status"] == "duplicate"
    assert second[1]["detail"] == "already stored"
    assert await _metric(harness, "cachet_coordinator_records_ingested_total") == 4
    assert await harness.coordinator.store.log_size() <= 1
    await harness.coordinator.sequencer.flush()
    assert harness.coordinator.sequencer.state.size == 1


async def test_forged_signature_is_refused_422(harness: Harness) -> None:
    edge = await harness.enrol("edge-a")
    batch = edge.seal()
    forged = dataclasses.replace(batch, signature=bytes(64))
    status, body = await harness.post(body_of(forged))
    assert (status, body["error"]) == (422, "bad-signature")
    rejected = 'cachet_coordinator_batches_rejected_total{reason="bad-signature"}'
    assert await _metric(harness, rejected) == 1


async def test_tampered_record_is_refused_as_root_mismatch(harness: Harness) -> None:
    edge = await harness.enrol("edge-a")
    batch = edge.seal()
    changed = dataclasses.replace(batch.records[0], bytes=batch.records[0].bytes + 1)
    tampered = dataclasses.replace(batch, records=(changed, *batch.records[1:]))
    assert (await harness.post(body_of(tampered)))[0:2] == (422, {"error": "root-mismatch"})


async def test_truncated_batch_is_refused(harness: Harness) -> None:
    edge = await harness.enrol("edge-a")
    batch = edge.seal(count=3)
    short = dataclasses.replace(batch, records=batch.records[:2])
    assert await harness.post(body_of(short)) == (422, {"error": "root-mismatch"})
    assert await harness.post(body_of(batch)[:-10]) == (400, {"error": "malformed"})


@pytest.mark.parametrize("config_overrides", [{"max_batch_bytes": 4096}])
async def test_oversized_body_is_refused_413(harness: Harness) -> None:
    edge = await harness.enrol("edge-a")
    limit = harness.coordinator.config.max_batch_bytes
    status, body = await harness.post(b" " * (limit + 1))
    assert (status, body["error"]) == (413, "payload-too-large")
    bomb = gzip.compress(body_of(edge.seal()) + b" " * limit)
    assert await harness.post(bomb, **{"Content-Encoding": "gzip"}) == (
        413,
        {"error": "payload-too-large"},
    )


async def test_unknown_edge_and_unknown_key_are_refused_403(harness: Harness) -> None:
    stranger = Edge("edge-x", signing_key("edge-x"))
    assert await harness.post(body_of(stranger.seal())) == (403, {"error": "unknown-key"})
    edge = await harness.enrol("edge-a")
    edge.key = signing_key("edge-a", "not-enrolled")
    assert await harness.post(body_of(edge.seal())) == (403, {"error": "unknown-key"})


async def test_revoked_key_is_refused_and_a_rotated_key_accepted(harness: Harness) -> None:
    edge = await harness.enrol("edge-a")
    assert (await harness.post(body_of(edge.seal())))[0] == 200
    new_key = signing_key("edge-a", "k2")
    from provenance.keys import format_verifier_key

    response = await harness.client.post(
        "/v1/admin/edges/edge-a/keys",
        json={"verifier_key": format_verifier_key(new_key.verifier)},
        headers=harness.admin,
    )
    assert response.status == 201
    assert (await harness.post(body_of(edge.seal())))[0] == 200  # overlap: old key still good
    old_id = edge.key.key_id.hex()
    response = await harness.client.delete(
        f"/v1/admin/edges/edge-a/keys/{old_id}", headers=harness.admin
    )
    assert response.status == 204
    revoked = edge.seal()
    assert await harness.post(body_of(revoked)) == (403, {"error": "revoked-key"})
    edge.seq, edge.prev, edge.key = revoked.header.seq, revoked.header.prev, new_key
    assert (await harness.post(body_of(edge.seal())))[0] == 200


async def test_gap_is_refused_409_and_stored_as_an_incident(harness: Harness) -> None:
    edge = await harness.enrol("edge-a")
    first, second, third = edge.seal(), edge.seal(), edge.seal()
    assert (await harness.post(body_of(first)))[0] == 200
    assert await harness.post(body_of(third)) == (409, {"error": "chain-gap"})  # reordered
    assert (await harness.post(body_of(second)))[0] == 200
    assert (await harness.post(body_of(third)))[0] == 200
    incidents = await harness.coordinator.store.list_incidents("edge-a")
    assert [(i.kind, i.seq) for i in incidents] == [("chain-gap", 2)]


async def test_first_batch_must_start_the_chain(harness: Harness) -> None:
    edge = await harness.enrol("edge-a")
    edge.seq = 1
    assert await harness.post(body_of(edge.seal())) == (409, {"error": "chain-gap"})


async def test_fork_is_refused_409_and_stored_as_an_incident(harness: Harness) -> None:
    edge = await harness.enrol("edge-a")
    assert (await harness.post(body_of(edge.seal())))[0] == 200
    twin = Edge("edge-a", edge.key, seq=edge.seq, prev=edge.prev, served=100)
    assert (await harness.post(body_of(edge.seal())))[0] == 200
    assert await harness.post(body_of(twin.seal())) == (409, {"error": "chain-fork"})
    bad_link = Edge("edge-a", edge.key, seq=edge.seq, prev=ZERO_HASH_HEX, served=200)
    assert await harness.post(body_of(bad_link.seal())) == (409, {"error": "chain-fork"})
    kinds = [i.kind for i in await harness.coordinator.store.list_incidents("edge-a")]
    assert kinds == ["chain-fork", "chain-fork"]
    edges = await harness.coordinator.list_edges()
    assert edges[0].rejected == {"chain-fork": 2} and edges[0].incidents == 2


async def test_future_dated_batch_is_refused(harness: Harness) -> None:
    edge = await harness.enrol("edge-a")
    skew = harness.coordinator.config.max_future_skew_s
    late = format_timestamp(harness.clock.now + timedelta(seconds=skew + 5))
    batch = edge.seal([edge.record(ts=late)])
    assert await harness.post(body_of(batch)) == (422, {"error": "future-dated"})


async def test_records_deduplicated_serving_edge_wins_over_upstream_of(harness: Harness) -> None:
    child = await harness.enrol("edge-child")
    parent = await harness.enrol("edge-parent")
    upstream = parent.record("shared-1", upstream_of="edge-child", cache="miss", tier="origin")
    assert (await harness.post(body_of(parent.seal([upstream]))))[1]["records_stored"] == 1
    served = child.record("shared-1")
    status, body = await harness.post(body_of(child.seal([served])))
    assert (status, body["records_stored"], body["records_duplicate"]) == (200, 1, 0)
    again = parent.record("shared-1", upstream_of="edge-child")
    _, body = await harness.post(body_of(parent.seal([again])))
    assert (body["records_stored"], body["records_duplicate"]) == (0, 1)
    location = await harness.coordinator.store.find_record("shared-1")
    assert location is not None and location.batch.header.edge == "edge-child"


async def test_records_split_over_several_insert_statements_dedup_as_in_one(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite writes a batch's records with multi-row upserts: with 3 rows per statement, a
    batch of 8 spans three statements, and every row is still deduplicated on its own."""
    monkeypatch.setattr("billing.store.sqlite_ingest.ROWS_PER_STATEMENT", 3)
    child = await harness.enrol("edge-child")
    parent = await harness.enrol("edge-parent")
    upstream = [parent.record(f"s{i}", upstream_of="edge-child") for i in range(4)]
    assert (await harness.post(body_of(parent.seal(upstream))))[1]["records_stored"] == 4
    served = [child.record(f"d{i}") for i in range(2)]
    assert (await harness.post(body_of(child.seal(served))))[1]["records_stored"] == 2
    ids = ["n0", "s0", "d0", "s1", "s2", "d1", "s3", "n1"]
    status, body = await harness.post(body_of(child.seal([child.record(i) for i in ids])))
    assert (status, body["records_stored"], body["records_duplicate"]) == (200, 6, 2)
    for request_id in ids:
        location = await harness.coordinator.store.find_record(request_id)
        assert location is not None and location.batch.header.edge == "edge-child"
        stored_record = json.loads(location.batch.records_json)[location.record_index]
        assert stored_record["request_id"] == request_id


async def test_overload_answers_503_with_retry_after(harness: Harness) -> None:
    edge = await harness.enrol("edge-a")
    ingestor = harness.coordinator.ingestor
    ingestor._pending = harness.coordinator.config.max_pending_batches  # a full queue
    response = await harness.client.post("/v1/batches", data=body_of(edge.seal()))
    ingestor._pending = 0
    assert response.status == 503
    assert response.headers["Retry-After"] == str(harness.coordinator.config.retry_after_s)
    assert (await response.json()) == {"error": "overloaded"}


async def test_batch_is_never_half_applied(harness: Harness) -> None:
    """A failure inside the store transaction leaves neither batch nor records behind."""
    edge = await harness.enrol("edge-a")
    store = harness.coordinator.store
    batch: SealedBatch = edge.seal(count=3)
    original = store._insert_batch  # type: ignore[attr-defined]

    async def failing(db, incoming, now):
        await original(db, incoming, now)
        raise RuntimeError("disk on fire after the writes")

    store._insert_batch = failing  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError):
        await harness.coordinator.ingestor.ingest(body_of(batch), None)
    store._insert_batch = original  # type: ignore[attr-defined]
    assert await store.find_record(batch.records[0].request_id) is None
    assert await store.chain_head("edge-a") is None
    assert (await harness.coordinator.ingestor.ingest(body_of(batch), None)).outcome is (
        Outcome.ACCEPTED
    )
