"""The shared tier's circuit breaker: a few failures in a row skip the tier for a while, one
probe at a time tests it again, and the cool-down grows while the store stays down."""

from __future__ import annotations

import pytest

from proxy.cache.tiers.shared_breaker import BreakerState, CircuitBreaker


def _state(breaker: CircuitBreaker) -> BreakerState:
    return breaker.state  # read through a call: mypy would keep an asserted state narrowed


def _opened(now: float = 0.0) -> CircuitBreaker:
    breaker = CircuitBreaker(failure_threshold=3, base_cooldown_s=1.0, max_cooldown_s=8.0)
    for _ in range(3):
        assert breaker.allow(now)
        breaker.failure(now)
    return breaker


def test_failures_in_a_row_open_it_and_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker(failure_threshold=3)
    breaker.failure(0.0)
    breaker.failure(0.0)
    breaker.success()
    breaker.failure(0.0)
    breaker.failure(0.0)
    assert _state(breaker) is BreakerState.CLOSED
    breaker.failure(0.0)
    assert _state(breaker) is BreakerState.OPEN
    assert breaker.opened == 1


def test_open_skips_everything_until_the_cool_down_has_passed() -> None:
    breaker = _opened(now=10.0)
    assert not breaker.allow(10.5)
    assert not breaker.would_allow(10.99)
    assert breaker.would_allow(11.0)
    assert breaker.allow(11.0)  # the probe
    assert _state(breaker) is BreakerState.HALF_OPEN


def test_only_one_probe_at_a_time() -> None:
    breaker = _opened()
    assert breaker.allow(1.0)
    assert not breaker.allow(1.0)
    assert not breaker.would_allow(1.0)


def test_a_successful_probe_closes_it() -> None:
    breaker = _opened()
    assert breaker.allow(1.0)
    breaker.success()
    assert _state(breaker) is BreakerState.CLOSED
    assert breaker.allow(1.0) and breaker.allow(1.0)


def test_a_failed_probe_opens_it_for_twice_as_long_up_to_the_cap() -> None:
    breaker = _opened()
    now = 0.0
    for cooldown in (2.0, 4.0, 8.0, 8.0):
        now += breaker.cooldown_s
        assert breaker.allow(now)
        breaker.failure(now)
        assert _state(breaker) is BreakerState.OPEN
        assert breaker.open_until == now + cooldown
    breaker.allow(now + 8.0)
    breaker.success()
    assert breaker.cooldown_s == 1.0  # back to the base once the store answers


def test_an_abandoned_probe_lets_the_next_operation_probe() -> None:
    breaker = _opened()
    assert breaker.allow(1.0)
    breaker.abandon()  # its task was cancelled: no verdict
    assert breaker.allow(1.0)


def test_late_failures_while_open_do_not_extend_it() -> None:
    breaker = _opened()
    breaker.failure(0.5)  # an operation that began before it opened
    assert breaker.open_until == 1.0
    assert breaker.opened == 1


@pytest.mark.parametrize(("threshold", "cooldown"), [(0, 1.0), (3, 0.0), (3, -1.0)])
def test_nonsense_settings_are_refused(threshold: int, cooldown: float) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=threshold, base_cooldown_s=cooldown)
