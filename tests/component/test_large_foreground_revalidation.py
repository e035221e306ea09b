"""A stale large disk entry revalidated in the foreground, over a real disk tier and store: a 304
(RFC 9111 §4.3.4) answers with the stored body, streamed from the entry's file, although that
304 rewrites the file (new head, same body: a temp file renamed over it).

The answer used to open the file by its path after the rewrite had started, and the request
that went forward could wait on the origin while another revalidation's rewrite landed. Either
rename landing first left the path naming another inode: the open failed its inode check and
the client got a MISS and a second, full origin download instead of its REVALIDATED answer.
Here the rename lands first every time."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from proxy.cache.entry import StoredResponse
from proxy.cache.store import ResponseStore
from proxy.cache.tiers.disk import LargeEntry
from proxy.disk_path import DiskPath
from proxy.fetch import Fetch, OriginPath
from proxy.http import cache_status as outcomes
from proxy.origin import OriginError
from tests.component import large_entry_stubs as stubs
from tests.component.large_entry_stubs import KEY, SIZE, entry_file, source_fd
from tests.unit.cache_builders import POLICY


def stale_large() -> StoredResponse:
    """What a fill stored for a spilled body, now stale and without stale-while-revalidate:
    a GET revalidates it in the foreground (RFC 9111 §4.3.1)."""
    return stubs.spilled(
        [("Cache-Control", "max-age=1"), ("ETag", '"v1"')], SIZE, received=time.time() - 10.0
    )


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Client(stubs.Client):
    def __init__(self) -> None:
        super().__init__()
        self.peer_ip = "127.0.0.1"

    def request_body(self) -> None:
        return None


class NotModified:
    """The origin's 304 to the conditional request (If-None-Match: "v1")."""

    status = 304
    reason = "Not Modified"
    content_length = None

    def __init__(self) -> None:
        self.headers = [("ETag", '"v1"'), ("Cache-Control", "max-age=60")]
        self.released = False

    def close(self) -> None:
        self.released = True

    def release(self) -> None:
        self.released = True


class Origin:
    """Answers every request after ``before_answer`` ran (None: fails it, unreachable)."""

    def __init__(self, before_answer: Callable[[], None] | None) -> None:
        self.before_answer = before_answer
        self.requests: list[tuple[str, str]] = []

    async def request(self, method: str, url: str, headers: Any, body: Any) -> NotModified:
        self.requests.append((method, url))
        if self.before_answer is None:
            raise OriginError("connect", "refused")
        self.before_answer()
        return NotModified()


class Forward(OriginPath):
    def upstream_headers(self, conn: Any, ex: Any, fetch: Fetch) -> Any:
        return []  # what goes upstream is not under test here


class Handler(stubs.Handler):
    """The parts of ProxyHandler a foreground revalidation of a large entry calls."""

    def __init__(self, store: ResponseStore, origin: Origin) -> None:
        super().__init__(store)
        self.origin = origin
        self.recorder = None
        self.settings = SimpleNamespace(
            cache_name="cachet", via="1.1 cachet", admission=POLICY, stale_if_error_default_s=0
        )
        self.stats = SimpleNamespace(
            disk_hits=0,
            disk_reads=0,
            origin_requests=0,
            range_requests=Counter(),
            origin_errors=Counter(),
        )
        self.errors: list[int] = []
        self.origin_path = Forward(self)  # type: ignore[arg-type]
        self.disk_path = DiskPath(self)  # type: ignore[arg-type]

    def observe_origin_latency(self, _: float) -> None:
        pass

    def write_local_error(self, conn: Client, head: Any, status: int, *_: object) -> None:
        self.errors.append(status)


def get_request() -> Any:
    return stubs.get_request(
        target="/object",
        route=SimpleNamespace(base_url="http://origin.test"),
        head=SimpleNamespace(headers=[], body=None),
    )


def revalidate(tmp_path: Path, rename_lands: str) -> tuple[Handler, Client, bytes, list[str]]:
    """A GET of the stale large entry, answered 304 by the origin, with a rewrite's rename
    landing first: 'own' (this 304's rewrite, as soon as it is started), 'other' (another
    revalidation's, while this request waits on the origin) or 'none' (the origin fails)."""
    data = stubs.patterned_body(SIZE)
    disk, store = stubs.large_store(tmp_path)
    newer = tmp_path / "rewritten"
    rewrites: list[str] = []

    def land() -> None:
        os.replace(newer, entry_file(tmp_path))  # same key and body, another inode

    def rewrite_started(key: str, entry: LargeEntry, old: Any, refreshed: Any) -> None:
        rewrites.append(refreshed.etag)
        if rename_lands == "own":
            land()  # the rewrite's whole copy and rename, before the answer's first await

    store.refresh_large = rewrite_started  # type: ignore[method-assign]
    origin = Origin({"own": lambda: None, "other": land, "none": None}[rename_lands])
    handler = Handler(store, origin)
    client = Client()

    async def scenario() -> None:
        assert await disk.put_file(KEY, stale_large(), source_fd(data), SIZE)
        shutil.copyfile(entry_file(tmp_path), newer)
        fds = open_fds()
        await handler.disk_path.answer(client, get_request())  # type: ignore[arg-type]
        assert open_fds() == fds  # the file opened for the answer is closed, whatever it was

    asyncio.run(scenario())
    disk.close()
    return handler, client, data, rewrites


def assert_revalidated(handler: Handler, client: Client, data: bytes) -> None:
    head, _, body = bytes(client.data).partition(b"\r\n\r\n")
    assert handler.origin.requests == [("GET", "http://origin.test/object")]  # one, conditional
    assert handler.misses == []  # not fetched again in full
    assert b"X-Cache-Status: REVALIDATED" in head
    assert b"fwd-status=304" in head
    assert body == data and not client.aborted
    assert handler.finished == [(outcomes.REVALIDATED, 200, SIZE, False)]


def test_the_304s_own_rewrite_landing_first_does_not_take_the_stored_body_rfc9111_s4_3_4(
    tmp_path: Path,
) -> None:
    handler, client, data, rewrites = revalidate(tmp_path, "own")
    assert rewrites == ['"v1"']  # the refreshed head was written to disk
    assert_revalidated(handler, client, data)


def test_another_rewrite_landing_during_the_revalidation_does_not_take_the_body_rfc9111_s4_3_4(
    tmp_path: Path,
) -> None:
    handler, client, data, rewrites = revalidate(tmp_path, "other")
    assert rewrites == ['"v1"']
    assert_revalidated(handler, client, data)


def test_the_file_opened_for_a_304_is_closed_when_the_origin_fails_rfc9111_s4_3_4(
    tmp_path: Path,
) -> None:
    handler, client, _, rewrites = revalidate(tmp_path, "none")
    assert rewrites == []
    assert handler.errors == [502] and handler.misses == []
    assert client.data == b""  # no stale-if-error here: nothing streamed from the open file
