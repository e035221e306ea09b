"""Range requests (proxy/http/ranges.py): RFC 9110 §14 (Range, Content-Range, multipart
/byteranges) and §13.1.5 (If-Range)."""

from __future__ import annotations

import calendar
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.http.ranges import (
    MAX_RANGE_SPECS,
    MAX_UNORDERED_RANGES,
    ByteRange,
    content_range,
    if_range_allows,
    multipart_byteranges,
    multipart_content_type,
    multipart_length,
    parse_range_header,
    unsatisfied_range,
)

R = ByteRange
LEN = 10_000  # the §14.1.2 examples assume a 10000-byte representation


# --- §14.1.2 examples -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes=0-499", [R(0, 499)]),  # the first 500 bytes
        ("bytes=500-999", [R(500, 999)]),  # the second 500 bytes
        ("bytes=-500", [R(9500, 9999)]),  # the final 500 bytes (suffix-range)
        ("bytes=9500-", [R(9500, 9999)]),  # the final 500 bytes (open-ended)
        ("bytes=0-0,-1", [R(0, 0), R(9999, 9999)]),  # first and last bytes only
        ("bytes=500-600,601-999", [R(500, 999)]),  # adjacent: coalesced
        ("bytes=500-700,601-999", [R(500, 999)]),  # overlapping: coalesced
    ],
)
def test_examples_rfc9110_s14_1_2(value: str, expected: list[ByteRange]) -> None:
    assert parse_range_header(value, LEN) == expected


def test_last_pos_clamped_to_length_rfc9110_s14_1_2() -> None:
    assert parse_range_header("bytes=9000-20000", LEN) == [R(9000, 9999)]
    assert parse_range_header("bytes=0-" + "9" * 5000, LEN) == [R(0, 9999)]


def test_suffix_larger_than_length_selects_everything_rfc9110_s14_1_2() -> None:
    assert parse_range_header("bytes=-20000", LEN) == [R(0, 9999)]
    assert parse_range_header("bytes=-" + "9" * 5000, 7) == [R(0, 6)]


def test_leading_zeros_rfc9110_s14_1_1() -> None:
    assert parse_range_header("bytes=0000000000000000000000000000010-011", LEN) == [R(10, 11)]


def test_whitespace_around_commas_and_empty_elements_rfc9110_s5_6_1() -> None:
    assert parse_range_header("bytes=0-1 ,\t5-6", LEN) == [R(0, 1), R(5, 6)]
    assert parse_range_header("bytes=0-1,, 5-6,", LEN) == [R(0, 1), R(5, 6)]


def test_unit_is_case_insensitive_rfc9110_s14_1() -> None:
    assert parse_range_header("Bytes=0-1", LEN) == [R(0, 1)]
    assert parse_range_header("BYTES=0-1", LEN) == [R(0, 1)]


def test_request_order_kept_when_disjoint_rfc9110_s14_6() -> None:
    assert parse_range_header("bytes=900-999,0-99", LEN) == [R(900, 999), R(0, 99)]


# --- ignored (serve 200) -----------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "",
        "bytes",
        "bytes=",
        "bytes=,",
        "bytes=-",
        "bytes=0",
        "bytes=a-b",
        "bytes=0-1-2",
        "bytes=1-0",  # last-pos < first-pos is an invalid int-range
        "bytes=0-1,5-4",  # one invalid range-spec spoils the set
        "bytes=0 -1",
        "bytes=0- 1",
        "bytes = 0-1",
        "bytes=+1-2",
        "bytes=-+1",
        "bytes=0x10-20",
        "bytes=١-٢",  # non-ASCII digits
        "bytes=0-1;q=1",
        "=0-1",
        "by tes=0-1",
    ],
)
def test_invalid_syntax_is_ignored_rfc9110_s14_1_1(value: str) -> None:
    assert parse_range_header(value, LEN) == "ignore"


@pytest.mark.parametrize("value", ["items=0-1", "none=0-1", "bits=0-1", "bytesx=0-1"])
def test_unknown_unit_is_ignored_rfc9110_s14_2(value: str) -> None:
    assert parse_range_header(value, LEN) == "ignore"


# --- unsatisfiable (416) -----------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["bytes=10000-", "bytes=10000-20000", "bytes=-0", "bytes=10000-,-0,20000-30000"]
)
def test_unsatisfiable_rfc9110_s14_1_1(value: str) -> None:
    assert parse_range_header(value, LEN) == "unsatisfiable"


