"""The edge's append-only record spool (segment files of checksummed frames), and its writers.

Durability contract (see docs/design/spool.md): a record is in the operating system (the page
cache) before its response completes, so it survives SIGKILL of the serving process at any
instant. Not an fsync: a machine crash or power loss can lose records not yet sealed (about
``max_interval_ms`` of traffic); sealed ones are in their fsynced batch file, so spool bytes
are never fsynced, and a writer never appends to a segment an earlier run wrote
(``first_segment_after_recovery``).

Two writers keep it:

- ``MappedSpoolWriter`` (the default wherever ``proxy.records._spoolmap`` is built and the file
  system can preallocate): each segment is preallocated (posix_fallocate) and mapped shared;
  ``append`` frames the record straight into the mapping, and a store into a shared mapping is in
  the page cache the moment it is made. A record is in the spool when ``append`` returns, so the
  response may go out at once (``needs_flush`` is False). One frame per record. Segments are
  truncated to their written end when the writer moves on or closes; a killed writer leaves a
  zero-filled tail, which readers take as "not written" and its next ``open`` truncates.
- ``SpoolWriter``: ``append`` only buffers; ``flush`` MUST be called before the response bytes of
  the appended records go to the client, and issues ONE ``os.write`` of every frame appended since
  the last flush (once ``write(2)`` returns the bytes are in the page cache). The serving process
  holds responses back until then (proxy/cork.py). Used where the mapped writer cannot be.

When the spool holds ``max_bytes``, ``append`` refuses records. With ``full_policy`` "drop" the
record is dropped and counted in ``dropped`` (serve, but lose billing); with "reject" it is also
counted, and the caller answers 503 instead of serving unrecorded (``full``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from proxy.records.segments import encode_chunks, find_next_frame, scan_frames

mapped_segment_type: type[MappedSegment] | None
try:
    from proxy.records._spoolmap import MappedSegment

    mapped_segment_type = MappedSegment
except ImportError:  # built without a C compiler: SpoolWriter serves
    mapped_segment_type = None

log = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".seg"
FULL_POLICIES = ("drop", "reject")
MAPPED_VARIABLE = "CACHET_SPOOL_MAPPED"  # "0": the write(2) writer even where mapping works
USAGE_RECOUNT_S = 0.05  # a full spool recounts its folder at most this often
ALLOCATE_RETRY_S = 1.0  # after a segment could not be preallocated (disk full)
ROOM_FOR_A_RECORD = 2048  # a frame of the largest record and its counters line fits
SEGMENTS_PER_SPOOL = 8  # segments are at most max_bytes / 8, so a full spool can drain
MIN_SEGMENT_BYTES = 4096


def segment_size(segment_bytes: int, max_bytes: int) -> int:
    """The segment size a spool of ``max_bytes`` uses: the sealer deletes only segments the
    writer has left, so one segment as large as the spool would keep it full for good."""
    return min(segment_bytes, max(MIN_SEGMENT_BYTES, max_bytes // SEGMENTS_PER_SPOOL))


def segment_name(number: int) -> str:
    return f"{number:016d}{SEGMENT_SUFFIX}"


def list_segments(directory: Path) -> list[int]:
    """Numbers of the segment files in ``directory``, ascending."""
    numbers = []
    for path in directory.glob("*" + SEGMENT_SUFFIX):
        stem = path.name[: -len(SEGMENT_SUFFIX)]
        if len(stem) == 16 and stem.isdigit():
            numbers.append(int(stem))
    return sorted(numbers)


def quarantine_bytes(directory: Path, name: str, data: bytes) -> Path:
    """Write ``data`` aside under ``directory/quarantine/`` (fsynced) and return its path."""
    folder = directory / "quarantine"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


LOCK_NAME = "writer.lock"


class SpoolInUse(RuntimeError):
    """Another process writes this spool folder."""


def lock_spool(directory: Path) -> int:
    """Hold the folder's writer lock (flock, released when the process dies, even by SIGKILL):
    a second writer's recovery would truncate the live one's segment under it, losing records
    already answered (and, mapped, crashing it with SIGBUS). Returns the lock's fd."""
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SpoolInUse(f"spool {directory} is in use by another process") from None
    return fd


