"""Request collapsing: one origin response shared by every client that missed on the same key
while it was on its way (nginx's proxy_cache_lock, Varnish's waiting list), streamed to all of
them as it arrives.

A `Fill` belongs to the handler, not to the client that started it: if that client goes away,
the fill goes on for the others and for the cache. When the response turns out not to be
storable the waiters are released at once to fetch on their own, and the key is remembered as
uncacheable for a while (Varnish's hit-for-miss) so later requests don't queue behind it.

A body too large for the cache is still shared, but not held in memory: the fill spills it to an
anonymous temporary file (`spill`) and every reader, the leader's client included, reads it back
from there by offset at its own pace. Memory then stays flat whatever the object's size and
however slow a reader is; the file goes when the last reader drops the fill.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import IO, Any

from proxy.cache.entry import VaryKey
from proxy.http.fields import Headers
from proxy.origin import OriginError

HIT_FOR_MISS_S = 30.0
HIT_FOR_MISS_KEYS = 10_000
SPOOL_READ_BYTES = 256 * 1024  # one read of a spilled body: small next to a socket's buffers


@dataclass(frozen=True, slots=True)
class FillHead:
    status: int
    reason: str
    headers: Headers  # end-to-end fields of the origin's response
    content_length: int | None
    vary: VaryKey  # what the leader's request said for the response's Vary fields


class Fill:
    def __init__(self, joinable: bool = True) -> None:
        self.head: FillHead | None = None
        self.shared: bool | None = None  # None until the head arrives
        self.joinable = joinable  # may other requests join it (is it in the FillRegistry)?
        self.chunks: list[bytes] = []  # the body so far, unless it was spilled
        self.spool: IO[bytes] | None = None  # the body so far, once spilled (until closed)
        self.spilled = False  # stays True once the body went to the spool
        self.readers = 0  # streams open on this fill
        self.retired = False  # out of the registry: nobody new can join
        self.size_bytes = 0
        self.done = False
        self.error: OriginError | None = None
        self.waiters = 0
        self.attribution: Any = None  # set by the leader once the bytes were checked
        # A spilled body being stored on disk from the spool: the fill stays joinable until it
        # lands, so requests meanwhile read the spool rather than ask the origin again.
        self.storing: asyncio.Task[bool] | None = None
        # Driven by a task of the proxy's own, not by the request that started it (a Range
        # miss of a large object: that client's range went to the origin on its own).
        self.detached = False
        self._changed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @classmethod
    def private(cls) -> Fill:
        """A fill nobody else can join: the buffer of a response the cache will keep."""
        fill = cls(joinable=False)
        fill.shared = True
        return fill

    def spill(self, directory: str | None) -> None:
        """Keep the body in an anonymous file in ``directory`` (the system's temporary folder
        if None) from now on, instead of in memory: it will not be stored, only shared."""
        if self.spilled:
            return
        # Not a with-block: the file lives as long as the fill (readers hold it by reference).
        spool = tempfile.TemporaryFile(dir=directory, buffering=0)  # noqa: SIM115
        for chunk in self.chunks:
            _write_all(spool, chunk)
        self.chunks = []
        self.spool = spool
        self.spilled = True

    async def read_back(self) -> bytes | None:
        """The whole spilled body, read back in a thread (to store one that turned out small
        enough); None if the spool is gone or short."""
        spool, size = self.spool, self.size_bytes
        if spool is None:
            return None
        data = await asyncio.to_thread(_read_exact, spool.fileno(), size)
        return data if len(data) == size else None

    def retire(self) -> None:
        """The fill left the registry; its spool closes once no reader or waiter holds it."""
        self.retired = True
        self.close_if_unused()

    def close_if_unused(self) -> None:
        if self.retired and self.readers == 0 and self.waiters == 0 and self.spool is not None:
            self.spool.close()
            self.spool = None

    def _notify(self) -> None:
        changed = self._changed
        self._changed = asyncio.get_running_loop().create_future()
        if not changed.done():
            changed.set_result(None)

    def publish(self, head: FillHead) -> None:
        self.head = head
        self.shared = True
        self._notify()

    def release(self) -> None:
        """The response can't be shared: waiters go to the origin themselves."""
        self.shared = False
        self.chunks = []
        if self.spool is not None:
            self.spool.close()
            self.spool = None
        self._notify()

    def push(self, chunk: bytes) -> None:
        if self.spilled:
            # A write into the page cache: the kernel holds it, so this costs a copy, not a
            # wait on the device. (Nothing is kept once the fill was released.)
            if self.spool is not None:
                _write_all(self.spool, chunk)
        else:
            self.chunks.append(chunk)
        self.size_bytes += len(chunk)
        self._notify()

    def finish(self) -> None:
        self.done = True
        self._notify()

    def fail(self, error: OriginError) -> None:
        self.error = error
        self.done = True
        if self.shared is None:
            self.shared = False
        self._notify()

    async def wait_head(self) -> FillHead | None:
        """The shared response's head, or None when the waiter must fetch for itself."""
        while self.shared is None:
            await self._changed
        return self.head if self.shared else None

    async def stream(self, offset: int = 0) -> AsyncGenerator[bytes, None]:
        """The body from byte ``offset`` on, as it arrives (from memory, or read back from the
        spool once spilled, in pieces of at most SPOOL_READ_BYTES); OriginError if the fill
        fails."""
        self.readers += 1
        try:
            async for piece in self._pieces(offset):
                yield piece
        finally:
            self.readers -= 1
            self.close_if_unused()

    async def _pieces(self, offset: int) -> AsyncIterator[bytes]:
        position = offset
        index = start = 0  # the next chunk in memory, and the body offset it starts at
        while True:
            if self.spilled:
                if self.spool is None:  # released under this reader
                    raise self.error or OriginError("reset", "fill released")
                while position < self.size_bytes and self.spool is not None:
                    want = min(SPOOL_READ_BYTES, self.size_bytes - position)
                    data = os.pread(self.spool.fileno(), want, position)
                    if len(data) != want:
                        raise OriginError("garbage", "spooled body is shorter than written")
                    position += want
                    yield data
            else:
                while index < len(self.chunks) and not self.spilled:
                    chunk = self.chunks[index]
                    end = start + len(chunk)
                    index += 1
                    if end > position:
                        piece = chunk[position - start :] if position > start else chunk
                        position = end
                        start = end
                        yield piece
                    else:
                        start = end
            if self.error is not None:
                raise self.error
            if self.done and position >= self.size_bytes:
                return
            if self.shared is False:  # released under a reader: never a short body that ends well
                raise OriginError("reset", "fill released")
            await self._changed

    async def wait_done(self) -> None:
        """Until the whole body has arrived; OriginError if the fill fails."""
        while not self.done:
            await self._changed
        if self.error is not None:
            raise self.error


