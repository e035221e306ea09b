"""The memory tier: byte budget, S3-FIFO rules (Yang et al., SOSP '23), scan resistance.

No RFC governs eviction; the rules tested here are S3-FIFO's (paper §4) with our byte-sized
reading of them, as written in docs/design/eviction.md, and the issue's memory-tier contract.
"""

from __future__ import annotations

import random
from collections import OrderedDict

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from proxy.cache.tiers.memory import MemoryTier

Evicted = list[tuple[str, str, int]]


def make_tier(
    capacity_bytes: int = 100, max_object_bytes: int = 100
) -> tuple[MemoryTier[str, str], Evicted]:
    evicted: Evicted = []
    tier: MemoryTier[str, str] = MemoryTier(
        capacity_bytes, max_object_bytes, lambda k, v, n: evicted.append((k, v, n))
    )
    return tier, evicted


def evicted_keys(evicted: Evicted) -> list[str]:
    return [key for key, _, _ in evicted]


# -- API contract ---------------------------------------------------------------------------------


def test_put_then_get_returns_value_and_accounts_bytes() -> None:
    tier, evicted = make_tier()
    assert tier.put("a", "A", 30)
    assert tier.get("a") == "A"
    assert tier.peek("a") == "A"
    assert "a" in tier
    assert len(tier) == 1
    assert tier.bytes_used == 30
    assert tier.capacity_bytes == 100
    assert tier.get("missing") is None
    assert tier.peek("missing") is None
    assert "missing" not in tier
    assert evicted == []


def test_put_refuses_object_over_per_object_limit() -> None:
    """Issue 2: above the per-object limit a response streams through, never stored."""
    tier, evicted = make_tier(capacity_bytes=100, max_object_bytes=40)
    assert tier.put("a", "A", 40)
    assert not tier.put("big", "B", 41)
    assert "big" not in tier
    assert tier.bytes_used == 40
    assert evicted == []
    assert tier.evictions == 0


def test_put_refuses_object_over_whole_budget() -> None:
    tier, _ = make_tier(capacity_bytes=100, max_object_bytes=1000)
    assert not tier.put("big", "B", 101)
    assert tier.bytes_used == 0
    assert tier.put("whole", "W", 100)
    assert tier.bytes_used == 100


def test_object_equal_to_budget_evicts_everything_else() -> None:
    tier, evicted = make_tier(capacity_bytes=100, max_object_bytes=100)
    tier.put("a", "A", 50)
    tier.put("b", "B", 50)
    assert tier.put("whole", "W", 100)
    assert sorted(evicted_keys(evicted)) == ["a", "b"]
    assert tier.bytes_used == 100
    assert len(tier) == 1


def test_refused_replacement_drops_the_old_entry() -> None:
    """The caller meant to replace: serving the old value afterwards would be stale."""
    tier, evicted = make_tier(capacity_bytes=100, max_object_bytes=40)
    tier.put("a", "old", 20)
    assert not tier.put("a", "new", 41)
    assert "a" not in tier
    assert tier.bytes_used == 0
    assert evicted == []


def test_replace_accounts_bytes_and_is_not_an_eviction() -> None:
    tier, evicted = make_tier()
    tier.put("a", "A1", 30)
    tier.put("b", "B", 30)
    assert tier.put("a", "A2", 50)
    assert tier.get("a") == "A2"
    assert tier.bytes_used == 80
    assert tier.put("a", "A3", 10)
    assert tier.bytes_used == 40
    assert len(tier) == 2
    assert evicted == []


def test_growing_replacement_evicts_others_never_itself() -> None:
    tier, evicted = make_tier()
    tier.put("a", "A", 40)
    tier.put("b", "B", 40)
    assert tier.put("b", "B2", 90)
    assert evicted_keys(evicted) == ["a"]
    assert tier.peek("b") == "B2"
    assert tier.bytes_used == 90


def test_remove_returns_value_and_is_not_an_eviction() -> None:
    tier, evicted = make_tier()
    tier.put("a", "A", 10)
    assert tier.remove("a") == "A"
    assert tier.remove("a") is None
    assert "a" not in tier
    assert tier.bytes_used == 0
    assert evicted == []


def test_clear_empties_and_keeps_eviction_count() -> None:
    tier, evicted = make_tier()
    for i in range(11):
        tier.put(f"k{i}", "v", 10)
    assert tier.evictions == 1
    tier.clear()
    assert len(tier) == 0
    assert tier.bytes_used == 0
    assert tier.evictions == 1
    assert len(evicted) == 1