def recover_last_segment(directory: Path, number: int) -> None:
    """Truncate a torn or corrupt tail of the last segment (kept aside in quarantine/), and a
    mapped writer's zero-filled tail (bytes it never wrote: nothing is set aside). A corrupt
    region followed by valid frames is left for the sealer, which skips and quarantines it."""
    path = directory / segment_name(number)
    data = path.read_bytes()
    scan = scan_frames(data)
    if scan.end == len(data):
        return
    written = len(data.rstrip(b"\0"))  # a frame never ends in a zero byte
    if written <= scan.end:
        os.truncate(path, scan.end)
        return
    if find_next_frame(data, scan.end) >= 0:
        log.warning("spool %s: corrupt frame at offset %d, left for the sealer", path, scan.end)
        return
    aside = quarantine_bytes(directory, f"{path.stem}-{scan.end}.tail", data[scan.end : written])
    os.truncate(path, scan.end)
    log.warning(
        "spool %s: torn or corrupt tail of %d bytes at offset %d moved to %s",
        path, written - scan.end, scan.end, aside,
    )  # fmt: skip


def first_segment_after_recovery(directory: Path) -> int:
    """Recover the folder's last segment (``recover_last_segment``) and return the number of
    the segment a writer starting now appends to: always a new one after it.

    Never the recovered segment itself: the sealer does not fsync the bytes it reads
    (docs/design/spool.md, "Durability"), so after a machine crash a segment may have lost
    frames that a durable batch already covers, and appending after what is left would put new
    records at positions the sealer counts as sealed. The sealer makes each segment's name
    durable before a batch names it, so the last name on disk is never below a sealed one."""
    numbers = list_segments(directory)
    if not numbers:
        return 0
    recover_last_segment(directory, numbers[-1])
    return numbers[-1] + 1


def segments_usage(directory: Path, leave_out: int | None = None) -> tuple[int, int]:
    """(bytes, count) of the folder's segments; ``leave_out``'s bytes not counted (a mapped
    writer counts its current segment by its written end). The sealer deletes consumed
    segments behind the writer's back, so this is recounted, not kept."""
    total = 0
    numbers = list_segments(directory)
    for number in numbers:
        if number == leave_out:
            continue
        try:
            total += (directory / segment_name(number)).stat().st_size
        except FileNotFoundError:
            continue
    return total, len(numbers)


