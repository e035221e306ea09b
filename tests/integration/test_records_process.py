"""The records process (proxy.records.daemon): sealing and forwarding run beside the serving
process, started and supervised by it (docs/design/spool.md, "Processes").

What a user relies on: every answered request is sealed exactly once whatever happens to either
process (issue 4: "SIGKILL at any instant loses no record of a completed response"; "recovery
seals any unsealed tail exactly once"), the records process never outlives its proxy, and a
crashed records process comes back without the proxy stopping to serve.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import nats
import pytest

from provenance.batches import SealedBatch, parse_sealed_batch
from proxy.records.batch_files import read_batch_file
from proxy.records.sealer import list_batches
from tests.integration.conftest import Origin, Proxy, start_proxy
from tests.services import NATS_URL, ensure_nats

pytestmark = pytest.mark.integration
WAIT_S = 20.0
FRESH = ["Cache-Control", "max-age=600"]


def sealed_request_ids(records_dir: Path) -> Counter[str]:
    """Every request id in every sealed batch, counted (pending, acked or quarantined)."""
    seen: Counter[str] = Counter()
    for folder in ("", "acked", "quarantine"):
        for _, path in list_batches(records_dir / "batches" / folder):
            seen.update(r.request_id for r in parse_sealed_batch(read_batch_file(path)[0]).records)
    return seen


def serve(proxy: Proxy, path: str, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        response = proxy.get(path)
        assert response.status == 200
        request_id = response.header("X-Request-ID")
        assert request_id
        ids.append(request_id)
    return ids


def records_pid(records_dir: Path) -> int:
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            pid = int(json.loads((records_dir / "status.json").read_bytes())["pid"])
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError, KeyError):
            assert time.monotonic() < deadline, "the records process never reported"
            time.sleep(0.05)


def wait_until_sealed(records_dir: Path, ids: list[str]) -> Counter[str]:
    deadline = time.monotonic() + WAIT_S
    while True:
        seen = sealed_request_ids(records_dir)
        if all(seen[i] for i in ids):
            return seen
        assert time.monotonic() < deadline, f"{sum(1 for i in ids if not seen[i])} never sealed"
        time.sleep(0.1)


def wait_gone(pid: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            if stat.read().split(") ", 1)[1].startswith("Z"):
                return  # exited; only waiting to be reaped by init
        assert time.monotonic() < deadline, f"process {pid} still running"
        time.sleep(0.05)


def metric(proxy: Proxy, name: str) -> float:
    for line in proxy.admin("/metrics").body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_records_are_sealed_by_a_separate_process_and_reported(
    origin: Origin, tmp_path: Path
) -> None:
    origin.script("/rp-plain", {"headers": [FRESH], "body": "x" * 100})
    proxy = start_proxy(origin.url, tmp_path, "--batch-max-interval-ms", "50")
    try:
        records_dir = tmp_path / "records"
        pid = records_pid(records_dir)
        assert pid != proxy.proc.pid
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert b"MALLOC_MMAP_THRESHOLD_=67108864" in environ  # pieces from the heap, reused
        ids = serve(proxy, "/rp-plain", 30)
        seen = wait_until_sealed(records_dir, ids)
        assert all(seen[i] == 1 for i in ids)
        deadline = time.monotonic() + WAIT_S
        while metric(proxy, "cachet_records_sealed_total") < 30:
            assert time.monotonic() < deadline, "sealed records never reached /metrics"
            time.sleep(0.1)
        assert metric(proxy, "cachet_records_emitted_total") == 30
    finally:
        assert proxy.stop() == 0
    wait_gone(pid)
    assert all(sealed_request_ids(tmp_path / "records")[i] == 1 for i in ids)


def test_a_killed_records_process_is_restarted_and_nothing_is_lost_or_doubled(
    origin: Origin, tmp_path: Path
) -> None:
    origin.script("/rp-restart", {"headers": [FRESH], "body": "y" * 100})
    proxy = start_proxy(origin.url, tmp_path, "--batch-max-interval-ms", "50")
    records_dir = tmp_path / "records"
    try:
        first = records_pid(records_dir)
        before = serve(proxy, "/rp-restart", 20)
        os.kill(first, signal.SIGKILL)
        during = serve(proxy, "/rp-restart", 20)  # the proxy serves on while it is down
        deadline = time.monotonic() + WAIT_S
        while (second := records_pid(records_dir)) == first:
            assert time.monotonic() < deadline, "the records process was not restarted"
            time.sleep(0.05)
        after = serve(proxy, "/rp-restart", 20)
        seen = wait_until_sealed(records_dir, before + during + after)
        assert [i for i in before + during + after if seen[i] != 1] == []
        assert metric(proxy, "cachet_records_process_restarts_total") == 1
    finally:
        assert proxy.stop() == 0
    wait_gone(second)


def test_sigkill_of_the_proxy_stops_the_records_process_after_it_seals_the_tail(
    origin: Origin, tmp_path: Path
) -> None:
    origin.script("/rp-kill", {"headers": [FRESH], "body": "z" * 100})
    # A long interval: the records are still unsealed when the proxy dies.
    proxy = start_proxy(origin.url, tmp_path, "--batch-max-interval-ms", "600000")
    records_dir = tmp_path / "records"
    pid = records_pid(records_dir)
    ids = serve(proxy, "/rp-kill", 25)
    os.kill(proxy.proc.pid, signal.SIGKILL)
    proxy.proc.wait()
    wait_gone(pid)  # end of file on its stdin: it seals what is left and exits
    seen = sealed_request_ids(records_dir)
    assert [i for i in ids if seen[i] != 1] == []


def test_with_nats_url_sealed_batches_are_published_to_jetstream(
    origin: Origin, tmp_path: Path
) -> None:
    """Issue 9: "proxies can publish sealed batches to a JetStream stream (the batch id as the
    message id)". A real proxy with --nats-url; the test reads the stream back."""
    reason = ensure_nats()
    if reason is not None:
        pytest.skip(reason)
    prefix = f"cachet-test-{os.getpid()}-{time.monotonic_ns()}"
    asyncio.run(_add_stream(prefix))
    origin.script("/rp-nats", {"headers": [FRESH], "body": "n" * 100})
    proxy = start_proxy(origin.url, tmp_path, "--batch-max-interval-ms", "50",
                        "--nats-url", NATS_URL, "--nats-subject", prefix)  # fmt: skip
    try:
        ids = serve(proxy, "/rp-nats", 15)
        deadline = time.monotonic() + WAIT_S
        while True:
            published = asyncio.run(_read_stream(prefix))
            seen = Counter(r.request_id for batch in published for r in batch.records)
            if all(seen[i] for i in ids):
                break
            assert time.monotonic() < deadline, "batches never reached the stream"
            time.sleep(0.2)
        assert [i for i in ids if seen[i] != 1] == []
        assert NATS_URL not in proxy.log.read_text()
    finally:
        assert proxy.stop() == 0
        asyncio.run(_delete_stream(prefix))


