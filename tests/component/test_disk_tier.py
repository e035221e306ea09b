"""DiskTier over a real temporary directory: put/get/remove, eviction by bytes, restarts, crash
leftovers, and corrupt files never served (RFC 9111 §3: only what was stored, intact)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from proxy.cache.entry import StoredResponse
from proxy.cache.tiers.disk import SNAPSHOT_NAME, TEMP_MARK, DiskTier, name_for
from proxy.cache.tiers.disk_format import encode_entry
from tests.unit.cache_builders import stored_response

MiB = 1024 * 1024


def response(body: bytes = b"hello", *headers: tuple[str, str]) -> StoredResponse:
    return stored_response([("Cache-Control", "max-age=60"), *headers], body=body)


def opened(directory: Path, capacity_bytes: int = MiB, max_object_bytes: int = MiB) -> DiskTier:
    tier = DiskTier(directory, capacity_bytes, max_object_bytes)
    tier.open()
    return tier


def file_of(tier: DiskTier, key: str) -> Path:
    name = name_for(key)
    return tier.directory / name[0] / name[1:3] / name


def test_put_then_get_returns_equal_variants(tmp_path: Path) -> None:
    tier = opened(tmp_path)
    variants = (response(b"a", ("Vary", "Accept")), response(b"bb"))
    assert asyncio.run(tier.put("k", variants)) is True
    assert asyncio.run(tier.get("k")) == variants
    assert tier.entries == 1
    assert tier.bytes_used == file_of(tier, "k").stat().st_size
    assert list(tier.keys()) == ["k"]


def test_files_fan_out_in_two_levels_named_by_sha256(tmp_path: Path) -> None:
    tier = opened(tmp_path)
    asyncio.run(tier.put("GET http://a/", (response(),)))
    name = name_for("GET http://a/")
    assert len(name) == 64
    assert (tmp_path / name[0] / name[1:3] / name).is_file()


def test_get_of_unknown_key_is_a_miss(tmp_path: Path) -> None:
    assert asyncio.run(opened(tmp_path).get("nope")) is None


def test_put_replaces_the_previous_entry(tmp_path: Path) -> None:
    tier = opened(tmp_path)

    async def scenario() -> tuple[StoredResponse, ...] | None:
        await tier.put("k", (response(b"old"),))
        await tier.put("k", (response(b"new-body"),))
        return await tier.get("k")

    got = asyncio.run(scenario())
    assert got is not None and got[0].body == b"new-body"
    assert tier.entries == 1
    assert tier.bytes_used == file_of(tier, "k").stat().st_size


def test_remove_deletes_the_file(tmp_path: Path) -> None:
    tier = opened(tmp_path)
    asyncio.run(tier.put("k", (response(),)))
    assert tier.remove("k") is True
    assert tier.remove("k") is False
    assert not file_of(tier, "k").exists()
    assert asyncio.run(tier.get("k")) is None
    assert tier.bytes_used == 0


def test_remove_during_a_put_in_flight_wins(tmp_path: Path) -> None:
    """A purge must not be undone by a write that started before it."""
    tier = opened(tmp_path)

    async def scenario() -> bool:
        task = asyncio.create_task(tier.put("k", (response(b"x" * 100_000),)))
        await asyncio.sleep(0)  # the put is now writing in its thread
        tier.remove("k")
        return await task

    assert asyncio.run(scenario()) is False
    assert "k" not in tier
    assert not file_of(tier, "k").exists()
    assert not any(TEMP_MARK in p.name for p in tmp_path.rglob("*"))


def test_lru_eviction_keeps_bytes_under_capacity(tmp_path: Path) -> None:
    body = b"x" * 10_000
    probe = opened(tmp_path / "probe")
    asyncio.run(probe.put("probe", (response(body),)))
    one_file = probe.bytes_used
    tier = opened(tmp_path / "t", capacity_bytes=3 * one_file + one_file // 2)

    async def scenario() -> None:
        for key in ("a", "b", "c"):
            assert await tier.put(key, (response(body),))
        assert await tier.get("a") is not None  # a is now more recent than b
        assert await tier.put("d", (response(body),))

    asyncio.run(scenario())
    assert sorted(tier.keys()) == ["a", "c", "d"]
    assert tier.evictions == 1
    assert tier.bytes_used <= tier.capacity_bytes
    assert not file_of(tier, "b").exists()


def test_objects_over_the_limit_are_refused_and_drop_the_old_entry(tmp_path: Path) -> None:
    tier = opened(tmp_path, max_object_bytes=4096)

    async def scenario() -> bool:
        assert await tier.put("k", (response(b"small"),))
        return await tier.put("k", (response(b"y" * 5000),))

    assert asyncio.run(scenario()) is False
    assert "k" not in tier
    assert not file_of(tier, "k").exists()


def test_restart_sees_the_entries(tmp_path: Path) -> None:
    first = opened(tmp_path)
    variants = {f"key-{i}": (response(bytes([i]) * (i + 1)),) for i in range(20)}

    async def fill() -> None:
        for key, value in variants.items():
            await first.put(key, value)

    asyncio.run(fill())
    second = opened(tmp_path)
    assert sorted(second.keys()) == sorted(variants)
    assert second.bytes_used == first.bytes_used
    for key, value in variants.items():
        assert asyncio.run(second.get(key)) == value


def test_restart_orders_lru_by_write_time(tmp_path: Path) -> None:
    first = opened(tmp_path)
    for key in ("old", "mid", "new"):
        asyncio.run(first.put(key, (response(),)))
    for age_s, key in ((300, "old"), (200, "mid"), (100, "new")):
        path = file_of(first, key)
        mtime = path.stat().st_mtime - age_s
        os.utime(path, (mtime, mtime))
    second = DiskTier(tmp_path, capacity_bytes=2 * first.bytes_used // 3 + 1, max_object_bytes=MiB)
    second.open()
    assert sorted(second.keys()) == ["mid", "new"]


def test_open_removes_temp_files_left_by_a_crash(tmp_path: Path) -> None:
    tier = opened(tmp_path)
    asyncio.run(tier.put("k", (response(),)))
    crashed = subprocess.Popen([sys.executable, "-c", "pass"])
    crashed.wait()  # a writer that is gone: its temp file is nobody's now
    leftover = file_of(tier, "k").with_name(f"{name_for('k')}{TEMP_MARK}{crashed.pid}-1")
    leftover.write_bytes(b"half a file")
    again = opened(tmp_path)
    assert not leftover.exists()
    assert again.temp_files_removed == 1
    assert list(again.keys()) == ["k"]


def test_open_drops_a_truncated_file(tmp_path: Path) -> None:
    tier = opened(tmp_path)
    asyncio.run(tier.put("k", (response(b"z" * 1000),)))
    path = file_of(tier, "k")
    path.write_bytes(path.read_bytes()[:-10])
    again = opened(tmp_path)
    assert again.entries == 0
    assert again.corrupt_dropped == 1
    assert not path.exists()


def test_open_drops_a_file_under_the_wrong_name(tmp_path: Path) -> None:
    tier = opened(tmp_path)
    asyncio.run(tier.put("k", (response(),)))
    wrong = file_of(tier, "other")
    wrong.parent.mkdir(parents=True, exist_ok=True)
    file_of(tier, "k").rename(wrong)
    again = opened(tmp_path)
    assert again.entries == 0
    assert again.corrupt_dropped == 1


@pytest.mark.parametrize("where", ["meta", "body", "digest"])
def test_a_bit_flip_is_a_miss_the_file_is_deleted_and_counted(tmp_path: Path, where: str) -> None:
    tier = opened(tmp_path)
    asyncio.run(tier.put("k", (response(b"B" * 500),)))
    path = file_of(tier, "k")
    data = bytearray(path.read_bytes())
    index = {"meta": 200, "body": len(data) - 100, "digest": len(data) - 1}[where]
    data[index] ^= 0x10
    path.write_bytes(bytes(data))
    again = opened(tmp_path)  # a flip past the key passes the scan; get must catch it
    assert again.entries == 1
    assert asyncio.run(again.get("k")) is None
    assert again.corrupt_dropped == 1
    assert again.entries == 0
    assert again.bytes_used == 0
    assert not path.exists()


def test_a_file_deleted_behind_our_back_is_a_miss(tmp_path: Path) -> None:
    tier = opened(tmp_path)
    asyncio.run(tier.put("k", (response(),)))
    file_of(tier, "k").unlink()
    assert asyncio.run(tier.get("k")) is None
    assert tier.entries == 0
    assert tier.corrupt_dropped == 0


def test_open_shrinks_to_a_smaller_budget(tmp_path: Path) -> None:
    tier = opened(tmp_path)
    for i in range(10):
        asyncio.run(tier.put(f"k{i}", (response(b"q" * 2000),)))
    smaller = opened(tmp_path, capacity_bytes=tier.bytes_used // 2)
    assert smaller.bytes_used <= smaller.capacity_bytes
    entry_files = [p for p in tmp_path.rglob("*") if len(p.name) == 64 and p.is_file()]
    assert smaller.entries == len(entry_files)


def test_durable_mode_stores_and_reads_back(tmp_path: Path) -> None:
    tier = DiskTier(tmp_path, MiB, MiB, durable=True)
    tier.open()
    assert asyncio.run(tier.put("k", (response(),))) is True
    assert asyncio.run(tier.get("k")) == (response(),)


def test_clean_close_then_open_uses_the_snapshot_and_keeps_lru_order(tmp_path: Path) -> None:
    tier = opened(tmp_path)

    async def fill() -> None:
        for key in ("a", "b", "c"):
            await tier.put(key, (response(key.encode()),))
        await tier.get("a")  # recency now b, c, a

    asyncio.run(fill())
    tier.close()
    assert asyncio.run(tier.put("late", (response(),))) is False
    again = opened(tmp_path)
    assert again.loaded_from_snapshot is True
    assert list(again.keys()) == ["b", "c", "a"]
    assert again.bytes_used == tier.bytes_used
    assert asyncio.run(again.get("c")) == (response(b"c"),)
    assert not (tmp_path / SNAPSHOT_NAME).exists()  # used once: a crash later forces a scan
    third = opened(tmp_path)
    assert third.loaded_from_snapshot is False
    assert sorted(third.keys()) == ["a", "b", "c"]


def test_snapshot_never_hides_files_written_after_it_or_lists_deleted_ones(tmp_path: Path) -> None:
    tier = opened(tmp_path)
    asyncio.run(tier.put("kept", (response(),)))
    asyncio.run(tier.put("gone", (response(),)))
    tier.close()
    file_of(tier, "gone").unlink()
    other = opened(tmp_path / "other")
    asyncio.run(other.put("new", (response(b"new"),)))
    new_file = file_of(tier, "new")
    new_file.parent.mkdir(parents=True, exist_ok=True)
    file_of(other, "new").rename(new_file)
    leftover = file_of(tier, "kept").with_name(f"x{TEMP_MARK}1-1")
    leftover.write_bytes(b"torn")
    again = opened(tmp_path)
    assert again.loaded_from_snapshot is True
    assert sorted(again.keys()) == ["kept", "new"]
    assert again.bytes_used == sum(file_of(again, k).stat().st_size for k in ("kept", "new"))
    assert not leftover.exists()


def test_a_corrupt_snapshot_falls_back_to_the_scan(tmp_path: Path) -> None:
    tier = opened(tmp_path)
    asyncio.run(tier.put("k", (response(),)))
    tier.close()
    snapshot = tmp_path / SNAPSHOT_NAME
    data = bytearray(snapshot.read_bytes())
    data[20] ^= 1
    snapshot.write_bytes(bytes(data))
    again = opened(tmp_path)
    assert again.loaded_from_snapshot is False
    assert list(again.keys()) == ["k"]
    assert not snapshot.exists()


def test_close_cancels_a_put_in_flight(tmp_path: Path) -> None:
    tier = opened(tmp_path)

    async def scenario() -> bool:
        task = asyncio.create_task(tier.put("k", (response(b"x" * 100_000),)))
        await asyncio.sleep(0)
        tier.close()
        return await task

    assert asyncio.run(scenario()) is False
    again = opened(tmp_path)
    assert list(again.keys()) == []
    assert not any(TEMP_MARK in p.name for p in tmp_path.rglob("*"))


def test_a_write_error_is_a_failed_put_not_an_exception(tmp_path: Path) -> None:
    tier = opened(tmp_path)
    name = name_for("k")
    (tmp_path / name[0]).write_bytes(b"a file where the fan-out directory should be")
    assert asyncio.run(tier.put("k", (response(),))) is False
    assert "k" not in tier
    assert tier.bytes_used == 0


class DiskTierAgainstModel(RuleBasedStateMachine):
    """Random put/get/remove/restart sequences against an LRU dict that knows each file's size."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="disk-tier-model-"))
        self.capacity_bytes = 3 * encode_entry("k0", (response(b"x" * 3000),)).file_bytes
        self.tier = opened(self.directory, capacity_bytes=self.capacity_bytes)
        self.model: OrderedDict[str, tuple[StoredResponse, ...]] = OrderedDict()

    def size_of(self, key: str) -> int:
        return encode_entry(key, self.model[key]).file_bytes

    @rule(key=st.sampled_from(["k0", "k1", "k2", "k3", "k4"]), size=st.integers(0, 3000))
    def put(self, key: str, size: int) -> None:
        variants = (response(key.encode() * size),)
        assert asyncio.run(self.tier.put(key, variants)) is True
        self.model.pop(key, None)
        self.model[key] = variants
        while sum(self.size_of(k) for k in self.model) > self.capacity_bytes:
            self.model.popitem(last=False)

    @rule(key=st.sampled_from(["k0", "k1", "k2", "k3", "k4"]))
    def get(self, key: str) -> None:
        assert asyncio.run(self.tier.get(key)) == self.model.get(key)
        if key in self.model:
            self.model.move_to_end(key)

    @rule(key=st.sampled_from(["k0", "k1", "k2", "k3", "k4"]))
    def remove(self, key: str) -> None:
        assert self.tier.remove(key) is (self.model.pop(key, None) is not None)

    @rule()
    def restart_after_close(self) -> None:
        self.tier.close()
        self.tier = opened(self.directory, capacity_bytes=self.capacity_bytes)

    @invariant()
    def matches_the_model(self) -> None:
        assert list(self.tier.keys()) == list(self.model)
        on_disk = [p for p in self.directory.rglob("*") if p.is_file()]
        assert self.tier.bytes_used == sum(p.stat().st_size for p in on_disk)
        assert self.tier.bytes_used <= self.capacity_bytes

    def teardown(self) -> None:
        shutil.rmtree(self.directory)


DiskTierAgainstModel.TestCase.settings = settings(
    max_examples=25, stateful_step_count=25, deadline=None
)
test_disk_tier_against_an_lru_model = DiskTierAgainstModel.TestCase
