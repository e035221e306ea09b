"""What lets several processes share one disk-tier folder (`cachet proxy --workers N`), the pure
decisions: whose temp file is whose, the journal lines through which workers tell the folder's
owner what they wrote and read, and which entries the owner evicts. No I/O here
(docs/design/disk-tier.md, "Sharing one folder").

- **Temp files** are named ``<h>.tmp-<pid>-<n>``: unique per process, so no two writers ever
  touch the same temp file. A process cleaning up at start deletes only the temp files nobody
  can still be writing: those of a dead process, those carrying its own pid (a previous process
  that had this pid: the new one has written nothing yet), and any older than
  ``TEMP_MAX_AGE_S`` (a pid reused by an unrelated live process must not keep one forever).
- **Journals**: each worker that does not own the folder appends one line per file it renamed
  into place (``P``), read from the folder (``U``, a use: eviction is by last use across the
  folder) or removed (``R``) to ``journal/<pid>-<seq>.log``. The owner tails every journal, so
  its index (hence the byte budget and the LRU order) covers the whole folder.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

TEMP_MARK = ".tmp-"
TEMP_MAX_AGE_S = 3600.0  # no put takes this long; a temp file this old is nobody's
JOURNAL_FOLDER = "journal"
JOURNAL_ROTATE_BYTES = 1024 * 1024  # a live worker starts a new journal file past this size
OWNER_LOCK_NAME = "owner.lock"  # in JOURNAL_FOLDER: the folder itself holds only entries

JournalOp = Literal["P", "U", "R"]
_OPS: frozenset[str] = frozenset({"P", "U", "R"})
_TEMP_PID = re.compile(r"[0-9a-f]{64}\.tmp-([0-9]+)-[0-9]+")
_JOURNAL_NAME = re.compile(r"([0-9]+)-([0-9]+)\.log")
_ENTRY_NAME = re.compile(r"[0-9a-f]{64}")


def temp_name(entry_name: str, pid: int, ticket: int) -> str:
    """The temp file a put by process ``pid`` writes before renaming it over ``entry_name``."""
    return f"{entry_name}{TEMP_MARK}{pid}-{ticket}"


def temp_owner_pid(file_name: str) -> int | None:
    """The pid in an entry temp file's name, or None if the name is not one we write."""
    match = _TEMP_PID.fullmatch(file_name)
    return int(match.group(1)) if match else None


def temp_is_abandoned(
    file_name: str, age_s: float, own_pid: int, pid_alive: Callable[[int], bool]
) -> bool:
    """May a process starting on the folder delete this temp file? Only if no live process can
    still be writing it (docstring above). ``pid_alive`` is asked only when it matters."""
    if age_s >= TEMP_MAX_AGE_S:
        return True
    pid = temp_owner_pid(file_name)
    if pid is None or pid <= 0 or pid == own_pid:
        return True  # not a name a writer uses, or a previous process that had our pid
    return not pid_alive(pid)


# -- journals --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JournalFile:
    pid: int
    seq: int

    @property
    def file_name(self) -> str:
        return f"{self.pid}-{self.seq}.log"


def parse_journal_name(file_name: str) -> JournalFile | None:
    match = _JOURNAL_NAME.fullmatch(file_name)
    return JournalFile(int(match.group(1)), int(match.group(2))) if match else None


def journal_line(op: JournalOp, entry_name: str) -> bytes:
    """One record: ``<op> <entry file name>\\n`` (67 bytes: one small O_APPEND write)."""
    return f"{op} {entry_name}\n".encode("ascii")


def parse_journal(data: bytes) -> tuple[list[tuple[JournalOp, str]], int]:
    """The records of the complete lines in ``data`` and how many bytes they span. A last line
    without its newline is not consumed (the writer is mid-write, or died mid-write); a complete
    line that is not a record (a torn write after a crash) is skipped."""
    end = data.rfind(b"\n") + 1
    records: list[tuple[JournalOp, str]] = []
    for raw in data[:end].split(b"\n"):
        parts = raw.split(b" ")
        if len(parts) != 2:
            continue
        op, name = parts[0].decode("ascii", "replace"), parts[1].decode("ascii", "replace")
        if op in _OPS and _ENTRY_NAME.fullmatch(name):
            records.append((op, name))  # type: ignore[arg-type]  # op checked against _OPS
    return records, end


def finished_journals(
    files: Iterable[JournalFile], pid_alive: Callable[[int], bool]
) -> set[JournalFile]:
    """The journal files no process will append to again: a dead writer's, and a live writer's
    older files (it writes only to its newest). The owner deletes them once read to the end."""
    newest: dict[int, int] = {}
    listed = list(files)
    for item in listed:
        newest[item.pid] = max(item.seq, newest.get(item.pid, item.seq))
    alive = {pid: pid_alive(pid) for pid in newest}
    return {item for item in listed if not alive[item.pid] or item.seq < newest[item.pid]}


# -- the byte budget -------------------------------------------------------------------------------


def eviction_victims(
    lru: Iterable[tuple[str, int]], used_bytes: int, budget_bytes: int
) -> list[str]:
    """The keys to evict, least recently used first, until ``used_bytes`` fits the budget:
    ``lru`` is (key, file bytes) from the least recently used on."""
    victims: list[str] = []
    for key, file_bytes in lru:
        if used_bytes <= budget_bytes:
            break
        victims.append(key)
        used_bytes -= file_bytes
    return victims
