"""`cachet proxy` configuration: one schema, four layers, one frozen `ProxyConfig`.

Precedence, lowest first: defaults < TOML file (`[proxy]` table, `[[proxy.origins]]` array) <
`CACHET_PROXY_<KEY>` environment variables < command-line flags. `CONFIG_SCHEMA` is the single
source for flag names, environment names, defaults and help text; the CLI, config.example.toml
and docs/configuration.md are checked against it so they can't drift.

Pure: parsing and merging only. The one I/O function is `read_config_file`. Every bad input
raises `ConfigError` (a ValueError) whose message is one line naming the key and its source.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, Literal

from proxy.cache.tiers.shared_format import check_shared_cache_url
from proxy.config_values import ConfigError, Kind, OriginConfig, parse_host, parse_value
from proxy.records.batch_files import DEFAULT_BATCH_MAX_RECORDS
from proxy.sizes import format_size

__all__ = [
    "CONFIG_SCHEMA",
    "ENV_CONFIG_FILE",
    "ENV_PREFIX",
    "ConfigError",
    "ConfigKey",
    "OriginConfig",
    "ProxyConfig",
    "load_proxy_config",
    "read_config_file",
    "render_value",
]

ENV_PREFIX = "CACHET_PROXY_"
ENV_CONFIG_FILE = "CACHET_PROXY_CONFIG"
MiB = 1024**2
GiB = 1024**3


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    listen: tuple[str, int] = ("127.0.0.1", 8080)
    admin_listen: tuple[str, int] = ("127.0.0.1", 9091)
    origins: tuple[OriginConfig, ...] = ()
    cache_dir: str = "./cachet-cache"
    memory_bytes: int = 256 * MiB
    disk_bytes: int = 10 * GiB
    max_object_bytes: int = 64 * MiB
    disk_max_object_bytes: int = 0  # 0: a quarter of the disk budget (disk_object_limit)
    range_fill_max_bytes: int = 16 * MiB
    purge_token: str | None = None
    workers: int = 1
    coordinator: str | None = None
    nats_url: str | None = None
    nats_subject: str = "cachet.batches"
    cache_set_cookie: bool = False
    targeted_cache_control: tuple[str, ...] = ("CDN-Cache-Control",)
    heuristic_fraction: float = 0.1  # RFC 9111 §4.2.2
    heuristic_max_s: int = 86400
    stale_if_error_default_s: int = 0
    header_timeout_s: float = 10.0
    keepalive_timeout_s: float = 75.0
    max_head_bytes: int = 65536
    max_connections: int = 10000
    origin_connect_timeout_s: float = 5.0
    origin_timeout_s: float = 60.0
    origin_max_connections: int = 256
    shutdown_grace_s: float = 10.0
    via_name: str = "cachet"
    access_log: bool = False
    log_level: str = "info"
    otlp_traces_url: str | None = None  # OpenTelemetry export (proxy/tracing.py); None: off
    otlp_service_name: str = "cachet-proxy"
    trust_forwarded_from: tuple[str, ...] = ()
    edge_id: str | None = None
    records: bool = True
    sample_rate: str = "1"
    spool_max_bytes: int = 1 * GiB
    spool_full_policy: str = "drop"
    batch_max_records: int = DEFAULT_BATCH_MAX_RECORDS
    batch_max_interval_ms: int = 1000
    manifests_dir: str | None = None
    training_use_header: str = "X-Cachet-Use"
    enrolment_token: str | None = None
    shared_cache_url: str | None = None  # the shared tier (docs/design/tiered-cache.md); None: off
    shared_max_object_bytes: int = 4 * MiB
    shared_key_prefix: str = "cachet:"
    shared_timeout_ms: int = 50

    def disk_object_limit(self, disk_budget: int) -> int:
        """The largest body the disk tier stores: ``disk_max_object_size``, or by default a
        quarter of the disk budget (nginx and Varnish cap objects only by the cache's size;
        a quarter keeps one object from flushing most of the cache at once)."""
        if self.disk_max_object_bytes > 0:
            return self.disk_max_object_bytes
        return max(1, disk_budget // 4)

    def origin_for_host(self, host: str | None) -> OriginConfig | None:
        """Return the origin serving `host` (exact name, then `*.suffix`, then the default)."""
        name = _normalise_request_host(host)
        default: OriginConfig | None = None
        wildcard: OriginConfig | None = None
        for origin in self.origins:
            if origin.is_default:
                default = origin
            elif name in origin.hosts:
                return origin
            elif wildcard is None and _matches_wildcard(name, origin.hosts):
                wildcard = origin
        return wildcard or default


def _normalise_request_host(host: str | None) -> str:
    if not host:
        return ""
    try:
        return parse_host(host)
    except ConfigError:
        return ""


def _matches_wildcard(name: str, hosts: tuple[str, ...]) -> bool:
    return any(
        h.startswith("*.") and name.endswith(h[1:]) and len(name) > len(h) - 1 for h in hosts
    )


Source = Literal["file", "env", "flag"]
_DEFAULTS: Mapping[str, Any] = {f.name: f.default for f in fields(ProxyConfig)}


@dataclass(frozen=True, slots=True)
class ConfigKey:
    name: str  # key under [proxy]; flag --name-with-dashes; env CACHET_PROXY_NAME
    kind: Kind
    help: str
    field: str  # the ProxyConfig field it sets ("" when folded into `origins`)
    default: Any
    metavar: str
    minimum: int = 0
    flag_name: str = ""

    @property
    def flag(self) -> str:
        return "--" + (self.flag_name or self.name.replace("_", "-"))

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def default_text(self) -> str:
        """The default spelled as a user would write it in the TOML file."""
        return render_value(self.kind, self.default)


def render_value(kind: Kind, value: Any) -> str:
    if value is None:
        return '""'
    if kind == "address":
        host, port = value
        return f'"{host}:{port}"' if ":" not in host else f'"[{host}]:{port}"'
    if kind == "size":
        return f'"{format_size(value)}"'
    if kind == "bool":
        return "true" if value else "false"
    if kind in ("names", "networks", "routes"):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def _key(name: str, kind: Kind, help_text: str, metavar: str, **extra: Any) -> ConfigKey:
    field = extra.pop("field", name)
    default = extra.pop("default", _DEFAULTS.get(field))
    return ConfigKey(name, kind, help_text, field, default, metavar, **extra)


_PROXY_KEYS = (
    _key("listen", "address", "client-facing address", "HOST:PORT"),
    _key("admin_listen", "address", "admin listener (/healthz, /metrics, purge)", "HOST:PORT"),
    _key(
        "origin",
        "optional_url",
        "the default origin, used for any Host not routed elsewhere",
        "URL",
        field="",
        default=None,
    ),
    _key(
        "origin_trusted",
        "bool",
        "trust the default origin's X-Content-Id and provenance headers",
        "BOOL",
        field="",
        default=False,
    ),
    _key(
        "origins",
        "routes",
        "Host-routed origins; in the file an array of tables "
        "{url, hosts, trusted}, on the command line HOST[,HOST...]=URL[;trusted] (repeatable)",
        "HOSTS=URL",
        field="",
        default=(),
        flag_name="route",
    ),
    _key("cache_dir", "str", "folder for the disk tier and the record spool", "DIR"),
    _key("memory", "size", "memory tier budget, headers included", "SIZE", field="memory_bytes"),
    _key("disk", "size", "disk tier budget (0: no disk tier)", "SIZE", field="disk_bytes"),
    _key(
        "max_object_size",
        "size",
        "larger responses are not kept in memory: they are stored on disk up to"
        " disk_max_object_size, else stream through uncached",
        "SIZE",
        field="max_object_bytes",
        minimum=1,
    ),
    _key(
        "disk_max_object_size",
        "size",
        "larger responses are not stored on disk (0: a quarter of the disk budget); large"
        " ones are written from the file their fill streamed through and read back in"
        " verified 1 MiB chunks, never whole in memory",
        "SIZE",
        field="disk_max_object_bytes",
    ),
    _key(
        "range_fill_max_size",
        "size",
        "a Range request on a miss waits for the whole object up to this size, then is cut from"
        " it; a larger one gets its range from the origin at once while the whole object"
        " fills the disk tier in the background",
        "SIZE",
        field="range_fill_max_bytes",
    ),
    _key(
        "purge_token",
        "optional_str",
        "bearer token for the admin listener's purge API (empty: purge refused)",
        "TOKEN",
    ),
    _key(
        "workers",
        "int",
        "serving processes; above 1, a supervisor runs N workers sharing the client port"
        " (SO_REUSEPORT), each with its own memory tier and record spool (an equal share of"
        " memory and spool_max_size) and one disk folder shared by all (docs/design/workers.md)",
        "N",
        minimum=1,
    ),
    _key(
        "coordinator",
        "optional_url",
        "coordinator that receives signed record batches (empty: records stay in the local spool)",
        "URL",
    ),
    _key(
        "nats_url",
        "optional_nats_url",
        "publish sealed batches to this NATS JetStream server instead of POSTing them to the"
        " coordinator (nats:// or tls://; credentials allowed, never logged)",
        "URL",
    ),
    _key(
        "nats_subject",
        "token",
        "subject prefix for published batches (the edge id is appended)",
        "SUBJECT",
    ),
    _key(
        "cache_set_cookie",
        "bool",
        "store responses carrying Set-Cookie (the cookie is never replayed from cache)",
        "BOOL",
    ),
    _key(
        "targeted_cache_control",
        "names",
        "RFC 9213 targeted cache-control fields, highest priority first (comma-separated)",
        "FIELDS",
    ),
    _key(
        "heuristic_fraction",
        "fraction",
        "heuristic freshness as a fraction of the time since Last-Modified (RFC 9111 §4.2.2)",
        "FRACTION",
    ),
    _key("heuristic_max_s", "int", "cap on heuristic freshness, seconds", "SECONDS"),
    _key(
        "stale_if_error_default_s",
        "int",
        "serve stale this long on origin errors when the origin sent no stale-if-error (RFC 5861)",
        "SECONDS",
    ),
    _key(
        "header_timeout_s",
        "seconds",
        "a client must send its whole request head within this many seconds",
        "SECONDS",
    ),
    _key(
        "keepalive_timeout_s", "seconds", "idle keep-alive connections close after this", "SECONDS"
    ),
    _key(
        "max_head_size",
        "size",
        "largest request head accepted (larger: 431)",
        "SIZE",
        field="max_head_bytes",
        minimum=1024,
    ),
    _key("max_connections", "int", "open client connections at most", "N", minimum=1),
    _key("origin_connect_timeout_s", "seconds", "time to connect to an origin", "SECONDS"),
    _key(
        "origin_timeout_s", "seconds", "time to the first byte of the origin's response", "SECONDS"
    ),
    _key("origin_max_connections", "int", "connections to origins at most", "N", minimum=1),
    _key(
        "shutdown_grace_s",
        "float",
        "on SIGTERM/SIGINT, in-flight responses get this long",
        "SECONDS",
    ),
    _key("via_name", "token", "received-by name in the Via header and Cache-Status", "NAME"),
    _key("access_log", "bool", "log one line per request with its cache outcome", "BOOL"),
    _key("log_level", "log_level", "debug, info, warning or error", "LEVEL"),
    _key(
        "otlp_traces_url",
        "optional_url",
        "export one OpenTelemetry span per request to this OTLP/HTTP JSON endpoint, e.g."
        " http://127.0.0.1:4318/v1/traces (empty: off)",
        "URL",
    ),
    _key(
        "otlp_service_name",
        "token",
        "service.name of the exported spans",
        "NAME",
    ),
    _key(
        "trust_forwarded_from",
        "networks",
        "client addresses/networks whose X-Forwarded-* we extend instead of replace, and whose"
        " X-Cachet-Edge (a downstream cachet proxy) we believe (comma-separated)",
        "NETS",
    ),
    _key(
        "shared_cache_url",
        "optional_str",
        "a shared tier below memory and disk for a few proxies of one site:"
        " redis://[:PASSWORD@]HOST[:PORT][/DB] (empty: off; the password is never logged)",
        "URL",
    ),
    _key(
        "shared_max_object_size",
        "size",
        "larger responses are not written to the shared tier",
        "SIZE",
        field="shared_max_object_bytes",
        minimum=1,
    ),
    _key(
        "shared_key_prefix",
        "str",
        "names in the shared store start with this; proxies share entries only under one prefix",
        "PREFIX",
    ),
    _key(
        "shared_timeout_ms",
        "int",
        "a shared tier read gives up after this (a miss); writes get four times as long",
        "MS",
        minimum=1,
    ),
)
_RECORD_KEYS = (
    _key(
        "edge_id",
        "edge_id",
        "this edge's id in records and batches (empty: derived from the host name)",
        "ID",
    ),
    _key("records", "bool", "emit a signed record for every response", "BOOL"),
    _key(
        "sample_rate",
        "sample_rate",
        "fraction of cache hits recorded (misses always are), decided from the request id",
        "RATE",
    ),
    _key(
        "spool_max_size",
        "size",
        "disk the record spool may use",
        "SIZE",
        field="spool_max_bytes",
        minimum=1 << 20,
    ),
    _key(
        "spool_full_policy",
        "full_policy",
        "when the spool is full: drop (serve, count the lost records) or reject (answer 503)",
        "POLICY",
    ),
    _key("batch_max_records", "int", "records per sealed batch at most", "N", minimum=1),
    _key(
        "batch_max_interval_ms",
        "int",
        "seal a partial batch once its oldest record is this old",
        "MS",
        minimum=1,
    ),
    _key(
        "manifests_dir",
        "optional_str",
        "folder of signed creator manifests and creator keys (until a coordinator serves them)",
        "DIR",
    ),
    _key(
        "enrolment_token",
        "optional_str",
        "one-time token from the coordinator's admin; the edge enrols its key with it once",
        "TOKEN",
    ),
    _key(
        "training_use_header",
        "token",
        "request header by which a client declares training use (value: training)",
        "FIELD",
    ),
)
_KEYS: tuple[ConfigKey, ...] = (*_PROXY_KEYS, *_RECORD_KEYS)
CONFIG_SCHEMA: Mapping[str, ConfigKey] = MappingProxyType({k.name: k for k in _KEYS})


def read_config_file(path: str) -> str:
    """Return the text of the TOML file at `path` (the module's only I/O)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8") from exc


def load_proxy_config(
    overrides: Mapping[str, object],
    env: Mapping[str, str],
    file_text: str | None,
    *,
    file_name: str = "config file",
) -> ProxyConfig:
    """Merge defaults < file < environment < `overrides` (flags) into a ProxyConfig.

    `overrides` maps schema key names to raw flag values (strings, bools, lists of strings);
    None values are ignored so an argparse namespace can be passed through as a dict.
    """
    merged: dict[str, Any] = {key.name: key.default for key in _KEYS}
    if file_text is not None:
        merged.update(_values_from_file(file_text, file_name))
    merged.update(_values_from_env(env))
    merged.update(_values_from_overrides(overrides))
    return _build(merged)


def _values_from_file(text: str, file_name: str) -> dict[str, Any]:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file_name}: not valid TOML: {exc}") from exc
    for name, value in document.items():
        if not isinstance(value, dict):
            hint = " (put it under [proxy])" if name in CONFIG_SCHEMA else ""
            raise ConfigError(f"{file_name}: unknown top-level key {name!r}{hint}")
    table = document.get("proxy", {})
    result: dict[str, Any] = {}
    for name, raw in table.items():
        key = CONFIG_SCHEMA.get(name)
        if key is None:
            raise ConfigError(f"{file_name}: unknown key {name!r} in [proxy]")
        result[name] = parse_value(key.kind, raw, f"{file_name}: [proxy] {name}", key.minimum)
    return result


