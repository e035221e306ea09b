"""One disk folder shared by several processes (issue 3, "Processes and shared tier": N workers
sharing "the disk tier without corrupting it"; docs/design/disk-tier.md, "Sharing one folder").

Two DiskTier objects over one real folder stand for two processes: the owner and a sharer
(``sharer=True``, writing as another live pid). The cross-process owner lock is checked with a
real second process.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from proxy.cache.entry import StoredResponse
from proxy.cache.store import DiskWriter, ResponseStore
from proxy.cache.tiers.disk import SNAPSHOT_NAME, DiskTier, name_for
from proxy.cache.tiers.disk_format import encode_entry
from proxy.cache.tiers.disk_sharing import JOURNAL_FOLDER, temp_name
from tests.component.test_disk_purge_index import attributed
from tests.unit.cache_builders import stored_response

MiB = 1024 * 1024
REPO_ROOT = Path(__file__).resolve().parents[2]
SIBLING_PID = os.getppid()  # a live process other than this one: the sharer "is" it


def response(body: bytes = b"hello", *headers: tuple[str, str]) -> StoredResponse:
    return stored_response([("Cache-Control", "max-age=60"), *headers], body=body)


def pair(folder: Path, capacity_bytes: int = MiB) -> tuple[DiskTier, DiskTier]:
    owner = DiskTier(folder, capacity_bytes, MiB, sharer=False)
    owner.open()
    sharer = DiskTier(folder, capacity_bytes, MiB, sharer=True, pid=SIBLING_PID)
    sharer.open()
    return owner, sharer


def file_of(folder: Path, key: str) -> Path:
    name = name_for(key)
    return folder / name[0] / name[1:3] / name


def entry_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if len(p.name) == 64)


def owns(tier: DiskTier) -> bool:
    return tier.owner


def temp_files(folder: Path) -> list[Path]:
    return list(folder.rglob("*.tmp-*"))


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_an_entry_one_process_wrote_is_found_and_verified_by_the_other(tmp_path: Path) -> None:
    async def scenario() -> None:
        owner, sharer = pair(tmp_path)
        await owner.maintain()  # the owner sees the sharer's journal: others write here
        assert await sharer.put("by-sharer", (response(b"s"),))
        assert await owner.put("by-owner", (response(b"o"),))
        # Neither had it in memory or (the sharer) in any index: found by the key's path.
        assert owner.may_hold("by-sharer") and sharer.may_hold("by-owner")
        assert [v.body for v in await owner.get("by-sharer") or ()] == [b"s"]
        assert [v.body for v in await sharer.get("by-owner") or ()] == [b"o"]
        assert not sharer.may_hold("nobody-wrote-this")
        assert await sharer.get("nobody-wrote-this") is None

    asyncio.run(scenario())


def test_a_corrupt_entry_written_by_another_process_is_never_served(tmp_path: Path) -> None:
    async def scenario() -> None:
        owner, sharer = pair(tmp_path)
        assert await owner.put("k", (response(b"z" * 500),))
        path = file_of(tmp_path, "k")
        data = bytearray(path.read_bytes())
        data[-100] ^= 1
        path.write_bytes(bytes(data))
        assert await sharer.get("k") is None
        assert sharer.corrupt_dropped == 1 and not path.exists()
        await owner.maintain()  # the sharer noted the removal: the owner forgets it
        assert "k" not in owner and owner.bytes_used == 0

    asyncio.run(scenario())


def test_the_owner_indexes_what_the_sharer_writes_and_holds_the_budget_for_the_folder(
    tmp_path: Path,
) -> None:
    """The byte budget holds for the folder as a whole: the sharer never evicts, the owner
    evicts by last use across every file, whoever wrote it."""
    size = len(b"".join(encode_entry("k00", (response(b"b" * 1000),)).chunks))
    capacity = 6 * size + size // 2  # room for 6 entries

    async def scenario() -> None:
        owner, sharer = pair(tmp_path, capacity)
        for i in range(5):
            assert await sharer.put(f"s{i}", (response(b"b" * 1000),))
        assert sharer.evictions == 0 and sharer.entries == 0  # a sharer keeps no index
        assert sorted(await owner.maintain()) == [f"s{i}" for i in range(5)]
        assert owner.entries == 5 and owner.bytes_used == entry_bytes(tmp_path)
        assert await sharer.get("s0") is not None  # a use: s0 is now the most recent
        await owner.maintain()  # what the owner's upkeep does every second
        for i in range(3):
            assert await owner.put(f"o{i}", (response(b"b" * 1000),))
        await owner.maintain()
        assert entry_bytes(tmp_path) <= capacity
        assert owner.bytes_used == entry_bytes(tmp_path)
        assert sorted(owner.keys()) == ["o0", "o1", "o2", "s0", "s3", "s4"]
        assert owner.evictions == 2  # s1 and s2: least recently used across the folder

    asyncio.run(scenario())


def test_a_file_vanishing_under_a_process_is_a_miss_never_an_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        owner, sharer = pair(tmp_path)
        assert await sharer.put("k", (response(),))
        await owner.maintain()
        assert "k" in owner
        assert sharer.remove("k") is True  # a purge through the sharer
        assert await owner.get("k") is None
        assert "k" not in owner and owner.bytes_used == 0
        assert await owner.put("j", (response(),))
        file_of(tmp_path, "j").unlink()  # evicted by the owner, as seen from the sharer
        assert await sharer.get("j") is None
        assert sharer.remove("j") is False

    asyncio.run(scenario())


def test_a_hard_purge_through_any_process_removes_the_file_whoever_wrote_it(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        owner, sharer = pair(tmp_path)
        assert await owner.put("by-owner", (response(),))
        assert await sharer.put("by-sharer", (response(),))
        assert sharer.remove("by-owner") is True
        assert owner.remove("by-sharer") is True  # not yet in the owner's index: by path
        assert not file_of(tmp_path, "by-owner").exists()
        assert not file_of(tmp_path, "by-sharer").exists()
        await owner.maintain()
        assert owner.entries == 0 and owner.bytes_used == 0
        reopened = DiskTier(tmp_path, MiB, MiB, sharer=False)
        reopened.open()
        assert list(reopened.keys()) == []  # a purged entry does not come back after a restart

    asyncio.run(scenario())


def test_a_purge_cancels_this_process_put_in_flight_and_the_file_stays_gone(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        owner, sharer = pair(tmp_path)
        assert await owner.put("k", (response(b"old"),))
        put = asyncio.ensure_future(sharer.put("k", (response(b"new"),)))
        await asyncio.sleep(0)  # the sharer's put is writing its temp file
        assert owner.remove("k") and sharer.remove("k") is False
        assert await put is False  # its ticket was cancelled: no rename after the purge
        assert not file_of(tmp_path, "k").exists()
        assert not temp_files(tmp_path)

    asyncio.run(scenario())


def test_starting_never_deletes_a_live_process_temp_file_only_a_dead_one(tmp_path: Path) -> None:
    """A worker (re)starting on the shared folder runs the crash clean-up while its siblings
    write: their temp files must survive it, a dead process's must not."""
    pair(tmp_path)
    name = name_for("k")
    folder = tmp_path / name[0] / name[1:3]
    folder.mkdir(parents=True, exist_ok=True)
    live = folder / temp_name(name, SIBLING_PID, 1)
    dead = folder / temp_name(name, dead_pid(), 1)
    for path in (live, dead):
        path.write_bytes(b"half a file")
    restarted = DiskTier(tmp_path, MiB, MiB, sharer=True)
    restarted.open()
    assert live.exists() and not dead.exists()
    assert restarted.temp_files_removed == 1
    reopened_owner = DiskTier(tmp_path, MiB, MiB, sharer=False)
    reopened_owner.open()
    assert live.exists()


