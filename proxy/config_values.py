"""Value parsers for `proxy.config`: one function per kind of configuration value.

Each accepts what a TOML file holds (str, int, float, bool, list, table) and the plain strings
environment variables and flags carry, and returns the typed value or raises `ConfigError`
with a one-line message prefixed by where the value came from. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from proxy.sizes import SizeError, parse_size_bytes

Kind = Literal[
    "address", "url", "optional_url", "size", "int", "float", "seconds", "fraction", "bool",
    "str", "token", "names", "networks", "log_level", "routes", "optional_str", "edge_id",
    "sample_rate", "full_policy", "optional_nats_url",
]  # fmt: skip
FULL_POLICIES = ("drop", "reject")
_EDGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # provenance.records name pattern
_SAMPLE_RATE = re.compile(r"0|1|0\.[0-9]{0,5}[1-9]")  # provenance.records canonical spelling
LOG_LEVELS = ("debug", "info", "warning", "error")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 §5.6.2
_HOST_NAME = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_ROUTE_KEYS = frozenset({"url", "hosts", "trusted"})


class ConfigError(ValueError):
    """A configuration value or file is wrong; the message is one line naming the key."""


@dataclass(frozen=True, slots=True)
class OriginConfig:
    url: str  # http://host:port[/base]; https allowed; no trailing slash
    hosts: tuple[str, ...] = ()  # Host values (lowercase, port stripped); empty = default origin
    trusted: bool = False  # origin headers like X-Content-Id count only for trusted origins

    @property
    def is_default(self) -> bool:
        return not self.hosts


def parse_value(kind: Kind, raw: object, where: str, minimum: int = 0) -> Any:
    """Return `raw` parsed as `kind`, or raise ConfigError naming `where`."""
    try:
        value = _PARSERS[kind](raw)
    except (ConfigError, SizeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if kind in ("int", "size", "float") and value < minimum:
        raise ConfigError(f"{where}: must be at least {minimum}, got {raw!r}")
    return value


def _parse_address(raw: object) -> tuple[str, int]:
    text = _need_str(raw, "HOST:PORT")
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ConfigError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:8080 or :8080)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"{text!r}: write IPv6 addresses in brackets, e.g. [::1]:8080")
    port = _parse_port(port_text, text)
    return (host or "0.0.0.0", port)  # noqa: S104 - ":8080" means every interface, like varnishd


def _parse_port(text: str, whole: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) > 65535:
        raise ConfigError(f"{whole!r}: port must be a number from 0 to 65535")
    return int(text)


def parse_url(raw: object) -> str:
    """Return an http(s) origin URL without a trailing slash, or raise ConfigError."""
    text = _need_str(raw, "URL").strip()
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{text!r} is not an http:// or https:// URL with a host")
    if parts.username is not None or parts.query or parts.fragment:
        raise ConfigError(f"{text!r}: an origin URL takes no user, query or fragment")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise ConfigError(f"{text!r}: bad port") from exc
    return f"{parts.scheme.lower()}://{parts.netloc}{parts.path.rstrip('/')}"


def _parse_optional_url(raw: object) -> str | None:
    if raw == "":
        return None
    return parse_url(raw)


def _parse_optional_nats_url(raw: object) -> str | None:
    """A NATS server URL (nats:// or tls://, with a host); may carry user:password@."""
    text = _need_str(raw, "URL").strip()
    if text == "":
        return None
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("nats", "tls") or not parts.hostname:
        # The value may hold a password: name the problem, never echo it.
        raise ConfigError("expected a nats:// or tls:// URL with a host")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise ConfigError("bad port in the NATS URL") from exc
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError("a NATS URL takes no path, query or fragment")
    return text


def _parse_size(raw: object) -> int:
    if isinstance(raw, str | int):
        return parse_size_bytes(raw)
    raise ConfigError(f"expected a size such as 256MiB, got {raw!r}")


def _parse_int(raw: object) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit():
        return int(raw)
    raise ConfigError(f"expected a whole number, got {raw!r}")


def _parse_float(raw: object) -> float:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    if isinstance(raw, str):
        try:
            value = float(raw)
        except ValueError:
            pass
        else:
            if value == value and value not in (float("inf"), float("-inf")):
                return value
    raise ConfigError(f"expected a number, got {raw!r}")


def _parse_seconds(raw: object) -> float:
    value = _parse_float(raw)
    if value <= 0:
        raise ConfigError(f"must be more than 0 seconds, got {raw!r}")
    return value


def _parse_fraction(raw: object) -> float:
    value = _parse_float(raw)
    if not 0 <= value <= 1:
        raise ConfigError(f"must be between 0 and 1, got {raw!r}")
    return value


def _parse_bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise ConfigError(f"expected true or false, got {raw!r}")


def _parse_str(raw: object) -> str:
    text = _need_str(raw, "text")
    if not text:
        raise ConfigError("must not be empty")
    return text


def _parse_token(raw: object) -> str:
    text = _need_str(raw, "name")
    if not _TOKEN.fullmatch(text):
        raise ConfigError(f"{text!r} is not an HTTP token (letters, digits, -._~ and the like)")
    return text


def _parse_log_level(raw: object) -> str:
    text = _need_str(raw, "log level").lower()
    if text not in LOG_LEVELS:
        raise ConfigError(f"{raw!r} is not one of {', '.join(LOG_LEVELS)}")
    return text


def _split_list(raw: object) -> list[str]:
    if isinstance(raw, str):
        return [item.strip() for item in raw.split(",") if item.strip()]
    if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        return [item.strip() for item in raw]
    raise ConfigError(f"expected a list of strings, got {raw!r}")


def _parse_names(raw: object) -> tuple[str, ...]:
    return tuple(_parse_token(item) for item in _split_list(raw))


def _parse_networks(raw: object) -> tuple[str, ...]:
    networks = []
    for item in _split_list(raw):
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError as exc:
            raise ConfigError(f"{item!r} is not an IP address or network") from exc
    return tuple(networks)


def parse_host(raw: str) -> str:
    """Return a Host value lowercased, without port or trailing dot, or raise ConfigError."""
    host = raw.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            raise ConfigError(f"{raw!r} is not a host name")
        return host[: end + 1]
    host = host.partition(":")[0].rstrip(".")
    if not _HOST_NAME.fullmatch(host):
        raise ConfigError(f"{raw!r} is not a host name")
    return host


def parse_routes(raw: object) -> tuple[OriginConfig, ...]:
    """Origins from a TOML array of tables, a list of flag strings, or one env string."""
    if isinstance(raw, str):
        raw = raw.split()
    if not isinstance(raw, list):
        raise ConfigError(f"expected a list of origins, got {raw!r}")
    return tuple(_parse_route(item, number) for number, item in enumerate(raw, start=1))


def _parse_route(item: object, number: int) -> OriginConfig:
    try:
        if isinstance(item, str):
            return _parse_route_text(item)
        if isinstance(item, dict):
            return _parse_route_table(item)
    except ConfigError as exc:
        raise ConfigError(f"origin #{number}: {exc}") from None
    raise ConfigError(f"origin #{number}: expected a table {{url, hosts, trusted}}, got {item!r}")


def _parse_route_text(text: str) -> OriginConfig:
    hosts_text, sep, rest = text.partition("=")
    if not sep or not hosts_text.strip():
        raise ConfigError(f"{text!r} is not HOST[,HOST...]=URL[;trusted]")
    url_text, _, flag = rest.partition(";")
    if flag not in ("", "trusted"):
        raise ConfigError(f"{text!r}: only ';trusted' may follow the URL")
    hosts = tuple(parse_host(h) for h in hosts_text.split(","))
    return OriginConfig(url=parse_url(url_text), hosts=hosts, trusted=flag == "trusted")


def _parse_route_table(table: dict[str, Any]) -> OriginConfig:
    unknown = sorted(set(table) - _ROUTE_KEYS)
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} (expected url, hosts, trusted)")
    if "url" not in table:
        raise ConfigError("missing 'url'")
    hosts = tuple(parse_host(h) for h in _split_list(table.get("hosts", [])))
    return OriginConfig(
        url=parse_url(table["url"]), hosts=hosts, trusted=_parse_bool(table.get("trusted", False))
    )


