"""`cachet proxy`: flags derived from `proxy.config.CONFIG_SCHEMA`, then `proxy.server.run`.

Every configuration key has a flag here and a `CACHET_PROXY_<KEY>` environment variable; flags
win over the environment, which wins over the `--config` file. Configuration errors exit 2 with
`cachet proxy: <reason>` on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping

from proxy.config import (
    CONFIG_SCHEMA,
    ENV_CONFIG_FILE,
    ConfigError,
    ConfigKey,
    ProxyConfig,
    load_proxy_config,
    read_config_file,
)

EXIT_CONFIG = 2
_EPILOG = (
    "Precedence: defaults < --config file ([proxy] table) < CACHET_PROXY_<KEY> environment "
    "variables < flags. Sizes take IEC or SI units (256MiB, 10GiB, 1.5GB). "
    "Example: cachet proxy --listen 127.0.0.1:8080 --origin http://127.0.0.1:8000"
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "proxy",
        help="run the caching reverse proxy",
        description="Run Cachet's caching reverse proxy (RFC 9111 shared cache) in front of "
        "one or more origins.",
        epilog=_EPILOG,
    )
    add_config_arguments(parser)
    parser.set_defaults(handler=_run)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --config and one flag per schema key (default None: unset flags don't override)."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help=f"TOML configuration file (env {ENV_CONFIG_FILE}); see config.example.toml",
    )
    for key in CONFIG_SCHEMA.values():
        _add_key_argument(parser, key)


def _add_key_argument(parser: argparse.ArgumentParser, key: ConfigKey) -> None:
    help_text = f"{key.help} (default {key.default_text}; env {key.env_var})"
    if key.kind == "bool":
        parser.add_argument(
            key.flag,
            dest=key.name,
            action=argparse.BooleanOptionalAction,
            default=None,
            help=help_text,
        )
    elif key.kind == "routes":
        parser.add_argument(
            key.flag, dest=key.name, action="append", metavar=key.metavar, help=help_text
        )
    else:
        parser.add_argument(key.flag, dest=key.name, metavar=key.metavar, help=help_text)


def build_config(args: argparse.Namespace, env: Mapping[str, str]) -> ProxyConfig:
    """Return the merged configuration for parsed `args`, or raise ConfigError."""
    path = args.config or env.get(ENV_CONFIG_FILE) or None
    file_text = read_config_file(path) if path else None
    overrides = {name: getattr(args, name, None) for name in CONFIG_SCHEMA}
    config = load_proxy_config(overrides, env, file_text, file_name=path or "config file")
    if not config.origins:
        raise ConfigError(
            "no origin configured: pass --origin URL, set CACHET_PROXY_ORIGIN, "
            "or add [[proxy.origins]] to the --config file"
        )
    return config


def _run(args: argparse.Namespace) -> int:
    try:
        config = build_config(args, os.environ)
    except ConfigError as exc:
        print(f"cachet proxy: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return _server_run()(config)


def _server_run() -> Callable[[ProxyConfig], int]:
    # Imported lazily: `cachet --help` and config errors stay fast and need no event loop.
    from proxy import server

    return server.run
