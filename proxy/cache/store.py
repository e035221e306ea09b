"""The cache as the handler sees it: variants of one URL kept together, in memory and on disk.

A URL's variants (RFC 9111 §4.1) live in one tier entry, so a hit is a single dict lookup and
an eviction drops a URL whole; the number of variants per URL is bounded so a Vary on a
high-cardinality field can't crowd out everything else.

With a disk tier the store is write-through, as nginx's cache: every entry put in memory is
also queued for the disk (`DiskWriter`, a bounded queue drained by one task, so the hit path
never waits on a file); memory is the hot layer over the disk. A memory miss may be answered
from the disk (`load`, then `promote`). Invalidation and purges remove from both tiers and
cancel queued writes of the key. Surrogate keys and content ids are indexed per URL for purges
(proxy.purge); after a restart the disk's entries are indexed from their files' metadata
(`index_disk_labels`), and a purge by either waits for that before it looks.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import replace

from proxy.cache.entry import StoredResponse
from proxy.cache.keys import is_vary_match
from proxy.cache.purge_marks import PurgeMark, RecentPurges
from proxy.cache.surrogate import ReverseIndex, surrogate_keys
from proxy.cache.tiers.disk import DiskTier, LargeEntry
from proxy.cache.tiers.disk_format import EntryFormatError
from proxy.cache.tiers.disk_labels import read_labels
from proxy.cache.tiers.memory import MemoryTier
from proxy.cache.tiers.shared import SharedTier
from proxy.http.fields import Headers

log = logging.getLogger("cachet.proxy")

MAX_VARIANTS = 16
DISK_QUEUE_MAX_ENTRIES = 1024
DISK_QUEUE_MAX_BYTES = 256 * 1024 * 1024
DISK_FILE_WRITERS = 2  # large entries copied from spill files at once (each one thread)
MAINTAIN_INTERVAL_S = 1.0  # how often the disk folder's owner reads the other workers' journals
LABEL_PRUNE_BATCH = 256  # a sharer's purge-index entries checked against the folder per tick
Variants = tuple[StoredResponse, ...]


def select_variant(
    variants: Variants | None, request_headers: Headers
) -> tuple[StoredResponse | None, bool]:
    """The most recent variant matching the request, and whether any variant exists."""
    if not variants:
        return None, False
    for stored in variants:  # newest first
        if not stored.vary or is_vary_match(stored.vary, request_headers):
            return stored, True
    return None, True


class DiskWriter:
    """Write-through puts waiting for the disk, newest value per key, bounded in entries and
    bytes; one task writes them in order. A full queue drops the put (counted): the entry is
    still in memory, and the disk is a cache."""

    def __init__(
        self,
        disk: DiskTier,
        max_entries: int = DISK_QUEUE_MAX_ENTRIES,
        max_bytes: int = DISK_QUEUE_MAX_BYTES,
        on_tick: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.disk = disk
        self.on_tick = on_tick  # the shared folder's upkeep, every MAINTAIN_INTERVAL_S
        self._ticker: asyncio.Task[None] | None = None
        self._stop_ticking: asyncio.Event | None = None
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.dropped = 0
        self._queue: OrderedDict[str, Variants] = OrderedDict()
        self._queued_bytes = 0
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._file_puts: dict[asyncio.Task[bool], str] = {}  # large entries being copied
        self._file_slots = asyncio.Semaphore(DISK_FILE_WRITERS)

    def write_file(
        self, key: str, stored: StoredResponse, source_fd: int, body_len: int
    ) -> asyncio.Task[bool]:
        """Store a large body from a fill's spill file (``source_fd``, a descriptor this call
        takes over) as a chunked entry, in a task of its own: a copy of a GiB takes seconds
        and must not hold up the small entries' queue. True once the entry is in place."""
        self.cancel(key)
        task = asyncio.get_running_loop().create_task(
            self._write_file(key, stored, source_fd, body_len)
        )
        self._file_puts[task] = key
        task.add_done_callback(self._file_written)
        return task

    def rewrite_large(self, key: str, stored: StoredResponse, entry: LargeEntry) -> None:
        """Rewrite a large entry with ``stored``'s metadata, its body copied from its own file
        with every chunk verified (a 304's refresh), in a task like `write_file`.

        Not while a file of the key is being written: a rewrite in flight lands the same body
        with the head of a 304 received moments earlier (fields this one changed wait for the
        next revalidation), a full put a newer representation. Every 304 used to start
        its own copy, so on a slow disk a stream of revalidations of one stale entry queued
        copies of it faster than they landed, and the entry stayed stale meanwhile."""
        self.cancel(key)
        if self.file_writes(key):
            return
        task = asyncio.get_running_loop().create_task(self._rewrite_large(key, stored, entry))
        self._file_puts[task] = key
        task.add_done_callback(self._file_written)

    async def _rewrite_large(self, key: str, stored: StoredResponse, entry: LargeEntry) -> bool:
        try:
            source = await asyncio.to_thread(entry.open_body)
        except OSError:
            return False  # replaced or removed since: nothing of ours to refresh
        return await self._write_file(key, stored, source, entry.body_lengths[0], entry)

    def file_writes(self, key: str) -> list[asyncio.Task[bool]]:
        """The large-entry writes (fills and rewrites) of ``key`` still in flight."""
        return [task for task, written in self._file_puts.items() if written == key]

    def _file_written(self, task: asyncio.Task[bool]) -> None:
        self._file_puts.pop(task, None)

    async def _write_file(
        self,
        key: str,
        stored: StoredResponse,
        source_fd: int,
        body_len: int,
        copy_from: LargeEntry | None = None,
    ) -> bool:
        handed = False  # put_file closes the descriptor once it has it
        try:
            async with self._file_slots:
                if self._closing:
                    return False
                handed = True
                return await self.disk.put_file(
                    key, stored, source_fd, body_len, copy_from=copy_from
                )
        except asyncio.CancelledError:
            raise
        except Exception:  # the fill was served; only the disk copy is lost
            log.exception("disk tier: storing %s from its spill file failed", key)
            return False
        finally:
            if not handed:
                os.close(source_fd)

    def queue(self, key: str, variants: Variants) -> bool:
        size = _body_bytes(variants)
        self.cancel(key)
        if len(self._queue) >= self.max_entries or self._queued_bytes + size > self.max_bytes:
            self.dropped += 1
            self.disk.remove(key)  # what is on disk is older than what memory now holds
            return False
        self._queue[key] = variants
        self._queued_bytes += size
        if self._wake is not None:
            self._wake.set()
        return True

    def queued(self, key: str) -> Variants | None:
        return self._queue.get(key)

    def cancel(self, key: str) -> None:
        old = self._queue.pop(key, None)
        if old is not None:
            self._queued_bytes -= _body_bytes(old)

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._stop_ticking = asyncio.Event()
        if self._queue:
            self._wake.set()
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run())
        if self.on_tick is not None:
            self._ticker = loop.create_task(self._tick(self.on_tick))

    async def close(self) -> None:
        """Write what is queued, stop the tasks, then close the tier (index snapshot)."""
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            await self._task
        # Large copies still running stop at their next chunk (their temp files are deleted):
        # finishing a GiB is not worth holding up a shutdown.
        for key in list(self._file_puts.values()):
            self.disk.cancel_put(key)
        if self._file_puts:
            await asyncio.gather(*self._file_puts, return_exceptions=True)
        if self._ticker is not None and self._stop_ticking is not None:
            # Not cancelled: an upkeep under way (a take-over scan, say) finishes, so the tier
            # closes as what it became (an owner writes its snapshot).
            self._stop_ticking.set()
            await self._ticker
        await asyncio.to_thread(self.disk.close)

    async def _tick(self, upkeep: Callable[[], Awaitable[None]]) -> None:
        stop = self._stop_ticking
        assert stop is not None
        while True:
            try:
                await asyncio.wait_for(stop.wait(), MAINTAIN_INTERVAL_S)
                return
            except TimeoutError:
                pass
            try:
                await upkeep()
            except Exception:  # the next tick tries again; serving goes on meanwhile
                log.exception("disk tier: upkeep of the shared folder failed")

    async def wait_idle(self) -> None:
        """Until every queued put has been written (the writer must be started)."""
        assert self._wake is not None and self._idle is not None
        while self._queue or not self._idle.is_set():
            self._idle.clear()
            self._wake.set()
            await self._idle.wait()

    async def _run(self) -> None:
        assert self._wake is not None and self._idle is not None
        while True:
            if not self._queue:
                self._idle.set()
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            self._idle.clear()
            key, variants = self._queue.popitem(last=False)
            self._queued_bytes -= _body_bytes(variants)
            try:
                await self.disk.put(key, variants)
            except Exception:  # a bug in one put must not stop write-through for good
                log.exception("disk tier: put of %s failed", key)

    @property
    def pending(self) -> int:
        return len(self._queue)


