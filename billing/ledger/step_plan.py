"""What one attribution step writes, planned two ways with the same result (pure; the registry
snapshot is read once per step by its caller).

``plan_step`` is the reference: one ``billing.attribution.attribute`` call per winning record,
then ``billing.aggregate._sum_raw``. ``plan_summary_step`` is the fast path: the store has
already summed the winning records per ``UsageGroup`` in SQL (``billing.ledger.step_reads``), and
every record of a group has the same outcome unless its records straddle an instant where the
answer can change: a registry breakpoint of its content id (a publication, a supersession, a
revocation taking effect) or the "too far in the future" limit. Such (hour, content id) pairs
are *mixed*: their records are read one by one and go through the reference ``attribute``.

Record copies (reconciliation's ``copies`` and losing ``upstream_of`` copies) come from the
batches: a batch whose deduplicated rows are all its own (``winners == records``) has exactly
its winning rows as copies, which the groups already count; only a batch with losing copies has
its records JSON read (``read_batch_copies``). tests/component/billing/test_fast_step.py checks
both planners agree on random record sets.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from billing.aggregate import FROM_CACHE_TIERS, _sum_raw, add_sums
from billing.attribution import (
    ATTRIBUTED,
    DEFAULT_MAX_FUTURE_SKEW_S,
    HASH_MISMATCH,
    INVALID,
    NON_BILLABLE,
    REVOKED,
    UNKNOWN_CONTENT,
    UPSTREAM_DUPLICATE,
    Attributed,
    attribute,
)
from billing.ledger.periods import UsageRow
from billing.ledger.store import Claim, StepBatch, StepSummary, StepWrite, UsageGroup
from billing.registry.timeline import choose_active
from billing.store.base import Store
from provenance.records import Record, format_timestamp, sample_rate_ppm

COPIES = "copies"
_Sums = list[int]
_HourKey = tuple[str, str, str, str, str, str, str]  # ts[:13], creator, cid, mid, edge, use, rate
# creator -> [requests, bytes served, bytes from cache] of attributed records (unscaled)
CreatorTotals = dict[str, list[int]]


def hour_of(ts: str) -> str:
    """The hour bucket start of a record timestamp, in the same fixed-width form."""
    return ts[:13] + ":00:00.000Z"


class RegistrySnapshot:
    """The registry's manifest versions per content id, read once per step."""

    def __init__(self, claims: Mapping[str, Sequence[Claim]]) -> None:
        self._claims = claims
        self._breakpoints: dict[str, list[str]] = {}

    @classmethod
    async def load(cls, store: Store, content_ids: set[str]) -> RegistrySnapshot:
        """From the registry's store (one read per content id; the runner uses the ledger's
        ``read_claims`` instead)."""
        claims = {
            cid: [
                Claim(m.manifest_id, m.creator, m.published_at, m.superseded_at, m.effective_at)
                for m, _ in await store.manifests_naming(content_id=cid)
            ]
            for cid in content_ids
        }
        return cls(claims)

    def active_at(self, content_id: str, ts: str) -> tuple[str, str, object] | None:
        chosen = choose_active(self._claims.get(content_id, ()), ts)
        return None if chosen is None else (chosen.manifest_id, chosen.creator, None)

    def is_revoked_at(self, content_id: str, ts: str) -> bool:
        return any(
            m.effective_at is not None and m.effective_at <= ts
            for m in self._claims.get(content_id, ())
        )

    def changes_within(self, content_id: str, first_ts: str, last_ts: str) -> bool:
        """True if ``active_at`` or ``is_revoked_at`` may answer differently somewhere in
        [first_ts, last_ts]: both compare ``ts`` only against the instants sorted here (as
        ``ts >= instant``), so they are constant from one instant up to the next."""
        points = self._breakpoints.get(content_id)
        if points is None:
            instants = {m.published_at for m in self._claims.get(content_id, ())}
            for m in self._claims.get(content_id, ()):
                instants |= {t for t in (m.superseded_at, m.effective_at) if t is not None}
            points = self._breakpoints[content_id] = sorted(instants)
        i = bisect_right(points, first_ts)
        return i < len(points) and points[i] <= last_ts


@dataclass(frozen=True, slots=True)
class PlannedStep:
    write: StepWrite
    by_outcome: Counter[str]
    creator_totals: CreatorTotals


def _rows(sums: Mapping[_HourKey, Sequence[int]], suffix: str) -> list[UsageRow]:
    return [
        UsageRow(prefix + suffix, creator, cid, mid, edge, use, rate, tuple(s))  # type: ignore[arg-type]
        for (prefix, creator, cid, mid, edge, use, rate), s in sums.items()
    ]


