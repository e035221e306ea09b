"""The proxy's memory tier: a byte-budgeted cache with S3-FIFO eviction.

S3-FIFO (Yang et al., "FIFO queues are all you need for cache eviction", SOSP '23), counted in
bytes rather than objects:

- ``small``: a FIFO holding about 10% of the byte budget. Every new key enters here, unless it is
  in the ghost queue.
- ``main``: a FIFO holding the rest. Entries that proved themselves reach it.
- ``ghost``: keys only (no values, no bytes charged) of entries recently evicted from ``small``,
  bounded by count to the number of resident entries. A put of a ghost key goes straight to
  ``main``: it was asked for again soon after being dropped.
- each entry has a frequency counter, capped at 3, bumped by ``get``.

Eviction, run before an insert until the newcomer fits:

- from ``small`` (while it holds more than its share, or ``main`` is empty): the oldest entry goes
  to ``main`` if it was read at least once while in ``small``, otherwise it is evicted and its key
  remembered in ``ghost``. One read is enough (the paper's code uses two): ``small`` is only 10% of
  the bytes, so its residency window is short and a second read inside it is rare even for objects
  that are truly reused; a one-off scan is never read at all, so one read already filters it out.
- from ``main``: the oldest entry with a non-zero counter has it decremented and goes back to the
  tail; the first one at zero is evicted.

A hit is one dict lookup and a capped increment: no queue moves, no locks. That is the point of
S3-FIFO over LRU-family policies for a hot path that runs on every cache hit.

Sizes are whatever the caller says (headers plus body). ``put`` refuses objects larger than
``max_object_bytes`` or than the whole budget; the caller streams those through uncached.

Evictions for space are reported through ``on_evict(key, value, size_bytes)`` once each, after
``put`` has finished updating the tier (so the callback sees a consistent tier; it must not call
back into this tier). ``remove``, ``clear`` and a replacing ``put`` are not evictions and are not
reported. The disk tier (issue 3) hangs off that callback.

This module is a pure core: no I/O, no clock, no randomness; it is not thread-safe (one event loop
owns it).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

FREQ_CAP = 3  # S3-FIFO: two bits of frequency per object
SMALL_SHARE_DIVISOR = 10  # S3-FIFO: the small queue gets 1/10 of the cache


class _Entry(Generic[K, V]):
    __slots__ = ("freq", "in_main", "key", "size_bytes", "value")

    def __init__(self, key: K, value: V, size_bytes: int, freq: int, in_main: bool) -> None:
        self.key = key
        self.value = value
        self.size_bytes = size_bytes
        self.freq = freq
        self.in_main = in_main


class MemoryTier(Generic[K, V]):
    """A byte-budgeted in-memory cache with scan-resistant S3-FIFO eviction."""

    def __init__(
        self,
        capacity_bytes: int,
        max_object_bytes: int,
        on_evict: Callable[[K, V, int], None] | None = None,
    ) -> None:
        if capacity_bytes <= 0:
            raise ValueError(f"capacity_bytes must be positive, got {capacity_bytes}")
        if max_object_bytes <= 0:
            raise ValueError(f"max_object_bytes must be positive, got {max_object_bytes}")
        self._capacity_bytes = capacity_bytes
        self._max_object_bytes = max_object_bytes
        self._small_target_bytes = max(1, capacity_bytes // SMALL_SHARE_DIVISOR)
        self._on_evict = on_evict
        self._index: dict[K, _Entry[K, V]] = {}
        self._small: OrderedDict[K, _Entry[K, V]] = OrderedDict()
        self._main: OrderedDict[K, _Entry[K, V]] = OrderedDict()
        self._ghost: OrderedDict[K, None] = OrderedDict()
        self._bytes_used = 0
        self._small_bytes = 0
        self._evictions = 0

    # -- read side -------------------------------------------------------------------------------

    def get(self, key: K) -> V | None:
        """Return the value for ``key`` (or None) and count the access. O(1), no queue moves."""
        entry = self._index.get(key)
        if entry is None:
            return None
        if entry.freq < FREQ_CAP:
            entry.freq += 1
        return entry.value

    def peek(self, key: K) -> V | None:
        """Return the value for ``key`` (or None) without counting an access."""
        entry = self._index.get(key)
        return None if entry is None else entry.value

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def items(self) -> Iterator[tuple[K, V]]:
        """Yield (key, value) pairs from a snapshot, so callers may ``remove`` while iterating."""
        snapshot = [(key, entry.value) for key, entry in self._index.items()]
        return iter(snapshot)

    @property
    def bytes_used(self) -> int:
        return self._bytes_used

    @property
    def capacity_bytes(self) -> int:
        return self._capacity_bytes

    @property
    def max_object_bytes(self) -> int:
        return self._max_object_bytes

    @property
    def evictions(self) -> int:
        """How many entries have been evicted for space since the tier was made."""
        return self._evictions

    # -- write side ------------------------------------------------------------------------------

    def put(self, key: K, value: V, size_bytes: int) -> bool:
        """Store ``value`` under ``key``, charging ``size_bytes``; evict to make room.

        Returns False, storing nothing, when the object is larger than ``max_object_bytes`` or
        than the whole budget; an entry already under ``key`` is then dropped too, since the
        caller meant to replace it. A replacing put keeps the entry's queue and frequency.
        """
        if size_bytes <= 0:
            raise ValueError(f"size_bytes must be positive, got {size_bytes}")
        old = self._detach(key)
        if size_bytes > self._max_object_bytes or size_bytes > self._capacity_bytes:
            return False
        evicted = self._make_room(size_bytes)
        if old is not None:
            entry = _Entry(key, value, size_bytes, old.freq, old.in_main)
        elif key in self._ghost:
            del self._ghost[key]
            entry = _Entry(key, value, size_bytes, 0, True)
        else:
            entry = _Entry(key, value, size_bytes, 0, False)
        self._attach(entry)
        self._report(evicted)
        return True

    def remove(self, key: K) -> V | None:
        """Drop ``key`` (not an eviction: ``on_evict`` is not called); return its value."""
        entry = self._detach(key)
        self._ghost.pop(key, None)
        return None if entry is None else entry.value

    def clear(self) -> None:
        """Drop everything, ghosts included. Not evictions; the eviction count is kept."""
        self._index.clear()
        self._small.clear()
        self._main.clear()
        self._ghost.clear()
        self._bytes_used = 0
        self._small_bytes = 0

    # -- internals -------------------------------------------------------------------------------

    def _attach(self, entry: _Entry[K, V]) -> None:
        self._index[entry.key] = entry
        self._bytes_used += entry.size_bytes
        if entry.in_main:
            self._main[entry.key] = entry
        else:
            self._small[entry.key] = entry
            self._small_bytes += entry.size_bytes

    def _detach(self, key: K) -> _Entry[K, V] | None:
        entry = self._index.pop(key, None)
        if entry is None:
            return None
        self._bytes_used -= entry.size_bytes
        if entry.in_main:
            del self._main[key]
        else:
            del self._small[key]
            self._small_bytes -= entry.size_bytes
        return entry

    def _make_room(self, size_bytes: int) -> list[_Entry[K, V]]:
        """Evict until ``size_bytes`` more fit; return the evicted entries."""
        evicted: list[_Entry[K, V]] = []
        while self._bytes_used + size_bytes > self._capacity_bytes:
            if self._small and (self._small_bytes > self._small_target_bytes or not self._main):
                victim = self._evict_from_small()
            else:
                victim = self._evict_from_main()
            if victim is not None:
                evicted.append(victim)
        return evicted

    def _evict_from_small(self) -> _Entry[K, V] | None:
        """Promote read entries from the head of ``small``; evict the first unread one."""
        while self._small:
            key, entry = self._small.popitem(last=False)
            self._small_bytes -= entry.size_bytes
            if entry.freq > 0:
                entry.freq = 0  # the read bought the promotion; main starts it afresh
                entry.in_main = True
                self._main[key] = entry
                continue
            del self._index[key]
            self._bytes_used -= entry.size_bytes
            self._remember_ghost(key)
            return entry
        return None

    def _evict_from_main(self) -> _Entry[K, V] | None:
        """Give each read entry at the head of ``main`` another lap; evict the first unread one."""
        while self._main:
            key, entry = self._main.popitem(last=False)
            if entry.freq > 0:
                entry.freq -= 1
                self._main[key] = entry
                continue
            del self._index[key]
            self._bytes_used -= entry.size_bytes
            return entry
        return None

    def _remember_ghost(self, key: K) -> None:
        self._ghost[key] = None
        self._ghost.move_to_end(key)
        limit = max(1, len(self._index))
        while len(self._ghost) > limit:
            self._ghost.popitem(last=False)

    def _report(self, evicted: list[_Entry[K, V]]) -> None:
        self._evictions += len(evicted)
        if self._on_evict is None:
            return
        for entry in evicted:
            self._on_evict(entry.key, entry.value, entry.size_bytes)
