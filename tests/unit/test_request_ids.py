"""proxy.exchange.ExchangeReader.new_request_id: the ids an edge draws are time-ordered, the idea
of UUIDv7 (RFC 9562 §5.7), in the 32 lowercase hex digits every consumer already accepts: 48
bits of Unix time in milliseconds, then 80 random bits drawn from the OS in blocks."""

from __future__ import annotations

import os
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.config import OriginConfig, ProxyConfig
from proxy.exchange import ExchangeReader
from proxy.routing import Router

_ID = re.compile(r"[0-9a-f]{32}")
_NOW_MS = 1_754_000_000_123  # an ordinary moment in 2025, in Unix milliseconds


class Clock:
    """A wall clock the test moves by hand, in the shape of time.time_ns."""

    def __init__(self, ms: int) -> None:
        self.ns = ms * 1_000_000 + 456_789  # sub-millisecond digits are dropped, not rounded

    def __call__(self) -> int:
        return self.ns

    def step_ms(self, ms: int) -> None:
        self.ns += ms * 1_000_000


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock(_NOW_MS)
    monkeypatch.setattr("proxy.exchange.time_ns", fake)
    return fake


def reader() -> ExchangeReader:
    config = ProxyConfig(origins=(OriginConfig("http://127.0.0.1:8000", (), False),))
    return ExchangeReader(Router(config), "X-Cachet-Use")


def test_ids_are_32_lowercase_hex_digits() -> None:
    ids = reader()
    drawn = [ids.new_request_id() for _ in range(600)]  # across more than two blocks
    assert all(_ID.fullmatch(found) for found in drawn)


def test_the_first_12_digits_are_the_unix_ms_clock_at_draw_time(clock: Clock) -> None:
    # RFC 9562 §5.7: unix_ts_ms, 48 bits, big-endian (so its hex digits sort as the time does).
    ids = reader()
    first = ids.new_request_id()
    assert first[:12] == f"{_NOW_MS:012x}" and int(first[:12], 16) == _NOW_MS
    clock.step_ms(1)
    assert int(ids.new_request_id()[:12], 16) == _NOW_MS + 1


def test_an_early_clock_is_zero_padded_to_12_digits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("proxy.exchange.time_ns", Clock(5))
    found = reader().new_request_id()
    assert found[:12] == "000000000005" and _ID.fullmatch(found)


@pytest.mark.parametrize("step_ms", [1, 2, 1000, 86_400_000])
def test_ids_drawn_later_sort_after_ids_drawn_earlier(clock: Clock, step_ms: int) -> None:
    # RFC 9562 §6.2: the time prefix orders ids across milliseconds; within one, the random tail
    # may order them either way.
    ids = reader()
    earlier = [ids.new_request_id() for _ in range(300)]
    clock.step_ms(step_ms)
    later = [ids.new_request_id() for _ in range(300)]
    assert max(earlier) < min(later)


@given(st.lists(st.integers(0, 5_000), min_size=1, max_size=40))
def test_time_prefixes_never_decrease_while_the_clock_moves_forward(steps: list[int]) -> None:
    fake, ids, prefixes = Clock(_NOW_MS), reader(), list[int]()
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr("proxy.exchange.time_ns", fake)
        for step in steps:
            fake.step_ms(step)
            prefixes.append(int(ids.new_request_id()[:12], 16))
    assert prefixes == sorted(prefixes)
    assert prefixes[-1] == _NOW_MS + sum(steps)


def test_a_thousand_ids_in_one_millisecond_are_distinct(clock: Clock) -> None:
    ids = reader()
    drawn = [ids.new_request_id() for _ in range(1000)]
    assert len({found[:12] for found in drawn}) == 1
    assert len(set(drawn)) == 1000


def test_the_random_part_is_80_bits_from_os_urandom(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # RFC 9562 §8: the random part is what makes an id unguessable, so it must come from a
    # CSPRNG; each id's last 20 hex digits are a distinct 10-byte slice of what the OS gave.
    given_bytes: list[bytes] = []
    real_urandom = os.urandom

    def recording_urandom(n: int) -> bytes:
        given_bytes.append(real_urandom(n))
        return given_bytes[-1]

    monkeypatch.setattr(os, "urandom", recording_urandom)
    ids = reader()
    tails = [ids.new_request_id()[12:] for _ in range(256)]
    assert len(given_bytes) == 1 and len(given_bytes[0]) == 10 * 256
    block = given_bytes[0]
    assert sorted(tails) == sorted(block[i : i + 10].hex() for i in range(0, len(block), 10))
    assert len(set(tails)) == 256  # not constant (a repeat among 256 draws of 80 bits: ~2**-64)


def test_one_os_urandom_call_per_256_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real_urandom = os.urandom

    def counting_urandom(n: int) -> bytes:
        calls.append(n)
        return real_urandom(n)

    monkeypatch.setattr(os, "urandom", counting_urandom)
    ids = reader()
    for _ in range(3 * 256):
        ids.new_request_id()
    assert len(calls) == 3
    ids.new_request_id()
    assert len(calls) == 4