def test_unsatisfiable_specs_dropped_when_one_is_satisfiable_rfc9110_s14_1_1() -> None:
    assert parse_range_header("bytes=20000-,0-9,-0", LEN) == [R(0, 9)]


def test_huge_first_pos_is_unsatisfiable_rfc9110_s14_1_1() -> None:
    assert parse_range_header("bytes=" + "9" * 5000 + "-", LEN) == "unsatisfiable"


def test_zero_length_representation_rfc9110_s14_1_1() -> None:
    """An int-range can't be satisfied by 0 bytes; a suffix-range can, but selects nothing,
    so it is ignored (the empty 200 is what it asked for)."""
    assert parse_range_header("bytes=0-", 0) == "unsatisfiable"
    assert parse_range_header("bytes=0-0", 0) == "unsatisfiable"
    assert parse_range_header("bytes=-0", 0) == "unsatisfiable"
    assert parse_range_header("bytes=-5", 0) == "ignore"
    assert parse_range_header("bytes=0-5,-5", 0) == "ignore"


def test_one_byte_representation_rfc9110_s14_1_2() -> None:
    assert parse_range_header("bytes=0-", 1) == [R(0, 0)]
    assert parse_range_header("bytes=-1", 1) == [R(0, 0)]
    assert parse_range_header("bytes=1-", 1) == "unsatisfiable"


# --- abuse (§14.2, §17.15) ---------------------------------------------------------------


def test_too_many_range_specs_ignored_rfc9110_s17_15() -> None:
    ok = "bytes=" + ",".join(f"{2 * i}-{2 * i}" for i in range(MAX_RANGE_SPECS))
    assert parse_range_header(ok, LEN) == [R(2 * i, 2 * i) for i in range(MAX_RANGE_SPECS)]
    too_many = "bytes=" + ",".join(f"{2 * i}-{2 * i}" for i in range(MAX_RANGE_SPECS + 1))
    assert parse_range_header(too_many, LEN) == "ignore"


def test_repeated_whole_ranges_coalesce_rfc9110_s14_2() -> None:
    """The classic amplification (bytes=0-,0-,...) yields the body once."""
    assert parse_range_header("bytes=" + ",".join(["0-"] * 50), LEN) == [R(0, 9999)]
    assert parse_range_header("bytes=5-9,0-2,1-6", LEN) == [R(0, 9)]


def test_many_unordered_small_ranges_ignored_rfc9110_s14_2() -> None:
    count = MAX_UNORDERED_RANGES + 1
    descending = "bytes=" + ",".join(f"{2 * i}-{2 * i}" for i in reversed(range(count)))
    assert parse_range_header(descending, LEN) == "ignore"
    few = "bytes=" + ",".join(f"{2 * i}-{2 * i}" for i in reversed(range(count - 1)))
    assert parse_range_header(few, LEN) == [R(2 * i, 2 * i) for i in reversed(range(count - 1))]


# --- Content-Range (§14.4) ---------------------------------------------------------------


def test_content_range_rfc9110_s14_4() -> None:
    assert content_range(R(0, 499), 1234) == "bytes 0-499/1234"
    assert content_range(R(1233, 1233), 1234) == "bytes 1233-1233/1234"
    assert unsatisfied_range(1234) == "bytes */1234"
    assert unsatisfied_range(0) == "bytes */0"


def test_content_range_outside_length_is_misuse() -> None:
    with pytest.raises(ValueError, match="outside"):
        content_range(R(0, 10), 10)


@pytest.mark.parametrize(("first", "last"), [(-1, 0), (5, 4)])
def test_byte_range_rejects_nonsense(first: int, last: int) -> None:
    with pytest.raises(ValueError, match="not a byte range"):
        ByteRange(first, last)


# --- If-Range (§13.1.5) ------------------------------------------------------------------

LM = float(calendar.timegm((2024, 1, 2, 3, 4, 5)))
LM_TEXT = "Tue, 02 Jan 2024 03:04:05 GMT"


def test_if_range_etag_strong_match_rfc9110_s13_1_5() -> None:
    assert if_range_allows('"v1"', '"v1"', None, None)
    assert not if_range_allows('"v2"', '"v1"', None, None)
    assert not if_range_allows('"v1"', None, LM, LM + 10)


def test_if_range_weak_tags_never_match_rfc9110_s13_1_5() -> None:
    assert not if_range_allows('W/"v1"', '"v1"', None, None)
    assert not if_range_allows('"v1"', 'W/"v1"', None, None)
    assert not if_range_allows('W/"v1"', 'W/"v1"', None, None)


