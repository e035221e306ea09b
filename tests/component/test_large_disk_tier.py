"""DiskTier's large entries over a real directory: written from a file a chunk at a time,
looked up as a verified prefix, streamed chunk by chunk; a remove or a newer put overtakes a
copy in flight; a soft purge's copy never blesses a corrupt chunk (RFC 9111 §3: only what was
stored, intact)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

import pytest

from proxy.cache.entry import StoredResponse
from proxy.cache.tiers.disk import TEMP_MARK, DiskTier, LargeEntry, name_for
from proxy.cache.tiers.disk_format import CHUNK_SHIFT, EntryFormatError
from tests.component.large_entry_stubs import MiB, patterned_body, source_fd, spilled

SIZE = 5 * MiB + 77  # five whole chunks and a short one


def body_bytes(size: int = SIZE) -> bytes:
    return patterned_body(size)


def bodiless(size: int) -> StoredResponse:
    return spilled([("Cache-Control", "max-age=60")], size)


def opened(directory: Path, capacity: int = 64 * MiB, max_object: int = 32 * MiB) -> DiskTier:
    tier = DiskTier(directory, capacity, max_object)
    tier.open()
    return tier


def entry_path(tier: DiskTier, key: str) -> Path:
    name = name_for(key)
    return tier.directory / name[0] / name[1:3] / name


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.rglob("*") if TEMP_MARK in p.name]


def stream_all(entry: LargeEntry) -> bytes:
    fd = entry.open_body()
    try:
        return b"".join(entry.read_chunk(fd, i) for i in range(entry.header.chunk_count))
    finally:
        os.close(fd)


def test_put_file_then_stream_or_read_whole(tmp_path: Path) -> None:
    data = body_bytes()
    tier = opened(tmp_path)
    stored = bodiless(SIZE)
    assert asyncio.run(tier.put_file("k", stored, source_fd(data), SIZE)) is True
    assert tier.bytes_used == entry_path(tier, "k").stat().st_size
    large = asyncio.run(tier.lookup("k", MiB))  # memory admits 1 MiB: streamed
    assert isinstance(large, LargeEntry)
    assert large.header.chunk_shift == CHUNK_SHIFT
    assert large.variants == (stored,)
    assert stream_all(large) == data
    whole = asyncio.run(tier.lookup("k", None))  # or read whole, every chunk verified
    assert whole == (dataclasses.replace(stored, body=data),)


def test_a_restart_indexes_the_large_entry(tmp_path: Path) -> None:
    data = body_bytes()
    tier = opened(tmp_path)
    asyncio.run(tier.put_file("k", bodiless(SIZE), source_fd(data), SIZE))
    size = tier.bytes_used
    again = opened(tmp_path)  # no snapshot: the crash path, a header scan
    assert (again.entries, again.bytes_used) == (1, size)
    found = asyncio.run(again.lookup("k", 0))
    assert isinstance(found, LargeEntry) and stream_all(found) == data


def test_over_the_object_limit_stores_nothing_and_closes_the_source(tmp_path: Path) -> None:
    tier = opened(tmp_path, max_object=4 * MiB)
    fd = source_fd(body_bytes())
    assert asyncio.run(tier.put_file("k", bodiless(SIZE), fd, SIZE)) is False
    with pytest.raises(OSError):
        os.fstat(fd)
    assert not entry_path(tier, "k").exists()


def test_a_remove_overtakes_a_copy_in_flight(tmp_path: Path) -> None:
    tier = opened(tmp_path)

    async def scenario() -> bool:
        put = asyncio.ensure_future(
            tier.put_file("k", bodiless(SIZE), source_fd(body_bytes()), SIZE)
        )
        await asyncio.sleep(0)  # the copy has started
        tier.remove("k")
        return await put

    assert asyncio.run(scenario()) is False
    assert not entry_path(tier, "k").exists()
    assert leftovers(tmp_path) == []


def test_a_short_source_stores_nothing(tmp_path: Path) -> None:
    tier = opened(tmp_path)
    fd = source_fd(body_bytes(SIZE - 10))
    assert asyncio.run(tier.put_file("k", bodiless(SIZE), fd, SIZE)) is False
    assert not entry_path(tier, "k").exists()
    assert leftovers(tmp_path) == []


def test_a_copy_from_an_entry_verifies_each_chunk(tmp_path: Path) -> None:
    """A soft purge rewrites a large entry from its own file: a corrupt chunk fails the copy
    instead of getting a fresh digest."""
    data = body_bytes()
    tier = opened(tmp_path)
    asyncio.run(tier.put_file("k", bodiless(SIZE), source_fd(data), SIZE))
    large = asyncio.run(tier.lookup("k", 0))
    assert isinstance(large, LargeEntry)
    marked = dataclasses.replace(large.variants[0], stale_marked=True)
    assert asyncio.run(tier.put_file("k", marked, large.open_body(), SIZE, copy_from=large))
    again = asyncio.run(tier.lookup("k", 0))
    assert isinstance(again, LargeEntry) and again.variants[0].stale_marked
    assert stream_all(again) == data
    path = entry_path(tier, "k")
    with path.open("r+b") as f:
        f.seek(path.stat().st_size - 2 * MiB)
        f.write(b"\x00\x01")
    copy = dataclasses.replace(again.variants[0], stale_marked=False)
    assert not asyncio.run(tier.put_file("k", copy, again.open_body(), SIZE, copy_from=again))
    assert leftovers(tmp_path) == []


def test_a_corrupt_chunk_found_while_streaming_drops_the_entry(tmp_path: Path) -> None:
    data = body_bytes()
    tier = opened(tmp_path)
    asyncio.run(tier.put_file("k", bodiless(SIZE), source_fd(data), SIZE))
    large = asyncio.run(tier.lookup("k", 0))
    assert isinstance(large, LargeEntry)
    path = entry_path(tier, "k")
    with path.open("r+b") as f:
        f.seek(path.stat().st_size - SIZE + 3 * MiB + 5)  # in chunk 3
        f.write(b"?")
    fd = large.open_body()
    try:
        for index in range(3):
            large.read_chunk(fd, index)
        with pytest.raises(EntryFormatError) as failed:
            large.read_chunk(fd, 3)
    finally:
        os.close(fd)
    tier.drop_corrupt_large(large, failed.value)
    assert (tier.corrupt_dropped, tier.entries, path.exists()) == (1, 0, False)