class ResponseStore:
    def __init__(
        self,
        capacity_bytes: int,
        max_object_bytes: int,
        on_evict: Callable[[str, Variants, int], None] | None = None,
        disk: DiskTier | None = None,
        shared: SharedTier | None = None,
    ) -> None:
        self.disk = disk
        self.shared = shared  # below the disk: a few proxies' Redis (docs/design/tiered-cache.md)
        self.tier: MemoryTier[str, Variants] = MemoryTier(
            capacity_bytes, max_object_bytes, on_evict=self._forget_evicted(on_evict)
        )
        self.writer = DiskWriter(disk, on_tick=self.maintain) if disk is not None else None
        if disk is not None:
            disk.on_drop = self._forget_unless_held
        self.surrogates = ReverseIndex()  # surrogate key -> URLs
        self.contents = ReverseIndex()  # content id -> URLs
        self.recent_purges = RecentPurges()  # for fills still on their way when a purge ran
        self._disk_labels: asyncio.Future[int] | None = None
        self._labelled_meanwhile: set[str] | None = None  # indexed while the disk scan ran
        self._prune_queue: list[str] = []  # a sharer's labelled keys still to check

    def _forget_evicted(
        self, then: Callable[[str, Variants, int], None] | None
    ) -> Callable[[str, Variants, int], None]:
        def on_evict(key: str, variants: Variants, size_bytes: int) -> None:
            self._forget_unless_held(key)
            if then is not None:
                then(key, variants, size_bytes)

        return on_evict

    def _forget_unless_held(self, key: str) -> None:
        """A tier dropped ``key`` on its own: unindex it unless the other tier (or the disk
        queue) still holds it, so the purge indexes don't grow with every URL ever stored."""
        if key in self.tier or (self.disk is not None and self.disk.may_hold(key)):
            return
        if self.writer is not None and self.writer.queued(key) is not None:
            return
        self.surrogates.remove(key)
        self.contents.remove(key)

    def variants(self, key: str) -> Variants | None:
        return self.tier.get(key)

    def select(self, key: str, request_headers: Headers) -> tuple[StoredResponse | None, bool]:
        """The most recent variant matching the request, and whether any variant exists."""
        variants = self.tier.get(key)
        if not variants:
            return None, False
        for stored in variants:  # newest first
            if not stored.vary or is_vary_match(stored.vary, request_headers):
                return stored, True
        return None, True

    def max_storable_bytes(self) -> int:
        """The largest body a fill buffers in memory for the store: what the memory tier
        admits. A larger one is spilled to a file and, if the disk takes it
        (`disk_storable_bytes`), stored from there (`put_spilled`)."""
        return self.memory_admits_bytes()

    def memory_admits_bytes(self) -> int:
        """The largest body the memory tier could hold (its object limit, its budget); a disk
        entry with larger bodies is streamed from its file, never promoted."""
        return min(self.tier.max_object_bytes, self.tier.capacity_bytes)

    def disk_storable_bytes(self) -> int:
        """The largest body the disk tier takes (its object limit and budget); 0 without one."""
        disk = self.disk
        if disk is None or self.writer is None:
            return 0
        return min(disk.max_object_bytes, disk.capacity_bytes)

    def put_spilled(
        self, key: str, stored: StoredResponse, source_fd: int, body_len: int
    ) -> asyncio.Task[bool] | None:
        """Store a body too large for memory from the spill file its fill streamed through
        (``source_fd``, taken over by this call): to the disk tier only, as a one-variant
        chunked entry that replaces the key's other variants. The task's result says whether
        it landed; None (nothing stored) if the disk can't take it."""
        writer = self.writer
        if writer is None or body_len > self.disk_storable_bytes():
            os.close(source_fd)
            return None
        self.tier.remove(key)  # older variants: the disk file will hold only this one
        if self.shared is not None:
            self.shared.remove(key)  # too large to share; an older shared copy must not answer
        self._index(key, (stored,))
        return writer.write_file(key, stored, source_fd, body_len)

    def is_on_disk(self, key: str) -> bool:
        """May a tier below memory answer ``key``: the disk (with other workers on the folder,
        asks the folder) or, unless its breaker is open, the shared tier (`load` asks both)."""
        disk = self.disk
        if disk is not None and disk.may_hold(key):
            return True
        return self.shared is not None and self.shared.may_hold(key)

    async def maintain(self) -> None:
        """The shared disk folder's upkeep (every MAINTAIN_INTERVAL_S): the owner takes in
        what the other workers wrote (and indexes its surrogate keys and content ids, so a
        purge here finds it) and evicts down to the budget; a sharer forgets the purge labels
        of keys the owner evicted."""
        disk = self.disk
        if disk is None:
            return
        if disk.claim_if_orphaned():
            await self._take_over(disk)
        adopted = await disk.maintain()
        if adopted:
            await self._index_adopted(disk, adopted)
        if not disk.owner:
            await self._prune_labels(disk)

    async def _take_over(self, disk: DiskTier) -> None:
        """This worker now owns the disk folder (its owner died): index the whole folder, then
        the purge labels of every entry, as at a start. Purges by surrogate key or content id
        wait meanwhile: this worker is now the one that must find entries only on disk."""
        waiting: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._disk_labels = waiting
        indexed = 0
        try:
            await disk.take_over()
            self._disk_labels = None
            indexed = await asyncio.shield(self.index_disk_labels())
        finally:
            if self._disk_labels is waiting:
                self._disk_labels = None  # failed before the new scan: the next purge starts it
            waiting.set_result(indexed)
        log.info("disk tier: took over the folder; labels of %d entries indexed", indexed)

    async def _index_adopted(self, disk: DiskTier, keys: list[str]) -> None:
        if self._labelled_meanwhile is not None:
            self._labelled_meanwhile.update(keys)  # newer than what the start-up scan reads
        found = await asyncio.to_thread(read_labels, disk.directory, keys)
        for labels in found:
            key = labels.key
            if key in disk and key not in self.tier:  # memory's copy indexed itself
                self.surrogates.set(key, labels.surrogate_keys)
                self.contents.set(key, labels.content_ids)

    async def _prune_labels(self, disk: DiskTier) -> None:
        """A sharer keeps the purge labels of what it wrote while the file exists (the owner
        may not have indexed it yet); a batch per tick is checked against the folder, and the
        labels of files gone (evicted by the owner, removed by another worker) are forgotten,
        so the indexes do not grow with every URL this worker ever stored."""
        if not self._prune_queue:
            self._prune_queue = list(self.surrogates.keys() | self.contents.keys())
        batch = self._prune_queue[-LABEL_PRUNE_BATCH:]
        del self._prune_queue[-LABEL_PRUNE_BATCH:]
        batch = [key for key in batch if key not in self.tier]
        gone = await asyncio.to_thread(_files_gone, disk, batch)
        for key in gone:
            self._forget_unless_held(key)

    def put(self, key: str, stored: StoredResponse) -> bool:
        """Store a variant, replacing any older variant with the same secondary key; True if
        memory or the disk queue took it."""
        existing = self.tier.peek(key) or ()
        kept = tuple(old for old in existing if old.vary != stored.vary)
        variants = (stored, *kept)[:MAX_VARIANTS]
        return self._put_variants(key, variants)

    def replace(self, key: str, old: StoredResponse, new: StoredResponse) -> None:
        """Swap one variant for its refreshed copy (after a 304, §4.3.4)."""
        existing = self.tier.peek(key)
        if not existing:
            return  # evicted (or never held) meanwhile: the next request revalidates again
        variants = tuple(new if v is old else v for v in existing)
        self._put_variants(key, variants)

    def _put_variants(self, key: str, variants: Variants) -> bool:
        in_memory = self.tier.put(key, variants, sum(v.size_bytes for v in variants))
        self._index(key, variants)
        on_disk = False
        writer = self.writer
        if writer is not None and _body_bytes(variants) <= writer.disk.max_object_bytes:
            on_disk = writer.queue(key, variants)
        elif writer is not None:
            writer.cancel(key)
            writer.disk.remove(key)
        if self.shared is not None:
            self.shared.offer(key, variants)  # queued; too large: its older shared copy goes
        return in_memory or on_disk

    async def load(self, key: str) -> Variants | None:
        """The variants the disk, else the shared tier, holds for ``key`` (verified), or None."""
        variants = await self.disk.get(key) if self.disk is not None else None
        if variants is None and self.shared is not None:
            variants = await self.shared.get(key, self.recent_purges)
        return variants

    async def load_or_stream(self, key: str) -> Variants | LargeEntry | None:
        """As `load`, but a disk entry whose bodies are larger than memory admits is not read:
        a LargeEntry (its verified prefix) to stream from, never promoted."""
        found: Variants | LargeEntry | None = None
        if self.disk is not None:
            found = await self.disk.lookup(key, self.memory_admits_bytes())
        if found is None and self.shared is not None:
            found = await self.shared.get(key, self.recent_purges)
        return found

    def refresh_large(
        self, key: str, entry: LargeEntry, old: StoredResponse, refreshed: StoredResponse
    ) -> None:
        """A 304 refreshed a large disk entry's head (RFC 9111 §4.3.4): rewrite its file from
        itself with the new metadata, every chunk verified, in the background (`DiskWriter`).
        An entry of several variants is left as it is (the next request revalidates again)."""
        writer = self.writer
        if writer is None or entry.variants != (old,) or entry.variants[0] is not old:
            return
        writer.rewrite_large(key, refreshed, entry)

    def drop_corrupt_large(self, entry: LargeEntry, error: EntryFormatError) -> None:
        """A large disk entry failed a chunk's check while it streamed: drop its file (counted
        in the disk tier's corrupt_dropped); the next request goes to the origin."""
        if self.disk is not None:
            self.disk.drop_corrupt_large(entry, error)

    def promote(self, key: str, variants: Variants) -> None:
        """Keep a lower tier's hit in memory too; a shared hit goes to this proxy's disk as well
        (a disk hit is not written back: it came from there)."""
        if self.tier.peek(key) is None:
            self.tier.put(key, variants, sum(v.size_bytes for v in variants))
        self._index(key, variants)
        writer = self.writer
        if (
            self.shared is not None
            and writer is not None
            and _body_bytes(variants) <= writer.disk.max_object_bytes
            and not writer.disk.may_hold(key)
        ):
            writer.queue(key, variants)

    def invalidate(self, key: str) -> bool:
        """Drop ``key`` from both tiers (and any queued disk write of it)."""
        removed = self.tier.remove(key) is not None
        if self.writer is not None:
            self.writer.cancel(key)
        if self.disk is not None:
            removed = self.disk.remove(key) or removed
        if self.shared is not None:
            self.shared.remove(key)
        if self._labelled_meanwhile is not None:
            self._labelled_meanwhile.add(key)
        self.surrogates.remove(key)
        self.contents.remove(key)
        return removed

    async def soft_purge(self, key: str) -> bool:
        """Mark every variant of ``key`` stale in both tiers; returns once the disk copy carries
        the mark, so no restart (SIGKILL included) brings the entry back fresh. A disk-only
        entry is rewritten on disk without taking room in memory."""
        held = self.tier.peek(key)
        if held is None and self.writer is not None:
            held = self.writer.queued(key)  # memory refused it, the disk has not yet written it
        if held is None:
            loaded = await self.load_or_stream(key)
            if loaded is None:
                return False
            if self.tier.peek(key) is not None:  # stored anew while we read: mark that one
                return await self.soft_purge(key)
            if isinstance(loaded, LargeEntry):
                await self._soft_purge_large(key, loaded)
                return True
            held = loaded
        for stored in held:
            stored.stale_marked = True
        if self.shared is not None:
            self.shared.offer(key, held)
        writer = self.writer
        if writer is not None and _body_bytes(held) <= writer.disk.max_object_bytes:
            disk = writer.disk
            writer.cancel(key)
            # A write of the unmarked copy already in flight loses to this one (a newer ticket).
            written = await disk.put(key, held)
            if not written and not disk.is_writing(key) and writer.queued(key) is None:
                disk.remove(key)  # the write failed (ENOSPC, EIO): never leave the unmarked copy
        return True

    async def _soft_purge_large(self, key: str, entry: LargeEntry) -> None:
        """Soft purge of a disk entry too large for memory: the file is rewritten with the mark
        from the old one, each chunk verified as it is copied (never the body in memory, never a
        corrupt chunk blessed with a new digest). If that fails, the entry goes: a purge never
        leaves an unmarked copy."""
        disk = self.disk
        assert disk is not None
        written = False
        if len(entry.variants) == 1:
            stored = replace(entry.variants[0], stale_marked=True)
            try:
                source = await asyncio.to_thread(entry.open_body)
            except OSError:
                source = None
            if source is not None:
                if self.writer is not None:
                    self.writer.cancel(key)
                written = await disk.put_file(
                    key, stored, source, entry.body_lengths[0], copy_from=entry
                )
        if not written and not disk.is_writing(key):
            disk.remove(key)

    def mark_stale(self, key: str, variants: Variants | None = None) -> bool:
        """Soft purge: every variant of ``key`` must be revalidated before it is served fresh
        again (still usable for stale-if-error and while revalidating). ``variants`` are the
        disk's copy when memory lacks the key."""
        held = self.tier.peek(key) or variants
        if not held:
            return False
        for stored in held:
            stored.stale_marked = True
        if self.tier.peek(key) is None:
            self.tier.put(key, held, sum(v.size_bytes for v in held))
        if self.writer is not None:
            self.writer.queue(key, held)
        if self.shared is not None:
            self.shared.offer(key, held)
        return True

    def index_disk_labels(self) -> asyncio.Future[int]:
        """Index the surrogate keys and content ids of what the disk held at start (a metadata
        scan in a thread, no bodies), so a purge finds entries not read since the restart. The
        scan runs once; every caller awaits the same one. Its result: entries indexed."""
        if self._disk_labels is None:
            keys = list(self.disk.keys()) if self.disk is not None else []
            self._labelled_meanwhile = set()  # from now on, not when the task first runs
            self._disk_labels = asyncio.ensure_future(self._scan_disk_labels(keys))
        return self._disk_labels

    async def index_disk_surrogates(self) -> int:
        """`index_disk_labels` under the name the server's start-up task calls."""
        return await asyncio.shield(self.index_disk_labels())

    async def disk_labels_indexed(self) -> None:
        """Until the disk's entries are in the purge indexes (at once without a disk tier)."""
        if self.disk is not None:
            await asyncio.shield(self.index_disk_labels())

    async def _scan_disk_labels(self, keys: list[str]) -> int:
        disk = self.disk
        try:
            if disk is None:
                return 0
            found = await asyncio.to_thread(read_labels, disk.directory, keys)
        except Exception:  # a purge must still work, with what memory knows
            log.exception("disk tier: indexing surrogate keys and content ids failed")
            return 0
        finally:
            meanwhile, self._labelled_meanwhile = self._labelled_meanwhile or set(), None
        indexed = 0
        for labels in found:
            key = labels.key
            if key in disk and key not in meanwhile:  # not stored anew or purged meanwhile
                self.surrogates.set(key, labels.surrogate_keys)
                self.contents.set(key, labels.content_ids)
                indexed += 1
        return indexed

    def keys(self) -> set[str]:
        """Every URL either tier holds (a snapshot)."""
        found = {key for key, _ in self.tier.items()}
        if self.disk is not None:
            found.update(self.disk.keys())
        return found

    def purge_content(self, content_ids: set[str]) -> int:
        """Drop every URL that has a variant attributed to one of these content ids (and keep
        a fill of one still on its way from being stored)."""
        self.recent_purges.note(PurgeMark(time.time(), "hard", content_ids=frozenset(content_ids)))
        doomed = self.keys_for_contents(content_ids)
        for key in doomed:
            self.invalidate(key)
        return len(doomed)

    def keys_for_contents(self, content_ids: set[str]) -> set[str]:
        found: set[str] = set()
        for content_id in content_ids:
            found |= self.contents.keys_for(content_id)
        for key, variants in self.tier.items():  # entries stored before the index knew them
            if any(
                v.attribution is not None and v.attribution.content_id in content_ids
                for v in variants
            ):
                found.add(key)
        return found

    def _index(self, key: str, variants: Variants) -> None:
        if self._labelled_meanwhile is not None:
            self._labelled_meanwhile.add(key)
        tags: set[str] = set()
        contents: set[str] = set()
        for stored in variants:
            tags |= surrogate_keys(stored.headers)
            if stored.attribution is not None:
                contents.add(stored.attribution.content_id)
        self.surrogates.set(key, tags)
        self.contents.set(key, contents)

    @property
    def bytes_used(self) -> int:
        return self.tier.bytes_used

    def __len__(self) -> int:
        return len(self.tier)


def _files_gone(disk: DiskTier, keys: list[str]) -> list[str]:
    return [key for key in keys if not disk.may_hold(key)]


def _body_bytes(variants: Variants) -> int:
    return sum(len(v.body) for v in variants)