def test_if_range_date_exact_and_strong_rfc9110_s13_1_5_s8_8_2_2() -> None:
    assert if_range_allows(LM_TEXT, '"v1"', LM, LM + 1)
    assert if_range_allows("Tuesday, 02-Jan-24 03:04:05 GMT", None, LM, LM + 60)
    assert if_range_allows("Tue Jan  2 03:04:05 2024", None, LM, LM + 60)


def test_if_range_date_must_equal_last_modified_rfc9110_s13_1_5() -> None:
    assert not if_range_allows(LM_TEXT, None, LM - 1, LM + 60)  # modified before the date
    assert not if_range_allows(LM_TEXT, None, LM + 1, LM + 60)  # modified since
    assert not if_range_allows(LM_TEXT, None, None, LM + 60)


def test_if_range_date_weak_validator_rfc9110_s8_8_2_2() -> None:
    """Last-Modified less than one second before Date is weak: never good for If-Range."""
    assert not if_range_allows(LM_TEXT, None, LM, LM)
    assert not if_range_allows(LM_TEXT, None, LM, LM + 0.5)
    assert not if_range_allows(LM_TEXT, None, LM, None)


@pytest.mark.parametrize("value", ["", "v1", '"v1', "yesterday", "Tue, 02 Jan 2024 03:04:05 UTC"])
def test_if_range_invalid_is_false_rfc9110_s13_1_5(value: str) -> None:
    assert not if_range_allows(value, '"v1"', LM, LM + 60)


# --- multipart/byteranges (§14.6) --------------------------------------------------------


def test_multipart_exact_format_rfc9110_s14_6() -> None:
    body = b"0123456789abcdefghij"
    out, media_type = multipart_byteranges(
        [R(0, 2), R(15, 19)], 20, "text/plain", body, "THIS_STRING_SEPARATES"
    )
    assert media_type == "multipart/byteranges; boundary=THIS_STRING_SEPARATES"
    assert out == (
        b"--THIS_STRING_SEPARATES\r\n"
        b"Content-Type: text/plain\r\n"
        b"Content-Range: bytes 0-2/20\r\n"
        b"\r\n"
        b"012\r\n"
        b"--THIS_STRING_SEPARATES\r\n"
        b"Content-Type: text/plain\r\n"
        b"Content-Range: bytes 15-19/20\r\n"
        b"\r\n"
        b"fghij\r\n"
        b"--THIS_STRING_SEPARATES--\r\n"
    )
    assert multipart_length([R(0, 2), R(15, 19)], 20, "text/plain", "THIS_STRING_SEPARATES") == (
        len(out)
    )


def test_multipart_without_content_type_rfc9110_s14_6() -> None:
    out, _ = multipart_byteranges([R(1, 1), R(3, 3)], 4, None, b"abcd", "b")
    assert out == (
        b"--b\r\nContent-Range: bytes 1-1/4\r\n\r\nb\r\n"
        b"--b\r\nContent-Range: bytes 3-3/4\r\n\r\nd\r\n--b--\r\n"
    )
    assert multipart_length([R(1, 1), R(3, 3)], 4, None, "b") == len(out)


def test_multipart_boundary_quoted_when_not_a_token_rfc2046_s5_1_1() -> None:
    assert multipart_content_type("a:b c") == 'multipart/byteranges; boundary="a:b c"'
    assert multipart_content_type("abc-123") == "multipart/byteranges; boundary=abc-123"


@pytest.mark.parametrize("boundary", ["", "a" * 71, "ends in space ", "a\r\nb", "a;b", 'a"b'])
def test_multipart_rejects_bad_boundary_rfc2046_s5_1_1(boundary: str) -> None:
    with pytest.raises(ValueError, match="boundary"):
        multipart_byteranges([R(0, 0), R(2, 2)], 3, None, b"abc", boundary)


@pytest.mark.parametrize("data", [b"x\r\n--BND y", b"--BND", b"--BNDx", b"a\r\n--BND--\r\n"])
def test_multipart_refuses_boundary_inside_a_part_rfc2046_s5_1_1(data: bytes) -> None:
    body = b"0123" + data
    with pytest.raises(ValueError, match="another"):
        multipart_byteranges([R(0, 0), R(4, len(body) - 1)], len(body), None, body, "BND")


def test_multipart_rejects_body_of_wrong_length() -> None:
    with pytest.raises(ValueError, match="expected"):
        multipart_byteranges([R(0, 0), R(2, 2)], 4, None, b"abc", "b")