def _read_exact(fd: int, size: int) -> bytes:
    parts: list[bytes] = []
    position = 0
    while position < size:
        data = os.pread(fd, size - position, position)
        if not data:
            break
        parts.append(data)
        position += len(data)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _write_all(spool: IO[bytes], data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = spool.write(view)
        view = view[written or 0 :]


class FillRegistry:
    """Fills in flight by cache key, and the keys recently found uncacheable."""

    def __init__(self) -> None:
        self._fills: dict[str, Fill] = {}
        self._uncacheable_until: OrderedDict[str, float] = OrderedDict()

    def get(self, key: str) -> Fill | None:
        return self._fills.get(key)

    def start(self, key: str) -> Fill:
        fill = Fill()
        self._fills[key] = fill
        return fill

    def end(self, key: str, fill: Fill) -> None:
        if self._fills.get(key) is fill:
            del self._fills[key]
        fill.retire()

    def mark_uncacheable(self, key: str, now: float) -> None:
        self._uncacheable_until[key] = now + HIT_FOR_MISS_S
        self._uncacheable_until.move_to_end(key)
        while len(self._uncacheable_until) > HIT_FOR_MISS_KEYS:
            self._uncacheable_until.popitem(last=False)

    def is_uncacheable(self, key: str, now: float) -> bool:
        until = self._uncacheable_until.get(key)
        if until is None:
            return False
        if until <= now:
            del self._uncacheable_until[key]
            return False
        return True

    def __len__(self) -> int:
        return len(self._fills)
