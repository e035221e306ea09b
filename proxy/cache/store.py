"""The cache as the handler sees it: variants of one URL kept together in the memory tier.

A URL's variants (RFC 9111 §4.1) live in one tier entry, so a hit is a single dict lookup and
an eviction drops a URL whole; the number of variants per URL is bounded so a Vary on a
high-cardinality field can't crowd out everything else.
"""

from __future__ import annotations

from collections.abc import Callable

from proxy.cache.entry import StoredResponse
from proxy.cache.keys import is_vary_match
from proxy.cache.tiers.memory import MemoryTier
from proxy.http.fields import Headers

MAX_VARIANTS = 16
Variants = tuple[StoredResponse, ...]


class ResponseStore:
    def __init__(
        self,
        capacity_bytes: int,
        max_object_bytes: int,
        on_evict: Callable[[str, Variants, int], None] | None = None,
    ) -> None:
        self.tier: MemoryTier[str, Variants] = MemoryTier(
            capacity_bytes, max_object_bytes, on_evict=on_evict
        )

    def variants(self, key: str) -> Variants | None:
        return self.tier.get(key)

    def select(self, key: str, request_headers: Headers) -> tuple[StoredResponse | None, bool]:
        """The most recent variant matching the request, and whether any variant exists."""
        variants = self.tier.get(key)
        if not variants:
            return None, False
        for stored in variants:  # newest first
            if not stored.vary or is_vary_match(stored.vary, request_headers):
                return stored, True
        return None, True

    def put(self, key: str, stored: StoredResponse) -> bool:
        """Store a variant, replacing any older variant with the same secondary key."""
        existing = self.tier.peek(key) or ()
        kept = tuple(old for old in existing if old.vary != stored.vary)
        variants = (stored, *kept)[:MAX_VARIANTS]
        return self.tier.put(key, variants, sum(v.size_bytes for v in variants))

    def replace(self, key: str, old: StoredResponse, new: StoredResponse) -> None:
        """Swap one variant for its refreshed copy (after a 304, §4.3.4)."""
        existing = self.tier.peek(key)
        if not existing:
            return
        variants = tuple(new if v is old else v for v in existing)
        self.tier.put(key, variants, sum(v.size_bytes for v in variants))

    def purge_content(self, content_ids: set[str]) -> int:
        """Drop every URL that has a variant attributed to one of these content ids."""
        doomed = [
            key
            for key, variants in self.tier.items()
            if any(
                v.attribution is not None and v.attribution.content_id in content_ids
                for v in variants
            )
        ]
        for key in doomed:
            self.tier.remove(key)
        return len(doomed)

    def invalidate(self, key: str) -> bool:
        return self.tier.remove(key) is not None

    @property
    def bytes_used(self) -> int:
        return self.tier.bytes_used

    def __len__(self) -> int:
        return len(self.tier)
