"""Spool segment framing: pure encode/decode of length-prefixed, checksummed frames (no I/O).

A frame is ``[u32 length, big-endian][u32 CRC-32 of (length bytes || payload)][payload]``.
The checksum covers the length too, so a bit flip in a length field is caught instead of
sending the decoder off by a wrong amount. CRC-32 (zlib, C speed, in the standard library)
rather than CRC-32C: both detect every burst of up to 32 flipped bits and all odd-weight errors;
the hardware advantage of CRC-32C is unavailable from the standard library.

Decoding never raises on bad input: ``scan_frames`` returns the valid prefix and where it
stopped, and ``find_next_frame`` looks for the next offset at which a valid frame starts (for
resynchronising after a corrupt region). Records are canonical JSON objects, so a frame's payload
starts with ``{``; only offsets with that byte are tried, which keeps resync linear in practice.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

FRAME_HEADER_BYTES = 8
MAX_PAYLOAD_BYTES = 1 << 20  # one record is a few hundred bytes; anything larger is corruption
_HEADER = struct.Struct(">II")
_LENGTH = struct.Struct(">I")
_crc32 = zlib.crc32


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


def find_next_frame(data: bytes, start: int) -> int:
    """The first offset after ``start`` where a valid frame begins, or -1 (resynchronising)."""
    position = start
    while True:
        position = data.find(b"{", position + FRAME_HEADER_BYTES + 1)
        if position < 0:
            return -1
        candidate = position - FRAME_HEADER_BYTES
        if frame_at(data, candidate) >= 0:
            return candidate
        position = candidate
