"""Forwarder against a fake coordinator: order, retries, acks, quarantine, duplicates."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.records.batch_files import (
    BatchCounters,
    BatchMeta,
    batch_name,
    list_batches,
    meta_path,
    read_batch_file,
)
from proxy.records.forwarder import Forwarder

MakeServer = Callable[[web.Application], Awaitable[TestServer]]
Reply = tuple[int, dict[str, str], bytes]


async def coordinator_url(coordinator: FakeCoordinator, make_server: MakeServer) -> str:
    app = web.Application()
    app.router.add_post("/v1/batches", coordinator.handle)
    return str((await make_server(app)).make_url("/"))


async def drain(forwarder: Forwarder, batches_dir: Path) -> None:
    """Run the forwarder until no batch is left to send (5 s at most), then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(forwarder.run(stop))
    for _ in range(500):
        if not list_batches(batches_dir):
            break
        await asyncio.sleep(0.01)
    stop.set()
    await task


class FakeCoordinator:
    """Answers each POST with the next scripted reply (then 200) and keeps what it received."""

    def __init__(self, script: list[Reply]) -> None:
        self.script = list(script)
        self.received: list[bytes] = []
        self.headers: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        assert request.headers["Content-Encoding"] == "gzip"
        assert request.content_type == "application/json"
        self.received.append(await request.read())  # aiohttp inflates Content-Encoding: gzip
        self.headers.append(dict(request.headers))
        status, headers, body = self.script.pop(0) if self.script else (200, {}, b"{}")
        return web.Response(status=status, headers=headers, body=body)


