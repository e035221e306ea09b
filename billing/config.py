"""`cachet coordinator` configuration: defaults < TOML file (`[coordinator]` table) <
`CACHET_COORDINATOR_<KEY>` environment variables < flags. Pure except ``read_config_file``;
bad input raises ``ConfigError`` (a ValueError) with a one-line reason naming the key."""

from __future__ import annotations

import dataclasses
import os
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ENV_PREFIX = "CACHET_COORDINATOR_"
MiB = 1024**2


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


@dataclass(frozen=True, slots=True)
class CoordinatorConfig:
    listen: str = "127.0.0.1:7070"
    data: str = "./cachet-coordinator"
    db: str | None = None  # DSN; None: SQLite file coordinator.db in ``data``
    log_origin: str = "cachet.local/log"  # C2SP checkpoint origin line and log key name
    checkpoint_interval_s: float = 10.0
    checkpoint_every_batches: int = 1000
    max_batch_bytes: int = 32 * MiB  # decoded body; the encoded body has the same limit
    max_pending_batches: int = 64  # ingest queue bound; beyond it 503 + Retry-After
    retry_after_s: int = 2
    max_future_skew_s: float = 300.0
    enrolment_token_ttl_s: int = 3600
    sqlite_synchronous: str = "FULL"
    # Witnesses (docs/design/coordinator.md, "Publishing checkpoints"): each new checkpoint's
    # signed note is POSTed to every URL and fed to the command's stdin; both off by default.
    checkpoint_publish_urls: tuple[str, ...] = ()
    checkpoint_publish_command: tuple[str, ...] = ()  # argv, run without a shell
    checkpoint_publish_timeout_s: float = 10.0  # one POST or one command run
    checkpoint_publish_retry_initial_s: float = 1.0
    checkpoint_publish_retry_max_s: float = 60.0

    def __post_init__(self) -> None:
        if self.sqlite_synchronous not in ("FULL", "NORMAL"):
            raise ConfigError("sqlite_synchronous must be FULL or NORMAL")
        for name in ("checkpoint_every_batches", "max_batch_bytes", "max_pending_batches"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        for name in (
            "checkpoint_interval_s",
            "checkpoint_publish_timeout_s",
            "checkpoint_publish_retry_initial_s",
        ):
            if not getattr(self, name) > 0:  # also refuses NaN
                raise ConfigError(f"{name} must be > 0")
        if self.checkpoint_publish_retry_max_s < self.checkpoint_publish_retry_initial_s:
            raise ConfigError(
                "checkpoint_publish_retry_max_s must be >= checkpoint_publish_retry_initial_s"
            )
        for url in self.checkpoint_publish_urls:
            check_publish_url(url)
        if self.checkpoint_publish_command and not self.checkpoint_publish_command[0].strip():
            raise ConfigError("checkpoint_publish_command: the program name is empty")
        parse_listen(self.listen)

    @property
    def sqlite_path(self) -> Path:
        if self.db is None:
            return Path(self.data) / "coordinator.db"
        if self.db.startswith("sqlite:///"):
            return Path(self.db[len("sqlite:///") :])
        raise ConfigError(f"db: unsupported DSN {self.db.split(':', 1)[0]!r} (only sqlite:///…)")


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"listen: want HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def check_publish_url(url: str) -> None:
    """A witness URL must be absolute http(s) with a host. The URL itself is never echoed: it may
    carry credentials."""
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = urlsplit(""), False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise ConfigError(
            "checkpoint_publish_urls: each entry must be an http:// or https:// URL with a host"
        )


def _string_list(name: str, value: Any, source: str) -> tuple[str, ...]:
    """An array of strings, or one string split into words: the command as a shell would split
    it (shlex, though no shell runs it), URLs at whitespace. An empty array is none."""
    if isinstance(value, str) and name == "checkpoint_publish_command":
        try:
            words = shlex.split(value)
        except ValueError as exc:  # an unclosed quote
            raise ConfigError(f"{source}: {name}: {exc}") from None
        if not words:  # a command was meant, and it is empty ([] is the default: none)
            raise ConfigError(f"{source}: {name} is empty (leave the key out to run no command)")
    elif isinstance(value, str):
        words = value.split()
    elif isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        words = list(value)
    else:
        raise ConfigError(f"{source}: {name} must be a string or an array of strings")
    return tuple(words)


def _coerce(name: str, value: Any, source: str) -> Any:
    field = next((f for f in dataclasses.fields(CoordinatorConfig) if f.name == name), None)
    if field is None:
        raise ConfigError(f"{source}: unknown key {name!r}")
    kind = str(field.type)
    if kind == "tuple[str, ...]":
        return _string_list(name, value, source)
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {name} must be a number") from None
    return None if value in ("", None) and "None" in kind else str(value)


def load_config(
    file_table: Mapping[str, Any], env: Mapping[str, str], flags: Mapping[str, Any]
) -> CoordinatorConfig:
    """Merge the layers (flags with value None are unset)."""
    values: dict[str, Any] = {}
    for name, value in file_table.items():
        values[name] = _coerce(name, value, "config file")
    for key, value in env.items():
        if key.startswith(ENV_PREFIX) and key != ENV_PREFIX + "CONFIG":
            name = key[len(ENV_PREFIX) :].lower()
            values[name] = _coerce(name, value, key)
    for name, value in flags.items():
        if value is not None:
            values[name] = _coerce(name, value, "--" + name.replace("_", "-"))
    return CoordinatorConfig(**values)


def read_config_file(path: str | None) -> dict[str, Any]:
    """The ``[coordinator]`` table of a TOML file ({} without a path)."""
    if path is None:
        return {}
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    table = document.get("coordinator", {})
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [coordinator] must be a table")
    return table


def config_from_environment(file_path: str | None, flags: Mapping[str, Any]) -> CoordinatorConfig:
    return load_config(read_config_file(file_path), os.environ, flags)
