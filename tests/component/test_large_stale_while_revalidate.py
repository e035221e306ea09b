"""A stale large disk entry answered while it revalidates (RFC 5861 §3), over a real disk tier
and store: the request that starts the background revalidation streams the stale body it was
promised, even if that revalidation finishes first, before this request's stream began.

Its full answer drops the entry (RFC 9111 §4.3.3: it is not downloaded for nobody) and its 304
rewrites the file with the refreshed head (§4.3.4). Either used to land, under load, before the
foreground opened the file by its path: the open found no file (or a new inode), and the request
fell back to a miss that fetched the whole object again (tests/integration/test_large_disk.py,
the changed-object test: 'MISS' and a second download in about 2 runs of 11 beside a CPU hog).
Here the background is made to win that race every time."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from proxy.cache.entry import StoredResponse
from proxy.cache.store import ResponseStore
from proxy.cache.tiers.disk import LargeEntry
from proxy.disk_path import DiskPath
from proxy.http import cache_status as outcomes
from tests.component import large_entry_stubs as stubs
from tests.component.large_entry_stubs import (
    KEY,
    SIZE,
    Client,
    entry_file,
    get_request,
    source_fd,
)

STALE_FOR_S = 10.0  # past max-age=1, well within stale-while-revalidate=600


def stale_large() -> StoredResponse:
    """What a fill stored for a spilled body, received STALE_FOR_S ago: a validator, so a stale
    hit revalidates in the background."""
    return stubs.spilled(
        [("Cache-Control", "max-age=1, stale-while-revalidate=600"), ("ETag", '"v1"')],
        SIZE,
        received=time.time() - STALE_FOR_S,
    )


class Handler(stubs.Handler):
    """The parts of ProxyHandler the disk path calls on a stale large hit. Its background
    revalidation lands at once, inside the call that starts it: the worst case of the race."""

    def __init__(self, store: ResponseStore, lands: Any) -> None:
        super().__init__(store)
        self.lands = lands
        self.settings = SimpleNamespace(cache_name="cachet", via="1.1 cachet")
        self.stats = SimpleNamespace(disk_hits=0, disk_reads=0, range_requests=Counter())
        self.revalidations: list[str] = []

    def revalidate_in_background(
        self, ex: Any, stored: StoredResponse, large: LargeEntry | None = None
    ) -> None:
        self.revalidations.append(ex.key)
        self.lands()


def stale_hit(tmp_path: Path, background_lands: str) -> tuple[Handler, Client, bytes]:
    """A GET of the stale large entry whose background revalidation lands first: 'dropped' (a
    full answer, §4.3.3) or 'rewritten' (a 304's new file, renamed over the old one, §4.3.4)."""
    data = stubs.patterned_body(SIZE)
    disk, store = stubs.large_store(tmp_path)
    newer = tmp_path / "rewritten"

    def lands() -> None:
        if background_lands == "dropped":
            store.invalidate(KEY)  # what a background 200 does (proxy.fetch)
        else:
            os.replace(newer, entry_file(tmp_path))

    handler = Handler(store, lands)
    client = Client()

    async def scenario() -> None:
        assert await disk.put_file(KEY, stale_large(), source_fd(data), SIZE)
        shutil.copyfile(entry_file(tmp_path), newer)  # the rewrite's file: same key, another inode
        await DiskPath(handler).answer(client, get_request())  # type: ignore[arg-type]

    asyncio.run(scenario())
    disk.close()
    return handler, client, data


def assert_streamed_stale(handler: Handler, client: Client, data: bytes) -> None:
    """The stale body went out whole as UPDATING, after one background revalidation."""
    head, _, body = bytes(client.data).partition(b"\r\n\r\n")
    assert handler.revalidations == [KEY]
    assert handler.misses == []  # not fetched again in the foreground
    assert b"X-Cache-Status: UPDATING" in head
    assert body == data and not client.aborted
    assert handler.finished == [(outcomes.UPDATING, 200, SIZE, False)]


def test_a_full_answer_to_the_revalidation_does_not_take_the_stale_body_rfc5861_s3(
    tmp_path: Path,
) -> None:
    handler, client, data = stale_hit(tmp_path, "dropped")
    assert_streamed_stale(handler, client, data)
    assert not entry_file(tmp_path).exists()  # the drop stands: the next request fetches anew


def test_a_304_rewrite_landing_first_does_not_take_the_stale_body_rfc5861_s3(
    tmp_path: Path,
) -> None:
    handler, client, data = stale_hit(tmp_path, "rewritten")
    assert_streamed_stale(handler, client, data)