async def _add_stream(prefix: str) -> None:
    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().add_stream(name=prefix, subjects=[f"{prefix}.>"])
    finally:
        await nc.close()


async def _delete_stream(prefix: str) -> None:
    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().delete_stream(prefix)
    finally:
        await nc.close()


async def _read_stream(prefix: str) -> list[SealedBatch]:
    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        info = await js.stream_info(prefix)
        batches: list[SealedBatch] = []
        if not info.state.messages:
            return batches
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            message = await js.get_msg(prefix, seq)
            assert message.data is not None
            # gzip, said so in the headers (RFC 9110 §8.4), as the HTTP forwarder's bodies
            assert (message.headers or {}).get("Content-Encoding") == "gzip"
            batches.append(parse_sealed_batch(gzip.decompress(message.data)))
        return batches
    finally:
        await nc.close()


def test_sigkill_under_concurrent_load_loses_no_record_of_a_completed_response(
    origin: Origin, tmp_path: Path
) -> None:
    """Issue 4: "SIGKILL at any instant loses no record of a completed response", with many
    clients mid-request when the proxy dies; after a restart every response a client received
    whole is sealed exactly once."""
    origin.script("/rp-load", {"headers": [FRESH], "body": "l" * 500})
    proxy = start_proxy(origin.url, tmp_path, "--batch-max-interval-ms", "200")
    completed: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                response = proxy.get("/rp-load")
            except (OSError, http.client.HTTPException):
                return  # the proxy died under this request: no complete response
            if response.status == 200 and len(response.body) == 500:
                with lock:
                    completed.append(response.header("X-Request-ID") or "")

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    os.kill(proxy.proc.pid, signal.SIGKILL)
    proxy.proc.wait()
    stop.set()
    for thread in threads:
        thread.join(10)
    assert len(completed) > 100
    restarted = start_proxy(origin.url, tmp_path, "--batch-max-interval-ms", "50")
    try:
        seen = wait_until_sealed(tmp_path / "records", completed)
        assert [i for i in completed if seen[i] != 1] == []
    finally:
        assert restarted.stop() == 0


