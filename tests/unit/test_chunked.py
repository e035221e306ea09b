"""ChunkedBodyReader: RFC 9112 §7.1 chunked transfer coding, fed whole and split anywhere."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.http.chunked import ChunkedBodyReader
from proxy.http.request_parser import ProtocolError


def decode(data: bytes, reader: ChunkedBodyReader | None = None) -> tuple[bytes, bytes]:
    """Feed whole; return (body, leftover). Fails if the message is not complete."""
    reader = reader or ChunkedBodyReader()
    pieces, done, leftover = reader.feed(data)
    assert done
    assert reader.is_complete
    return b"".join(pieces), leftover


def decode_split(data: bytes, cuts: list[int]) -> tuple[bytes, bytes]:
    """Feed in pieces cut at the given positions; collect body and leftover."""
    reader = ChunkedBodyReader()
    body, leftover, done = b"", b"", False
    bounds = [0, *sorted(set(cuts)), len(data)]
    for start, end in itertools.pairwise(bounds):
        pieces, now_done, rest = reader.feed(data[start:end])
        assert not done or not pieces
        if done:
            leftover += data[start:end]
            continue
        body += b"".join(pieces)
        leftover += rest
        done = now_done
    assert done
    return body, leftover


def status_of(data: bytes, reader: ChunkedBodyReader | None = None) -> int:
    with pytest.raises(ProtocolError) as info:
        (reader or ChunkedBodyReader()).feed(data)
    return info.value.status


SIMPLE = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"


def test_simple_body_decoded_rfc9112_s7_1() -> None:
    assert decode(SIMPLE) == (b"hello world", b"")


def test_leftover_is_next_request_rfc9112_s9_3_2() -> None:
    assert decode(SIMPLE + b"GET / HTTP/1.1\r\n") == (b"hello world", b"GET / HTTP/1.1\r\n")


def test_one_byte_at_a_time_rfc9112_s7_1() -> None:
    data = SIMPLE + b"NEXT"
    assert decode_split(data, list(range(len(data)))) == (b"hello world", b"NEXT")


def test_hex_size_upper_and_lower_case_rfc9112_s7_1() -> None:
    body = bytes(range(256)) * 2
    assert (
        decode(b"1Ff\r\n" + body[:0x1FF] + b"\r\n1\r\n" + body[0x1FF:0x200] + b"\r\n0\r\n\r\n")[0]
        == body[:0x200]
    )


@pytest.mark.parametrize(
    "line",
    [
        b"5;name\r\n",
        b"5;name=value\r\n",
        b'5;name="quoted \\" value";other=1\r\n',
        b"5 ; name = value\r\n",
        b"5\t;\tname\r\n",
    ],
)
def test_chunk_extensions_accepted_and_ignored_rfc9112_s7_1_1(line: bytes) -> None:
    assert decode(line + b"hello\r\n0\r\n\r\n") == (b"hello", b"")


def test_last_chunk_with_extension_rfc9112_s7_1() -> None:
    assert decode(b"0;final=yes\r\n\r\n") == (b"", b"")


def test_trailers_validated_and_discarded_rfc9112_s7_1_2() -> None:
    data = b"5\r\nhello\r\n0\r\nChecksum: abc\r\nX-T:\t1 \r\n\r\nrest"
    assert decode(data) == (b"hello", b"rest")


@pytest.mark.parametrize(
    "data",
    [
        b"5\r\nhello\r\n0\r\nBad Name: x\r\n\r\n",
        b"5\r\nhello\r\n0\r\nX: a\r\n folded\r\n\r\n",
        b"5\r\nhello\r\n0\r\nX: a\x00b\r\n\r\n",
        b"5\r\nhello\r\n0\r\nX : a\r\n\r\n",
    ],
)
def test_bad_trailer_field_rejected_rfc9112_s7_1_2(data: bytes) -> None:
    assert status_of(data) == 400


@pytest.mark.parametrize(
    "data",
    [
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhello\r\n0\n\r\n",
        b"5\r\nhello\r\n0\r\n\n",
        b"5\r\nhello\r\n0\r\nX: y\n\r\n",
        b"5\rhello\r\n",
    ],
)
def test_bare_lf_or_cr_rejected_rfc9112_s7_1(data: bytes) -> None:
    assert status_of(data) == 400


@pytest.mark.parametrize(
    "data",
    [
        b"5\r\nhelloX\r\n0\r\n\r\n",
        b"5\r\nhello0\r\n\r\n",
        b"5\r\nhello\r\r\n",
    ],
)
def test_chunk_data_must_end_with_crlf_rfc9112_s7_1(data: bytes) -> None:
    assert status_of(data) == 400


@pytest.mark.parametrize(
    "line",
    [
        b"\r\n",
        b"-5\r\n",
        b"+5\r\n",
        b"0x5\r\n",
        b" 5\r\n",
        b"5 \r\n",
        b"5;\r\n",
        b"5;a=\r\n",
        b"5;a b\r\n",
        b'5;a="x\x01"\r\n',
        b"5;a=\x01\r\n",
        b"g\r\n",
    ],
)
def test_malformed_chunk_size_line_rejected_rfc9112_s7_1(line: bytes) -> None:
    assert status_of(line + b"hello\r\n0\r\n\r\n") == 400


def test_chunk_size_sixteen_hex_digits_ok_seventeen_overflow_rfc9112_s7_1() -> None:
    reader = ChunkedBodyReader()
    assert reader.feed(b"0000000000000001\r\nx") == ([b"x"], False, b"")
    assert status_of(b"00000000000000001\r\nx\r\n") == 400
    assert status_of(b"10000000000000000") == 400  # known bad before the CRLF arrives


def test_chunk_size_line_bounded_rfc9112_s7_1_1() -> None:
    reader = ChunkedBodyReader(max_line_bytes=32)
    assert status_of(b"5;" + b"a" * 40, reader) == 400


def test_trailer_section_bounded_rfc9112_s7_1_2() -> None:
    reader = ChunkedBodyReader(max_trailer_bytes=64)
    assert status_of(b"0\r\nX: " + b"y" * 80, reader) == 431
    reader = ChunkedBodyReader(max_trailer_bytes=64)
    assert status_of(b"0\r\nX: " + b"y" * 80 + b"\r\n\r\n", reader) == 431
    reader = ChunkedBodyReader(max_trailers=2)
    assert status_of(b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", reader) == 431


def test_large_chunk_streams_without_buffering_rfc9112_s7_1() -> None:
    reader = ChunkedBodyReader()
    assert reader.feed(b"100000\r\n") == ([], False, b"")
    pieces, done, _ = reader.feed(b"a" * 1000)
    assert pieces == [b"a" * 1000]
    assert not done


def test_feed_after_completion_returns_data_as_leftover() -> None:
    reader = ChunkedBodyReader()
    decode(b"0\r\n\r\n", reader)
    assert reader.feed(b"more") == ([], True, b"more")


# --- hypothesis --------------------------------------------------------------------------


@st.composite
def chunked_messages(draw: st.DrawFn) -> tuple[bytes, bytes]:
    chunks = draw(st.lists(st.binary(min_size=1, max_size=40), max_size=5))
    wire = b""
    for chunk in chunks:
        size = draw(st.sampled_from(["{:x}", "{:X}", "{:04x}"])).format(len(chunk))
        ext = draw(st.sampled_from([b"", b";a", b";a=b", b' ;q="x;y"']))
        wire += size.encode() + ext + b"\r\n" + chunk + b"\r\n"
    trailers = draw(st.sampled_from([b"", b"T: 1\r\n", b"A: x\r\nB:\r\n"]))
    return wire + b"0\r\n" + trailers + b"\r\n", b"".join(chunks)


@settings(max_examples=150, deadline=None)
@given(chunked_messages(), st.lists(st.integers(0, 400), max_size=8), st.binary(max_size=4))
def test_split_anywhere_same_body_rfc9112_s7_1(
    message: tuple[bytes, bytes], cuts: list[int], after: bytes
) -> None:
    wire, body = message
    data = wire + after
    cuts = [cut for cut in cuts if cut < len(data)]
    assert decode(data) == (body, after)
    assert decode_split(data, cuts) == (body, after)
    assert decode_split(data, list(range(len(data)))) == (body, after)


def feed_checking(data: bytes, cuts: list[int]) -> None:
    reader = ChunkedBodyReader(max_line_bytes=24, max_trailer_bytes=48)
    bounds = [0, *sorted(set(cuts)), len(data)]
    for start, end in itertools.pairwise(bounds):
        pieces, done, leftover = reader.feed(data[start:end])
        assert all(isinstance(piece, bytes) and piece for piece in pieces)
        assert isinstance(leftover, bytes)
        if done:
            return


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80), st.lists(st.integers(0, 80), max_size=6))
def test_arbitrary_bytes_only_protocol_error(data: bytes, cuts: list[int]) -> None:
    for chosen in ([], cuts, list(range(len(data)))):
        try:
            feed_checking(data, chosen)
        except ProtocolError:
            pass


@settings(max_examples=150, deadline=None)
@given(chunked_messages(), st.data())
def test_mutated_message_only_protocol_error(
    message: tuple[bytes, bytes], draw: st.DataObject
) -> None:
    wire = message[0]
    index = draw.draw(st.integers(0, len(wire) - 1))
    mutated = wire[:index] + bytes([draw.draw(st.integers(0, 255))]) + wire[index + 1 :]
    for chosen in ([], list(range(len(mutated)))):
        try:
            feed_checking(mutated, chosen)
        except ProtocolError:
            pass