def _need_str(raw: object, what: str) -> str:
    if not isinstance(raw, str):
        raise ConfigError(f"expected {what} as a string, got {raw!r}")
    return raw


def _parse_optional_str(raw: object) -> str | None:
    text = _need_str(raw, "text")
    return text or None


def _parse_edge_id(raw: object) -> str | None:
    text = _need_str(raw, "edge id")
    if text and not _EDGE_ID.fullmatch(text):
        raise ConfigError(f"{text!r} is not an edge id (letters, digits, . _ -; at most 64)")
    return text or None


def _parse_sample_rate(raw: object) -> str:
    text = _need_str(raw, "sample rate").strip()
    if not _SAMPLE_RATE.fullmatch(text):
        raise ConfigError(
            f"{raw!r} is not a sample rate: a decimal from 0 to 1 with at most 6 decimals, "
            "written canonically (1, 0.25, 0.001)"
        )
    return text


def _parse_full_policy(raw: object) -> str:
    text = _need_str(raw, "policy").strip().lower()
    if text not in FULL_POLICIES:
        raise ConfigError(f"{raw!r} is not one of {', '.join(FULL_POLICIES)}")
    return text


_PARSERS: dict[str, Callable[[object], Any]] = {
    "optional_str": _parse_optional_str,
    "edge_id": _parse_edge_id,
    "sample_rate": _parse_sample_rate,
    "full_policy": _parse_full_policy,
    "address": _parse_address,
    "url": parse_url,
    "optional_url": _parse_optional_url,
    "optional_nats_url": _parse_optional_nats_url,
    "size": _parse_size,
    "int": _parse_int,
    "float": _parse_float,
    "seconds": _parse_seconds,
    "fraction": _parse_fraction,
    "bool": _parse_bool,
    "str": _parse_str,
    "token": _parse_token,
    "names": _parse_names,
    "networks": _parse_networks,
    "log_level": _parse_log_level,
    "routes": parse_routes,
}
