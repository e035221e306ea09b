"""SIGKILL at random moments: every record whose flush returned is sealed exactly once, with the
mapped writer (a record is in the page cache when append returns) and the write(2) one."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from provenance.batches import parse_sealed_batch
from provenance.keys import generate_signing_key
from proxy.records.batch_files import read_batch_file
from proxy.records.sealer import Sealer, list_batches
from proxy.records.spool import open_spool

pytestmark = pytest.mark.integration
EDGE = "edge-1"
CHILD = r"""
import sys
from pathlib import Path
from provenance.records import Record, record_to_canonical_bytes
from proxy.records.spool import open_spool
spool = open_spool(Path(sys.argv[1]), segment_bytes=20_000,
                   environ={"CACHET_SPOOL_MAPPED": sys.argv[3]})
assert type(spool).__name__ == sys.argv[4]
prefix, i = sys.argv[2], 0
while True:
    ids = []
    for _ in range(1 + i % 5):
        rid = f"{prefix}-{i}"
        spool.append(record_to_canonical_bytes(Record(request_id=rid,
            ts="2026-11-27T03:00:00.000Z", edge="edge-1", method="GET", status=200,
            cache="hit", tier="memory", bytes=i, origin_bytes=0)))
        ids.append(rid)
        i += 1
    spool.flush()
    sys.stdout.write(" ".join(ids) + "\n")
    sys.stdout.flush()
"""


WRITERS = {"1": "MappedSpoolWriter", "0": "SpoolWriter"}


def run_and_kill(spool_dir: Path, prefix: str, rng: random.Random, mapped: str) -> set[str]:
    """Start a writer, SIGKILL it after a random delay; the ids it reported as flushed."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(spool_dir), prefix, mapped, WRITERS[mapped]],
        stdout=subprocess.PIPE,
    )
    time.sleep(0.2 + rng.random() * 0.3)
    os.kill(child.pid, signal.SIGKILL)
    output, _ = child.communicate()
    flushed: set[str] = set()
    for line in output.decode().splitlines()[:-1]:  # the last line may be cut by the kill
        flushed.update(line.split())
    return flushed


@pytest.mark.parametrize("mapped", sorted(WRITERS))
def test_sigkill_loses_no_flushed_record_and_duplicates_none(tmp_path: Path, mapped: str) -> None:
    rng = random.Random(4)
    environ = {"CACHET_SPOOL_MAPPED": mapped}
    spool_dir, batches_dir = tmp_path / "spool", tmp_path / "batches"
    key = generate_signing_key(EDGE, bytes(32))
    flushed: set[str] = set()
    for round_ in range(4):
        flushed |= run_and_kill(spool_dir, f"r{round_}", rng, mapped)
        if round_ % 2:  # seal between some crashes, as a restarted proxy would
            open_spool(spool_dir, environ=environ).close()
            Sealer(spool_dir, batches_dir, key, EDGE, max_records=50).recover()
    open_spool(spool_dir, environ=environ).close()
    Sealer(spool_dir, batches_dir, key, EDGE, max_records=50).recover()
    sealed: list[str] = []
    for _, path in list_batches(batches_dir):
        sealed += [r.request_id for r in parse_sealed_batch(read_batch_file(path)[0]).records]
    assert len(flushed) > 100
    assert len(sealed) == len(set(sealed)), "a record was sealed twice"
    assert flushed <= set(sealed), f"lost {len(flushed - set(sealed))} flushed records"