def test_a_full_spool_with_the_reject_policy_answers_503_until_it_drains(
    origin: Origin, tmp_path: Path
) -> None:
    """docs/design/spool.md "Full spool": with spool_full_policy = "reject" the edge answers
    503 with Retry-After instead of serving what it could not record (every 200 it sent is
    sealed; no record dropped), and serves again once the records process has sealed the spool
    and its segments are deleted."""
    origin.script("/rp-full", {"headers": [FRESH], "body": "f" * 100})
    proxy = start_proxy(origin.url, tmp_path, "--batch-max-interval-ms", "50",
                        "--spool-max-size", "1MiB", "--spool-full-policy", "reject")  # fmt: skip
    records_dir = tmp_path / "records"
    try:
        pid = records_pid(records_dir)
        os.kill(pid, signal.SIGSTOP)  # nothing is sealed: the spool fills
        connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        served: list[str] = []
        refused = None
        for _ in range(5000):  # 1 MiB holds about 2,300 records
            connection.request("GET", "/rp-full")
            response = connection.getresponse()
            body = response.read()
            if response.status == 503:
                refused = response
                break
            assert response.status == 200 and body == b"f" * 100
            served.append(response.getheader("X-Request-ID") or "")
        assert refused is not None, "a spool of 1 MiB never filled"
        assert 1000 < len(served) < 5000
        assert refused.getheader("Retry-After") == "1"
        assert refused.getheader("Cache-Control") == "no-store"
        os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + WAIT_S
        while True:  # sealed, marked and deleted: room again
            connection.request("GET", "/rp-full")
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                served.append(response.getheader("X-Request-ID") or "")
                break
            assert response.status == 503
            assert time.monotonic() < deadline, "the spool never drained"
            time.sleep(0.1)
        connection.close()
        assert metric(proxy, "cachet_spool_full_refusals_total") >= 1
        assert metric(proxy, "cachet_records_dropped_total") == 0
        seen = wait_until_sealed(records_dir, served)
        assert all(seen[i] == 1 for i in served)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        assert proxy.stop() == 0


def test_a_second_proxy_on_the_same_cache_dir_stops_and_the_first_loses_nothing(
    origin: Origin, tmp_path: Path
) -> None:
    """docs/design/spool.md "One writer per folder": the second proxy's spool recovery would
    truncate the live one's segment (records already answered lost, its next store a SIGBUS).
    It exits with one clear line before it touches the spool; the first serves on."""
    origin.script("/rp-second", {"headers": [FRESH], "body": "s" * 100})
    proxy = start_proxy(origin.url, tmp_path, "--batch-max-interval-ms", "50")
    try:
        before = serve(proxy, "/rp-second", 20)
        second = subprocess.run(
            [sys.executable, "-m", "cachet", "proxy", "--listen", "127.0.0.1:0",
             "--origin", origin.url, "--cache-dir", str(tmp_path), "--admin-listen",
             "127.0.0.1:0"],
            capture_output=True, text=True, timeout=WAIT_S,
        )  # fmt: skip
        assert second.returncode == 1
        assert "in use by another process" in second.stderr
        assert "Traceback" not in second.stderr
        after = serve(proxy, "/rp-second", 20)
        seen = wait_until_sealed(tmp_path / "records", before + after)
        assert all(seen[i] == 1 for i in before + after)
    finally:
        assert proxy.stop() == 0
