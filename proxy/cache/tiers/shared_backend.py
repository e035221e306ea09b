"""The shared store behind the shared tier, through aiocache: get, set with an expiry, delete,
each bounded by a timeout, raw bytes in and out (the tier's values verify themselves).

Only Redis today (``redis://[:password@]host[:port][/db]``); aiocache speaks memcached too, but
no memcached runs where this is tested, so the URL check refuses it rather than ship it untried.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import redis.exceptions
from aiocache.backends.redis import RedisCache
from aiocache.serializers import BaseSerializer

POOL_MAX_CONNECTIONS = 64  # a stalled store must not make the proxy open a socket per request


class SharedBackend(Protocol):
    async def get(self, name: str, timeout_s: float) -> bytes | None: ...
    async def set(self, name: str, value: bytes, expiry_s: int, timeout_s: float) -> None: ...
    async def delete(self, name: str, timeout_s: float) -> None: ...
    async def close(self) -> None: ...
    def kind_of(self, error: Exception) -> str: ...


class _RawBytes(BaseSerializer):  # type: ignore[misc]  # aiocache ships no type hints
    """Values are bytes both ways: no JSON, no decoding to text."""

    DEFAULT_ENCODING = None

    def dumps(self, value: bytes) -> bytes:
        return value

    def loads(self, value: bytes | None) -> bytes | None:
        return value


class AiocacheRedis:
    def __init__(self, url: str, connect_timeout_s: float) -> None:
        parts = urlsplit(url)
        db = parts.path.strip("/")
        self._cache: Any = RedisCache(
            serializer=_RawBytes(),
            endpoint=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            db=int(db) if db else 0,
            password=unquote(parts.password) if parts.password else None,
            pool_max_size=POOL_MAX_CONNECTIONS,
            create_connection_timeout=connect_timeout_s,
            timeout=None,  # every call passes its own
        )

    async def get(self, name: str, timeout_s: float) -> bytes | None:
        value = await self._cache.get(name, timeout=timeout_s)
        if value is not None and not isinstance(value, bytes):
            raise TypeError("the shared store returned a non-bytes value")
        return value

    async def set(self, name: str, value: bytes, expiry_s: int, timeout_s: float) -> None:
        # SET with EX, raw: aiocache's set() sends SETEX, which redis-py 8 deprecates.
        await self._cache.raw("set", name, value, ex=expiry_s, timeout=timeout_s)

    async def delete(self, name: str, timeout_s: float) -> None:
        await self._cache.delete(name, timeout=timeout_s)

    async def close(self) -> None:
        # redis-py's own aclose: aiocache's close() calls the deprecated Redis.close().
        await self._cache.client.aclose()

    def kind_of(self, error: Exception) -> str:
        return error_kind(error)


def error_kind(error: BaseException) -> str:
    """The metric label for a failed operation: timeout, connection, redis or other."""
    if isinstance(error, asyncio.TimeoutError | redis.exceptions.TimeoutError):
        return "timeout"
    if isinstance(error, redis.exceptions.ConnectionError | OSError):
        return "connection"
    if isinstance(error, redis.exceptions.RedisError):
        return "redis"  # e.g. OOM with maxmemory and noeviction, WRONGTYPE, READONLY
    return "other"