@pytest.fixture(autouse=True, params=["own-connection", "aiohttp"])
def client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test twice: with the forwarder's own HTTP/1.1 connection to a plain-http
    coordinator (proxy/records/plain_http.py, the default) and with aiohttp (https)."""
    if request.param == "aiohttp":
        original = Forwarder.__init__

        def with_aiohttp(self: Forwarder, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **{**kwargs, "plain_http": False})

        monkeypatch.setattr(Forwarder, "__init__", with_aiohttp)
    return str(request.param)


def write_batches(batches_dir: Path, count: int) -> None:
    batches_dir.mkdir(parents=True, exist_ok=True)
    for seq in range(count):
        (batches_dir / batch_name(seq, 0, seq)).write_bytes(b'{"batch":%d}' % seq)


async def forward(
    tmp_path: Path, make_server: MakeServer, script: list[Reply], count: int, max_acked: int = 10
) -> tuple[FakeCoordinator, Forwarder, list[float]]:
    coordinator = FakeCoordinator(script)
    url = await coordinator_url(coordinator, make_server)
    write_batches(tmp_path, count)
    delays: list[float] = []

    async def fake_sleep(stop: asyncio.Event, delay_s: float) -> None:
        delays.append(delay_s)
        await asyncio.sleep(0)

    async with aiohttp.ClientSession() as session:
        forwarder = Forwarder(
            tmp_path, url, session, sleep=fake_sleep, jitter=lambda h: h, max_acked=max_acked
        )
        await drain(forwarder, tmp_path)
    return coordinator, forwarder, delays


def acked(tmp_path: Path) -> list[int]:
    return [seq for seq, _ in list_batches(tmp_path / "acked")]


@pytest.mark.asyncio
async def test_sends_in_seq_order_and_moves_acked(
    tmp_path: Path, aiohttp_server: MakeServer
) -> None:
    coordinator, forwarder, _ = await forward(tmp_path, aiohttp_server, [], 3)
    assert coordinator.received == [b'{"batch":0}', b'{"batch":1}', b'{"batch":2}']
    assert acked(tmp_path) == [0, 1, 2]
    assert forwarder.acked == 3


@pytest.mark.asyncio
async def test_acked_batches_are_pruned_to_the_newest_max_acked(
    tmp_path: Path, aiohttp_server: MakeServer
) -> None:
    """Receipts read acked batches; the folder keeps the newest ``max_acked`` of them, each
    with its meta file, and deletes the older ones as new acks arrive."""
    (tmp_path / "acked").mkdir()
    old = tmp_path / "acked" / batch_name(0, 0, 0)  # acked by an earlier run of the process
    old.write_bytes(b"{}")
    meta_path(old).write_bytes(b"{}")
    await forward(tmp_path, aiohttp_server, [], 6, max_acked=3)
    assert acked(tmp_path) == [3, 4, 5]
    assert not meta_path(old).exists()


@pytest.mark.asyncio
async def test_503_is_retried_after_retry_after(tmp_path: Path, aiohttp_server: MakeServer) -> None:
    """RFC 9110 §10.2.3: Retry-After in seconds is a floor on the wait."""
    script: list[Reply] = [(503, {"Retry-After": "7"}, b""), (503, {}, b"")]
    coordinator, forwarder, delays = await forward(tmp_path, aiohttp_server, script, 1)
    assert coordinator.received == [b'{"batch":0}'] * 3
    assert acked(tmp_path) == [0]
    assert delays[0] == 7
    assert 0 < delays[1] <= 60
    assert forwarder.failures["http_503"] == 2


@pytest.mark.asyncio
async def test_backoff_grows_exponentially_to_the_cap(
    tmp_path: Path, aiohttp_server: MakeServer
) -> None:
    script: list[Reply] = [(429, {}, b"")] * 10
    _, _, delays = await forward(tmp_path, aiohttp_server, script, 1)
    retries = delays[:10]
    assert retries == sorted(retries)
    assert retries[-1] == 60
    assert retries[0] < 2


@pytest.mark.asyncio
async def test_400_quarantines_and_moves_on(tmp_path: Path, aiohttp_server: MakeServer) -> None:
    coordinator, forwarder, _ = await forward(tmp_path, aiohttp_server, [(400, {}, b"bad")], 2)
    assert [seq for seq, _ in list_batches(tmp_path / "quarantine")] == [0]
    assert acked(tmp_path) == [1]
    assert forwarder.failures["quarantined"] == 1
    assert len(coordinator.received) == 2


@pytest.mark.asyncio
async def test_409_duplicate_counts_as_ack(tmp_path: Path, aiohttp_server: MakeServer) -> None:
    duplicate = json.dumps({"status": "duplicate"}).encode()
    _, forwarder, _ = await forward(tmp_path, aiohttp_server, [(409, {}, duplicate)], 1)
    assert acked(tmp_path) == [0]
    assert forwarder.failures["quarantined"] == 0


@pytest.mark.asyncio
async def test_409_without_duplicate_body_is_quarantined(
    tmp_path: Path, aiohttp_server: MakeServer
) -> None:
    _, _, _ = await forward(tmp_path, aiohttp_server, [(409, {}, b'{"reason":"fork"}')], 1)
    assert [seq for seq, _ in list_batches(tmp_path / "quarantine")] == [0]


@pytest.mark.asyncio
async def test_network_error_is_retried(tmp_path: Path) -> None:
    write_batches(tmp_path, 1)
    delays: list[float] = []
    stop = asyncio.Event()

    async def fake_sleep(stop_: asyncio.Event, delay_s: float) -> None:
        delays.append(delay_s)
        if len(delays) == 3:
            stop.set()

    async with aiohttp.ClientSession() as session:
        forwarder = Forwarder(tmp_path, "http://127.0.0.1:9", session, sleep=fake_sleep)
        await forwarder.run(stop)
    assert forwarder.failures["network"] == 3
    assert [seq for seq, _ in list_batches(tmp_path)] == [0]


@pytest.mark.asyncio
async def test_an_older_batchs_meta_file_beside_it_is_read_and_moved_with_it(
    tmp_path: Path, aiohttp_server: MakeServer
) -> None:
    """docs/billing.md "Reconciliation": the answers a batch stands for go with it."""
    coordinator = FakeCoordinator([])
    url = await coordinator_url(coordinator, aiohttp_server)
    write_batches(tmp_path, 2)
    first = tmp_path / batch_name(0, 0, 0)
    meta = BatchMeta(BatchCounters(served=12, emitted=9, dropped=1), {"": (0, 0, 0)})
    meta_path(first).write_bytes(meta.to_json())
    async with aiohttp.ClientSession() as session:
        await drain(Forwarder(tmp_path, url, session), tmp_path)
    seen = coordinator.headers
    assert seen[0]["X-Cachet-Requests-Served"] == "12"
    assert seen[0]["X-Cachet-Records-Emitted"] == "9"
    assert seen[0]["X-Cachet-Records-Dropped"] == "1"
    assert "X-Cachet-Requests-Served" not in seen[1]  # a batch without counters sends none
    assert not meta_path(first).exists()  # moved with its batch: recovery may read it there
    assert meta_path(tmp_path / "acked" / first.name).read_bytes() == meta.to_json()
    assert acked(tmp_path) == [0, 1]


@pytest.mark.asyncio
async def test_sends_only_the_batch_line_with_the_counters_of_its_meta_line(
    tmp_path: Path, aiohttp_server: MakeServer
) -> None:
    """A batch file is the batch, a newline, its meta: the coordinator gets the batch's bytes
    exactly (its signature covers them) and the meta only as the reconciliation headers."""
    coordinator = FakeCoordinator([])
    url = await coordinator_url(coordinator, aiohttp_server)
    path = tmp_path / batch_name(0, 3, 40)
    meta = BatchMeta(BatchCounters(served=7, emitted=5, dropped=2), {"": (3, 40, 0)})
    path.write_bytes(b'{"batch":0}\n' + meta.to_json())
    async with aiohttp.ClientSession() as session:
        await drain(Forwarder(tmp_path, url, session), tmp_path)
    headers, body = coordinator.headers[0], coordinator.received[0]
    assert body == b'{"batch":0}'
    assert headers["X-Cachet-Requests-Served"] == "7"
    assert headers["X-Cachet-Records-Emitted"] == "5"
    assert headers["X-Cachet-Records-Dropped"] == "2"
    assert read_batch_file(tmp_path / "acked" / path.name) == (b'{"batch":0}', meta)


@pytest.mark.asyncio
async def test_news_of_sealed_batches_is_queued_and_lost_news_is_found_in_the_folder(
    tmp_path: Path, aiohttp_server: MakeServer
) -> None:
    """The sealer tells the forwarder what it sealed (no folder listing per batch); a batch
    whose news never came (a gap in the seqs) is still sent, in order, never skipped."""
    coordinator = FakeCoordinator([])
    url = await coordinator_url(coordinator, aiohttp_server)
    write_batches(tmp_path, 2)  # a previous run's: found by the first listing
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        forwarder = Forwarder(tmp_path, url, session, poll_s=30)
        task = asyncio.create_task(forwarder.run(stop))
        for seq in range(2, 7):
            (tmp_path / batch_name(seq, 0, seq)).write_bytes(b'{"batch":%d}' % seq)
        forwarder.add([tmp_path / batch_name(2, 0, 2), tmp_path / batch_name(3, 0, 3)])
        forwarder.add([tmp_path / batch_name(5, 0, 5)])  # the news of 4 was lost
        forwarder.add([tmp_path / batch_name(6, 0, 6), tmp_path / batch_name(6, 0, 6)])
        for _ in range(500):
            if len(coordinator.received) == 7:
                break
            await asyncio.sleep(0.01)
        assert forwarder.lag_count == 0
        stop.set()
        await task
    assert coordinator.received == [b'{"batch":%d}' % seq for seq in range(7)]
    assert acked(tmp_path) == list(range(7))


@pytest.mark.asyncio
async def test_a_batch_deleted_after_it_was_queued_is_passed_over(
    tmp_path: Path, aiohttp_server: MakeServer
) -> None:
    coordinator = FakeCoordinator([])
    url = await coordinator_url(coordinator, aiohttp_server)
    write_batches(tmp_path, 3)
    async with aiohttp.ClientSession() as session:
        forwarder = Forwarder(tmp_path, url, session)
        forwarder.add([tmp_path / batch_name(2, 0, 2)])  # lists the folder: 0, 1, 2 queued
        (tmp_path / batch_name(1, 0, 1)).unlink()
        await drain(forwarder, tmp_path)
    assert coordinator.received == [b'{"batch":0}', b'{"batch":2}']
    assert acked(tmp_path) == [0, 2]
