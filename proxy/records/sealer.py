"""Sealer: turns spooled records into signed, hash-chained batch files, exactly once.

Spools: the spool folder itself and every worker's ``w<N>/`` subfolder (``--workers N``: each
serving process appends to its own), sealed together into the edge's one chain.

Files (see docs/design/spool.md and ``batch_files``):

- ``batches/<seq>-<segment>-<offset>[-<skip>].batch``: a sealed batch in the
  ``format_sealed_batch`` layout and, on the line after it, its meta (answers it stands for;
  where it ends in every spool), written temp + fsync + rename + fsync(dir), so it exists
  whole or not at all.
- ``spool/sealed.json``: ``{"seq", "header_hash", "segment", "offset", "skip", "spools"}`` of the
  last sealed batch (the folder's own position, and each worker spool's), written atomically
  AFTER the batch file. Recovery trusts the newest batch file over this marker, so a crash
  between the two never seals the same records twice or reuses a seq.

Durability: a batch file holds its records, so the spool bytes it covers need not be durable and
are not fsynced. What must survive a machine crash is each segment's name (the spool folder is
fsynced before the sealer's cursor enters a new segment, so before any batch can name it): a
writer starting after a crash then numbers its new segment above every segment a batch names,
so no new record lands at a position counted as sealed (``spool.first_segment_after_recovery``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import re
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

from provenance import fastrecords
from provenance.batches import ZERO_HASH_HEX, chain_head, header_canonical_bytes, seal_header
from provenance.batches import parse_sealed_batch as _parse_sealed_batch
from provenance.errors import FormatError
from provenance.fastrecords import LEAF_BYTES, TS_BYTES
from provenance.keys import SigningKey
from provenance.merkle import leaf_hash, root_from_leaf_blob
from provenance.records import (
    match_canonical_record,
    parse_record,
    record_to_canonical_bytes,
)
from proxy.records.batch_files import (
    BATCH_SUFFIX,
    DEFAULT_BATCH_MAX_RECORDS,
    BatchCounters,
    BatchMeta,
    Position,
    batch_file_parts,
    batch_name,
    fsync_directory,
    list_batches,
    meta_path,
    parse_batch_name,
    read_batch_file,
    read_counters,
    write_atomically,
)
from proxy.records.chunk_check import ChunkChecker, seconds_are_real
from proxy.records.segments import (
    FRAME_HEADER_BYTES,
    MAX_PAYLOAD_BYTES,
    ZERO_HEADER,
    Chunk,
    decode_chunk,
    encode_frame,
    first_frame,
    frame_at,
    frame_needs,
)
from proxy.records.spool import list_segments, quarantine_bytes, segment_name

__all__ = [
    "BATCH_SUFFIX",
    "MARKER_NAME",
    "BatchCounters",
    "Sealer",
    "batch_name",
    "check_record",
    "fsync_directory",
    "list_batches",
    "meta_path",
    "parse_batch_name",
    "read_counters",
    "spool_folders",
    "write_atomically",
]  # fmt: skip

log = logging.getLogger(__name__)

MARKER_NAME = "sealed.json"
MARKER_INTERVAL_S = 1.0
READ_AHEAD_RECORDS = 50_000  # pending records before sealing what is read (bounded memory)
# A segment is read in pieces, never to its end at once: a mapped writer's segment is
# preallocated (64 MiB of zeros past its frames). A poll's first piece is small (an idle or slow
# spool reads little, and the pending records keep their piece alive until sealed); each next
# one is twice the last, up to READ_PIECE_BYTES, at least twice the largest frame, so a piece
# that starts at a frame cut by the previous one's end moves on by half of it or more.
READ_FIRST_PIECE_BYTES = 256 << 10
READ_PIECE_BYTES = 4 << 20
_MAX_FRAME_BYTES = FRAME_HEADER_BYTES + MAX_PAYLOAD_BYTES
# What reading a piece ends with: go on from the offset it returns with the next piece; stop
# reading the segment (its end, or the written end of the last one); read the piece again from
# the offset once (a frame in the last segment looked corrupt: its header may have been
# mid-store when it was read).
_MORE, _STOP, _AGAIN = 0, 1, 2
ROOT_SPOOL = ""  # the spool folder itself (one serving process)
_WORKER_SPOOL = re.compile(r"w[0-9]{1,4}")


def spool_folders(spool_dir: Path) -> dict[str, Path]:
    """Every spool to seal: the folder itself and its worker subfolders, by name."""
    found = {ROOT_SPOOL: spool_dir}
    if spool_dir.is_dir():
        for child in spool_dir.iterdir():
            if _WORKER_SPOOL.fullmatch(child.name) and child.is_dir():
                found[child.name] = child
    return dict(sorted(found.items()))


def check_record(payload: bytes, edge: str, seconds_ok: dict[bytes, bool]) -> str | None:
    """The record's ``ts`` if ``payload`` is the canonical bytes of a valid record of ``edge``,
    else None. ``seconds_ok`` caches calendar checks of ``ts`` prefixes (pure: caller owns it)."""
    match = match_canonical_record(payload)
    if match is not None and match.end() == len(payload):
        content_id, creator, record_edge, manifest, ts = match.group(3, 4, 5, 6, 13)
        linked = manifest is None or (creator is not None and content_id is not None)
        ok = seconds_are_real((ts[:19],), seconds_ok)
        if linked and ok and record_edge == edge.encode():
            return ts.decode()
        return None
    try:  # slow path: valid but unusual records (huge byte counts)
        record = parse_record(payload)
    except FormatError:
        return None
    if record.edge != edge or record_to_canonical_bytes(record) != payload:
        return None
    return record.ts


def _resync(
    fd: int, data: bytes, base: int, at: int, *, at_eof: bool, is_last: bool
) -> tuple[int, int]:
    """After the corrupt frame at offset ``at`` of a segment (``data`` holds its bytes from
    ``base``; the rest is read from ``fd`` a window at a time): where the next valid frame
    begins (-1 if none), and the offset past the last nonzero byte before it (``at`` if none).
    The frame is the one ``find_next_frame`` finds in the rest of the segment read whole. In the
    last segment the search ends at eight zero bytes (no frame a writer makes holds as many: a
    header at most six, a payload none): the written end, past which the writer may be writing
    (``_read_piece`` reads a frame found before it once more before setting bytes aside)."""
    window, start, eof = data, base, at_eof
    first = at + 1  # the next candidate offset not yet tried
    covered = written = at  # nonzero bytes looked for up to ``covered``
    size = max(READ_PIECE_BYTES, 2 * _MAX_FRAME_BYTES)
    while True:
        # Candidates below ``limit`` are decided here: a frame starting there fits the window.
        limit = start + len(window) if eof else start + len(window) - _MAX_FRAME_BYTES + 1
        gap = window.find(ZERO_HEADER, at - start if at > start else 0) if is_last else -1
        ends = gap >= 0 and start + gap <= limit
        if ends:
            limit = start + gap
        if limit > first:
            found = first_frame(window, first - start, limit - start)
            if found >= 0:
                return start + found, written
            first = limit
        if not is_last and limit > covered:
            low, high = covered - start, limit - start
            if window.count(0, low, high) != high - low:
                written = covered + len(window[low:high].rstrip(b"\0"))
            covered = limit
        if eof or ends:
            return -1, written
        start = min(first, covered) if not is_last else first
        window = os.pread(fd, size, start)
        eof = len(window) < size


def _set_aside(
    directory: Path, number: int, fd: int, data: bytes, base: int, start: int, stop: int
) -> None:
    """Move segment bytes ``start..stop`` to quarantine/ (read again if past ``data``)."""
    bad = (data[start - base : stop - base] if stop - base <= len(data)
           else os.pread(fd, stop - start, start))  # fmt: skip
    aside = quarantine_bytes(directory, f"{number:016d}-{start}.bad", bad)
    log.warning("spool %s: corrupt bytes %d..%d moved to %s", directory / segment_name(number),
                start, stop, aside)  # fmt: skip


@dataclass(slots=True)
class _Source:
    """One spool being read: where reading resumes and where sealing has reached."""

    directory: Path
    cursor: tuple[int, int] = (0, 0)  # next frame to read: (segment, offset)
    skip: int = 0  # records of the frame at the cursor that are already sealed
    sealed: Position = (0, 0, 0)  # just after the last sealed record
    named: int = -1  # segments up to this one have durable names (fsync of the folder)


INT_BYTES = array("q").itemsize  # scan_spool_run's int columns are native int64s


def _ints() -> array[int]:
    return array("q")


@dataclass(slots=True)
class _Pending:
    """Records read from the spools and not yet sealed, in reading order.

    Per-record values are kept in arrays of int64s and in bytearrays of fixed-width entries,
    not as a Python object each: a run of frames (scan_spool_run) arrives as one bytes object
    per column and is appended in one copy. Objects per record (ints for positions, bytes for
    each leaf hash and ts, their list slots, their slicing and freeing) were a fifth of the
    records process's time."""

    # Each record is buffers[i][starts[i]:stops[i]]: a record read in a run of frames stays in
    # the segment bytes it was read from (making a bytes object of each cost more than
    # checking it); the batch body is joined from the spans in one copy (join_spans).
    buffers: list[bytes] = field(default_factory=list)
    starts: array[int] = field(default_factory=_ints)
    stops: array[int] = field(default_factory=_ints)
    leaves: bytearray = field(default_factory=bytearray)  # RFC 9162 leaf hashes, 32 bytes each
    stamps: bytearray = field(default_factory=bytearray)  # ts values, 24 bytes each
    sources: list[str] = field(default_factory=list)  # the spool each record came from
    # The spool position just after each record: segment, frame offset, records of it sealed.
    end_segments: array[int] = field(default_factory=_ints)
    end_offsets: array[int] = field(default_factory=_ints)
    end_skips: array[int] = field(default_factory=_ints)
    seen_ms: array[int] = field(default_factory=_ints)
    served: array[int] = field(default_factory=_ints)  # answers each record stands for
    dropped: array[int] = field(default_factory=_ints)

    def drop_first(self, count: int) -> None:
        del self.buffers[:count], self.starts[:count], self.stops[:count]
        del self.leaves[: LEAF_BYTES * count], self.stamps[: TS_BYTES * count]
        del self.sources[:count]
        del self.end_segments[:count], self.end_offsets[:count], self.end_skips[:count]
        del self.seen_ms[:count], self.served[:count], self.dropped[:count]

    def __len__(self) -> int:
        return len(self.starts)

    def add_records(self, records: list[bytes]) -> None:
        """Records that are bytes objects of their own (read frame by frame)."""
        self.buffers += records
        self.starts.extend(repeat(0, len(records)))
        self.stops.extend(map(len, records))

    def end_of(self, index: int) -> Position:
        return (self.end_segments[index], self.end_offsets[index], self.end_skips[index])


