"""The proxy's disk tier: one checksummed file per cache key, persistent across restarts.

Files live under ``directory/<h[0]>/<h[1:3]>/<h>`` where ``h`` is the SHA-256 hex of the key (two
fan-out levels, like nginx ``levels=1:2``), in the format of :mod:`proxy.cache.tiers.disk_format`.

Durability contract (see docs/design/disk-tier.md):

- A put writes a temp file ``<h>.tmp-<pid>-<n>`` in the entry's own directory, then renames it over
  ``<h>``. The rename is atomic, so the name ``<h>`` always holds a whole file: the old entry or the
  new one. After ``put`` returns True, a SIGKILL of this process loses nothing (the kernel holds
  the data). A power loss may lose recent entries or leave torn ones unless ``durable=True``
  (fsync of file and directory); either way a torn file fails its checksum and is dropped, never
  served.
- ``open`` deletes temp files (the leftovers of a crash) and files whose header, size or name
  disagree; ``get`` verifies the whole file's checksum before returning it and deletes a corrupt
  file (counted in ``corrupt_dropped``).

Concurrency: bytes are written and read in worker threads (``asyncio.to_thread``); every change
to the directory's names (rename, unlink) and to the index happens on the event loop thread, so a
``remove`` can never be undone by a put that was in flight: that put finds its ticket cancelled
and deletes its temp file instead of renaming it. One process owns a directory (``--workers``
sharing is not handled yet).

Eviction is LRU over an in-memory index (key -> file name, size), touched by ``get``; after a
restart the order starts from the files' modification times (the time each was written).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from proxy.cache.entry import StoredResponse
from proxy.cache.tiers.disk_format import (
    DIGEST_BYTES,
    HEADER_BYTES,
    EntryFormatError,
    SnapshotEntry,
    build_variants,
    decode_snapshot,
    encode_entry,
    encode_snapshot,
    parse_body_lengths,
    parse_header,
    parse_key,
    verify_entry_digest,
)

log = logging.getLogger(__name__)

Variants = tuple[StoredResponse, ...]
TEMP_MARK = ".tmp-"
SNAPSHOT_NAME = "index.snapshot"
SCAN_READ_BYTES = 4096  # one read per file at open: the header and, nearly always, the key
SCAN_THREADS = 8  # overlap device reads on a cold start; the GIL bounds a warm scan anyway
_ENTRY_NAME = re.compile(r"[0-9a-f]{64}")
_SUBDIR_NAME = re.compile(r"[0-9a-f]{1,2}")


@dataclass(slots=True)
class _Slot:
    name: str  # sha256 hex of the key
    file_bytes: int


@dataclass(frozen=True, slots=True)
class _Found:
    key: str
    name: str
    file_bytes: int
    mtime_ns: int


def name_for(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class DiskTier:
    """A byte-budgeted, crash-safe, LRU-evicted store of variants by cache key."""

    def __init__(
        self, directory: Path, capacity_bytes: int, max_object_bytes: int, *, durable: bool = False
    ) -> None:
        if capacity_bytes <= 0 or max_object_bytes <= 0:
            raise ValueError("capacity_bytes and max_object_bytes must be positive")
        self.directory = Path(directory)
        self.capacity_bytes = capacity_bytes
        self.max_object_bytes = max_object_bytes
        self.durable = durable
        self._index: OrderedDict[str, _Slot] = OrderedDict()  # least recently used first
        self._pending: dict[str, int] = {}  # key -> ticket of the put allowed to rename
        self._tickets = 0
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
        """A snapshot of the stored keys (callers may remove while iterating)."""
        return list(self._index)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def is_writing(self, key: str) -> bool:
        """Is a put of ``key`` in flight (and still allowed to land)?"""
        return key in self._pending

    # -- open ------------------------------------------------------------------------------------

    def open(self) -> None:
        """Rebuild the index from the directory: one small read per entry file, no bodies.

        After a clean ``close`` the index snapshot replaces those reads for the files it names
        (it is deleted as it is loaded, so it can only describe the directory ``close`` left);
        the directory is still listed, so temp files go and files the snapshot lacks are read.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        self._index.clear()
        self._closed = False
        snapshot = self._take_snapshot()
        paths = self._entry_files()
        self.loaded_from_snapshot = snapshot is not None
        known: list[_Found] = []
        if snapshot is not None:
            present = {path[-64:] for path in paths}
            known = [_Found(k, n, size, 0) for k, n, size in snapshot if n in present]
            listed = {found.name for found in known}
            paths = [path for path in paths if path[-64:] not in listed]
        found = self._scan_files(paths)
        found.sort(key=_written_at)
        index = self._index
        for item in (*known, *found):
            index[item.key] = _Slot(item.name, item.file_bytes)
        self.bytes_used = sum(slot.file_bytes for slot in index.values())
        self._evict_over(self.capacity_bytes)

    def close(self) -> None:
        """Cancel puts still in flight and write the index snapshot (temp, fsync, rename).

        Call once the event loop no longer needs the tier; puts after ``close`` return False.
        """
        self._closed = True
        self._pending.clear()
        entries = [(key, slot.name, slot.file_bytes) for key, slot in self._index.items()]
        temp = self.directory / f"{SNAPSHOT_NAME}{TEMP_MARK}{os.getpid()}"
        with open(temp, "wb") as f:
            f.write(encode_snapshot(entries))
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, self.directory / SNAPSHOT_NAME)
        _fsync_directory(self.directory)

    def _take_snapshot(self) -> list[SnapshotEntry] | None:
        path = self.directory / SNAPSHOT_NAME
        for leftover in self.directory.glob(f"{SNAPSHOT_NAME}{TEMP_MARK}*"):
            _unlink(leftover)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        _unlink(path)
        _fsync_directory(self.directory)  # a later crash must not find this snapshot again
        try:
            return decode_snapshot(data)
        except EntryFormatError as err:
            log.warning("disk tier: ignoring a bad index snapshot: %s", err)
            return None

    def _entry_files(self) -> list[str]:
        paths: list[str] = []
        for top in _subdirs(str(self.directory), 1):
            for sub in _subdirs(top, 2):
                with os.scandir(sub) as it:
                    for entry in it:
                        if TEMP_MARK in entry.name:
                            _unlink(Path(entry.path))
                            self.temp_files_removed += 1
                        elif _ENTRY_NAME.fullmatch(entry.name):
                            paths.append(entry.path)
        return paths

    def _scan_files(self, paths: list[str]) -> list[_Found]:
        """Index info of each file, read by a few threads (a cold start waits on the device)."""
        found: list[_Found] = []
        with ThreadPoolExecutor(SCAN_THREADS, thread_name_prefix="disk-scan") as pool:
            infos = pool.map(_index_info, paths, chunksize=256)
            for path, info in zip(paths, infos, strict=True):
                if isinstance(info, EntryFormatError):
                    self._drop_corrupt(Path(path), info)
                elif info is not None:
                    found.append(info)
        return found

    # -- read ------------------------------------------------------------------------------------

    async def get(self, key: str) -> Variants | None:
        """The verified variants stored under ``key``; None on a miss or a corrupt file."""
        slot = self._index.get(key)
        if slot is None:
            return None
        self._index.move_to_end(key)
        path = self._path(slot.name)
        try:
            found_key, variants = await asyncio.to_thread(_read_entry, path)
            if found_key != key:
                raise EntryFormatError("key does not match the file")
        except EntryFormatError as err:
            if self._index.get(key) is slot:
                self._forget(key)
                self._drop_corrupt(path, err)
                self._dropped(key)
            return None
        except FileNotFoundError:
            if self._index.get(key) is slot:
                self._forget(key)
                self._dropped(key)
            return None
        except OSError as err:
            log.warning("disk tier: cannot read %s: %s", slot.name, err)  # EIO, EACCES: a miss
            return None
        if self._index.get(key) is not slot:
            return None  # removed or replaced while we read: don't hand out what was purged
        return variants

    # -- write -----------------------------------------------------------------------------------

    async def put(self, key: str, variants: Variants) -> bool:
        """Store ``variants`` under ``key`` (replacing what was there); evict LRU entries over the
        budget. False, storing nothing and dropping the old entry, if the file would exceed
        ``max_object_bytes`` or the budget, or if a later put or a remove overtook this one."""
        if sum(len(v.body) for v in variants) > min(self.max_object_bytes, self.capacity_bytes):
            self.remove(key)
            return False
        if self._closed:
            return False
        self._tickets += 1
        ticket = self._tickets
        self._pending[key] = ticket
        name = name_for(key)
        temp = self._path(name).with_name(f"{name}{TEMP_MARK}{os.getpid()}-{ticket}")
        try:
            file_bytes = await asyncio.to_thread(_write_temp, temp, key, variants, self.durable)
        except BaseException as err:
            if self._pending.get(key) == ticket:
                del self._pending[key]
            _unlink(temp)
            if not isinstance(err, OSError):
                raise
            log.warning("disk tier: cannot write %s: %s", temp.name, err)  # ENOSPC, EIO: a miss
            return False
        if self._pending.get(key) != ticket:
            _unlink(temp)  # a remove or a newer put came after us: they win
            return False
        del self._pending[key]
        if file_bytes > min(self.max_object_bytes, self.capacity_bytes):
            _unlink(temp)
            self.remove(key)
            return False
        self._install(key, name, temp, file_bytes)
        if self.durable:
            await asyncio.to_thread(_fsync_directory, temp.parent)
        return True

    def remove(self, key: str) -> bool:
        """Delete ``key``'s file now and cancel any put of it still in flight."""
        self._pending.pop(key, None)
        slot = self._forget(key)
        if slot is None:
            return False
        _unlink(self._path(slot.name))
        return True

    # -- internals -------------------------------------------------------------------------------

    def _install(self, key: str, name: str, temp: Path, file_bytes: int) -> None:
        os.replace(temp, self._path(name))
        self._forget(key)
        self._index[key] = _Slot(name, file_bytes)
        self.bytes_used += file_bytes
        self._evict_over(self.capacity_bytes)

    def _evict_over(self, budget_bytes: int) -> None:
        while self.bytes_used > budget_bytes and self._index:
            key, slot = self._index.popitem(last=False)
            self.bytes_used -= slot.file_bytes
            self.evictions += 1
            _unlink(self._path(slot.name))
            self._dropped(key)

    def _dropped(self, key: str) -> None:
        if self.on_drop is not None:
            self.on_drop(key)

    def _forget(self, key: str) -> _Slot | None:
        slot = self._index.pop(key, None)
        if slot is not None:
            self.bytes_used -= slot.file_bytes
        return slot

    def _drop_corrupt(self, path: Path, err: EntryFormatError) -> None:
        log.warning("disk tier: dropping corrupt entry %s: %s", path.name, err)
        self.corrupt_dropped += 1
        _unlink(path)

    def _path(self, name: str) -> Path:
        return self.directory / name[0] / name[1:3] / name


