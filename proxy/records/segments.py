"""Spool segment framing: pure encode/decode of length-prefixed, checksummed frames (no I/O).

A frame is ``[u32 length, big-endian][u32 CRC-32 of (length bytes || payload)][payload]``.
The checksum covers the length too, so a bit flip in a length field is caught instead of
sending the decoder off by a wrong amount. CRC-32 (zlib's, computed by ISA-L where installed:
``provenance.compression``) rather than CRC-32C: both detect every burst of up to 32 flipped
bits and all odd-weight errors, and CRC-32 is in the standard library for the fallback.

A payload holds one record or several (a "chunk": records joined by a newline, which canonical
JSON never contains raw), optionally ending with a counters line ``#served=N,dropped=M``: the
answers the proxy gave since the previous flush, when that differs from the records in the chunk
(hits the sample left out; records refused by a full spool). One frame per flush means one CRC
and one header per flush rather than per record: on the hit path this was most of the cost of
framing. A payload without a counters line served one answer per record.

Decoding never raises on bad input: ``scan_frames`` returns the valid prefix and where it
stopped, and ``find_next_frame`` looks for the next offset at which a valid frame starts (for
resynchronising after a corrupt region). Records are canonical JSON objects, so a frame's payload
starts with ``{``; only offsets with that byte are tried, which keeps resync linear in practice.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

from provenance.compression import crc32

FRAME_HEADER_BYTES = 8
MAX_PAYLOAD_BYTES = 1 << 20  # a chunk is at most CHUNK_MAX_BYTES; anything larger is corruption
CHUNK_MAX_RECORDS = 512
CHUNK_MAX_BYTES = 256 << 10
RECORD_SEPARATOR = b"\n"
_COUNTERS = re.compile(rb"#served=([0-9]{1,18}),dropped=([0-9]{1,18})")
_HEADER = struct.Struct(">II")
# Eight zero bytes at a frame boundary: no frame starts there (its length would be 0), and no
# frame holds as many in a row. A mapped writer's segment is zeros past its written end.
ZERO_HEADER = bytes(FRAME_HEADER_BYTES)
_LENGTH = struct.Struct(">I")
_crc32 = crc32


def encode_frame(payload: bytes) -> bytes:
    """One frame holding ``payload`` (1..MAX_PAYLOAD_BYTES bytes); ValueError otherwise."""
    size = len(payload)
    if not 0 < size <= MAX_PAYLOAD_BYTES:
        raise ValueError(f"frame payload must be 1..{MAX_PAYLOAD_BYTES} bytes, got {size}")
    length = _LENGTH.pack(size)
    return length + _LENGTH.pack(_crc32(payload, _crc32(length))) + payload


def encode_frames(payloads: list[bytes]) -> bytes:
    """Frames for every payload, concatenated (what one spool flush writes). Builds one list of
    parts and joins once, so each payload is copied once: this runs for every record."""
    parts: list[bytes] = []
    append, pack = parts.append, _LENGTH.pack
    for payload in payloads:
        size = len(payload)
        if not 0 < size <= MAX_PAYLOAD_BYTES:
            raise ValueError(f"frame payload must be 1..{MAX_PAYLOAD_BYTES} bytes, got {size}")
        length = pack(size)
        append(length)
        append(pack(_crc32(payload, _crc32(length))))
        append(payload)
    return b"".join(parts)


def encode_chunks(
    records: list[bytes], served: int, dropped: int, *, max_records: int = CHUNK_MAX_RECORDS
) -> bytes:
    """Frames holding ``records`` (each 1..MAX_PAYLOAD_BYTES bytes, no raw newline) in chunks of
    at most ``max_records`` records and about CHUNK_MAX_BYTES; the last frame carries the
    counters line unless ``served`` equals the number of records and nothing was dropped."""
    total = len(records)
    if 0 < total <= max_records and sum(map(len, records)) + total <= CHUNK_MAX_BYTES:
        # One frame (every flush of a serving process but the largest): the same bytes as
        # chunk_records makes, without its per-record loop.
        payload = RECORD_SEPARATOR.join(records)
        if served != total or dropped:
            payload += b"\n#served=%d,dropped=%d" % (served, dropped)
        return encode_frame(payload)
    return chunk_records(records, served, dropped, max_records=max_records)


def chunk_records(
    records: list[bytes], served: int, dropped: int, *, max_records: int = CHUNK_MAX_RECORDS
) -> bytes:
    """``encode_chunks`` record by record (the reference; any number and size of records)."""
    parts: list[bytes] = []
    start, total = 0, len(records)
    while start < total:
        stop, size = start, 0
        while stop < total and stop - start < max_records and size < CHUNK_MAX_BYTES:
            size += len(records[stop]) + 1
            stop += 1
        payload = RECORD_SEPARATOR.join(records[start:stop])
        if stop == total and (served != total or dropped):
            # Earlier frames of this flush stand for one answer per record; the rest are here.
            payload += b"\n#served=%d,dropped=%d" % (served - start, dropped)
        parts.append(encode_frame(payload))
        start = stop
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A frame's payload read back: its records, and the answers it stands for."""

    records: list[bytes]
    served: int
    dropped: int


