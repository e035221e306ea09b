"""Holding responses back until their records are in the spool.

A record must reach the operating system before its response completes (ARCHITECTURE.md: a
proxy killed at any instant loses no record of a response it completed). One write(2) per
response would cost a syscall per cache hit, so answers are corked instead: a hit appends its
record and queues its response here; once per event-loop iteration, after every connection
that had data has been served, the spool is flushed with one write and the queued responses go
out in order. A response thus waits at most one loop iteration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxy.connection import ClientConnection


class Cork:
    def __init__(self, flush_records: Callable[[], None]) -> None:
        self._flush_records = flush_records
        self._queued: list[tuple[ClientConnection, bytes | tuple[bytes, ...]]] = []
        self._scheduled = False

    def queue(self, conn: ClientConnection, data: bytes | tuple[bytes, ...]) -> None:
        conn.corked += 1
        self._queued.append((conn, data))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.release)

    def release(self) -> None:
        self._scheduled = False
        queued, self._queued = self._queued, []
        self._flush_records()
        for conn, data in queued:
            conn.corked -= 1
            conn.uncork(data)
