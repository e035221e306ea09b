"""The one `cachet` command. Each subcommand lives in the package it drives and registers itself
here through a `register(subparsers)` function, so this module only dispatches."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cachet",
        description=(
            "Cachet: a caching reverse proxy that bills natively. Every response becomes a "
            "signed record; a coordinator anchors records in a Merkle log and pays creators."
        ),
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for register in _registrars():
        register(subparsers)
    return parser


def _registrars() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    from admin import cli as admin_cli
    from billing import cli as billing_cli
    from cachet import provenance_cli, sample_origin, up
    from proxy import cli as proxy_cli

    return [
        proxy_cli.register,
        sample_origin.register,
        provenance_cli.register,
        billing_cli.register,
        up.register,
        admin_cli.register,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
