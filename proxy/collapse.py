"""Request collapsing: one origin response shared by every client that missed on the same key
while it was on its way (nginx's proxy_cache_lock, Varnish's waiting list), streamed to all of
them as it arrives.

A `Fill` belongs to the handler, not to the client that started it: if that client goes away,
the fill goes on for the others and for the cache. When the response turns out not to be
storable the waiters are released at once to fetch on their own, and the key is remembered as
uncacheable for a while (Varnish's hit-for-miss) so later requests don't queue behind it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from proxy.cache.entry import VaryKey
from proxy.http.fields import Headers
from proxy.origin import OriginError

HIT_FOR_MISS_S = 30.0
HIT_FOR_MISS_KEYS = 10_000


@dataclass(frozen=True, slots=True)
class FillHead:
    status: int
    reason: str
    headers: Headers  # end-to-end fields of the origin's response
    content_length: int | None
    vary: VaryKey  # what the leader's request said for the response's Vary fields


class Fill:
    def __init__(self) -> None:
        self.head: FillHead | None = None
        self.shared: bool | None = None  # None until the head arrives
        self.chunks: list[bytes] = []
        self.size_bytes = 0
        self.done = False
        self.error: OriginError | None = None
        self.waiters = 0
        self.attribution: Any = None  # set by the leader once the bytes were checked
        self._changed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @classmethod
    def private(cls) -> Fill:
        """A fill nobody else can join: the buffer of a response the cache will keep."""
        fill = cls()
        fill.shared = True
        return fill

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
        self._notify()

    def push(self, chunk: bytes) -> None:
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

    async def stream(self) -> AsyncIterator[bytes]:
        """Every chunk from the first, as it arrives; OriginError if the fill fails."""
        index = 0
        while True:
            while index < len(self.chunks):
                yield self.chunks[index]
                index += 1
            if self.error is not None:
                raise self.error
            if self.done:
                return
            await self._changed


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
