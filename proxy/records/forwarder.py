"""Forwarder: sends sealed batches to the coordinator in seq order; deletes only after an ack.

Per batch (the lowest seq in ``batches_dir``): ``POST {coordinator}/v1/batches`` with the batch
file's bytes gzip-compressed (``Content-Encoding: gzip``, ``Content-Type: application/json``;
ISA-L's level 1 where installed, ``provenance.compression``),
and the answers it stands for (``X-Cachet-Requests-Served``, ``X-Cachet-Records-Emitted``,
``X-Cachet-Records-Dropped``, from the sealer's counters file) for reconciliation.

- 2xx, or 409 whose JSON body says the batch is already stored (``{"duplicate": true}`` or
  ``"status"``/``"reason"`` equal to ``"duplicate"``): acked, moved to ``batches_dir/acked/``
  (kept for receipts; pruned to ``max_acked`` files and ``max_acked_age_s``, oldest first, by
  ``AckedFolder``, which lists the folder once instead of at every ack).
- any other 4xx but 429: the coordinator will never take it; moved to ``batches_dir/quarantine/``
  with a log line and counted in ``failures["quarantined"]``. Never silently dropped.
- 429, 5xx, network errors: retried after an exponential back-off with full jitter (uniform in
  [0, min(max_backoff_s, base * 2**attempt)]), never sooner than ``Retry-After`` says.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import aiohttp

from proxy.records.batch_files import (
    BatchCounters,
    delete_batch,
    list_batches,
    move_batch,
    parse_batch_name,
    read_batch_payload,
)
from proxy.records.plain_http import PlainHttpPoster

log = logging.getLogger(__name__)

BASE_BACKOFF_S = 0.5


async def sleep_or_stop(stop: asyncio.Event, delay_s: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), delay_s)
    except TimeoutError:
        pass


def is_duplicate_body(body: bytes) -> bool:
    """True if a 409 body is JSON saying the batch is already stored."""
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False
    if not isinstance(obj, dict):
        return False
    return obj.get("duplicate") is True or "duplicate" in (obj.get("status"), obj.get("reason"))


def retry_after_s(value: str | None) -> float:
    """Seconds from a Retry-After header given as delay-seconds (RFC 9110 §10.2.3); else 0."""
    if value is None or not value.strip().isdigit():
        return 0.0
    return float(value.strip())


class AckedFolder:
    """The batches in ``acked/``, oldest (lowest seq) first: listed once, then kept in step
    with what this forwarder moves in and prunes.

    Pruning used to list and stat the whole folder at every ack; with the default 10,000 acked
    batches kept that was ~40 ms of CPU per 1,000-record batch at 2,000 files (40 µs per
    record, several times what sealing it costs) and growing with the folder. Now an ack costs
    one stat and each pruned batch one delete. Batches are acked in seq order and keep their
    seal-time mtime, so the oldest are at the front; the newest acked batch always stays
    (recovery reads it)."""

    def __init__(self, folder: Path, max_files: int, max_age_s: float) -> None:
        self.folder, self.max_files, self.max_age_s = folder, max_files, max_age_s
        self._entries: deque[tuple[float, Path]] | None = None  # (mtime, path) by seq

    def _listed(self) -> deque[tuple[float, Path]]:
        if self._entries is None:
            self._entries = deque()
            for _, path in list_batches(self.folder):
                with contextlib.suppress(FileNotFoundError):
                    self._entries.append((path.stat().st_mtime, path))
        return self._entries

    def add(self, path: Path) -> None:
        """``path`` was just moved into the folder."""
        loaded = self._entries is not None
        entries = self._listed()  # a first listing already holds it
        if loaded:
            with contextlib.suppress(FileNotFoundError):
                entries.append((path.stat().st_mtime, path))

    def prune(self, now: float) -> None:
        """Delete the oldest batches (and their meta files) while more than ``max_files`` are
        kept or the oldest is older than ``max_age_s``; never the newest."""
        entries, cutoff = self._listed(), now - self.max_age_s
        while len(entries) > 1 and (len(entries) > self.max_files or entries[0][0] < cutoff):
            delete_batch(entries.popleft()[1])

    def __len__(self) -> int:
        return len(self._listed())


class Forwarder:
    def __init__(
        self,
        batches_dir: Path,
        coordinator_url: str,
        session: aiohttp.ClientSession | None,
        *,
        plain_http: bool = True,
        max_backoff_s: float = 60,
        poll_s: float = 0.5,
        max_acked: int = 10_000,
        max_acked_age_s: float = 7 * 86400,
        sleep: Callable[[asyncio.Event, float], Awaitable[None]] = sleep_or_stop,
        jitter: Callable[[float], float] = lambda high: random.uniform(0, high),
    ) -> None:
        self.batches_dir = Path(batches_dir)
        self.url = coordinator_url.rstrip("/") + "/v1/batches"
        self.session = session
        # A plain-http coordinator gets the forwarder's own connection (plain_http: a tenth of
        # the CPU per POST); https keeps aiohttp.
        self._plain = (
            PlainHttpPoster(self.url) if plain_http and self.url.startswith("http://") else None
        )
        self.max_backoff_s, self.poll_s = max_backoff_s, poll_s
        self.max_acked, self.max_acked_age_s = max_acked, max_acked_age_s
        self._sleep, self._jitter = sleep, jitter
        self.sent = 0
        self.acked = 0
        self.failures: Counter[str] = Counter()
        self.lag_count = 0  # unacked batches
        self.lag_s = 0.0  # age of the oldest unacked batch file
        self._acked_folder = AckedFolder(self.batches_dir / "acked", max_acked, max_acked_age_s)
        # Batches to send, by seq: listing the folder for every batch cost O(backlog) each
        # time, so a forwarder that fell behind fell further behind.
        self._queue: deque[tuple[int, Path]] = deque()
        self._last_queued = -1
        self._listed = False  # the folder listed once: news from the sealer then suffices

    def add(self, paths: Iterable[Path]) -> None:
        """Batches just sealed, in seq order (the records process's sealer says so): queued
        without listing the folder, unless they don't follow what is queued (the first news,
        or news lost): then the folder says what was missed."""
        for path in paths:
            parsed = parse_batch_name(path.name)
            if parsed is None or parsed[0] <= self._last_queued:
                continue
            if parsed[0] != self._last_queued + 1 or not self._listed:
                self._relist()
                if parsed[0] <= self._last_queued:
                    continue
            self._queue.append((parsed[0], path))
            self._last_queued = parsed[0]

    def _relist(self) -> None:
        """Merge the folder's batches into the queue: those this forwarder was not told about
        (a previous run's, a sealer in another process, or news lost)."""
        self._listed = True
        queue = self._queue
        queued = {seq for seq, _ in queue}
        found = [entry for entry in list_batches(self.batches_dir) if entry[0] not in queued]
        if found:
            merged = sorted([*queue, *found])
            queue.clear()
            queue.extend(merged)
            self._last_queued = max(self._last_queued, merged[-1][0])

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self._run(stop)
        finally:
            if self._plain is not None:
                self._plain.close()

    async def _run(self, stop: asyncio.Event) -> None:
        attempt = 0
        queue = self._queue
        while not stop.is_set():
            if not queue:
                self._relist()
            self._update_lag()
            if not queue:
                await self._sleep(stop, self.poll_s)
                continue
            head = queue[0]
            delay_s = await self._forward(head[1])
            if delay_s is None:
                with contextlib.suppress(ValueError):
                    queue.remove(head)  # the front, unless a relist meanwhile put one before
                attempt = 0
                continue
            attempt += 1
            backoff_s = self._jitter(min(self.max_backoff_s, BASE_BACKOFF_S * 2**attempt))
            await self._sleep(stop, max(backoff_s, min(delay_s, self.max_backoff_s * 10)))

    def _update_lag(self) -> None:
        queue = self._queue
        self.lag_count = len(queue)
        self.lag_s = 0.0
        if queue:
            try:
                self.lag_s = max(0.0, time.time() - queue[0][1].stat().st_mtime)
            except FileNotFoundError:
                pass

    async def _forward(self, path: Path) -> float | None:
        """Send one batch; None when done with it, else the Retry-After delay (0 if none)."""
        try:
            body, counters = await asyncio.to_thread(self._prepare, path)
        except FileNotFoundError:  # gone since it was queued (moved or deleted by hand)
            return None
        headers = {
            "Content-Encoding": "gzip",
            "Content-Type": "application/json",
            # Sealed batches waiting behind this one: the coordinator's view of the edge's lag.
            "X-Cachet-Spool-Lag": str(max(0, self.lag_count - 1)),
        }
        if counters is not None:  # for reconciliation (docs/billing.md)
            headers["X-Cachet-Requests-Served"] = str(counters.served)
            headers["X-Cachet-Records-Emitted"] = str(counters.emitted)
            headers["X-Cachet-Records-Dropped"] = str(counters.dropped)
        self.sent += 1
        try:
            if self._plain is not None:
                status, answer, reply = await self._plain.post(body, headers)
                wait_s = retry_after_s(answer.get("retry-after"))
            else:
                assert self.session is not None, "an https coordinator needs a ClientSession"
                async with self.session.post(self.url, data=body, headers=headers) as response:
                    status, reply = response.status, await response.read()
                    wait_s = retry_after_s(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.failures["network"] += 1
            log.warning("forwarder: %s: %s", self.url, type(exc).__name__)
            return 0.0
        if 200 <= status < 300 or (status == 409 and is_duplicate_body(reply)):
            self._acknowledged(path)
            self.acked += 1
            return None
        if status == 429 or status >= 500:
            self.failures[f"http_{status}"] += 1
            return wait_s
        self.failures["quarantined"] += 1
        log.error("forwarder: batch %s refused with %d (%r); quarantined", path.name, status,
                  reply[:200])  # fmt: skip
        await asyncio.to_thread(move_batch, path, self.batches_dir / "quarantine")
        return None

    @staticmethod
    def _prepare(path: Path) -> tuple[bytes, BatchCounters | None]:
        """The batch's gzip body and its counters, in one thread hop (a hop costs 50-400 µs of
        CPU, by box: once per batch, not once per file)."""
        body, meta = read_batch_payload(path)  # gzip already, as sealed
        return body, None if meta is None else meta.counters

    def _acknowledged(self, path: Path) -> None:
        """Move an acknowledged batch to ``acked/`` and prune that folder. On the event loop, not
        in a thread: a rename without fsync (``move_batch``: a move lost in a crash is sent
        again and acknowledged as a duplicate) and a stat cost less than the thread hop did."""
        move_batch(path, self.batches_dir / "acked", durable=False)
        self._acked_folder.add(self.batches_dir / "acked" / path.name)
        self._acked_folder.prune(time.time())
