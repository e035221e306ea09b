"""`cachet proxy --workers N` runs N serving processes under one supervisor (issue 3, "Processes
and shared tier": "N processes sharing the listening port (SO_REUSEPORT) ...; a memory tier per
process; one admin listener that reports all workers"; docs/design/workers.md).

Real processes on 127.0.0.1. Every request below opens its own connection, so the kernel spreads
them over the workers' listening sockets.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from provenance.batches import parse_sealed_batch
from proxy.cache.tiers.disk import name_for
from proxy.records.batch_files import read_batch_file
from proxy.records.sealer import list_batches
from tests.integration.conftest import REPO_ROOT, Origin, Proxy, Response, http_request, start_proxy
from tests.integration.test_records_process import records_pid, sealed_request_ids, wait_gone
from tests.ports import free_port

pytestmark = pytest.mark.integration
TOKEN = "workers-purge-token"
FRESH = ["Cache-Control", "max-age=600"]
REQUESTS = 40  # one connection each: both of 2 workers answer some (all to one: p = 2^-39)
WAIT_S = 30.0
SUPERVISOR_FAMILIES = {
    "cachet_workers",
    "cachet_workers_serving",
    "cachet_worker_restarts",
    "cachet_worker_scrape_failures",
    "cachet_purges",
    "cachet_purges_refused",
}
RECORDS_PROCESS_FAMILIES = {  # the one records process, reported once by the supervisor
    "cachet_records_process_restarts",
    "cachet_records_status_age_seconds",
    "cachet_batches_sealed",
    "cachet_records_sealed",
    "cachet_records_quarantined",
    "cachet_seal_latency_seconds",
    "cachet_forward_lag_batches",
    "cachet_forward_lag_seconds",
    "cachet_batches_acked",
    "cachet_forward_failures",
}


@pytest.fixture
def workers(origin: Origin, tmp_path: Path) -> Iterator[Proxy]:
    proxy = start_proxy(
        origin.url,
        tmp_path,
        "--workers",
        "2",
        "--purge-token",
        TOKEN,
        "--batch-max-interval-ms",
        "50",
    )
    yield proxy
    proxy.stop()


def health(proxy: Proxy) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(proxy.admin("/healthz").body)
    return body


def worker_pids(proxy: Proxy) -> list[int]:
    return [int(worker["pid"]) for worker in health(proxy)["workers"]]


def worker_pids_or_none(proxy: Proxy) -> list[int | None]:
    """Each worker's pid, None while it is not running (reaped, waiting to restart)."""
    return [worker["pid"] for worker in health(proxy)["workers"]]


def families(proxy: Proxy) -> dict[str, Any]:
    """The merged /metrics, parsed as Prometheus text (a malformed exposition raises)."""
    text = proxy.admin("/metrics").body.decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def per_worker(proxy: Proxy, family: str, **labels: str) -> dict[str, float]:
    found: Counter[str] = Counter()
    for sample in families(proxy)[family].samples:
        if all(sample.labels.get(k) == v for k, v in labels.items()):
            found[sample.labels["worker"]] += sample.value
    return dict(found)


def value(proxy: Proxy, family: str, **labels: str) -> float:
    return float(
        sum(
            sample.value
            for sample in families(proxy)[family].samples
            if all(sample.labels.get(k) == v for k, v in labels.items())
        )
    )


def get_many(proxy: Proxy, path: str, count: int = REQUESTS) -> list[Response]:
    responses = [proxy.get(path) for _ in range(count)]
    assert [r.status for r in responses] == [200] * count
    return responses


def purge(proxy: Proxy, body: dict[str, Any], token: str | None = TOKEN) -> Response:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode()
    return http_request(proxy.admin_port, "POST", "/_cachet/purge", headers=headers, body=data)


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def entry_file(proxy: Proxy, cache_dir: Path, path: str) -> Path:
    """Where the workers' one disk folder keeps ``path``'s entry (docs/design/disk-tier.md)."""
    name = name_for(f"http://127.0.0.1:{proxy.port}{path}")
    return cache_dir / "objects" / name[0] / name[1:3] / name