def test_items_is_a_snapshot_so_purge_by_prefix_can_remove() -> None:
    tier, _ = make_tier()
    for key in ("/a/1", "/a/2", "/b/1"):
        tier.put(key, key.upper(), 10)
    for key, _value in tier.items():
        if key.startswith("/a/"):
            tier.remove(key)
    assert dict(tier.items()) == {"/b/1": "/B/1"}


@pytest.mark.parametrize(("capacity", "max_object"), [(0, 10), (10, 0), (-1, 10)])
def test_constructor_rejects_non_positive_limits(capacity: int, max_object: int) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        MemoryTier[str, str](capacity, max_object)


@pytest.mark.parametrize("size", [0, -5])
def test_put_rejects_non_positive_size(size: int) -> None:
    tier, _ = make_tier()
    with pytest.raises(ValueError, match="size_bytes"):
        tier.put("a", "A", size)


# -- S3-FIFO rules ---------------------------------------------------------------------------
# Budget 100 bytes, 10-byte objects: ten entries, the small queue's share is one entry (10 bytes).


def test_unread_new_entries_leave_in_fifo_order_and_are_reported_once() -> None:
    tier, evicted = make_tier()
    for key in "abcdefghij":
        tier.put(key, key.upper(), 10)
    tier.put("k", "K", 10)
    tier.put("l", "L", 10)
    assert evicted == [("a", "A", 10), ("b", "B", 10)]
    assert tier.evictions == 2
    assert tier.bytes_used == 100


def test_one_read_in_small_promotes_instead_of_evicting() -> None:
    tier, evicted = make_tier()
    for key in "abcdefghij":
        tier.put(key, key.upper(), 10)
    tier.get("a")
    tier.put("k", "K", 10)
    assert "a" in tier
    assert evicted_keys(evicted) == ["b"]


def test_peek_does_not_count_as_a_read() -> None:
    tier, evicted = make_tier()
    for key in "abcdefghij":
        tier.put(key, key.upper(), 10)
    tier.peek("a")
    tier.put("k", "K", 10)
    assert evicted_keys(evicted) == ["a"]


def test_ghost_key_put_again_goes_to_main_and_survives_a_flood() -> None:
    tier, evicted = make_tier()
    for key in "abcdefghij":
        tier.put(key, key.upper(), 10)
    tier.put("n0", "N", 10)
    assert evicted_keys(evicted) == ["a"]
    tier.put("a", "A again", 10)  # "a" is a ghost: straight to main, never read since
    for i in range(1, 30):
        tier.put(f"n{i}", "N", 10)
    assert tier.peek("a") == "A again"
    assert evicted_keys(evicted).count("a") == 1


def test_key_not_in_ghost_does_not_survive_a_flood() -> None:
    """Control for the ghost test: the same flood evicts an ordinary unread newcomer."""
    tier, _ = make_tier()
    for key in "abcdefghij":
        tier.put(key, key.upper(), 10)
    tier.put("z", "Z", 10)
    for i in range(1, 30):
        tier.put(f"n{i}", "N", 10)
    assert "z" not in tier


def test_main_gives_read_entries_another_lap_and_evicts_first_unread() -> None:
    tier, evicted = make_tier()
    for key in "abcdefghij":
        tier.put(key, key.upper(), 10)
        tier.get(key)  # read once: all promote to main when small is evicted
    tier.put("k", "K", 10)  # small drains into main; main's head "a" (freq 0) goes
    assert evicted_keys(evicted) == ["a"]
    tier.get("c")
    tier.get("c")  # c: freq 2
    tier.get("d")  # d: freq 1
    tier.put("l", "L", 10)  # small is at its share: main evicts its head "b"
    assert evicted_keys(evicted) == ["a", "b"]
    tier.get("k")
    tier.get("l")
    tier.put("m", "M", 10)  # k, l promote; main: c (2→1, lap), d (1→0, lap), e evicted
    assert evicted_keys(evicted) == ["a", "b", "e"]
    assert {"c", "d", "k", "l", "m"} <= {key for key, _ in tier.items()}


def test_frequency_is_capped_at_three() -> None:
    """S3-FIFO keeps two bits: 100 reads buy no more laps in main than 3 reads do."""
    tier, evicted = make_tier()
    for key in "abcdefghij":
        tier.put(key, key.upper(), 10)
        tier.get(key)
    tier.put("k", "K", 10)  # all promote with freq 0; main's head "a" is evicted
    for _ in range(100):
        tier.get("b")
    for _ in range(3):
        tier.get("c")
    for i in range(200):  # read-once newcomers: they promote, so main keeps turning over
        tier.put(f"x{i}", "X", 10)
        tier.get(f"x{i}")
    order = evicted_keys(evicted)
    assert "b" in order
    assert "c" in order
    assert order.index("b") < order.index("c")  # uncapped, b would outlast c by 97 laps


