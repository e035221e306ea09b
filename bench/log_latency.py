"""Checkpoint and proof latency at a large log (issue 5: "checkpoint and proof latency at a log of
1M batches"), with SQLite.

Run: .venv/bin/python bench/log_latency.py [--leaves N] [--rounds N]

Builds (not timed) a coordinator database whose log holds N signed batch headers, as
bench/tiles_export.py does. Then, through the coordinator's own Store and proof code:
inclusion proofs for random leaves at the full size, consistency proofs between random sizes
(each verified against the stored roots, so a wrong answer cannot pass as a fast one), and what
integrating 1,000 more batches and signing a checkpoint costs the sequencer's code path.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

from tiles_export import ORIGIN, _append, build_log, open_bench_db

from billing.config import CoordinatorConfig
from billing.log.proofs import consistency_proof_between, inclusion_proof_at
from billing.store.sqlite import SqliteStore
from provenance.keys import SigningKey
from provenance.merkle import verify_consistency, verify_inclusion


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"median {statistics.median(ordered) * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms"


async def _proofs(config: CoordinatorConfig, size: int, roots: dict[int, bytes], rounds: int,
                  leaves: dict[int, bytes]) -> None:  # fmt: skip
    store = await SqliteStore.open(config.sqlite_path)
    rng = random.Random(7)
    try:
        inclusion: list[float] = []
        for index in rng.sample(sorted(leaves), min(rounds, len(leaves))):
            started = time.perf_counter()
            proof = await inclusion_proof_at(store, index, size, size)
            inclusion.append(time.perf_counter() - started)
            verify_inclusion(leaves[index], index, size, proof, roots[size])
        print(f"  inclusion proof at size {size:,}: {_ms(inclusion)} ({len(inclusion)} proofs)")
        consistency: list[float] = []
        sizes = sorted(roots)
        for _ in range(rounds):
            first = rng.choice(sizes[:-1])
            started = time.perf_counter()
            proof = await consistency_proof_between(store, first, size, size)
            consistency.append(time.perf_counter() - started)
            verify_consistency(first, size, proof, roots[first], roots[size])
        print(f"  consistency proof to size {size:,}: {_ms(consistency)} ({rounds} proofs)")
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=500)
    args = parser.parse_args()
    key = SigningKey(ORIGIN, bytes(32))
    with tempfile.TemporaryDirectory() as tmp:
        config, db = open_bench_db(Path(tmp))
        state, roots = build_log(db, args.leaves, key)
        leaves = {
            int(index): bytes.fromhex(str(batch_id))
            for batch_id, index in db.execute(
                "SELECT batch_id, log_index FROM batches ORDER BY random() LIMIT ?",
                (args.rounds,),
            )
        }
        print("proofs (the coordinator's Store and proof code, each proof verified):")
        asyncio.run(_proofs(config, state.size, roots, args.rounds, leaves))
        timings: list[float] = []
        for _ in range(5):
            started = time.perf_counter()
            state = _append(db, state, 1_000, key)  # integrate, store nodes, sign a checkpoint
            timings.append(time.perf_counter() - started)
        print(f"  1,000 more batches integrated + checkpoint signed and stored: {_ms(timings)}"
              " (includes making the 1,000 signed headers)")  # fmt: skip
        db.close()


if __name__ == "__main__":
    main()
