"""The proxy's client to its origins (aiohttp). Foreign exceptions are translated here, once, into
`OriginError`, so the handler reasons about refused / reset / timeout / garbage and nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from proxy.http.fields import Headers

ORIGIN_IDLE_TIMEOUT_S = 4.0


class OriginError(Exception):
    """The origin could not give us a usable response. `kind` is one of: refused, reset, timeout,
    garbage. `status` is what the client gets: 504 for timeouts, 502 otherwise."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"origin {kind}: {detail}" if detail else f"origin {kind}")
        self.kind = kind
        self.status = 504 if kind == "timeout" else 502


def _translate(exc: BaseException) -> OriginError:
    if isinstance(exc, OriginError):
        return exc
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return OriginError("timeout")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return OriginError("refused", str(exc.os_error))
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return OriginError("garbage", type(exc).__name__)
    if isinstance(exc, aiohttp.ServerDisconnectedError | ConnectionError | aiohttp.ClientOSError):
        return OriginError("reset", type(exc).__name__)
    if isinstance(exc, aiohttp.ClientError):
        return OriginError("garbage", type(exc).__name__)
    raise exc


class _LossWatch:
    """Remembers how the origin's connection ended. aiohttp ends a close-delimited body
    (RFC 9112 §6.3 rule 8) cleanly even when the connection was reset, so a reset would pass
    for the end of the body; watching connection_lost tells the two apart."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.error: BaseException | None = None
        connection = response.connection
        if connection is None or connection.protocol is None:
            return
        protocol = connection.protocol
        original = protocol.connection_lost

        def connection_lost(exc: BaseException | None) -> None:
            if exc is not None:
                self.error = exc
            original(exc)

        protocol.connection_lost = connection_lost  # type: ignore[method-assign]


@dataclass(slots=True)
class OriginResponse:
    status: int
    reason: str
    headers: Headers
    content_length: int | None
    _response: aiohttp.ClientResponse
    _loss_watch: _LossWatch | None = None  # set for close-delimited bodies only

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; an origin failure mid-body raises OriginError."""
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
            raise _translate(exc) from exc
        if self._loss_watch is not None and self._loss_watch.error is not None:
            raise OriginError("reset", "connection lost before the end of the body")

    def close(self) -> None:
        """Drop the connection (used when a body is abandoned half-read)."""
        self._response.close()

    def release(self) -> None:
        self._response.release()


class OriginClient:
    def __init__(self, connect_timeout_s: float, timeout_s: float, max_connections: int) -> None:
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout_s, sock_read=timeout_s
        )
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            limit_per_host=0,
            ttl_dns_cache=60,
            use_dns_cache=True,
            # Shorter than the idle timeouts common origins use (Node 5 s, Apache 5 s): reusing
            # a connection the origin is closing fails a non-idempotent request, which is
            # rightly not retried (RFC 9112 §9.3.1), so the client would get a 502.
            keepalive_timeout=ORIGIN_IDLE_TIMEOUT_S,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            auto_decompress=False,  # bytes pass through exactly as the origin encoded them
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
            cookie_jar=aiohttp.DummyCookieJar(),
            raise_for_status=False,
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("OriginClient.start() was not awaited")
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        url: str,
        headers: Headers,
        body: AsyncIterable[bytes] | None = None,
    ) -> OriginResponse:
        """Send one request, never retried here: a non-idempotent request must reach the origin
        at most once (aiohttp itself only retries idempotent methods on a dead pooled
        connection)."""
        if self._session is None:
            raise RuntimeError("OriginClient.start() was not awaited")
        try:
            response = await self._session.request(
                method,
                URL(url, encoded=True),
                headers=CIMultiDict(headers),
                data=body,
                allow_redirects=False,
                compress=None,
                chunked=None,
            )
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
            raise _translate(exc) from exc
        if not 100 <= response.status <= 599:
            # RFC 9110 §15: a status outside 1xx-5xx is not HTTP; passing it on would also give
            # the client (and the record) a status no record may carry.
            response.release()
            raise OriginError("garbage", f"origin answered status {response.status}")
        headers_out = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in response.raw_headers
        ]
        close_delimited = (
            response.content_length is None
            and not response.headers.get("Transfer-Encoding", "").lower().endswith("chunked")
            and method != "HEAD"
            and response.status not in (204, 304)
            and response.status >= 200
        )
        return OriginResponse(
            status=response.status,
            reason=response.reason or "",
            headers=headers_out,
            content_length=response.content_length,
            _response=response,
            _loss_watch=_LossWatch(response) if close_delimited else None,
        )
