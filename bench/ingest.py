"""Coordinator ingest throughput with SQLite (issue 5 target: >= 100k records/s on one core).

Run: .venv/bin/python -m bench.ingest [--batches N] [--batch-size N] [--edges N] [--runs N]
     [--ids edge|random|sequential] [--synchronous FULL|NORMAL]
     [--http [--identity] [--billing]]

Seals N batches of 1,000 records (not timed), then times the coordinator ingesting them: parse,
key lookup, signature, Merkle root over the records, chain check and the store's transaction
(batch row, the records JSON, one request-id dedup row per record, upserted) with WAL and the
chosen synchronous mode.

- ``--edges N`` spreads the batches over N enrolled edges, each posting its own chain in order
  while the others post theirs at the same time (a fleet; 1 = one edge posting back to back, so
  nothing ever waits to be grouped with anything).
- ``--ids edge`` (default) gives each record the id an edge would draw at its ``ts``
  (``ExchangeReader.new_request_id`` in ``proxy/exchange.py``): the ts in Unix milliseconds as
  12 hex digits, then 80 random bits, so each edge's ids ascend and the dedup index mostly
  appends. ``random`` gives 128 random bits, as clients' own random X-Request-IDs would be, the
  worst case: every insert lands on a random page of the index. ``sequential``
  (``req-<edge>-<seq>-<i>``, what this bench used first) appends and flatters the store.
- ``--http`` posts through the aiohttp app on 127.0.0.1 instead of calling the Ingestor; the
  edges' client runs in a process of its own, as edges do, and sends each body gzip-compressed
  as the forwarder does (``provenance.compression.gzip_compress``, ``Content-Encoding: gzip``,
  compressed before the clock starts), so
  the coordinator's CPU includes inflating it, with the ``X-Cachet-Spool-Lag`` header the
  forwarder sends; ``--identity`` sends the bodies uncompressed. The app's billing runner
  (attribution every 5 s, which reads back and attributes what was ingested meanwhile) is off
  unless ``--billing``: it is billing's work, measured by bench/billing_throughput.py, and with
  it on the figure is the whole coordinator's while ingesting and attributing at once.
- ``--runs N`` repeats the timed part on a fresh database each time (min / median / max).

``records_per_s`` is wall clock; ``records_per_cpu_s`` divides by the CPU time the process used
meanwhile (every thread: the event loop's and SQLite's; not the ``--http`` client's), which
stays meaningful when other work shares the machine and is the issue's "on one core" figure.

Also reports the parse and verify stages alone (the generic reference path and the fast path
ingest takes) and the machine's load average before and after, since the box is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import multiprocessing.queues
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web

from billing.api.app import build_app
from billing.api.billing import BILLING_SETTINGS, BillingSettings
from billing.config import CoordinatorConfig
from billing.service import Coordinator
from provenance import fastrecords
from provenance.batches import (
    ZERO_HASH_HEX,
    format_sealed_batch,
    header_hash,
    parse_canonical_batch,
    parse_sealed_batch,
    seal_batch,
    verify_batch,
    verify_canonical_batch,
)
from provenance.compression import gzip_compress
from provenance.keys import KeyRing, SigningKey, format_verifier_key
from provenance.records import Record, format_timestamp


def edge_name(index: int) -> str:
    return f"edge-bench-{index}"


def edge_key(index: int) -> SigningKey:
    return SigningKey(edge_name(index), bytes([index]) * 32)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def request_id(ids: str, moment: datetime, name: str, rng: random.Random) -> str:
    """A record's request id of kind ``ids`` (see the module docstring); ``name`` is unique."""
    if ids == "edge":
        return f"{(moment - _EPOCH) // _MS:012x}{rng.getrandbits(80):020x}"
    if ids == "random":
        return f"{rng.getrandbits(128):032x}"
    return name