def test_only_the_owner_writes_the_index_snapshot(tmp_path: Path) -> None:
    async def scenario() -> tuple[DiskTier, DiskTier]:
        owner, sharer = pair(tmp_path)
        assert await sharer.put("k", (response(),))
        return owner, sharer

    owner, sharer = asyncio.run(scenario())
    sharer.close()
    assert not (tmp_path / SNAPSHOT_NAME).exists()
    owner.close()
    assert (tmp_path / SNAPSHOT_NAME).exists()
    again = DiskTier(tmp_path, MiB, MiB, sharer=False)
    again.open()
    assert again.loaded_from_snapshot and list(again.keys()) == ["k"]  # the scan found it


def test_a_file_replaced_after_the_snapshot_is_read_again_not_trusted(tmp_path: Path) -> None:
    """The owner closed (snapshot written) while a sharer still wrote: the snapshot's size for
    that file is stale, so the next owner reads the file's header instead of trusting it."""

    async def scenario() -> None:
        owner, sharer = pair(tmp_path)
        assert await owner.put("k", (response(b"short"),))
        owner.close()
        assert await sharer.put("k", (response(b"much longer than before" * 50),))

    asyncio.run(scenario())
    again = DiskTier(tmp_path, MiB, MiB, sharer=False)
    again.open()
    assert again.loaded_from_snapshot
    assert again.bytes_used == entry_bytes(tmp_path)


