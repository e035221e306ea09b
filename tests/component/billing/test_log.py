"""The Merkle log: signed checkpoints (C2SP tlog-checkpoint), RFC 9162 inclusion and consistency
proofs served over HTTP and verified with provenance.merkle, receipts verified offline."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from billing.api.app import build_app
from billing.service import Coordinator
from billing.store.base import RecordLocation
from provenance.batches import batch_log_leaf_hash
from provenance.checkpoint import Checkpoint, parse_checkpoint
from provenance.keys import KeyRing, VerifierKey, parse_verifier_key
from provenance.merkle import verify_consistency, verify_inclusion
from provenance.receipts import parse_receipt, verify_receipt
from provenance.signed_note import open_note
from tests.component.billing.conftest import Harness, MakeClient
from tests.component.billing.fleet import (
    FakeClock,
    body_of,
    coordinator_config,
    open_coordinator,
)

pytestmark = pytest.mark.asyncio


async def _log_key(h: Harness) -> VerifierKey:
    response = await h.client.get("/v1/log/key")
    assert response.content_type == "text/plain"
    return parse_verifier_key(await response.text())


async def _checkpoint(h: Harness) -> Checkpoint:
    response = await h.client.get("/v1/checkpoint")
    assert response.status == 200 and response.content_type == "text/plain"
    note = await response.read()
    return parse_checkpoint(open_note(note, [await _log_key(h)]))


async def test_checkpoint_is_a_signed_note_of_the_log_origin_c2sp(harness: Harness) -> None:
    checkpoint = await _checkpoint(harness)
    assert checkpoint.origin == harness.coordinator.config.log_origin
    assert checkpoint.size == 0


async def test_inclusion_and_consistency_proofs_verify_rfc9162_2_1_3_and_2_1_4(
    harness: Harness,
) -> None:
    edge = await harness.enrol("edge-a")
    leaves = []
    roots = {}
    for _ in range(7):
        batch = edge.seal(count=2)
        assert (await harness.post(body_of(batch)))[0] == 200
        await harness.coordinator.sequencer.flush()
        leaves.append(batch_log_leaf_hash(batch.header, batch.signature))
        checkpoint = await _checkpoint(harness)
        roots[checkpoint.size] = checkpoint.root_hash
    assert sorted(roots) == list(range(1, 8))
    for size in (1, 4, 7):
        for index in range(size):
            response = await harness.client.get(
                f"/v1/log/proof/inclusion?leaf_index={index}&tree_size={size}"
            )
            proof = [bytes.fromhex(h) for h in (await response.json())["proof"]]
            verify_inclusion(leaves[index], index, size, proof, roots[size])
    by_hash = await harness.client.get(
        f"/v1/log/proof/inclusion?leaf_hash={leaves[3].hex()}&tree_size=7"
    )
    assert (await by_hash.json())["leaf_index"] == 3
    for first in range(1, 8):
        response = await harness.client.get(f"/v1/log/proof/consistency?first={first}&second=7")
        proof = [bytes.fromhex(h) for h in (await response.json())["proof"]]
        verify_consistency(first, 7, proof, roots[first], roots[7])


@pytest.mark.parametrize(
    "query",
    [
        "leaf_index=0&tree_size=2",
        "leaf_index=1&tree_size=1",
        "leaf_index=x&tree_size=1",
        "tree_size=1",
        "leaf_hash=zz&tree_size=1",
    ],
)
async def test_impossible_inclusion_requests_are_400(harness: Harness, query: str) -> None:
    edge = await harness.enrol("edge-a")
    await harness.post(body_of(edge.seal()))
    await harness.coordinator.sequencer.flush()
    response = await harness.client.get(f"/v1/log/proof/inclusion?{query}")
    assert response.status == 400


async def test_receipt_verifies_offline_with_the_log_and_edge_keys(harness: Harness) -> None:
    edge = await harness.enrol("edge-a")
    for _ in range(3):
        await harness.post(body_of(edge.seal(count=5)))
    target = edge.sent[1].records[3]
    pending = await harness.client.get(f"/v1/receipts/{target.request_id}")
    if pending.status != 200:
        assert (pending.status, await pending.json()) == (404, {"error": "pending"})
    await harness.coordinator.sequencer.flush()
    response = await harness.client.get(f"/v1/receipts/{target.request_id}")
    assert response.status == 200
    receipt = parse_receipt(await response.read())
    assert receipt.record == target
    checkpoint = verify_receipt(
        receipt,
        await _log_key(harness),
        KeyRing([edge.key.verifier]),
        expected_origin=harness.coordinator.config.log_origin,
    )
    assert checkpoint.size == 3
    missing = await harness.client.get("/v1/receipts/no-such-request")
    assert missing.status == 404


async def test_a_receipt_asked_while_the_log_grows_is_anchored_in_the_newer_checkpoint(
    harness: Harness,
) -> None:
    """The sequencer may sign a bigger checkpoint while a receipt is being assembled: the
    receipt must prove inclusion in whatever checkpoint it read (RFC 9162 §2.1.3), not be
    refused because the size sampled before its reads was smaller (seen in CI on PostgreSQL)."""
    edge = await harness.enrol("edge-a")
    await harness.post(body_of(edge.seal(count=5)))
    await harness.coordinator.sequencer.flush()
    target = edge.sent[0].records[2]
    store = harness.coordinator.store
    find_record = store.find_record

    async def find_record_while_the_log_grows(request_id: str) -> RecordLocation | None:
        for _ in range(2):
            status, _ = await harness.post(body_of(edge.seal(count=5)))
            assert status == 200
        await harness.coordinator.sequencer.flush()
        return await find_record(request_id)

    store.find_record = find_record_while_the_log_grows  # type: ignore[method-assign]
    try:
        response = await harness.client.get(f"/v1/receipts/{target.request_id}")
    finally:
        store.find_record = find_record  # type: ignore[method-assign]
    assert response.status == 200, await response.text()
    checkpoint = verify_receipt(
        parse_receipt(await response.read()),
        await _log_key(harness),
        KeyRing([edge.key.verifier]),
        expected_origin=harness.coordinator.config.log_origin,
    )
    assert checkpoint.size == 3


async def test_the_log_survives_a_restart_and_keeps_growing(
    store_dsn: str | None, aiohttp_client: MakeClient, tmp_path: Path
) -> None:
    from tests.component.billing.fleet import Edge, signing_key

    clock = FakeClock()
    config = coordinator_config(tmp_path, db=store_dsn)
    first = await Coordinator.open(config, clock)
    edge = Edge("edge-a", signing_key("edge-a"))
    token = (await first.issue_enrolment_token()).token
    await first.enrol(token, edge.name, edge.verifier)
    for _ in range(3):
        await first.ingestor.ingest(body_of(edge.seal()), None)
    old = await first.sequencer.flush()
    await first.close()
    client = await aiohttp_client(build_app(lambda: open_coordinator(config, clock)))
    response = await client.post("/v1/batches", data=body_of(edge.seal()))
    assert response.status == 200
    from billing.api.app import COORDINATOR

    new = await client.app[COORDINATOR].sequencer.flush()
    assert (old.size, new.size) == (3, 4)
    response = await client.get("/v1/log/proof/consistency?first=3&second=4")
    proof = [bytes.fromhex(h) for h in (await response.json())["proof"]]
    verify_consistency(3, 4, proof, bytes.fromhex(old.root_hash), bytes.fromhex(new.root_hash))


@pytest.mark.parametrize(
    "config_overrides", [{"checkpoint_every_batches": 100, "checkpoint_interval_s": 0.05}]
)
async def test_checkpoint_is_signed_after_the_interval_not_before(harness: Harness) -> None:
    """Every T seconds (by the injected clock) or every N batches, whichever first."""
    edge = await harness.enrol("edge-a")
    sequencer = harness.coordinator.sequencer
    assert (await harness.post(body_of(edge.seal())))[0] == 200
    for _ in range(200):  # the sequencer integrates promptly but must not sign yet
        if sequencer.state.size == 1:
            break
        await asyncio.sleep(0.01)
    assert sequencer.state.size == 1
    assert sequencer.checkpoint is not None and sequencer.checkpoint.size == 0
    harness.clock.advance(1)
    sequencer.notify()
    for _ in range(200):
        if sequencer.checkpoint.size == 1:
            break
        await asyncio.sleep(0.01)
    assert (await _checkpoint(harness)).size == 1


async def test_close_right_after_an_acceptance_returns(
    store_dsn: str | None, tmp_path: Path
) -> None:
    """Closing a coordinator just as the sequencer is woken must not hang: on Python 3.11,
    asyncio.wait_for could swallow the cancel that stops the sequencer (CPython gh-86296)."""
    from tests.component.billing.fleet import Edge, signing_key

    clock = FakeClock()
    config = coordinator_config(tmp_path, db=store_dsn)
    edge = Edge("edge-close", signing_key("edge-close"))
    for round_ in range(5):
        coordinator = await Coordinator.open(config, clock)
        if round_ == 0:
            token = (await coordinator.issue_enrolment_token()).token
            await coordinator.enrol(token, edge.name, edge.verifier)
        await coordinator.ingestor.ingest(body_of(edge.seal()), None)  # wakes the sequencer
        closing = asyncio.create_task(coordinator.close())
        done, _ = await asyncio.wait({closing}, timeout=20)  # a hang detector, not a timing
        assert closing in done, "close() hung"
        closing.result()


async def test_a_failed_sequencer_step_is_logged_and_the_log_keeps_growing(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """A sequencer step that fails (storage restarting, or a read that found the log other than
    it left it) must not stop the log for good while ingest goes on acknowledging batches: it
    is logged, the sequencer reloads the log from storage, and the next batches are appended."""
    edge = await harness.enrol("edge-a")
    sequencer = harness.coordinator.sequencer
    store = harness.coordinator.store
    append_leaves = store.append_leaves
    failures: list[object] = []

    async def append_fails_once(*args: Any) -> None:
        if not failures:
            failures.append(args)
            raise RuntimeError("storage hiccup")
        await append_leaves(*args)

    store.append_leaves = append_fails_once  # type: ignore[method-assign,assignment]
    try:
        assert (await harness.post(body_of(edge.seal())))[0] == 200
        for _ in range(500):  # a hang detector, not a timing
            if failures:
                break
            await asyncio.sleep(0.01)
        assert failures
        assert (await harness.post(body_of(edge.seal())))[0] == 200
        for _ in range(1000):
            if sequencer.state.size == 2:
                break
            await asyncio.sleep(0.01)
    finally:
        store.append_leaves = append_leaves  # type: ignore[method-assign]
    assert sequencer.state.size == 2
    assert "log sequencer step failed" in caplog.text
    assert (await sequencer.flush()).size == 2


async def test_close_closes_the_store_even_when_stopping_the_sequencer_fails(
    tmp_path: Path,
) -> None:
    """An exception while stopping must not leave the SQLite connections open: their threads
    are not daemons and kept the process from exiting (seen after a failed shutdown)."""
    coordinator = await Coordinator.open(coordinator_config(tmp_path), FakeClock())
    stop = coordinator.sequencer.stop

    async def failing_stop() -> None:
        await stop()
        raise RuntimeError("stop failed")

    coordinator.sequencer.stop = failing_stop  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="stop failed"):
        await coordinator.close()
    with pytest.raises(ValueError, match="Connection closed"):
        await coordinator.store.count_admin_tokens()
