"""The shared tier: a Redis that a few proxies of one site look into below their own memory
and disk (docs/design/tiered-cache.md, "Shared tier").

- Reads (`get`) are on a client's path, so each is bounded by the timeout and skipped while the
  circuit breaker is open; whatever goes wrong (timeout, refused connection, a value that does
  not verify) is a miss, counted by kind, never an error for the client.
- Writes (`offer`) and deletes (`remove`) never are: they are queued (newest operation per key,
  bounded) and one task sends them in order, so a delete queued after a put of the same key
  lands after it. A delete that cannot be sent (breaker open, store down) is kept in a bounded
  set, and a key in it is never read from the store, until the delete is sent.
- A value is checked whole before use (`shared_format.decode_value`); a corrupt or truncated
  one is dropped from the store and counted, never served. A value that a purge run here
  since its request went out covers (`RecentPurges`) is dropped (hard) or marked stale (soft).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from proxy.cache.entry import StoredResponse
from proxy.cache.purge_marks import RecentPurges
from proxy.cache.tiers.disk_format import EntryFormatError
from proxy.cache.tiers.shared_breaker import CircuitBreaker
from proxy.cache.tiers.shared_format import decode_value, encode_value, expiry_s, storage_key

if TYPE_CHECKING:  # the backend imports redis-py (0.3 s): only when a shared tier is configured
    from proxy.cache.tiers.shared_backend import SharedBackend

log = logging.getLogger("cachet.proxy")

Variants = tuple[StoredResponse, ...]
QUEUE_MAX_ENTRIES = 1024
QUEUE_MAX_BYTES = 64 * 1024 * 1024
DELETES_MAX = 65536  # queued or unsent deletes; past it a delete is lost (counted)
WRITE_TIMEOUT_FACTOR = 4  # off the client's path: a large value gets more room than a read
INLINE_CODEC_BYTES = 64 * 1024  # larger values are encoded and checked in a thread
T = TypeVar("T")
CLOSE_WAIT_S = 2.0  # at shutdown, how long queued writes may take before they are abandoned


@dataclass
class SharedStats:
    hits: int = 0
    misses: int = 0
    skipped: int = 0  # reads and writes not tried because the breaker was open
    writes: int = 0
    deletes: int = 0
    writes_dropped: int = 0  # the write queue was full
    errors: Counter[str] = field(default_factory=Counter)  # by kind; "corrupt" for bad values


class SharedTier:
    def __init__(
        self,
        backend: SharedBackend,
        *,
        prefix: str,
        max_object_bytes: int,
        timeout_s: float,
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_queue_entries: int = QUEUE_MAX_ENTRIES,
        max_queue_bytes: int = QUEUE_MAX_BYTES,
    ) -> None:
        self.backend = backend
        self.prefix = prefix
        self.max_object_bytes = max_object_bytes
        self.timeout_s = timeout_s
        self.breaker = breaker or CircuitBreaker()
        self.clock = clock
        self.max_queue_entries = max_queue_entries
        self.max_queue_bytes = max_queue_bytes
        self.stats = SharedStats()
        self._ops: OrderedDict[str, Variants | None] = OrderedDict()  # None: delete
        self._queued_bytes = 0
        # Keys whose delete has not been confirmed (queued, in flight or unsent): never read
        # from the store meanwhile, so a purge here is not undone by a read racing its delete.
        self._deleting: set[str] = set()
        self._unsent: set[str] = set()  # deletes that failed or were skipped: sent again later
        self._in_flight: tuple[str, Variants | None] | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # -- reads ---------------------------------------------------------------------------------

    def may_hold(self, key: str) -> bool:
        """Is a read of ``key`` worth starting: the breaker lets it, no delete of it pending."""
        if key in self._deleting:
            return False
        return self.breaker.would_allow(self.clock())

    async def get(self, key: str, purges: RecentPurges | None = None) -> Variants | None:
        """The verified variants the shared store holds for ``key``, or None (a miss, an open
        breaker, a failure, a value that does not verify or that a recent purge here covers)."""
        if not self.may_hold(key):
            return None
        if not self.breaker.allow(self.clock()):
            self.stats.skipped += 1
            return None
        value = await self._call(self.backend.get(storage_key(self.prefix, key), self.timeout_s))
        if value is None or isinstance(value, Exception):
            self.stats.misses += value is None
            return None
        if key in self._deleting:  # purged or invalidated while the read was on its way
            return None
        try:
            if len(value) <= INLINE_CODEC_BYTES:
                variants = decode_value(key, value)
            else:
                variants = await asyncio.to_thread(decode_value, key, value)
        except EntryFormatError as err:
            self.stats.errors["corrupt"] += 1
            log.warning("shared tier: dropped a value that does not verify (%s)", err)
            self.remove(key)
            return None
        if purges is not None:
            variants = purges.surviving(key, variants)
            if not variants:
                self.remove(key)
                self.stats.misses += 1
                return None
        self.stats.hits += 1
        return variants

    # -- writes --------------------------------------------------------------------------------

    def offer(self, key: str, variants: Variants) -> bool:
        """Queue ``variants`` (already judged storable) for the shared store; True if queued.
        Too large to share: the store's older copy is deleted rather than left behind."""
        size = _body_bytes(variants)
        if size > self.max_object_bytes:
            self.remove(key)
            return False
        if not self.breaker.would_allow(self.clock()):
            self.stats.skipped += 1
            return False
        previous = self._ops.pop(key, ())
        if previous:
            self._queued_bytes -= _body_bytes(previous)
        full = len(self._ops) >= self.max_queue_entries
        if full or self._queued_bytes + size > self.max_queue_bytes:
            self.stats.writes_dropped += 1
            if previous is None:
                self._ops[key] = None  # keep the delete that was waiting
            return False
        self._unsent.discard(key)  # the put overwrites what the store holds; until it lands,
        # the key stays in _deleting, so the older value is not read back
        self._ops[key] = variants
        self._queued_bytes += size
        self._wake.set()
        return True

    def remove(self, key: str) -> None:
        """Delete ``key`` from the shared store (queued: a purge or invalidation here)."""
        previous = self._ops.pop(key, None)
        if previous is not None:
            self._queued_bytes -= _body_bytes(previous)
        if len(self._deleting) >= DELETES_MAX and key not in self._deleting:
            self.stats.errors["delete_lost"] += 1
            return
        self._deleting.add(key)
        self._ops[key] = None
        self._wake.set()

    # -- the writer task -----------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Send what is queued (for at most CLOSE_WAIT_S), then close the connections."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), CLOSE_WAIT_S)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        await self.backend.close()

    async def wait_idle(self) -> None:
        """Until every queued operation has been sent or given up (the writer must run)."""
        while self._ops or self._in_flight is not None:
            self._idle.clear()
            self._wake.set()
            await self._idle.wait()

    @property
    def pending(self) -> int:
        return len(self._ops)

    async def _run(self) -> None:
        while True:
            if not self._ops:
                self._idle.set()
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            key, variants = self._ops.popitem(last=False)
            if variants is not None:
                self._queued_bytes -= _body_bytes(variants)
            self._in_flight = (key, variants)
            try:
                await self._send(key, variants)
            except Exception:  # a bug in one operation must not stop the writer for good
                log.exception("shared tier: sending an operation failed")
            finally:
                self._in_flight = None

    async def _send(self, key: str, variants: Variants | None) -> None:
        if not self.breaker.allow(self.clock()):
            self.stats.skipped += 1
            if key in self._deleting:
                self._unsent.add(key)  # a delete, or a put that was to overwrite a deleted key
            return
        name = storage_key(self.prefix, key)
        timeout = self.timeout_s * WRITE_TIMEOUT_FACTOR
        if variants is None:
            outcome = await self._call(self.backend.delete(name, timeout))
            self.stats.deletes += not isinstance(outcome, Exception)
        else:
            value = await _encode(key, variants)
            expiry = expiry_s(variants, time.time())
            outcome = await self._call(self.backend.set(name, value, expiry, timeout))
            self.stats.writes += not isinstance(outcome, Exception)
        if key not in self._deleting:
            return
        if isinstance(outcome, Exception):
            self._unsent.add(key)
        elif key not in self._ops:  # confirmed, and nothing newer queued for the key
            self._deleting.discard(key)

    def _resend_deletes(self) -> None:
        """The store answers again: queue the deletes it missed (a put queued meanwhile stays:
        it overwrites the value anyway)."""
        for key in self._unsent:
            self._ops.setdefault(key, None)
        self._unsent.clear()
        self._wake.set()

    async def _call(self, operation: Awaitable[T]) -> T | Exception:
        """Await one store operation and tell the breaker how it went; a failure is returned
        (counted by kind), never raised: the shared tier is an optimisation."""
        try:
            result = await operation
        except asyncio.CancelledError:
            self.breaker.abandon()
            raise
        except Exception as err:
            kind = self.backend.kind_of(err)
            self.stats.errors[kind] += 1
            self.breaker.failure(self.clock())
            if kind == "other":
                log.warning("shared tier: unexpected %s from the store", type(err).__name__)
            return err
        self.breaker.success()
        if self._unsent:
            self._resend_deletes()
        return result


