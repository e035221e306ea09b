"""Sans-I/O, strict HTTP/1.1 request-head parser for the proxy's client side (RFC 9112).

Bytes in, a `RequestHead` (or None: "need more bytes") out; anything malformed raises
`ProtocolError`, whose `status` is the response to send before closing the connection.

Speed: the common case (a small head in one buffer) costs one `find`, one latin-1 decode, one
request-line regex, one `findall` over the field block (name and OWS-stripped value come out
of the regex as str pairs) plus one `count` proving the matches tile the block, one more
`findall` for the five fields that decide framing, and a few dict/str operations. All byte
validation happens inside compiled regexes; there is no per-byte Python loop.

Strictness (each choice closes a request-smuggling door): bare LF and bare CR are rejected,
obs-fold is rejected, Transfer-Encoding together with Content-Length is rejected, unknown
transfer codings get 501, differing Content-Length values get 400.

The function is stateless: the caller keeps one growing buffer per connection and calls again
when more bytes arrive, so cost per call is linear in the buffer, bounded by `max_head_bytes`.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "CHUNKED",
    "NO_BODY",
    "BodyFraming",
    "Framing",
    "Length",
    "LengthBodyReader",
    "ProtocolError",
    "RequestHead",
    "parse_field_lines",
    "parse_request_head",
]


class ProtocolError(Exception):
    """The peer sent bytes that are not an acceptable HTTP/1.1 request.

    `status` (400, 414, 417, 431, 501, 505) is the response to send; `reason` is short and safe
    to send to the client. The connection must always be closed after answering.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


class Framing(enum.Enum):
    """How the request body is delimited (RFC 9112 §6.3), when it is not a `Length`."""

    NO_BODY = "no-body"
    CHUNKED = "chunked"


NO_BODY = Framing.NO_BODY
CHUNKED = Framing.CHUNKED


@dataclass(frozen=True, slots=True)
class Length:
    """A body of exactly `size_bytes` bytes (RFC 9112 §6.3 rule 6)."""

    size_bytes: int


BodyFraming: TypeAlias = Framing | Length


@dataclass(slots=True)
class RequestHead:
    method: str
    target: str
    version: tuple[int, int]
    headers: list[tuple[str, str]]
    keep_alive: bool
    body: BodyFraming
    expect_continue: bool


_TCHAR = r"!#$%&'*+\-.^_`|~0-9A-Za-z"  # RFC 9110 §5.6.2
_VCHAR_OBS = r"!-~\x80-\xff"  # VCHAR / obs-text, RFC 9110 §5.5
_REQUEST_LINE = re.compile(rf"([{_TCHAR}]+) ([{_VCHAR_OBS}]+) HTTP/([0-9]\.[0-9])\r\n")
_VERSIONS = {"1.1": (1, 1), "1.0": (1, 0)}
# A field line (RFC 9112 §5): no space before the colon, value OWS-stripped by the regex itself.
# `^` only matches at line starts; parse_field_lines proves the matches tile the block.
_FIELD_LINE = re.compile(
    rf"^([{_TCHAR}]+):[ \t]*((?:[\t {_VCHAR_OBS}]*[{_VCHAR_OBS}])?)[ \t]*\r\n", re.M
)
_FRAMING_FIELD = re.compile(
    rf"\n(host|content-length|transfer-encoding|connection|expect):[ \t]*"
    rf"((?:[\t {_VCHAR_OBS}]*[{_VCHAR_OBS}])?)[ \t]*\r(?=\n)",
    re.I | re.A,
)
_HOST_PORT = (
    r"(?:\[[0-9A-Fa-f:.]+\]|\[[vV][0-9A-Fa-f]+\.[-A-Za-z0-9._~!$&'()*+,;=:]+\]"
    r"|[-A-Za-z0-9._~%!$&'()*+,;=]{HOST_LEN})(?::([0-9]*))?"
)
_HOST = re.compile(_HOST_PORT.replace("{HOST_LEN}", "*"))  # RFC 9110 §7.2: may be empty
_AUTHORITY = re.compile(_HOST_PORT.replace("{HOST_LEN}", "+"))
_ABSOLUTE_FORM = re.compile(
    r"[Hh][Tt][Tt][Pp][Ss]?://"
    + _HOST_PORT.replace("{HOST_LEN}", "+")
    + r"(?:[/?][!-~\x80-\xff]*)?"
)
_LEADING_EMPTY_LINES = re.compile(rb"(?:\r\n)*")
# CTLs other than HTAB/CR/LF, an LF without CR before it, a CR followed by anything but LF.
_BAD_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|(?<!\r)\n|\r(?=[^\n])")
_REQUEST_LINE_PREFIX = re.compile(
    rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?: (?:[!-~\x80-\xff]+"
    rb"(?: (?:H(?:T(?:T(?:P(?:/(?:[0-9](?:\.[0-9]?)?)?)?)?)?)?)?)?)?)?)?\r?"
)
_FIELD_LINE_PREFIX = re.compile(rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?::[\t !-~\x80-\xff]*)?)?\r?")
_KNOWN_CODINGS = frozenset({"gzip", "x-gzip", "deflate", "compress", "x-compress"})
_TRANSFER_CODING = re.compile(rf"([{_TCHAR}]+)((?:[ \t]*;[ \t]*[{_TCHAR}]+=[^;,]*)*)")
_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")  # below 2**63; longer is absurd -> 400
_PORT_MAX = 65535
_HOST_NAMES = frozenset({"Host", "host", "HOST"})


