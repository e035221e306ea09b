"""Streaming a body through a fill: the leader's pump from the origin into the fill and its
client, and each collapsed client's reading of the fill at its own pace (proxy.collapse). The
streaming half of proxy.fetch; it knows nothing of HTTP semantics beyond framing a chunk."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from proxy.collapse import Fill
from proxy.http.cache_status import Outcome
from proxy.metrics import ProxyStats
from proxy.origin import OriginError

if TYPE_CHECKING:
    from proxy.handler import Connection, Exchange, ProxyHandler

# A shared body of unknown length goes to a file past this size, so collapsed readers of a large
# chunked response never hold it in memory; one that ends within the object limit is still stored.
SPILL_UNKNOWN_LENGTH_BYTES = 8 * 1024 * 1024


class FillStreamer:
    def __init__(
        self,
        stats: ProxyStats,
        storable_bytes: Callable[[], int],
        spill: Callable[[str, Fill], bool],
        disk_storable_bytes: Callable[[], int] = lambda: 0,
    ) -> None:
        self.stats = stats
        self.storable_bytes = storable_bytes  # the largest body worth buffering for the store
        # The largest body the disk stores from a spill file: a larger one is not stored at all.
        self.disk_storable_bytes = disk_storable_bytes
        self.spill = spill  # move a fill to a file; False (fill released) if none can be made

    async def stream_fill(
        self,
        conn: Connection,
        fill: Fill | None,
        chunks: AsyncIterator[bytes],
        chunked: bool,
        count_origin_bytes: bool,
        completion: Completion,
        content_length: int | None,
        key: str,
        body_complete: Callable[[Fill | None], Awaitable[None]] | None = None,
        spilled_complete: Callable[[Fill], None] | None = None,
    ) -> int | None:
        """Stream the origin body to the client, feeding the fill (which doubles as the cache's
        buffer), and finish the fill. Returns body bytes sent, or None when the exchange was cut
        short. A client that goes away does not stop a fill that others wait on or the cache
        will keep. The record is made before the chunk that completes a body of known length is
        written.

        A fill others may join is spilled to a file once its body passes the storable size or,
        when the length is unknown, SPILL_UNKNOWN_LENGTH_BYTES (so memory stays flat whatever
        the object limit; a body that ends small enough is read back to be stored). From then
        on this client reads the file like any collapsed waiter, in a task of its own: the
        origin is read as fast as the file takes it, and a slow leader no longer holds back the
        other clients. ``spilled_complete`` is told when a spilled fill has its whole body
        (to store it from the file while this client may still be reading)."""
        sent = 0
        pumped = 0
        sender: asyncio.Task[int | None] | None = None
        limit = self.storable_bytes()
        joinable = fill is not None and fill.joinable  # only a fill others may join spills
        stored_up_to = max(limit, self.disk_storable_bytes() if joinable else 0)
        spill_at = limit if content_length is not None else min(limit, SPILL_UNKNOWN_LENGTH_BYTES)
        over_limit = False
        try:
            async for chunk in chunks:
                if completion.hasher is not None:
                    completion.hasher.update(chunk)
                if count_origin_bytes:
                    self.stats.origin_bytes += len(chunk)
                    completion.origin_bytes += len(chunk)
                pumped += len(chunk)
                if (
                    body_complete is not None
                    and content_length is not None
                    and pumped >= content_length
                ):
                    # The last bytes: attribute before a collapsed reader can finish with them.
                    await body_complete(fill)
                    body_complete = None
                if fill is not None:
                    fill.push(chunk)
                    if fill.size_bytes > stored_up_to and not over_limit:
                        over_limit = True
                        self.stats.not_stored["too-large"] += 1
                    if fill.size_bytes > spill_at and not fill.spilled:
                        spilled = fill.joinable and self.spill(key, fill)
                        if not spilled and fill.size_bytes > limit:
                            fill.release()  # only the cache's buffer, or no room for a spool
                            fill = None
                    if fill is not None and fill.spilled and sender is None:
                        sender = asyncio.get_running_loop().create_task(
                            self.send(conn, fill.stream(sent), chunked, completion, sent)
                        )
                if sender is not None or not chunk:
                    continue
                sent += len(chunk)
                completion.sent = sent
                if completion.expected_bytes is not None and sent >= completion.expected_bytes:
                    completion(sent)
                if not conn.closed:
                    conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                    await conn.drain()
                if conn.closed and fill is None:
                    return None
        except OriginError as error:
            # Never a short response that looks complete: the client sees the connection drop.
            self.stats.origin_errors[error.kind] += 1
            await self._cut_short(conn, fill, sender, error)
            return None
        except BaseException:
            if sender is not None:
                sender.cancel()
            raise
        if content_length is not None and pumped != content_length:
            self.stats.origin_errors["short-body"] += 1
            await self._cut_short(conn, fill, sender, OriginError("garbage", "short body"))
            return None
        if body_complete is not None:
            await body_complete(fill)
        if fill is not None:
            fill.finish()
            if fill.spilled and spilled_complete is not None:
                spilled_complete(fill)
        if sender is not None:
            return await sender
        return sent

    @staticmethod
    async def _cut_short(
        conn: Connection,
        fill: Fill | None,
        sender: asyncio.Task[int | None] | None,
        error: OriginError,
    ) -> None:
        if fill is not None:
            fill.fail(error)
        if sender is not None:
            await sender  # it reads the failure from the fill and drops its connection
        conn.abort()

    async def send(
        self,
        conn: Connection,
        chunks: AsyncGenerator[bytes, None],
        chunked: bool,
        completion: Completion,
        sent: int = 0,
        count_errors: bool = False,
    ) -> int | None:
        """Write a fill's body to one client at the pace it reads (``sent`` bytes of it were
        already written). Returns the body bytes sent, or None when the client went away or
        the fill failed (the connection is dropped: never a short body that looks complete).
        The stream is closed on the way out, so a spilled fill's file is let go at once."""
        try:
            async with contextlib.aclosing(chunks):
                return await self._send_each(conn, chunks, chunked, completion, sent)
        except OriginError as error:
            if count_errors:
                self.stats.origin_errors[error.kind] += 1
            conn.abort()
            return None

    @staticmethod
    async def _send_each(
        conn: Connection,
        chunks: AsyncIterator[bytes],
        chunked: bool,
        completion: Completion,
        sent: int,
    ) -> int | None:
        async for chunk in chunks:
            if not chunk:
                continue
            sent += len(chunk)
            completion.sent = sent
            if completion.expected_bytes is not None and sent >= completion.expected_bytes:
                completion(sent)
            if conn.closed:
                return None
            conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
            await conn.drain()
        return None if conn.closed else sent


class Completion:
    """Records a forwarded response once, before the bytes that complete it are written."""

    def __init__(
        self,
        record: Callable[[int, int, str | None], None],
        expected_bytes: int | None,
        *,
        hashing: bool = False,
    ) -> None:
        self._record = record
        self.expected_bytes = expected_bytes
        # The body's sha256, for checking a manifest's content id before attributing.
        self.hasher = hashlib.sha256() if hashing else None
        self.origin_bytes = 0
        self.sent = 0
        self.done = False

    def __call__(self, sent: int) -> None:
        if not self.done:
            self.done = True
            digest = self.hasher.hexdigest() if self.hasher is not None else None
            self._record(sent, self.origin_bytes, digest)

    def fail(self, handler: ProxyHandler, ex: Exchange, outcome: Outcome, status: int) -> None:
        """An answer cut short is still recorded, as an error, with the bytes that did go."""
        if not self.done:
            self.done = True
            handler.finish(ex, outcome, status, self.sent, "origin", self.origin_bytes, failed=True)
