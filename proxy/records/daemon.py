"""The records process: seals the spool into signed batches and forwards them, beside the
process that serves clients (docs/design/spool.md, "Processes").

Why a process of its own: sealing reads the spool back, checks every record, hashes it into a
Merkle tree and signs the batch. In a thread of the serving process that work takes the GIL from
the event loop in long stretches (tail latency on hits) and competes with it for one core; in
its own process it runs wherever the scheduler has room, and the serving process only appends to
the spool. The spool is the whole interface between the two, as it already was between the
writer and the sealer, so nothing about durability changes: a record is in the kernel before its
response completes, and a batch is fsynced with the records it covers (docs/design/spool.md,
"Durability").

Lifecycle: the serving process starts this one with a pipe on stdin. End of file on stdin (the
parent stopped, or died, even by SIGKILL) or SIGTERM/SIGINT: seal what is left, stop forwarding,
exit 0. Recovery at start seals a crashed run's tail exactly once (``Sealer.recover``).

Status: every ``status_interval_s`` (and at exit) ``status.json`` beside the spool holds the
sealer's and forwarder's counters, written atomically; the serving process reads it when
``/metrics`` is scraped (``read_status``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cachet.keyfiles import read_signing_key
from provenance import fastrecords
from proxy.parent_pipe import stop_at_end_of_stdin
from proxy.records.batch_files import DEFAULT_BATCH_MAX_RECORDS
from proxy.records.forwarder import Forwarder
from proxy.records.sealer import Sealer

STATUS_NAME = "status.json"
log = logging.getLogger("cachet.records")


@dataclass(frozen=True, slots=True)
class PipelineStatus:
    """What the records process last reported (zeros before its first report)."""

    sealed_batches: int = 0
    sealed_records: int = 0
    quarantined_records: int = 0
    last_seal_latency_s: float = 0.0
    forwarding: bool = False
    lag_count: int = 0
    lag_s: float = 0.0
    acked: int = 0
    failures: Mapping[str, int] = field(default_factory=dict)
    pid: int = 0
    written_at: float = 0.0


def status_from_json(text: bytes) -> PipelineStatus:
    """A status from ``status.json``'s bytes; an unreadable file reads as no report yet."""
    try:
        obj = json.loads(text)
        failures = {str(k): int(v) for k, v in dict(obj.get("failures", {})).items()}
        return PipelineStatus(
            sealed_batches=int(obj["sealed_batches"]),
            sealed_records=int(obj["sealed_records"]),
            quarantined_records=int(obj["quarantined_records"]),
            last_seal_latency_s=float(obj["last_seal_latency_s"]),
            forwarding=bool(obj["forwarding"]),
            lag_count=int(obj["lag_count"]),
            lag_s=float(obj["lag_s"]),
            acked=int(obj["acked"]),
            failures=failures,
            pid=int(obj["pid"]),
            written_at=float(obj["written_at"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return PipelineStatus()


def read_status(records_dir: Path) -> PipelineStatus:
    try:
        return status_from_json((records_dir / STATUS_NAME).read_bytes())
    except OSError:
        return PipelineStatus()


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    records_dir: Path
    edge_id: str
    batch_max_records: int = DEFAULT_BATCH_MAX_RECORDS
    batch_max_interval_ms: int = 1000
    coordinator: str | None = None
    nats_url: str | None = None
    nats_subject: str = "cachet.batches"
    status_interval_s: float = 1.0

    def to_argv(self) -> list[str]:
        """The command line that starts the records process with these settings."""
        argv = [
            "--records-dir", str(self.records_dir), "--edge", self.edge_id,
            "--batch-max-records", str(self.batch_max_records),
            "--batch-max-interval-ms", str(self.batch_max_interval_ms),
            "--nats-subject", self.nats_subject,
            "--status-interval", repr(self.status_interval_s),
        ]  # fmt: skip
        if self.coordinator:
            argv += ["--coordinator", self.coordinator]
        if self.nats_url:
            # A NATS URL may carry credentials: it goes through the environment, never argv
            # (which any local user can read in /proc).
            argv += ["--nats-url-env", NATS_URL_ENV]
        return argv


NATS_URL_ENV = "CACHET_RECORDS_NATS_URL"
# glibc's malloc for the records process (read when a process starts, so set by whoever starts
# it): the spool is read in pieces of up to 4 MiB, each a fresh bytes object, and glibc serves
# allocations over 128 KiB-32 MiB from mmap, so every piece was fresh pages for the kernel to
# fault in and zero. From the heap, freed pieces are reused: bench/seal_spool.py --hits,
# alternated, 1.66-1.76 against 1.52-1.55 µs per record. The heap keeps up to 128 MiB free
# before it gives memory back; the records process's peak is bounded by READ_AHEAD_RECORDS.
MALLOC_ENVIRONMENT = {
    "MALLOC_MMAP_THRESHOLD_": str(64 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(128 << 20),
}


def records_process_environment(environ: dict[str, str]) -> dict[str, str]:
    """``environ`` with MALLOC_ENVIRONMENT added where the operator has not set them."""
    return {**MALLOC_ENVIRONMENT, **environ}


def _parse_args(argv: list[str]) -> PipelineSettings:
    parser = argparse.ArgumentParser(prog="python -m proxy.records.daemon")
    parser.add_argument("--records-dir", required=True, type=Path)
    parser.add_argument("--edge", required=True)
    parser.add_argument("--batch-max-records", type=int, default=DEFAULT_BATCH_MAX_RECORDS)
    parser.add_argument("--batch-max-interval-ms", type=int, default=1000)
    parser.add_argument("--coordinator")
    parser.add_argument("--nats-url-env")
    parser.add_argument("--nats-subject", default="cachet.batches")
    parser.add_argument("--status-interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    nats_url = os.environ.get(args.nats_url_env) if args.nats_url_env else None
    if args.nats_url_env and not nats_url:
        parser.error(f"--nats-url-env names {args.nats_url_env}, which is not set")
    return PipelineSettings(
        records_dir=args.records_dir,
        edge_id=args.edge,
        batch_max_records=args.batch_max_records,
        batch_max_interval_ms=args.batch_max_interval_ms,
        coordinator=args.coordinator,
        nats_url=nats_url,
        nats_subject=args.nats_subject,
        status_interval_s=args.status_interval,
    )


class RecordsPipeline:
    """Sealer + forwarder + status reports, until ``stop`` is set."""

    def __init__(self, settings: PipelineSettings) -> None:
        self.settings = settings
        root = settings.records_dir
        key = read_signing_key(root / "keys" / f"{settings.edge_id}.key")
        self.sealer = Sealer(
            root / "spool",
            root / "batches",
            key,
            settings.edge_id,
            max_records=settings.batch_max_records,
            max_interval_ms=settings.batch_max_interval_ms,
        )
        self.forwarder: Forwarder | None = None

    def status(self) -> dict[str, Any]:
        sealer, forwarder = self.sealer, self.forwarder
        return {
            "sealed_batches": sealer.sealed_batches,
            "sealed_records": sealer.sealed_records,
            "quarantined_records": sealer.quarantined_records,
            "last_seal_latency_s": sealer.last_seal_latency_s,
            "forwarding": forwarder is not None,
            "lag_count": forwarder.lag_count if forwarder else 0,
            "lag_s": forwarder.lag_s if forwarder else 0.0,
            "acked": forwarder.acked if forwarder else 0,
            "failures": dict(forwarder.failures) if forwarder else {},
            "pid": os.getpid(),
            "written_at": time.time(),
        }

    def write_status(self) -> None:
        path = self.settings.records_dir / STATUS_NAME
        temp = path.with_name(f"{STATUS_NAME}.tmp-{os.getpid()}")
        temp.write_text(json.dumps(self.status(), sort_keys=True))
        os.replace(temp, path)

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.to_thread(self.sealer.recover)
        self.write_status()
        async with contextlib.AsyncExitStack() as resources:
            self.forwarder = await self._open_forwarder(resources)
            if self.forwarder is not None:
                self.sealer.on_batches = self.forwarder.add
            tasks = [asyncio.create_task(self.sealer.run(_clock_ms, stop))]
            if self.forwarder is not None:
                tasks.append(asyncio.create_task(self.forwarder.run(stop)))
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.status_interval_s)
                self.write_status()
                for task in tasks:
                    if task.done() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
            await asyncio.gather(*tasks)
            self.write_status()

    def _fit_batches_to(self, most_records: int) -> None:
        """Seal batches the transport can take whole (a NATS server's max_payload)."""
        if self.sealer.max_records > most_records:
            log.info("records: batches of at most %d records, to fit the NATS server's "
                     "max_payload", most_records)  # fmt: skip
            self.sealer.max_records = most_records

    async def _open_forwarder(self, resources: contextlib.AsyncExitStack) -> Forwarder | None:
        batches = self.settings.records_dir / "batches"
        if self.settings.nats_url:
            import nats

            from proxy.records.nats_forwarder import NatsForwarder, records_per_payload

            nc = await nats.connect(
                self.settings.nats_url,
                max_reconnect_attempts=-1,
                allow_reconnect=True,
                connect_timeout=5,
            )
            resources.push_async_callback(nc.close)
            self._fit_batches_to(records_per_payload(nc.max_payload))
            return NatsForwarder(batches, nc, subject_prefix=self.settings.nats_subject)
        if self.settings.coordinator:
            import aiohttp

            session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60, connect=5))
            resources.push_async_callback(session.close)
            return Forwarder(batches, self.settings.coordinator, session)
        return None


def _clock_ms() -> int:
    return int(time.time() * 1000)


async def _main(settings: PipelineSettings) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    stop_at_end_of_stdin(stop)
    await RecordsPipeline(settings).run(stop)
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        return None
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> int:
    settings = _parse_args(sys.argv[1:] if argv is None else argv)
    fastrecords.use_environment(os.environ)
    level = os.environ.get("CACHET_RECORDS_LOG_LEVEL", "info").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s [records] %(message)s",
        stream=sys.stderr,
    )
    try:
        # uvloop, as the serving processes: the forwarder's POSTs and thread hops spent as much
        # CPU in the standard loop's scheduling (timer heap, selector) as in aiohttp itself.
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(_main(settings))
    except Exception:
        log.exception("records process failed")
        return 1


if __name__ == "__main__":
    sys.exit(main())