def parse_request_head(
    buffer: bytes | bytearray,
    *,
    max_head_bytes: int = 65536,
    max_line_bytes: int = 8192,
    max_headers: int = 100,
) -> tuple[RequestHead, int] | None:
    """Parse one request head from the start of `buffer`.

    Returns (head, bytes consumed including leading empty lines and the final CRLFCRLF), or
    None if the head is incomplete and nothing seen so far is invalid. Raises ProtocolError.
    """
    start = 0
    if buffer[:1] < b"!":  # CR, LF (or an invalid byte, or nothing yet)
        start = _skip_empty_lines(buffer)  # RFC 9112 §2.2
    end = buffer.find(b"\r\n\r\n", start)
    if end < 0:
        _check_partial_head(buffer, start, max_head_bytes, max_line_bytes, max_headers)
        return None
    if end + 4 > max_head_bytes:
        raise ProtocolError(431, "request header too large")
    text = buffer[start : end + 2].decode("latin-1")
    match = _REQUEST_LINE.match(text)
    if match is None:
        raise _request_line_error(text, max_line_bytes)
    method, target, version_text = match.groups()
    pos = match.end()
    if pos > max_line_bytes + 2:
        raise ProtocolError(414, "request line too long")
    version = _VERSIONS.get(version_text)
    if version is None:
        raise ProtocolError(505, "HTTP version not supported")
    if target[0] != "/" or method == "CONNECT":
        _check_target_form(method, target)
    headers = parse_field_lines(text, pos)
    if len(headers) > max_headers:
        raise ProtocolError(431, "too many header fields")
    if len(text) - pos > max_line_bytes:
        _check_field_line_lengths(text, pos, max_line_bytes)
    body: BodyFraming
    if len(headers) == 1 and headers[0][0] in _HOST_NAMES and _is_valid_host(headers[0][1]):
        body, keep_alive, expect_continue = NO_BODY, version == (1, 1), False  # wrk's request
    else:
        framing_fields = _FRAMING_FIELD.findall(text, pos - 1)
        body, keep_alive, expect_continue = _read_framing(framing_fields, version)
    head = RequestHead(method, target, version, headers, keep_alive, body, expect_continue)
    return head, end + 4


def parse_field_lines(text: str, pos: int = 0) -> list[tuple[str, str]]:
    """Split `text[pos:]`, a run of CRLF-terminated field lines, into (name, value) pairs.

    Every match starts at a line start and holds exactly one LF, so as many matches as LFs
    means the matches tile the block: nothing was skipped (RFC 9112 §5, §5.2 obs-fold).
    """
    fields: list[tuple[str, str]] = _FIELD_LINE.findall(text, pos)
    if len(fields) != text.count("\n", pos):
        raise ProtocolError(400, "invalid header field")
    return fields


