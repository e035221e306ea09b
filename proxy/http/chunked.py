"""Sans-I/O decoder for the chunked transfer coding of a request body (RFC 9112 §7.1).

`ChunkedBodyReader.feed(data)` accepts the bytes as they arrive, split anywhere (one byte at a
time works), and returns (body pieces, message complete?, leftover bytes of the next request).
Strict: chunk-size at most 16 hex digits, no whitespace after it except before an extension,
chunk data followed by exactly CRLF, bare CR/LF rejected, chunk-size line and trailer section
bounded. Trailer fields are validated like header fields, then discarded.
"""

from __future__ import annotations

import enum
import re

from proxy.http.request_parser import ProtocolError, parse_field_lines

__all__ = ["ChunkedBodyReader"]

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED_STRING = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'  # RFC 9110 §5.6.4
# RFC 9112 §7.1.1: chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]+)(?:[ \t]*;[ \t]*"
    + _TOKEN
    + rb"(?:[ \t]*=[ \t]*(?:"
    + _TOKEN
    + rb"|"
    + _QUOTED_STRING
    + rb"))?)*\r\n"
)
_HEX_PREFIX = re.compile(rb"[0-9A-Fa-f]*")
_BAD_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|(?<!\r)\n|\r(?=[^\n])")
_MAX_SIZE_DIGITS = 16  # 64-bit chunk sizes; more digits -> overflow -> 400


class _State(enum.Enum):
    SIZE_LINE = enum.auto()
    DATA = enum.auto()
    DATA_END = enum.auto()
    TRAILER = enum.auto()
    DONE = enum.auto()


class ChunkedBodyReader:
    """Decode one chunked request body; see the module docstring."""

    __slots__ = (
        "_max_line_bytes",
        "_max_trailer_bytes",
        "_max_trailers",
        "_pending",
        "_remaining_bytes",
        "_state",
    )

    def __init__(
        self, *, max_line_bytes: int = 4096, max_trailer_bytes: int = 16384, max_trailers: int = 100
    ) -> None:
        self._max_line_bytes = max_line_bytes
        self._max_trailer_bytes = max_trailer_bytes
        self._max_trailers = max_trailers
        self._state = _State.SIZE_LINE
        self._pending = b""
        self._remaining_bytes = 0

    @property
    def is_complete(self) -> bool:
        return self._state is _State.DONE

    def feed(self, data: bytes) -> tuple[list[bytes], bool, bytes]:
        """Return (body pieces, message complete?, leftover bytes for the next request)."""
        buf = self._pending + data if self._pending else bytes(data)
        pieces: list[bytes] = []
        pos = 0
        while pos >= 0 and self._state is not _State.DONE:
            state = self._state
            if state is _State.DATA:
                pos = self._read_data(buf, pos, pieces)
            elif state is _State.SIZE_LINE:
                pos = self._read_size_line(buf, pos)
            elif state is _State.DATA_END:
                pos = self._read_data_end(buf, pos)
            else:
                pos = self._read_trailer(buf, pos)
        if self._state is _State.DONE and pos >= 0:
            self._pending = b""
            return pieces, True, buf[pos:]
        return pieces, False, b""

    def _wait(self, buf: bytes, pos: int) -> int:
        self._pending = buf[pos:]
        return -1

    def _read_data(self, buf: bytes, pos: int, pieces: list[bytes]) -> int:
        available = len(buf) - pos
        if available == 0:
            return self._wait(buf, pos)
        take = min(available, self._remaining_bytes)
        pieces.append(buf[pos : pos + take])
        self._remaining_bytes -= take
        if self._remaining_bytes == 0:
            self._state = _State.DATA_END
        return pos + take

    def _read_size_line(self, buf: bytes, pos: int) -> int:
        end = buf.find(b"\r\n", pos)
        if end < 0 or end + 2 - pos > self._max_line_bytes:
            self._check_partial_size_line(buf, pos)
            return self._wait(buf, pos)
        match = _CHUNK_LINE.fullmatch(buf, pos, end + 2)
        if match is None:
            raise ProtocolError(400, "invalid chunk-size line")
        digits = match.group(1)
        if len(digits) > _MAX_SIZE_DIGITS:
            raise ProtocolError(400, "chunk size too large")
        size_bytes = int(digits, 16)
        if size_bytes == 0:
            self._state = _State.TRAILER  # last-chunk
        else:
            self._remaining_bytes = size_bytes
            self._state = _State.DATA
        return end + 2

    def _check_partial_size_line(self, buf: bytes, pos: int) -> None:
        if len(buf) - pos > self._max_line_bytes:
            raise ProtocolError(400, "chunk-size line too long")
        if _BAD_BYTES.search(buf, pos) is not None:
            raise ProtocolError(400, "invalid byte in chunk-size line")
        hex_match = _HEX_PREFIX.match(buf, pos)
        assert hex_match is not None  # the pattern matches the empty string
        hex_end = hex_match.end()
        if hex_end - pos > _MAX_SIZE_DIGITS:
            raise ProtocolError(400, "chunk size too large")
        if hex_end == pos and pos < len(buf):
            raise ProtocolError(400, "invalid chunk-size line")

    def _read_data_end(self, buf: bytes, pos: int) -> int:
        tail = buf[pos : pos + 2]
        if tail == b"\r\n":
            self._state = _State.SIZE_LINE
            return pos + 2
        if tail in (b"", b"\r"):
            return self._wait(buf, pos)
        raise ProtocolError(400, "chunk data not followed by CRLF")

    def _read_trailer(self, buf: bytes, pos: int) -> int:
        """RFC 9112 §7.1.2: trailer-section = *( field-line CRLF ), then the final CRLF."""
        head = buf[pos : pos + 2]
        if head == b"\r\n":
            self._state = _State.DONE
            return pos + 2
        if head in (b"", b"\r"):
            return self._wait(buf, pos)
        end = buf.find(b"\r\n\r\n", pos)
        if end < 0 or end + 4 - pos > self._max_trailer_bytes:
            if len(buf) - pos > self._max_trailer_bytes:
                raise ProtocolError(431, "trailer section too large")
            if _BAD_BYTES.search(buf, pos) is not None:
                raise ProtocolError(400, "invalid byte in trailer section")
            return self._wait(buf, pos)
        fields = parse_field_lines(buf[pos : end + 2].decode("latin-1"))
        if len(fields) > self._max_trailers:
            raise ProtocolError(431, "too many trailer fields")
        self._state = _State.DONE
        return end + 4
