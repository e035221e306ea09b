"""Choosing the origin for a request by its Host (config `[[proxy.origins]]`)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from proxy.config import OriginConfig, ProxyConfig

_ROUTE_CACHE_LIMIT = 4096  # distinct Host values remembered; a flood of junk hosts can't grow it


@dataclass(frozen=True, slots=True)
class OriginRoute:
    origin: OriginConfig
    base_url: str  # scheme://authority[/base], no trailing slash; the request target is appended
    scheme: str  # the scheme clients used to reach us (cache keys); plain HTTP for now
    authority: str  # the origin's authority, used as Host when the client sent none (HTTP/1.0)


def make_route(origin: OriginConfig) -> OriginRoute:
    parts = urlsplit(origin.url)
    base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
    return OriginRoute(origin=origin, base_url=base, scheme="http", authority=parts.netloc)


class Router:
    def __init__(self, config: ProxyConfig) -> None:
        self._config = config
        self._routes = {origin: make_route(origin) for origin in config.origins}
        self._by_host: dict[str, OriginRoute | None] = {}

    def route(self, host: str) -> OriginRoute | None:
        cached = self._by_host.get(host, _MISSING)
        if cached is not _MISSING:
            return cached  # type: ignore[return-value]
        origin = self._config.origin_for_host(host)
        route = self._routes[origin] if origin is not None else None
        if len(self._by_host) < _ROUTE_CACHE_LIMIT:
            self._by_host[host] = route
        return route


_MISSING = object()
