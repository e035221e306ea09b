"""The shared tier against the local Redis (docs/design/tiered-cache.md, "Shared tier"): what one
tier writes another reads back verified; bad values are dropped, never returned; deletes are
ordered after puts and survive an outage; a dead store is skipped by the breaker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from proxy.cache.entry import StoredResponse
from proxy.cache.purge_marks import PurgeMark, RecentPurges
from proxy.cache.store import ResponseStore
from proxy.cache.tiers.disk import DiskTier
from proxy.cache.tiers.shared import SharedTier
from proxy.cache.tiers.shared_backend import AiocacheRedis
from proxy.cache.tiers.shared_breaker import BreakerState
from proxy.cache.tiers.shared_format import KEEP_STALE_S, encode_value, storage_key
from tests.ports import free_port
from tests.shared_redis import REDIS_URL, client, delete_prefix, ensure_redis, unique_prefix
from tests.unit.cache_builders import stored_response

KEY = "http://cache.test/a"
MiB = 1024 * 1024


@pytest.fixture
def prefix() -> Iterator[str]:
    reason = ensure_redis()
    if reason is not None:
        pytest.skip(reason)
    name = unique_prefix()
    yield name
    delete_prefix(name)


def response(body: bytes = b"hello", max_age: int = 60) -> StoredResponse:
    now = time.time()
    return stored_response(
        [("Cache-Control", f"max-age={max_age}")], body=body, request_time=now, response_time=now
    )


def make_tier(
    prefix: str,
    url: str = REDIS_URL,
    *,
    max_object_bytes: int = MiB,
    max_queue_entries: int = 1024,
    clock: Callable[[], float] = time.monotonic,
) -> SharedTier:
    return SharedTier(
        AiocacheRedis(url, connect_timeout_s=0.5),
        prefix=prefix,
        max_object_bytes=max_object_bytes,
        timeout_s=0.5,
        max_queue_entries=max_queue_entries,
        clock=clock,
    )


def state(tier: SharedTier) -> BreakerState:
    return tier.breaker.state  # through a call: mypy would keep an asserted state narrowed


def run(
    prefix: str,
    body: Callable[[SharedTier], Awaitable[None]],
    *,
    max_object_bytes: int = MiB,
    max_queue_entries: int = 1024,
) -> None:
    async def main() -> None:
        tier = make_tier(
            prefix, max_object_bytes=max_object_bytes, max_queue_entries=max_queue_entries
        )
        tier.start()
        try:
            await body(tier)
        finally:
            await tier.close()

    asyncio.run(main())


def stored_value(prefix: str, key: str = KEY) -> bytes | None:
    with client() as r:
        value = r.get(storage_key(prefix, key))
        return None if value is None else bytes(value)


def test_what_one_tier_writes_another_reads_back(prefix: str) -> None:
    async def body(tier: SharedTier) -> None:
        small, large = response(b"small"), response(b"L" * (200 * 1024))  # large: in a thread
        assert tier.offer(KEY, (small,))
        assert tier.offer(KEY + "/large", (large,))
        await tier.wait_idle()
        other = make_tier(prefix)
        try:
            assert await other.get(KEY) == (small,)
            assert await other.get(KEY + "/large") == (large,)
            assert await other.get(KEY + "/absent") is None
        finally:
            await other.close()
        assert (other.stats.hits, other.stats.misses, tier.stats.writes) == (2, 1, 2)

    run(prefix, body)
    with client() as r:  # expires with its freshness plus the stale allowance
        assert 0 < r.ttl(storage_key(prefix, KEY)) <= 60 + KEEP_STALE_S


def test_a_value_that_does_not_verify_is_dropped_from_the_store(prefix: str) -> None:
    async def body(tier: SharedTier) -> None:
        value = encode_value(KEY, (response(b"x" * 500),))
        with client() as r:
            r.set(storage_key(prefix, KEY), value[:-1] + bytes([value[-1] ^ 1]))
            # An intact value for another key under this key's name: not served either.
            r.set(storage_key(prefix, KEY + "/b"), encode_value(KEY + "/c", (response(),)))
        assert await tier.get(KEY) is None
        assert await tier.get(KEY + "/b") is None
        assert tier.stats.errors["corrupt"] == 2
        await tier.wait_idle()
        assert stored_value(prefix) is None  # deleted, so no proxy reads it again

    run(prefix, body)


def test_a_delete_queued_after_a_put_wins(prefix: str) -> None:
    async def body(tier: SharedTier) -> None:
        tier.offer(KEY, (response(b"v1"),))
        await tier.wait_idle()
        tier.offer(KEY, (response(b"v2"),))
        tier.remove(KEY)
        assert not tier.may_hold(KEY)  # a pending delete: not read meanwhile
        await tier.wait_idle()
        assert stored_value(prefix) is None
        assert tier.may_hold(KEY)

    run(prefix, body)


def test_a_read_racing_a_purge_does_not_bring_the_value_back(prefix: str) -> None:
    async def body(tier: SharedTier) -> None:
        tier.offer(KEY, (response(b"purged"),))
        await tier.wait_idle()
        assert await tier.get(KEY + "/warm-up") is None  # a connection is open from now on
        reading = asyncio.ensure_future(tier.get(KEY))
        await asyncio.sleep(0)  # the GET is on its way
        tier.remove(KEY)  # a purge here meanwhile
        assert await reading is None
        assert tier.stats.hits == 0

    run(prefix, body)


def test_too_large_to_share_removes_the_older_copy(prefix: str) -> None:
    async def body(tier: SharedTier) -> None:
        tier.offer(KEY, (response(b"small"),))
        await tier.wait_idle()
        assert not tier.offer(KEY, (response(b"x" * 2000),))
        await tier.wait_idle()
        assert stored_value(prefix) is None

    run(prefix, body, max_object_bytes=1000)


def test_a_full_queue_drops_puts_but_keeps_a_waiting_delete(prefix: str) -> None:
    async def body(tier: SharedTier) -> None:
        tier.offer(KEY, (response(b"old"),))
        await tier.wait_idle()
        tier.offer(KEY + "/1", (response(),))
        tier.offer(KEY + "/2", (response(),))
        tier.remove(KEY)  # deletes are not held to the put bound
        assert not tier.offer(KEY, (response(b"new"),))  # two puts queued already: full
        assert tier.stats.writes_dropped == 1
        await tier.wait_idle()
        assert stored_value(prefix) is None
        assert stored_value(prefix, KEY + "/2") is not None

    run(prefix, body, max_queue_entries=2)


def test_values_older_than_a_purge_here_are_not_used(prefix: str) -> None:
    """A purge by prefix or surrogate key reaches only the URLs this proxy indexed; a value it
    never saw, fetched before the purge, is caught by the purge's mark when read."""

    async def body(tier: SharedTier) -> None:
        hard, soft = response(b"h"), response(b"s")
        tier.offer(KEY + "/hard/x", (hard,))
        tier.offer(KEY + "/soft/x", (soft,))
        await tier.wait_idle()
        purges = RecentPurges()
        after = hard.request_time + 1
        purges.note(PurgeMark(after, "hard", prefixes=(KEY + "/hard/",)))
        purges.note(PurgeMark(after, "soft", prefixes=(KEY + "/soft/",)))
        assert await tier.get(KEY + "/hard/x", purges) is None
        (marked,) = await tier.get(KEY + "/soft/x", purges) or ()
        assert marked.stale_marked
        await tier.wait_idle()
        assert stored_value(prefix, KEY + "/hard/x") is None

    run(prefix, body)


