"""proxy.partial: 206/416 answers cut from a stored full response (RFC 9110 §14, §13.1.5)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.cache.entry import StoredResponse
from proxy.http.ranges import ByteRange
from proxy.partial import render_partial, render_unsatisfiable, select_ranges
from tests.unit.cache_builders import T0, http_date, stored_response

BODY = b"0123456789"
VIA = "1.1 cachet"


def _stored(status: int = 200, body: bytes = BODY) -> StoredResponse:
    return stored_response(
        [
            ("Cache-Control", "max-age=60"),
            ("ETag", '"t"'),
            ("Last-Modified", http_date(T0 - 10)),
            ("Content-Type", "text/plain"),
            ("Surrogate-Key", "a b"),
        ],
        status=status,
        body=body,
    )


def test_single_range_is_206_with_content_range_rfc9110_s14_4() -> None:
    stored = stored_response([("Cache-Control", "max-age=60"), ("Surrogate-Key", "a")], body=BODY)
    answer = render_partial(stored, [ByteRange(2, 4)], VIA, "b")
    assert answer.status == 206
    assert answer.body == b"234"
    head = answer.head.decode()
    assert head.startswith("HTTP/1.1 206 Partial Content\r\n")
    assert "Content-Range: bytes 2-4/10\r\n" in head
    assert "Content-Length: 3\r\n" in head
    assert "Surrogate-Key" not in head
    assert head.count("Content-Length") == 1


def test_multiple_ranges_are_multipart_with_type_per_part_rfc9110_s14_6() -> None:
    stored = _stored()
    answer = render_partial(stored, [ByteRange(0, 0), ByteRange(8, 9)], VIA, "BOUND")
    head = answer.head.decode()
    assert "Content-Type: multipart/byteranges; boundary=BOUND\r\n" in head
    assert "Content-Type: text/plain\r\n" not in head
    assert f"Content-Length: {len(answer.body)}\r\n" in head
    assert answer.body.endswith(b"--BOUND--\r\n")
    assert b"Content-Type: text/plain\r\nContent-Range: bytes 8-9/10\r\n\r\n89\r\n" in answer.body


def test_unsatisfiable_is_416_with_star_length_rfc9110_s15_5_17() -> None:
    answer = render_unsatisfiable(_stored(), VIA)
    head = answer.head.decode()
    assert answer.status == 416
    assert "Content-Range: bytes */10\r\n" in head
    assert "Content-Length: 0\r\n" in head
    assert answer.body == b""


def test_select_only_full_200s_and_a_single_range_field_rfc9110_s14_2() -> None:
    assert select_ranges(_stored(), ["bytes=0-1"], []) == [ByteRange(0, 1)]
    assert select_ranges(_stored(status=404), ["bytes=0-1"], []) is None
    assert select_ranges(_stored(), ["bytes=0-1", "bytes=2-3"], []) is None
    assert select_ranges(_stored(), ["bytes=20-"], []) == "unsatisfiable"


def test_if_range_strong_etag_or_exact_date_rfc9110_s13_1_5() -> None:
    stored = _stored()
    assert select_ranges(stored, ["bytes=0-1"], ['"t"']) is not None
    assert select_ranges(stored, ["bytes=0-1"], ['"u"']) is None
    assert select_ranges(stored, ["bytes=0-1"], ['W/"t"']) is None
    assert select_ranges(stored, ["bytes=0-1"], [http_date(T0 - 10)]) is not None
    assert select_ranges(stored, ["bytes=0-1"], ['"t"', '"t"']) is None


@settings(max_examples=60, deadline=None)
@given(body=st.binary(min_size=1, max_size=64), data=st.data())
def test_single_part_bytes_are_the_slice_rfc9110_s14_1_2(body: bytes, data: st.DataObject) -> None:
    first = data.draw(st.integers(0, len(body) - 1))
    last = data.draw(st.integers(first, len(body) - 1))
    stored = stored_response([("Cache-Control", "max-age=60")], body=body)
    answer = render_partial(stored, [ByteRange(first, last)], VIA, "x")
    assert answer.body == body[first : last + 1]
    assert f"Content-Range: bytes {first}-{last}/{len(body)}".encode() in answer.head
