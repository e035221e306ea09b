"""The sequencer: the one task that appends pending leaves to the log, in arrival order, and
signs checkpoints (C2SP tlog-checkpoint as a C2SP signed note) every ``interval_s`` seconds or
every ``every_batches`` leaves, whichever comes first. A leaf is an accepted batch or a closed
statement (``billing.log.leaves``): one log, one writer, both kinds.

Durability contract: ``append_leaves`` MUST commit the leaf indexes and nodes in one transaction
before the in-memory frontier moves; a checkpoint is stored only for a size whose nodes are
committed. After a crash the sequencer reloads its frontier from the stored nodes and integrates
the batches that were acknowledged (and the statements closed) but not yet sequenced:
acknowledgement never waits for it.

Several processes on one database (ingest workers, docs/design/scale-out.md) each run a
Sequencer with ``lead``: a call that says whether this process holds the log's single-writer
lock (a PostgreSQL advisory lock). Only the leader integrates; every one of them reloads its
frontier from storage when the stored log moved, so its size, proofs and checkpoints follow the
leader's log. ``append_leaves`` still refuses a stale ``first_index``, whoever calls it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from billing.log.integrate import EMPTY_LOG, LogState, frontier_node_ids, integrate, root_of
from billing.log.leaves import leaf_hash_of
from billing.metrics import CoordinatorMetrics
from billing.store.base import Store, StoredCheckpoint
from provenance.checkpoint import Checkpoint, format_checkpoint
from provenance.keys import SigningKey
from provenance.records import format_timestamp
from provenance.signed_note import sign_note

log = logging.getLogger("cachet.coordinator.sequencer")

MAX_LEAVES_PER_STEP = 4096
LEAD_POLL_S = 0.5  # with a lead election: how often a process checks the lock and the log


class Sequencer:
    def __init__(
        self,
        store: Store,
        log_key: SigningKey,
        origin: str,
        metrics: CoordinatorMetrics,
        clock: Callable[[], datetime],
        interval_s: float,
        every_batches: int,
        lead: Callable[[], Awaitable[bool]] | None = None,
        on_checkpoint: Callable[[StoredCheckpoint], None] | None = None,
    ) -> None:
        self._store, self._key, self._origin = store, log_key, origin
        self._metrics, self._clock = metrics, clock
        self._interval_s, self._every = interval_s, every_batches
        self._state = EMPTY_LOG
        self._checkpoint: StoredCheckpoint | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._lead = lead
        self._on_checkpoint = on_checkpoint  # must not block: the checkpoint publisher's offer

    @property
    def state(self) -> LogState:
        return self._state

    @property
    def checkpoint(self) -> StoredCheckpoint | None:
        return self._checkpoint

    async def start(self) -> None:
        """Reload the frontier from storage, catch up, sign a first checkpoint, start the loop."""
        await self._reload(await self._store.log_size())
        latest = await self.flush()
        if self._on_checkpoint is not None:  # again after a restart: it may not have gone out
            self._on_checkpoint(latest)
        self._task = asyncio.create_task(self._run(), name="cachet-log-sequencer")

    async def _reload(self, size: int) -> None:
        ids = frontier_node_ids(size)
        nodes = await self._store.read_nodes(ids)
        self._state = LogState(size, tuple(nodes[node_id] for node_id in ids))
        self._checkpoint = await self._store.latest_checkpoint()
        self._metrics.log_size.set(size)

    async def _may_integrate(self) -> bool:
        """Without an election: always. With one: follow the stored log, then ask the lock."""
        if self._lead is None:
            return True
        size = await self._store.log_size()
        if size != self._state.size:
            await self._reload(size)
        return await self._lead()

    async def stop(self) -> None:
        if self._task is not None:
            current = asyncio.current_task()
            # A caller may already be shutting down under a cancel (aiohttp's run_app cleans up
            # in its cancelled main task): only a cancel that arrives during stop() is ours to
            # pass on, the task's own CancelledError is swallowed.
            cancels_before = current.cancelling() if current is not None else 0
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                if current is not None and current.cancelling() > cancels_before:
                    raise
            self._task = None

    def notify(self) -> None:
        """A batch was accepted: integrate soon."""
        self._wake.set()

    async def flush(self) -> StoredCheckpoint:
        """Integrate every pending batch and sign a checkpoint for the resulting size."""
        async with self._lock:
            if await self._may_integrate():
                while await self._integrate_pending():
                    pass
            return await self._sign_if_grown(force=True)

    async def _run(self) -> None:
        wait_s = self._interval_s if self._lead is None else min(self._interval_s, LEAD_POLL_S)
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that arrives
            # as the wake event fires (CPython gh-86296), and stop() then waited forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._step()
            except Exception:
                # Storage restarting, or a step that found the log other than it left it: the
                # log must not stop for good while ingest goes on acknowledging batches. Say so,
                # then go on from what is stored (append_leaves wrote nothing of a failed step).
                log.exception("log sequencer step failed; reloading the log from storage")
                await asyncio.sleep(LEAD_POLL_S)
                with contextlib.suppress(Exception):
                    async with self._lock:
                        await self._reload(await self._store.log_size())

    async def _step(self) -> None:
        async with self._lock:
            if not await self._may_integrate():
                await self._sign_if_grown(force=self._is_due())  # committed by the leader
                return
            while await self._integrate_pending():
                await self._sign_if_grown(force=False)
            await self._sign_if_grown(force=self._is_due())

    def _is_due(self) -> bool:
        if self._checkpoint is None:
            return True
        created = datetime.fromisoformat(self._checkpoint.created_at.replace("Z", "+00:00"))
        return (self._clock() - created).total_seconds() >= self._interval_s

    async def _integrate_pending(self) -> int:
        leaves = await self._store.unsequenced_leaves(MAX_LEAVES_PER_STEP)
        if not leaves:
            return 0
        state, nodes = integrate(self._state, [leaf_hash_of(leaf) for leaf in leaves])
        await self._store.append_leaves(self._state.size, leaves, nodes)
        self._state = state
        self._metrics.log_size.set(state.size)
        return len(leaves)

    async def _sign_if_grown(self, force: bool) -> StoredCheckpoint:
        signed = self._checkpoint
        grown = signed is None or self._state.size > signed.size
        enough = signed is None or self._state.size - signed.size >= self._every
        if signed is not None and not (grown and (force or enough)):
            return signed
        checkpoint = self._sign(self._state)
        await self._store.add_checkpoint(checkpoint)
        self._checkpoint = checkpoint
        self._metrics.note_checkpoint(checkpoint.size)
        if self._on_checkpoint is not None:
            self._on_checkpoint(checkpoint)
        return checkpoint

    def _sign(self, state: LogState) -> StoredCheckpoint:
        root = root_of(state)
        text = format_checkpoint(Checkpoint(self._origin, state.size, root))
        note = sign_note(text, [self._key])
        return StoredCheckpoint(state.size, root.hex(), note, format_timestamp(self._clock()))