def wait_stored(proxy: Proxy, cache_dir: Path, path: str) -> None:
    """Until the write-through put of ``path`` is in the shared disk folder."""
    entry = entry_file(proxy, cache_dir, path)
    wait_for(entry.exists, f"{path} never reached the disk")


def test_both_workers_serve_and_the_merged_metrics_say_which(
    workers: Proxy, origin: Origin, tmp_path: Path
) -> None:
    origin.script("/wk-spread", {"headers": [FRESH], "body": "spread"})
    get_many(workers, "/wk-spread", 1)
    wait_stored(workers, tmp_path, "/wk-spread")
    get_many(workers, "/wk-spread")
    answered = per_worker(workers, "cachet_requests")
    assert set(answered) == {"0", "1"}
    assert all(count > 0 for count in answered.values())
    assert sum(answered.values()) == REQUESTS + 1
    # One disk folder for all workers: what one fetched is a disk hit for the other.
    assert origin.count("/wk-spread") == 1
    assert sum(per_worker(workers, "cachet_origin_requests").values()) == 1
    assert value(workers, "cachet_workers") == 2
    assert value(workers, "cachet_workers_serving") == 2


def test_every_worker_sample_is_labelled_and_the_exposition_parses(workers: Proxy) -> None:
    parsed = families(workers)
    assert "cachet_origin_latency_seconds" in parsed
    assert parsed["cachet_origin_latency_seconds"].type == "histogram"
    for name, family in parsed.items():
        for sample in family.samples:
            if name in SUPERVISOR_FAMILIES:
                assert sample.labels.get("worker") in (None, "0", "1")
            elif name in RECORDS_PROCESS_FAMILIES:
                assert "worker" not in sample.labels
            else:
                assert sample.labels.get("worker") in ("0", "1"), (name, sample)
    assert RECORDS_PROCESS_FAMILIES & set(parsed)
    text = workers.admin("/metrics").body.decode()
    declared = [line for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(declared) == len(set(declared))  # one TYPE per family, as the format requires


def test_a_purge_through_the_one_admin_listener_reaches_every_worker(
    workers: Proxy, origin: Origin, tmp_path: Path
) -> None:
    origin.script(
        "/wk-purge", {"headers": [FRESH], "body": "old"}, {"headers": [FRESH], "body": "new"}
    )
    get_many(workers, "/wk-purge", 1)
    wait_stored(workers, tmp_path, "/wk-purge")
    assert {r.body for r in get_many(workers, "/wk-purge")} == {b"old"}
    assert origin.count("/wk-purge") == 1  # one fetch; the other worker read it from disk

    refused = purge(workers, {"urls": [f"http://127.0.0.1:{workers.port}/wk-purge"]}, "wrong")
    assert refused.status == 401  # docs/purge.md: authenticated exactly as with one process
    answer = purge(workers, {"urls": [f"http://127.0.0.1:{workers.port}/wk-purge"]})
    assert answer.status == 200
    # Both workers held it in memory (one fetched it, the other promoted it from disk).
    assert json.loads(answer.body) == {"mode": "hard", "purged": 2}
    assert not entry_file(workers, tmp_path, "/wk-purge").exists()

    first = get_many(workers, "/wk-purge", 1)[0]
    assert (first.body, first.header("X-Cache-Status")) == (b"new", "MISS")
    wait_stored(workers, tmp_path, "/wk-purge")
    after = get_many(workers, "/wk-purge")
    assert {r.body for r in after} == {b"new"}  # no worker serves the purged copy
    assert origin.count("/wk-purge") == 2
    # Counted once (not once per worker), with the refusal.
    assert value(workers, "cachet_purges", kind="urls", mode="hard") == 1
    assert value(workers, "cachet_purges_refused", reason="unauthorized") == 1
    assert per_worker(workers, "cachet_purged_objects", mode="hard") == {"0": 1, "1": 1}
    logged = [line for line in workers.log.read_text().splitlines() if "purge mode=hard" in line]
    assert len(logged) == 1 and "peer=127.0.0.1" in logged[0] and TOKEN not in logged[0]


def test_a_malformed_purge_is_refused_by_the_supervisor(workers: Proxy) -> None:
    response = purge(workers, {"urls": ["not a url"]})
    assert response.status == 400
    assert value(workers, "cachet_purges_refused", reason="malformed") == 1


def test_a_worker_killed_with_sigkill_is_restarted_and_the_proxy_keeps_answering(
    workers: Proxy, origin: Origin
) -> None:
    origin.script("/wk-kill", {"headers": [FRESH], "body": "still here"})
    victim, survivor = worker_pids(workers)
    os.kill(victim, signal.SIGKILL)
    wait_gone(victim)
    # A zombie leader's other threads may still hold its listening socket (connections routed
    # there are reset): the supervisor reaps it only once the whole process is gone.
    wait_for(lambda: worker_pids_or_none(workers)[0] != victim, "worker 0 was never reaped")
    # Its listening socket died with it: every connection now reaches a live worker.
    assert {r.body for r in get_many(workers, "/wk-kill")} == {b"still here"}

    def restarted() -> bool:
        status = health(workers)
        return status["status"] == "ok" and status["workers"][0]["pid"] not in (None, victim)

    wait_for(restarted, "worker 0 was not restarted")
    assert worker_pids(workers)[1] == survivor
    assert health(workers)["workers"][0]["restarts"] == 1
    assert per_worker(workers, "cachet_worker_restarts") == {"0": 1, "1": 0}
    get_many(workers, "/wk-kill")


def test_health_and_metrics_say_when_a_worker_does_not_answer(workers: Proxy) -> None:
    """One admin listener that reports all workers: a worker that hangs (SIGSTOP) makes the
    proxy unhealthy, and its samples are missing from the scrape, counted as a failure."""
    stuck, _ = worker_pids(workers)
    os.kill(stuck, signal.SIGSTOP)
    try:
        response = workers.admin("/healthz")
        assert response.status == 503
        assert json.loads(response.body)["status"] == "unavailable"
        assert set(per_worker(workers, "cachet_requests")) <= {"1"}
    finally:
        os.kill(stuck, signal.SIGCONT)
    wait_for(lambda: workers.admin("/healthz").status == 200, "the worker did not recover")
    assert per_worker(workers, "cachet_worker_scrape_failures")["0"] >= 1


def test_sigterm_stops_every_process_with_exit_0_and_seals_every_record(
    origin: Origin, tmp_path: Path
) -> None:
    origin.script("/wk-term", {"headers": [FRESH], "body": "x" * 64})
    proxy = start_proxy(origin.url, tmp_path, "--workers", "2", "--batch-max-interval-ms", "50")
    pids = [*worker_pids(proxy), records_pid(tmp_path / "records")]
    ids = [str(r.header("X-Request-ID")) for r in get_many(proxy, "/wk-term")]
    assert proxy.stop() == 0
    for pid in pids:
        wait_gone(pid)
    # docs/design/spool.md: every worker spools; the one records process seals all of them
    # into the edge's one chain, each record exactly once.
    sealed = sealed_request_ids(tmp_path / "records")
    assert all(sealed[request_id] == 1 for request_id in ids)
    seqs = [seq for seq, _ in list_batches(tmp_path / "records" / "batches")]
    edges = {
        parse_sealed_batch(read_batch_file(path)[0]).header.edge
        for _, path in list_batches(tmp_path / "records" / "batches")
    }
    assert seqs == list(range(len(seqs))) and len(edges) == 1


def test_sigkill_of_the_supervisor_leaves_no_worker_or_records_process(
    origin: Origin, tmp_path: Path
) -> None:
    proxy = start_proxy(origin.url, tmp_path, "--workers", "2")
    pids = [*worker_pids(proxy), records_pid(tmp_path / "records")]
    proxy.proc.send_signal(signal.SIGKILL)
    proxy.proc.wait()
    for pid in pids:
        wait_gone(pid)  # each saw end of file on the pipe from the supervisor
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=2).close()
    proxy.stop()


