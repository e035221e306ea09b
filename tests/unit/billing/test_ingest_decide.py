"""Pure ingest decisions: keys, chain (gap/fork), future dating, record preference, body
decoding (RFC 9110 §8.4 gzip), error reasons."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.errors import (
    ChainForkError,
    ChainGapError,
    FutureBatchError,
    PayloadTooLargeError,
    RevokedKeyError,
    reason_of,
)
from billing.ingest.decide import check_chain, check_not_future, is_preferred, keyring_for
from billing.ingest.pipeline import decode_body
from provenance.batches import ZERO_HASH_HEX, BatchHeader, ChainHead, header_hash
from provenance.errors import FormatError, PushbackError, SignatureError, UnknownKeyError
from provenance.keys import SigningKey

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
KEY = SigningKey("edge-a", bytes(32))
OTHER = SigningKey("edge-a", bytes([1]) * 32)


def _header(seq: int = 0, prev: str = ZERO_HASH_HEX, last_ts: str = "2026-11-27T11:59:00.000Z"):
    return BatchHeader("edge-a", KEY.key_id.hex(), seq, prev, 1, "ab" * 32, last_ts, last_ts)


def test_keyring_holds_the_unrevoked_keys_for_rotation_overlap() -> None:
    ring = keyring_for(_header(), [(KEY.verifier, False), (OTHER.verifier, False)])
    assert set(ring.keys) == {KEY.verifier, OTHER.verifier}


def test_a_revoked_key_is_refused_by_name() -> None:
    with pytest.raises(RevokedKeyError):
        keyring_for(_header(), [(KEY.verifier, True), (OTHER.verifier, False)])


def test_an_unknown_key_is_refused() -> None:
    with pytest.raises(UnknownKeyError):
        keyring_for(_header(), [(OTHER.verifier, False)])
    with pytest.raises(UnknownKeyError):
        keyring_for(_header(), [])


def test_first_batch_starts_the_chain() -> None:
    check_chain(None, _header())
    with pytest.raises(ChainGapError):
        check_chain(None, _header(seq=1))
    with pytest.raises(ChainForkError):
        check_chain(None, _header(prev="cd" * 32))


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=1000), st.integers(min_value=0, max_value=1002))
def test_chain_decision_by_seq(head_seq: int, seq: int) -> None:
    head = ChainHead("edge-a", head_seq, "ef" * 32)
    header = _header(seq=seq, prev="ef" * 32)
    if seq == head_seq + 1:
        check_chain(head, header)
    elif seq > head_seq + 1:
        with pytest.raises(ChainGapError):
            check_chain(head, header)
    else:
        with pytest.raises(ChainForkError):
            check_chain(head, header)


def test_right_seq_with_the_wrong_prev_is_a_fork() -> None:
    first = _header()
    check_chain(ChainHead("edge-a", 0, header_hash(first)), _header(1, header_hash(first)))
    with pytest.raises(ChainForkError):
        check_chain(ChainHead("edge-a", 0, header_hash(first)), _header(1, "00" * 32))


def test_future_dated_beyond_the_skew_is_refused() -> None:
    check_not_future(_header(last_ts="2026-11-27T12:05:00.000Z"), NOW, 300)
    with pytest.raises(FutureBatchError):
        check_not_future(_header(last_ts="2026-11-27T12:05:00.001Z"), NOW, 300)
    check_not_future(_header(), NOW + timedelta(days=1), 0)


def test_serving_edge_record_wins_over_upstream_of_record() -> None:
    assert is_preferred(None, "edge-child")
    assert not is_preferred("edge-child", None)
    assert not is_preferred(None, None)
    assert not is_preferred("edge-b", "edge-c")


def test_decode_body_identity_and_gzip_rfc9110_8_4() -> None:
    assert decode_body(b"abc", None, 10) == b"abc"
    assert decode_body(gzip.compress(b"abc"), "gzip", 100) == b"abc"
    with pytest.raises(PayloadTooLargeError):
        decode_body(b"x" * 11, "identity", 10)
    with pytest.raises(PayloadTooLargeError):
        decode_body(gzip.compress(b"x" * 1000), "gzip", 100)
    with pytest.raises(FormatError):
        decode_body(b"not gzip", "gzip", 100)
    with pytest.raises(FormatError):
        decode_body(gzip.compress(b"abc")[:-4], "gzip", 100)
    with pytest.raises(FormatError):
        decode_body(b"abc", "br", 100)


def test_every_error_has_a_short_reason_and_status() -> None:
    cases = [
        (ChainGapError("x"), "chain-gap", 409),
        (ChainForkError("x"), "chain-fork", 409),
        (RevokedKeyError("x"), "revoked-key", 403),
        (UnknownKeyError("x"), "unknown-key", 403),
        (SignatureError("x"), "bad-signature", 422),
        (FormatError("x"), "malformed", 400),
        (PayloadTooLargeError("x"), "payload-too-large", 413),
        (PushbackError("x", 2), "overloaded", 503),
    ]
    for error, reason, status in cases:
        assert (reason_of(error), error.status_hint) == (reason, status)
