"""The edge's direct record encoder is byte-identical to the contract's canonical form
(ARCHITECTURE.md "Record"; RFC 8785 for the bytes)."""

from __future__ import annotations

import calendar
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from provenance.records import Record, parse_record, record_to_canonical_bytes
from proxy.records.emit import Attribution, RecordEncoder

NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)
REQUEST_IDS = st.from_regex(r"[A-Za-z0-9._:+=/-]{1,40}", fullmatch=True)
METHODS = st.from_regex(r"[A-Z]{1,12}", fullmatch=True)
HEX = st.from_regex(r"[0-9a-f]{64}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(
    edge=NAMES,
    request_id=REQUEST_IDS,
    method=METHODS,
    status=st.integers(100, 599),
    cache=st.sampled_from(["hit", "miss", "stale", "revalidated", "bypass", "error"]),
    tier=st.sampled_from(["memory", "disk", "origin", "none"]),
    sent=st.integers(0, 2**53 - 1),
    origin_bytes=st.integers(0, 2**53 - 1),
    attributed=st.one_of(st.none(), st.tuples(HEX, NAMES, st.one_of(st.none(), HEX))),
    use=st.sampled_from(["view", "training"]),
    upstream_of=st.one_of(st.none(), NAMES),
    trace_id=st.one_of(st.none(), st.from_regex(r"[0-9a-f]{31}[1-9a-f]", fullmatch=True)),
    key=st.one_of(st.none(), st.text(min_size=1, max_size=40)),
    now_ms=st.integers(0, 4102444800000),
)
def test_encoder_matches_the_contracts_canonical_bytes(
    edge,
    request_id,
    method,
    status,
    cache,
    tier,
    sent,
    origin_bytes,
    attributed,
    use,
    upstream_of,
    trace_id,
    key,
    now_ms,
) -> None:
    encoder = RecordEncoder(edge, "1")
    attribution = None
    if attributed is not None:
        content, creator, manifest = attributed
        attribution = Attribution(
            "sha256:" + content, creator, None if manifest is None else "sha256:" + manifest
        )
    produced = encoder.encode(
        now_ms / 1000,
        request_id,
        method,
        status,
        cache,
        tier,
        sent,
        origin_bytes,
        attribution,
        use,
        upstream_of,
        trace_id,
        key,
    )
    record = parse_record(produced)
    assert record_to_canonical_bytes(record) == produced
    expected = Record(
        request_id=request_id,
        ts=record.ts,
        edge=edge,
        method=method,
        status=status,
        cache=cache,
        tier=tier,
        bytes=sent,
        origin_bytes=origin_bytes,
        content_id=None if attribution is None else attribution.content_id,
        creator=None if attribution is None else attribution.creator,
        manifest=None if attribution is None else attribution.manifest_id,
        use=use,
        upstream_of=upstream_of,
        trace_id=trace_id,
        cache_key_hash=None if key is None else encoder.key_hash(key),
    )
    assert record == expected


def test_timestamp_is_rfc3339_utc_with_milliseconds() -> None:
    encoder = RecordEncoder("edge-1", "1")
    moment = calendar.timegm(time.strptime("2026-11-27 03:38:49", "%Y-%m-%d %H:%M:%S")) + 0.123
    assert encoder.timestamp_json(moment) == '"2026-11-27T03:38:49.123Z"'
    assert encoder.timestamp_json(moment + 0.0004) == '"2026-11-27T03:38:49.123Z"'
    assert encoder.timestamp_json(moment + 1) == '"2026-11-27T03:38:50.123Z"'


def test_cache_key_leaves_only_as_a_hash() -> None:
    encoder = RecordEncoder("edge-1", "1")
    produced = encoder.encode(
        0.0, "r1", "GET", 200, "hit", "memory", 1, 0, cache_key="http://a/x?secret=1"
    )
    assert b"secret" not in produced
    assert b'"cache_key_hash":"sha256:' in produced


def test_sampling_is_deterministic_per_request_id() -> None:
    encoder = RecordEncoder("edge-1", "0.5")
    decisions = [encoder.samples(f"req-{i}") for i in range(2000)]
    assert decisions == [encoder.samples(f"req-{i}") for i in range(2000)]
    assert 800 < sum(decisions) < 1200
    assert all(RecordEncoder("edge-1", "1").samples(f"req-{i}") for i in range(100))


@settings(max_examples=100, deadline=None)
@given(
    request_id=REQUEST_IDS,
    status=st.integers(200, 599),
    sent=st.integers(0, 2**40),
    attributed=st.one_of(st.none(), st.tuples(HEX, NAMES, st.one_of(st.none(), HEX))),
    key=st.text(min_size=1, max_size=40),
    now_ms=st.integers(0, 4102444800000),
)
def test_hit_template_gives_the_same_bytes_as_encode(
    request_id, status, sent, attributed, key, now_ms
) -> None:
    encoder = RecordEncoder("edge-1", "1")
    attribution = None
    if attributed is not None:
        content, creator, manifest = attributed
        attribution = Attribution(
            "sha256:" + content, creator, None if manifest is None else "sha256:" + manifest
        )
    template = encoder.hit_template(status, sent, attribution, key)
    now_s = now_ms / 1000
    assert encoder.encode_hit(template, now_s, request_id) == encoder.encode(
        now_s, request_id, "GET", status, "hit", "memory", sent, 0, attribution, cache_key=key
    )
