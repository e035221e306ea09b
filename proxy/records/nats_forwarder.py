"""NatsForwarder: the Forwarder's loop and spool rules, publishing to NATS JetStream instead of
POSTing to the coordinator (issue 9; docs/design/scale-out.md). The HTTP Forwarder stays the
default; this one is for fleets whose coordinator runs ingest workers on a stream.

Each sealed batch is published to ``<subject_prefix>.<edge>`` with its batch id (the log leaf
hash of header and signature, hex) as ``Nats-Msg-Id``: a resend within the stream's duplicate
window is acknowledged by JetStream without a second copy. The publish ack (stored or duplicate)
means the stream holds the batch durably; the batch file then moves to ``acked/`` as after an
HTTP 2xx. A file that does not parse as a sealed batch is quarantined; NATS errors are retried
with the Forwarder's back-off. Headers ``Cachet-Edge``/``Cachet-Seq`` let workers wait for an
edge's earlier batch; ``Cachet-Spool-Lag`` reports the spool's backlog; ``Cachet-Requests-Served``,
``Cachet-Records-Emitted`` and ``Cachet-Records-Dropped`` carry the batch's reconciliation
counters (the batch file's meta line). The payload is the batch gzip-compressed, with
``Content-Encoding: gzip`` (the ingest workers inflate it as the HTTP endpoint does).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient

from provenance.batches import batch_log_leaf_hash, parse_sealed_batch
from provenance.errors import CachetError
from provenance.records import MAX_RECORD_BYTES
from proxy.records.batch_files import move_batch, read_batch_and_payload
from proxy.records.forwarder import Forwarder

log = logging.getLogger(__name__)

# A sealed batch's bytes besides its records: the header (edge, key id, seq, hashes, stamps),
# the signature, the JSON around them, and gzip's framing of an incompressible payload.
BATCH_OVERHEAD_BYTES = 4096


def records_per_payload(max_payload: int) -> int:
    """The most records a batch may hold so that it fits a NATS payload of ``max_payload``
    bytes whatever its records, even if gzip could not shrink it: JetStream refuses a larger
    message, and a signed batch cannot be split after sealing."""
    return max(1, (max_payload - BATCH_OVERHEAD_BYTES) // (MAX_RECORD_BYTES + 1))


class NatsForwarder(Forwarder):
    def __init__(
        self,
        batches_dir: Path,
        nc: NatsClient,
        *,
        subject_prefix: str = "cachet.batches",
        publish_timeout_s: float = 5.0,
        **options: Any,
    ) -> None:
        super().__init__(batches_dir, "nats:", None, **options)
        self.nc, self.subject_prefix = nc, subject_prefix
        self.publish_timeout_s = publish_timeout_s
        self.duplicates = 0

    async def _forward(self, path: Path) -> float | None:
        try:
            data, payload, meta = await asyncio.to_thread(read_batch_and_payload, path)
        except FileNotFoundError:  # gone since it was queued
            return None
        try:
            sealed = parse_sealed_batch(data)
        except CachetError as exc:
            self.failures["quarantined"] += 1
            log.error("nats forwarder: batch %s unreadable (%s); quarantined", path.name, exc)
            await asyncio.to_thread(move_batch, path, self.batches_dir / "quarantine")
            return None
        header = sealed.header
        headers = {
            "Nats-Msg-Id": batch_log_leaf_hash(header, sealed.signature).hex(),
            "Cachet-Edge": header.edge,
            "Cachet-Seq": str(header.seq),
            "Cachet-Spool-Lag": str(max(0, self.lag_count - 1)),
            # gzip, as sealed and as the HTTP forwarder sends it (a tenth of the bytes)
            "Content-Encoding": "gzip",
        }
        if meta is not None:  # reconciliation, as the HTTP forwarder sends them
            counters = meta.counters
            headers["Cachet-Requests-Served"] = str(counters.served)
            headers["Cachet-Records-Emitted"] = str(counters.emitted)
            headers["Cachet-Records-Dropped"] = str(counters.dropped)
        self.sent += 1
        try:
            ack = await self.nc.jetstream().publish(
                f"{self.subject_prefix}.{header.edge}", payload,
                timeout=self.publish_timeout_s, headers=headers,
            )  # fmt: skip
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            self.failures["network"] += 1
            log.warning("nats forwarder: publish failed: %s", type(exc).__name__)
            return 0.0
        self.duplicates += int(bool(ack.duplicate))
        self._acknowledged(path)
        self.acked += 1
        return None
