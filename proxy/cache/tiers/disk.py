"""The proxy's disk tier: one checksummed file per cache key, persistent across restarts, one
folder shared by every process of the proxy (`--workers N`).

Files live under ``directory/<h[0]>/<h[1:3]>/<h>`` where ``h`` is the SHA-256 hex of the key (two
fan-out levels, like nginx ``levels=1:2``), in the format of :mod:`proxy.cache.tiers.disk_format`.

Durability contract (see docs/design/disk-tier.md):

- A put writes a temp file ``<h>.tmp-<pid>-<n>`` in the entry's own directory, then renames it over
  ``<h>``. The rename is atomic, so the name ``<h>`` always holds a whole file: the old entry or the
  new one, whichever process wrote it. After ``put`` returns True, a SIGKILL of this process loses
  nothing (the kernel holds the data). A power loss may lose recent entries or leave torn ones
  unless ``durable=True`` (fsync of file and directory); either way a torn file fails its
  checksum and is dropped, never served.
- ``open`` deletes the temp files nobody can still be writing (a dead process's; see
  proxy.cache.tiers.disk_sharing) and, in the owner, files whose header, size or name disagree;
  ``get`` verifies the whole file's checksum before returning it and deletes a corrupt file
  (counted in ``corrupt_dropped``).

Sharing (docs/design/disk-tier.md, "Sharing one folder"): the first process to open the folder
takes its owner lock (``journal/owner.lock``, flock; released by the kernel when the process dies).
The owner keeps the index of the whole folder: from its scan at ``open`` (or its snapshot) and from
the journals in which the other processes ("sharers") note each file they write, read or remove; it
alone enforces the byte budget (LRU by last use across the folder) and writes the index snapshot. A
sharer keeps no index: it looks entries up by their key's path, writes them like the owner, and
never evicts. Every process tolerates a file vanishing under it (a miss). One process alone on its
folder is the owner and does exactly what a single proxy always did.

Concurrency within a process: bytes are written and read in worker threads
(``asyncio.to_thread``); every change to the directory's names (rename, unlink) and to the index
happens on the event loop thread, so a ``remove`` can never be undone by a put of this process
that was in flight: that put finds its ticket cancelled and deletes its temp file instead of
renaming it. (Across processes, a purge reaches every worker, and each cancels its own puts.)
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from proxy.cache.entry import StoredResponse
from proxy.cache.tiers.disk_format import EntryFormatError
from proxy.cache.tiers.disk_io import (
    CorruptEntry,
    Found,
    LargeEntry,
    fsync_directory,
    index_info,
    name_for,
    read_entry,
    unlink,
    unlink_if_inode,
    write_temp,
    write_temp_from_file,
)
from proxy.cache.tiers.disk_journal import (
    JournalReader,
    JournalWriter,
    release_owner_lock,
    take_owner_lock,
)
from proxy.cache.tiers.disk_scan import SNAPSHOT_NAME, FolderScan, write_snapshot
from proxy.cache.tiers.disk_sharing import TEMP_MARK, JournalOp, eviction_victims, temp_name

__all__ = ["SNAPSHOT_NAME", "TEMP_MARK", "DiskTier", "LargeEntry", "name_for"]

log = logging.getLogger(__name__)

Variants = tuple[StoredResponse, ...]


@dataclass(slots=True)
class _Slot:
    name: str  # sha256 hex of the key
    file_bytes: int
    inode: int = 0  # 0: unknown


@dataclass(slots=True)
class _Watch:
    """Reads of one key in flight, and whether the key was removed or replaced meanwhile."""

    readers: int = 0
    changed: bool = False


class DiskTier:
    """A byte-budgeted, crash-safe, LRU-evicted store of variants by cache key, shareable."""

    def __init__(
        self,
        directory: Path,
        capacity_bytes: int,
        max_object_bytes: int,
        *,
        durable: bool = False,
        sharer: bool | None = None,
        pid: int | None = None,
    ) -> None:
        """``sharer``: None takes the owner role if the folder has no owner yet (what a proxy
        does); True or False force the role (tests simulate two processes in one). ``pid``:
        the process the tier writes as (temp names, journal), this one's by default."""
        if capacity_bytes <= 0 or max_object_bytes <= 0:
            raise ValueError("capacity_bytes and max_object_bytes must be positive")
        self.directory = Path(directory)
        self.capacity_bytes = capacity_bytes
        self.max_object_bytes = max_object_bytes
        self.durable = durable
        self.pid = os.getpid() if pid is None else pid
        self._role = sharer
        self.owner = True
        self._index: OrderedDict[str, _Slot] = OrderedDict()  # least recently used first
        self._names: dict[str, str] = {}  # file name -> key, for the journals' records
        self._pending: dict[str, int] = {}  # key -> ticket of the put allowed to rename
        self._watched: dict[str, _Watch] = {}
        self._tickets = 0
        self._journal: JournalWriter | None = None  # a sharer's
        self._reader: JournalReader | None = None  # the owner's
        self._changed_meanwhile: list[str] | None = None  # our own writes during a take-over
        self.bytes_used = 0
        self.evictions = 0
        self.corrupt_dropped = 0
        self.temp_files_removed = 0
        self.loaded_from_snapshot = False
        self._closed = False
        # Told of each key the tier drops on its own (eviction, a corrupt or vanished file), so
        # indexes kept elsewhere can forget it; not called for `remove`.
        self.on_drop: Callable[[str], None] | None = None

    @property
    def entries(self) -> int:
        return len(self._index)

    def keys(self) -> Iterable[str]:
        """A snapshot of the indexed keys (the whole folder in the owner; nothing in a sharer)."""
        return list(self._index)

    def __contains__(self, key: object) -> bool:
        """Is ``key`` indexed? (`may_hold` also asks the folder.)"""
        return key in self._index

    def may_hold(self, key: str) -> bool:
        """Might the folder hold ``key``: indexed, or a file at its path (another process may
        have written it a moment ago; the owner hears of it only at its next upkeep). One
        stat per memory miss that the index does not know, as nginx opens the file."""
        if key in self._index:
            return True
        return os.path.exists(self._path(name_for(key)))

    def is_writing(self, key: str) -> bool:
        """Is a put of ``key`` in flight (and still allowed to land)?"""
        return key in self._pending

    # -- open and close ----------------------------------------------------------------------------

    def open(self) -> None:
        """Take the owner role if it is free, then: the owner rebuilds the index of the whole
        folder (one small read per entry file, no bodies; the snapshot of a clean ``close``
        replaces those reads for the files it names), a sharer only clears its dead
        predecessors' temp files and opens its journal."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._journal is not None:
            self._journal.close()
        self._journal = None
        self._reader = None
        self._index.clear()
        self._names.clear()
        self.bytes_used = 0
        self._closed = False
        self.owner = self._take_ownership() if self._role is None else not self._role
        role = "owns" if self.owner else "shares (another process owns it)"
        log.info("disk tier: this process %s %s", role, self.directory)
        if not self.owner:
            scan = FolderScan(self.directory, self.pid)
            scan.entry_files()  # clears our dead predecessors' temp files
            self._counted(scan)
            self._journal = JournalWriter(self.directory, self.pid)
            self._journal.open()
            return
        for item in self._scan_folder():
            self._set_slot(item.key, _Slot(item.name, item.file_bytes, item.inode))
        self._evict_over(self.capacity_bytes)

    def _scan_folder(self) -> list[Found]:
        """The owner's index of the folder, least recently used first (in a thread: no
        index changes here). The journals are followed from their current end before the
        scan: whatever is renamed from now on is seen by the scan, a journal, or both
        (applying a record twice is harmless)."""
        self._reader = JournalReader(self.directory, self.pid)
        self._reader.start()
        scan = FolderScan(self.directory, self.pid)
        found = scan.index()
        self._counted(scan)
        self.loaded_from_snapshot = scan.loaded_from_snapshot
        return found

    def _counted(self, scan: FolderScan) -> None:
        self.temp_files_removed += scan.temp_files_removed
        self.corrupt_dropped += scan.corrupt_dropped

    def claim_if_orphaned(self) -> bool:
        """A sharer whose folder lost its owner (the owner process exited and no restarted
        worker took the role at its start) takes the owner lock: True if it just did, and must
        now `take_over`."""
        if self.owner or self._role is not None or self._closed:
            return False
        return self._take_ownership()

    async def take_over(self) -> None:
        """After `claim_if_orphaned`: become the owner. The scan runs in a thread while this
        process serves on; what it writes or removes meanwhile is inspected afterwards."""
        log.info("disk tier: taking over the folder %s (no owner)", self.directory)
        if self._journal is not None:
            self._journal.close()  # our records are not needed: we track our own changes
            self._journal = None
        changed: list[str] = []
        self._changed_meanwhile = changed
        try:
            found = await asyncio.to_thread(self._scan_folder)
        finally:
            self._changed_meanwhile = None
        self.owner = True
        for item in found:
            self._set_slot(item.key, _Slot(item.name, item.file_bytes, item.inode))
        for name in changed:  # a few names: inspected on the loop, ordered with our puts
            info = index_info(str(self._path(name)))
            if isinstance(info, Found):
                self._adopt(info)
            elif info is None and name in self._names:
                self._forget(self._names[name])  # removed after the scan listed it

    def close(self) -> None:
        """Cancel puts still in flight; the owner writes the index snapshot (temp, fsync,
        rename) and gives up the role. Puts after ``close`` return False."""
        self._closed = True
        self._pending.clear()
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if not self.owner:
            return
        entries = [(k, s.name, s.file_bytes, s.inode) for k, s in self._index.items()]
        write_snapshot(self.directory, self.pid, entries)
        self._give_up_ownership()

    def _take_ownership(self) -> bool:
        return take_owner_lock(self.directory, self)

    def _give_up_ownership(self) -> None:
        release_owner_lock(self.directory, self)

    # -- the owner's view of the other processes ---------------------------------------------------

    async def maintain(self) -> list[str]:
        """The owner: take in what the other processes noted in their journals since the last
        call, then evict down to the budget. Returns the keys newly indexed (written by another
        process), so their purge labels can be read. A sharer: nothing to do."""
        if self._closed:
            return []
        if self.claim_if_orphaned():
            await self.take_over()
        reader = self._reader
        if not self.owner or reader is None:
            return []
        records, inspected = await asyncio.to_thread(self._read_journals, reader)
        adopted = self._apply_journals(records, inspected)
        self._evict_over(self.capacity_bytes)
        return adopted

    def _apply_journals(
        self,
        records: list[tuple[JournalOp, str]],
        inspected: dict[str, Found | EntryFormatError | None],
    ) -> list[str]:
        """On the loop thread: the records in order, each written or removed file as it was
        inspected (a corrupt one is left to `get`, which verifies and drops it)."""
        adopted: list[str] = []
        for op, name in records:
            key = self._names.get(name)
            if op == "U":
                if key is not None:
                    self._index.move_to_end(key)
                continue
            info = inspected.get(name)
            if isinstance(info, Found):
                if self._adopt(info):
                    adopted.append(info.key)
            elif key is not None and not os.path.exists(self._path(name)):
                self._forget(key)
                self._dropped(key)
        return adopted

    def _read_journals(
        self, reader: JournalReader
    ) -> tuple[list[tuple[JournalOp, str]], dict[str, Found | EntryFormatError | None]]:
        records = reader.poll()
        names = {name for op, name in records if op != "U"}
        inspected = {name: index_info(str(self._path(name))) for name in names}
        return records, inspected

    def _adopt(self, info: Found) -> bool:
        """Index a file another process wrote, if it is still the file that was inspected; True
        if the key was not indexed as that file before."""
        try:
            if os.stat(self._path(info.name)).st_ino != info.inode:
                return False  # replaced since: its own journal record (or our put) covers it
        except FileNotFoundError:
            return False
        slot = self._index.get(info.key)
        if slot is not None and slot.inode == info.inode:
            self._index.move_to_end(info.key)
            return False
        self._forget(info.key)
        self._set_slot(info.key, _Slot(info.name, info.file_bytes, info.inode))
        return True

    # -- read --------------------------------------------------------------------------------------

    async def get(self, key: str) -> Variants | None:
        """The verified variants stored under ``key``; None on a miss or a corrupt file."""
        found = await self.lookup(key, None)
        assert not isinstance(found, LargeEntry)
        return found

    async def lookup(self, key: str, stream_over: int | None) -> Variants | LargeEntry | None:
        """As `get`, but a chunked entry whose bodies pass ``stream_over`` bytes is read no
        further than its verified prefix: a LargeEntry, whose chunks each reader verifies as it
        streams."""
        slot = self._index.get(key)
        if slot is not None:
            self._index.move_to_end(key)
        name = name_for(key) if slot is None else slot.name
        path = self._path(name)
        watch = self._watched.setdefault(key, _Watch())
        watch.readers += 1
        try:
            found_key, variants, file_bytes, inode = await asyncio.to_thread(
                read_entry, path, stream_over
            )
        except CorruptEntry as corrupt:
            if not watch.changed:
                self._drop_corrupt(path, corrupt.error, corrupt.inode)
                self._journal_note("R", name)
                if self._forget(key) is not None:
                    self._dropped(key)
            return None
        except (FileNotFoundError, NotADirectoryError):
            if not watch.changed and self._forget(key) is not None:
                self._dropped(key)  # evicted or purged by another process: a miss
            return None
        except OSError as err:
            log.warning("disk tier: cannot read %s: %s", name, err)  # EIO, EACCES: a miss
            return None
        finally:
            watch.readers -= 1
            if not watch.readers:
                del self._watched[key]
        if watch.changed:
            return None  # removed or replaced while we read: don't hand out what was purged
        if found_key != key:  # a file moved by hand: never serve it
            self._drop_corrupt(path, EntryFormatError("key does not match the file"), inode)
            if self._forget(key) is not None:
                self._dropped(key)
            return None
        if slot is None and self.owner:
            self._set_slot(key, _Slot(name, file_bytes, inode))  # written by another process
            self._evict_over(self.capacity_bytes)
        self._journal_note("U", name)
        return variants

    # -- write -------------------------------------------------------------------------------------

    async def put(self, key: str, variants: Variants) -> bool:
        """Store ``variants`` under ``key`` (replacing what was there); evict LRU entries over the
        budget. False, storing nothing and dropping the old entry, if the file would exceed
        ``max_object_bytes`` or the budget, or if a later put or a remove overtook this one."""
        if sum(len(v.body) for v in variants) > min(self.max_object_bytes, self.capacity_bytes):
            self.remove(key)
            return False
        if self._closed:
            return False
        return await self._land(
            key,
            lambda temp, _wanted: write_temp(temp, key, variants, self.durable),
            min(self.max_object_bytes, self.capacity_bytes),
            (OSError,),
        )

    async def put_file(
        self,
        key: str,
        stored: StoredResponse,
        source_fd: int,
        body_len: int,
        *,
        copy_from: LargeEntry | None = None,
    ) -> bool:
        """Store one variant whose body is the first ``body_len`` bytes of ``source_fd`` (a
        fill's spill file) as a chunked entry, copied a chunk
        at a time in a worker thread: a large body is never held in memory. ``stored.body`` is
        empty; its head and size are the real body's. The same rules as `put`: temp file and
        rename, refused over the limits, and a later put or a remove wins (the copy stops at
        its next chunk). Takes over ``source_fd`` (closed in every case). ``copy_from``: the
        source is that entry's file (a soft purge rewrites its metadata): its body is read
        from its offset and each chunk verified against its table as it is copied."""
        if body_len > min(self.max_object_bytes, self.capacity_bytes) or self._closed:
            os.close(source_fd)
            if not self._closed:
                self.remove(key)
            return False

        def copy(temp: Path, wanted: Callable[[], bool]) -> tuple[int, int] | None:
            # The thread closes the source: a cancelled await must not close it under a read.
            try:
                return write_temp_from_file(
                    temp, key, stored, source_fd, body_len, self.durable, wanted, copy_from
                )
            finally:
                os.close(source_fd)

        # The file holds the chunk table besides the body: only the budget bounds it.
        return await self._land(
            key, copy, self.capacity_bytes, (OSError, EntryFormatError, ValueError)
        )

    async def _land(
        self,
        key: str,
        write: Callable[[Path, Callable[[], bool]], tuple[int, int] | None],
        limit_bytes: int,
        errors: tuple[type[BaseException], ...],
    ) -> bool:
        """Write the key's entry to a temp file in a worker thread (``write(temp, wanted)``:
        ``wanted()`` is False once a later put or a remove overtook this one) and rename it
        into place. False, with nothing installed, if it was overtaken, if the write failed
        with one of ``errors`` (logged: ENOSPC or EIO is a miss, not a crash), or if the file
        exceeds ``limit_bytes`` (the old entry is then dropped too)."""
        self._tickets += 1
        ticket = self._tickets
        self._pending[key] = ticket
        name = name_for(key)
        temp = self._path(name).with_name(temp_name(name, self.pid, ticket))

        def wanted() -> bool:  # read from the writing thread: one dict lookup
            return self._pending.get(key) == ticket

        try:
            written = await asyncio.to_thread(write, temp, wanted)
        except BaseException as err:
            if wanted():
                del self._pending[key]
            unlink(temp)
            if not isinstance(err, errors):
                raise
            log.warning("disk tier: cannot write %s: %s", temp.name, err)
            return False
        if written is None or not wanted():
            unlink(temp)  # a remove or a newer put came after us: they win
            return False
        del self._pending[key]
        file_bytes, inode = written
        if file_bytes > limit_bytes:
            unlink(temp)
            self.remove(key)
            return False
        self._install(key, name, temp, file_bytes, inode)
        if self.durable:
            await asyncio.to_thread(fsync_directory, temp.parent)
        return True

    def cancel_put(self, key: str) -> None:
        """Let a put of ``key`` in flight land nowhere (its copy stops, its temp file goes)."""
        self._pending.pop(key, None)

    def drop_corrupt_large(self, entry: LargeEntry, error: EntryFormatError) -> None:
        """A chunk of ``entry`` failed verification while it streamed: delete that file (not a
        newer one renamed over it), count it, forget the key."""
        if self._index.get(entry.key) is not None and self._index[entry.key].inode not in (
            0,
            entry.inode,
        ):
            return  # the index already holds a newer file of this key
        self._drop_corrupt(entry.path, error, entry.inode)
        self._journal_note("R", entry.name)
        if self._forget(entry.key) is not None:
            self._dropped(entry.key)

    def remove(self, key: str) -> bool:
        """Delete ``key``'s file now (whoever wrote it) and cancel any put of it still in
        flight in this process."""
        self._pending.pop(key, None)
        self._touch(key)
        slot = self._forget(key)
        # By path even if not indexed: another process may have written it (one unlink).
        name = name_for(key) if slot is None else slot.name
        removed = unlink(self._path(name))
        if removed:
            self._journal_note("R", name)
        return removed or slot is not None

    # -- internals ---------------------------------------------------------------------------------

    def _install(self, key: str, name: str, temp: Path, file_bytes: int, inode: int) -> None:
        os.replace(temp, self._path(name))
        self._touch(key)
        if not self.owner:
            self._journal_note("P", name)
            return
        self._forget(key)
        self._set_slot(key, _Slot(name, file_bytes, inode))
        self._evict_over(self.capacity_bytes)

    def _set_slot(self, key: str, slot: _Slot) -> None:
        self._index[key] = slot
        self._names[slot.name] = key
        self.bytes_used += slot.file_bytes

    def _evict_over(self, budget_bytes: int) -> None:
        lru = ((key, slot.file_bytes) for key, slot in self._index.items())
        for key in eviction_victims(lru, self.bytes_used, budget_bytes):
            slot = self._forget(key)
            if slot is None:
                continue
            self.evictions += 1
            self._touch(key)
            unlink(self._path(slot.name))
            self._dropped(key)

    def _dropped(self, key: str) -> None:
        if self.on_drop is not None:
            self.on_drop(key)

    def _touch(self, key: str) -> None:
        watch = self._watched.get(key)
        if watch is not None:
            watch.changed = True

    def _forget(self, key: str) -> _Slot | None:
        slot = self._index.pop(key, None)
        if slot is not None:
            self.bytes_used -= slot.file_bytes
            self._names.pop(slot.name, None)
        return slot

    def _journal_note(self, op: JournalOp, name: str) -> None:
        if self._journal is not None:
            self._journal.append(op, name)
        elif self._changed_meanwhile is not None and op != "U":
            self._changed_meanwhile.append(name)

    def _drop_corrupt(self, path: Path, err: EntryFormatError, inode: int | None = None) -> None:
        log.warning("disk tier: dropping corrupt entry %s: %s", path.name, err)
        self.corrupt_dropped += 1
        if inode is None:
            unlink(path)
        else:
            unlink_if_inode(path, inode)

    def _path(self, name: str) -> Path:
        return self.directory / name[0] / name[1:3] / name