def test_a_receipt_is_answered_by_the_supervisor_from_a_worker_spool(
    workers: Proxy, origin: Origin
) -> None:
    origin.script("/wk-receipt", {"headers": [FRESH], "body": "r"})
    request_id = get_many(workers, "/wk-receipt", 1)[0].header("X-Request-ID")

    def sealed() -> bool:
        response = workers.admin(f"/_cachet/receipts/{request_id}")
        return response.status == 200 and json.loads(response.body)["batch"] is not None

    wait_for(sealed, "the receipt never showed its batch")
    receipt = json.loads(workers.admin(f"/_cachet/receipts/{request_id}").body)
    assert receipt["record"]["request_id"] == request_id
    assert workers.admin("/_cachet/receipts/no-such-request").status == 404


def _run_proxy(*args: str, cache_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CACHET_")}
    command = [sys.executable, "-m", "cachet", "proxy", "--cache-dir", str(cache_dir), *args]
    return subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_a_client_port_taken_by_another_program_fails_the_start_with_one_line(
    origin: Origin, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # no SO_REUSEPORT: the workers cannot join it
        taken.listen()
        port = taken.getsockname()[1]
        result = _run_proxy(
            "--workers", "2", "--listen", f"127.0.0.1:{port}", "--origin", origin.url,
            "--admin-listen", f"127.0.0.1:{free_port()}", cache_dir=tmp_path,
        )  # fmt: skip
    assert result.returncode == 1
    assert "cachet proxy: worker" in result.stderr and "exited before it was ready" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_admin_port_in_use_fails_before_any_worker_starts(
    origin: Origin, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        admin = taken.getsockname()[1]
        result = _run_proxy(
            "--workers", "2", "--listen", f"127.0.0.1:{free_port()}", "--origin", origin.url,
            "--admin-listen", f"127.0.0.1:{admin}", cache_dir=tmp_path,
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("cachet proxy: ")
    assert "[w0]" not in result.stderr  # no worker was started


class _Coordinator(BaseHTTPRequestHandler):
    """Just enough of a coordinator: enrolments (counted), an empty registry feed; batches are
    answered 503 so they wait in the edge's batch folder."""

    enrolments: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/v1/edges/enrol":
            type(self).enrolments.append(json.loads(body))
            self._answer(201, {"edge": "ok"})
        else:
            self._answer(503, {"error": "not now"})

    def do_GET(self) -> None:
        if self.path.startswith("/v1/registry/changes"):
            self._answer(200, {"events": [], "cursor": 0, "more": False})
        else:
            self._answer(404, {"error": "unknown"})

    def _answer(self, status: int, obj: dict[str, Any]) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_the_one_time_enrolment_token_is_presented_once_by_three_workers(
    origin: Origin, tmp_path: Path
) -> None:
    _Coordinator.enrolments = []
    coordinator = ThreadingHTTPServer(("127.0.0.1", 0), _Coordinator)
    thread = threading.Thread(target=coordinator.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{coordinator.server_address[1]}"
        proxy = start_proxy(
            origin.url, tmp_path, "--workers", "3", "--coordinator", url,
            "--enrolment-token", "one-time", "--edge-id", "edge-w",
        )  # fmt: skip
        try:
            assert [e["token"] for e in _Coordinator.enrolments] == ["one-time"]
            # The key it enrolled is the edge's one key, made before any worker started.
            key = (tmp_path / "records" / "keys" / "edge-w.pub").read_text().strip()
            assert _Coordinator.enrolments[0]["verifier_key"].strip() == key
            first = worker_pids(proxy)[0]
            os.kill(first, signal.SIGKILL)  # worker 0 starts again: enrolled already
            wait_gone(first)
            wait_for(lambda: health(proxy)["status"] == "ok", "worker 0 did not come back")
            assert len(_Coordinator.enrolments) == 1
        finally:
            assert proxy.stop() == 0
    finally:
        coordinator.shutdown()
        coordinator.server_close()