# -- model-based: invariants against a dict + byte sum --------------------------------------

KEYS = st.sampled_from([f"k{i}" for i in range(12)])
CAPACITY = 200
MAX_OBJECT = 150


class MemoryTierMachine(RuleBasedStateMachine):
    @initialize()
    def make(self) -> None:
        self.evicted: Evicted = []
        self.tier: MemoryTier[str, int] = MemoryTier(
            CAPACITY, MAX_OBJECT, lambda k, v, n: self.evicted.append((k, str(v), n))
        )
        self.model: dict[str, tuple[int, int]] = {}
        self.counter = 0
        self.evictions = 0

    @rule(key=KEYS, size=st.integers(min_value=1, max_value=180))
    def put(self, key: str, size: int) -> None:
        self.counter += 1
        self.evicted.clear()
        admitted = self.tier.put(key, self.counter, size)
        assert admitted == (size <= MAX_OBJECT)
        self.model.pop(key, None)
        for ev_key, ev_value, ev_size in self.evicted:
            assert ev_key != key
            assert self.model.pop(ev_key) == (int(ev_value), ev_size)
        self.evictions += len(self.evicted)
        if admitted:
            self.model[key] = (self.counter, size)
            assert key in self.tier

    @rule(key=KEYS)
    def get(self, key: str) -> None:
        expected = self.model.get(key)
        assert self.tier.get(key) == (None if expected is None else expected[0])

    @rule(key=KEYS)
    def remove(self, key: str) -> None:
        expected = self.model.pop(key, None)
        assert self.tier.remove(key) == (None if expected is None else expected[0])
        assert key not in self.tier

    # Rarely, so most runs fill the budget and exercise eviction between clears.
    @precondition(lambda self: self.counter % 7 == 3)
    @rule()
    def clear(self) -> None:
        self.tier.clear()
        self.model.clear()

    @invariant()
    def matches_model(self) -> None:
        assert self.tier.bytes_used == sum(size for _, size in self.model.values())
        assert self.tier.bytes_used <= CAPACITY
        assert len(self.tier) == len(self.model)
        assert self.tier.evictions == self.evictions
        for key, (value, _) in self.model.items():
            assert self.tier.peek(key) == value
        assert {key for key, _ in self.tier.items()} == set(self.model)


MemoryTierMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None
)
TestMemoryTierModel = MemoryTierMachine.TestCase


# -- scan resistance ------------------------------------------------------------------------------


class LruReference:
    """Plain byte-budgeted LRU, the baseline a one-off scan is known to flush."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self.entries: OrderedDict[str, int] = OrderedDict()
        self.bytes_used = 0

    def get(self, key: str) -> int | None:
        if key not in self.entries:
            return None
        self.entries.move_to_end(key)
        return self.entries[key]

    def put(self, key: str, value: int, size_bytes: int) -> None:
        while self.bytes_used + size_bytes > self.capacity_bytes:
            _, old = self.entries.popitem(last=False)
            self.bytes_used -= old
        self.entries[key] = size_bytes
        self.bytes_used += size_bytes


def hot_hit_ratio_under_scan(cache: MemoryTier[str, int] | LruReference) -> float:
    """Hot set of 50 x 100 B in a 10 kB cache, then reads interleaved 1 hot : 4 cold one-offs."""
    rng = random.Random(2023)
    hot = [f"hot{i}" for i in range(50)]

    def read(key: str) -> bool:
        if cache.get(key) is not None:
            return True
        cache.put(key, 1, 100)
        return False

    for _ in range(10):
        for key in hot:
            read(key)
    hits = reads = 0
    for i in range(3000):
        reads += 1
        hits += read(rng.choice(hot))
        for j in range(4):
            read(f"scan{4 * i + j}")
    return hits / reads


def test_one_off_scan_does_not_flush_hot_set_unlike_lru() -> None:
    """S3-FIFO keeps a fitting hot set while 12000 one-off keys stream past; LRU loses it."""
    s3fifo = hot_hit_ratio_under_scan(MemoryTier[str, int](10_000, 10_000))
    lru = hot_hit_ratio_under_scan(LruReference(10_000))
    assert s3fifo >= 0.9
    assert lru <= 0.5
    assert s3fifo - lru >= 0.4
