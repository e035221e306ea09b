"""Eviction simulation: S3-FIFO memory tier vs plain LRU, and the tier's get/put cost.

Run: .venv/bin/python bench/eviction_sim.py [--requests N] [--seed S]

Workloads (all read-through: a miss is followed by a put, as the proxy does):
- zipf: keys drawn from a Zipf(alpha) popularity over a catalogue, sizes 1-64 KiB (fixed per key);
- zipf+scan: the same, with every fourth request a never-repeated key (a crawler, a backup job).
Hit ratios are by request; byte budgets are a fraction of the catalogue's total bytes.
Timings are wall-clock ns/op over a warm tier (perf_counter_ns around a tight loop).
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import random
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Protocol

from proxy.cache.tiers.memory import MemoryTier

CATALOGUE_KEYS = 20_000
ZIPF_ALPHA = 0.9


class Cache(Protocol):
    def get(self, key: str) -> int | None: ...
    def put(self, key: str, value: int, size_bytes: int) -> object: ...


class Lru:
    """Byte-budgeted LRU baseline."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self.entries: OrderedDict[str, int] = OrderedDict()
        self.bytes_used = 0

    def get(self, key: str) -> int | None:
        size = self.entries.get(key)
        if size is not None:
            self.entries.move_to_end(key)
        return size

    def put(self, key: str, value: int, size_bytes: int) -> bool:
        old = self.entries.pop(key, None)
        if old is not None:
            self.bytes_used -= old
        while self.bytes_used + size_bytes > self.capacity_bytes:
            _, evicted = self.entries.popitem(last=False)
            self.bytes_used -= evicted
        self.entries[key] = size_bytes
        self.bytes_used += size_bytes
        return True


def make_sizes(rng: random.Random) -> list[int]:
    return [rng.randint(1, 64) * 1024 for _ in range(CATALOGUE_KEYS)]


def generate_requests(
    rng: random.Random, count: int, sizes: list[int], scan_every: int
) -> Iterator[tuple[str, int]]:
    weights = [1.0 / (rank**ZIPF_ALPHA) for rank in range(1, CATALOGUE_KEYS + 1)]
    cdf = list(itertools.accumulate(weights))
    total = cdf[-1]
    for i in range(count):
        if scan_every and i % scan_every == 0:
            yield f"scan/{i}", sizes[i % CATALOGUE_KEYS]
            continue
        rank = bisect.bisect_left(cdf, rng.random() * total)
        yield f"obj/{rank}", sizes[rank]


def measure_hit_ratio(cache: Cache, requests: list[tuple[str, int]]) -> float:
    hits = 0
    for key, size in requests:
        if cache.get(key) is not None:
            hits += 1
        else:
            cache.put(key, size, size)
    return hits / len(requests)


def report_hit_ratios(requests_count: int, seed: int) -> None:
    rng = random.Random(seed)
    sizes = make_sizes(rng)
    catalogue_bytes = sum(sizes)
    print(f"catalogue: {CATALOGUE_KEYS} keys, {catalogue_bytes / 2**20:.0f} MiB, zipf {ZIPF_ALPHA}")
    print(f"{'workload':<10} {'budget':>7} {'S3-FIFO':>8} {'LRU':>8}")
    for workload, scan_every in (("zipf", 0), ("zipf+scan", 4)):
        requests = list(generate_requests(rng, requests_count, sizes, scan_every))
        for fraction in (0.01, 0.05, 0.10, 0.25):
            budget = int(catalogue_bytes * fraction)
            s3 = measure_hit_ratio(MemoryTier[str, int](budget, budget), requests)
            lru = measure_hit_ratio(Lru(budget), requests)
            print(f"{workload:<10} {fraction:>7.0%} {s3:>8.3f} {lru:>8.3f}")


def time_ns_per_op(label: str, ops: int, run: object) -> None:
    assert callable(run)
    start = time.perf_counter_ns()
    run()
    elapsed = time.perf_counter_ns() - start
    print(f"{label:<34} {elapsed / ops:8.0f} ns/op")


def report_timings() -> None:
    entries = 10_000
    keys = [f"obj/{i}" for i in range(entries)]
    tier: MemoryTier[str, int] = MemoryTier(entries * 1024, 1024)
    for key in keys:
        tier.put(key, 1, 1024)
    lookups = keys * 20
    misses = [f"miss/{i}" for i in range(len(lookups))]
    fresh = [f"new/{i}" for i in range(200_000)]

    def run_hits() -> None:
        get = tier.get
        for key in lookups:
            get(key)

    def run_misses() -> None:
        get = tier.get
        for key in misses:
            get(key)

    def run_puts() -> None:
        put = tier.put
        for key in fresh:
            put(key, 1, 1024)

    def run_loop_only() -> None:
        for _key in lookups:
            pass

    plain = dict.fromkeys(keys, 1)

    def run_dict_get() -> None:
        get = plain.get
        for key in lookups:
            get(key)

    print(f"timings ({entries} entries of 1 KiB, tier full):")
    time_ns_per_op("loop overhead (subtract)", len(lookups), run_loop_only)
    time_ns_per_op("plain dict.get (floor)", len(lookups), run_dict_get)
    time_ns_per_op("get, hit", len(lookups), run_hits)
    time_ns_per_op("get, miss", len(misses), run_misses)
    time_ns_per_op("put, new key, evicting", len(fresh), run_puts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    report_hit_ratios(args.requests, args.seed)
    report_timings()


if __name__ == "__main__":
    main()