def test_a_dead_store_opens_the_breaker_and_deletes_wait_for_it(prefix: str) -> None:
    now = [0.0]

    async def main() -> None:
        with client() as r:
            r.set(storage_key(prefix, KEY), encode_value(KEY, (response(),)))
        dead = f"redis://127.0.0.1:{free_port()}/0"
        tier = make_tier(prefix, dead, clock=lambda: now[0])
        tier.start()
        for n in range(3):
            assert await tier.get(f"{KEY}/{n}") is None
        assert tier.stats.errors["connection"] == 3
        assert state(tier) is BreakerState.OPEN
        assert not tier.may_hold(KEY + "/4")  # the handler goes straight to the origin
        assert await tier.get(KEY + "/4") is None
        assert tier.stats.errors["connection"] == 3  # skipped, not tried
        assert not tier.offer(KEY + "/5", (response(),))
        tier.remove(KEY)  # a purge while the store is unreachable
        await tier.wait_idle()
        assert not tier.may_hold(KEY)
        # The store is back: the next operation's success sends the delete that waited.
        await tier.backend.close()
        tier.backend = AiocacheRedis(REDIS_URL, connect_timeout_s=0.5)
        now[0] += tier.breaker.cooldown_s
        assert await tier.get(KEY + "/6") is None  # the probe: a plain miss
        assert state(tier) is BreakerState.CLOSED
        await tier.wait_idle()
        assert stored_value(prefix) is None
        assert tier.may_hold(KEY)
        await tier.close()

    asyncio.run(main())


def test_the_store_promotes_a_shared_hit_to_its_disk_and_purges_reach_the_shared_copy(
    prefix: str, tmp_path: Path
) -> None:
    async def main() -> None:
        writer_tier = make_tier(prefix)
        writer_tier.start()
        first = ResponseStore(16 * MiB, MiB, shared=writer_tier)
        first.put(KEY, response(b"from the first proxy"))
        await writer_tier.wait_idle()

        disk = DiskTier(tmp_path, 16 * MiB, MiB)
        disk.open()
        reader_tier = make_tier(prefix)
        reader_tier.start()
        second = ResponseStore(16 * MiB, MiB, disk=disk, shared=reader_tier)
        assert second.writer is not None
        second.writer.start()
        assert second.is_on_disk(KEY)  # may a lower tier answer: the shared tier may
        variants = await second.load(KEY)
        assert variants is not None and variants[0].body == b"from the first proxy"
        second.promote(KEY, variants)
        await second.writer.wait_idle()
        assert KEY in disk  # now on this proxy's disk too
        second.invalidate(KEY)
        await reader_tier.wait_idle()
        assert stored_value(prefix) is None
        await second.writer.close()
        await reader_tier.close()
        await writer_tier.close()

    asyncio.run(main())
