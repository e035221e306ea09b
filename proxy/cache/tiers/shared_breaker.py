"""A circuit breaker for the shared tier: after a few failures in a row the tier is skipped for
a while, so a dead or slow shared store costs each client at most its timeout a few times, not
once per request.

Closed: every operation may go; ``failure_threshold`` failures in a row open it. Open: nothing
goes until the cool-down has passed, then one probe is let through (half-open). The probe's
success closes the breaker; its failure opens it again for twice as long (up to
``max_cooldown_s``). A probe that ends with neither (its task cancelled) is abandoned, and the
next operation probes instead.

Pure: no I/O; times are given (monotonic seconds).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class BreakerState(enum.IntEnum):
    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


@dataclass
class CircuitBreaker:
    failure_threshold: int = 3
    base_cooldown_s: float = 1.0
    max_cooldown_s: float = 30.0
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0  # in a row, while closed
    cooldown_s: float = 0.0
    open_until: float = 0.0
    probing: bool = False
    opened: int = 0  # times it opened (a metric)

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.base_cooldown_s <= 0:
            raise ValueError("the breaker needs a threshold >= 1 and a positive cool-down")
        self.cooldown_s = self.base_cooldown_s

    def allow(self, now: float) -> bool:
        """May an operation go to the shared store now? True in half-open means: you probe."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            if now < self.open_until:
                return False
            self.state = BreakerState.HALF_OPEN
            self.probing = False
        if self.probing:
            return False
        self.probing = True
        return True

    def would_allow(self, now: float) -> bool:
        """``allow`` without taking the probe: may a lookup be worth starting now?"""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            return now >= self.open_until
        return not self.probing

    def success(self) -> None:
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.cooldown_s = self.base_cooldown_s
        self.probing = False

    def failure(self, now: float) -> None:
        if self.state is BreakerState.HALF_OPEN:
            self.cooldown_s = min(self.cooldown_s * 2, self.max_cooldown_s)
            self._open(now)
            return
        if self.state is BreakerState.OPEN:
            return  # an operation that began before it opened: already counted
        self.failures += 1
        if self.failures >= self.failure_threshold:
            self._open(now)

    def abandon(self) -> None:
        """An operation ended with no verdict (cancelled): free the probe slot if it held it."""
        if self.state is BreakerState.HALF_OPEN:
            self.probing = False

    def _open(self, now: float) -> None:
        self.state = BreakerState.OPEN
        self.open_until = now + self.cooldown_s
        self.failures = 0
        self.probing = False
        self.opened += 1
