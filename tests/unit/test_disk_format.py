"""The disk tier's entry file: round-trips, and every torn or flipped file is refused with the one
format error (the RFC 9111 §3 duty not to serve a response we did not store intact)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance.errors import FormatError
from proxy.cache.entry import StoredResponse
from proxy.cache.tiers.disk_format import (
    DIGEST_BYTES,
    HEADER_BYTES,
    EntryFormatError,
    decode_entry,
    decode_snapshot,
    encode_entry,
    encode_snapshot,
    parse_header,
    parse_key,
)
from tests.unit.cache_builders import T0, stored_response

LATIN1 = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40)
TOKEN = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12)


def encoded_bytes(key: str, variants: tuple[StoredResponse, ...]) -> bytes:
    return b"".join(encode_entry(key, variants).chunks)


def sample_entry() -> bytes:
    first = stored_response(
        [("Cache-Control", 'max-age=60, no-cache="set-cookie"'), ("ETag", '"v1"')],
        body=b"body-one",
        request_headers=[("Accept-Encoding", "gzip")],
    )
    second = stored_response([("Cache-Control", "max-age=5"), ("Vary", "Accept")], body=b"")
    return encoded_bytes("GET https://example.test/a?b=1", (first, second))


def test_round_trip_keeps_every_stored_field_rfc9111_s3() -> None:
    stored = stored_response(
        [
            ("Cache-Control", 'max-age=60, no-cache="x-secret"'),
            ("ETag", '"abc"'),
            ("Last-Modified", "Tue, 14 Nov 2023 20:00:00 GMT"),
            ("Vary", "Accept-Language"),
        ],
        body=b"\x00\xffbinary",
        request_headers=[("Accept-Language", "fr")],
    )
    stored.stale_marked = True
    key, variants = decode_entry(encoded_bytes("k", (stored,)))
    assert key == "k"
    assert variants == (stored,)
    assert variants[0].ttl(T0 + 10) == stored.ttl(T0 + 10)


@settings(max_examples=60, deadline=None)
@given(
    key=st.text(min_size=1, max_size=80),
    headers=st.lists(st.tuples(TOKEN, LATIN1), max_size=8),
    bodies=st.lists(st.binary(max_size=2048), min_size=1, max_size=4),
    status=st.sampled_from([200, 203, 204, 301, 404, 410]),
    response_delay_s=st.floats(min_value=0, max_value=1e6, allow_nan=False),
)
def test_round_trip_any_headers_and_bodies(
    key: str,
    headers: list[tuple[str, str]],
    bodies: list[bytes],
    status: int,
    response_delay_s: float,
) -> None:
    variants = tuple(
        stored_response(headers, status=status, body=body, response_time=T0 + response_delay_s)
        for body in bodies
    )
    data = encoded_bytes(key, variants)
    assert len(data) == encode_entry(key, variants).file_bytes
    assert decode_entry(data) == (key, variants)


def test_header_and_key_alone_give_the_file_size() -> None:
    data = sample_entry()
    header = parse_header(data[:HEADER_BYTES])
    assert header.file_bytes == len(data)
    assert parse_key(header, data[: HEADER_BYTES + header.key_len]) == (
        "GET https://example.test/a?b=1"
    )


def test_every_truncation_is_detected() -> None:
    data = sample_entry()
    for length in range(len(data)):
        with pytest.raises(EntryFormatError):
            decode_entry(data[:length])


def test_trailing_bytes_are_detected() -> None:
    with pytest.raises(EntryFormatError):
        decode_entry(sample_entry() + b"\x00")


def test_every_single_bit_flip_is_detected() -> None:
    data = sample_entry()
    for index in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[index] ^= 1 << bit
            with pytest.raises(EntryFormatError):
                decode_entry(bytes(flipped))


def test_a_consistent_rewrite_without_the_right_digest_is_detected() -> None:
    data = bytearray(sample_entry())
    data[-DIGEST_BYTES:] = bytes(DIGEST_BYTES)
    with pytest.raises(EntryFormatError):
        decode_entry(bytes(data))


def test_entry_format_error_is_a_format_error() -> None:
    assert issubclass(EntryFormatError, FormatError)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_garbage_raises_only_the_format_error(data: bytes) -> None:
    with pytest.raises(EntryFormatError):
        decode_entry(data)


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(min_value=0), junk=st.binary(min_size=1, max_size=64))
def test_a_valid_prefix_followed_by_junk_raises_only_the_format_error(
    cut: int, junk: bytes
) -> None:
    data = sample_entry()
    torn = data[: cut % len(data)] + junk
    if torn == data:
        return
    with pytest.raises(EntryFormatError):
        decode_entry(torn)


def test_an_entry_needs_a_variant() -> None:
    with pytest.raises(ValueError):
        encode_entry("k", ())


def test_snapshot_round_trip_keeps_order() -> None:
    entries = [("k2", "b" * 64, 10, 5), ("k1", "a" * 64, 2000, 9), ("ключ", "c" * 64, 7, 0)]
    assert decode_snapshot(encode_snapshot(entries)) == entries


def test_a_snapshot_written_before_inodes_reads_with_inode_0_unknown() -> None:
    """Three fields per entry (the earlier format): still a valid snapshot, inode unknown."""
    old = encode_snapshot([("k", "a" * 64, 10)])  # type: ignore[list-item]
    assert decode_snapshot(old) == [("k", "a" * 64, 10, 0)]


def test_a_snapshot_entry_of_another_shape_is_a_format_error() -> None:
    for entry in (["k", "a" * 64], ["k", "a" * 64, 1, 2, 3], "k"):
        with pytest.raises(EntryFormatError):
            decode_snapshot(encode_snapshot([entry]))  # type: ignore[list-item]


def test_every_snapshot_truncation_and_bit_flip_is_detected() -> None:
    data = encode_snapshot([("k", "a" * 64, 100, 3), ("j", "b" * 64, 5, 4)])
    for length in range(len(data)):
        with pytest.raises(EntryFormatError):
            decode_snapshot(data[:length])
    for index in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[index] ^= 1 << bit
            with pytest.raises(EntryFormatError):
                decode_snapshot(bytes(flipped))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_snapshot_garbage_raises_only_the_format_error(data: bytes) -> None:
    with pytest.raises(EntryFormatError):
        decode_snapshot(data)
