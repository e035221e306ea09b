"""Purges reach entries that are only on disk (issue 3, docs/purge.md): after a restart the
disk's surrogate keys and content ids are indexed from the entry files' metadata, a purge waits
for that index, and a purged disk-only entry stays purged across the next restart."""

from __future__ import annotations

import asyncio
import hashlib
import json
import struct
from pathlib import Path

import pytest

from proxy.cache.admission import with_attribution
from proxy.cache.entry import StoredResponse
from proxy.cache.store import ResponseStore
from proxy.cache.tiers.disk import DiskTier, name_for
from proxy.cache.tiers.disk_format import (
    HEADER,
    MAGIC,
    VERSION,
    EntryFormatError,
    encode_entry,
    parse_header,
    parse_labels,
)
from proxy.cache.tiers.disk_labels import read_labels
from proxy.metrics import ProxyStats
from proxy.purge import PurgeService, parse_purge_request
from proxy.records.emit import Attribution
from tests.unit.cache_builders import stored_response

MiB = 1024 * 1024


def attributed(body: bytes, *headers: tuple[str, str]) -> tuple[StoredResponse, str]:
    content_id = "sha256:" + hashlib.sha256(body).hexdigest()
    stored = stored_response([("Cache-Control", "max-age=60"), *headers], body=body)
    claim = Attribution(content_id, "alice", "sha256:" + "ab" * 32)
    return with_attribution(stored, claim), content_id


def make_store(
    directory: Path, memory_bytes: int = 16 * MiB, disk_bytes: int = 16 * MiB
) -> ResponseStore:
    disk = DiskTier(directory, disk_bytes, MiB)
    disk.open()
    return ResponseStore(memory_bytes, MiB, disk=disk)


async def fill_and_close(directory: Path, entries: dict[str, StoredResponse]) -> None:
    store = make_store(directory)
    assert store.writer is not None
    store.writer.start()
    for key, stored in entries.items():
        store.put(key, stored)
    await store.writer.wait_idle()
    await store.writer.close()


async def run_purge(store: ResponseStore, document: dict[str, object]) -> object:
    service = PurgeService(store, ProxyStats(), "token")
    answer = await service.purge(parse_purge_request(json.dumps(document).encode()), "test")
    return answer["purged"]


def test_content_ids_of_disk_only_entries_are_indexed_after_a_restart(tmp_path: Path) -> None:
    one, id_one = attributed(b"one", ("Surrogate-Key", "red"))
    two, id_two = attributed(b"two")

    async def main() -> None:
        await fill_and_close(tmp_path, {"http://a/1": one, "http://a/2": two})
        again = make_store(tmp_path)
        assert again.keys_for_contents({id_one}) == set()  # memory starts empty
        assert await again.index_disk_surrogates() == 2
        assert again.keys_for_contents({id_one}) == {"http://a/1"}
        assert again.keys_for_contents({id_two}) == {"http://a/2"}
        assert again.surrogates.keys_for("red") == {"http://a/1"}
        assert len(again.tier) == 0  # indexing reads metadata, never promotes bodies

    asyncio.run(main())


def test_hard_purge_by_content_id_removes_a_disk_only_entry_for_good(tmp_path: Path) -> None:
    stored, content_id = attributed(b"gone after purge")
    kept, _ = attributed(b"kept")

    async def main() -> None:
        await fill_and_close(tmp_path, {"http://a/p": stored, "http://a/k": kept})
        again = make_store(tmp_path)
        # No index_disk_surrogates() first: the purge itself waits for the disk's index.
        assert await run_purge(again, {"content_ids": [content_id]}) == 1
        assert not again.is_on_disk("http://a/p")
        assert again.is_on_disk("http://a/k")
        third = make_store(tmp_path)  # a restart: the purged entry does not come back
        assert not third.is_on_disk("http://a/p")
        assert await third.load("http://a/p") is None
        assert third.is_on_disk("http://a/k")

    asyncio.run(main())


def test_soft_purge_by_content_id_marks_a_disk_only_entry_on_disk(tmp_path: Path) -> None:
    stored, content_id = attributed(b"soft on disk")

    async def main() -> None:
        await fill_and_close(tmp_path, {"http://a/s": stored})
        again = make_store(tmp_path)
        assert await run_purge(again, {"content_ids": [content_id], "mode": "soft"}) == 1
        assert len(again.tier) == 0  # rewritten on disk, not pulled into memory
        # Written before the purge answered: no queue to flush, a SIGKILL now loses nothing.
        third = make_store(tmp_path)
        variants = await third.load("http://a/s")
        assert variants is not None and variants[0].stale_marked
        assert variants[0].body == b"soft on disk"

    asyncio.run(main())


def test_soft_purge_of_a_memory_entry_is_on_disk_when_the_purge_answers(tmp_path: Path) -> None:
    stored, content_id = attributed(b"in memory too")

    async def main() -> None:
        store = make_store(tmp_path)
        assert store.writer is not None
        store.put("http://a/m", stored)  # queued; the writer is not even running
        assert await run_purge(store, {"content_ids": [content_id], "mode": "soft"}) == 1
        assert store.writer.pending == 0
        again = make_store(tmp_path)
        variants = await again.load("http://a/m")
        assert variants is not None and variants[0].stale_marked

    asyncio.run(main())


