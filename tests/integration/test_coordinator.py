"""`python -m cachet coordinator` as a real process: a batch acknowledged just before SIGKILL is
found after restart, anchored in a checkpoint, with a receipt that verifies offline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from provenance.keys import KeyRing, parse_verifier_key
from provenance.receipts import parse_receipt, verify_receipt
from tests.component.billing.fleet import Edge, body_of, signing_key
from tests.integration.conftest import REPO_ROOT, http_request
from tests.ports import free_port

pytestmark = pytest.mark.integration
START_TIMEOUT_S = 20.0


class CoordinatorProcess:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cachet", "coordinator", "--listen",
             f"127.0.0.1:{self.port}", "--data", str(self.data)],
            cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "coordinator exited during start"
            try:
                if http_request(self.port, "GET", "/healthz", timeout_s=1).status == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("coordinator did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, as systemd stops it: the coordinator must close cleanly and exit 0 (a
        store connection left open once kept it alive forever: its threads block the exit)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                code = self.proc.wait(timeout=30)  # a hang detector, not a timing
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("the coordinator did not stop on SIGTERM") from None
            assert code == 0, f"the coordinator exited {code} on SIGTERM"

    def call(self, method: str, target: str, body: bytes | None = None, token: str = "") -> bytes:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = http_request(self.port, method, target, headers=headers, body=body)
        assert response.status in (200, 201), (response.status, response.body)
        return response.body


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[CoordinatorProcess]:
    process = CoordinatorProcess(tmp_path / "data")
    yield process
    process.stop()


def _admin_token(data: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "cachet", "coordinator", "admin-token", "--data", str(data),
         "--json"],
        cwd=REPO_ROOT, capture_output=True, check=True, timeout=30,
    )  # fmt: skip
    token: str = json.loads(out.stdout)["admin_token"]
    return token


def test_acknowledged_batch_survives_sigkill(coordinator: CoordinatorProcess) -> None:
    token = _admin_token(coordinator.data)
    assert os.stat(coordinator.data).st_mode & 0o077 == 0
    coordinator.start()
    assert (coordinator.data / "log-key").stat().st_mode & 0o777 == 0o600
    enrolment = json.loads(coordinator.call("POST", "/v1/admin/enrolment-tokens", token=token))
    edge = Edge("edge-kill", signing_key("edge-kill"), epoch=datetime.now(UTC))
    enrol = {"token": enrolment["token"], "edge": edge.name, "verifier_key": edge.verifier}
    coordinator.call("POST", "/v1/edges/enrol", json.dumps(enrol).encode())
    batch = edge.seal(count=50)
    answer = json.loads(coordinator.call("POST", "/v1/batches", body_of(batch)))
    coordinator.kill()  # right after the acknowledgement
    assert answer["status"] == "accepted"

    coordinator.start()
    edges = json.loads(coordinator.call("GET", "/v1/admin/edges", token=token))["edges"]
    assert edges[0]["chain_head"]["seq"] == 0
    again = json.loads(coordinator.call("POST", "/v1/batches", body_of(batch)))
    assert again["status"] == "duplicate"
    log_key = parse_verifier_key(coordinator.call("GET", "/v1/log/key").decode())
    target = batch.records[17]
    receipt = parse_receipt(coordinator.call("GET", f"/v1/receipts/{target.request_id}"))
    assert receipt.record == target
    checkpoint = verify_receipt(receipt, log_key, KeyRing([edge.key.verifier]))
    assert checkpoint.size == 1