def _values_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for var, raw in env.items():
        if not var.startswith(ENV_PREFIX) or var == ENV_CONFIG_FILE:
            continue
        key = CONFIG_SCHEMA.get(var[len(ENV_PREFIX) :].lower())
        if key is None or key.env_var != var:
            raise ConfigError(f"unknown environment variable {var}")
        result[key.name] = parse_value(key.kind, raw, var, key.minimum)
    return result


def _values_from_overrides(overrides: Mapping[str, object]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, raw in overrides.items():
        if raw is None:
            continue
        key = CONFIG_SCHEMA.get(name)
        if key is None:
            raise ConfigError(f"unknown option {name!r}")
        result[name] = parse_value(key.kind, raw, key.flag, key.minimum)
    return result


def _build(merged: Mapping[str, Any]) -> ProxyConfig:
    origins = _assemble_origins(merged["origins"], merged["origin"], merged["origin_trusted"])
    kwargs: dict[str, Any] = {key.field: merged[key.name] for key in _KEYS if key.field}
    if kwargs["shared_cache_url"] is not None:
        check_shared_cache_url(kwargs["shared_cache_url"])
    return ProxyConfig(origins=origins, **kwargs)


def _assemble_origins(
    routes: tuple[OriginConfig, ...], default_url: str | None, default_trusted: bool
) -> tuple[OriginConfig, ...]:
    origins = list(routes)
    if default_url is not None:
        origins = [o for o in origins if not o.is_default]
        origins.append(OriginConfig(url=default_url, hosts=(), trusted=default_trusted))
    if sum(o.is_default for o in origins) > 1:
        raise ConfigError("more than one origin without hosts; only one default origin is allowed")
    seen: set[str] = set()
    for origin in origins:
        for host in origin.hosts:
            if host in seen:
                raise ConfigError(f"host {host!r} is routed to more than one origin")
            seen.add(host)
    return tuple(sorted(origins, key=lambda o: o.is_default))
