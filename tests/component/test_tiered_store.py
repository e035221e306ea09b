"""ResponseStore over a real DiskTier: write-through through a bounded queue, promotion, and
invalidation / soft purge reaching both tiers (issue 3)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from proxy.cache.entry import StoredResponse
from proxy.cache.store import DiskWriter, ResponseStore
from proxy.cache.tiers.disk import DiskTier
from tests.unit.cache_builders import stored_response

MiB = 1024 * 1024


def response(body: bytes = b"hello", *headers: tuple[str, str]) -> StoredResponse:
    return stored_response([("Cache-Control", "max-age=60"), *headers], body=body)


def make_store(directory: Path) -> ResponseStore:
    disk = DiskTier(directory, 16 * MiB, MiB)
    disk.open()
    return ResponseStore(16 * MiB, MiB, disk=disk)


async def settle(store: ResponseStore) -> None:
    assert store.writer is not None
    await store.writer.wait_idle()


def test_write_through_then_a_new_store_reads_it_back(tmp_path: Path) -> None:
    async def main() -> None:
        store = make_store(tmp_path)
        assert store.writer is not None
        store.writer.start()
        store.put("http://a/x", response(b"body", ("Surrogate-Key", "t1")))
        await settle(store)
        await store.writer.close()
        again = make_store(tmp_path)
        assert again.select("http://a/x", [])[0] is None  # memory starts empty
        assert again.is_on_disk("http://a/x")
        variants = await again.load("http://a/x")
        assert variants is not None and variants[0].body == b"body"
        again.promote("http://a/x", variants)
        assert again.select("http://a/x", [])[0] is not None
        assert again.surrogates.keys_for("t1") == {"http://a/x"}  # re-indexed from disk

    asyncio.run(main())


def test_invalidate_cancels_a_queued_write_and_removes_the_file(tmp_path: Path) -> None:
    async def main() -> None:
        store = make_store(tmp_path)
        assert store.writer is not None and store.disk is not None
        store.put("http://a/q", response())  # queued, writer not started
        assert store.invalidate("http://a/q")
        store.writer.start()
        await settle(store)
        assert not store.is_on_disk("http://a/q")
        store.put("http://a/d", response())
        await settle(store)
        assert store.is_on_disk("http://a/d")
        assert store.invalidate("http://a/d")
        assert not store.is_on_disk("http://a/d")
        assert store.disk.entries == 0
        await store.writer.close()

    asyncio.run(main())


def test_soft_purge_marks_memory_and_disk_copies_stale(tmp_path: Path) -> None:
    async def main() -> None:
        store = make_store(tmp_path)
        assert store.writer is not None
        store.writer.start()
        store.put("http://a/s", response())
        await settle(store)
        assert store.mark_stale("http://a/s")
        await settle(store)
        await store.writer.close()
        again = make_store(tmp_path)
        variants = await again.load("http://a/s")
        assert variants is not None and variants[0].stale_marked

    asyncio.run(main())


def test_a_full_queue_drops_the_put_and_the_older_disk_copy(tmp_path: Path) -> None:
    async def main() -> None:
        disk = DiskTier(tmp_path, 16 * MiB, MiB)
        disk.open()
        writer = DiskWriter(disk, max_entries=2)
        assert writer.queue("k1", (response(),))
        assert writer.queue("k1", (response(b"newer"),))  # same key: replaced, not grown
        assert writer.queue("k2", (response(),))
        assert not writer.queue("k3", (response(),))
        assert writer.dropped == 1
        writer.start()
        await writer.close()
        assert set(disk.keys()) == {"k1", "k2"}

    asyncio.run(main())


def test_surrogate_keys_of_disk_only_entries_are_indexed_after_a_restart(tmp_path: Path) -> None:
    async def main() -> None:
        store = make_store(tmp_path)
        assert store.writer is not None
        store.writer.start()
        store.put("http://a/1", response(b"1", ("Surrogate-Key", "red blue")))
        store.put("http://a/2", response(b"2", ("Cache-Tag", "blue")))
        store.put("http://a/3", response(b"3"))
        await settle(store)
        await store.writer.close()
        again = make_store(tmp_path)
        assert again.surrogates.keys_for("blue") == frozenset()
        assert await again.index_disk_surrogates() == 2
        assert again.surrogates.keys_for("blue") == {"http://a/1", "http://a/2"}
        assert again.surrogates.keys_for("red") == {"http://a/1"}

    asyncio.run(main())


def test_a_second_304_refresh_waits_for_the_rewrite_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 9111 §4.3.4: each 304 for a large disk entry asks for its file to be rewritten with
    the refreshed head. While one rewrite is copying, another would copy the same body again
    (on a slow disk they queued faster than they landed, and the entry stayed stale); it is
    skipped, and a refresh after the first has landed starts a new one."""

    async def run() -> None:
        writer = DiskWriter(DiskTier(tmp_path / "disk", 16 * MiB, MiB))
        release = asyncio.Event()
        copies: list[StoredResponse] = []

        async def slow_copy(key: str, stored: StoredResponse, entry: object) -> bool:
            copies.append(stored)
            await release.wait()
            return True

        monkeypatch.setattr(writer, "_rewrite_large", slow_copy)
        first, second, third = response(b"a"), response(b"b"), response(b"c")
        writer.rewrite_large("k", first, None)  # type: ignore[arg-type]
        writer.rewrite_large("k", second, None)  # type: ignore[arg-type]
        await asyncio.sleep(0)
        assert copies == [first]
        assert len(writer.file_writes("k")) == 1
        assert writer.file_writes("other") == []
        release.set()
        await asyncio.wait(writer.file_writes("k"))
        assert writer.file_writes("k") == []
        writer.rewrite_large("k", third, None)  # type: ignore[arg-type]
        await asyncio.wait(writer.file_writes("k"))
        assert copies == [first, third]

    asyncio.run(run())