def test_the_owner_drops_a_dead_sharers_journal_and_follows_a_live_one(tmp_path: Path) -> None:
    async def scenario() -> None:
        owner, sharer = pair(tmp_path)
        assert await sharer.put("k", (response(),))
        journals = tmp_path / JOURNAL_FOLDER
        gone = journals / f"{dead_pid()}-0.log"
        gone.write_bytes(b"P " + name_for("x").encode() + b"\n")
        await owner.maintain()
        assert not gone.exists()  # read to its end, then deleted: no one appends to it again
        assert [p.name for p in journals.iterdir()] == [f"{SIBLING_PID}-0.log"]
        assert "k" in owner

    asyncio.run(scenario())


def test_one_owner_per_folder_across_processes(tmp_path: Path) -> None:
    """The owner lock: while this process owns the folder, another process opening it is a
    sharer; once the owner closes, the next process to open it owns it."""
    owner = DiskTier(tmp_path, MiB, MiB)
    owner.open()
    assert owner.owner
    probe = (
        "import sys; from pathlib import Path; from proxy.cache.tiers.disk import DiskTier\n"
        "tier = DiskTier(Path(sys.argv[1]), 1 << 20, 1 << 20); tier.open(); print(tier.owner)"
    )

    def other_process_owns() -> str:
        command = [sys.executable, "-c", probe, str(tmp_path)]
        done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    assert other_process_owns() == "False"
    owner.close()
    assert other_process_owns() == "True"


def test_the_owner_store_indexes_surrogate_keys_and_content_ids_other_workers_wrote(
    tmp_path: Path,
) -> None:
    """A purge by surrogate key reaches every worker; the owner must know the labels of what
    the others wrote (after they forgot it, say after a restart), so it can remove the file."""

    async def scenario() -> None:
        owner_disk, sharer_disk = pair(tmp_path)
        owner = ResponseStore(MiB, MiB, disk=owner_disk)
        sharer = ResponseStore(MiB, MiB, disk=sharer_disk)
        assert sharer.writer is not None
        sharer.writer.start()
        assert sharer.put("u", response(b"x", ("Surrogate-Key", "grp")))
        stored, content_id = attributed(b"a creator's work")
        assert sharer.put("v", stored)
        await sharer.writer.wait_idle()
        await owner.maintain()
        assert owner.surrogates.keys_for("grp") == {"u"}
        assert owner.contents.keys_for(content_id) == {"v"}
        assert owner.invalidate("u") is True
        assert owner.purge_content({content_id}) == 1  # a revocation purge, say
        assert not file_of(tmp_path, "u").exists() and not file_of(tmp_path, "v").exists()
        await sharer.writer.close()

    asyncio.run(scenario())


