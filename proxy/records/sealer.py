"""Sealer: turns spooled records into signed, hash-chained batch files, exactly once.

Files (see docs/design/spool.md):

- ``batches/<seq:016d>-<segment:016d>-<offset:016d>.batch``: a sealed batch in the
  ``format_sealed_batch`` layout; the name says which spool position it covers up to. Written
  temp + fsync + rename + fsync(dir), so it exists whole or not at all.
- ``spool/sealed.json``: ``{"seq", "header_hash", "segment", "offset"}`` of the last sealed
  batch, written atomically AFTER the batch file. Recovery trusts the newest batch file over this
  marker, so a crash between the two never seals the same records twice or reuses a seq.

Durability: before a batch covering spool bytes is written, those segment bytes are fsynced, so
no batch survives a machine crash that the spool it covers did not.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from provenance.batches import ZERO_HASH_HEX, chain_head, header_canonical_bytes, seal_header
from provenance.batches import parse_sealed_batch as _parse_sealed_batch
from provenance.errors import FormatError
from provenance.keys import SigningKey
from provenance.merkle import leaf_hash
from provenance.records import (
    is_timestamp,
    match_canonical_record,
    parse_record,
    record_to_canonical_bytes,
)
from proxy.records.segments import decode_chunk, encode_frame, find_next_frame, scan_frames
from proxy.records.spool import list_segments, quarantine_bytes, segment_name

log = logging.getLogger(__name__)

BATCH_SUFFIX = ".batch"
MARKER_NAME = "sealed.json"
_BATCH_NAME = re.compile(r"([0-9]{16})-([0-9]{16})-([0-9]{16})(?:-([0-9]{1,6}))?\.batch")
COUNTERS_SUFFIX = ".counters"


def check_record(payload: bytes, edge: str, seconds_ok: dict[bytes, bool]) -> str | None:
    """The record's ``ts`` if ``payload`` is the canonical bytes of a valid record of ``edge``,
    else None. ``seconds_ok`` caches calendar checks of ``ts`` prefixes (pure: caller owns it)."""
    match = match_canonical_record(payload)
    if match is not None and match.end() == len(payload):
        content_id, creator, record_edge, manifest = match.group(3, 4, 5, 6)
        ts = match.group(13)
        linked = manifest is None or (creator is not None and content_id is not None)
        second = ts[:19]
        ok = seconds_ok.get(second)
        if ok is None:
            ok = seconds_ok[second] = is_timestamp(second.decode() + ".000Z")
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


def batch_name(seq: int, segment: int, offset: int, skip: int = 0) -> str:
    """The file name of batch ``seq``, which ends at spool position (segment, offset, skip):
    the frame at ``offset`` of ``segment``, of which the first ``skip`` records are sealed."""
    tail = f"-{skip}" if skip else ""
    return f"{seq:016d}-{segment:016d}-{offset:016d}{tail}{BATCH_SUFFIX}"


def parse_batch_name(name: str) -> tuple[int, int, int, int] | None:
    """(seq, segment, offset, skip) from a batch file name, None for any other file."""
    match = _BATCH_NAME.fullmatch(name)
    if match is None:
        return None
    return (int(match[1]), int(match[2]), int(match[3]), int(match[4] or 0))


def counters_path(batch_path: Path) -> Path:
    """Where the answers a batch stands for are kept (see ``BatchCounters``)."""
    return batch_path.with_name(batch_path.name + COUNTERS_SUFFIX)


@dataclass(frozen=True, slots=True)
class BatchCounters:
    """The answers a sealed batch stands for, for the coordinator's reconciliation
    (docs/billing.md): ``served`` requests answered, of which ``emitted`` have a record in the
    batch and ``dropped`` were refused by a full spool (the rest the sample left out)."""

    served: int
    emitted: int
    dropped: int

    def to_json(self) -> bytes:
        return json.dumps(
            {"dropped": self.dropped, "emitted": self.emitted, "served": self.served}
        ).encode()


def read_counters(batch_path: Path) -> BatchCounters | None:
    """A batch's counters, or None (batches sealed before counters existed, or unreadable)."""
    try:
        obj = json.loads(counters_path(batch_path).read_bytes())
        return BatchCounters(int(obj["served"]), int(obj["emitted"]), int(obj["dropped"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def list_batches(directory: Path) -> list[tuple[int, Path]]:
    """(seq, path) of the batch files directly in ``directory``, by seq."""
    found = []
    if directory.is_dir():
        for path in directory.iterdir():
            parsed = parse_batch_name(path.name)
            if parsed is not None:
                found.append((parsed[0], path))
    return sorted(found)


def write_atomically(path: Path, data: bytes) -> None:
    """temp + fsync + rename + fsync(dir): after return, ``path`` holds ``data`` durably."""
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    fsync_directory(path.parent)


def _write_replacing(path: Path, data: bytes) -> None:
    """temp + rename, no fsync: for a batch's counters, written just before the batch, whose
    fsync of the folder makes both names durable (a lost counters file only means the
    coordinator assumes served = emitted for that batch's period)."""
    temp = path.with_name(path.name + ".tmp")
    temp.write_bytes(data)
    os.replace(temp, path)


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


Position = tuple[int, int, int]  # (segment, offset of a frame, records of it already sealed)


@dataclass(slots=True)
class _Pending:
    """Records read from the spool and not yet sealed, in spool order."""

    payloads: list[bytes]
    stamps: list[str]
    ends: list[Position]  # spool position just after each record
    seen_ms: list[int]
    served: list[int]  # answers each record stands for (1, or more on a frame's last record)
    dropped: list[int]


class Sealer:
    """Reads the spool from the last sealed position and seals batches of valid records."""

    def __init__(
        self,
        spool_dir: Path,
        batches_dir: Path,
        key: SigningKey,
        edge: str,
        *,
        max_records: int = 1000,
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
        self._cursor = (0, 0)  # next frame to read: (segment, offset)
        self._skip = 0  # records of the frame at the cursor that are already sealed
        self._pending = _Pending([], [], [], [], [], [])
        self._carried = (0, 0)  # (served, dropped) of invalid records, for the next valid one
        self._seconds_ok: dict[bytes, bool] = {}
        self._recovered = False

    def recover(self) -> None:
        """Find the chain head and spool position, then seal any unsealed tail exactly once."""
        self.batches_dir.mkdir(parents=True, exist_ok=True)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        for temp in self.batches_dir.glob("*.tmp"):
            temp.unlink()
        marker = self._read_marker()
        newest = self._newest_batch()
        if newest is not None and (marker is None or newest[0] > marker[0]):
            seq, path = newest
            header = _parse_sealed_batch(path.read_bytes()).header
            parsed = parse_batch_name(path.name)
            assert parsed is not None
            marker = (seq, chain_head(header).header_hash, parsed[1], parsed[2], parsed[3])
            self._write_marker(marker)
            log.info("sealer: batch %d was sealed but not marked consumed; trusting it", seq)
        if marker is not None:
            self.chain_head = (marker[0], marker[1])
            self._cursor, self._skip = (marker[2], marker[3]), marker[4]
        self._pending = _Pending([], [], [], [], [], [])
        self._recovered = True
        self.seal_ready(0, force=True)

    def _newest_batch(self) -> tuple[int, Path] | None:
        found: list[tuple[int, Path]] = []
        for folder in ("", "acked", "quarantine"):
            found += list_batches(self.batches_dir / folder)
        return max(found) if found else None

    def _read_marker(self) -> tuple[int, str, int, int, int] | None:
        try:
            obj = json.loads((self.spool_dir / MARKER_NAME).read_bytes())
            return (
                int(obj["seq"]),
                str(obj["header_hash"]),
                int(obj["segment"]),
                int(obj["offset"]),
                int(obj.get("skip", 0)),
            )
        except FileNotFoundError:
            return None

    def _write_marker(self, marker: tuple[int, str, int, int, int]) -> None:
        seq, head, segment, offset, skip = marker
        body = {"seq": seq, "header_hash": head, "segment": segment, "offset": offset,
                "skip": skip}  # fmt: skip
        write_atomically(self.spool_dir / MARKER_NAME, json.dumps(body).encode())

    def seal_ready(self, now_ms: int, force: bool = False) -> list[Path]:
        """Seal every full batch, and a partial one if it is old enough or ``force``."""
        if not self._recovered:
            raise RuntimeError("Sealer.seal_ready() before recover()")
        self._read_spool(now_ms)
        pending, written = self._pending, []
        while len(pending.payloads) >= self.max_records:
            written.append(self._seal(self.max_records))
        if pending.payloads and (force or now_ms - pending.seen_ms[0] >= self.max_interval_ms):
            written.append(self._seal(len(pending.payloads)))
        if written:
            self._delete_consumed_segments()
        return written

    def _read_spool(self, now_ms: int) -> None:
        numbers = [n for n in list_segments(self.spool_dir) if n >= self._cursor[0]]
        for number in numbers:
            if number > self._cursor[0]:
                self._cursor, self._skip = (number, 0), 0
            self._read_segment(number, now_ms, is_last=number == numbers[-1])

    def _read_segment(self, number: int, now_ms: int, *, is_last: bool) -> None:
        path = self.spool_dir / segment_name(number)
        base = self._cursor[1]
        with path.open("rb") as file:
            file.seek(base)
            data = file.read()
            if data:
                os.fsync(file.fileno())  # no batch may outlive the spool bytes it covers
        consumed = 0
        while consumed < len(data):
            scan = scan_frames(data, consumed)
            self._take(number, base + consumed, base, scan.payloads, scan.ends, now_ms)
            consumed = scan.end
            if consumed == len(data):
                break
            resume = find_next_frame(data, consumed)
            if resume < 0 and is_last:
                break  # being written, or a torn tail the writer's open() sets aside
            resume = len(data) if resume < 0 else resume
            name = f"{number:016d}-{base + consumed}.bad"
            aside = quarantine_bytes(self.spool_dir, name, data[consumed:resume])
            log.warning("spool %s: corrupt bytes %d..%d moved to %s", path, base + consumed,
                        base + resume, aside)  # fmt: skip
            consumed = resume
            self._skip = 0
        self._cursor = (number, base + consumed)

    def _take(
        self,
        number: int,
        start: int,
        base: int,
        payloads: list[bytes],
        ends: list[int],
        now_ms: int,
    ) -> None:
        """Queue the valid records of consecutive frames; ``start`` is the first frame's offset,
        ``ends`` are relative to ``base``."""
        pending, edge, cache = self._pending, self.edge, self._seconds_ok
        if len(cache) > 100_000:
            cache.clear()
        add_payload, add_stamp, add_end = (
            pending.payloads.append, pending.stamps.append, pending.ends.append)  # fmt: skip
        add_seen, add_served, add_dropped = (
            pending.seen_ms.append, pending.served.append, pending.dropped.append)  # fmt: skip
        for payload, relative_end in zip(payloads, ends, strict=True):
            end = base + relative_end
            chunk = decode_chunk(payload)
            records, last = chunk.records, len(chunk.records) - 1
            skip, self._skip = self._skip, 0  # only the first frame read can be part-sealed
            for index in range(skip, last + 1):
                record = records[index]
                served, dropped = self._carried
                served += 1
                if index == last:
                    served += max(0, chunk.served - chunk.dropped - len(records))
                    dropped += chunk.dropped
                    served += chunk.dropped
                ts = check_record(record, edge, cache)
                if ts is None:
                    self._carried = (served, dropped)
                    self._quarantine_record(number, end, index, record)
                    continue
                self._carried = (0, 0)
                add_payload(record)
                add_stamp(ts)
                add_end((number, end, 0) if index == last else (number, start, index + 1))
                add_seen(now_ms)
                add_served(served)
                add_dropped(dropped)
            start = end

    def _quarantine_record(self, number: int, end: int, index: int, payload: bytes) -> None:
        self.quarantined_records += 1
        aside = quarantine_bytes(
            self.spool_dir, f"{number:016d}-{end}-{index}.record", encode_frame(payload)
        )
        log.warning("spool segment %d: invalid record %d of the frame ending at %d moved to %s",
                    number, index, end, aside)  # fmt: skip

    def _seal(self, count: int) -> Path:
        started = time.perf_counter()
        pending = self._pending
        payloads, stamps = pending.payloads[:count], pending.stamps[:count]
        position = pending.ends[count - 1] if count < len(pending.ends) else (*self._cursor, 0)
        seq, prev = (0, ZERO_HASH_HEX) if self.chain_head is None else (
            self.chain_head[0] + 1, self.chain_head[1])  # fmt: skip
        header, signature = seal_header(
            [leaf_hash(p) for p in payloads],
            min(stamps),
            max(stamps),
            self.edge,
            seq,
            prev,
            self.key,
        )
        body = b"".join((b'{"header":', header_canonical_bytes(header), b',"records":[',
                         b",".join(payloads), b'],"signature":"', base64.b64encode(signature),
                         b'"}'))  # fmt: skip
        path = self.batches_dir / batch_name(seq, *position)
        counters = BatchCounters(sum(pending.served[:count]), count, sum(pending.dropped[:count]))
        _write_replacing(counters_path(path), counters.to_json())
        write_atomically(path, body)
        head = chain_head(header).header_hash
        self._write_marker((seq, head, *position))
        self.chain_head = (seq, head)
        del pending.payloads[:count], pending.stamps[:count], pending.ends[:count]
        del pending.seen_ms[:count], pending.served[:count], pending.dropped[:count]
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
        marker = self._read_marker()
        if marker is None:
            return
        for number in list_segments(self.spool_dir):
            if number < marker[2]:
                (self.spool_dir / segment_name(number)).unlink(missing_ok=True)

    async def run(self, clock_ms: Callable[[], int], stop: asyncio.Event) -> None:
        """Seal in a worker thread until ``stop`` is set, then seal what is left."""
        if not self._recovered:
            await asyncio.to_thread(self.recover)
        poll_s = min(0.25, max(0.01, self.max_interval_ms / 4000))
        while not stop.is_set():
            await asyncio.to_thread(self.seal_ready, clock_ms())
            try:
                await asyncio.wait_for(stop.wait(), poll_s)
            except TimeoutError:
                pass
        await asyncio.to_thread(self.seal_ready, clock_ms(), True)
