"""Reading a disk-tier folder when a process opens it (proxy.cache.tiers.disk): the listing that
clears abandoned temp files, the index snapshot a clean ``close`` left, and the header read of
each entry file the snapshot does not vouch for. Runs in one thread (the header reads on a few
more); it changes no index, it returns what it found (docs/design/disk-tier.md, "Opening")."""

from __future__ import annotations

import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from proxy.cache.tiers.disk_format import EntryFormatError, decode_snapshot, encode_snapshot
from proxy.cache.tiers.disk_io import (
    Found,
    file_age_s,
    fsync_directory,
    index_info,
    subdirs,
    unlink,
)
from proxy.cache.tiers.disk_journal import pid_alive
from proxy.cache.tiers.disk_sharing import TEMP_MARK, temp_is_abandoned

log = logging.getLogger("proxy.cache.tiers.disk")

SNAPSHOT_NAME = "index.snapshot"
SCAN_THREADS = 8  # overlap device reads on a cold start; the GIL bounds a warm scan anyway
_ENTRY_NAME = re.compile(r"[0-9a-f]{64}")

SnapshotEntry = tuple[str, str, int, int]  # key, file name, file bytes, inode


class FolderScan:
    """One opening of ``directory`` by process ``pid``, with what it cleared and dropped."""

    def __init__(self, directory: Path, pid: int) -> None:
        self.directory = directory
        self.pid = pid
        self.temp_files_removed = 0
        self.corrupt_dropped = 0
        self.loaded_from_snapshot = False

    def index(self) -> list[Found]:
        """Every intact entry file, least recently used first: from the snapshot (taken, so a
        later crash cannot find it again) for the files it lists unchanged (same inode), from
        each file's header for the others, ordered by write time."""
        snapshot = self._take_snapshot()
        paths = self.entry_files()
        self.loaded_from_snapshot = snapshot is not None
        known: list[Found] = []
        if snapshot is not None:
            present = dict(paths)
            known = [
                Found(k, n, size, 0, inode)
                for k, n, size, inode in snapshot
                if n in present and (inode == 0 or present[n] == inode)
            ]
            listed = {found.name for found in known}
            paths = [(name, ino) for name, ino in paths if name not in listed]
        found = self._read_headers([self._path(name) for name, _ in paths])
        found.sort(key=_written_at)
        return [*known, *found]

    def entry_files(self) -> list[tuple[str, int]]:
        """(name, inode) of every entry file; deletes the temp files nobody can be writing."""
        found: list[tuple[str, int]] = []
        now = time.time()
        for top in subdirs(str(self.directory), 1):
            for sub in subdirs(top, 2):
                with os.scandir(sub) as it:
                    for entry in it:
                        name = entry.name
                        if TEMP_MARK in name:
                            self._clear_temp(entry.path, name, now)
                        elif _ENTRY_NAME.fullmatch(name):
                            found.append((name, entry.inode()))
        return found

    def _clear_temp(self, path: str, name: str, now: float) -> None:
        abandoned = temp_is_abandoned(name, file_age_s(path, now), self.pid, pid_alive)
        if abandoned and unlink(Path(path)):
            self.temp_files_removed += 1

    def _take_snapshot(self) -> list[SnapshotEntry] | None:
        path = self.directory / SNAPSHOT_NAME
        for leftover in self.directory.glob(f"{SNAPSHOT_NAME}{TEMP_MARK}*"):
            unlink(leftover)  # only the owner writes snapshots, and the opener is the owner
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        unlink(path)
        fsync_directory(self.directory)  # a later crash must not find this snapshot again
        try:
            return decode_snapshot(data)
        except EntryFormatError as err:
            log.warning("disk tier: ignoring a bad index snapshot: %s", err)
            return None

    def _read_headers(self, paths: list[Path]) -> list[Found]:
        """Index info of each file, read by a few threads (a cold start waits on the device)."""
        found: list[Found] = []
        with ThreadPoolExecutor(SCAN_THREADS, thread_name_prefix="disk-scan") as pool:
            infos = pool.map(index_info, map(str, paths), chunksize=256)
            for path, info in zip(paths, infos, strict=True):
                if isinstance(info, EntryFormatError):
                    log.warning("disk tier: dropping corrupt entry %s: %s", path.name, info)
                    self.corrupt_dropped += 1
                    unlink(path)
                elif info is not None:
                    found.append(info)
        return found

    def _path(self, name: str) -> Path:
        return self.directory / name[0] / name[1:3] / name


def write_snapshot(directory: Path, pid: int, entries: list[SnapshotEntry]) -> None:
    """The index snapshot of a clean close: temp, fsync, rename, directory fsync."""
    temp = directory / f"{SNAPSHOT_NAME}{TEMP_MARK}{pid}"
    with open(temp, "wb") as f:
        f.write(encode_snapshot(entries))
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, directory / SNAPSHOT_NAME)
    fsync_directory(directory)


def _written_at(found: Found) -> int:
    return found.mtime_ns
