"""`cachet coordinator export-tiles`: write the log as C2SP tlog-tiles files (issue 5).

    cachet coordinator export-tiles --data DIR --out DIR [--db DSN] [--json]

Runs beside a running coordinator (it only reads the database) or on its own; run it again (from
cron, or after each checkpoint) and it writes only what is new. Serve DIR as static files: a
mirror needs nothing else but the log key (DATA/log-key.pub, or GET /v1/log/key).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from billing.config import ConfigError
from billing.logkey import LOG_KEY_FILE
from provenance.errors import FormatError
from provenance.keys import VerifierKey, parse_verifier_key


def add_parser(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from billing.cli import _add_common

    parser = actions.add_parser(
        "export-tiles",
        help="write the log as C2SP tlog-tiles static files; only what is new since last time",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(parser, suppress=True)
    parser.add_argument(
        "--out", metavar="DIR", required=True, help="folder for checkpoint, tile/, tile/entries/"
    )
    parser.set_defaults(handler=_export)


def _log_key(data: Path) -> VerifierKey:
    path = data / (LOG_KEY_FILE + ".pub")
    try:
        return parse_verifier_key(path.read_text(encoding="utf-8").strip())
    except FileNotFoundError:
        raise ConfigError(f"no log key at {path}: has a coordinator run on this --data?") from None
    except FormatError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _export(args: argparse.Namespace) -> int:
    from billing.cli import _config, _fail
    from billing.log.tile_source import open_tile_source
    from billing.log.tiles_export import ExportError, ExportResult, export_tiles

    async def export() -> ExportResult:
        config = _config(args)
        log_key = _log_key(Path(config.data))
        async with open_tile_source(config) as source:
            return await export_tiles(source, Path(args.out), log_key)

    import asyncpg

    try:
        result = asyncio.run(export())
    except (ConfigError, ExportError, OSError, RuntimeError, asyncpg.PostgresError) as exc:
        return _fail(str(exc))
    if args.json:
        written = {"tiles_written": result.tiles, "bundles_written": result.bundles}
        print(json.dumps({"previous_size": result.previous_size, "size": result.size, **written}))
    else:
        print(f"tree size {result.size} (was {result.previous_size}): "
              f"{result.tiles} tiles and {result.bundles} entry bundles written")  # fmt: skip
    return 0
