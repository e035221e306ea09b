"""Hourly and daily buckets of attributed records (issue 6 "Aggregation"). Pure.

A bucket is keyed (period start, creator, content id, manifest id, edge, use) and holds
requests, hits, bytes served, bytes served from cache and origin bytes saved:

- a *hit* is a request answered from the cache (``tier`` memory or disk: cache outcomes ``hit``,
  ``stale`` and ``revalidated``); its ``bytes`` are *bytes served from cache*;
- *origin bytes saved* = max(0, ``bytes`` - ``origin_bytes``) per request: what the origin would
  have sent without the cache, less what it did send.

Sampling: a record kept at rate p stands for 1/p requests, so every quantity x of it counts
x/p, exactly (``Fraction``; p = ppm/10^6). Each quantity is an ``Estimate`` carrying that value
and its variance, the Horvitz-Thompson variance sum of x^2 (1 - p) / p^2 over the sampled
records; for a request count this is the binomial variance n (1 - p) / p^2 of the scaled count
n/p. Unsampled records (p = 1) add no variance. Sums are kept per sample rate in integers and
scaled once, so aggregating millions of records does no Fraction arithmetic per record.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from math import isqrt
from typing import TypeVar

from billing.attribution import Attributed
from provenance.records import SAMPLE_RATE_SCALE, parse_timestamp, sample_rate_ppm

HOUR = "hour"
DAY = "day"
FROM_CACHE_TIERS = frozenset({"memory", "disk"})


@dataclass(frozen=True, slots=True)
class Estimate:
    """A (possibly scaled) total and the variance of its sampling error; exact."""

    value: Fraction = Fraction(0)
    variance: Fraction = Fraction(0)

    def __add__(self, other: Estimate) -> Estimate:
        return Estimate(self.value + other.value, self.variance + other.variance)

    def std_error(self) -> Fraction:
        """sqrt(variance), rounded down to 1/1000 of a unit (exact integer square root)."""
        return Fraction(isqrt(int(self.variance * 1_000_000)), 1000)


@dataclass(frozen=True, slots=True, order=True)
class BucketKey:
    start: datetime
    creator: str
    content_id: str
    manifest_id: str
    edge: str
    use: str


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bucket: ``records`` raw records, sampled at the rates in ``sample_rates_ppm``."""

    key: BucketKey
    records: int
    sample_rates_ppm: frozenset[int]
    requests: Estimate
    hits: Estimate
    bytes_served: Estimate
    bytes_from_cache: Estimate
    origin_bytes_saved: Estimate

    @property
    def is_sampled(self) -> bool:
        return any(ppm != SAMPLE_RATE_SCALE for ppm in self.sample_rates_ppm)


def truncate_to(moment: datetime, granularity: str) -> datetime:
    """Start of the UTC hour or day holding ``moment``."""
    if granularity == HOUR:
        return moment.replace(minute=0, second=0, microsecond=0)
    if granularity == DAY:
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(f"granularity must be {HOUR!r} or {DAY!r}, not {granularity!r}")


def _scaled(total: int, total_sq: int, ppm: int) -> Estimate:
    value = Fraction(total * SAMPLE_RATE_SCALE, ppm)
    variance = Fraction(total_sq * (SAMPLE_RATE_SCALE - ppm) * SAMPLE_RATE_SCALE, ppm * ppm)
    return Estimate(value, variance)


# Per (period prefix of ts, creator, content, manifest, edge, use, sample_rate): records, hits,
# bytes, bytes^2, cache bytes, cache bytes^2, saved, saved^2 -- plain ints, one dict lookup each.
_RawKey = tuple[str, str, str, str, str, str, str]
_Key = TypeVar("_Key", bound=Hashable)
_PREFIX_CHARS = {HOUR: 13, DAY: 10}  # "2026-11-27T10" / "2026-11-27" of the fixed-width ts


