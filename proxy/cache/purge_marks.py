"""Purges remembered for the fills that were on their way when they ran.

A purge removes what the cache holds; a response still streaming from the origin is not held
yet, and used to be stored after the purge that should have removed it (a 1 GiB fill takes
seconds). Each purge leaves a `PurgeMark`; when a fill is about to be stored, `RecentPurges`
says whether a purge issued after its request went out covers it: hard (do not store it) or
soft (store it marked stale). Pure: no I/O, no clock (times are given).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from proxy.cache.entry import StoredResponse
from proxy.cache.surrogate import surrogate_keys

RECENT_PURGES = 256  # a purge older than the 256 since is forgotten (fills rarely span so many)

Verdict = Literal["hard", "soft"]


@dataclass(frozen=True, slots=True)
class PurgeMark:
    at: float  # POSIX seconds when the purge ran
    mode: Verdict
    urls: frozenset[str] = frozenset()  # cache keys
    prefixes: tuple[str, ...] = ()
    surrogate_keys: frozenset[str] = frozenset()
    content_ids: frozenset[str] = frozenset()

    def covers(self, key: str, stored: StoredResponse) -> bool:
        if key in self.urls or any(key.startswith(prefix) for prefix in self.prefixes):
            return True
        if self.surrogate_keys and not self.surrogate_keys.isdisjoint(
            surrogate_keys(stored.headers)
        ):
            return True
        content_id = getattr(stored.attribution, "content_id", None)
        return content_id is not None and content_id in self.content_ids


class RecentPurges:
    def __init__(self, limit: int = RECENT_PURGES) -> None:
        self._marks: deque[PurgeMark] = deque(maxlen=limit)

    def note(self, mark: PurgeMark) -> None:
        self._marks.append(mark)

    def verdict(self, key: str, stored: StoredResponse) -> Verdict | None:
        """What the purges issued since ``stored``'s request went out (its ``request_time``)
        say about storing it under ``key``: "hard" wins over "soft"; None if none covers it."""
        found: Verdict | None = None
        for mark in _newest_first(self._marks):
            if mark.at < stored.request_time:
                break  # marks are noted in time order
            if mark.covers(key, stored):
                if mark.mode == "hard":
                    return "hard"
                found = "soft"
        return found

    def surviving(self, key: str, variants: Iterable[StoredResponse]) -> tuple[StoredResponse, ...]:
        """The variants no purge since their request went out removes; a soft purge's mark is
        applied (RFC 9111 §4.2.4: served stale only where stale is allowed)."""
        kept: list[StoredResponse] = []
        for stored in variants:
            verdict = self.verdict(key, stored)
            if verdict == "hard":
                continue
            if verdict == "soft":
                stored.stale_marked = True
            kept.append(stored)
        return tuple(kept)

    def __len__(self) -> int:
        return len(self._marks)


def _newest_first(marks: deque[PurgeMark]) -> Iterable[PurgeMark]:
    return reversed(marks)
