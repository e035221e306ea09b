"""Login rate limiting. Pure: the caller passes ``now_s`` (a monotonic clock reading).

A key (the client address, and separately the username) may fail ``max_failures`` times within
``window_s``; further attempts are refused until the oldest failure leaves the window. A success
clears the key's failures. Memory is bounded: at most ``max_keys`` keys, oldest evicted first.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field


@dataclass
class LoginLimiter:
    max_failures: int = 5
    window_s: float = 300.0
    max_keys: int = 10_000
    _failures: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)

    def _recent(self, key: str, now_s: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now_s - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after_s(self, keys: tuple[str, ...], now_s: float) -> float:
        """0 if every key may try now, else the seconds until the first blocked key may."""
        wait = 0.0
        for key in keys:
            times = self._recent(key, now_s)
            if len(times) >= self.max_failures:
                wait = max(wait, times[0] + self.window_s - now_s)
        return wait

    def note_failure(self, keys: tuple[str, ...], now_s: float) -> None:
        for key in keys:
            times = self._recent(key, now_s)
            times.append(now_s)
            self._failures[key] = times
            self._failures.move_to_end(key)
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def note_success(self, keys: tuple[str, ...]) -> None:
        for key in keys:
            self._failures.pop(key, None)