def test_purge_by_surrogate_key_waits_for_the_disk_index(tmp_path: Path) -> None:
    stored, _ = attributed(b"tagged", ("Cache-Tag", "blue"))

    async def main() -> None:
        await fill_and_close(tmp_path, {"http://a/t": stored})
        again = make_store(tmp_path)
        assert await run_purge(again, {"surrogate_keys": ["blue"]}) == 1
        assert not again.is_on_disk("http://a/t")

    asyncio.run(main())


def test_an_entry_stored_anew_while_the_disk_is_indexed_keeps_its_new_labels(
    tmp_path: Path,
) -> None:
    old, old_id = attributed(b"old bytes")
    new, new_id = attributed(b"new bytes")

    async def main() -> None:
        await fill_and_close(tmp_path, {"http://a/n": old})
        again = make_store(tmp_path)
        scan = again.index_disk_labels()  # started, still in its thread
        again.put("http://a/n", new)
        await scan
        assert again.keys_for_contents({new_id}) == {"http://a/n"}
        assert "http://a/n" not in again.contents.keys_for(old_id)

    asyncio.run(main())


def test_purge_indexes_forget_what_neither_tier_holds_any_more(tmp_path: Path) -> None:
    async def main() -> None:
        # Memory holds about two entries and the disk about four: most URLs fall out of both.
        store = make_store(tmp_path, memory_bytes=3000, disk_bytes=8000)
        assert store.writer is not None and store.disk is not None
        store.writer.start()
        for n in range(30):
            store.put(
                f"http://a/{n}", attributed(b"%04d" % n + b"x" * 1000, ("Surrogate-Key", "all"))[0]
            )
            await store.writer.wait_idle()
        held = {key for key, _ in store.tier.items()} | set(store.disk.keys())
        assert 0 < len(held) < 30
        assert store.surrogates.keys_for("all") == held
        await store.writer.close()

    asyncio.run(main())


def test_files_written_before_content_ids_were_kept_are_indexed_by_surrogate_keys(
    tmp_path: Path,
) -> None:
    stored, _ = attributed(b"legacy", ("Surrogate-Key", "old-tag"))
    encoded = encode_entry("http://a/legacy", (stored,))
    prefix = encoded.chunks[0]
    header = parse_header(prefix)
    start = HEADER.size + header.key_len
    meta = json.loads(prefix[start : header.prefix_bytes])
    del meta["variants"][0]["content_id"]  # the metadata as the previous release wrote it
    raw = json.dumps(meta, separators=(",", ":")).encode()
    legacy = HEADER.pack(MAGIC, VERSION, 0, header.key_len, len(raw), header.body_len)
    legacy_prefix = legacy + prefix[HEADER.size : start] + raw
    fields, content_ids = parse_labels(parse_header(legacy_prefix), legacy_prefix)
    assert content_ids == frozenset()
    assert ("Surrogate-Key", "old-tag") in fields
    name = name_for("http://a/legacy")
    path = tmp_path / name[0] / name[1:3] / name
    path.parent.mkdir(parents=True)
    path.write_bytes(legacy_prefix + b"legacy" + b"\0" * 32)  # the digest is not read here
    [labels] = read_labels(tmp_path, ["http://a/legacy"])
    assert labels.surrogate_keys == {"old-tag"} and labels.content_ids == frozenset()


@pytest.mark.parametrize(
    "variant_change",
    [
        {"content_id": 42},
        {"headers": "not a list"},
        {"headers": [["only-a-name"]]},
        {"headers": [[1, "x"]]},
    ],
)
def test_bad_label_metadata_is_an_entry_format_error(variant_change: dict[str, object]) -> None:
    stored, _ = attributed(b"x")
    prefix = encode_entry("http://a/bad", (stored,)).chunks[0]
    header = parse_header(prefix)
    start = HEADER.size + header.key_len
    meta = json.loads(prefix[start : header.prefix_bytes])
    meta["variants"][0].update(variant_change)
    raw = json.dumps(meta).encode()
    bad = HEADER.pack(MAGIC, VERSION, 0, header.key_len, len(raw), header.body_len)
    bad_prefix = bad + prefix[HEADER.size : start] + raw
    with pytest.raises(EntryFormatError):
        parse_labels(parse_header(bad_prefix), bad_prefix)


def test_unreadable_or_foreign_files_are_skipped_by_the_label_scan(tmp_path: Path) -> None:
    stored, _ = attributed(b"x", ("Surrogate-Key", "t"))
    encoded = encode_entry("http://a/other", (stored,))
    name = name_for("http://a/mine")
    path = tmp_path / name[0] / name[1:3] / name
    path.parent.mkdir(parents=True)
    path.write_bytes(b"".join(encoded.chunks))  # another key's file under this name
    assert read_labels(tmp_path, ["http://a/mine", "http://a/missing"]) == []
    path.write_bytes(struct.pack(">8s", b"garbage!") + b"\0" * 40)
    assert read_labels(tmp_path, ["http://a/mine"]) == []
