"""Range answers from a stored full response (RFC 9110 §14): 206 with one part, 206
multipart/byteranges with several, 416 when nothing is satisfiable. Pure byte building over
proxy.http.ranges; the handler draws the multipart boundary and decides when ranges apply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from proxy.cache.entry import StoredResponse
from proxy.cache.surrogate import SURROGATE_FIELDS
from proxy.http.dates import parse_http_date
from proxy.http.fields import Headers, get_first, get_values
from proxy.http.ranges import (
    ByteRange,
    content_range,
    if_range_allows,
    multipart_byteranges,
    multipart_content_type,
    multipart_length,
    multipart_part_head,
    multipart_tail,
    parse_range_header,
    unsatisfied_range,
)
from proxy.http.wire import serialize_fields, serialize_status_line

_REPLACED_FIELDS = frozenset({"content-length", "content-range", "via"}) | SURROGATE_FIELDS
# The fields a 416 from the cache keeps from the stored response (its validators and date).
_UNSATISFIED_FIELDS = frozenset({"date", "etag", "last-modified"})
_VIA = frozenset({"via"})

Selection = list[ByteRange] | Literal["unsatisfiable"] | None


@dataclass(frozen=True, slots=True)
class PartialAnswer:
    status: int  # 206 or 416
    head: bytes  # status line and fields, without Age and the per-response trailer
    body: bytes


def select_ranges(
    stored: StoredResponse, range_values: list[str], if_range: list[str]
) -> Selection:
    """What a GET's Range asks of ``stored``: the ranges (206), "unsatisfiable" (416), or None
    to send the whole 200 (RFC 9110 §14.2: a server MAY ignore Range; §13.1.5 If-Range)."""
    return select_ranges_of(stored, len(stored.body), range_values, if_range)


def select_ranges_of(
    stored: StoredResponse, length: int, range_values: list[str], if_range: list[str]
) -> Selection:
    """`select_ranges` for a body of ``length`` bytes kept elsewhere (a large disk entry's
    file: ``stored.body`` is empty)."""
    validators = (stored.etag, stored.last_modified, stored.date_value)
    return _select(stored.status, validators, length, range_values, if_range)


def select_ranges_in(
    status: int, headers: Headers, length: int, range_values: list[str], if_range: list[str]
) -> Selection:
    """`select_ranges_of` for a response not stored (yet), such as a fill's head: its
    validators read from ``headers`` as admission reads them. Without a Date, an If-Range date
    never matches (Last-Modified can't be shown strong, §8.8.2.2): the whole 200 is sent."""
    etags = get_values(headers, "etag")
    modified = get_values(headers, "last-modified")
    dates = get_values(headers, "date")
    validators = (
        etags[0].strip() if etags else None,
        parse_http_date(modified[0]) if modified else None,
        parse_http_date(dates[0]) if dates else None,
    )
    return _select(status, validators, length, range_values, if_range)


def _select(
    status: int,
    validators: tuple[str | None, float | None, float | None],
    length: int,
    range_values: list[str],
    if_range: list[str],
) -> Selection:
    if status != 200 or len(range_values) != 1:
        return None  # only full 200s are sliced; Range is a singleton field
    if if_range and not (len(if_range) == 1 and if_range_allows(if_range[0], *validators)):
        return None
    result = parse_range_header(range_values[0], length)
    return None if result == "ignore" else result


def partial_head(
    stored: StoredResponse,
    byte_range: ByteRange,
    length: int,
    via: str,
    extra_fields: Headers | None = None,
) -> bytes:
    """The head of a one-part 206 (§14.4, §15.3.7) for ``byte_range`` of a ``length``-byte
    body, whose bytes the caller sends (streamed from a file); without Age and the trailer."""
    fields = _fields_without(partial_fields(stored.headers, byte_range, length), _VIA)
    fields.append(("Via", _via(stored.headers, via)))
    if extra_fields:
        fields += extra_fields
    return serialize_status_line(206, "Partial Content") + serialize_fields(fields)


def render_partial(
    stored: StoredResponse,
    ranges: list[ByteRange],
    via: str,
    boundary: str,
    extra_fields: Headers | None = None,
) -> PartialAnswer:
    """206 Partial Content for ``ranges`` of ``stored`` (§14.4, §14.6, §15.3.7). Multiple ranges
    become multipart/byteranges; ValueError if ``boundary`` occurs in the body (draw again)."""
    length = len(stored.body)
    fields = _fields_without(stored.headers, _REPLACED_FIELDS)
    if len(ranges) == 1:
        r = ranges[0]
        body = stored.body[r.first : r.last + 1]
        fields.append(("Content-Range", content_range(r, length)))
    else:
        content_type = get_first(stored.headers, "content-type")
        body, media_type = multipart_byteranges(ranges, length, content_type, stored.body, boundary)
        fields = [(n, v) for n, v in fields if n.lower() != "content-type"]
        fields.append(("Content-Type", media_type))
    fields.append(("Content-Length", str(len(body))))
    fields.append(("Via", _via(stored.headers, via)))
    if extra_fields:
        fields += extra_fields
    head = serialize_status_line(206, "Partial Content") + serialize_fields(fields)
    return PartialAnswer(206, head, body)


@dataclass(frozen=True, slots=True)
class StreamedParts:
    """A 206 multipart/byteranges whose part bytes the caller streams from a file (§14.6):
    the head, then for each part its delimiter and fields, its range's bytes and CRLF, then
    the close-delimiter. ``delimiter`` is what the part bytes must not contain (checked as
    they stream: the boundary could not be drawn against a body that was never read)."""

    head: bytes  # status line and fields, without Age and the per-response trailer
    parts: tuple[tuple[bytes, ByteRange], ...]
    tail: bytes
    body_bytes: int
    delimiter: bytes


def plan_multipart(
    stored: StoredResponse,
    ranges: list[ByteRange],
    length: int,
    via: str,
    boundary: str,
    extra_fields: Headers | None = None,
) -> StreamedParts:
    """The multipart 206 `render_partial` would build for ``ranges`` of a ``length``-byte body
    kept elsewhere, as pieces to stream: the same bytes once the parts' bytes are in place."""
    content_type = get_first(stored.headers, "content-type")
    fields = _fields_without(stored.headers, _REPLACED_FIELDS)
    fields = [(n, v) for n, v in fields if n.lower() != "content-type"]
    fields.append(("Content-Type", multipart_content_type(boundary)))
    body_bytes = multipart_length(ranges, length, content_type, boundary)
    fields.append(("Content-Length", str(body_bytes)))
    fields.append(("Via", _via(stored.headers, via)))
    if extra_fields:
        fields += extra_fields
    head = serialize_status_line(206, "Partial Content") + serialize_fields(fields)
    parts = tuple((multipart_part_head(r, length, content_type, boundary), r) for r in ranges)
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    return StreamedParts(head, parts, multipart_tail(boundary), body_bytes, delimiter)


def render_unsatisfiable(
    stored: StoredResponse, via: str, length: int | None = None
) -> PartialAnswer:
    """416 Range Not Satisfiable with ``Content-Range: bytes */length`` (§15.5.17); ``length``
    when the body is kept elsewhere."""
    length = len(stored.body) if length is None else length
    fields = _fields_without(unsatisfied_fields(stored.headers, length), _VIA)
    fields.append(("Via", _via(stored.headers, via)))
    head = serialize_status_line(416, "Range Not Satisfiable") + serialize_fields(fields)
    return PartialAnswer(416, head, b"")


def partial_fields(headers: Headers, byte_range: ByteRange, length: int) -> Headers:
    """The fields of a one-part 206 for ``byte_range`` of the ``length``-byte body of a 200
    with ``headers`` (§14.4, §15.3.7), their Via left as it came: for a head that is not a
    stored one's (a fill's, whose Via and per-response fields the forwarding path adds)."""
    fields = _fields_without(headers, _REPLACED_FIELDS - _VIA)
    fields.append(("Content-Range", content_range(byte_range, length)))
    fields.append(("Content-Length", str(byte_range.size_bytes)))
    return fields


def unsatisfied_fields(headers: Headers, length: int) -> Headers:
    """The fields of a 416 for a ``length``-byte body (§15.5.17), Via left as it came."""
    fields = [(n, v) for n, v in headers if n.lower() in _UNSATISFIED_FIELDS | _VIA]
    fields.append(("Content-Range", unsatisfied_range(length)))
    fields.append(("Content-Length", "0"))
    return fields


def _fields_without(headers: Headers, names: frozenset[str]) -> Headers:
    return [(n, v) for n, v in headers if n.lower() not in names]


def _via(headers: Headers, via: str) -> str:
    return ", ".join([*get_values(headers, "via"), via])