# -- thread-side I/O ------------------------------------------------------------------------------


def _index_info(path: str) -> _Found | EntryFormatError | None:
    """Index one entry file from its first bytes: header, exact size, key (None: file gone)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        stat = os.fstat(fd)
        prefix = os.read(fd, SCAN_READ_BYTES)
        header = parse_header(prefix)
        if header.file_bytes != stat.st_size:
            return EntryFormatError("size differs from the header")
        if len(prefix) < HEADER_BYTES + header.key_len:
            prefix += os.pread(fd, HEADER_BYTES + header.key_len - len(prefix), len(prefix))
        key = parse_key(header, prefix)
    except EntryFormatError as err:
        return err
    finally:
        os.close(fd)
    name = path[-64:]
    if name_for(key) != name:
        return EntryFormatError("key does not match the file name")
    return _Found(key, name, header.file_bytes, stat.st_mtime_ns)


def _write_temp(temp: Path, key: str, variants: Variants, durable: bool) -> int:
    encoded = encode_entry(key, variants)
    temp.parent.mkdir(parents=True, exist_ok=True)
    with open(temp, "xb") as f:
        for chunk in encoded.chunks:
            f.write(chunk)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    return encoded.file_bytes


def _read_entry(path: Path) -> tuple[str, Variants]:
    """Read and verify one entry file; each body is read once, straight into its own bytes."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(HEADER_BYTES)
        header = parse_header(head)
        if header.file_bytes != size:
            raise EntryFormatError("size differs from the header")
        prefix = head + _read_exact(f, header.prefix_bytes - HEADER_BYTES)
        bodies = [_read_exact(f, n) for n in parse_body_lengths(header, prefix)]
        digest = _read_exact(f, DIGEST_BYTES)
    verify_entry_digest((prefix, *bodies), digest)
    return parse_key(header, prefix), build_variants(header, prefix, bodies)


def _read_exact(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise EntryFormatError("file is shorter than its header says")
    return data


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _subdirs(parent: str, name_len: int) -> list[str]:
    with os.scandir(parent) as it:
        return [
            e.path
            for e in it
            if len(e.name) == name_len
            and _SUBDIR_NAME.fullmatch(e.name)
            and e.is_dir(follow_symlinks=False)
        ]


def _written_at(found: _Found) -> int:
    return found.mtime_ns


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except (FileNotFoundError, NotADirectoryError):
        pass