Marker = tuple[int, str, dict[str, Position]]  # (seq, header hash, position of every spool)


class Sealer:
    """Reads the spools from the last sealed positions and seals batches of valid records."""

    def __init__(
        self,
        spool_dir: Path,
        batches_dir: Path,
        key: SigningKey,
        edge: str,
        *,
        max_records: int = DEFAULT_BATCH_MAX_RECORDS,
        max_interval_ms: int = 1000,
    ) -> None:
        if key.name != edge:
            raise ValueError("the signing key's name must be the edge id")
        self.spool_dir, self.batches_dir = Path(spool_dir), Path(batches_dir)
        self.key, self.edge = key, edge
        self.max_records, self.max_interval_ms = max_records, max_interval_ms
        self.chain_head: tuple[int, str] | None = None  # (seq, header hash) of the last batch
        self.sealed_batches = 0
        self.sealed_records = 0
        self.quarantined_records = 0
        self.seal_latency_s_sum = 0.0
        self.last_seal_latency_s = 0.0
        self.on_seal: Callable[[float, int], None] | None = None  # (latency_s, records)
        # Batches sealed by ``run``, in seq order (the records process's forwarder queues them).
        self.on_batches: Callable[[list[Path]], None] | None = None
        self._sources: dict[str, _Source] = {}
        self._pending = _Pending()
        self._unsealed: Counter[str] = Counter()  # pending records per spool
        self._carried = (0, 0)  # (served, dropped) of invalid records, for the next valid one
        self._seconds_ok: dict[bytes, bool] = {}
        self._chunk_checker = ChunkChecker(edge)
        self._scan_run = fastrecords.scan_spool_run  # None: pure Python, or tests' reference
        self._edge_bytes = edge.encode()
        self._recovered = False
        self._unmarked: Marker | None = None  # the newest batch's marker, not yet written
        self._marked_positions: dict[str, Position] = {}
        self._marked_at = 0.0

    def recover(self) -> None:
        """Find the chain head and spool positions, then seal any unsealed tail exactly once."""
        self.batches_dir.mkdir(parents=True, exist_ok=True)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        for temp in self.batches_dir.glob("*.tmp"):
            temp.unlink()
        marker = self._read_marker()
        newest = self._newest_batch()
        if newest is not None and (marker is None or newest[0] > marker[0]):
            marker = self._marker_from_batch(*newest, marker)
            self._write_marker(marker)
            log.info("sealer: batch %d was sealed but not marked consumed; trusting it", marker[0])
        self._sources = {}
        self._unmarked = None
        if marker is not None:
            self._marked_positions = dict(marker[2])
            self.chain_head = (marker[0], marker[1])
            for name, (segment, offset, skip) in marker[2].items():
                self._sources[name] = _Source(
                    self.spool_dir / name, (segment, offset), skip, (segment, offset, skip)
                )
        self._pending = _Pending()
        self._unsealed = Counter()
        self._recovered = True
        self.seal_ready(0, force=True)

    def _marker_from_batch(self, seq: int, path: Path, marker: Marker | None) -> Marker:
        body, meta = read_batch_file(path)
        header = _parse_sealed_batch(body).header
        if meta is not None:
            positions = dict(meta.positions)
        else:  # a batch from before meta files: its name holds the folder's own position
            parsed = parse_batch_name(path.name)
            assert parsed is not None
            positions = dict(marker[2]) if marker is not None else {}
            positions[ROOT_SPOOL] = (parsed[1], parsed[2], parsed[3])
        return (seq, chain_head(header).header_hash, positions)

    def _newest_batch(self) -> tuple[int, Path] | None:
        found: list[tuple[int, Path]] = []
        for folder in ("", "acked", "quarantine"):
            found += list_batches(self.batches_dir / folder)
        return max(found) if found else None

    def _read_marker(self) -> Marker | None:
        try:
            obj = json.loads((self.spool_dir / MARKER_NAME).read_bytes())
        except FileNotFoundError:
            return None
        positions: dict[str, Position] = {
            ROOT_SPOOL: (int(obj["segment"]), int(obj["offset"]), int(obj.get("skip", 0)))
        }
        for name, p in dict(obj.get("spools", {})).items():
            positions[str(name)] = (int(p[0]), int(p[1]), int(p[2]))
        return (int(obj["seq"]), str(obj["header_hash"]), positions)

    def _write_marker(self, marker: Marker) -> None:
        """Written at most every MARKER_INTERVAL_S (and on every forced seal): two fsyncs per
        batch were a tenth of sealing's cost, and recovery reads the newest batch's meta when
        the marker is behind."""
        seq, head, positions = marker
        segment, offset, skip = positions.get(ROOT_SPOOL, (0, 0, 0))
        workers = {k: list(v) for k, v in sorted(positions.items()) if k != ROOT_SPOOL}
        body = {"seq": seq, "header_hash": head, "segment": segment, "offset": offset,
                "skip": skip, "spools": workers}  # fmt: skip
        write_atomically(self.spool_dir / MARKER_NAME, json.dumps(body).encode())
        self._marked_positions = dict(positions)
        self._marked_at = time.monotonic()
        self._unmarked = None

    def seal_ready(self, now_ms: int, force: bool = False) -> list[Path]:
        """Seal every full batch, and a partial one if it is old enough or ``force``."""
        if not self._recovered:
            raise RuntimeError("Sealer.seal_ready() before recover()")
        pending, written = self._pending, []
        while True:  # a backlog is read a segment at a time, never the whole spool at once
            read_all = self._read_spools(now_ms)
            sealed = 0
            try:
                while len(pending) - sealed >= self.max_records:
                    written.append(self._seal(sealed, self.max_records))
                    sealed += self.max_records
            finally:  # what is sealed is never pending again, even if a later batch failed
                # Once per read, not per batch: with READ_AHEAD_RECORDS pending, moving the
                # rest of the lists after every batch cost more than sealing it.
                pending.drop_first(sealed)
            if read_all:
                break
        if len(pending) and (force or now_ms - pending.seen_ms[0] >= self.max_interval_ms):
            written.append(self._seal(0, len(pending)))
            pending.drop_first(len(pending))
        if self._unmarked is not None and (
            force or time.monotonic() - self._marked_at >= MARKER_INTERVAL_S
        ):
            self._write_marker(self._unmarked)
            self._delete_consumed_segments()
        return written

    def _read_spools(self, now_ms: int) -> bool:
        """Read new frames from every spool; False if it stopped early with enough pending."""
        for name, directory in spool_folders(self.spool_dir).items():
            source = self._sources.get(name)
            if source is None:
                source = self._sources[name] = _Source(directory)
            if not self._read_source(name, source, now_ms):
                return False
        return True

    def _read_source(self, name: str, source: _Source, now_ms: int) -> bool:
        numbers = [n for n in list_segments(source.directory) if n >= source.cursor[0]]
        for number in numbers:
            if len(self._pending) >= max(READ_AHEAD_RECORDS, 2 * self.max_records):
                return False
            if number > source.named:
                self._make_names_durable(source, numbers[-1])
            if number > source.cursor[0]:
                source.cursor, source.skip = (number, 0), 0
            self._read_segment(name, source, number, now_ms, is_last=number == numbers[-1])
        return True

    def _make_names_durable(self, source: _Source, last: int) -> None:
        """Before the cursor enters a segment, so before any batch names it (a batch may name
        the start of a segment it read nothing from), make the names of the spool's segments
        up to ``last`` durable: a crash that lost one could let the next writer number its
        new segment below a sealed position (docs/design/spool.md, "Durability"). One fsync
        of the folder per poll that finds a new segment; a worker's folder's own name the
        first time."""
        if source.named < 0 and source.directory != self.spool_dir:
            fsync_directory(source.directory.parent)
        fsync_directory(source.directory)
        source.named = last

    def _read_segment(
        self, name: str, source: _Source, number: int, now_ms: int, *, is_last: bool
    ) -> None:
        """Read segment ``number`` from the cursor in pieces, queueing its records, to its end
        or, in the last segment, to where the writer has written so far.

        A mapped writer's segment is its frames, then zeros up to the preallocated size (the
        writer truncates them when it moves on; a killed one leaves them). A frame's header is
        written after its payload, so a zero header at a frame boundary of the last segment is
        "not written yet": reading stops there, as at an incomplete frame at its end. In a
        segment that is not the last, zeros to its end are its end (nothing set aside); other
        bytes there are corrupt: set aside up to the next valid frame or their last nonzero
        byte (``_set_aside``)."""
        path = source.directory / segment_name(number)
        with path.open("rb") as file:
            fd = file.fileno()
            offset = source.cursor[1]
            size, again_at = min(READ_FIRST_PIECE_BYTES, READ_PIECE_BYTES), -1
            while True:
                data = os.pread(fd, size, offset)
                if not data:
                    break
                at_eof = len(data) < size
                offset, action, needs = self._read_piece(
                    name, source, number, now_ms, fd, data, offset,
                    at_eof=at_eof, is_last=is_last, again_at=again_at,
                )  # fmt: skip
                source.cursor = (number, offset)
                if action == _STOP or (at_eof and action == _MORE):
                    break
                if action == _AGAIN:
                    again_at = offset
                size = max(min(2 * size, READ_PIECE_BYTES), needs)

    def _read_piece(
        self,
        name: str,
        source: _Source,
        number: int,
        now_ms: int,
        fd: int,
        data: bytes,
        base: int,
        *,
        at_eof: bool,
        is_last: bool,
        again_at: int,
    ) -> tuple[int, int, int]:
        """Queue the records of the frames in ``data`` (the segment's bytes from offset
        ``base``, the end of the file if ``at_eof``). Returns where reading stopped (an offset
        in the segment), what to do next (_MORE, _STOP, _AGAIN) and the bytes the next piece
        needs at least (a frame cut by this piece's end)."""
        consumed, slow_until, scan_run, length = 0, 0, self._scan_run, len(data)
        while consumed < length:
            if scan_run is not None and consumed >= slow_until:
                # The common case: a run of whole, valid frames, checked, hashed and laid out
                # in compiled code (provenance/_fastrecords.c), queued with list operations.
                run = scan_run(data, consumed, base, number, self._edge_bytes)
                if run[0] > consumed:
                    if self._take_run(name, source, data, run, now_ms):
                        consumed = run[0]
                        continue
                    slow_until = run[0]  # a ts that is no calendar instant: frame by frame
            # Anything else, one frame at a time: the chunk check, or record by record.
            end = frame_at(data, consumed)
            if end >= 0:
                self._take(name, source, number, base + consumed, base,
                           [data[consumed + FRAME_HEADER_BYTES : end]], [end], now_ms)  # fmt: skip
                consumed = end
                continue
            at = base + consumed
            if not at_eof and (needs := frame_needs(data, consumed)):
                return at, _MORE, needs  # cut by the piece's end: whole in the next one
            header = data[consumed : consumed + FRAME_HEADER_BYTES]
            if is_last and header == ZERO_HEADER[: len(header)]:
                return at, _STOP, 0  # the written end, for now
            resume, written = _resync(fd, data, base, at, at_eof=at_eof, is_last=is_last)
            if resume < 0 and is_last:
                return at, _STOP, 0  # being written, or a torn tail the writer's open() sets aside
            if resume >= 0 and is_last and again_at != at:
                return at, _AGAIN, 0
            stop = resume if resume >= 0 else written
            if stop > at:
                _set_aside(source.directory, number, fd, data, base, at, stop)
            elif resume < 0:
                log.info("spool %s segment %d: zero-filled from offset %d to its end (a writer "
                         "stopped there)", source.directory, number, at)  # fmt: skip
            source.skip = 0
            if resume < 0:
                return stop, _STOP, 0
            if resume - base >= length:
                return resume, _MORE, 0
            consumed = resume - base
        return base + consumed, _MORE, 0

    def _take_run(
        self, name: str, source: _Source, data: bytes, run: tuple[Any, ...], now_ms: int
    ) -> bool:
        """Queue a run of valid frames from ``scan_spool_run``: the same records, stamps,
        positions and answers ``_take`` queues frame by frame. False (nothing queued) if a
        ``ts`` is no calendar instant."""
        (
            _,
            starts,
            stops,
            stamps,
            seconds,
            leaves,
            segments,
            offsets,
            skips,
            served,
            dropped,
            first,
        ) = run
        cache = self._seconds_ok
        if len(cache) > 100_000:
            cache.clear()
        if not seconds_are_real(seconds, cache):
            return False
        skip, source.skip = source.skip, 0  # only the first frame read can be part-sealed
        drop = min(skip, first)  # records of the first frame already sealed
        count = len(starts) // INT_BYTES - drop
        if count <= 0:
            return True
        pending = self._pending
        index = len(pending)
        ints = INT_BYTES * drop
        pending.buffers += repeat(data, count)
        pending.starts.frombytes(memoryview(starts)[ints:])
        pending.stops.frombytes(memoryview(stops)[ints:])
        pending.leaves += memoryview(leaves)[LEAF_BYTES * drop :]
        pending.stamps += memoryview(stamps)[TS_BYTES * drop :]
        pending.sources += repeat(name, count)
        pending.end_segments.frombytes(memoryview(segments)[ints:])
        pending.end_offsets.frombytes(memoryview(offsets)[ints:])
        pending.end_skips.frombytes(memoryview(skips)[ints:])
        pending.seen_ms += array("q", (now_ms,)) * count  # no int conversion per record
        pending.served.frombytes(memoryview(served)[ints:])
        pending.dropped.frombytes(memoryview(dropped)[ints:])
        if self._carried != (0, 0):  # answers of invalid records before this one
            pending.served[index] += self._carried[0]
            pending.dropped[index] += self._carried[1]
            self._carried = (0, 0)
        self._unsealed[name] += count
        return True

    def _take(
        self,
        name: str,
        source: _Source,
        number: int,
        start: int,
        base: int,
        payloads: list[bytes],
        ends: list[int],
        now_ms: int,
    ) -> None:
        """Queue the valid records of consecutive frames; ``start`` is the first frame's offset,
        ``ends`` are relative to ``base``.

        A frame whose records are all valid (``ChunkChecker``) is queued with list operations
        only; any other frame goes record by record (``_take_each``), which sets invalid
        records aside. Both queue the same records, stamps, positions and answers."""
        pending, cache, check = self._pending, self._seconds_ok, self._chunk_checker.check
        if len(cache) > 100_000:
            cache.clear()
        before = len(pending)
        for payload, relative_end in zip(payloads, ends, strict=True):
            end = base + relative_end
            skip, source.skip = source.skip, 0  # only the first frame read can be part-sealed
            checked = check(payload, cache)
            if checked is None:
                self._take_each(name, source, number, start, end, decode_chunk(payload), skip,
                                now_ms)  # fmt: skip
                start = end
                continue
            records, total = checked.records, len(checked.records)
            count = total - skip
            if count <= 0:
                start = end
                continue
            served, dropped = [1] * count, [0] * count
            served[0] += self._carried[0]  # answers of invalid records before this one
            dropped[0] += self._carried[1]
            self._carried = (0, 0)
            served[-1] += max(0, checked.served - total)  # the frame's extra answers
            dropped[-1] += checked.dropped
            pending.add_records(records[skip:] if skip else records)
            pending.leaves += b"".join(checked.leaves[skip:] if skip else checked.leaves)
            pending.stamps += b"".join(checked.stamps[skip:] if skip else checked.stamps)
            pending.sources += repeat(name, count)
            pending.end_segments.extend(repeat(number, count))
            pending.end_offsets.extend(repeat(start, count - 1))
            pending.end_offsets.append(end)
            pending.end_skips.extend(range(skip + 1, total))
            pending.end_skips.append(0)
            pending.seen_ms.extend(repeat(now_ms, count))
            pending.served.extend(served)
            pending.dropped.extend(dropped)
            start = end
        self._unsealed[name] += len(pending) - before

    def _take_each(
        self,
        name: str,
        source: _Source,
        number: int,
        start: int,
        end: int,
        chunk: Chunk,
        skip: int,
        now_ms: int,
    ) -> None:
        """Queue the valid records of one frame record by record; quarantine the others (their
        answers ride on the next valid record)."""
        pending, edge, cache = self._pending, self.edge, self._seconds_ok
        records, last = chunk.records, len(chunk.records) - 1
        for index in range(skip, last + 1):
            record = records[index]
            served, dropped = self._carried
            served += 1
            if index == last:  # the frame's answers beyond its records ride on its last
                served += max(0, chunk.served - len(records))
                dropped += chunk.dropped
            ts = check_record(record, edge, cache)
            if ts is None:
                self._carried = (served, dropped)
                self._quarantine_record(source.directory, number, end, index, record)
                continue
            self._carried = (0, 0)
            pending.add_records([record])
            pending.leaves += leaf_hash(record)
            pending.stamps += ts.encode()
            pending.sources.append(name)
            pending.end_segments.append(number)
            pending.end_offsets.append(end if index == last else start)
            pending.end_skips.append(0 if index == last else index + 1)
            pending.seen_ms.append(now_ms)
            pending.served.append(served)
            pending.dropped.append(dropped)

    def _quarantine_record(
        self, directory: Path, number: int, end: int, index: int, payload: bytes
    ) -> None:
        self.quarantined_records += 1
        aside = quarantine_bytes(
            directory, f"{number:016d}-{end}-{index}.record", encode_frame(payload)
        )
        log.warning("spool %s segment %d: invalid record %d of the frame ending at %d moved to %s",
                    directory, number, index, end, aside)  # fmt: skip

    def _positions_after(self, start: int, count: int) -> dict[str, Position]:
        """Where each spool stands once pending records ``start`` to ``start + count`` are
        sealed (those before ``start`` already are)."""
        pending, sources = self._pending, self._sources
        positions = {name: source.sealed for name, source in sources.items()}
        found: set[str] = set()
        for index in range(start + count - 1, start - 1, -1):  # the last of each spool
            name = pending.sources[index]
            if name not in found:
                found.add(name)
                positions[name] = pending.end_of(index)
                if len(found) == len(sources):
                    break
        in_batch = (Counter(pending.sources[start : start + count]) if len(sources) > 1
                    else {ROOT_SPOOL: count})  # fmt: skip
        for name, source in sources.items():
            if self._unsealed[name] == in_batch.get(name, 0):  # all it had read is sealed
                positions[name] = (*source.cursor, source.skip)
        return positions

    def _seal(self, start: int, count: int) -> Path:
        """Seal pending records ``start`` to ``start + count``; the caller drops them."""
        started = time.perf_counter()
        pending, stop = self._pending, start + count
        first_ts, last_ts = fastrecords.stamp_bounds(
            memoryview(pending.stamps)[TS_BYTES * start : TS_BYTES * stop]
        )
        root = root_from_leaf_blob(
            memoryview(pending.leaves)[LEAF_BYTES * start : LEAF_BYTES * stop]
        )
        positions = self._positions_after(start, count)
        seq, prev = (0, ZERO_HASH_HEX) if self.chain_head is None else (
            self.chain_head[0] + 1, self.chain_head[1])  # fmt: skip
        header, signature = seal_header(
            root, count, first_ts.decode(), last_ts.decode(), self.edge, seq, prev, self.key
        )
        header_bytes = header_canonical_bytes(header)
        counters = BatchCounters(sum(pending.served[start:stop]), count,
                                 sum(pending.dropped[start:stop]))  # fmt: skip
        # The meta line, then the batch gzip-compressed (batch_files): one file, one fsync.
        records = fastrecords.join_spans(pending.buffers[start:stop], pending.starts[start:stop],
                                         pending.stops[start:stop], b",")  # fmt: skip
        batch = (b'{"header":', header_bytes, b',"records":[', records,
                 b'],"signature":"', base64.b64encode(signature), b'"}')  # fmt: skip
        path = self.batches_dir / batch_name(seq, *positions.get(ROOT_SPOOL, (0, 0, 0)))
        write_atomically(path, batch_file_parts(batch, BatchMeta(counters, positions)))
        head = hashlib.sha256(header_bytes).hexdigest()  # header_hash(), bytes made once
        self._unmarked = (seq, head, positions)
        self.chain_head = (seq, head)
        for name, position in positions.items():
            self._sources[name].sealed = position
        if len(self._sources) > 1:
            self._unsealed.subtract(Counter(pending.sources[start:stop]))
        else:
            self._unsealed[ROOT_SPOOL] -= count
        self._record_stats(time.perf_counter() - started, count)
        return path

    def _record_stats(self, latency_s: float, count: int) -> None:
        self.sealed_batches += 1
        self.sealed_records += count
        self.seal_latency_s_sum += latency_s
        self.last_seal_latency_s = latency_s
        if self.on_seal is not None:
            self.on_seal(latency_s, count)

    def _delete_consumed_segments(self) -> None:
        """Segments before the position the marker on disk names: recovery never needs them,
        even if the newest batch's meta were lost."""
        for name, source in self._sources.items():
            marked = self._marked_positions.get(name)
            if marked is None:
                continue
            for number in list_segments(source.directory):
                if number < marked[0]:
                    (source.directory / segment_name(number)).unlink(missing_ok=True)

    async def run(self, clock_ms: Callable[[], int], stop: asyncio.Event) -> None:
        """Seal in a worker thread until ``stop`` is set, then seal what is left."""
        if not self._recovered:
            await asyncio.to_thread(self.recover)
        poll_s = min(0.25, max(0.01, self.max_interval_ms / 4000))
        while not stop.is_set():
            self._announce(await asyncio.to_thread(self.seal_ready, clock_ms()))
            try:
                await asyncio.wait_for(stop.wait(), poll_s)
            except TimeoutError:
                pass
        self._announce(await asyncio.to_thread(self.seal_ready, clock_ms(), True))

    def _announce(self, written: list[Path]) -> None:
        if written and self.on_batches is not None:
            self.on_batches(written)
