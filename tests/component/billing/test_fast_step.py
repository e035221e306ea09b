"""The set-based attribution step (store GROUP BY + per-group planning) against the reference
(every record read and attributed on its own), on random record sets in a real store.

Issue 6 "Attribution" and "Aggregation": the same outcome per record (exclusions by reason,
``upstream_of`` duplicates, the manifest version active at serve time, revocations), the same
hourly and daily sums (sampled records kept per rate, with the squares the variance needs),
the same copies per batch, on SQLite and on PostgreSQL. Record sets mix duplicates across and
within batches, timestamps on and next to registry breakpoints and the future limit, and byte
counts whose squares overflow 64 bits (the groups are summed in Python integers, exact at any
size).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from billing.ledger.backend import ledger_store_for
from billing.ledger.jobs import plan_from_summary, plan_record_by_record
from billing.ledger.step_plan import PlannedStep, RegistrySnapshot
from billing.ledger.step_reads import StepReads
from billing.ledger.store import Claim
from billing.log.leaves import BatchLeaf
from billing.registry.service import Actor, Registry
from billing.store.base import EdgeKey, Store, StoredManifest
from billing.store.postgres import PostgresStore
from billing.store.sqlite import SqliteStore
from provenance.batches import ZERO_HASH_HEX, header_hash, seal_batch
from provenance.canonical_json import MAX_SAFE_INTEGER
from provenance.keys import SigningKey, format_verifier_key
from provenance.manifests import (
    Manifest,
    ManifestItem,
    PayoutTerms,
    format_signed_manifest,
    sign_manifest,
)
from provenance.records import Record, format_timestamp
from tests.component.billing.fleet import incoming_of

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def _at(minutes: float) -> str:
    return format_timestamp(T0 + timedelta(minutes=minutes))


def _hex(n: int) -> str:
    return "sha256:" + f"{n:064x}"


CONTENT = [_hex(0xC0 + i) for i in range(7)]


def _manifest(n: int, creator: str, published: str, **ends: str) -> StoredManifest:
    mid = _hex(0xA0 + n)
    return StoredManifest(mid, creator, "00", mid, 1, None, "{}", published, **ends)


# Every way the registry answers: one version forever (C0); a supersession mid-hour (C1); a
# version published mid-hour (C2); a revocation taking effect mid-hour (C3); nothing (C4); two
# creators' claims, the first ending by revocation (C5); breakpoints on the hour (C6).
M0 = _manifest(0, "alice", _at(-1440))
M1A = _manifest(1, "alice", _at(-1440), superseded_at=_at(90))
M1B = _manifest(2, "alice", _at(90))
M2 = _manifest(3, "bob", _at(45))
M3 = _manifest(4, "carol", _at(-1440), revoked_at=_at(10), effective_at=_at(70))
M5A = _manifest(5, "bob", _at(-1440), revoked_at=_at(100), effective_at=_at(125))
M5B = _manifest(6, "carol", _at(30))
M6 = _manifest(7, "dave", _at(60), revoked_at=_at(120), effective_at=_at(180))
_BREAKS_MIN = {
    CONTENT[1]: [90], CONTENT[2]: [45], CONTENT[3]: [70], CONTENT[5]: [30, 125],
    CONTENT[6]: [60, 180],
}  # fmt: skip
CLAIMS = {
    CONTENT[0]: [M0], CONTENT[1]: [M1A, M1B], CONTENT[2]: [M2], CONTENT[3]: [M3],
    CONTENT[4]: [], CONTENT[5]: [M5A, M5B], CONTENT[6]: [M6],
}  # fmt: skip
# the future limit (now + 5 min) mid-hour: T0 + 62 min and T0 + 118 min
NOWS = [T0 + timedelta(hours=6), T0 + timedelta(minutes=57), T0 + timedelta(minutes=113)]


def _snapshot() -> RegistrySnapshot:
    def claim(m: StoredManifest) -> Claim:
        return Claim(m.manifest_id, m.creator, m.published_at, m.superseded_at, m.effective_at)

    return RegistrySnapshot({cid: [claim(m) for m in ms] for cid, ms in CLAIMS.items()})


def _ms_after_t0(ms: int) -> str:
    return format_timestamp(T0 + timedelta(milliseconds=ms))


# Registry breakpoints and the future limits of NOWS (now + 5 min), each with its neighbours.
_SHARP_MS = [m * 60_000 + d for m in (30, 45, 62, 70, 90, 118, 125) for d in (-1, 0, 1)]
_TS = st.one_of(
    st.integers(0, 3 * 3_600_000).map(_ms_after_t0),
    st.sampled_from(_SHARP_MS).map(_ms_after_t0),
)
# Mostly ordinary sizes; now and then one whose square (or sum of squares) passes 2^63 (SQL
# sums used to overflow there; the groups must still be exact).
_HUGE_BYTES = [3_037_000_500, 2**33, 2**45, 2**52, MAX_SAFE_INTEGER]


@st.composite
def _bytes(draw: st.DrawFn) -> int:
    if draw(st.integers(0, 29)) == 0:
        return draw(st.sampled_from(_HUGE_BYTES))
    return draw(st.integers(0, 5_000_000))


@st.composite
def _kind(draw: st.DrawFn) -> dict[str, Any]:
    """What a record is, but for its request id, time and size (a few kinds per example, so
    that groups hold several records and straddle breakpoints)."""
    content_id = draw(st.sampled_from([*CONTENT, None]))
    claim = draw(st.sampled_from(["vouched", "flagged", "none"])) if content_id else "none"
    billable = draw(st.integers(0, 3)) > 0
    # HEAD with a billable status and cache outcome, with or without content (a HEAD hit names
    # its content, a HEAD miss does not): docs/billing.md §1, not billable either way
    method = ["GET", "GET", "HEAD"] if billable else ["POST", "GET", "HEAD"]
    return {
        "method": draw(st.sampled_from(method)),
        "status": draw(st.sampled_from([200, 206, 304] if billable else [404, 503, 200])),
        "cache": draw(
            st.sampled_from(["hit", "miss", "stale", "revalidated"] if billable else ["bypass"])
        ),
        "content_id": content_id,
        "creator": None if claim == "none" else draw(st.sampled_from(["alice", "mallory"])),
        "manifest": _hex(0xA1) if claim == "vouched" else None,
        "sample_rate": draw(st.sampled_from(["1", "1", "0.5", "0.25", "0.001", "0"])),
        "use": draw(st.sampled_from(["view", "training"])),
        "upstream_of": draw(st.sampled_from([None, None, None, "parent-1"])),
    }


@st.composite
def _batches(draw: st.DrawFn) -> list[tuple[int, list[dict[str, Any]]]]:
    kinds = draw(st.lists(_kind(), min_size=1, max_size=2))
    # a few hours of traffic, or all of it within a minute of one instant where the first
    # kind's outcome can change (its content's registry breakpoints, or the future limits)
    sharp = [m * 60_000 for m in _BREAKS_MIN.get(kinds[0]["content_id"], [])] or _SHARP_MS
    at = draw(st.sampled_from(sharp))
    ts = (
        _TS
        if draw(st.integers(0, 3)) == 0
        else st.integers(at - 30_000, at + 30_000).map(_ms_after_t0)
    )

    @st.composite
    def record(draw: st.DrawFn) -> dict[str, Any]:
        size = draw(_bytes())
        return {
            **draw(st.sampled_from(kinds)),
            "request": draw(st.integers(0, 40)),
            "ts": draw(ts),
            "tier": draw(st.sampled_from(["memory", "disk", "origin", "none"])),
            "bytes": size,
            "origin_bytes": draw(
                st.sampled_from([0, size, size // 2, min(size + 7, MAX_SAFE_INTEGER)])
            ),
        }

    return draw(
        st.lists(
            st.tuples(st.sampled_from([0, 1]), st.lists(record(), min_size=2, max_size=12)),
            min_size=1,
            max_size=6,
        )
    )


async def _open(target: str | Path) -> Store:
    if isinstance(target, Path):
        return await SqliteStore.open(target, "NORMAL")
    return await PostgresStore.open(target)


async def _fill(
    store: Store, batches: list[tuple[int, list[dict[str, Any]]]], tag: str | None = None
) -> int:
    """Apply and sequence the batches (two fresh edges; request ids ``<tag>-<n>``, unique to
    this call unless ``tag`` is given); the log index of the first."""
    tag = tag or secrets.token_hex(4)
    edges = secrets.token_hex(4)
    names = [f"edge-{edges}-{i}" for i in (0, 1)]
    keys = [SigningKey(name, secrets.token_bytes(32)) for name in names]
    for name in names:
        token = secrets.token_hex(8)
        await store.add_enrolment_token(token, _at(-60), _at(6000))
        await store.enrol_edge(token, name, EdgeKey(name, "00", "x", _at(-60), None), _at(-60))
    prev, seqs, ids = [ZERO_HASH_HEX, ZERO_HASH_HEX], [0, 0], []
    for which, specs in batches:
        records = [
            Record(
                request_id=f"{tag}-{spec['request']}",
                edge=names[which],
                **{k: v for k, v in spec.items() if k != "request"},
            )
            for spec in specs
        ]
        sealed = seal_batch(records, names[which], seqs[which], prev[which], keys[which])
        prev[which], seqs[which] = header_hash(sealed.header), seqs[which] + 1
        incoming = incoming_of(sealed)
        await store.apply_batch(incoming, _at(0), secrets.token_hex(8))
        ids.append(incoming.batch_id)
    first = await store.log_size()
    nodes = [((0, first + i), b"\0" * 32) for i in range(len(ids))]
    await store.append_leaves(first, [BatchLeaf(i) for i in ids], nodes)
    return first


def _canonical(planned: PlannedStep | None) -> Any:
    assert planned is not None
    w = planned.write
    return (
        w.first_index, w.next_index, sorted(w.hourly, key=repr), sorted(w.daily, key=repr),
        list(w.counts), list(w.batches), dict(planned.by_outcome), planned.creator_totals,
    )  # fmt: skip


async def _compare(target: str | Path, batches: Any, now: datetime, window: int) -> None:
    store = await _open(target)
    try:
        first = await _fill(store, batches)
        ledger = ledger_store_for(store)
        assert isinstance(ledger, StepReads)
        ledger.window_records = window

        async def load(content_ids: set[str]) -> RegistrySnapshot:
            return _snapshot()

        n = len(batches)
        reference = await plan_record_by_record(ledger, first, n, load, now)
        fast = await plan_from_summary(ledger, first, n, load, now)
        assert _canonical(fast) == _canonical(reference)
    finally:
        await store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    """SQLite: a directory for a fresh file per example; PostgreSQL: one schema for all."""
    if request.param == "sqlite":
        yield tmp_path
        return
    import asyncpg

    base: str = request.getfixturevalue("postgres_database")
    schema = f"t_{secrets.token_hex(6)}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f"CREATE SCHEMA {schema}"))
    yield f"{base}?search_path={schema}"
    asyncio.run(run(f"DROP SCHEMA {schema} CASCADE"))


def _hit(request: int, minutes: float, **fields: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "request": request, "ts": _at(minutes), "method": "GET", "status": 200, "cache": "hit",
        "tier": "memory", "bytes": 1000, "origin_bytes": 0, "content_id": CONTENT[1],
        "creator": "alice", "manifest": _hex(0xA1), "sample_rate": "1", "use": "view",
        "upstream_of": None,
    }  # fmt: skip
    spec.update(fields)
    return spec


# Sharp cases, always run: one group straddling C1's supersession (to the ms); one straddling
# the future limit of now = T0 + 57 min, and one starting on it; a parent's upstream_of copy
# that loses to the serving edge's copy, a request id twice in one batch, sampled records;
# squares past 2^63 and sums of them past 2^104; a HEAD hit and a HEAD
# miss (non-billable, docs/billing.md §1) beside a GET hit of the same content.
@example(batches=[(0, [_hit(1, 89.99), _hit(2, 90), _hit(3, 90.01)])], now=NOWS[0], window=8_000)
@example(batches=[(0, [_hit(1, 61), _hit(2, 62), _hit(3, 62.001)])], now=NOWS[1], window=8_000)
@example(batches=[(0, [_hit(1, 62), _hit(2, 62.001)])], now=NOWS[1], window=8_000)
@example(
    batches=[
        (0, [_hit(1, 5, upstream_of="parent-1"), _hit(2, 5, sample_rate="0.25")]),
        (1, [_hit(1, 5), _hit(2, 6, sample_rate="0.25"), _hit(3, 7), _hit(3, 8)]),
        (0, [_hit(3, 9, upstream_of="parent-1", tier="origin", origin_bytes=10)]),
    ],
    now=NOWS[0],
    window=1,
)
@example(
    batches=[(0, [_hit(1, 5, bytes=2**33), _hit(2, 6, bytes=2**45, sample_rate="0.5")])],
    now=NOWS[0],
    window=8_000,
)
@example(batches=[(0, [_hit(1, 5, bytes=2**52), _hit(2, 6)])], now=NOWS[0], window=8_000)
@example(
    batches=[(0, [_hit(1, 5, method="HEAD", bytes=0), _hit(2, 6),
                  _hit(3, 7, method="HEAD", bytes=0, cache="miss", tier="origin",
                       content_id=None, creator=None, manifest=None)])],
    now=NOWS[0],
    window=8_000,
)  # fmt: skip
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=_batches(), now=st.sampled_from(NOWS), window=st.sampled_from([1, 3, 8_000]))
def test_fast_step_equals_the_reference(
    target: str | Path, batches: list[tuple[int, list[dict[str, Any]]]], now: datetime,
    window: int,
) -> None:  # fmt: skip
    where = target / f"{secrets.token_hex(6)}.db" if isinstance(target, Path) else target
    asyncio.run(_compare(where, batches, now, window))


async def _publish(
    registry: Registry, key: SigningKey, contents: list[str], **fields: Any
) -> StoredManifest:
    items = tuple(ManifestItem(cid, f"/{cid[-4:]}", 100, "video/mp4") for cid in contents)
    manifest = Manifest(key.name, key.key_id.hex(), items, "CC-BY-4.0", "allowed",
                        PayoutTerms(10, 20_000), _at(-3000), **fields)  # fmt: skip
    body = format_signed_manifest(sign_manifest(manifest, key))
    stored, _ = await registry.publish(body, Actor(None))
    return stored


async def _claims_case(where: str | Path) -> None:
    store = await _open(where)
    try:
        now = [T0 - timedelta(days=1)]
        registry = Registry(store, lambda: now[0])
        alice, bob = SigningKey("alice", b"\x02" * 32), SigningKey("bob", b"\x03" * 32)
        for key in (alice, bob):
            await registry.add_creator(key.name, [format_verifier_key(key.verifier)])
        v1 = await _publish(registry, alice, CONTENT[:3])
        now[0] = T0 + timedelta(minutes=20)
        v2 = await _publish(registry, alice, CONTENT[1:3], version=2, supersedes=v1.manifest_id)
        now[0] = T0 + timedelta(minutes=40)
        await registry.revoke(v2.manifest_id, "withdrawn", 600, Actor(None))
        now[0] = T0 + timedelta(minutes=55)
        await _publish(registry, bob, [CONTENT[2], CONTENT[3]])
        ledger = ledger_store_for(store)
        ids = set(CONTENT)
        fast = RegistrySnapshot(await ledger.read_claims(ids))
        reference = await RegistrySnapshot.load(store, ids)
        for ms in range(-3_600_000, 3 * 3_600_000, 30_000):
            for ts in (_ms_after_t0(ms), _ms_after_t0(ms + 1)):
                for cid in CONTENT:
                    assert fast.active_at(cid, ts) == reference.active_at(cid, ts)
                    assert fast.is_revoked_at(cid, ts) == reference.is_revoked_at(cid, ts)
        assert fast.active_at(CONTENT[2], _at(45)) == (v2.manifest_id, "alice", None)
        assert fast.is_revoked_at(CONTENT[1], _at(50))
    finally:
        await store.close()


def test_ledger_reads_the_registry_claims_the_registry_would(target: str | Path) -> None:
    """One read for every content id (not one per id, nor each manifest's signed JSON) answers
    as ``Registry``'s own reads: versions, supersession, revocation with grace, a second
    creator's claim."""
    where = target / "claims.db" if isinstance(target, Path) else target
    asyncio.run(_claims_case(where))


class _IngestDuringStep:
    """A ledger whose step summary is followed by an ingest (before the step's other reads)."""

    def __init__(self, ledger: Any, ingest: Any) -> None:
        self._ledger, self._ingest = ledger, ingest

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)

    async def read_step_summary(self, first_index: int, limit: int) -> Any:
        summary = await self._ledger.read_step_summary(first_index, limit)
        await self._ingest()
        return summary


