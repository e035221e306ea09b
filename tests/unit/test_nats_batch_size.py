"""Batches an edge publishes to NATS fit the server's max_payload whatever their records
(proxy/records/nats_forwarder.py ``records_per_payload``; docs/design/scale-out.md): JetStream
refuses a larger message, and a signed batch cannot be split once sealed."""

from __future__ import annotations

import os
import random
import string
from pathlib import Path

import pytest

from cachet.keyfiles import write_private_key
from provenance.batches import format_sealed_batch, seal_batch
from provenance.compression import gzip_compress
from provenance.keys import generate_signing_key
from proxy.records.daemon import PipelineSettings, RecordsPipeline
from proxy.records.nats_forwarder import records_per_payload
from tests.unit.provenance.strategies import largest_record

EDGE = "e" * 64  # the longest edge id: every record of the batch at its bound


@pytest.mark.parametrize("max_payload", [1024 * 1024, 64 * 1024, 8 * 1024 * 1024])
def test_a_batch_of_the_largest_records_fits_the_payload_even_uncompressed(
    max_payload: int,
) -> None:
    count = records_per_payload(max_payload)
    rng = random.Random(max_payload)
    ids = ["".join(rng.choice(string.printable[:94]) for _ in range(128)) for _ in range(count)]
    batch = seal_batch(
        [largest_record('"' * 64 + i[64:]) for i in ids],
        EDGE, 0, "0" * 64, generate_signing_key(EDGE, os.urandom(32)),
    )  # fmt: skip
    body = format_sealed_batch(batch)
    assert len(body) <= max_payload
    assert len(gzip_compress(body)) <= max_payload


def test_a_payload_too_small_for_one_record_still_allows_one() -> None:
    assert records_per_payload(100) == 1


def test_the_records_process_lowers_its_batch_size_to_fit_never_raises_it(
    tmp_path: Path,
) -> None:
    key = generate_signing_key("edge-n", os.urandom(32))
    (tmp_path / "keys").mkdir()
    write_private_key(tmp_path / "keys" / "edge-n.key", key)
    pipeline = RecordsPipeline(PipelineSettings(tmp_path, "edge-n", batch_max_records=4000))
    pipeline._fit_batches_to(records_per_payload(1024 * 1024))
    assert pipeline.sealer.max_records == records_per_payload(1024 * 1024) < 4000
    pipeline._fit_batches_to(records_per_payload(64 * 1024 * 1024))
    assert pipeline.sealer.max_records == records_per_payload(1024 * 1024)
