"""SpoolWriter: the edge's append-only record spool (segment files of checksummed frames).

Durability contract (see docs/design/spool.md):

- ``append`` MUST be cheap: it only buffers the record's canonical bytes in memory.
- ``flush`` MUST be called before the response bytes of the appended records go to the client.
  It issues ONE ``os.write`` of every frame appended since the last flush. Once ``write(2)`` has
  returned, the bytes are in the kernel's page cache and survive SIGKILL of the process. They do
  NOT survive a machine crash or power loss: the spool is not fsynced here (one fsync per
  response would cap throughput at the disk's flush rate). The sealer fsyncs every sealed batch
  file before it records the spool as consumed, so a machine crash loses at most the records not
  yet sealed (about ``max_interval_ms`` of traffic).
- When the spool holds ``max_bytes`` or more, ``append`` refuses records. With ``full_policy``
  "drop" the record is dropped and counted in ``dropped`` (serve, but lose billing); with
  "reject" it is also counted, and the caller answers 503 instead of serving unrecorded.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from proxy.records.segments import encode_chunks, find_next_frame, scan_frames

log = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".seg"
FULL_POLICIES = ("drop", "reject")


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


class SpoolWriter:
    """Buffers records in memory and writes them to the current segment on ``flush``."""

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
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self.full_policy = full_policy
        self.bytes_used = 0
        self.segments = 0
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
        """Create the folder and recover the last segment; append after its last good frame."""
        self.directory.mkdir(parents=True, exist_ok=True)
        numbers = list_segments(self.directory)
        if not numbers:
            self._open_segment(0)
        elif self._recover_last(numbers[-1]):
            self._open_segment(numbers[-1], append=True)
        else:
            self._open_segment(numbers[-1] + 1)
        self._refresh_usage()

    def _recover_last(self, number: int) -> bool:
        """Truncate a torn or corrupt tail of the last segment (kept aside in quarantine/).

        Returns False when the segment has a corrupt region followed by valid frames: it is then
        left for the sealer (which skips and quarantines the bad region) and a new segment starts.
        """
        path = self.directory / segment_name(number)
        data = path.read_bytes()
        scan = scan_frames(data)
        if scan.end == len(data):
            return True
        if find_next_frame(data, scan.end) >= 0:
            log.warning(
                "spool %s: corrupt frame at offset %d; starting a new segment", path, scan.end
            )
            return False
        aside = quarantine_bytes(self.directory, f"{path.stem}-{scan.end}.tail", data[scan.end :])
        os.truncate(path, scan.end)
        log.warning(
            "spool %s: torn or corrupt tail of %d bytes at offset %d moved to %s",
            path, len(data) - scan.end, scan.end, aside,
        )  # fmt: skip
        return True

    def _open_segment(self, number: int, *, append: bool = False) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        path = self.directory / segment_name(number)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        self._fd = os.open(path, flags, 0o644)
        self._segment = number
        self._segment_size = os.fstat(self._fd).st_size if append else 0

    def _refresh_usage(self) -> None:
        """Recount segment bytes (the sealer deletes consumed segments behind our back)."""
        total = 0
        numbers = list_segments(self.directory)
        for number in numbers:
            try:
                total += (self.directory / segment_name(number)).stat().st_size
            except FileNotFoundError:
                continue
        self.bytes_used = total
        self.segments = len(numbers)

    def append(self, record_bytes: bytes) -> bool:
        """Buffer one record's canonical bytes; False if refused because the spool is full."""
        if self.bytes_used + self._pending_bytes >= self.max_bytes:
            self.dropped += 1
            self._unwritten_dropped += 1
            return False
        self._frames.append(record_bytes)
        self._pending_bytes += len(record_bytes) + 1
        return True

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
