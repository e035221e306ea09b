"""The checkpoint publish hook (issue 5, docs/design/coordinator.md "Publishing checkpoints") with
a real `python -m cachet coordinator` process: witnesses on 127.0.0.1 (an aiohttp receiver in a
thread of this test) and a command get the C2SP signed note /v1/checkpoint serves, it verifies
with the log key alone, a witness that was down or failing gets the latest checkpoint once it
recovers, a failing or hanging command is logged (and killed) while ingest goes on, and bad
configuration stops the coordinator at start with one line naming the key."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from provenance.checkpoint import parse_checkpoint
from provenance.keys import VerifierKey, parse_verifier_key
from provenance.signed_note import open_note
from tests.component.billing.fleet import Edge, body_of, signing_key
from tests.integration.conftest import REPO_ROOT, http_request
from tests.ports import free_port

pytestmark = pytest.mark.integration
START_TIMEOUT_S = 20.0
WAIT_S = 20.0
FAST_RETRY = {"checkpoint_publish_retry_initial_s": 0.05, "checkpoint_publish_retry_max_s": 0.2}


def wait_until(condition: Callable[[], object], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Witness:
    """An HTTP witness on 127.0.0.1 in a thread of its own: it answers ``status`` to each POST
    and keeps what it got (``accepted``: the bodies it answered 2xx to)."""

    def __init__(self, port: int) -> None:
        self.port, self.status = port, 200
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def accepted(self) -> list[bytes]:
        return [body for _, body, status in list(self.requests) if status == 200]

    async def _add(self, request: web.Request) -> web.Response:
        status = self.status
        self.requests.append((dict(request.headers), await request.read(), status))
        return web.Response(status=status, text="ok\n" if status == 200 else "failing\n")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/add", self._add)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()


class Coordinator:
    """`python -m cachet coordinator --config FILE`, its stderr kept in a file."""

    def __init__(self, tmp: Path, settings: dict[str, object]) -> None:
        self.port = free_port()
        self.data, self.stderr_path = tmp / "data", tmp / "coordinator.stderr"
        lines = ["[coordinator]", *(f"{k} = {json.dumps(v)}" for k, v in settings.items())]
        self.config = tmp / "coordinator.toml"
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        listen = f"127.0.0.1:{self.port}"
        return [sys.executable, "-m", "cachet", "coordinator", "--listen", listen,
                "--data", str(self.data), "--config", str(self.config)]  # fmt: skip

    def start(self) -> None:
        with self.stderr_path.open("ab") as stderr:
            self.proc = subprocess.Popen(self.argv(), cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                                         stderr=stderr)  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.stderr
            try:
                if http_request(self.port, "GET", "/healthz", timeout_s=1).status == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("coordinator did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def call(self, method: str, target: str, body: bytes | None = None, token: str = "") -> bytes:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = http_request(self.port, method, target, headers=headers, body=body)
        assert response.status in (200, 201), (response.status, response.body)
        return response.body

    def enrol(self, name: str) -> Edge:
        match = re.search(r"admin token \(shown once\): (\S+)", self.stderr)
        assert match is not None
        enrolment = json.loads(self.call("POST", "/v1/admin/enrolment-tokens", token=match[1]))
        edge = Edge(name, signing_key(name), epoch=datetime.now(UTC))
        body = {"token": enrolment["token"], "edge": name, "verifier_key": edge.verifier}
        self.call("POST", "/v1/edges/enrol", json.dumps(body).encode())
        return edge

    def push(self, edge: Edge) -> None:
        answer = json.loads(self.call("POST", "/v1/batches", body_of(edge.seal(count=5))))
        assert answer["status"] == "accepted"

    def checkpoint_note(self) -> bytes:
        return self.call("GET", "/v1/checkpoint")

    def checkpoint_size(self) -> int:
        return parse_checkpoint(open_note(self.checkpoint_note(), [self.log_key()])).size

    def log_key(self) -> VerifierKey:
        return parse_verifier_key(self.call("GET", "/v1/log/key").decode())

    def metric(self, name: str, **labels: str) -> float | None:
        text = self.call("GET", "/metrics").decode()
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            series, _, value = line.rpartition(" ")
            if series == (f"{name}{{{wanted}}}" if labels else name):
                return float(value)
        return None


@pytest.fixture
def cleanup() -> Iterator[list[Callable[[], None]]]:
    stops: list[Callable[[], None]] = []
    yield stops
    for stop in reversed(stops):
        stop()


COMMAND_SCRIPT = """\
import json, os, sys, time
out = sys.argv[1]
mode = open(os.path.join(out, "mode")).read().strip()
size = os.environ["CACHET_CHECKPOINT_SIZE"]
if mode == "fail":
    sys.exit(3)