def test_multipart_rejects_content_type_with_newline() -> None:
    with pytest.raises(ValueError, match="CR or LF"):
        multipart_byteranges([R(0, 0), R(2, 2)], 3, "text/plain\r\nX: y", b"abc", "b")


_PART = re.compile(rb"--(?P<b>[^\r\n]+)\r\n(?P<head>(?:[^\r\n]+\r\n)*)\r\n")
_CONTENT_RANGE = re.compile(rb"Content-Range: bytes (\d+)-(\d+)/(\d+)\r\n")


def _parse_multipart(out: bytes, boundary: bytes) -> list[tuple[int, int, bytes]]:
    """A minimal reader: each part's Content-Range and bytes (sized by Content-Range)."""
    parts: list[tuple[int, int, bytes]] = []
    pos = 0
    while not out.startswith(b"--" + boundary + b"--\r\n", pos):
        match = _PART.match(out, pos)
        assert match is not None and match["b"] == boundary
        content = _CONTENT_RANGE.search(match["head"])
        assert content is not None
        first, last = int(content[1]), int(content[2])
        data = out[match.end() : match.end() + last - first + 1]
        parts.append((first, last, data))
        pos = match.end() + len(data)
        assert out[pos : pos + 2] == b"\r\n"
        pos += 2
    assert pos + len(boundary) + 6 == len(out)
    return parts


@st.composite
def _length_and_header(draw: st.DrawFn) -> tuple[int, str]:
    length = draw(st.integers(min_value=1, max_value=2000))
    spec = st.one_of(
        st.tuples(st.integers(0, length + 50), st.integers(0, length + 50)).map(
            lambda t: f"{min(t)}-{max(t)}"
        ),
        st.integers(0, length + 50).map(lambda n: f"{n}-"),
        st.integers(1, length + 50).map(lambda n: f"-{n}"),
    )
    specs = draw(st.lists(spec, min_size=1, max_size=12))
    return length, "bytes=" + ", ".join(specs)


@settings(max_examples=200, deadline=None)
@given(_length_and_header())
def test_parts_equal_body_slices_rfc9110_s14_6(case: tuple[int, str]) -> None:
    length, header = case
    body = bytes((i * 7 + 3) % 251 for i in range(length))
    ranges = parse_range_header(header, length)
    if ranges in ("ignore", "unsatisfiable"):
        return
    assert isinstance(ranges, list) and ranges
    for r in ranges:
        assert 0 <= r.first <= r.last < length
    for a in ranges:  # coalesced: no two ranges overlap or touch
        assert all(a is b or b.first > a.last + 1 or a.first > b.last + 1 for b in ranges)
    out, _ = multipart_byteranges(ranges, length, "application/octet-stream", body, "zz1")
    assert multipart_length(ranges, length, "application/octet-stream", "zz1") == len(out)
    parts = _parse_multipart(out, b"zz1")
    assert [(first, last) for first, last, _ in parts] == [(r.first, r.last) for r in ranges]
    for first, last, data in parts:
        assert data == body[first : last + 1]


@settings(max_examples=200, deadline=None)
@given(_length_and_header())
def test_selected_bytes_match_a_reference_rfc9110_s14_1_2(case: tuple[int, str]) -> None:
    """Every byte a satisfiable spec asks for is served; nothing else is."""
    length, header = case
    wanted: set[int] = set()
    for spec in header.removeprefix("bytes=").split(", "):
        first_text, _, last_text = spec.partition("-")
        if not first_text:
            wanted |= set(range(max(length - int(last_text), 0), length))
        else:
            last = int(last_text) if last_text else length - 1
            wanted |= set(range(int(first_text), min(last, length - 1) + 1))
    result = parse_range_header(header, length)
    if not wanted:
        assert result == "unsatisfiable"
        return
    assert isinstance(result, list)  # <= 12 specs: never an absurd set
    served = [i for r in result for i in range(r.first, r.last + 1)]
    assert len(served) == len(set(served))
    assert set(served) == wanted


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60), st.integers(min_value=0, max_value=10**6))
def test_parse_never_raises_rfc9110_s14_2(value: str, length: int) -> None:
    result = parse_range_header(value, length)
    assert result in ("ignore", "unsatisfiable") or isinstance(result, list)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_if_range_never_raises_rfc9110_s13_1_5(value: str) -> None:
    assert isinstance(if_range_allows(value, '"v1"', LM, LM + 60), bool)