def test_a_sharer_forgets_purge_labels_of_files_the_owner_evicted(tmp_path: Path) -> None:
    async def scenario() -> None:
        _, sharer_disk = pair(tmp_path)
        sharer = ResponseStore(MiB, MiB, disk=sharer_disk)
        assert sharer.writer is not None
        sharer.writer.start()
        assert sharer.put("u", response(b"x", ("Surrogate-Key", "grp")))
        await sharer.writer.wait_idle()
        sharer.tier.remove("u")  # memory let it go; the file keeps its labels alive
        await sharer.maintain()
        assert sharer.surrogates.keys_for("grp") == {"u"}
        file_of(tmp_path, "u").unlink()  # the owner evicted it
        await sharer.maintain()
        assert sharer.surrogates.keys_for("grp") == frozenset()
        await sharer.writer.close()

    asyncio.run(scenario())


def test_a_sharer_takes_over_a_folder_whose_owner_exited(tmp_path: Path) -> None:
    """The owner process exits (say a proxy's old workers drained while the new ones started)
    and no process took the role at its start: a sharer's next upkeep takes it, indexes the
    whole folder and holds the budget from then on."""
    holder = (
        "import asyncio, sys; from pathlib import Path\n"
        "from proxy.cache.tiers.disk import DiskTier\n"
        "from tests.unit.cache_builders import stored_response\n"
        "tier = DiskTier(Path(sys.argv[1]), 1 << 20, 1 << 20); tier.open()\n"
        "headers = [('Cache-Control', 'max-age=60'), ('Surrogate-Key', 'old')]\n"
        "stored = stored_response(headers, body=b'owner')\n"
        "asyncio.run(tier.put('by-old-owner', (stored,)))\n"
        "print(tier.owner, flush=True); sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", holder, str(tmp_path)],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline().strip() == "True"

    async def scenario() -> None:
        sharer = DiskTier(tmp_path, MiB, MiB)
        sharer.open()
        store = ResponseStore(MiB, MiB, disk=sharer)
        assert not sharer.owner
        assert await sharer.put("by-sharer", (response(b"s"),))
        await store.maintain()
        assert not sharer.owner  # the owner is alive
        child.stdin.close()  # type: ignore[union-attr]
        child.wait(timeout=30)
        await store.maintain()
        assert owns(sharer)
        assert sorted(sharer.keys()) == ["by-old-owner", "by-sharer"]
        assert sharer.bytes_used == entry_bytes(tmp_path)
        # It is now the worker that must find disk-only entries for purges by label.
        await store.disk_labels_indexed()
        assert store.surrogates.keys_for("old") == {"by-old-owner"}
        sharer.close()

    try:
        asyncio.run(scenario())
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


def test_closing_lets_an_upkeep_under_way_finish_rather_than_cancel_it(tmp_path: Path) -> None:
    """A take-over that started while the worker drains (the old owner closed first) must end
    as an owner that writes the snapshot, not be cut off half-way (the snapshot it consumed
    would be lost and the next start would scan every file)."""
    owner, _ = pair(tmp_path)

    async def scenario() -> None:
        started, release = asyncio.Event(), asyncio.Event()
        finished: list[bool] = []

        async def slow_upkeep() -> None:
            started.set()
            await release.wait()
            finished.append(True)

        writer = DiskWriter(owner, on_tick=slow_upkeep)
        writer.start()
        await started.wait()
        closing = asyncio.ensure_future(writer.close())
        await asyncio.sleep(0.05)
        assert not closing.done()  # waits for the upkeep, does not cancel it
        release.set()
        await closing
        assert finished == [True]
        assert (tmp_path / SNAPSHOT_NAME).exists()

    asyncio.run(scenario())
