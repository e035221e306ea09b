"""`cachet coordinator ingest-worker`: one stateless JetStream ingest worker (issue 9).

    cachet coordinator ingest-worker --nats nats://127.0.0.1:4222 --db postgresql://… --data DIR

Run several (on one machine or many) against one PostgreSQL database: they share the durable
pull consumer, and one of them at a time (an advisory lock) sequences the Merkle log. ``--data``
holds the log key (the same key as the coordinator's). On SQLite, run one worker process only
(SQLite has one writer); ``--consumers`` runs several consumer tasks inside it.

A worker started while PostgreSQL or NATS is restarting waits for them (``--start-timeout``,
with back-off) instead of exiting; once running, it rides out restarts of either: the NATS
client reconnects, and batches that fail to apply are handed back for redelivery.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import asyncpg
import nats.errors
import nats.js.errors

from billing.config import ConfigError, CoordinatorConfig
from billing.ingest.nats import (
    DEFAULT_DURABLE,
    DEFAULT_STREAM,
    DEFAULT_SUBJECT_PREFIX,
    IngestWorker,
    StreamNames,
    connect,
    ensure_stream,
)

log = logging.getLogger("cachet.ingest.worker")
T = TypeVar("T")
DEFAULT_START_TIMEOUT_S = 60.0
# What a service that is down, restarting or starting up answers; anything else (a wrong
# password, a database that does not exist) is a configuration error and fails at once.
UNAVAILABLE = (
    OSError,  # refused, reset; TimeoutError too
    asyncpg.exceptions.OperatorInterventionError,  # starting up, shutting down
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.TooManyConnectionsError,  # workers starting together
    asyncpg.exceptions.InterfaceError,  # the connection closed under a call
    nats.errors.NoServersError,
    nats.errors.TimeoutError,
    nats.errors.ConnectionClosedError,
    nats.js.errors.ServiceUnavailableError,  # JetStream recovering its streams
)


def add_parser(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from billing.cli import _add_common

    worker = actions.add_parser(
        "ingest-worker",
        help="consume sealed batches from NATS JetStream into the database",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(worker, suppress=True)
    worker.add_argument("--nats", metavar="URL", default="nats://127.0.0.1:4222",
                        help="NATS server (default nats://127.0.0.1:4222)")  # fmt: skip
    worker.add_argument("--stream", default=DEFAULT_STREAM, help="JetStream stream name")
    worker.add_argument("--subject-prefix", default=DEFAULT_SUBJECT_PREFIX,
                        help="subjects are PREFIX.<edge>")  # fmt: skip
    worker.add_argument("--durable", default=DEFAULT_DURABLE, help="durable consumer name")
    worker.add_argument("--consumers", type=int, default=1, help="consumer tasks in this process")
    worker.add_argument("--fetch", type=int, default=8, help="messages per pull")
    worker.add_argument("--ack-wait", type=float, default=30.0, metavar="SECONDS",
                        help="redeliver a message unacknowledged this long")  # fmt: skip
    worker.add_argument("--start-timeout", type=float, default=DEFAULT_START_TIMEOUT_S,
                        metavar="SECONDS", help="wait this long for the database and NATS"
                        " at start (default 60)")  # fmt: skip
    worker.set_defaults(handler=run_ingest_worker)


async def when_up(
    what: str, attempt: Callable[[], Awaitable[T]], stop: asyncio.Event, patience_s: float
) -> T:
    """``attempt()``, retried with back-off while ``what`` is unavailable, for at most
    ``patience_s`` (then, or once ``stop`` is set, its last error propagates)."""
    loop = asyncio.get_running_loop()
    deadline, delay_s = loop.time() + patience_s, 0.2
    while True:
        try:
            return await attempt()
        except UNAVAILABLE as exc:
            if stop.is_set() or loop.time() + delay_s > deadline:
                raise
            log.warning("%s unavailable (%s); retrying in %.1f s", what, type(exc).__name__,
                        delay_s)  # fmt: skip
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay_s)
        delay_s = min(delay_s * 2, 5.0)


async def serve(config: CoordinatorConfig, args: argparse.Namespace, stop: asyncio.Event) -> None:
    from billing.logkey import load_or_create_log_key
    from billing.service import Coordinator, open_store

    names = StreamNames(args.stream, args.subject_prefix, args.durable)
    patience_s = args.start_timeout
    store = await when_up("database", lambda: open_store(config), stop, patience_s)
    try:
        log_key = load_or_create_log_key(Path(config.data), config.log_origin)
        coordinator = Coordinator(config, store, log_key)
        nc = await when_up("NATS", lambda: connect(args.nats, "cachet-ingest-worker"), stop,
                           patience_s)  # fmt: skip
        try:
            await when_up("NATS", lambda: ensure_stream(nc, names), stop, patience_s)
            await when_up("database", coordinator.sequencer.start, stop, patience_s)
            workers = [
                IngestWorker(
                    nc,
                    names,
                    store,
                    coordinator.ingestor,
                    fetch_batch=args.fetch,
                    ack_wait_s=args.ack_wait,
                )
                for _ in range(max(1, args.consumers))
            ]
            print("cachet ingest-worker: consuming", names.stream, file=sys.stderr, flush=True)
            await asyncio.gather(*(w.run(stop) for w in workers))
        finally:
            await coordinator.sequencer.stop()
            if coordinator.publisher is not None:  # deliver or drop the last checkpoint cleanly
                await coordinator.publisher.close()
            with contextlib.suppress(Exception):
                await nc.close()
    finally:
        await store.close()


def run_ingest_worker(args: argparse.Namespace) -> int:
    from billing.cli import _config, _fail

    try:
        config = _config(args)
    except ConfigError as exc:
        return _fail(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve(config, args, stop)

    try:
        asyncio.run(main())
    except (ConfigError, *UNAVAILABLE) as exc:  # at start: one line, not a traceback
        return _fail(f"{type(exc).__name__}: {exc}")
    except asyncpg.PostgresError as exc:
        return _fail(f"database: {type(exc).__name__}: {exc}")
    return 0
