"""The shared tier's values (docs/design/tiered-cache.md, "Shared tier"): self-verifying, bound
to their cache key, carrying their stored-at times (RFC 9111 §4.2.3), with a bounded expiry."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.cache.tiers.disk_format import EntryFormatError
from proxy.cache.tiers.shared_format import (
    KEEP_STALE_S,
    MAX_EXPIRY_S,
    check_shared_cache_url,
    decode_value,
    encode_value,
    expiry_s,
    storage_key,
)
from proxy.config import load_proxy_config
from proxy.config_values import ConfigError
from tests.unit.cache_builders import T0, stored_response

KEY = "http://cache.test/a?b=1"


def _value() -> bytes:
    stored = stored_response([("Cache-Control", "max-age=60"), ("ETag", '"v"')], body=b"x" * 300)
    return encode_value(KEY, (stored,))


def test_round_trip_keeps_the_stored_at_times_so_age_is_computed_from_the_first_receipt() -> None:
    """RFC 9111 §4.2.3: resident time counts from response_time, whoever reads the value."""
    stored = stored_response(
        [("Cache-Control", "max-age=60"), ("Age", "20")], request_time=T0 - 1, response_time=T0
    )
    (back,) = decode_value(KEY, encode_value(KEY, (stored,)))
    assert back == stored
    assert back.current_age(T0 + 30) == stored.current_age(T0 + 30) >= 50
    assert back.ttl(T0 + 41) < 0  # 20 s old on arrival, 60 s lifetime


def test_a_value_is_bound_to_its_key() -> None:
    with pytest.raises(EntryFormatError, match="another cache key"):
        decode_value("http://cache.test/other", _value())


def test_storage_names_are_fixed_length_and_hide_the_url() -> None:
    long_key = "http://cache.test/" + "a" * 10_000
    name = storage_key("site1:", long_key)
    assert name.startswith("site1:")
    assert len(name) == len("site1:") + 64
    assert "cache.test" not in name
    assert storage_key("site1:", KEY) != storage_key("site2:", KEY)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_every_flipped_bit_or_truncation_is_refused(data: st.DataObject) -> None:
    value = _value()
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(min_value=0, max_value=len(value) - 1))
        damaged = value[:cut]
    else:
        at = data.draw(st.integers(min_value=0, max_value=len(value) - 1))
        bit = data.draw(st.integers(min_value=0, max_value=7))
        flipped = bytearray(value)
        flipped[at] ^= 1 << bit
        damaged = bytes(flipped)
    with pytest.raises(EntryFormatError):
        decode_value(KEY, damaged)


@pytest.mark.parametrize("junk", [b"", b"not an entry", b"\x00" * 64, _value() + b"extra"])
def test_junk_is_refused(junk: bytes) -> None:
    with pytest.raises(EntryFormatError):
        decode_value(KEY, junk)


def test_expiry_is_the_remaining_freshness_plus_the_stale_allowance() -> None:
    fresh = stored_response([("Cache-Control", "max-age=600")])
    assert expiry_s((fresh,), T0 + 100) == 500 + KEEP_STALE_S
    assert expiry_s((fresh,), T0 + 10_000) == KEEP_STALE_S  # stale: kept for revalidation


def test_expiry_follows_the_freshest_variant_and_is_capped() -> None:
    short = stored_response([("Cache-Control", "max-age=10")])
    long = stored_response([("Cache-Control", "max-age=100")])
    assert expiry_s((short, long), T0) == 100 + KEEP_STALE_S
    years = stored_response([("Cache-Control", "max-age=315360000")])
    assert expiry_s((years,), T0) == MAX_EXPIRY_S


def test_a_soft_purged_entry_expires_after_the_stale_allowance() -> None:
    stored = stored_response([("Cache-Control", "max-age=600")])
    stored.stale_marked = True
    assert expiry_s((stored,), T0) == KEEP_STALE_S


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1", "redis://cache:6380/2", "redis://:p%40ss@cache.internal:6379/0"]
)
def test_shared_cache_urls_accepted(url: str) -> None:
    check_shared_cache_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "memcached://127.0.0.1:11211",  # aiocache speaks it; untested here, so refused
        "http://127.0.0.1:6379",
        "redis://",
        "redis://:secret@",
        "redis://:secret@h:99999",
        "redis://h:99999",
        "redis://h:port",
        "redis://h/zero",
        "redis://h/0?ssl=1",
        "127.0.0.1:6379",
    ],
)
def test_bad_shared_cache_urls_are_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(ConfigError) as error:
        check_shared_cache_url(url)
    assert "secret" not in str(error.value)  # the URL may carry a password: never echoed


def test_the_shared_tier_is_off_by_default_and_configured_by_flag_or_environment() -> None:
    assert load_proxy_config({}, {}, None).shared_cache_url is None
    env = {"CACHET_PROXY_SHARED_CACHE_URL": "redis://:pw@cache.internal:6380/1"}
    config = load_proxy_config({"shared_timeout_ms": "20"}, env, None)
    assert config.shared_cache_url == "redis://:pw@cache.internal:6380/1"
    assert config.shared_timeout_ms == 20
    assert load_proxy_config({"shared_cache_url": ""}, env, None).shared_cache_url is None


@pytest.mark.parametrize(
    ("overrides", "env"),
    [
        ({"shared_cache_url": "redis://:hunter2@cache:99999"}, {}),
        ({}, {"CACHET_PROXY_SHARED_CACHE_URL": "memcached://cache"}),
        ({"shared_timeout_ms": "0"}, {}),
        ({"shared_timeout_ms": "fast"}, {}),
        ({"shared_max_object_size": "0"}, {}),
        ({"shared_max_object_size": "-1MiB"}, {}),
    ],
)
def test_bad_shared_tier_settings_are_refused(
    overrides: dict[str, object], env: dict[str, str]
) -> None:
    with pytest.raises(ConfigError) as error:
        load_proxy_config(overrides, env, None)
    assert "hunter2" not in str(error.value)