def decode_chunk(payload: bytes) -> Chunk:
    """Split a frame's payload into records and counters (pure, never raises: a malformed
    counters line is kept as a record, which the sealer's record check then refuses)."""
    lines = payload.split(RECORD_SEPARATOR)
    last = lines[-1]
    if last[:1] == b"#":
        match = _COUNTERS.fullmatch(last)
        if match is not None:
            del lines[-1]
            return Chunk(lines, int(match[1]), int(match[2]))
    return Chunk(lines, len(lines), 0)


@dataclass(slots=True)
class FrameScan:
    """The valid frames found from a start offset, and where decoding stopped.

    ``ends[i]`` is the offset just past ``payloads[i]``'s frame; ``end`` is the offset past the
    last valid frame (the start offset if none). ``end < len(data)`` means the bytes from ``end``
    are an incomplete or corrupt frame.
    """

    payloads: list[bytes] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    end: int = 0


def frame_at(data: bytes, offset: int) -> int:
    """The end offset of a valid frame starting at ``offset``, or -1 if none is there."""
    if offset + FRAME_HEADER_BYTES > len(data):
        return -1
    size: int
    crc: int
    size, crc = _HEADER.unpack_from(data, offset)
    end: int = offset + FRAME_HEADER_BYTES + size
    if not 0 < size <= MAX_PAYLOAD_BYTES or end > len(data):
        return -1
    view = memoryview(data)
    if _crc32(view[offset + FRAME_HEADER_BYTES : end], _crc32(view[offset : offset + 4])) != crc:
        return -1
    return end


def scan_frames(data: bytes, start: int = 0) -> FrameScan:
    """Decode consecutive valid frames of ``data`` from ``start`` until one is bad or missing."""
    scan = FrameScan(end=start)
    offset = start
    payloads, ends = scan.payloads, scan.ends
    while True:
        end = frame_at(data, offset)
        if end < 0:
            break
        payloads.append(data[offset + FRAME_HEADER_BYTES : end])
        ends.append(end)
        offset = end
    scan.end = offset
    return scan


def frame_needs(data: bytes, offset: int) -> int:
    """The bytes from ``offset`` that the frame starting there needs, when ``data`` ends before
    it does (8 when even its header is cut); 0 when ``data`` holds it whole or the header there
    names no frame (length 0, as in a zero-filled tail, or over MAX_PAYLOAD_BYTES). For reading
    a segment in pieces: a frame cut by a piece's end is read whole with the next piece."""
    left = len(data) - offset
    if left < FRAME_HEADER_BYTES:
        return FRAME_HEADER_BYTES
    size: int = _LENGTH.unpack_from(data, offset)[0]
    needed = FRAME_HEADER_BYTES + size
    return needed if 0 < size <= MAX_PAYLOAD_BYTES and needed > left else 0


def first_frame(data: bytes, first: int, limit: int) -> int:
    """The first offset in ``first..limit - 1`` where a valid frame begins, or -1. The
    candidates are bounded so that a search can go on in the next piece of a segment from
    ``limit`` (``find_next_frame`` is this over all of ``data``)."""
    position = first + FRAME_HEADER_BYTES - 1  # a candidate's payload starts with '{'
    while True:
        position = data.find(b"{", position + 1)
        candidate = position - FRAME_HEADER_BYTES
        if position < 0 or candidate >= limit:
            return -1
        if frame_at(data, candidate) >= 0:
            return candidate


def find_next_frame(data: bytes, start: int) -> int:
    """The first offset after ``start`` where a valid frame begins, or -1 (resynchronising)."""
    return first_frame(data, start + 1, len(data))