def make_chain(edge: int, count: int, size: int, ids: str, rng: random.Random) -> list[bytes]:
    """One edge's ``count`` sealed batches, in chain order."""
    name, key = edge_name(edge), edge_key(edge)
    base = datetime.now(UTC) - timedelta(hours=1)
    prev, bodies = ZERO_HASH_HEX, []
    for seq in range(count):
        moments = [base + timedelta(milliseconds=seq * size + i) for i in range(size)]
        records = [
            Record(
                request_id=request_id(ids, moment, f"req-{edge}-{seq:06d}-{i:06d}", rng),
                ts=format_timestamp(moment),
                edge=name,
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
            for i, moment in enumerate(moments)
        ]
        sealed = seal_batch(records, name, seq, prev, key)
        prev = header_hash(sealed.header)
        bodies.append(format_sealed_batch(sealed))
    return bodies


async def open_coordinator(data: Path, synchronous: str, edges: int) -> Coordinator:
    config = CoordinatorConfig(
        data=str(data),
        sqlite_synchronous=synchronous,
        checkpoint_every_batches=1_000_000,
        max_pending_batches=max(64, 2 * edges),
    )
    coordinator = await Coordinator.open(config)
    for index in range(edges):
        token = (await coordinator.issue_enrolment_token()).token
        verifier = format_verifier_key(edge_key(index).verifier)
        await coordinator.enrol(token, edge_name(index), verifier)
    return coordinator


async def run_direct(
    chains: list[list[bytes]], data: Path, synchronous: str
) -> tuple[float, float]:
    coordinator = await open_coordinator(data, synchronous, len(chains))

    async def post_chain(bodies: list[bytes]) -> None:
        for body in bodies:
            await coordinator.ingestor.ingest(body, None)

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(post_chain(bodies) for bodies in chains))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    await settle(coordinator)
    await coordinator.close()
    return elapsed, cpu


async def settle(coordinator: Coordinator) -> None:
    """Integrate and sign what was ingested (reported, not part of the rate) before closing.

    Closing right after the last acceptance can hang on Python 3.11: the sequencer's
    ``asyncio.wait_for`` swallows a cancel that lands as its wake event fires (gh-86296), so
    ``Sequencer.stop`` waits forever; after the flush the sequencer is idle and stops cleanly."""
    start = time.perf_counter()
    checkpoint = await coordinator.sequencer.flush()
    print(f"sequencer: {checkpoint.size} leaves integrated + signed in "
          f"{(time.perf_counter() - start) * 1000:.1f} ms", file=sys.stderr)  # fmt: skip
    await asyncio.sleep(0.05)  # let the woken sequencer task finish its (now empty) step


async def run_http(
    chains: list[list[bytes]],
    data: Path,
    synchronous: str,
    identity: bool = False,
    billing: bool = False,
) -> tuple[float, float]:
    """The coordinator's app on 127.0.0.1, posted to by a client in a process of its own, so the
    CPU counted is the coordinator's alone (an edge's HTTP client is not the coordinator's
    cost). Billing's periodic attribution (every 5 s) runs only with ``billing``: it reads
    back and attributes the records being ingested, work of its own (bench/billing_throughput.py)
    that would otherwise count as ingest's."""
    holder: list[Coordinator] = []

    async def opener() -> Coordinator:
        holder.append(await open_coordinator(data, synchronous, len(chains)))
        return holder[0]

    app = build_app(opener)
    if not billing:
        app[BILLING_SETTINGS] = BillingSettings(background=False)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}/v1/batches"
    context = multiprocessing.get_context("spawn")
    to_client, from_client = context.Queue(), context.Queue()
    client = context.Process(
        target=post_chains, args=(url, chains, identity, to_client, from_client)
    )
    client.start()
    try:
        await asyncio.to_thread(from_client.get, True, 600)  # the client is up, with its bodies
        start, cpu = time.perf_counter(), time.process_time()
        to_client.put("go")
        outcome = await asyncio.to_thread(from_client.get, True, 3600)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        await asyncio.to_thread(client.join, 30)
    if outcome != "done":
        raise SystemExit(f"client failed: {outcome}")
    await settle(holder[0])
    await runner.cleanup()
    return elapsed, cpu


