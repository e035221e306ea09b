"""Range requests served from a complete stored representation (RFC 9110 §14, §13.1.5).

The cache holds full (200) responses; this module decides which bytes of one a Range request
asks for and frames them. Pure: no I/O, no clock, no randomness (the multipart boundary is a
parameter).

Decisions, each for a reason:

- ``parse_range_header`` answers ``"ignore"`` (serve 200 with the full body) for anything it
  will not honour: an unknown range unit (§14.2), a syntactically invalid ranges-specifier
  (§14.1.1), ``last-pos < first-pos`` (an invalid int-range), and the abusive sets §14.2 and
  §17.15 allow a server to ignore: more than :data:`MAX_RANGE_SPECS` range-specs, or more than
  :data:`MAX_UNORDERED_RANGES` disjoint ranges not listed in ascending order.
- Ranges that overlap or touch are coalesced (§14.2 allows it "regardless of the order"), so a
  ``bytes=0-,0-,0-`` request never multiplies the body; the coalesced set is in ascending
  order. Otherwise the request order is kept, as §14.6 asks.
- Unsatisfiable range-specs are dropped when others are satisfiable; if none is, the answer is
  ``"unsatisfiable"`` (416 with ``Content-Range: bytes */length``, §15.5.17).
- A zero-length representation: an int-range is unsatisfiable, a non-zero suffix-range is
  "satisfiable" (§14.1.1) but selects no byte and cannot be written as a Content-Range, so
  it is ignored (the empty 200 is exactly what it asked for).
- Numbers of any length are accepted; digits beyond what any length could reach are read as
  "huge" without building giant integers (Python refuses to parse > 4300 digits).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal, TypeAlias

from proxy.http.dates import parse_http_date
from proxy.http.etags import parse_etag, strong_match

__all__ = [
    "MAX_RANGE_SPECS",
    "MAX_UNORDERED_RANGES",
    "ByteRange",
    "content_range",
    "if_range_allows",
    "multipart_byteranges",
    "multipart_content_type",
    "multipart_length",
    "multipart_part_head",
    "multipart_tail",
    "parse_range_header",
    "unsatisfied_range",
]

MAX_RANGE_SPECS = 100  # RFC 9110 §14.2, §17.15: a server MAY ignore absurd range sets
MAX_UNORDERED_RANGES = 16  # §14.2: "many small ranges that are not listed in ascending order"
_HUGE = 10**18  # larger than any representation length we will ever hold
_MAX_DIGITS = 18
_OWS = " \t"
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 §5.6.2
_DIGITS = re.compile(r"[0-9]+")
_BCHARS = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")  # RFC 2046
_CRLF = b"\r\n"


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Inclusive byte positions ``first..last``, resolved against a known length."""

    first: int
    last: int

    def __post_init__(self) -> None:
        if self.first < 0 or self.last < self.first:
            raise ValueError(f"not a byte range: {self.first}-{self.last}")

    @property
    def size_bytes(self) -> int:
        return self.last - self.first + 1


ParseResult: TypeAlias = list[ByteRange] | Literal["ignore", "unsatisfiable"]


@dataclass(frozen=True, slots=True)
class _Spec:
    """A syntactically valid range-spec: ``first`` None for a suffix-range (§14.1.2)."""

    first: int | None
    last: int | None  # the suffix-length for a suffix-range; None for "first-"


def parse_range_header(value: str, length: int) -> ParseResult:
    """The byte ranges a Range field value selects from ``length`` bytes (RFC 9110 §14.2).

    Returns the ranges to send (206), ``"unsatisfiable"`` (416) or ``"ignore"`` (200 full);
    see the module docstring for the policy. Never raises for any ``value``.
    """
    if length < 0:
        raise ValueError("length must be >= 0")
    specs = _parse_specs(value)
    if specs is None or len(specs) > MAX_RANGE_SPECS:
        return "ignore"
    if length == 0:
        suffix = any(spec.first is None and spec.last != 0 for spec in specs)
        return "ignore" if suffix else "unsatisfiable"
    ranges = [r for r in (_resolve(spec, length) for spec in specs) if r is not None]
    if not ranges:
        return "unsatisfiable"
    if _has_overlap(ranges):
        return _coalesce(ranges)
    if len(ranges) > MAX_UNORDERED_RANGES and not _is_ascending(ranges):
        return "ignore"
    return ranges


def _parse_specs(value: str) -> list[_Spec] | None:
    """``range-unit "=" range-set`` with unit "bytes" (§14.1.1), or None if not that."""
    unit, equals, range_set = value.strip(_OWS).partition("=")
    if not equals or _TOKEN.fullmatch(unit) is None or unit.lower() != "bytes":
        return None
    specs: list[_Spec] = []
    for element in range_set.split(","):
        text = element.strip(_OWS)
        if not text:
            continue  # empty list elements are allowed (§5.6.1)
        spec = _parse_spec(text)
        if spec is None:
            return None
        specs.append(spec)
        if len(specs) > MAX_RANGE_SPECS:
            break
    return specs or None  # range-set is 1#range-spec


def _parse_spec(text: str) -> _Spec | None:
    first_text, dash, last_text = text.partition("-")
    if not dash:
        return None
    if not first_text:  # suffix-range = "-" suffix-length
        suffix = _read_number(last_text)
        return None if suffix is None else _Spec(first=None, last=suffix)
    first = _read_number(first_text)
    if first is None:
        return None
    if not last_text:  # int-range without last-pos
        return _Spec(first=first, last=None)
    last = _read_number(last_text)
    if last is None or last < first:  # §14.1.1: last-pos < first-pos is invalid
        return None
    return _Spec(first=first, last=last)