def _sum_raw(attributed: Iterable[Attributed], prefix_chars: int) -> dict[_RawKey, list[int]]:
    sums: dict[_RawKey, list[int]] = {}
    for a in attributed:
        r = a.record
        key = (r.ts[:prefix_chars], a.creator, r.content_id or "", a.manifest_id, r.edge, r.use,
               r.sample_rate)  # fmt: skip
        s = sums.get(key)
        if s is None:
            s = sums[key] = [0] * 8
        size = r.bytes
        saved = size - r.origin_bytes if size > r.origin_bytes else 0
        s[0] += 1
        if r.tier in FROM_CACHE_TIERS:
            s[1] += 1
            s[4] += size
            s[5] += size * size
        s[2] += size
        s[3] += size * size
        s[6] += saved
        s[7] += saved * saved
    return sums


def add_sums(into: dict[_Key, list[int]], key: _Key, sums: Sequence[int]) -> None:
    """Add ``sums`` element-wise to ``into[key]`` (a copy of them if the key is new)."""
    total = into.get(key)
    if total is None:
        into[key] = list(sums)
    else:
        for i, value in enumerate(sums):
            total[i] += value


def _bucket_from(key: BucketKey, per_rate: Mapping[int, list[int]]) -> Bucket:
    records = sum(s[0] for s in per_rate.values())
    fields: list[Estimate] | None = None
    for ppm, s in per_rate.items():
        if ppm == SAMPLE_RATE_SCALE:  # unsampled: exact integers, no variance
            parts = [Estimate(Fraction(s[i])) for i in (0, 1, 2, 4, 6)]
        else:
            parts = [_scaled(s[0], s[0], ppm), _scaled(s[1], s[1], ppm)]
            parts += [_scaled(s[i], s[i + 1], ppm) for i in (2, 4, 6)]
        fields = parts if fields is None else [f + p for f, p in zip(fields, parts, strict=True)]
    if fields is None:
        raise ValueError("a bucket needs at least one record")
    return Bucket(key, records, frozenset(per_rate), *fields)


def aggregate(attributed: Iterable[Attributed], granularity: str) -> dict[BucketKey, Bucket]:
    """Buckets of ``granularity`` (``hour`` or ``day``) from attributed records."""
    if granularity not in _PREFIX_CHARS:
        raise ValueError(f"granularity must be {HOUR!r} or {DAY!r}, not {granularity!r}")
    grouped: dict[BucketKey, dict[int, list[int]]] = {}
    starts: dict[str, datetime] = {}
    for raw, s in _sum_raw(attributed, _PREFIX_CHARS[granularity]).items():
        prefix, creator, content_id, manifest_id, edge, use, rate = raw
        if prefix not in starts:
            starts[prefix] = truncate_to(parse_timestamp(_first_ms_of(prefix)), granularity)
        key = BucketKey(starts[prefix], creator, content_id, manifest_id, edge, use)
        grouped.setdefault(key, {})[sample_rate_ppm(rate)] = s
    return {key: _bucket_from(key, per_rate) for key, per_rate in grouped.items()}


def _first_ms_of(prefix: str) -> str:
    """The first millisecond of an hour ("...T10") or day prefix, as a record timestamp."""
    return prefix + "T00:00:00.000Z"[len(prefix) - 10 :]


def merge_buckets(key: BucketKey, buckets: Iterable[Bucket]) -> Bucket:
    """One bucket under ``key`` holding the sum of ``buckets`` (e.g. hours into a day)."""
    out = Bucket(key, 0, frozenset(), Estimate(), Estimate(), Estimate(), Estimate(), Estimate())
    for b in buckets:
        out = Bucket(
            key,
            out.records + b.records,
            out.sample_rates_ppm | b.sample_rates_ppm,
            out.requests + b.requests,
            out.hits + b.hits,
            out.bytes_served + b.bytes_served,
            out.bytes_from_cache + b.bytes_from_cache,
            out.origin_bytes_saved + b.origin_bytes_saved,
        )
    return out


def roll_up_to_days(hourly: Iterable[Bucket]) -> dict[BucketKey, Bucket]:
    """Daily buckets from hourly ones (same result as aggregating the records by day)."""
    groups: dict[BucketKey, list[Bucket]] = {}
    for b in hourly:
        k = b.key
        day = BucketKey(truncate_to(k.start, DAY), k.creator, k.content_id, k.manifest_id,
                        k.edge, k.use)  # fmt: skip
        groups.setdefault(day, []).append(b)
    return {key: merge_buckets(key, group) for key, group in groups.items()}