def post_chains(
    url: str,
    chains: list[list[bytes]],
    identity: bool,
    commands: multiprocessing.queues.Queue[str],
    replies: multiprocessing.queues.Queue[str],
) -> None:
    """The edges' side (a child process): each chain posted in order, all chains at once."""
    # the spool lag header every edge's forwarder sends (proxy/records/forwarder.py)
    headers = {"X-Cachet-Spool-Lag": "0"}
    if not identity:  # as the forwarder does (proxy/records/forwarder.py), before the clock
        headers["Content-Encoding"] = "gzip"
        chains = [[gzip_compress(body) for body in bodies] for bodies in chains]

    async def post_chain(session: aiohttp.ClientSession, bodies: list[bytes]) -> None:
        for body in bodies:
            async with session.post(url, data=body, headers=headers) as r:
                if r.status != 200:
                    raise RuntimeError(f"{r.status}: {await r.text()}")

    async def post_all() -> None:
        connector = aiohttp.TCPConnector(limit=len(chains))
        async with aiohttp.ClientSession(connector=connector) as session:
            replies.put("ready")
            await asyncio.to_thread(commands.get)
            await asyncio.gather(*(post_chain(session, bodies) for bodies in chains))

    try:
        asyncio.run(post_all())
    except Exception as exc:  # reported to the parent, which fails the run
        replies.put(repr(exc))
    else:
        replies.put("done")


def time_stages(bodies: list[bytes]) -> dict[str, float]:
    """Seconds per stage (one edge's batches): the generic reference path and the fast path."""
    ring = KeyRing([edge_key(0).verifier])
    times: dict[str, float] = {}
    start = time.perf_counter()
    parsed = [parse_sealed_batch(body) for body in bodies]
    times["parse"] = time.perf_counter() - start
    start = time.perf_counter()
    for sealed in parsed:
        verify_batch(sealed, ring)
    times["verify"] = time.perf_counter() - start
    start = time.perf_counter()
    fast = [parse_canonical_batch(body) for body in bodies]
    times["fast_parse"] = time.perf_counter() - start
    start = time.perf_counter()
    for batch in fast:
        verify_canonical_batch(batch, ring)
    times["fast_verify"] = time.perf_counter() - start
    return times


def main() -> None:
    fastrecords.use_environment(os.environ)  # CACHET_PURE_PYTHON=1: the regular expressions
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200, help="in all, over every edge")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--edges", type=int, default=1)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--ids", choices=("edge", "random", "sequential"), default="edge")
    parser.add_argument("--synchronous", choices=("FULL", "NORMAL"), default="FULL")
    parser.add_argument("--http", action="store_true")
    parser.add_argument("--identity", action="store_true", help="--http bodies uncompressed")
    parser.add_argument(
        "--billing", action="store_true", help="--http with billing's attribution runner on"
    )
    args = parser.parse_args()
    if args.edges < 1 or args.batches < args.edges:
        parser.error("need --edges >= 1 and at least one batch per edge")
    rng = random.Random(5)
    per_edge = args.batches // args.edges
    chains = [make_chain(e, per_edge, args.batch_size, args.ids, rng) for e in range(args.edges)]
    total = per_edge * args.edges * args.batch_size
    stages = time_stages(chains[0])
    stage_records = per_edge * args.batch_size
    load_before = os.getloadavg()[0]
    rates, cpu_rates = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="cachet-bench-ingest-") as folder:
            if args.http:
                timed = run_http(
                    chains, Path(folder), args.synchronous, args.identity, args.billing
                )
            else:
                timed = run_direct(chains, Path(folder), args.synchronous)
            elapsed, cpu = asyncio.run(timed)
            rates.append(total / elapsed)
            cpu_rates.append(total / cpu)
    report: dict[str, object] = {
        "records": total,
        "batch_size": args.batch_size,
        "edges": args.edges,
        "ids": args.ids,
        "synchronous": args.synchronous,
        "path": ("http-identity" if args.identity else "http-gzip") if args.http else "ingestor",
        "billing_runner": args.http and args.billing,
        "records_per_s": round(statistics.median(rates)),
        "records_per_s_min_max": [round(min(rates)), round(max(rates))],
        "records_per_cpu_s": round(statistics.median(cpu_rates)),
        "runs": args.runs,
        "load_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    report.update({f"{name}_records_per_s": round(stage_records / s) for name, s in stages.items()})
    print(json.dumps(report))


if __name__ == "__main__":
    main()