def _read_number(text: str) -> int | None:
    """``1*DIGIT`` (ASCII only), saturating at ``_HUGE``."""
    if _DIGITS.fullmatch(text) is None:
        return None
    significant = text.lstrip("0")
    if len(significant) > _MAX_DIGITS:
        return _HUGE
    return int(significant or "0")


def _resolve(spec: _Spec, length: int) -> ByteRange | None:
    """The satisfiable byte range for ``spec`` (§14.1.2), or None if unsatisfiable."""
    if spec.first is None:
        suffix = spec.last or 0
        if suffix == 0:
            return None
        return ByteRange(max(length - suffix, 0), length - 1)
    if spec.first >= length:
        return None
    last = length - 1 if spec.last is None else min(spec.last, length - 1)
    return ByteRange(spec.first, last)


def _has_overlap(ranges: Sequence[ByteRange]) -> bool:
    """Whether any two ranges overlap or are adjacent (no byte between them)."""
    ordered = sorted(ranges, key=lambda r: r.first)
    return any(b.first <= a.last + 1 for a, b in pairwise(ordered))


def _coalesce(ranges: Sequence[ByteRange]) -> list[ByteRange]:
    merged: list[ByteRange] = []
    for r in sorted(ranges, key=lambda r: r.first):
        if merged and r.first <= merged[-1].last + 1:
            top = merged[-1]
            merged[-1] = ByteRange(top.first, max(top.last, r.last))
        else:
            merged.append(r)
    return merged


def _is_ascending(ranges: Sequence[ByteRange]) -> bool:
    return all(a.last < b.first for a, b in pairwise(ranges))


def if_range_allows(
    if_range_value: str,
    etag: str | None,
    last_modified: float | None,
    date_value: float | None,
) -> bool:
    """Evaluate If-Range against the stored response (RFC 9110 §13.1.5).

    True: honour the Range header; False: ignore it and send the full 200. An entity-tag
    must strongly match the stored ETag (a weak tag on either side never matches). An
    HTTP-date must equal ``last_modified`` exactly and Last-Modified must be a strong
    validator: the stored Date at least one second later (§8.8.2.2). Anything else,
    including an invalid value, is False.
    """
    text = if_range_value.strip(_OWS)
    if text.startswith(('"', "W/")):
        tag = parse_etag(text)
        current = parse_etag(etag) if etag is not None else None
        return tag is not None and current is not None and strong_match(tag, current)
    since_s = parse_http_date(text)
    if since_s is None or last_modified is None or date_value is None:
        return False
    return since_s == last_modified and date_value - last_modified >= 1


def content_range(r: ByteRange, length: int) -> str:
    """The Content-Range value for one range of a 206 (§14.4): ``bytes 0-499/1234``."""
    if r.last >= length:
        raise ValueError(f"range {r.first}-{r.last} outside length {length}")
    return f"bytes {r.first}-{r.last}/{length}"


def unsatisfied_range(length: int) -> str:
    """The Content-Range value for a 416 (§14.4, §15.5.17): ``bytes */1234``."""
    return f"bytes */{length}"


def multipart_content_type(boundary: str) -> str:
    """The Content-Type of a multipart/byteranges body (§14.6, RFC 2046 §5.1.1)."""
    _check_boundary(boundary)
    if _TOKEN.fullmatch(boundary):
        return f"multipart/byteranges; boundary={boundary}"
    return f'multipart/byteranges; boundary="{boundary}"'


def multipart_part_head(
    r: ByteRange, length: int, content_type: str | None, boundary: str
) -> bytes:
    """Delimiter and header section of one part (§14.6); the part's bytes and CRLF follow."""
    _check_boundary(boundary)
    lines = [f"--{boundary}"]
    if content_type is not None:
        if "\r" in content_type or "\n" in content_type:
            raise ValueError("content_type must not contain CR or LF")
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Range: {content_range(r, length)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def multipart_tail(boundary: str) -> bytes:
    """The close-delimiter that ends the body (RFC 2046 §5.1.1)."""
    _check_boundary(boundary)
    return f"--{boundary}--\r\n".encode("latin-1")


def multipart_length(
    ranges: Sequence[ByteRange], length: int, content_type: str | None, boundary: str
) -> int:
    """The size of :func:`multipart_byteranges`' body, without building it (HEAD, CL)."""
    total = len(multipart_tail(boundary))
    for r in ranges:
        total += len(multipart_part_head(r, length, content_type, boundary))
        total += r.size_bytes + len(_CRLF)
    return total


def multipart_byteranges(
    ranges: Sequence[ByteRange],
    length: int,
    content_type: str | None,
    body: bytes,
    boundary: str,
) -> tuple[bytes, str]:
    """A multipart/byteranges body and its Content-Type value (RFC 9110 §14.6).

    Each part carries Content-Type (when known) and Content-Range, then the bytes
    ``body[first:last+1]`` and CRLF; the close-delimiter ends the body. Raises ValueError if
    ``body`` is not ``length`` bytes, or if a part's bytes contain the delimiter (the caller
    then draws another boundary).
    """
    if len(body) != length:
        raise ValueError(f"body is {len(body)} bytes, expected {length}")
    media_type = multipart_content_type(boundary)
    delimiter = _CRLF + b"--" + boundary.encode("latin-1")
    chunks: list[bytes] = []
    for r in ranges:
        data = body[r.first : r.last + 1]
        if delimiter in data or data.startswith(delimiter[2:]):
            raise ValueError("boundary occurs in the body; draw another")
        chunks += [multipart_part_head(r, length, content_type, boundary), data, _CRLF]
    chunks.append(multipart_tail(boundary))
    return b"".join(chunks), media_type


def _check_boundary(boundary: str) -> None:
    if _BCHARS.fullmatch(boundary) is None:
        raise ValueError(f"invalid multipart boundary: {boundary!r}")
