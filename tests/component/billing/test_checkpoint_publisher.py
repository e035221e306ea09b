"""CheckpointPublisher (billing/log/publish.py) against an in-process HTTP witness: a slow witness
holds no queue (newest wins, one slot per target) and never blocks ``offer``; one slow witness
does not hold up another; close() ends the delivery tasks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from billing.log.publish import CheckpointPublisher, UrlTarget
from billing.store.base import StoredCheckpoint

pytestmark = pytest.mark.asyncio
MakeServer = Callable[[web.Application], Awaitable[TestServer]]


def checkpoint(size: int) -> StoredCheckpoint:
    return StoredCheckpoint(size, f"{size:064x}", f"note {size}\n", "2026-11-27T12:00:00.000Z")


class SlowWitness:
    """Answers 200 to each POST once ``release`` is set; keeps the bodies in arrival order."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        self.arrived.set()
        await self.release.wait()
        return web.Response(text="ok")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/add", self.handle)
        return app


async def wait_for(condition: Callable[[], bool]) -> None:
    """Poll state the publisher's tasks change (they signal nothing a test could await)."""
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0.01)


def publisher(*urls: str) -> tuple[CheckpointPublisher, CollectorRegistry]:
    registry = CollectorRegistry()
    targets = [UrlTarget(url, timeout_s=30.0) for url in urls]
    return CheckpointPublisher(targets, registry, 0.01, 0.05), registry


async def test_a_slow_witness_gets_the_one_in_flight_and_then_only_the_newest(
    aiohttp_server: MakeServer,
) -> None:
    witness = SlowWitness()
    server = await aiohttp_server(witness.app())
    pub, registry = publisher(str(server.make_url("/add")))
    pub.offer(checkpoint(1))
    await asyncio.wait_for(witness.arrived.wait(), 10)
    for size in range(2, 1002):  # the witness is stuck on 1: offer only fills one slot
        pub.offer(checkpoint(size))
    assert [slot.pending for slot in pub.slots] == [checkpoint(1001)]
    witness.release.set()
    await wait_for(lambda: pub.slots[0].pending is None)
    assert witness.bodies == [b"note 1\n", b"note 1001\n"]
    labels = {"target": str(server.make_url("/add"))}
    assert registry.get_sample_value("cachet_coordinator_checkpoint_published_size", labels) == 1001
    await pub.close()


async def test_one_stuck_witness_does_not_hold_up_another(aiohttp_server: MakeServer) -> None:
    stuck, healthy = SlowWitness(), SlowWitness()
    healthy.release.set()
    stuck_server = await aiohttp_server(stuck.app())
    healthy_server = await aiohttp_server(healthy.app())
    pub, _ = publisher(str(stuck_server.make_url("/add")), str(healthy_server.make_url("/add")))
    for size in (1, 2, 3):
        pub.offer(checkpoint(size))
        note = f"note {size}\n".encode()
        await wait_for(lambda: note in healthy.bodies)  # noqa: B023 (awaited at once)
    assert stuck.bodies == [b"note 1\n"]
    await pub.close()  # cancels the stuck delivery and closes its session
    assert all(slot.task is None for slot in pub.slots)
    stuck.release.set()


async def test_nothing_is_delivered_twice_and_an_older_checkpoint_is_ignored(
    aiohttp_server: MakeServer,
) -> None:
    witness = SlowWitness()
    witness.release.set()
    server = await aiohttp_server(witness.app())
    pub, _ = publisher(str(server.make_url("/add")))
    pub.offer(checkpoint(5))
    await wait_for(lambda: pub.slots[0].delivered_size == 5)
    pub.offer(checkpoint(5))  # the sequencer hands the latest again after a restart
    pub.offer(checkpoint(4))
    pub.offer(checkpoint(6))  # deliveries are in order: a wrong one would come before 6
    await wait_for(lambda: pub.slots[0].delivered_size == 6)
    assert witness.bodies == [b"note 5\n", b"note 6\n"]
    await pub.close()