if mode == "hang":
    open(os.path.join(out, "hung.pid"), "w").write(str(os.getpid()))
    time.sleep(600)
note = sys.stdin.buffer.read()
env = {k: v for k, v in os.environ.items() if k.startswith("CACHET_")}
open(os.path.join(out, size + ".env.json"), "w").write(json.dumps(env))
open(os.path.join(out, size + ".note"), "wb").write(note)
"""


def command_for(tmp_path: Path, mode: str) -> tuple[list[str], Path]:
    out = tmp_path / "command-out"
    out.mkdir()
    (out / "mode").write_text(mode)
    script = tmp_path / "witness_command.py"
    script.write_text(COMMAND_SCRIPT)
    return [sys.executable, str(script), str(out)], out


def test_witness_url_and_command_get_the_signed_checkpoint_as_served(
    tmp_path: Path, cleanup: list[Callable[[], None]]
) -> None:
    witness = Witness(free_port())
    witness.start()
    cleanup.append(witness.stop)
    command, out = command_for(tmp_path, "ok")
    url = f"http://witness:s3cret@127.0.0.1:{witness.port}/add"
    coordinator = Coordinator(tmp_path, {
        "checkpoint_every_batches": 1, "checkpoint_publish_urls": [url],
        "checkpoint_publish_command": command, **FAST_RETRY,
    })  # fmt: skip
    coordinator.start()
    cleanup.append(coordinator.stop)
    edge = coordinator.enrol("edge-w")
    for _ in range(3):
        coordinator.push(edge)
    wait_until(lambda: coordinator.checkpoint_size() == 3, "checkpoint of size 3")
    served = coordinator.checkpoint_note()
    wait_until(lambda: served in witness.accepted, "the witness to get the latest checkpoint")
    wait_until(lambda: (out / "3.note").exists(), "the command to get the latest checkpoint")

    # C2SP tlog-checkpoint in a C2SP signed note, verified with the log's public key alone
    log_key = coordinator.log_key()
    checkpoint = parse_checkpoint(open_note(witness.accepted[-1], [log_key]))
    assert checkpoint.size == 3 and checkpoint.origin == "cachet.local/log"
    headers = next(h for h, body, _ in witness.requests if body == served)
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    # RFC 7617: the URL's user info is sent as Basic credentials
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"witness:s3cret").decode()

    assert (out / "3.note").read_bytes() == served
    env = json.loads((out / "3.env.json").read_text())
    assert env["CACHET_CHECKPOINT_SIZE"] == "3"
    assert env["CACHET_CHECKPOINT_ROOT"] == checkpoint.root_hash.hex()
    assert env["CACHET_CHECKPOINT_ORIGIN"] == checkpoint.origin
    assert not any(key.startswith("CACHET_COORDINATOR_") for key in env)

    target = f"http://***@127.0.0.1:{witness.port}/add"
    size_metric = "cachet_coordinator_checkpoint_published_size"
    assert coordinator.metric(size_metric, target=target) == 3
    wait_until(lambda: coordinator.metric(size_metric, target="command") == 3, "command metric")
    ok = coordinator.metric(
        "cachet_coordinator_checkpoint_publishes_total", target=target, outcome="ok"
    )
    assert ok is not None and ok >= 1
    assert "s3cret" not in coordinator.stderr


def test_a_witness_down_then_failing_gets_the_latest_checkpoint_once_it_recovers(
    tmp_path: Path, cleanup: list[Callable[[], None]]
) -> None:
    witness = Witness(free_port())  # not started: the port refuses connections
    cleanup.append(witness.stop)
    url = f"http://127.0.0.1:{witness.port}/add?token=s3cret"
    coordinator = Coordinator(tmp_path, {
        "checkpoint_every_batches": 1, "checkpoint_publish_urls": [url], **FAST_RETRY,
    })  # fmt: skip
    coordinator.start()
    cleanup.append(coordinator.stop)
    target = f"http://127.0.0.1:{witness.port}/add?token=***"
    total = "cachet_coordinator_checkpoint_publishes_total"
    edge = coordinator.enrol("edge-d")
    coordinator.push(edge)
    wait_until(lambda: coordinator.metric(total, target=target, outcome="unreachable"), "a refusal")
    assert "unreachable" in coordinator.stderr

    witness.status = 500
    witness.start()
    coordinator.push(edge)
    wait_until(lambda: len(witness.requests) >= 2, "the witness to be retried")
    coordinator.push(edge)  # ingest is never held up by the witness
    assert witness.accepted == []
    assert coordinator.metric(total, target=target, outcome="http_error")

    witness.status = 200
    wait_until(lambda: coordinator.checkpoint_size() == 3, "checkpoint of size 3")
    served = coordinator.checkpoint_note()
    wait_until(lambda: served in witness.accepted, "the latest checkpoint after recovery")
    assert [parse_checkpoint(open_note(n, [coordinator.log_key()])).size for n in witness.accepted][
        -1
    ] == 3

    coordinator.push(edge)  # and the next one goes out as usual
    wait_until(lambda: coordinator.checkpoint_size() == 4, "checkpoint of size 4")
    wait_until(lambda: coordinator.checkpoint_note() in witness.accepted, "checkpoint 4")
    assert "s3cret" not in coordinator.stderr


def test_a_failing_or_hanging_command_is_logged_and_killed_and_ingest_goes_on(
    tmp_path: Path, cleanup: list[Callable[[], None]]
) -> None:
    command, out = command_for(tmp_path, "fail")
    coordinator = Coordinator(tmp_path, {
        "checkpoint_every_batches": 1, "checkpoint_publish_command": command,
        "checkpoint_publish_timeout_s": 1.5, **FAST_RETRY,  # 1.5 s: a loaded machine's margin
    })  # fmt: skip
    coordinator.start()
    cleanup.append(coordinator.stop)
    total = "cachet_coordinator_checkpoint_publishes_total"
    edge = coordinator.enrol("edge-c")
    coordinator.push(edge)
    wait_until(lambda: "exited with status 3" in coordinator.stderr, "the failure in the log")
    assert coordinator.metric(total, target="command", outcome="command_failed")

    (out / "mode").write_text("hang")
    wait_until(lambda: coordinator.metric(total, target="command", outcome="timeout"), "timeout")
    assert "killed after 1.5 s" in coordinator.stderr
    hung = int((out / "hung.pid").read_text())
    wait_until(lambda: not _alive(hung), "the hung command to be killed")
    for _ in range(3):  # every batch still accepted, every checkpoint still signed
        coordinator.push(edge)
    wait_until(lambda: coordinator.checkpoint_size() == 4, "checkpoint of size 4")

    (out / "mode").write_text("ok")  # the command recovers: it gets the latest checkpoint
    wait_until(lambda: (out / "4.note").exists(), "the latest checkpoint after recovery")
    assert (out / "4.note").read_bytes() == coordinator.checkpoint_note()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"checkpoint_publish_urls": ["ftp://u:s3cret@w.example/add"]}, "http:// or https://"),
        ({"checkpoint_publish_urls": ["witness.example/add"]}, "http:// or https://"),
        ({"checkpoint_publish_command": ""}, "checkpoint_publish_command is empty"),
        ({"checkpoint_publish_command": ["/nonexistent/push"]}, "not an executable"),
    ],
)
def test_bad_publish_config_stops_the_coordinator_at_start(
    tmp_path: Path, settings: dict[str, object], reason: str
) -> None:
    coordinator = Coordinator(tmp_path, settings)
    done = subprocess.run(coordinator.argv(), cwd=REPO_ROOT, capture_output=True, timeout=60)
    assert done.returncode == 2
    stderr = done.stderr.decode()
    assert reason in stderr and "checkpoint_publish" in stderr
    assert "s3cret" not in stderr
    assert stderr.startswith("cachet coordinator: ")
