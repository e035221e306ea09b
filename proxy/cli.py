"""`cachet proxy` argument parsing (placeholder until the config module lands)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("proxy", help="run the caching reverse proxy")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    raise SystemExit("cachet proxy: not built yet")
