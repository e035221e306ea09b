"""Builders and stubs shared by the component tests of large disk entries: the tier's own tests
(test_large_disk_tier.py) and the disk path's answers from a stale large entry, over a real tier
and store (test_large_foreground_revalidation.py, test_large_stale_while_revalidate.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from proxy.cache.entry import StoredResponse
from proxy.cache.store import ResponseStore
from proxy.cache.tiers.disk import DiskTier, name_for
from proxy.fetch import Fetch
from proxy.http.cache_control import parse_cache_control
from proxy.http.cache_status import Outcome
from proxy.http.fields import Headers
from tests.unit.cache_builders import T0, stored_response

MiB = 1024 * 1024
SIZE = 3 * MiB + 77  # larger than memory admits in large_store: streamed from its file
KEY = "http://large.test/object"


def patterned_body(size: int) -> bytes:
    return bytes((i * 7 + i // 4096) % 251 for i in range(size))


def spilled(headers: Headers, size: int, received: float = T0) -> StoredResponse:
    """What a fill stores for a spilled body, received at ``received`` (also its Date): the head
    says its length, the body is elsewhere."""
    full = stored_response(
        headers,
        body=b"x" * size,
        request_time=received,
        response_time=received,
        date=received,
    )
    return dataclasses.replace(full, body=b"")


def source_fd(data: bytes) -> int:
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - the tier takes over a duplicate
    spool.write(data)
    spool.flush()
    fd = os.dup(spool.fileno())
    spool.close()
    return fd


def large_store(tmp_path: Path) -> tuple[DiskTier, ResponseStore]:
    """An open disk tier under tmp_path/objects and a store whose memory admits 1 MiB."""
    disk = DiskTier(tmp_path / "objects", 64 * MiB, 32 * MiB)
    disk.open()
    store = ResponseStore(MiB, MiB, disk=disk)
    assert store.writer is not None
    return disk, store


def entry_file(tmp_path: Path) -> Path:
    """Where large_store's tier keeps KEY's entry."""
    name = name_for(KEY)
    return tmp_path / "objects" / name[0] / name[1:3] / name


def get_request(**overrides: Any) -> Any:
    """A plain GET of KEY, as the disk path reads it; ``overrides`` add or replace fields."""
    fields: dict[str, Any] = {
        "key": KEY,
        "method": "GET",
        "head": SimpleNamespace(headers=[]),
        "directives": parse_cache_control([]),
        "pragma_no_cache": False,
        "conditional": False,
        "ranged": False,
        "request_id": "r1",
        "keep_alive": False,
        "http10": False,
    }
    fields.update(overrides)
    return SimpleNamespace(**fields)


class Client:
    """The connection an answer streams to."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        await asyncio.sleep(0)

    def abort(self) -> None:
        self.aborted = self.closed = True


class Handler:
    """The parts of ProxyHandler every answer from a large disk entry calls; a test's subclass
    adds its settings, stats and what else its path calls."""

    def __init__(self, store: ResponseStore) -> None:
        self.store = store
        self.misses: list[Outcome] = []
        self.finished: list[tuple[Outcome, int, int, bool]] = []

    def attribution_candidate(self, *_: object) -> None:
        return None

    async def _fetch_missing(self, conn: Client, ex: Any, fetch: Fetch, now: float) -> None:
        self.misses.append(fetch.outcome)  # the whole object from the origin again

    def finish(
        self,
        ex: Any,
        outcome: Outcome,
        status: int,
        sent: int,
        tier: str,
        origin_bytes: int = 0,
        attribution: object = None,
        *,
        failed: bool = False,
    ) -> None:
        self.finished.append((outcome, status, sent, failed))
