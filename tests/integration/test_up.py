"""`cachet up` end to end (issue 8): the whole system in a temporary folder, traffic through the
proxy, records reaching the coordinator, a checkpoint covering them, and a receipt for one
request verifying offline with `cachet verify receipt`; a second `cachet up` resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import http_request
from tests.ports import free_port

START_TIMEOUT_S = 60.0


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    data: Path
    coordinator: int
    proxy: int
    proxy_admin: int
    origin: int
    output: Path

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                return self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return -9
        return self.process.returncode


def _get(url: str, timeout_s: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        body: bytes = response.read()
        return body


def start_stack(data: Path, extra_env: Mapping[str, str] | None = None) -> Stack:
    """`cachet up` on free ports; ``extra_env`` reaches every process of its tree."""
    ports = [free_port() for _ in range(4)]
    output = data.parent / f"{data.name}-up-{time.monotonic_ns()}.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CACHET_")}
    env.update(extra_env or {})
    with output.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "cachet", "up", "--data", str(data),
                "--coordinator-listen", f"127.0.0.1:{ports[0]}",
                "--proxy-listen", f"127.0.0.1:{ports[1]}",
                "--proxy-admin-listen", f"127.0.0.1:{ports[2]}",
                "--origin-listen", f"127.0.0.1:{ports[3]}",
            ],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    stack = Stack(process, data, ports[0], ports[1], ports[2], ports[3], output)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"cachet up exited: {output.read_text()}")
        if b"Press Ctrl-C to stop." in output.read_bytes():
            return stack
        time.sleep(0.2)
    stack.stop()
    raise AssertionError(f"cachet up did not come up: {output.read_text()}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("up") / "data")
    yield running
    assert running.stop() == 0


def _receipt_when_checkpointed(stack: Stack, request_id: str) -> bytes:
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        try:
            return _get(f"http://127.0.0.1:{stack.coordinator}/v1/receipts/{request_id}")
        except urllib.error.HTTPError as error:
            if error.code != 404:
                raise
        time.sleep(0.5)
    raise AssertionError(f"no receipt for {request_id} within 45 s")


def test_first_run_shows_the_admin_token_once_and_urls(stack: Stack) -> None:
    text = stack.output.read_text()
    assert f"http://127.0.0.1:{stack.proxy}" in text
    assert f"http://127.0.0.1:{stack.coordinator}/admin/" in text
    assert "cachet-admin-" in text
    state = json.loads((stack.data / "up.json").read_text())
    assert state["creator"] == "demo-creator"
    assert (stack.data / "creator" / "demo-creator.key").stat().st_mode & 0o077 == 0


def test_no_secret_is_on_a_command_line(stack: Stack) -> None:
    """Any local user can read every process's argv (/proc/<pid>/cmdline): the enrolment token
    reaches the proxy through its environment, which only the same user can read."""
    state = json.loads((stack.data / "up.json").read_text())
    secrets_ = [state["enrolment_token"]] if state.get("enrolment_token") else []
    assert secrets_, "up.json keeps the enrolment token the proxy was started with"
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode("utf-8", "replace")
        except OSError:
            continue
        for secret in secrets_:
            assert secret not in argv, cmdline


def test_creator_content_is_attributed_and_its_receipt_verifies_offline(
    stack: Stack, tmp_path: Path
) -> None:
    first = http_request(stack.proxy, "GET", "/creator/article.html")
    assert first.status == 200
    second = http_request(stack.proxy, "GET", "/creator/article.html")
    assert second.header("X-Cache-Status") == "HIT"
    provenance = second.header("X-Provenance")
    assert provenance is not None
    assert "creator=demo-creator" in provenance
    request_id = second.header("X-Request-ID")
    assert request_id is not None

    receipt = _receipt_when_checkpointed(stack, request_id)
    record = json.loads(receipt)["record"]
    assert record["creator"] == "demo-creator"
    assert record["manifest"] is not None
    assert record["cache"] == "hit"
    (tmp_path / "receipt.json").write_bytes(receipt)
    (tmp_path / "log.pub").write_bytes(_get(f"http://127.0.0.1:{stack.coordinator}/v1/log/key"))
    edge_key = stack.data / "proxy" / "records" / "keys" / "edge-demo.pub"
    verified = subprocess.run(
        [
            sys.executable, "-m", "cachet", "verify", "receipt", str(tmp_path / "receipt.json"),
            "--log-key", str(tmp_path / "log.pub"), "--edge-key", str(edge_key),
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert request_id in verified.stdout


def test_a_second_up_resumes_with_the_data_of_the_first(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start_stack(data)
    try:
        state = json.loads((data / "up.json").read_text())
    finally:
        assert first.stop() == 0
    second = start_stack(data)
    try:
        assert json.loads((data / "up.json").read_text()) == state
        assert "cachet-admin-" not in second.output.read_text()  # the token is shown once
        assert http_request(second.proxy, "GET", "/creator/chart.svg").status == 200
    finally:
        assert second.stop() == 0