class _SpoolFolder:
    """What both writers share: the folder, its bounds, its full policy and its lock. Each
    writer sets up its own state in ``_start``."""

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = 64 << 20,
        max_bytes: int = 1 << 30,
        full_policy: str = "drop",
    ) -> None:
        if full_policy not in FULL_POLICIES:
            raise ValueError(f"full_policy must be one of {FULL_POLICIES}")
        self.directory = Path(directory)
        self.segment_bytes = segment_size(segment_bytes, max_bytes)
        self.max_bytes = max_bytes
        self.full_policy = full_policy
        self.segments = 0
        self._lock = -1
        self._start()

    def _start(self) -> None:
        raise NotImplementedError

    def _take_lock(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = lock_spool(self.directory)

    def _release_lock(self) -> None:
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1


class SpoolWriter(_SpoolFolder):
    """Buffers records in memory and writes them to the current segment on ``flush``."""

    needs_flush = True  # responses wait for flush(): proxy/cork.py

    def _start(self) -> None:
        self.bytes_used = 0
        self.dropped = 0
        self.emitted = 0
        self.sampled_out = 0
        self._frames: list[bytes] = []
        self._pending_bytes = 0
        # Answers since the last frame written: records, hits left out by sampling, records
        # refused (full spool). They ride in the next frame (segments.encode_chunks).
        self._unwritten_served = 0
        self._unwritten_dropped = 0
        self._fd = -1
        self._segment = 0
        self._segment_size = 0

    def open(self) -> None:
        """Create the folder, recover the last segment and start a new one after it
        (``first_segment_after_recovery``). SpoolInUse if another process writes this folder."""
        self._take_lock()
        self._open_segment(first_segment_after_recovery(self.directory))
        self._refresh_usage()

    def _open_segment(self, number: int) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        path = self.directory / segment_name(number)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        self._fd = os.open(path, flags, 0o644)
        self._segment = number
        self._segment_size = 0

    def _refresh_usage(self) -> None:
        self.bytes_used, self.segments = segments_usage(self.directory)

    def append(self, record_bytes: bytes) -> bool:
        """Buffer one record's canonical bytes; False if refused because the spool is full."""
        if self.bytes_used + self._pending_bytes >= self.max_bytes:
            self.dropped += 1
            self._unwritten_dropped += 1
            return False
        self._frames.append(record_bytes)
        self._pending_bytes += len(record_bytes) + 1
        return True

    @property
    def full(self) -> bool:
        return self.bytes_used >= self.max_bytes

    def skip(self) -> None:
        """Count an answer left without a record by sampling (reconciliation: served vs emitted)."""
        self.sampled_out += 1
        self._unwritten_served += 1

    def flush(self) -> None:
        """One ``os.write`` of every record appended since the last flush; rotates segments."""
        if self._fd < 0:
            raise RuntimeError("SpoolWriter.flush() before open()")
        full = self.bytes_used >= self.max_bytes
        if self._frames:
            count = len(self._frames)
            served = self._unwritten_served + self._unwritten_dropped + count
            data = encode_chunks(self._frames, served, self._unwritten_dropped)
            self._frames = []
            self._pending_bytes = 0
            self._unwritten_served = self._unwritten_dropped = 0
            self.emitted += count
            view = memoryview(data)
            while view:  # a regular-file write is complete unless the disk is full
                view = view[os.write(self._fd, view) :]
            self._segment_size += len(data)
            self.bytes_used += len(data)
            if self._segment_size >= self.segment_bytes:
                self._open_segment(self._segment + 1)
                full = True
        if full:
            self._refresh_usage()

    def close(self) -> None:
        if self._fd >= 0:
            self.flush()
            os.close(self._fd)
            self._fd = -1
        self._release_lock()


class MappedSpoolWriter(_SpoolFolder):
    """Frames each record straight into the current segment, preallocated and mapped shared
    (``proxy/records/_spoolmap.c``): a record is in the page cache when ``append`` returns.

    ``append``, ``append_hit`` and ``skip`` are the compiled segment's own methods (no Python
    frame on the hit path); it calls ``_make_room`` back when a frame does not fit."""

    needs_flush = False

    def _start(self) -> None:
        if mapped_segment_type is None:
            raise RuntimeError("proxy.records._spoolmap is not built")
        self._mapped = mapped_segment_type(on_full=self._make_room)
        self.append: Callable[[bytes], bool] = self._mapped.append
        self.append_hit: AppendHit = self._mapped.append_hit
        self.skip: Callable[[], None] = self._mapped.skip
        self._fd = -1
        self._number = 0  # the current segment, or the next to open when _fd < 0
        self._others = 0  # bytes in the folder's other segments
        self._recount_at = 0.0  # when a full spool may next recount its folder
        self._allocate_at = 0.0  # when a segment that could not be preallocated is tried again
        self._closed = False

    @property
    def bytes_used(self) -> int:
        return self._others + self._mapped.offset

    @property
    def emitted(self) -> int:
        return int(self._mapped.emitted)

    @property
    def dropped(self) -> int:
        return int(self._mapped.dropped)

    @property
    def sampled_out(self) -> int:
        return int(self._mapped.sampled_out)

    @property
    def full(self) -> bool:
        """True unless the next record is sure to fit: the budget has room for the largest
        record and a segment is mapped with room for it (or one could be made just now). The
        reject policy asks this before it serves, so it never serves what it can't record."""
        mapped = self._mapped
        if (
            self._fd >= 0
            and self._others + mapped.offset + ROOM_FOR_A_RECORD <= self.max_bytes
            and mapped.offset + ROOM_FOR_A_RECORD <= mapped.capacity
        ):
            return False
        return not self._make_room(ROOM_FOR_A_RECORD)

    def open(self) -> None:
        """Recover the last segment and map a new one after it for appending
        (``first_segment_after_recovery``). OSError if this file system cannot preallocate
        (``open_spool`` then falls back to ``SpoolWriter``)."""
        self._take_lock()
        try:
            self._recover_and_map()
        except BaseException:
            self.close()
            raise

    def _recover_and_map(self) -> None:
        self._number = first_segment_after_recovery(self.directory)
        self._refresh_usage()
        try:
            self._open_segment(0)
        except OSError as error:
            if error.errno in _NO_PREALLOCATION:
                raise
            self._cannot_allocate(error)  # a full disk: serve per the policy, try again later
        self.segments = len(list_segments(self.directory))

    def _open_segment(self, wanted: int) -> None:
        """Preallocate and map segment ``self._number``, a new one: room for a frame of
        ``wanted`` bytes even past ``segment_bytes``."""
        path = self.directory / segment_name(self._number)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.ftruncate(fd, 0)  # a retry after a failed preallocation starts clean
            capacity = max(self.segment_bytes, wanted)  # one record may exceed it
            os.posix_fallocate(fd, 0, capacity)
            self._mapped.map(fd, capacity)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._set_limit()

    def _set_limit(self) -> None:
        mapped = self._mapped
        mapped.limit = max(mapped.offset, min(mapped.capacity, self.max_bytes - self._others))

    def _close_segment(self) -> None:
        """Cut the segment to its frames (the sealer reads it to the end) and let it go."""
        if self._fd < 0:
            return
        written = self._mapped.offset
        self._mapped.unmap()
        try:
            os.ftruncate(self._fd, written)
        except OSError as error:  # the zeros stay: readers take them as the segment's end
            log.warning("spool %s: cannot cut segment %d to its frames: %s",
                        self.directory, self._number, error.strerror or error)  # fmt: skip
        finally:
            os.close(self._fd)
            self._fd = -1
        self._others += written

    def _refresh_usage(self) -> None:
        self._others, self.segments = segments_usage(self.directory, leave_out=self._number)

    def _recount(self) -> None:
        self._refresh_usage()
        self._recount_at = time.monotonic() + USAGE_RECOUNT_S
        if self._fd >= 0:
            self._set_limit()

    def _cannot_allocate(self, error: OSError) -> None:
        self._allocate_at = time.monotonic() + ALLOCATE_RETRY_S
        log.warning("spool %s: cannot preallocate segment %d (%s); records are refused",
                    self.directory, self._number, error.strerror or error)  # fmt: skip

    def _make_room(self, wanted: int) -> bool:
        """Called by the mapped segment when a frame of ``wanted`` bytes does not fit (and by
        ``full``): True if there is room now (it tries again), False to refuse the record (it
        counts it)."""
        if self._closed:
            return False
        if self._others + self._mapped.offset + wanted > self.max_bytes:
            if time.monotonic() < self._recount_at:
                return False
            self._recount()  # the sealer may have deleted segments since
            if self._others + self._mapped.offset + wanted > self.max_bytes:
                return False
        if self._fd >= 0 and self._mapped.offset + wanted <= self._mapped.capacity:
            return True  # the budget was all that was short
        if time.monotonic() < self._allocate_at:
            return False
        if self._fd >= 0:
            self._close_segment()
            self._number += 1
        try:
            self._open_segment(wanted)
        except OSError as error:
            self._cannot_allocate(error)
            return False
        self._recount()  # usage as the folder has it: the sealer deletes segments behind us
        return True

    def flush(self) -> None:
        """Nothing to do: every record is in the page cache already."""

    def __del__(self) -> None:
        """A writer dropped without close(): cut its segment and let its lock go."""
        with contextlib.suppress(Exception):
            self.close()

    def close(self) -> None:
        self._closed = True
        self._close_segment()
        self._release_lock()


Spool = SpoolWriter | MappedSpoolWriter
_NO_PREALLOCATION = (errno.EOPNOTSUPP, errno.EINVAL, errno.ENODEV, errno.ENOSYS)
# File systems on which posix_fallocate reserves the blocks a later store into the mapping
# writes, so the store never fails for want of space (that would be SIGBUS). Copy-on-write and
# network file systems (btrfs, ZFS, NFS...) can't promise it; glibc even emulates fallocate
# where the file system lacks it. Elsewhere the write(2) writer serves, unless asked for.
MAPPABLE_FILE_SYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "tmpfs"})


