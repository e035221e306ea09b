"""Disk tier restart time: how long ``DiskTier.open`` takes over N small entries.

Run: .venv/bin/python bench/disk_restart.py [--entries 100000] [--body-bytes 1024] [--dir DIR]
     [--opens 3] [--drop-caches]

Fills a fresh directory (or reuses ``--dir`` if it already holds entries) with N one-variant
entries through ``DiskTier.put``, then times ``open`` (the index rebuild: one header read per
file, no bodies) ``--opens`` times, as after a crash; then ``close`` (which writes the index
snapshot) and one more ``open``, as after a clean shutdown. Opens run with a warm page cache;
``--drop-caches`` (root only) drops the kernel caches before each open to show a cold start.
Also times a verified ``get`` of every entry once. Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from proxy.cache.admission import AdmissionPolicy, make_stored_response
from proxy.cache.entry import StoredResponse
from proxy.cache.freshness import HeuristicPolicy
from proxy.cache.tiers.disk import DiskTier

POLICY = AdmissionPolicy(HeuristicPolicy(), ("cdn-cache-control",), "1.1 cachet")
CONCURRENT_PUTS = 64


async def fill(tier: DiskTier, entries: int, body_bytes: int) -> float:
    started = time.perf_counter()
    body = os.urandom(body_bytes)
    for first in range(0, entries, CONCURRENT_PUTS):
        batch = range(first, min(entries, first + CONCURRENT_PUTS))
        await asyncio.gather(*(tier.put(key_for(i), (stored_for(i, body),)) for i in batch))
    return time.perf_counter() - started


def key_for(index: int) -> str:
    return f"GET http://bench.test/objects/{index}"


def stored_for(index: int, body: bytes) -> StoredResponse:
    headers = [("Cache-Control", "max-age=3600"), ("ETag", f'"{index}"')]
    return make_stored_response(200, "OK", headers, body, [], 1.7e9, 1.7e9, POLICY)


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def time_open(directory: Path, cold: bool) -> tuple[float, DiskTier]:
    if cold:
        drop_caches()
    tier = DiskTier(directory, 1 << 40, 1 << 30)
    started = time.perf_counter()
    tier.open()
    return time.perf_counter() - started, tier


async def read_all(tier: DiskTier) -> float:
    started = time.perf_counter()
    keys = list(tier.keys())
    for first in range(0, len(keys), CONCURRENT_PUTS):
        found = await asyncio.gather(*(tier.get(k) for k in keys[first : first + CONCURRENT_PUTS]))
        if any(v is None for v in found):
            raise RuntimeError("an entry did not verify")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--body-bytes", type=int, default=1024)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--opens", type=int, default=3)
    parser.add_argument("--drop-caches", action="store_true")
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="cachet-disk-bench-"))
    tier = DiskTier(directory, 1 << 40, 1 << 30)
    tier.open()
    fill_s = None
    if tier.entries < args.entries:
        fill_s = asyncio.run(fill(tier, args.entries, args.body_bytes))
    opens = [time_open(directory, args.drop_caches) for _ in range(args.opens)]
    last = opens[-1][1]
    last.close()  # writes the index snapshot: the next open skips the per-file reads
    snapshot_open_s, last = time_open(directory, args.drop_caches)
    if not last.loaded_from_snapshot:
        raise RuntimeError("the snapshot was not used")
    summary = {
        "entries": last.entries,
        "bytes_used": last.bytes_used,
        "body_bytes": args.body_bytes,
        "fill_s": fill_s,
        "open_s": [round(seconds, 3) for seconds, _ in opens],
        "open_after_clean_close_s": round(snapshot_open_s, 3),
        "cold_cache": args.drop_caches,
        "get_all_s": round(asyncio.run(read_all(last)), 3),
        "directory": str(directory),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
