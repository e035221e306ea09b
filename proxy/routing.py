"""Choosing the origin for a request by its Host (config `[[proxy.origins]]`)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from proxy.cache.keys import primary_key
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


Routed = tuple[OriginRoute, str]  # the route and the cache-key prefix "scheme://host"


class Router:
    """Host -> (origin route, cache-key prefix), memoised: routing runs on every hit."""

    def __init__(self, config: ProxyConfig) -> None:
        self._config = config
        self._routes = {origin: make_route(origin) for origin in config.origins}
        self._by_host: dict[str, Routed | None] = {}

    def route(self, host: str) -> Routed | None:
        try:
            return self._by_host[host]
        except KeyError:
            pass
        origin = self._config.origin_for_host(host)
        routed: Routed | None = None
        if origin is not None:
            route = self._routes[origin]
            routed = (route, primary_key(route.scheme, host or route.authority, ""))
        if len(self._by_host) < _ROUTE_CACHE_LIMIT:
            self._by_host[host] = routed
        return routed
