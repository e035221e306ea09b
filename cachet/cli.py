"""The one `cachet` command. Each subcommand lives in the package it drives and registers itself
here through a `register(subparsers)` function, so this module only dispatches."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from provenance import fastrecords

Handler = Callable[[argparse.Namespace], int]


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cachet",
        description=(
            "Cachet: a caching reverse proxy that bills natively. Every response becomes a "
            "signed record; a coordinator anchors records in a Merkle log and pays creators."
        ),
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for register in _registrars(sys.argv[1:] if argv is None else argv):
        register(subparsers)
    return parser


def _registrars(
    argv: Sequence[str],
) -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    """Every subcommand's registrar; only the proxy's for `cachet proxy ...`: an edge (and each
    test that starts one) need not import the coordinator, the admin UI and NATS to serve
    (about 0.3 s and 6 MB a process)."""
    if argv[:1] == ["proxy"]:
        from proxy import cli as proxy_only

        return [proxy_only.register]
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
    fastrecords.use_environment(os.environ)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
