"""Seal + sign throughput from a spool on one core (issue 4 target: >= 200k records/s).

Run: .venv/bin/python bench/seal_spool.py [--records N] [--batch N] [--hits | --polls] [--dir P]
Writes N records to a spool in a temp folder, then times Sealer.recover() sealing all of them:
reading segments, the frame CRC, the record fast check, leaf hashes, roots, one Ed25519
signature per batch and the fsynced batch files. Reports CPU time (user + system) per record,
the records process's cost.

``--hits``: records as a busy edge's hit path writes them (``RecordEncoder`` hit templates over
100 objects, with cache key hashes and attributions, a flush every 16 records) instead of 64
generic records per flush. ``--polls``: the steady state instead of a backlog (records arriving
at 30k/s, a ``seal_ready`` every 250 ms of simulated time; only the sealer's calls are timed).
``--dir``: where the temp folder goes (default: the system's temp
folder). File creation costs differ by file system: on the dev box creating a file under /tmp
costs ~350 µs of CPU and under /work ~30 µs, and each batch creates two (docs/design/spool.md).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from provenance import fastrecords
from provenance.keys import generate_signing_key
from provenance.records import Record, record_to_canonical_bytes
from proxy.records.emit import Attribution, RecordEncoder
from proxy.records.sealer import Sealer
from proxy.records.spool import HitTemplate, hit_appender, open_spool

EDGE = "edge-1"


def fill_spool(spool_dir: Path, count: int) -> None:
    """Records appended with the writer the proxy would use (open_spool: one frame per record,
    mapped; CACHET_SPOOL_MAPPED=0: a flush every 64)."""
    writer = open_spool(spool_dir)
    for i in range(count):
        record = Record(
            request_id=f"req-{i:012d}",
            ts=f"2026-11-27T03:{(i // 60_000) % 60:02d}:{(i // 1000) % 60:02d}.{i % 1000:03d}Z",
            edge=EDGE,
            method="GET",
            status=200,
            cache="hit" if i % 5 else "miss",
            tier="memory",
            bytes=1000 + i,
            origin_bytes=0,
            content_id="sha256:" + f"{i:064x}",
            creator="alice",
            manifest="sha256:" + "ab" * 32,
        )
        writer.append(record_to_canonical_bytes(record))
        if i % 64 == 63:
            writer.flush()
    writer.close()


def hit_templates(encoder: RecordEncoder, objects: int = 100) -> list[HitTemplate]:
    """The hit path's record templates (proxy/handler.py _record_hit) for ``objects`` stored
    responses of 1 KiB, attributed, with cache key hashes."""
    return [
        encoder.hit_template(
            200,
            1024 + n,
            Attribution("sha256:" + f"{n:064x}", "alice", "sha256:" + "ab" * 32),
            f"http://127.0.0.1:8080/obj-{n}",
        )
        for n in range(objects)
    ]


def fill_spool_with_hits(spool_dir: Path, count: int, objects: int = 100) -> None:
    """What the hit path (proxy/handler.py _record_hit) appends, at ~30k hits/s."""
    encoder = RecordEncoder(EDGE, "1")
    templates = hit_templates(encoder, objects)
    writer = open_spool(spool_dir)
    append_hit = hit_appender(writer, encoder.encode_hit)
    start = 1_795_000_000.0
    for i in range(count):
        append_hit(templates[i % objects], start + i / 30_000, f"r{i:x}")
        if i % 16 == 15:
            writer.flush()
    writer.close()


def time_seal(count: int, batch: int, hits: bool, parent: str | None) -> float:
    """CPU seconds per record of sealing a spool of ``count`` records."""
    key = generate_signing_key(EDGE, bytes(range(32)))
    with tempfile.TemporaryDirectory(dir=parent) as folder:
        root = Path(folder)
        (fill_spool_with_hits if hits else fill_spool)(root / "spool", count)
        sealer = Sealer(root / "spool", root / "batches", key, EDGE, max_records=batch)
        start = time.process_time()  # CPU time (user + system), not fsync waits
        sealer.recover()
        elapsed = time.process_time() - start
        assert sealer.sealed_records == count
    return elapsed / count


def time_polls(count: int, batch: int, parent: str | None, rate: int = 30_000) -> float:
    """CPU seconds per record of the records process's steady state: hit-path records arrive
    at ``rate`` per second (simulated clock) and the sealer polls every 250 ms, as
    ``Sealer.run`` does with the default 1 s batch interval; only the polls are timed."""
    key = generate_signing_key(EDGE, bytes(range(32)))
    per_poll = rate // 4
    with tempfile.TemporaryDirectory(dir=parent) as folder:
        root = Path(folder)
        writer = open_spool(root / "spool")
        sealer = Sealer(root / "spool", root / "batches", key, EDGE, max_records=batch)
        sealer.recover()
        encoder = RecordEncoder(EDGE, "1")
        templates = hit_templates(encoder)
        append_hit = hit_appender(writer, encoder.encode_hit)
        now_s, elapsed = 1_795_000_000.0, 0.0
        for first in range(0, count, per_poll):
            for i in range(first, min(count, first + per_poll)):
                append_hit(templates[i % 100], now_s + i / rate, f"r{i:x}")
                if i % 16 == 15:
                    writer.flush()
            writer.flush()
            start = time.process_time()
            sealer.seal_ready(int((now_s + first / rate) * 1000) + 250)
            elapsed += time.process_time() - start
        start = time.process_time()
        sealer.seal_ready(0, force=True)
        elapsed += time.process_time() - start
        writer.close()
        assert sealer.sealed_records == count
    return elapsed / count


def main() -> None:
    fastrecords.use_environment(os.environ)  # CACHET_PURE_PYTHON=1: the regular expressions
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--hits", action="store_true", help="records as the hit path writes them")
    parser.add_argument("--dir", help="parent folder of the temp spool (default: system temp)")
    parser.add_argument(
        "--polls", action="store_true", help="steady state: records arriving, a poll per 250 ms"
    )
    args = parser.parse_args()
    if args.polls:
        costs = sorted(time_polls(args.records, args.batch, args.dir) for _ in range(args.repeat))
        kind = "steady state, hit-path records at 30k/s, polls of 250 ms"
    else:
        costs = sorted(time_seal(args.records, args.batch, args.hits, args.dir)
                       for _ in range(args.repeat))  # fmt: skip
        kind = "hit-path records" if args.hits else "generic records"
    print(
        f"seal from spool (read + CRC + check + hash + root + sign + write), {kind}: best "
        f"{costs[0] * 1e6:.2f} µs CPU per record ({1 / costs[0]:,.0f} records/s), median "
        f"{costs[len(costs) // 2] * 1e6:.2f} µs (batch {args.batch}, {args.repeat} runs)"
    )


if __name__ == "__main__":
    main()