def _step_write(
    first_index: int,
    batches: Iterable[tuple[str, str, int, str, int]],
    hourly: Mapping[_HourKey, _Sums],
    counts: Counter[tuple[str, str, str]],
) -> StepWrite:
    daily: dict[_HourKey, list[int]] = {}
    for (hour, creator, cid, mid, edge, use, rate), s in hourly.items():
        add_sums(daily, (hour[:10], creator, cid, mid, edge, use, rate), s)
    batch_rows = list(batches)
    return StepWrite(
        first_index=first_index,
        next_index=first_index + len(batch_rows),
        hourly=_rows(hourly, ":00:00.000Z"),
        daily=_rows(daily, "T00:00:00.000Z"),
        counts=[(h, e, o, n) for (h, e, o), n in sorted(counts.items())],
        batches=batch_rows,
    )


def _note_creator(totals: CreatorTotals, creator: str, sums: Sequence[int]) -> None:
    t = totals.setdefault(creator, [0, 0, 0])
    t[0], t[1], t[2] = t[0] + sums[0], t[1] + sums[2], t[2] + sums[4]


def _attribute_each(
    winners: Iterable[Record],
    registry: RegistrySnapshot,
    now: datetime,
    counts: Counter[tuple[str, str, str]],
    by_outcome: Counter[str],
) -> list[Attributed]:
    """The reference path over single records: counts their outcomes, returns the attributed."""
    attributed: list[Attributed] = []
    for record in winners:
        outcome = attribute(record, registry.active_at, now=now,
                            is_revoked_at=registry.is_revoked_at)  # fmt: skip
        name = ATTRIBUTED if isinstance(outcome, Attributed) else outcome.reason
        if isinstance(outcome, Attributed):
            attributed.append(outcome)
        counts[(hour_of(record.ts), record.edge, name)] += 1
        by_outcome[name] += 1
    return attributed


def _fold_attributed(
    attributed: list[Attributed], hourly: dict[_HourKey, _Sums], totals: CreatorTotals
) -> None:
    for key, sums in _sum_raw(attributed, 13).items():
        add_sums(hourly, key, sums)
    for a in attributed:
        cached = a.record.bytes if a.record.tier in FROM_CACHE_TIERS else 0
        _note_creator(totals, a.creator, (1, 0, a.record.bytes, 0, cached))


def plan_step(
    first_index: int,
    batches: list[StepBatch],
    winners: list[tuple[str, Record]],
    registry: RegistrySnapshot,
    now: datetime,
) -> PlannedStep:
    """The reference: the rows one step writes, its outcome counts and per-creator totals.

    Per (hour, edge): ``copies`` received; each winner's outcome; a losing copy with
    ``upstream_of`` set is counted ``upstream-duplicate`` for its edge (the serving edge's copy
    won, as it should); a losing copy without it is a plain duplicate (copies only)."""
    counts: Counter[tuple[str, str, str]] = Counter()
    won = {(batch_id, r.request_id) for batch_id, r in winners}
    by_outcome: Counter[str] = Counter()
    for b in batches:
        for ts, request_id, upstream in b.copies:
            counts[(hour_of(ts), b.edge, COPIES)] += 1
            if upstream and (b.batch_id, request_id) not in won:
                counts[(hour_of(ts), b.edge, UPSTREAM_DUPLICATE)] += 1
                by_outcome[UPSTREAM_DUPLICATE] += 1
    attributed = _attribute_each((r for _, r in winners), registry, now, counts, by_outcome)
    hourly: dict[_HourKey, _Sums] = {}
    totals: CreatorTotals = {}
    _fold_attributed(attributed, hourly, totals)
    rows = [(b.batch_id, b.edge, b.seq, hour_of(b.last_ts), len(b.copies)) for b in batches]
    return PlannedStep(_step_write(first_index, rows, hourly, counts), by_outcome, totals)


# -- the fast path ------------------------------------------------------------------------------
_Outcome = tuple[str, str, str]  # outcome name, manifest id, creator ("" unless attributed)


def future_limit(now: datetime, skew_s: int = DEFAULT_MAX_FUTURE_SKEW_S) -> str:
    """The latest ``ts`` that is not "in the future": ``ts > limit`` exactly when the parsed
    ``ts`` is later than ``now + skew`` (timestamps are whole milliseconds, the limit is
    truncated to one)."""
    return format_timestamp(now + timedelta(seconds=skew_s))


# marks a (content, hour) whose registry answer changes within the hour
_REGISTRY_VARIES: _Outcome = ("registry varies", "", "")