def _skip_empty_lines(buffer: bytes | bytearray) -> int:
    match = _LEADING_EMPTY_LINES.match(buffer)
    assert match is not None  # the pattern matches the empty string
    start = match.end()
    rest = buffer[start : start + 2]
    if rest[:1] == b"\n" or (rest[:1] == b"\r" and rest != b"\r" and rest != b"\r\n"):
        raise ProtocolError(400, "bare CR or LF")
    return start


def _check_partial_head(
    buffer: bytes | bytearray, start: int, max_head: int, max_line: int, max_headers: int
) -> None:
    """Raise early when the incomplete head is already known bad (same checks, same order)."""
    if len(buffer) > max_head:
        raise ProtocolError(431, "request header too large")
    if _BAD_BYTES.search(buffer, start) is not None:
        raise ProtocolError(400, "invalid byte in request head")
    line_end = buffer.find(b"\r\n", start)
    if line_end < 0:
        if len(buffer) - start > max_line:
            raise ProtocolError(414, "request line too long")
        if _REQUEST_LINE_PREFIX.fullmatch(buffer, start) is None:
            raise ProtocolError(400, "invalid request line")
        return
    last = buffer.rfind(b"\r\n")
    text = buffer[start : last + 2].decode("latin-1")
    match = _REQUEST_LINE.match(text)
    if match is None:
        raise _request_line_error(text, max_line)
    pos = match.end()
    if pos > max_line + 2:
        raise ProtocolError(414, "request line too long")
    if match.group(3) not in _VERSIONS:
        raise ProtocolError(505, "HTTP version not supported")
    if match.group(2)[0] != "/" or match.group(1) == "CONNECT":
        _check_target_form(match.group(1), match.group(2))
    if len(parse_field_lines(text, pos)) > max_headers:
        raise ProtocolError(431, "too many header fields")
    _check_field_line_lengths(text, pos, max_line)
    if len(buffer) - last - 2 > max_line:
        raise ProtocolError(431, "header field line too long")
    if _FIELD_LINE_PREFIX.fullmatch(buffer, last + 2) is None:
        raise ProtocolError(400, "invalid header field")


def _request_line_error(text: str, max_line_bytes: int) -> ProtocolError:
    if text.find("\r\n") > max_line_bytes:
        return ProtocolError(414, "request line too long")
    return ProtocolError(400, "invalid request line")


def _check_target_form(method: str, target: str) -> None:
    """RFC 9112 §3.2: authority-form only for CONNECT, asterisk-form only for OPTIONS."""
    if method == "CONNECT":
        if _AUTHORITY.fullmatch(target) is None or target.endswith(":"):
            raise ProtocolError(400, "invalid CONNECT target")
        _check_port(target.rpartition(":")[2])
    elif target == "*":
        if method != "OPTIONS":
            raise ProtocolError(400, "asterisk-form only for OPTIONS")
    elif target[0] != "/":
        match = _ABSOLUTE_FORM.fullmatch(target)
        if match is None:
            raise ProtocolError(400, "invalid request target")
        _check_port(match.group(1))


def _check_port(port: str | None) -> None:
    if port and (len(port) > 5 or int(port) > _PORT_MAX):
        raise ProtocolError(400, "invalid port")


def _check_field_line_lengths(text: str, pos: int, max_line_bytes: int) -> None:
    for line in text[pos:].split("\r\n"):
        if len(line) + 2 > max_line_bytes:
            raise ProtocolError(431, "header field line too long")


def _read_framing(
    fields: list[tuple[str, str]], version: tuple[int, int]
) -> tuple[BodyFraming, bool, bool]:
    """Body framing (RFC 9112 §6), persistence (§9.3) and Expect (RFC 9110 §10.1.1)."""
    hosts = 0
    lengths: list[str] = []
    codings: list[str] = []
    connection: list[str] = []
    expect: list[str] = []
    for name, value in fields:
        lowered = name.lower()
        if lowered == "host":
            hosts += 1
            _check_host(value)
        elif lowered == "content-length":
            lengths.append(value)
        elif lowered == "transfer-encoding":
            codings.append(value)
        elif lowered == "connection":
            connection.append(value)
        else:
            expect.append(value)
    if hosts != 1 and (hosts or version == (1, 1)):
        raise ProtocolError(400, "missing or repeated Host")  # RFC 9112 §3.2
    body: BodyFraming = NO_BODY
    if codings:
        body = _read_transfer_coding(codings, bool(lengths), version)
    elif lengths:
        body = _read_content_length(lengths)
    keep_alive = version == (1, 1)
    if connection:  # RFC 9112 §9.3: "close" always wins
        options = _split_list(connection)
        keep_alive = "close" not in options and (keep_alive or "keep-alive" in options)
    return body, keep_alive, bool(expect) and _read_expect(expect, version)


