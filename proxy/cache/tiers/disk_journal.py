"""The journals of a shared disk-tier folder, on disk: a worker that does not own the folder
appends what it wrote, read and removed (`JournalWriter`); the owner tails every worker's
journal (`JournalReader`) so its index covers the whole folder. Records and the decisions about
them are in proxy.cache.tiers.disk_sharing; docs/design/disk-tier.md, "Sharing one folder".

Thread-side: `JournalReader.start` and `poll` run in a worker thread; `JournalWriter.append` is a
single small O_APPEND write on the event loop (as an unlink is).
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from proxy.cache.tiers.disk_sharing import (
    JOURNAL_FOLDER,
    JOURNAL_ROTATE_BYTES,
    OWNER_LOCK_NAME,
    JournalFile,
    JournalOp,
    finished_journals,
    journal_line,
    parse_journal,
    parse_journal_name,
)

log = logging.getLogger(__name__)

# folder -> (lock fd, holder): a process owns a folder once, whatever number of DiskTier objects
# it opens on it (the newest one holds the role).
_OWNED_FOLDERS: dict[str, tuple[int, object]] = {}


def take_owner_lock(folder: Path, holder: object) -> bool:
    """Take the owner role of a disk folder for ``holder``: an exclusive, non-blocking flock on
    ``journal/owner.lock``, which the kernel releases when the process dies (SIGKILL too).
    False if another process holds it."""
    resolved = str(Path(folder).resolve())
    held = _OWNED_FOLDERS.get(resolved)
    if held is not None:
        _OWNED_FOLDERS[resolved] = (held[0], holder)
        return True
    journals = Path(folder) / JOURNAL_FOLDER
    journals.mkdir(exist_ok=True)
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
    fd = os.open(journals / OWNER_LOCK_NAME, flags, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    _OWNED_FOLDERS[resolved] = (fd, holder)
    return True


def release_owner_lock(folder: Path, holder: object) -> None:
    """Give the role up (if ``holder`` still holds it): the next process to try may own it."""
    resolved = str(Path(folder).resolve())
    held = _OWNED_FOLDERS.get(resolved)
    if held is not None and held[1] is holder:
        del _OWNED_FOLDERS[resolved]
        os.close(held[0])


def pid_alive(pid: int) -> bool:
    """Is there a process with this pid (ours to signal or not)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return True


class JournalWriter:
    """This process's journal: ``journal/<pid>-<seq>.log``, a new file past the rotation size."""

    def __init__(self, folder: Path, pid: int | None = None) -> None:
        self.folder = Path(folder) / JOURNAL_FOLDER
        self.pid = os.getpid() if pid is None else pid
        self._seq = 0
        self._fd: int | None = None
        self._bytes = 0
        self._failed = False

    def open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for path in self.folder.iterdir():
            found = parse_journal_name(path.name)
            if found is not None and found.pid == self.pid:
                self._seq = max(self._seq, found.seq + 1)  # a previous process with our pid
        self._open_next()

    def append(self, op: JournalOp, entry_name: str) -> None:
        if self._fd is None:
            return
        line = journal_line(op, entry_name)
        try:
            os.write(self._fd, line)
        except OSError as err:  # ENOSPC: the owner learns of the file at its next scan
            if not self._failed:
                log.warning("disk tier: cannot append to the journal: %s", err)
            self._failed = True
            return
        self._bytes += len(line)
        if self._bytes >= JOURNAL_ROTATE_BYTES:
            self._seq += 1
            self._open_next()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open_next(self) -> None:
        path = self.folder / JournalFile(self.pid, self._seq).file_name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self.close()
        self._fd = fd
        self._bytes = os.fstat(fd).st_size


class JournalReader:
    """The owner's view of every other process's journal: what is new since the last poll."""

    def __init__(self, folder: Path, own_pid: int | None = None) -> None:
        self.folder = Path(folder) / JOURNAL_FOLDER
        self.own_pid = os.getpid() if own_pid is None else own_pid
        self._offsets: dict[str, int] = {}

    def start(self) -> None:
        """Before the owner scans the folder: journals of dead writers are dropped (the scan sees
        their files), live ones are followed from their current end."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for item in self._list(include_own=True):
            if item.pid == self.own_pid:  # a previous process that had our pid: dead
                _unlink(self.folder / item.file_name)
        listed = self._list()
        for item in finished_journals(listed, pid_alive):
            _unlink(self.folder / item.file_name)
        listed = self._list()
        self._offsets = {}
        for item in listed:
            try:
                self._offsets[item.file_name] = (self.folder / item.file_name).stat().st_size
            except FileNotFoundError:
                continue

    def poll(self) -> list[tuple[JournalOp, str]]:
        """The records appended since the last poll, oldest file first; finished journals (a
        dead writer's, a live writer's older files) are deleted once read."""
        listed = sorted(self._list(), key=lambda item: (item.pid, item.seq))
        finished = finished_journals(listed, pid_alive)
        records: list[tuple[JournalOp, str]] = []
        offsets: dict[str, int] = {}
        for item in listed:
            path = self.folder / item.file_name
            offset = self._offsets.get(item.file_name, 0)
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except FileNotFoundError:
                continue
            found, consumed = parse_journal(data)
            records += found
            if item in finished:
                _unlink(path)  # a torn last line of a dead writer is never completed
            else:
                offsets[item.file_name] = offset + consumed
        self._offsets = offsets
        return records

    def _list(self, *, include_own: bool = False) -> list[JournalFile]:
        found: list[JournalFile] = []
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return found
        for name in names:
            item = parse_journal_name(name)
            if item is not None and (include_own or item.pid != self.own_pid):
                found.append(item)
        return found


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
