"""The disk tier's chunked entry file (version 2): a large body is verified chunk by chunk as it
streams, so a torn or flipped byte is caught before it is sent (the RFC 9111 §3 duty not to
serve a response we did not store intact), and a file written piecewise from a spill file is
the same file ``encode_entry`` writes."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.cache.entry import StoredResponse
from proxy.cache.tiers.disk_format import (
    CHUNK_SHIFT,
    CHUNKED_VERSION,
    DIGEST_BYTES,
    HEADER,
    HEADER_BYTES,
    LARGE_ENTRY_BYTES,
    MAGIC,
    VERSION,
    EntryFormatError,
    build_bodiless_variants,
    chunk_digests,
    decode_entry,
    encode_entry,
    entry_head,
    parse_body_hashes,
    parse_header,
    parse_key,
    seal_prefix,
    variant_meta,
    verify_chunk,
    verify_prefix,
)
from tests.unit.cache_builders import stored_response

SHIFT = 4  # 16-byte chunks keep every truncation and bit flip cheap to try


def chunked(key: str, variants: tuple[StoredResponse, ...], shift: int = SHIFT) -> bytes:
    return b"".join(encode_entry(key, variants, chunk_shift=shift).chunks)


def sample() -> tuple[bytes, tuple[StoredResponse, ...]]:
    first = stored_response(
        [("Cache-Control", "max-age=60"), ("ETag", '"v1"')],
        body=bytes(range(50)),
        request_headers=[("Accept", "a")],
    )
    second = stored_response([("Cache-Control", "max-age=5"), ("Vary", "Accept")], body=b"q" * 23)
    variants = (first, second)
    return chunked("GET https://example.test/big", variants), variants


def test_round_trip_of_a_chunked_entry() -> None:
    data, variants = sample()
    header = parse_header(data)
    assert header.chunked and header.chunk_bytes == 16
    assert header.chunk_count == 5  # 73 bytes of bodies
    assert header.file_bytes == len(data)
    assert decode_entry(data) == ("GET https://example.test/big", variants)


def test_small_entries_keep_the_whole_file_format_and_large_ones_are_chunked() -> None:
    small = encode_entry("k", (stored_response([], body=b"x" * 1024),))
    assert parse_header(small.chunks[0]).chunk_shift == 0
    assert HEADER.unpack_from(small.chunks[0])[1] == VERSION
    large = encode_entry("k", (stored_response([], body=b"x" * (LARGE_ENTRY_BYTES + 1)),))
    header = parse_header(large.chunks[0])
    assert HEADER.unpack_from(large.chunks[0])[1] == CHUNKED_VERSION
    assert (header.chunk_shift, header.chunk_count) == (CHUNK_SHIFT, 2)
    assert large.file_bytes == header.file_bytes


@settings(max_examples=60, deadline=None)
@given(
    bodies=st.lists(st.binary(max_size=300), min_size=1, max_size=4),
    shift=st.integers(min_value=4, max_value=9),
    key=st.text(min_size=1, max_size=40),
)
def test_round_trip_any_bodies_and_chunk_size(bodies: list[bytes], shift: int, key: str) -> None:
    variants = tuple(stored_response([("Cache-Control", "max-age=9")], body=b) for b in bodies)
    encoded = encode_entry(key, variants, chunk_shift=shift)
    data = b"".join(encoded.chunks)
    assert len(data) == encoded.file_bytes
    assert decode_entry(data) == (key, variants)
    header = parse_header(data)
    table = verify_prefix(header, data[: header.prefix_bytes])
    for index in range(header.chunk_count):  # what a streaming reader checks, chunk by chunk
        start, length = header.chunk_span(index)
        at = header.prefix_bytes + start
        verify_chunk(header, table, index, data[at : at + length])


def test_a_file_written_piecewise_is_the_file_encode_writes() -> None:
    """The spill-file writer knows only lengths up front: head, then chunk digests as the body
    is copied, then the sealed prefix. Same bytes as encoding from memory."""
    data, variants = sample()
    bodies = [v.body for v in variants]
    metas = [
        variant_meta(
            dataclasses.replace(v, body=b""), len(v.body), hashlib.sha256(v.body).hexdigest()
        )
        for v in variants
    ]
    head = entry_head("GET https://example.test/big", metas, sum(map(len, bodies)), SHIFT)
    prefix = seal_prefix(head, chunk_digests([b"".join(bodies)], SHIFT))
    assert prefix + b"".join(bodies) == data


def test_the_prefix_alone_gives_bodiless_variants_and_body_hashes() -> None:
    data, variants = sample()
    header = parse_header(data)
    prefix = data[: header.prefix_bytes]
    verify_prefix(header, prefix)
    assert parse_key(header, prefix) == "GET https://example.test/big"
    bodiless = build_bodiless_variants(header, prefix)
    assert bodiless == tuple(dataclasses.replace(v, body=b"") for v in variants)
    assert bodiless[0].head_bytes == variants[0].head_bytes  # Content-Length of the real body
    assert parse_body_hashes(header, prefix) == [
        hashlib.sha256(v.body).hexdigest() for v in variants
    ]


def test_every_truncation_is_detected() -> None:
    data, _ = sample()
    for length in range(len(data)):
        with pytest.raises(EntryFormatError):
            decode_entry(data[:length])


def test_every_single_bit_flip_is_detected() -> None:
    data, _ = sample()
    for index in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[index] ^= 1 << bit
            with pytest.raises(EntryFormatError):
                decode_entry(bytes(flipped))


def test_a_flip_in_the_prefix_fails_before_any_body_byte_is_used() -> None:
    data, _ = sample()
    header = parse_header(data)
    for index in range(HEADER_BYTES, header.prefix_bytes):  # key, meta, table, digest
        flipped = bytearray(data)
        flipped[index] ^= 0x01
        with pytest.raises(EntryFormatError):
            verify_prefix(header, bytes(flipped[: header.prefix_bytes]))


def test_a_flip_in_a_chunk_fails_that_chunk_only() -> None:
    data, _ = sample()
    header = parse_header(data)
    table = verify_prefix(header, data[: header.prefix_bytes])
    flipped = bytearray(data)
    flipped[header.prefix_bytes + 2 * 16 + 5] ^= 0x80  # in chunk 2
    for index in range(header.chunk_count):
        start, length = header.chunk_span(index)
        at = header.prefix_bytes + start
        chunk = bytes(flipped[at : at + length])
        if index == 2:
            with pytest.raises(EntryFormatError):
                verify_chunk(header, table, index, chunk)
        else:
            verify_chunk(header, table, index, chunk)


def test_a_chunk_in_the_wrong_place_or_short_is_refused() -> None:
    data, _ = sample()
    header = parse_header(data)
    table = verify_prefix(header, data[: header.prefix_bytes])
    at = header.prefix_bytes
    first, second = data[at : at + 16], data[at + 16 : at + 32]
    with pytest.raises(EntryFormatError):
        verify_chunk(header, table, 0, second)
    with pytest.raises(EntryFormatError):
        verify_chunk(header, table, 0, first[:-1])
    with pytest.raises(EntryFormatError):
        verify_chunk(header, table, header.chunk_count, first)


def test_a_table_larger_than_the_limit_is_refused() -> None:
    header = HEADER.pack(MAGIC, CHUNKED_VERSION, SHIFT, 1, 2, 1 << 60)
    with pytest.raises(EntryFormatError):
        parse_header(header)


def test_unknown_chunk_sizes_and_versions_are_refused() -> None:
    for version, flags in ((CHUNKED_VERSION, 0), (CHUNKED_VERSION, 3), (CHUNKED_VERSION, 40),
                           (VERSION, SHIFT), (3, 0)):  # fmt: skip
        with pytest.raises(EntryFormatError):
            parse_header(HEADER.pack(MAGIC, version, flags, 1, 2, 3))


def test_a_consistent_rewrite_without_the_right_prefix_digest_is_detected() -> None:
    data, _ = sample()
    header = parse_header(data)
    rewritten = bytearray(data)
    end = header.prefix_bytes
    rewritten[end - DIGEST_BYTES : end] = bytes(DIGEST_BYTES)
    with pytest.raises(EntryFormatError):
        decode_entry(bytes(rewritten))


@settings(max_examples=200, deadline=None)
@given(
    shift=st.integers(min_value=0, max_value=40),
    lengths=st.tuples(st.integers(0, 300), st.integers(0, 300), st.integers(0, 1 << 40)),
    junk=st.binary(max_size=600),
)
def test_garbage_behind_a_chunked_header_raises_only_the_format_error(
    shift: int, lengths: tuple[int, int, int], junk: bytes
) -> None:
    data = HEADER.pack(MAGIC, CHUNKED_VERSION, shift, *lengths) + junk
    with pytest.raises(EntryFormatError):
        decode_entry(data)


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(min_value=0), junk=st.binary(min_size=1, max_size=64))
def test_a_valid_prefix_followed_by_junk_raises_only_the_format_error(
    cut: int, junk: bytes
) -> None:
    data, _ = sample()
    torn = data[: cut % len(data)] + junk
    if torn == data:
        return
    with pytest.raises(EntryFormatError):
        decode_entry(torn)