HitTemplate = tuple[bytes, bytes, bytes]  # RecordEncoder.hit_template
AppendHit = Callable[[HitTemplate, float, str], bool]


def hit_appender(
    writer: Spool, encode_hit: Callable[[HitTemplate, float, str], bytes]
) -> AppendHit:
    """How a plain hit's record is appended from its template: the mapped writer formats it
    itself, in C (byte for byte what RecordEncoder.encode_hit makes); the write(2) writer
    appends ``encode_hit``'s bytes."""
    if isinstance(writer, MappedSpoolWriter):
        return writer.append_hit
    append = writer.append
    return lambda template, now_s, request_id: append(encode_hit(template, now_s, request_id))


def _unescape_mount_path(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


def file_system_type(path: Path, mountinfo: str | None = None) -> str | None:
    """The type of the file system ``path`` lies on (Linux's /proc/self/mountinfo: the mount
    with the longest mount point above it), or None if unknown."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return None
    target = str(path.resolve())
    best, found = -1, None
    for line in mountinfo.splitlines():
        fields, _, rest = line.partition(" - ")
        parts, after = fields.split(), rest.split()
        if len(parts) < 5 or not after:
            continue
        point = _unescape_mount_path(parts[4])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) > best:  # later mounts over the same point win on a tie
            best, found = len(point), after[0]
        elif inside and len(point) == best:
            found = after[0]
    return found


def open_spool(
    directory: Path,
    *,
    segment_bytes: int = 64 << 20,
    max_bytes: int = 1 << 30,
    full_policy: str = "drop",
    environ: dict[str, str] | None = None,
) -> Spool:
    """The mapped writer, opened, wherever it works; else the write(2) one: the module not
    built, ``CACHET_SPOOL_MAPPED=0``, a file system not in MAPPABLE_FILE_SYSTEMS (unless
    ``CACHET_SPOOL_MAPPED=1``), or one that cannot preallocate. SpoolInUse if another process
    writes the folder."""
    environ = dict(os.environ) if environ is None else environ
    choice = environ.get(MAPPED_VARIABLE)
    mappable = choice == "1"
    if mapped_segment_type is not None and choice is None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        kind = file_system_type(Path(directory))
        mappable = kind in MAPPABLE_FILE_SYSTEMS
        if not mappable:
            log.info("spool %s: file system %s; records are written with write(2)",
                     directory, kind or "unknown")  # fmt: skip
    if mapped_segment_type is not None and mappable:
        mapped = MappedSpoolWriter(directory, segment_bytes=segment_bytes, max_bytes=max_bytes,
                                   full_policy=full_policy)  # fmt: skip
        try:
            mapped.open()
            return mapped
        except OSError as error:
            if error.errno not in _NO_PREALLOCATION:
                raise
            mapped.close()
            log.warning("spool %s: the file system cannot preallocate segments (%s); records "
                        "are written with write(2)", directory, error.strerror)  # fmt: skip
    written = SpoolWriter(directory, segment_bytes=segment_bytes, max_bytes=max_bytes,
                          full_policy=full_policy)  # fmt: skip
    written.open()
    return written
