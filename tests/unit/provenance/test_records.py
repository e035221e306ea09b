"""The Record contract (ARCHITECTURE.md "Record"): canonical bytes, strict parsing, sampling."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance.canonical_json import canonicalize
from provenance.errors import FormatError
from provenance.merkle import leaf_hash
from provenance.records import (
    MAX_RECORD_BYTES,
    Record,
    format_timestamp,
    parse_record,
    parse_timestamp,
    record_leaf_hash,
    record_to_canonical_bytes,
    record_to_obj,
    sample_rate_ppm,
    should_sample,
)

from .strategies import largest_record, make_record, records


@settings(max_examples=200, deadline=None)
@given(records())
def test_fast_encoder_equals_generic_rfc8785(record: Record) -> None:
    assert record_to_canonical_bytes(record) == canonicalize(record_to_obj(record))


@settings(max_examples=100, deadline=None)
@given(records())
def test_parse_round_trip_and_leaf_hash_rfc9162(record: Record) -> None:
    data = record_to_canonical_bytes(record)
    assert parse_record(data) == record
    assert record_leaf_hash(record) == leaf_hash(data)


def test_request_id_with_quotes_and_backslashes_is_escaped_rfc8785_3_2_2_2() -> None:
    record = make_record(request_id='a"b\\c')
    assert b'"request_id":"a\\"b\\\\c"' in record_to_canonical_bytes(record)


def test_optional_fields_are_omitted_required_nullable_fields_are_null() -> None:
    obj = json.loads(
        record_to_canonical_bytes(make_record(content_id=None, creator=None, manifest=None))
    )
    assert "trace_id" not in obj and "cache_key_hash" not in obj
    assert obj["content_id"] is None and obj["upstream_of"] is None and obj["v"] == 1


BAD_FIELDS = [
    ("v", 2),
    ("v", True),
    ("request_id", ""),
    ("request_id", "has space"),
    ("request_id", "x" * 129),
    ("ts", "2026-11-27T03:38:49Z"),
    ("ts", "2026-11-27T03:38:49.123+00:00"),
    ("ts", "2026-13-27T03:38:49.123Z"),
    ("ts", "2026-02-30T03:38:49.123Z"),
    ("edge", "edge one"),
    ("edge", "edge+1"),
    ("method", "GE T"),
    ("status", 99),
    ("status", 600),
    ("status", "200"),
    ("status", 200.0),
    ("cache", "HIT"),
    ("tier", "ssd"),
    ("bytes", -1),
    ("bytes", 2**53),
    ("bytes", True),
    ("origin_bytes", None),
    ("content_id", "sha256:" + "A" * 64),
    ("creator", ""),
    ("manifest", "md5:00"),
    ("sample_rate", "1.0"),
    ("sample_rate", "0.50"),
    ("sample_rate", "1.5"),
    ("sample_rate", 1),
    ("sample_rate", "0.0000001"),
    ("use", "train"),
    ("upstream_of", ""),
    ("trace_id", "0" * 32),
    ("trace_id", "A" * 32),
    ("cache_key_hash", "abc"),
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS)
def test_parse_record_names_the_bad_field(field: str, value: object) -> None:
    obj = record_to_obj(make_record(trace_id="1" * 32, cache_key_hash="sha256:" + "c" * 64))
    obj[field] = value
    with pytest.raises(FormatError, match=field):
        parse_record(json.dumps(obj).encode())


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS)
def test_constructing_a_bad_record_is_misuse(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(make_record(), **{field: value})  # type: ignore[arg-type]


def test_parse_record_refuses_missing_unknown_and_inconsistent_fields() -> None:
    obj = record_to_obj(make_record())
    with pytest.raises(FormatError, match="lacks field"):
        parse_record(json.dumps({k: v for k, v in obj.items() if k != "status"}).encode())
    with pytest.raises(FormatError, match="unknown field"):
        parse_record(json.dumps({**obj, "client_ip": "1.2.3.4"}).encode())
    with pytest.raises(FormatError, match="manifest"):
        parse_record(json.dumps({**obj, "creator": None}).encode())
    with pytest.raises(FormatError):
        parse_record(b"[]")


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=80))
def test_parse_record_arbitrary_bytes_only_format_error(data: bytes) -> None:
    for end in range(len(data) + 1):
        try:
            parse_record(data[:end])
        except FormatError:
            pass


def test_parse_record_truncations_of_a_valid_record_only_format_error() -> None:
    data = record_to_canonical_bytes(make_record(trace_id="1" * 32))
    for end in range(len(data)):
        with pytest.raises(FormatError):
            parse_record(data[:end])


def test_timestamps_rfc3339_utc_milliseconds() -> None:
    moment = datetime(2026, 11, 27, 4, 38, 49, 123999, tzinfo=timezone(timedelta(hours=1)))
    assert format_timestamp(moment) == "2026-11-27T03:38:49.123Z"
    assert parse_timestamp("2026-11-27T03:38:49.123Z") == datetime(
        2026, 11, 27, 3, 38, 49, 123000, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        format_timestamp(datetime(2026, 1, 1))
    with pytest.raises(FormatError):
        parse_timestamp("2026-11-27 03:38:49.123Z")


def test_sample_rate_is_exact_parts_per_million() -> None:
    assert [sample_rate_ppm(r) for r in ("0", "1", "0.25", "0.000001", "0.1")] == [
        0,
        1_000_000,
        250_000,
        1,
        100_000,
    ]


def test_should_sample_is_deterministic_and_proportional() -> None:
    ids = [f"req-{i}" for i in range(20_000)]
    assert all(should_sample(i, "1") for i in ids[:100])
    assert not any(should_sample(i, "0") for i in ids[:100])
    quarter = [should_sample(i, "0.25") for i in ids]
    assert quarter == [should_sample(i, "0.25") for i in ids]
    assert 0.23 < sum(quarter) / len(ids) < 0.27
    # monotone: whatever is sampled at p is sampled at every p' >= p
    assert all(should_sample(i, "0.5") for i, q in zip(ids, quarter, strict=True) if q)


def test_no_record_is_longer_than_max_record_bytes() -> None:
    """Transports with a payload limit size batches by MAX_RECORD_BYTES
    (proxy/records/nats_forwarder.py): the largest record the format allows fits it."""
    assert len(record_to_canonical_bytes(largest_record())) == 1046 <= MAX_RECORD_BYTES


@settings(max_examples=200, deadline=None)
@given(records())
def test_every_generated_record_fits_max_record_bytes(record: Record) -> None:
    assert len(record_to_canonical_bytes(record)) <= MAX_RECORD_BYTES
