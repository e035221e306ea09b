"""`cachet coordinator`: run the coordinator, or `migrate` its schema, or mint an `admin-token`.

    cachet coordinator --listen 127.0.0.1:7070 --data DIR [--db DSN] [--config FILE]
    cachet coordinator migrate --data DIR [--json]
    cachet coordinator admin-token --data DIR [--json]
    cachet coordinator ingest-worker --nats URL --db postgresql://… --data DIR
    cachet coordinator export-tiles --data DIR --out DIR [--json]

Precedence: defaults < --config file ([coordinator] table) < CACHET_COORDINATOR_<KEY> < flags.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import Any

from billing.config import ConfigError, CoordinatorConfig, config_from_environment, parse_listen

EXIT_CONFIG = 2


def _add_common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--data",
        metavar="DIR",
        default=default,
        help="folder for the log key and SQLite (default ./cachet-coordinator)",
    )
    parser.add_argument(
        "--db",
        metavar="DSN",
        default=default,
        help="database DSN (default SQLite in --data; sqlite:///PATH)",
    )
    parser.add_argument("--config", metavar="FILE", default=default,
                        help="TOML file with a [coordinator] table")  # fmt: skip
    parser.add_argument("--json", action="store_true", default=default,
                        help="print machine-readable output")  # fmt: skip


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "coordinator",
        help="run the coordinator (verified ingest, Merkle log, receipts)",
        description="Run Cachet's coordinator: edges enrol and push signed batches; it verifies, "
        "stores and anchors them in a Merkle log with signed checkpoints.",
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(parser, suppress=False)
    parser.add_argument("--listen", metavar="HOST:PORT", default=None,
                        help="address to serve on (default 127.0.0.1:7070)")  # fmt: skip
    parser.add_argument("--log-origin", metavar="NAME", default=None,
                        help="checkpoint origin, log key name")  # fmt: skip
    parser.set_defaults(handler=_run, action=None)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    migrate = actions.add_parser("migrate", help="apply pending schema migrations and exit")
    _add_common(migrate, suppress=True)
    migrate.set_defaults(handler=_migrate)
    token = actions.add_parser("admin-token", help="replace the admin token; print the new one")
    _add_common(token, suppress=True)
    token.set_defaults(handler=_admin_token)
    from billing import cli_worker

    cli_worker.add_parser(actions)  # `cachet coordinator ingest-worker` (issue 9)
    from billing import cli_tiles

    cli_tiles.add_parser(actions)  # `cachet coordinator export-tiles` (issue 5)
    from billing import cli_billing

    cli_billing.register(subparsers)  # `cachet billing estimate` (issue 6)


def _config(args: argparse.Namespace) -> CoordinatorConfig:
    flags = {
        "data": args.data,
        "db": args.db,
        "listen": getattr(args, "listen", None),
        "log_origin": getattr(args, "log_origin", None),
    }
    return config_from_environment(args.config, flags)


def _fail(reason: str) -> int:
    print(f"cachet coordinator: {reason}", file=sys.stderr)
    return EXIT_CONFIG


def _migrate(args: argparse.Namespace) -> int:
    from billing.service import open_store

    async def migrate() -> None:
        from datetime import UTC, datetime

        from admin.store import AdminStore
        from provenance.records import format_timestamp

        config = _config(args)
        store = await open_store(config)  # opening applies pending migrations
        await store.close()
        # The admin UI's tables have migrations of their own (admin/migrations.py).
        admin = await AdminStore.open(config, format_timestamp(datetime.now(UTC)))
        await admin.close()

    try:
        asyncio.run(migrate())
    except (ConfigError, OSError) as exc:
        return _fail(str(exc))
    from billing.store.migrations import MIGRATIONS

    version = MIGRATIONS[-1].version
    print(json.dumps({"schema_version": version}) if args.json else f"schema at v{version}")
    return 0


def _admin_token(args: argparse.Namespace) -> int:
    from billing.service import open_store, rotate_admin_token, utc_now

    async def rotate() -> str:
        store = await open_store(_config(args))
        try:
            return await rotate_admin_token(store, utc_now())
        finally:
            await store.close()

    try:
        token = asyncio.run(rotate())
    except (ConfigError, OSError) as exc:
        return _fail(str(exc))
    print(json.dumps({"admin_token": token}) if args.json else token)
    return 0


def _run(args: argparse.Namespace) -> int:
    from aiohttp import web

    from billing.api.app import build_app
    from billing.api.billing import BILLING_SETTINGS, BillingSettings
    from billing.cli_billing import read_billing_tables
    from billing.service import Coordinator, is_postgres

    try:
        config = _config(args)
        host, port = parse_listen(config.listen)
        pricing, interval_s = read_billing_tables(args.config)
        if not is_postgres(config):
            _ = config.sqlite_path  # refuses an unsupported DSN before anything starts
    except ConfigError as exc:
        return _fail(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    async def open_coordinator() -> Coordinator:
        coordinator = await Coordinator.open(config)
        if coordinator.new_admin_token is not None:
            print(f"cachet coordinator: admin token (shown once): {coordinator.new_admin_token}",
                  file=sys.stderr, flush=True)  # fmt: skip
        print(f"cachet coordinator: log key {coordinator.log_verifier.name}+"
              f"{coordinator.log_verifier.key_id_hex}; listening on http://{host}:{port}",
              file=sys.stderr, flush=True)  # fmt: skip
        return coordinator

    try:
        app = build_app(open_coordinator)
        app[BILLING_SETTINGS] = BillingSettings(seed_pricing=pricing, interval_s=interval_s)
        web.run_app(app, host=host, port=port, print=None)
    except (OSError, RuntimeError, ConfigError) as exc:
        return _fail(str(exc))
    return 0