async def _encode(key: str, variants: Variants) -> bytes:
    if _body_bytes(variants) <= INLINE_CODEC_BYTES:
        return encode_value(key, variants)
    return await asyncio.to_thread(encode_value, key, variants)


def _body_bytes(variants: Variants) -> int:
    return sum(len(stored.body) for stored in variants)


class SharedTierCollector(Collector):
    """cachet_shared_* metrics (docs/design/tiered-cache.md)."""

    def __init__(self, tier: SharedTier) -> None:
        self._tier = tier

    def collect(self) -> Iterator[Metric]:
        tier = self._tier
        stats = tier.stats
        for name, documentation, value in (
            ("hits", "Lookups the shared tier answered with a verified entry", stats.hits),
            ("misses", "Lookups the shared tier did not hold", stats.misses),
            ("skipped", "Reads and writes not tried while the breaker was open", stats.skipped),
            ("writes", "Entries written to the shared tier", stats.writes),
            ("deletes", "Entries deleted from the shared tier (purges, invalidations)",
             stats.deletes),
            ("writes_dropped", "Writes dropped because the write queue was full",
             stats.writes_dropped),
            ("breaker_opened", "Times the breaker opened after failures", tier.breaker.opened),
        ):  # fmt: skip
            yield CounterMetricFamily(f"cachet_shared_{name}", documentation, value=value)
        errors = CounterMetricFamily(
            "cachet_shared_errors",
            "Shared tier failures by kind: timeout, connection, redis, corrupt, delete_lost, other",
            labels=["kind"],
        )
        for kind, count in sorted(stats.errors.items()):
            errors.add_metric([kind], count)
        yield errors
        yield GaugeMetricFamily(
            "cachet_shared_breaker_state",
            "The shared tier's breaker: 0 closed, 1 open (skipped), 2 half-open (probing)",
            value=int(tier.breaker.state),
        )
        yield GaugeMetricFamily(
            "cachet_shared_queue_entries",
            "Writes and deletes waiting to be sent",
            value=tier.pending,
        )