def _split_list(values: list[str]) -> list[str]:
    """RFC 9110 §5.6.1 list elements, lowercased, empty elements dropped."""
    items = (item.strip(" \t").lower() for value in values for item in value.split(","))
    return [item for item in items if item]


def _check_host(value: str) -> None:
    if not _is_valid_host(value):
        raise ProtocolError(400, "invalid Host")


@functools.lru_cache(maxsize=1024)
def _is_valid_host(value: str) -> bool:
    """RFC 9110 §7.2 uri-host [":" port]; memoised: a proxy sees few distinct Host values."""
    match = _HOST.fullmatch(value)
    if match is None:
        return False
    port = match.group(1)
    return not port or (len(port) <= 5 and int(port) <= _PORT_MAX)


def _read_transfer_coding(
    codings: list[str], has_length: bool, version: tuple[int, int]
) -> Framing:
    """RFC 9112 §6.1 and §6.3: chunked must be final and appear once; we know a few codings."""
    if has_length:
        raise ProtocolError(400, "both Transfer-Encoding and Content-Length")
    if version == (1, 0):
        raise ProtocolError(400, "Transfer-Encoding in HTTP/1.0")
    names: list[str] = []
    for item in _split_list(codings):
        match = _TRANSFER_CODING.fullmatch(item)
        if match is None:
            raise ProtocolError(400, "invalid Transfer-Encoding")
        name = match.group(1)
        if name == "chunked" and match.group(2):
            raise ProtocolError(400, "chunked takes no parameters")
        if name != "chunked" and name not in _KNOWN_CODINGS:
            raise ProtocolError(501, "unknown transfer coding")
        names.append(name)
    if not names or names[-1] != "chunked":
        raise ProtocolError(400, "chunked must be the final transfer coding")
    if names.count("chunked") > 1:
        raise ProtocolError(400, "chunked applied more than once")
    return CHUNKED


def _read_content_length(values: list[str]) -> Length:
    """RFC 9112 §6.3 rule 5, RFC 9110 §8.6: 1*DIGIT; identical repeats count as one."""
    sizes: set[int] = set()
    for value in values:
        for item in value.split(","):
            digits = item.strip(" \t")
            if _CONTENT_LENGTH.fullmatch(digits) is None:
                raise ProtocolError(400, "invalid Content-Length")
            sizes.add(int(digits))
    if len(sizes) != 1:
        raise ProtocolError(400, "conflicting Content-Length")
    return Length(sizes.pop())


def _read_expect(values: list[str], version: tuple[int, int]) -> bool:
    """RFC 9110 §10.1.1: only 100-continue is known; ignored in an HTTP/1.0 request."""
    items = _split_list(values)
    if not items or any(item != "100-continue" for item in items):
        raise ProtocolError(417, "unsupported expectation")
    return version == (1, 1)


class LengthBodyReader:
    """Delimits a body of `size_bytes` bytes (RFC 9112 §6.2); the rest is the next request."""

    __slots__ = ("_remaining_bytes",)

    def __init__(self, size_bytes: int) -> None:
        if size_bytes < 0:
            raise ValueError("size_bytes must be >= 0")
        self._remaining_bytes = size_bytes

    @property
    def is_complete(self) -> bool:
        return self._remaining_bytes == 0

    def feed(self, data: bytes) -> tuple[list[bytes], bool, bytes]:
        """Return (body pieces, message complete?, leftover bytes for the next request)."""
        remaining = self._remaining_bytes
        if len(data) < remaining:
            self._remaining_bytes = remaining - len(data)
            return ([bytes(data)] if data else []), False, b""
        self._remaining_bytes = 0
        piece = bytes(data[:remaining])
        return ([piece] if piece else []), True, bytes(data[remaining:])