class GroupJudge:
    """``attribute``'s checks, in its order, for a whole ``UsageGroup`` at once. The registry's
    answer is looked up once per (content id, hour) when no breakpoint falls inside the hour
    (the usual case), else per group from its first and last ``ts``."""

    def __init__(self, registry: RegistrySnapshot, now: datetime) -> None:
        self._registry, self._limit = registry, future_limit(now)
        self._by_hour: dict[tuple[str, str], _Outcome] = {}
        self._zero_rate: dict[str, bool] = {}

    def outcome(self, g: UsageGroup) -> _Outcome | None:
        """The one outcome of every record of ``g``, or None if its records may differ (they
        straddle the future limit or a registry breakpoint)."""
        zero = self._zero_rate.get(g.sample_rate)
        if zero is None:
            zero = self._zero_rate[g.sample_rate] = sample_rate_ppm(g.sample_rate) == 0
        if zero or g.min_ts > self._limit:
            return INVALID, "", ""
        if g.max_ts > self._limit:
            return None
        if g.upstream:
            return UPSTREAM_DUPLICATE, "", ""
        if not g.billable:
            return NON_BILLABLE, "", ""
        if g.content_id is None:
            return UNKNOWN_CONTENT, "", ""
        if g.has_creator and not g.has_manifest:
            return HASH_MISMATCH, "", ""
        key = (g.content_id, g.hour)
        found = self._by_hour.get(key)
        if found is None:
            first, last = hour_of(g.hour), g.hour + ":59:59.999Z"
            if self._registry.changes_within(g.content_id, first, last):
                found = _REGISTRY_VARIES
            else:
                found = self._registry_outcome(g.content_id, first)
            self._by_hour[key] = found
        if found is not _REGISTRY_VARIES:
            return found
        if self._registry.changes_within(g.content_id, g.min_ts, g.max_ts):
            return None
        return self._registry_outcome(g.content_id, g.min_ts)

    def _registry_outcome(self, content_id: str, ts: str) -> _Outcome:
        found = self._registry.active_at(content_id, ts)
        if found is not None:
            return ATTRIBUTED, found[0], found[1]
        if self._registry.is_revoked_at(content_id, ts):
            return REVOKED, "", ""
        return UNKNOWN_CONTENT, "", ""


def judge_groups(
    summary: StepSummary, registry: RegistrySnapshot, now: datetime
) -> tuple[list[_Outcome | None], set[tuple[str, str | None]]]:
    """Each group's outcome (None: mixed), and the (hour, content id) pairs whose records must
    be attributed one by one."""
    judge = GroupJudge(registry, now)
    outcomes = [judge.outcome(g) for g in summary.groups]
    mixed = {(g.hour, g.content_id) for g, o in zip(summary.groups, outcomes, strict=True)
             if o is None}  # fmt: skip
    return outcomes, mixed


def plan_summary_step(
    first_index: int,
    summary: StepSummary,
    registry: RegistrySnapshot,
    now: datetime,
    outcomes: Sequence[_Outcome | None],
    mixed: set[tuple[str, str | None]],
    mixed_winners: Iterable[Record],
    partial: Iterable[tuple[StepBatch, Sequence[tuple[str, str]]]],
) -> PlannedStep:
    """``plan_step``'s result from the store's groups and their ``judge_groups`` outcomes:
    ``mixed_winners`` are the winning records of the ``mixed`` pairs; ``partial`` the batches
    with losing copies, each with its winning rows (request id, ts)."""
    counts: Counter[tuple[str, str, str]] = Counter()
    by_outcome: Counter[str] = Counter()
    hourly: dict[_HourKey, _Sums] = {}
    totals: CreatorTotals = {}
    for g, outcome in zip(summary.groups, outcomes, strict=True):
        n, hour = g.sums[0], hour_of(g.hour)
        counts[(hour, g.edge, COPIES)] += n  # every winner is a copy of its batch
        if (g.hour, g.content_id) in mixed:
            continue
        if outcome is None:
            raise ValueError("a group straddling a change must be in the mixed pairs")
        name, manifest_id, creator = outcome
        counts[(hour, g.edge, name)] += n
        by_outcome[name] += n
        if name == ATTRIBUTED:
            key = (g.hour, creator, g.content_id or "", manifest_id, g.edge, g.use, g.sample_rate)
            add_sums(hourly, key, g.sums)
            _note_creator(totals, creator, g.sums)
    attributed = _attribute_each(mixed_winners, registry, now, counts, by_outcome)
    _fold_attributed(attributed, hourly, totals)
    for batch, winner_rows in partial:
        _count_losing_copies(batch, winner_rows, counts, by_outcome)
    rows = [(b.batch_id, b.edge, b.seq, hour_of(b.last_ts), b.records) for b in summary.batches]
    return PlannedStep(_step_write(first_index, rows, hourly, counts), by_outcome, totals)


def _count_losing_copies(
    batch: StepBatch,
    winner_rows: Sequence[tuple[str, str]],
    counts: Counter[tuple[str, str, str]],
    by_outcome: Counter[str],
) -> None:
    """The copies of ``batch`` the groups did not count (every copy less its winning rows),
    and its losing ``upstream_of`` copies, as ``plan_step`` counts them."""
    won = {request_id for request_id, _ in winner_rows}
    for ts, request_id, upstream in batch.copies:
        counts[(hour_of(ts), batch.edge, COPIES)] += 1
        if upstream and request_id not in won:
            counts[(hour_of(ts), batch.edge, UPSTREAM_DUPLICATE)] += 1
            by_outcome[UPSTREAM_DUPLICATE] += 1
    for _, ts in winner_rows:
        counts[(hour_of(ts), batch.edge, COPIES)] -= 1