async def _race_case(where: str | Path) -> None:
    store = await _open(where)
    try:
        tag = secrets.token_hex(4)
        first = await _fill(store, [(0, [_hit(1, 5, upstream_of="parent-1"), _hit(2, 6)])], tag)

        async def serving_copy_arrives() -> None:  # its row moves to the serving edge's batch
            await _fill(store, [(0, [_hit(1, 5)])], tag)

        ledger = _IngestDuringStep(ledger_store_for(store), serving_copy_arrives)

        async def load(content_ids: set[str]) -> RegistrySnapshot:
            return _snapshot()

        assert await plan_from_summary(ledger, first, 1, load, NOWS[0]) is None
        reference = await plan_record_by_record(ledger, first, 1, load, NOWS[0])
        assert reference is not None
        assert dict(reference.by_outcome) == {"attributed": 1, "upstream-duplicate": 1}
    finally:
        await store.close()


def test_a_row_moving_during_the_step_sends_it_to_the_reference(target: str | Path) -> None:
    """The step's reads are separate queries: when ingest moves a row out of a step batch
    meanwhile (a parent's upstream_of copy replaced by the serving edge's), the fast plan is
    dropped rather than counting that copy as neither a winner nor a loser."""
    where = target / "race.db" if isinstance(target, Path) else target
    asyncio.run(_race_case(where))
